//! The tables `simmask migrate` moves from an appliance's SQLite store into
//! a fleet's PostgreSQL database, column for column, and the ones it leaves
//! behind (see `migrate`).

/// Rows per `INSERT`.
pub(super) const BATCH: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    BigInt,
    Int,
    SmallInt,
    Bool,
}

impl Kind {
    pub(super) fn array(self) -> &'static str {
        match self {
            Kind::Text => "TEXT[]",
            Kind::BigInt => "BIGINT[]",
            Kind::Int => "INTEGER[]",
            Kind::SmallInt => "SMALLINT[]",
            Kind::Bool => "BOOLEAN[]",
        }
    }
}

use Kind::{BigInt, Bool, Int, SmallInt, Text};

/// A table moved column for column: each PostgreSQL column, its type, and
/// the SQLite expression that gives it (`{appliance}` is this appliance's
/// id; `{interactions}`, `{events}`, `{outbox}`, `{inbound}`, `{tokens}`,
/// `{audit}`, `{callbacks}` are the id shifts).
pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) columns: &'static [(&'static str, Kind, &'static str)],
    /// What to do with a row the database has already (SIMs and modems it
    /// registered, live state, lists).
    pub(super) on_conflict: &'static str,
    /// The serial id shifted, and its placeholder.
    pub(super) shift: Option<&'static str>,
}

