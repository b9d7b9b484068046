//! What is published: the appliance's and each SIM's state (retained JSON
//! that Home Assistant's sensors read) and events (the JSON of
//! `/api/v1/events`, with the interaction they concern).
//!
//! Participants' numbers appear only in events about an interaction, masked
//! as a viewer token sees them (`+44*******456`) unless `publish_numbers`;
//! message texts only with `publish_bodies`. The state carries no
//! participant at all: only the appliance's own proxy numbers.
//!
//! Pure: JSON built from data, no I/O.

use serde::Serialize;
use serde_json::{Value, json};

use crate::api::pool::NumberView;
use crate::events::{Envelope, Event};
use crate::number::PhoneNumber;
use crate::store::ExportedInteraction;

/// One SIM, as `<prefix>/sim/<sim>/state` has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimState {
    /// Its id in the pool: the ICCID, or `imsi:<IMSI>`.
    pub id: String,
    pub iccid: Option<String>,
    /// The proxy number.
    pub msisdn: String,
    pub imei: Option<String>,
    pub model: Option<String>,
    /// `up`, `unplugged`, `resetting`, `quarantined`, `locked`, `unknown`.
    pub state: String,
    pub healthy: bool,
    /// Allocation may give it new sessions.
    pub enabled: bool,
    pub draining: bool,
    pub signal_dbm: Option<i32>,
    pub registration: String,
    pub operator: String,
    pub last_error: String,
    pub queue_depth: u32,
    /// Since the SIM joined the pool.
    pub sent: u32,
    pub received: u32,
    pub failed: u32,
    pub open_sessions: u32,
    /// Its budgets: sent in the last 24 hours, distinct recipients this
    /// month, each with its limit (null: none).
    pub messages_today: u32,
    pub messages_today_limit: Option<u32>,
    pub recipients_this_month: u32,
    pub recipients_this_month_limit: Option<u32>,
}

impl SimState {
    pub fn new(view: &NumberView) -> Self {
        Self {
            id: view.id.clone(),
            iccid: view.iccid.clone(),
            msisdn: view.msisdn.clone(),
            imei: view.imei.clone(),
            model: view.model.clone(),
            state: view.state.clone(),
            healthy: view.healthy,
            enabled: view.enabled,
            draining: view.draining,
            signal_dbm: view.signal_dbm,
            registration: view.registration.clone(),
            operator: view.operator.clone(),
            last_error: view.last_error.clone(),
            queue_depth: view.queue_depth,
            sent: view.sent,
            received: view.received,
            failed: view.failed,
            open_sessions: view.open_sessions,
            messages_today: view.budgets.messages_today.used,
            messages_today_limit: view.budgets.messages_today.limit,
            recipients_this_month: view.budgets.recipients_this_month.used,
            recipients_this_month_limit: view.budgets.recipients_this_month.limit,
        }
    }

    /// Its `availability`: online while its modem is up.
    pub fn availability(&self) -> &'static str {
        if self.state == "up" {
            "online"
        } else {
            "offline"
        }
    }
}

/// The appliance, as `<prefix>/state` has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplianceState {
    pub name: String,
    pub version: &'static str,
    /// SIMs the bank has seen since the daemon started, and those up now.
    pub sims: usize,
    pub sims_up: usize,
    pub open_sessions: u32,
    /// SMS relayed in sessions in the last 24 hours.
    pub messages_relayed_today: u32,
    /// How far the system clock is ahead of the network's time (null:
    /// unknown).
    pub clock_offset_seconds: Option<i64>,
    /// The system clock looks wrong: nothing synchronises it and the
    /// network disagrees by more than a minute (as on `/healthz`).
    pub clock_suspect: bool,
    /// Events not published since the daemon started (queue full).
    pub events_dropped: u64,
}

/// The interaction an event is about, if any.
pub fn interaction_of(event: &Event) -> Option<i64> {
    match event {
        Event::MessageRelayed { interaction_id, .. }
        | Event::MessageDelivered { interaction_id, .. }
        | Event::MessageFailed { interaction_id, .. }
        | Event::MessageBlocked { interaction_id, .. } => Some(*interaction_id),
        _ => None,
    }
}

