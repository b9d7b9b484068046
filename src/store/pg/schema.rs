//! The PostgreSQL schema, as numbered migrations applied at start in one
//! transaction each, under an advisory lock (two appliances starting at the
//! same instant do not both migrate). A database written by a newer simmask
//! is refused, as on SQLite.
//!
//! Never edit a migration once released: add the next one.

use super::super::StoreError;
use super::pg_error;

/// The fleet's tables. Times are milliseconds since the Unix epoch, as in
/// the SQLite store, so both share their row shapes.
const V1_FLEET: &str = r#"
CREATE TABLE appliances (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    first_seen_ms BIGINT NOT NULL,
    heartbeat_ms  BIGINT NOT NULL
);

CREATE TABLE modems (
    imei          TEXT PRIMARY KEY,
    appliance_id  BIGINT REFERENCES appliances(id),
    manufacturer  TEXT NOT NULL DEFAULT '',
    model         TEXT NOT NULL DEFAULT '',
    revision      TEXT NOT NULL DEFAULT '',
    profile       TEXT NOT NULL DEFAULT 'generic',
    port          TEXT,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL
);

-- The SIM is the unit of the pool; the appliance that holds it owns it.
CREATE TABLE sims (
    iccid         TEXT PRIMARY KEY,
    msisdn        TEXT NOT NULL UNIQUE,
    imsi          TEXT NOT NULL DEFAULT '',
    modem_imei    TEXT REFERENCES modems(imei),
    appliance_id  BIGINT REFERENCES appliances(id),
    enabled       BOOLEAN NOT NULL DEFAULT TRUE,
    reserved_for  TEXT,
    draining      BOOLEAN NOT NULL DEFAULT FALSE,
    front_desk    TEXT,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL
);

CREATE TABLE sim_status (
    iccid        TEXT PRIMARY KEY REFERENCES sims(iccid) ON DELETE CASCADE,
    state        TEXT NOT NULL,
    healthy      BOOLEAN NOT NULL,
    signal_dbm   INTEGER,
    registration TEXT NOT NULL DEFAULT '',
    roaming      BOOLEAN NOT NULL DEFAULT FALSE,
    operator     TEXT NOT NULL DEFAULT '',
    voice_method TEXT,
    port         TEXT NOT NULL DEFAULT '',
    last_error   TEXT NOT NULL DEFAULT '',
    updated_ms   BIGINT NOT NULL
);

CREATE TABLE sim_storage (
    iccid      TEXT PRIMARY KEY REFERENCES sims(iccid) ON DELETE CASCADE,
    storage    TEXT NOT NULL,
    used       INTEGER NOT NULL CHECK (used >= 0),
    total      INTEGER NOT NULL CHECK (total >= 0),
    updated_ms BIGINT NOT NULL
);

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    proxy_iccid      TEXT NOT NULL REFERENCES sims(iccid),
    mode             TEXT NOT NULL CHECK (mode IN ('sms', 'voice', 'both')),
    status           TEXT NOT NULL CHECK (status IN ('open', 'closed', 'expired')),
    label            TEXT,
    opened_ms        BIGINT NOT NULL,
    expires_ms       BIGINT,
    idle_ttl_s       BIGINT CHECK (idle_ttl_s > 0),
    last_activity_ms BIGINT NOT NULL,
    ended_ms         BIGINT,
    close_reason     TEXT,
    fallback_number  TEXT,
    -- An ended session says why; an open one does not.
    CHECK ((status = 'open') = (close_reason IS NULL))
);
CREATE INDEX sessions_status_opened ON sessions(status, opened_ms);
CREATE INDEX sessions_proxy_open ON sessions(proxy_iccid) WHERE status = 'open';