/// Every table both schemas have, in an order the foreign keys accept.
pub(super) const TABLES: &[Table] = &[
    Table {
        name: "modems",
        columns: &[
            ("imei", Text, "imei"),
            ("appliance_id", BigInt, "{appliance}"),
            ("manufacturer", Text, "manufacturer"),
            ("model", Text, "model"),
            ("revision", Text, "revision"),
            ("profile", Text, "profile"),
            ("port", Text, "port"),
            ("first_seen_ms", BigInt, "first_seen_ms"),
            ("last_seen_ms", BigInt, "last_seen_ms"),
        ],
        on_conflict: "ON CONFLICT (imei) DO UPDATE SET appliance_id = EXCLUDED.appliance_id",
        shift: None,
    },
    Table {
        name: "sims",
        columns: &[
            ("iccid", Text, "iccid"),
            ("msisdn", Text, "msisdn"),
            ("imsi", Text, "imsi"),
            ("modem_imei", Text, "modem_imei"),
            ("appliance_id", BigInt, "{appliance}"),
            ("enabled", Bool, "enabled"),
            ("reserved_for", Text, "reserved_for"),
            ("draining", Bool, "draining"),
            ("front_desk", Text, "front_desk"),
            ("first_seen_ms", BigInt, "first_seen_ms"),
            ("last_seen_ms", BigInt, "last_seen_ms"),
        ],
        // The appliance's own settings for its SIMs win over what the
        // fleet learnt of them since.
        on_conflict: "ON CONFLICT (iccid) DO UPDATE SET appliance_id = EXCLUDED.appliance_id, \
             enabled = EXCLUDED.enabled, reserved_for = EXCLUDED.reserved_for, \
             draining = EXCLUDED.draining, front_desk = EXCLUDED.front_desk, \
             first_seen_ms = LEAST(sims.first_seen_ms, EXCLUDED.first_seen_ms)",
        shift: None,
    },
    Table {
        name: "sim_status",
        columns: &[
            ("iccid", Text, "iccid"),
            ("state", Text, "state"),
            ("healthy", Bool, "healthy"),
            ("signal_dbm", Int, "signal_dbm"),
            ("registration", Text, "registration"),
            ("roaming", Bool, "roaming"),
            ("operator", Text, "operator"),
            ("voice_method", Text, "voice_method"),
            ("port", Text, "port"),
            ("last_error", Text, "last_error"),
            ("updated_ms", BigInt, "updated_ms"),
        ],
        on_conflict: "ON CONFLICT (iccid) DO NOTHING",
        shift: None,
    },
    Table {
        name: "sim_storage",
        columns: &[
            ("iccid", Text, "iccid"),
            ("storage", Text, "storage"),
            ("used", Int, "used"),
            ("total", Int, "total"),
            ("updated_ms", BigInt, "updated_ms"),
        ],
        on_conflict: "ON CONFLICT (iccid) DO NOTHING",
        shift: None,
    },
    // Before the participants: a hub's side of a session has its code only
    // while the number is a hub (schema v6's trigger). A hub the fleet has
    // already (made through another appliance) stays as it is: its
    // sessions are the number's, whichever id it has.
    Table {
        name: "hubs",
        columns: &[
            ("id", Text, "id"),
            ("number", Text, "number"),
            ("label", Text, "label"),
            ("created_ms", BigInt, "created_ms"),
        ],
        on_conflict: "ON CONFLICT (number) DO NOTHING",
        shift: None,
    },
    Table {
        name: "sessions",
        columns: &[
            ("id", Text, "id"),
            ("proxy_iccid", Text, "proxy_iccid"),
            ("mode", Text, "mode"),
            ("status", Text, "status"),
            ("label", Text, "label"),
            ("opened_ms", BigInt, "opened_ms"),
            ("expires_ms", BigInt, "expires_ms"),
            ("idle_ttl_s", BigInt, "idle_ttl_s"),
            ("last_activity_ms", BigInt, "last_activity_ms"),
            ("ended_ms", BigInt, "ended_ms"),
            ("close_reason", Text, "close_reason"),
            ("fallback_number", Text, "fallback_number"),
        ],
        on_conflict: "",
        shift: None,
    },
    Table {
        name: "participants",
        columns: &[
            ("session_id", Text, "session_id"),
            ("position", SmallInt, "position"),
            ("number", Text, "number"),
            ("proxy_iccid", Text, "proxy_iccid"),
            ("open", Bool, "open"),
            ("hub_code", Text, "hub_code"),
        ],
        on_conflict: "",
        shift: None,
    },
    Table {
        name: "opt_outs",
        columns: &[
            ("number", Text, "number"),
            ("keyword", Text, "keyword"),
            ("at_ms", BigInt, "at_ms"),
        ],
        on_conflict: "ON CONFLICT (number) DO NOTHING",
        shift: None,
    },
    Table {
        name: "auto_replies",
        columns: &[
            ("proxy_iccid", Text, "proxy_iccid"),
            ("sender", Text, "sender"),
            ("last_ms", BigInt, "last_ms"),
        ],
        on_conflict: "ON CONFLICT (proxy_iccid, sender) DO UPDATE SET last_ms = GREATEST(auto_replies.last_ms, EXCLUDED.last_ms)",
        shift: None,
    },
    Table {
        name: "blocked_numbers",
        columns: &[
            ("number", Text, "number"),
            ("reason", Text, "reason"),
            ("actor", Text, "actor"),
            ("at_ms", BigInt, "at_ms"),
        ],
        on_conflict: "ON CONFLICT (number) DO NOTHING",
        shift: None,
    },
    Table {
        name: "sim_recipients",
        columns: &[
            ("iccid", Text, "iccid"),
            ("month", Text, "month"),
            ("number", Text, "number"),
        ],
        on_conflict: "ON CONFLICT DO NOTHING",
        shift: None,
    },
    Table {
        name: "api_tokens",
        columns: &[
            ("id", BigInt, "id + {tokens}"),
            ("name", Text, "name"),
            ("role", Text, "role"),
            ("hash", Text, "hash"),
            ("created_ms", BigInt, "created_ms"),
            ("expires_ms", BigInt, "expires_ms"),
            ("last_used_ms", BigInt, "last_used_ms"),
            ("revoked_ms", BigInt, "revoked_ms"),
        ],
        on_conflict: "",
        shift: Some("tokens"),
    },
    Table {
        name: "audit",
        columns: &[
            ("id", BigInt, "id + {audit}"),
            ("at_ms", BigInt, "at_ms"),
            ("appliance_id", BigInt, "{appliance}"),
            ("actor", Text, "actor"),
            ("action", Text, "action"),
            ("object", Text, "object"),
            ("detail", Text, "detail"),
        ],
        on_conflict: "",
        shift: Some("audit"),
    },
    Table {
        name: "interactions",
        columns: &[
            ("id", BigInt, "id + {interactions}"),
            ("session_id", Text, "session_id"),
            ("proxy_iccid", Text, "proxy_iccid"),
            ("kind", Text, "kind"),
            ("from_position", SmallInt, "from_position"),
            ("from_number", Text, "from_number"),
            ("to_number", Text, "to_number"),
            ("status", Text, "status"),
            ("reason", Text, "reason"),
            ("rule", Text, "rule"),
            ("body", Text, "body"),
            ("parts", Int, "parts"),
            ("incomplete", Bool, "incomplete"),
            ("answered_ms", BigInt, "answered_ms"),
            ("ended_ms", BigInt, "ended_ms"),
            ("duration_ms", BigInt, "duration_ms"),
            ("outcome", Text, "outcome"),
            ("created_ms", BigInt, "created_ms"),
            ("updated_ms", BigInt, "updated_ms"),
            ("sent_ms", BigInt, "sent_ms"),
        ],
        on_conflict: "",
        shift: Some("interactions"),
    },
    Table {
        name: "interaction_events",
        columns: &[
            ("id", BigInt, "id + {events}"),
            ("interaction_id", BigInt, "interaction_id + {interactions}"),
            ("at_ms", BigInt, "at_ms"),
            ("status", Text, "status"),
            ("detail", Text, "detail"),
        ],
        on_conflict: "",
        shift: Some("events"),
    },
    Table {
        name: "outbox",
        columns: &[
            ("id", BigInt, "id + {outbox}"),
            ("interaction_id", BigInt, "interaction_id + {interactions}"),
            ("proxy_iccid", Text, "proxy_iccid"),
            ("to_number", Text, "to_number"),
            ("body", Text, "body"),
            // A send the stopped appliance had started goes back in the
            // queue (at most one duplicate, as after a crash).
            (
                "state",
                Text,
                "CASE state WHEN 'sending' THEN 'queued' ELSE state END",
            ),
            ("attempts", Int, "attempts"),
            ("next_attempt_ms", BigInt, "next_attempt_ms"),
            ("last_error", Text, "last_error"),
            ("message_refs", Text, "message_refs"),
            ("created_ms", BigInt, "created_ms"),
            ("sent_ms", BigInt, "sent_ms"),
        ],
        on_conflict: "",
        shift: Some("outbox"),
    },
    Table {
        name: "inbound_parts",
        columns: &[
            ("id", BigInt, "id + {inbound}"),
            ("proxy_iccid", Text, "proxy_iccid"),
            ("sender", Text, "sender"),
            ("storage", Text, "storage"),
            ("storage_index", Int, "storage_index"),
            ("pdu_hex", Text, "pdu_hex"),
            ("concat_ref", Int, "concat_ref"),
            ("concat_total", Int, "concat_total"),
            ("concat_seq", Int, "concat_seq"),
            ("text", Text, "text"),
            ("received_ms", BigInt, "received_ms"),
            ("interaction_id", BigInt, "interaction_id + {interactions}"),
        ],
        on_conflict: "ON CONFLICT DO NOTHING",
        shift: Some("inbound"),
    },
    // The appliance's pending callbacks stay its own: it resumes them.
    Table {
        name: "callback_deliveries",
        columns: &[
            ("id", BigInt, "id + {callbacks}"),
            ("appliance_id", BigInt, "{appliance}"),
            ("kind", Text, "kind"),
            ("body", Text, "body"),
            ("attempts", Int, "attempts"),
            ("next_attempt_ms", BigInt, "next_attempt_ms"),
            ("last_error", Text, "last_error"),
            ("created_ms", BigInt, "created_ms"),
        ],
        on_conflict: "",
        shift: Some("callbacks"),
    },
    Table {
        name: "outbox_sends",
        columns: &[
            ("proxy_iccid", Text, "proxy_iccid"),
            ("at_ms", BigInt, "at_ms"),
        ],
        on_conflict: "",
        shift: None,
    },
    // The Twilio facade: one for the fleet from now on.
    Table {
        name: "twilio_services",
        columns: &[
            ("sid", Text, "sid"),
            ("unique_name", Text, "unique_name"),
            ("default_ttl", BigInt, "default_ttl"),
            ("callback_url", Text, "callback_url"),
            ("intercept_callback_url", Text, "intercept_callback_url"),
            (
                "out_of_session_callback_url",
                Text,
                "out_of_session_callback_url",
            ),
            (
                "number_selection_behavior",
                Text,
                "number_selection_behavior",
            ),
            ("geo_match_level", Text, "geo_match_level"),
            ("created_ms", BigInt, "created_ms"),
            ("updated_ms", BigInt, "updated_ms"),
        ],
        on_conflict: "",
        shift: None,
    },
    Table {
        name: "twilio_numbers",
        columns: &[
            ("iccid", Text, "iccid"),
            ("service_sid", Text, "service_sid"),
            ("is_reserved", Bool, "is_reserved"),
            ("created_ms", BigInt, "created_ms"),
            ("updated_ms", BigInt, "updated_ms"),
        ],
        on_conflict: "",
        shift: None,
    },
    Table {
        name: "twilio_sessions",
        columns: &[
            ("sid", Text, "sid"),
            ("service_sid", Text, "service_sid"),
            ("session_id", Text, "session_id"),
            ("unique_name", Text, "unique_name"),
            ("ttl", BigInt, "ttl"),
            ("expiry_ms", BigInt, "expiry_ms"),
            ("mode", Text, "mode"),
            ("closed_ms", BigInt, "closed_ms"),
            ("deleted_ms", BigInt, "deleted_ms"),
            ("created_ms", BigInt, "created_ms"),
            ("updated_ms", BigInt, "updated_ms"),
        ],
        on_conflict: "",
        shift: None,
    },
    Table {
        name: "twilio_participants",
        columns: &[
            ("sid", Text, "sid"),
            ("session_sid", Text, "session_sid"),
            ("position", SmallInt, "position"),
            ("identifier", Text, "identifier"),
            ("friendly_name", Text, "friendly_name"),
            ("proxy_iccid", Text, "proxy_iccid"),
            ("created_ms", BigInt, "created_ms"),
            ("deleted_ms", BigInt, "deleted_ms"),
        ],
        on_conflict: "",
        shift: None,
    },
    // Held messages and status callbacks are due at once on the fleet, as
    // after a restart on SQLite (no lease of the stopped daemon survives
    // the move): the first appliance that looks asks again.
    Table {
        name: "twilio_holds",
        columns: &[
            ("interaction_id", BigInt, "interaction_id + {interactions}"),
            ("kind", Text, "kind"),
            ("service_sid", Text, "service_sid"),
            ("attempts", Int, "attempts"),
            ("next_ms", BigInt, "MIN(next_ms, created_ms)"),
            ("created_ms", BigInt, "created_ms"),
        ],
        on_conflict: "",
        shift: None,
    },
    Table {
        name: "twilio_callbacks",
        columns: &[
            ("id", BigInt, "id + {twilio_callbacks}"),
            ("url", Text, "url"),
            ("body", Text, "body"),
            ("attempts", Int, "attempts"),
            ("next_ms", BigInt, "MIN(next_ms, created_ms)"),
            ("created_ms", BigInt, "created_ms"),
        ],
        on_conflict: "",
        shift: Some("twilio_callbacks"),
    },
];

/// SQLite tables that are not moved, and why (said in the report). Every
/// table both schemas have moves today.
pub(super) const NOT_MOVED: &[(&str, &str)] = &[];