/// How much of a participant may be published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disclosure {
    /// Real numbers instead of masked ones.
    pub numbers: bool,
    /// Message texts.
    pub bodies: bool,
}

fn shown(number: &Option<PhoneNumber>, disclosure: Disclosure) -> Value {
    match number {
        Some(n) if disclosure.numbers => n.e164().into(),
        Some(n) => n.masked().into(),
        // Out of session, or erased.
        None => Value::Null,
    }
}

/// An event's JSON: as on `/api/v1/events`, plus the interaction it
/// concerns (who to whom through which proxy, masked unless disclosed; the
/// text only when disclosed).
pub fn event(
    envelope: &Envelope,
    interaction: Option<&ExportedInteraction>,
    disclosure: Disclosure,
) -> Value {
    let mut value = serde_json::to_value(envelope).unwrap_or_else(|_| json!({}));
    if let (Some(record), Some(object)) = (interaction, value.as_object_mut()) {
        let mut about = json!({
            "kind": record.kind,
            "proxy_number": record.proxy_number,
            "from": shown(&record.from_number, disclosure),
            "to": shown(&record.to_number, disclosure),
            "status": record.status,
            "parts": record.parts,
        });
        if disclosure.bodies
            && let (Some(body), Some(about)) = (&record.body, about.as_object_mut())
        {
            about.insert("body".into(), body.clone().into());
        }
        object.insert("interaction".into(), about);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ExportedInteraction {
        ExportedInteraction {
            id: 7,
            session_id: Some("ses_1".into()),
            proxy_number: Some("+447700900001".into()),
            kind: "sms".into(),
            from_position: Some(0),
            from_number: Some(PhoneNumber::from_e164("+447911123456").unwrap()),
            to_number: Some(PhoneNumber::from_e164("+447912345678").unwrap()),
            status: "queued".into(),
            reason: String::new(),
            outcome: None,
            parts: 1,
            incomplete: false,
            body: Some("meet at 6".into()),
            created_ms: 0,
            answered_ms: None,
            ended_ms: None,
            duration_ms: None,
        }
    }

    fn relayed() -> Envelope {
        Envelope {
            id: 3,
            at: time::macros::datetime!(2026-12-06 18:00 UTC),
            event: Event::MessageRelayed {
                session_id: Some("ses_1".into()),
                interaction_id: 7,
                parts: 1,
            },
            appliance: None,
        }
    }

    #[test]
    fn participants_are_masked_and_texts_left_out_unless_disclosed() {
        let hidden = Disclosure {
            numbers: false,
            bodies: false,
        };
        let json = event(&relayed(), Some(&record()), hidden);
        assert_eq!(json["kind"], "message_relayed");
        assert_eq!(json["session_id"], "ses_1");
        assert_eq!(json["interaction"]["from"], "+44*******456");
        assert_eq!(json["interaction"]["proxy_number"], "+447700900001");
        let text = json.to_string();
        assert!(!text.contains("7911123456"), "{text}");
        assert!(!text.contains("7912345678"), "{text}");
        assert!(!text.contains("meet at 6"), "{text}");
        let open = Disclosure {
            numbers: true,
            bodies: true,
        };
        let json = event(&relayed(), Some(&record()), open);
        assert_eq!(json["interaction"]["from"], "+447911123456");
        assert_eq!(json["interaction"]["body"], "meet at 6");
    }

    #[test]
    fn an_event_without_an_interaction_is_the_api_s_json() {
        let envelope = Envelope {
            event: Event::SessionClosed {
                session_id: "ses_1".into(),
            },
            ..relayed()
        };
        let hidden = Disclosure {
            numbers: false,
            bodies: false,
        };
        assert_eq!(interaction_of(&envelope.event), None);
        assert_eq!(
            event(&envelope, None, hidden),
            serde_json::to_value(&envelope).unwrap()
        );
    }
}