-- `open` mirrors the session's status so that the masking rule is a
-- constraint of the database: on one proxy a number is in at most one open
-- session, whichever appliance wrote it.
CREATE TABLE participants (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    position    SMALLINT NOT NULL CHECK (position IN (0, 1)),
    number      TEXT NOT NULL,
    proxy_iccid TEXT NOT NULL REFERENCES sims(iccid),
    open        BOOLEAN NOT NULL,
    hub_code    TEXT,
    PRIMARY KEY (session_id, position)
);
CREATE UNIQUE INDEX participants_open_route
    ON participants(proxy_iccid, number) WHERE open;
CREATE INDEX participants_number ON participants(number);

CREATE TABLE opt_outs (
    number TEXT PRIMARY KEY,
    at_ms  BIGINT NOT NULL
);

CREATE TABLE sim_recipients (
    iccid  TEXT NOT NULL,
    month  TEXT NOT NULL,
    number TEXT NOT NULL,
    PRIMARY KEY (iccid, month, number)
);

CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'viewer', 'metrics')),
    hash         TEXT NOT NULL UNIQUE,
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT,
    last_used_ms BIGINT,
    revoked_ms   BIGINT
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens(name) WHERE revoked_ms IS NULL;

CREATE TABLE audit (
    id           BIGSERIAL PRIMARY KEY,
    at_ms        BIGINT NOT NULL,
    appliance_id BIGINT REFERENCES appliances(id),
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    object       TEXT NOT NULL,
    detail       TEXT NOT NULL DEFAULT ''
);

CREATE TABLE interactions (
    id            BIGSERIAL PRIMARY KEY,
    session_id    TEXT REFERENCES sessions(id) ON DELETE SET NULL,
    proxy_iccid   TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('sms', 'call')),
    from_position SMALLINT CHECK (from_position IN (0, 1)),
    from_number   TEXT,
    to_number     TEXT,
    status        TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT '',
    rule          TEXT,
    body          TEXT,
    parts         INTEGER NOT NULL DEFAULT 1,
    incomplete    BOOLEAN NOT NULL DEFAULT FALSE,
    answered_ms   BIGINT,
    ended_ms      BIGINT,
    duration_ms   BIGINT,
    outcome       TEXT,
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL
);
CREATE INDEX interactions_by_session ON interactions(session_id, created_ms);

CREATE TABLE interaction_events (
    id             BIGSERIAL PRIMARY KEY,
    interaction_id BIGINT NOT NULL REFERENCES interactions(id) ON DELETE CASCADE,
    at_ms          BIGINT NOT NULL,
    status         TEXT NOT NULL,
    detail         TEXT NOT NULL DEFAULT ''
);

-- A message waits for its own proxy: whichever appliance holds that SIM
-- sends it (the SIM's rows move with it).
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    interaction_id  BIGINT NOT NULL REFERENCES interactions(id) ON DELETE CASCADE,
    proxy_iccid     TEXT NOT NULL,
    to_number       TEXT,
    body            TEXT,
    state           TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    message_refs    TEXT NOT NULL DEFAULT '',
    created_ms      BIGINT NOT NULL,
    sent_ms         BIGINT
);
CREATE INDEX outbox_due ON outbox(proxy_iccid, state, next_attempt_ms);

