//! The schema, as numbered migrations. Each runs in a transaction; a database
//! written by a newer simmask (a higher `user_version`) is refused rather
//! than used with a schema this binary does not know.
//!
//! Never edit a migration once released: add the next one.

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations, SchemaVersion};

use super::StoreError;

/// Version 1: the pool (modems, SIMs), sessions and their participants, API
/// tokens and the audit trail.
const V1_POOL_AND_SESSIONS: &str = r#"
CREATE TABLE modems (
    imei          TEXT PRIMARY KEY,
    manufacturer  TEXT NOT NULL DEFAULT '',
    model         TEXT NOT NULL DEFAULT '',
    revision      TEXT NOT NULL DEFAULT '',
    profile       TEXT NOT NULL DEFAULT 'generic',
    port          TEXT,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
) STRICT;

-- The SIM, not the modem or the tty, is the unit of the pool: it keeps its
-- sessions when moved to another port or modem.
CREATE TABLE sims (
    iccid         TEXT PRIMARY KEY,
    msisdn        TEXT NOT NULL UNIQUE,
    imsi          TEXT NOT NULL DEFAULT '',
    modem_imei    TEXT REFERENCES modems(imei),
    enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    proxy_iccid      TEXT NOT NULL REFERENCES sims(iccid),
    mode             TEXT NOT NULL CHECK (mode IN ('sms', 'voice', 'both')),
    status           TEXT NOT NULL CHECK (status IN ('open', 'closed', 'expired')),
    label            TEXT,
    opened_ms        INTEGER NOT NULL,
    expires_ms       INTEGER,
    idle_ttl_s       INTEGER CHECK (idle_ttl_s > 0),
    last_activity_ms INTEGER NOT NULL,
    ended_ms         INTEGER
) STRICT;
CREATE INDEX sessions_status_opened ON sessions(status, opened_ms);
CREATE INDEX sessions_proxy_open ON sessions(proxy_iccid) WHERE status = 'open';

-- One row per participant. `open` mirrors the session's status so that the
-- masking rule is also a database constraint: on one proxy a number is in
-- at most one open session.
CREATE TABLE participants (
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL CHECK (position IN (0, 1)),
    number      TEXT NOT NULL,
    proxy_iccid TEXT NOT NULL,
    open        INTEGER NOT NULL CHECK (open IN (0, 1)),
    PRIMARY KEY (session_id, position)
) STRICT;
CREATE UNIQUE INDEX participants_open_route
    ON participants(proxy_iccid, number) WHERE open = 1;
CREATE INDEX participants_number ON participants(number);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    hash         TEXT NOT NULL UNIQUE,
    created_ms   INTEGER NOT NULL,
    last_used_ms INTEGER,
    revoked_ms   INTEGER
) STRICT;

CREATE TABLE audit (
    id     INTEGER PRIMARY KEY,
    at_ms  INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
) STRICT;
"#;

/// Version 2: the relay: interactions (one SMS or call through a proxy) with
/// their status history, the received parts awaiting reassembly, the outbox,
/// and the out-of-session auto-reply ledger.
const V2_RELAY: &str = r#"
CREATE TABLE interactions (
    id              INTEGER PRIMARY KEY,
    -- NULL for out-of-session traffic.
    session_id      TEXT REFERENCES sessions(id) ON DELETE SET NULL,
    proxy_iccid     TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('sms', 'call')),
    -- The sending participant's position, or NULL when out of session.
    from_position   INTEGER CHECK (from_position IN (0, 1)),
    from_number     TEXT,
    to_number       TEXT,
    status          TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    -- Erased by retention; the metadata stays.
    body            TEXT,
    parts           INTEGER NOT NULL DEFAULT 1,
    incomplete      INTEGER NOT NULL DEFAULT 0 CHECK (incomplete IN (0, 1)),
    answered_ms     INTEGER,
    ended_ms        INTEGER,
    duration_ms     INTEGER,
    outcome         TEXT,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL
) STRICT;
CREATE INDEX interactions_by_session ON interactions(session_id, created_ms);

CREATE TABLE interaction_events (
    id             INTEGER PRIMARY KEY,
    interaction_id INTEGER NOT NULL REFERENCES interactions(id) ON DELETE CASCADE,
    at_ms          INTEGER NOT NULL,
    status         TEXT NOT NULL,
    detail         TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE TABLE inbound_parts (
    id             INTEGER PRIMARY KEY,
    proxy_iccid    TEXT NOT NULL,
    sender         TEXT,
    -- NULL for direct +CMT delivery.
    storage        TEXT,
    storage_index  INTEGER,
    pdu_hex        TEXT,
    concat_ref     INTEGER,
    concat_total   INTEGER,
    concat_seq     INTEGER,
    text           TEXT,
    received_ms    INTEGER NOT NULL,
    interaction_id INTEGER REFERENCES interactions(id) ON DELETE SET NULL
) STRICT;
-- The same PDU on the same SIM is one part: a message read again after a
-- crash, before its delete, must not be relayed twice.
CREATE UNIQUE INDEX inbound_parts_dedup ON inbound_parts(proxy_iccid, pdu_hex);
CREATE INDEX inbound_parts_pending ON inbound_parts(proxy_iccid, sender, concat_ref)
    WHERE interaction_id IS NULL;

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    interaction_id  INTEGER NOT NULL REFERENCES interactions(id) ON DELETE CASCADE,
    proxy_iccid     TEXT NOT NULL,
    to_number       TEXT,
    body            TEXT,
    state           TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    -- Comma-separated TP-MR values, matched by delivery reports.
    message_refs    TEXT NOT NULL DEFAULT '',
    created_ms      INTEGER NOT NULL,
    sent_ms         INTEGER
) STRICT;
CREATE INDEX outbox_due ON outbox(proxy_iccid, state, next_attempt_ms);