-- Received parts, kept by the appliance that holds the SIM (the inbound
-- transaction is not on PostgreSQL yet: the table is the relay's to come,
-- and the pool's counters read it).
CREATE TABLE inbound_parts (
    id             BIGSERIAL PRIMARY KEY,
    proxy_iccid    TEXT NOT NULL,
    sender         TEXT,
    storage        TEXT,
    storage_index  INTEGER,
    pdu_hex        TEXT,
    concat_ref     INTEGER,
    concat_total   INTEGER,
    concat_seq     INTEGER,
    text           TEXT,
    received_ms    BIGINT NOT NULL,
    interaction_id BIGINT REFERENCES interactions(id) ON DELETE SET NULL
);
CREATE UNIQUE INDEX inbound_parts_dedup ON inbound_parts(proxy_iccid, pdu_hex);

CREATE TABLE outbox_sends (
    proxy_iccid TEXT NOT NULL,
    at_ms       BIGINT NOT NULL
);
CREATE INDEX outbox_sends_by_sim ON outbox_sends(proxy_iccid, at_ms);

-- Events of every appliance, in order; each insert is also announced with
-- NOTIFY so that every API can follow the fleet's.
CREATE TABLE fleet_events (
    id           BIGSERIAL PRIMARY KEY,
    appliance_id BIGINT NOT NULL REFERENCES appliances(id),
    at_ms        BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL
);
"#;

/// The daemons' runs, counted fleet-wide: each start takes the next run
/// number and numbers its events from it, so an event id never repeats
/// across restarts (as `event_runs` does on SQLite).
const V2_EVENT_RUNS: &str = r#"
CREATE SEQUENCE event_runs START 1;
"#;

/// The inbound relay's rows beside the received parts: the auto-reply's
/// rate limit, the block list (one for the fleet) and the hubs (read by the
/// relay's rails and hub routing), and the keyword a number opted out with.
const V3_INBOUND: &str = r#"
CREATE TABLE auto_replies (
    proxy_iccid TEXT NOT NULL,
    sender      TEXT NOT NULL,
    last_ms     BIGINT NOT NULL,
    PRIMARY KEY (proxy_iccid, sender)
);

CREATE TABLE blocked_numbers (
    number TEXT PRIMARY KEY,
    reason TEXT NOT NULL DEFAULT '',
    actor  TEXT NOT NULL,
    at_ms  BIGINT NOT NULL
);

CREATE TABLE hubs (
    id         TEXT PRIMARY KEY,
    number     TEXT NOT NULL UNIQUE,
    label      TEXT,
    created_ms BIGINT NOT NULL
);

ALTER TABLE opt_outs ADD COLUMN keyword TEXT NOT NULL DEFAULT '';

-- The reassembly sweep looks for parts not yet relayed.
CREATE INDEX inbound_parts_waiting ON inbound_parts(proxy_iccid, sender, concat_ref)
    WHERE interaction_id IS NULL;
"#;

/// The operators' part of the fleet: what `simmask migrate` moved in from
/// an appliance's SQLite file (its row is the marker that refuses a second
/// migration into this database).
const V4_IMPORTS: &str = r#"
CREATE TABLE sqlite_imports (
    id            BIGSERIAL PRIMARY KEY,
    appliance_id  BIGINT NOT NULL REFERENCES appliances(id),
    source        TEXT NOT NULL,
    sqlite_schema INTEGER NOT NULL,
    at_ms         BIGINT NOT NULL,
    moved         TEXT NOT NULL
);
"#;

/// API callbacks' deliveries not yet made. Callbacks act on the appliance
/// where the event happened, so each row is that appliance's: it alone
/// resumes them after a restart, and the cap counts its own rows.
const V5_CALLBACKS: &str = r#"
CREATE TABLE callback_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    appliance_id    BIGINT NOT NULL REFERENCES appliances(id),
    kind            TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_ms BIGINT NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    created_ms      BIGINT NOT NULL
);
CREATE INDEX callback_deliveries_by_appliance ON callback_deliveries(appliance_id, id);
"#;

/// Hubs' sessions, as SQLite's schema v11 keeps them: a hub may be in
/// many open sessions on one proxy, each told apart by the code on the
/// hub's participant row. The masking rule stays a constraint for every
/// row without a code; a hub's codes are unique among its open sessions on
/// a proxy, by their keys on a phone keypad (ITU-T E.161, as
/// `masking::hub::keys`; the same spelling has the same keys); only a
/// hub's open rows have a code, and always one; a session has at most one
/// hub side (two hubs are never paired). Allocation draws the codes under
/// the hub's advisory lock; these refuse whatever slips past, whichever
/// appliance wrote it.
const V6_HUBS: &str = r#"
DROP INDEX participants_open_route;
CREATE UNIQUE INDEX participants_open_route
    ON participants(proxy_iccid, number) WHERE open AND hub_code IS NULL;
CREATE UNIQUE INDEX participants_open_hub_code
    ON participants(proxy_iccid, number,
        translate(hub_code, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz',
                            '2223334445556667777888999922233344455566677778889999'))
    WHERE open AND hub_code IS NOT NULL;
CREATE UNIQUE INDEX participants_one_hub_side
    ON participants(session_id) WHERE hub_code IS NOT NULL;

CREATE FUNCTION participants_hub_side() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.open AND (NEW.hub_code IS NOT NULL)
                    <> EXISTS (SELECT 1 FROM hubs WHERE number = NEW.number) THEN
        RAISE EXCEPTION 'hub: only a hub''s side of a session has a code, and always one'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER participants_hub_side BEFORE INSERT OR UPDATE OF open, hub_code
    ON participants FOR EACH ROW EXECUTE FUNCTION participants_hub_side();
"#;

/// The Twilio Proxy facade, one for the fleet: services, their numbers,
/// the sessions and participants created through it (a session that has
/// both participants points at the fleet's session), the held messages
/// waiting for a service's intercept or out-of-session callback, and the
/// status callbacks not yet delivered. Holds and callbacks are claimed by
/// any appliance with `FOR UPDATE SKIP LOCKED` and a lease; `leased_by`
/// names the appliance whose lease it is, so that a restart takes back only
/// its own.
const V7_TWILIO: &str = r#"
CREATE TABLE twilio_services (
    sid                         TEXT PRIMARY KEY,
    unique_name                 TEXT UNIQUE,
    default_ttl                 BIGINT CHECK (default_ttl >= 0),
    callback_url                TEXT,
    intercept_callback_url      TEXT,
    out_of_session_callback_url TEXT,
    number_selection_behavior   TEXT NOT NULL DEFAULT 'prefer-sticky'
        CHECK (number_selection_behavior IN ('prefer-sticky', 'avoid-sticky')),
    geo_match_level             TEXT NOT NULL DEFAULT 'country',
    created_ms                  BIGINT NOT NULL,
    updated_ms                  BIGINT NOT NULL
);