CREATE TABLE auto_replies (
    proxy_iccid TEXT NOT NULL,
    sender      TEXT NOT NULL,
    last_ms     INTEGER NOT NULL,
    PRIMARY KEY (proxy_iccid, sender)
) STRICT;
"#;

/// Version 3: the last known live state of each SIM, written by the daemon,
/// so that tools run beside it (`simmask session open`, `doctor`) and a
/// restarted daemon see the pool as it was.
const V3_SIM_STATUS: &str = r#"
CREATE TABLE sim_status (
    iccid         TEXT PRIMARY KEY REFERENCES sims(iccid) ON DELETE CASCADE,
    state         TEXT NOT NULL,
    healthy       INTEGER NOT NULL CHECK (healthy IN (0, 1)),
    signal_dbm    INTEGER,
    registration  TEXT NOT NULL DEFAULT '',
    roaming       INTEGER NOT NULL DEFAULT 0 CHECK (roaming IN (0, 1)),
    operator      TEXT NOT NULL DEFAULT '',
    voice_method  TEXT,
    port          TEXT NOT NULL DEFAULT '',
    last_error    TEXT NOT NULL DEFAULT '',
    updated_ms    INTEGER NOT NULL
) STRICT;
"#;

/// Version 4: one row rewritten to end a group commit (see the writer
/// thread in `store/mod.rs`).
const V4_GROUP_COMMIT: &str = r#"
CREATE TABLE durability (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    synced_ms INTEGER NOT NULL
) STRICT;
"#;

/// Tokens that can be taken back: an optional expiry, a `metrics` role for
/// scrapers, and a name that is unique among live tokens only (a revoked
/// `ops` can be replaced by a new `ops`). SQLite cannot change a CHECK
/// constraint in place, so the table is rebuilt with its rows.
const TOKEN_LIFECYCLE: &str = r#"
CREATE TABLE api_tokens_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'viewer', 'metrics')),
    hash         TEXT NOT NULL UNIQUE,
    created_ms   INTEGER NOT NULL,
    last_used_ms INTEGER,
    revoked_ms   INTEGER,
    expires_ms   INTEGER
) STRICT;
INSERT INTO api_tokens_new (id, name, role, hash, created_ms, last_used_ms, revoked_ms)
    SELECT id, name, role, hash, created_ms, last_used_ms, revoked_ms FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens(name) WHERE revoked_ms IS NULL;
"#;

/// Callback deliveries not yet made, so that a restart does not lose them.
/// AUTOINCREMENT: the row id is the delivery id receivers deduplicate by,
/// and must never be reused after a row is deleted.
const CALLBACK_DELIVERIES: &str = r#"
CREATE TABLE callback_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    created_ms      INTEGER NOT NULL
) STRICT;
CREATE INDEX callback_deliveries_due ON callback_deliveries(next_attempt_ms);
"#;

/// One row per send attempt in the last day, per SIM: the rate limiter is
/// seeded from it at start, so a daemon restarted in a loop cannot push a
/// SIM past its carrier's caps. Seeded with the sends the outbox recorded
/// in the day before the upgrade.
const SEND_LOG: &str = r#"
CREATE TABLE outbox_sends (
    proxy_iccid TEXT NOT NULL,
    at_ms       INTEGER NOT NULL
) STRICT;
CREATE INDEX outbox_sends_by_sim ON outbox_sends(proxy_iccid, at_ms);
INSERT INTO outbox_sends (proxy_iccid, at_ms)
    SELECT proxy_iccid, sent_ms FROM outbox
    WHERE sent_ms IS NOT NULL
      AND sent_ms > CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 86400000;
"#;

/// Interactions by time across sessions, for exports by time range.
const INTERACTIONS_BY_TIME: &str = r#"
CREATE INDEX interactions_by_time ON interactions(created_ms, id);
"#;

/// Every migration in order: the position is the schema version (v1 first).
const ALL: &[&str] = &[
    V1_POOL_AND_SESSIONS,
    V2_RELAY,
    V3_SIM_STATUS,
    V4_GROUP_COMMIT,
    TOKEN_LIFECYCLE,
    CALLBACK_DELIVERIES,
    SEND_LOG,
    INTERACTIONS_BY_TIME,
];

fn migrations() -> Migrations<'static> {
    Migrations::new(ALL.iter().map(|sql| M::up(sql)).collect())
}

/// The schema version this binary writes.
pub fn latest_version() -> usize {
    ALL.len()
}

/// The schema version of the database at `conn` (0 when new).
pub fn current_version(conn: &Connection) -> Result<usize, StoreError> {
    match migrations().current_version(conn)? {
        SchemaVersion::NoneSet => Ok(0),
        SchemaVersion::Inside(version) | SchemaVersion::Outside(version) => Ok(version.get()),
    }
}

/// Brings the database to the latest schema, refusing a newer one.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let migrations = migrations();
    match migrations.current_version(conn)? {
        SchemaVersion::Outside(found) => {
            return Err(StoreError::TooNew {
                found: found.get(),
                known: latest_version(),
            });
        }
        SchemaVersion::NoneSet | SchemaVersion::Inside(_) => {}
    }
    migrations.to_latest(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid_and_reach_the_latest_version() {
        assert!(migrations().validate().is_ok());
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version as usize, latest_version());
        // Running again is a no-op.
        migrate(&mut conn).unwrap();
    }

    #[test]
    fn a_database_from_a_newer_simmask_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.pragma_update(None, "user_version", latest_version() as i64 + 1)
            .unwrap();
        let error = migrate(&mut conn).unwrap_err();
        assert!(error.to_string().contains("newer simmask"), "{error}");
    }
}