-- A SIM belongs to at most one service.
CREATE TABLE twilio_numbers (
    iccid       TEXT PRIMARY KEY REFERENCES sims(iccid) ON DELETE CASCADE,
    service_sid TEXT NOT NULL REFERENCES twilio_services(sid) ON DELETE CASCADE,
    is_reserved BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
CREATE INDEX twilio_numbers_service ON twilio_numbers(service_sid);

CREATE TABLE twilio_sessions (
    sid         TEXT PRIMARY KEY,
    service_sid TEXT NOT NULL REFERENCES twilio_services(sid) ON DELETE CASCADE,
    session_id  TEXT UNIQUE REFERENCES sessions(id) ON DELETE CASCADE,
    unique_name TEXT,
    ttl         BIGINT CHECK (ttl >= 0),
    expiry_ms   BIGINT,
    mode        TEXT NOT NULL CHECK (mode IN ('sms', 'voice', 'both')),
    closed_ms   BIGINT,
    deleted_ms  BIGINT,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    UNIQUE (service_sid, unique_name)
);
CREATE INDEX twilio_sessions_service ON twilio_sessions(service_sid, created_ms);
CREATE INDEX twilio_sessions_pending ON twilio_sessions(created_ms)
    WHERE session_id IS NULL AND closed_ms IS NULL AND deleted_ms IS NULL;

CREATE TABLE twilio_participants (
    sid           TEXT PRIMARY KEY,
    session_sid   TEXT NOT NULL REFERENCES twilio_sessions(sid) ON DELETE CASCADE,
    position      SMALLINT NOT NULL CHECK (position IN (0, 1)),
    identifier    TEXT,
    friendly_name TEXT,
    proxy_iccid   TEXT,
    created_ms    BIGINT NOT NULL,
    deleted_ms    BIGINT,
    UNIQUE (session_sid, position)
);

CREATE TABLE twilio_holds (
    interaction_id BIGINT PRIMARY KEY REFERENCES interactions(id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('intercept', 'out_of_session')),
    service_sid    TEXT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    next_ms        BIGINT NOT NULL,
    created_ms     BIGINT NOT NULL,
    leased_by      BIGINT REFERENCES appliances(id)
);
CREATE INDEX twilio_holds_due ON twilio_holds(next_ms);

CREATE TABLE twilio_callbacks (
    id         BIGSERIAL PRIMARY KEY,
    url        TEXT NOT NULL,
    body       TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_ms    BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    leased_by  BIGINT REFERENCES appliances(id)
);
CREATE INDEX twilio_callbacks_due ON twilio_callbacks(next_ms);

-- A message queued (or released) for a SIM wakes the appliance that holds
-- it, whichever appliance queued it: the facade's MessageInteractions and
-- the held messages' decisions are made through any appliance.
CREATE FUNCTION simmask_outbox_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('simmask_outbox', NEW.proxy_iccid);
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_queued AFTER INSERT ON outbox
    FOR EACH ROW WHEN (NEW.state = 'queued') EXECUTE FUNCTION simmask_outbox_wake();
CREATE TRIGGER outbox_released AFTER UPDATE OF next_attempt_ms ON outbox
    FOR EACH ROW WHEN (NEW.state = 'queued' AND NEW.next_attempt_ms < OLD.next_attempt_ms)
    EXECUTE FUNCTION simmask_outbox_wake();
"#;

/// Whose clock wrote a session's deadlines: each appliance keeps its own
/// time (a Pi has no real-time clock), and when one steps its clock it
/// moves the deadlines it wrote, not the other appliances'. The pool's
/// connections name their appliance (`simmask.appliance`), and the trigger
/// stamps every write of `expires_ms` or `last_activity_ms` with it,
/// whichever statement made it.
const V8_SESSION_CLOCKS: &str = r#"
ALTER TABLE sessions ADD COLUMN expires_by BIGINT, ADD COLUMN activity_by BIGINT;

CREATE FUNCTION sessions_clock_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    me BIGINT := (SELECT id FROM appliances
                  WHERE name = current_setting('simmask.appliance', true));
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.expires_by := me;
        NEW.activity_by := me;
    ELSE
        IF NEW.expires_ms IS DISTINCT FROM OLD.expires_ms THEN
            NEW.expires_by := me;
        END IF;
        IF NEW.last_activity_ms IS DISTINCT FROM OLD.last_activity_ms THEN
            NEW.activity_by := me;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER sessions_clock_stamp BEFORE INSERT OR UPDATE OF expires_ms, last_activity_ms
    ON sessions FOR EACH ROW EXECUTE FUNCTION sessions_clock_stamp();
"#;

/// SQLite's `SENT_TIMES`: the SMSC's time of each received message, which
/// loop protection orders a session's messages by; NULL for the rest and
/// for the rows before (their arrival time stands in).
const V9_SENT_TIMES: &str = r#"
ALTER TABLE interactions ADD COLUMN sent_ms BIGINT;
"#;

/// The open sessions per SIM, kept by the database (as SQLite's `sim_load`
/// of its v13): every opening counted all open sessions per SIM, a cost
/// that grew with the fleet's sessions. Statement-level triggers apply one
/// statement's changes together, in ICCID order, so two writers that touch
/// several SIMs (two appliances' expiry sweeps) take the counters' row
/// locks in the same order and never deadlock on them. No `CHECK (>= 0)`:
/// PostgreSQL checks an `ON CONFLICT` row's proposed values before the
/// conflict, and a decrement is proposed as a negative row.
/// `outbox_sent` lets an opening count one SIM's sends of the last day up
/// to its limit (SQLite's index of the same name).
const V10_SIM_LOAD: &str = r#"
CREATE TABLE sim_load (
    iccid         TEXT PRIMARY KEY,
    open_sessions BIGINT NOT NULL
);
INSERT INTO sim_load (iccid, open_sessions)
    SELECT proxy_iccid, COUNT(*) FROM sessions WHERE status = 'open' GROUP BY proxy_iccid;

CREATE FUNCTION sim_load_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO sim_load (iccid, open_sessions)
            SELECT proxy_iccid, COUNT(*) FROM new_rows WHERE status = 'open'
            GROUP BY proxy_iccid ORDER BY proxy_iccid
            ON CONFLICT (iccid) DO UPDATE
                SET open_sessions = sim_load.open_sessions + EXCLUDED.open_sessions;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO sim_load (iccid, open_sessions)
            SELECT proxy_iccid, -COUNT(*) FROM old_rows WHERE status = 'open'
            GROUP BY proxy_iccid ORDER BY proxy_iccid
            ON CONFLICT (iccid) DO UPDATE
                SET open_sessions = sim_load.open_sessions + EXCLUDED.open_sessions;
    ELSE
        INSERT INTO sim_load (iccid, open_sessions)
            SELECT iccid, SUM(delta) FROM (
                SELECT proxy_iccid AS iccid, -1 AS delta FROM old_rows WHERE status = 'open'
                UNION ALL
                SELECT proxy_iccid, 1 FROM new_rows WHERE status = 'open'
            ) AS changes
            GROUP BY iccid HAVING SUM(delta) <> 0 ORDER BY iccid
            ON CONFLICT (iccid) DO UPDATE
                SET open_sessions = sim_load.open_sessions + EXCLUDED.open_sessions;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sim_load_insert AFTER INSERT ON sessions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sim_load_apply();
CREATE TRIGGER sim_load_update AFTER UPDATE ON sessions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sim_load_apply();
CREATE TRIGGER sim_load_delete AFTER DELETE ON sessions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sim_load_apply();

CREATE INDEX outbox_sent ON outbox(proxy_iccid, sent_ms) WHERE sent_ms IS NOT NULL;
"#;

/// Every migration, in order; the schema's version is their count.
const ALL: &[&str] = &[
    V1_FLEET,
    V2_EVENT_RUNS,
    V3_INBOUND,
    V4_IMPORTS,
    V5_CALLBACKS,
    V6_HUBS,
    V7_TWILIO,
    V8_SESSION_CLOCKS,
    V9_SENT_TIMES,
    V10_SIM_LOAD,
];

/// The schema version this simmask writes.
pub fn latest_version() -> usize {
    ALL.len()
}

/// An arbitrary constant naming the migration lock among advisory locks.
const MIGRATION_LOCK: i64 = 0x5349_4d4d_4153_4b01;

/// Applies the missing migrations; refuses a newer schema.
pub(in crate::store) async fn migrate(
    client: &mut tokio_postgres::Client,
) -> Result<usize, StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS simmask_schema (
             version    INTEGER PRIMARY KEY,
             applied_ms BIGINT NOT NULL
         )",
    )
    .await
    .map_err(pg_error)?;
    let found: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM simmask_schema", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    let found = usize::try_from(found).unwrap_or(0);
    let known = latest_version();
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    let now = super::super::to_ms(time::OffsetDateTime::now_utc());
    for (index, sql) in ALL.iter().enumerate().skip(found) {
        tx.batch_execute(sql).await.map_err(pg_error)?;
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO simmask_schema (version, applied_ms) VALUES ($1, $2)",
            &[&version, &now],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(known)
}

/// The schema version the database is at.
pub(in crate::store) async fn current_version(
    client: &tokio_postgres::Client,
) -> Result<usize, StoreError> {
    let version: i32 = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM simmask_schema", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    Ok(usize::try_from(version).unwrap_or(0))
}
