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

/// Proxy-grade session semantics and safety rails. SIMs can be
/// reserved for one participant, drained before retirement, or made a front
/// desk; every ended session says why; opt-outs (STOP), the block list and
/// each SIM's recipients this month are kept; a blocked interaction names
/// its rule. The rules that protect people are database constraints, like
/// the masking rule: no open session on a draining SIM, none on a reserved
/// SIM without its owner, none with a number that opted out.
const SESSION_SEMANTICS: &str = r#"
ALTER TABLE sims ADD COLUMN reserved_for TEXT;
ALTER TABLE sims ADD COLUMN draining INTEGER NOT NULL DEFAULT 0 CHECK (draining IN (0, 1));
-- The staff number a stranger's first SMS or call is paired with.
ALTER TABLE sims ADD COLUMN front_desk TEXT;

ALTER TABLE sessions ADD COLUMN close_reason TEXT CHECK (close_reason IN
    ('operator', 'ttl', 'idle', 'opt_out', 'erased', 'sim_retired', 'loop'));
-- Where a former participant's calls go once the session has expired.
ALTER TABLE sessions ADD COLUMN fallback_number TEXT;
UPDATE sessions SET close_reason = 'operator' WHERE status = 'closed';
UPDATE sessions SET close_reason =
    CASE WHEN expires_ms IS NOT NULL AND expires_ms <= ended_ms THEN 'ttl' ELSE 'idle' END
    WHERE status = 'expired';
CREATE TRIGGER sessions_close_reason_insert BEFORE INSERT ON sessions
    WHEN (NEW.status = 'open') = (NEW.close_reason IS NOT NULL)
    BEGIN SELECT RAISE(ABORT, 'close_reason: an ended session has one, an open one none'); END;
CREATE TRIGGER sessions_close_reason_update BEFORE UPDATE OF status, close_reason ON sessions
    WHEN (NEW.status = 'open') = (NEW.close_reason IS NOT NULL)
    BEGIN SELECT RAISE(ABORT, 'close_reason: an ended session has one, an open one none'); END;
CREATE TRIGGER sessions_not_on_draining_insert BEFORE INSERT ON sessions
    WHEN NEW.status = 'open'
     AND (SELECT draining FROM sims WHERE iccid = NEW.proxy_iccid) = 1
    BEGIN SELECT RAISE(ABORT, 'draining: the SIM takes no new sessions'); END;
CREATE TRIGGER sessions_not_on_draining_update BEFORE UPDATE OF status ON sessions
    WHEN NEW.status = 'open' AND OLD.status != 'open'
     AND (SELECT draining FROM sims WHERE iccid = NEW.proxy_iccid) = 1
    BEGIN SELECT RAISE(ABORT, 'draining: the SIM takes no new sessions'); END;

-- Numbers that sent STOP (or an equivalent) and not START since.
CREATE TABLE opt_outs (
    number  TEXT PRIMARY KEY,
    keyword TEXT NOT NULL,
    at_ms   INTEGER NOT NULL
) STRICT;
CREATE TRIGGER participants_opted_out_insert BEFORE INSERT ON participants
    WHEN NEW.open = 1 AND EXISTS (SELECT 1 FROM opt_outs WHERE number = NEW.number)
    BEGIN SELECT RAISE(ABORT, 'opted_out: the number sent STOP'); END;
CREATE TRIGGER participants_opted_out_update BEFORE UPDATE OF open ON participants
    WHEN NEW.open = 1 AND EXISTS (SELECT 1 FROM opt_outs WHERE number = NEW.number)
    BEGIN SELECT RAISE(ABORT, 'opted_out: the number sent STOP'); END;
-- Participants are written in position order: the second row completes
-- the session, and a reserved SIM's session must include its owner.
CREATE TRIGGER participants_reserved_insert BEFORE INSERT ON participants
    WHEN NEW.open = 1 AND NEW.position = 1
     AND (SELECT reserved_for FROM sims WHERE iccid = NEW.proxy_iccid) IS NOT NULL
     AND (SELECT reserved_for FROM sims WHERE iccid = NEW.proxy_iccid) NOT IN (NEW.number,
         (SELECT number FROM participants WHERE session_id = NEW.session_id AND position = 0))
    BEGIN SELECT RAISE(ABORT, 'reserved: the SIM is reserved for another participant'); END;
CREATE TRIGGER participants_reserved_update BEFORE UPDATE OF open ON participants
    WHEN NEW.open = 1
     AND (SELECT reserved_for FROM sims WHERE iccid = NEW.proxy_iccid) IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM participants p JOIN sims s ON s.iccid = p.proxy_iccid
                     WHERE p.session_id = NEW.session_id AND p.number = s.reserved_for)
    BEGIN SELECT RAISE(ABORT, 'reserved: the SIM is reserved for another participant'); END;

-- Numbers whose messages are never relayed (personal data: erased with
-- the number, forgotten after [intercept] forget_after_days).
CREATE TABLE blocked_numbers (
    number TEXT PRIMARY KEY,
    reason TEXT NOT NULL DEFAULT '',
    actor  TEXT NOT NULL,
    at_ms  INTEGER NOT NULL
) STRICT;

-- The intercept rule that stopped an interaction (`block_list`, `loop`…).
ALTER TABLE interactions ADD COLUMN rule TEXT;
CREATE INDEX interactions_by_sender ON interactions(from_number, created_ms);

-- The distinct numbers each SIM sent to, per calendar month (UTC,
-- `YYYY-MM`): carriers cap them.
CREATE TABLE sim_recipients (
    iccid  TEXT NOT NULL,
    month  TEXT NOT NULL,
    number TEXT NOT NULL,
    PRIMARY KEY (iccid, month, number)
) STRICT, WITHOUT ROWID;
INSERT OR IGNORE INTO sim_recipients (iccid, month, number)
    SELECT proxy_iccid, strftime('%Y-%m', created_ms / 1000, 'unixepoch'), to_number
    FROM outbox WHERE to_number IS NOT NULL
      AND created_ms >= CAST(strftime('%s', 'now', 'start of month') AS INTEGER) * 1000;
CREATE INDEX outbox_sent ON outbox(proxy_iccid, sent_ms) WHERE sent_ms IS NOT NULL;
"#;

/// How full each SIM's receiving storage is, for `doctor` (a full one makes
/// the network hold messages back).
const SIM_STORAGE: &str = r#"
CREATE TABLE sim_storage (
    iccid      TEXT PRIMARY KEY REFERENCES sims(iccid) ON DELETE CASCADE,
    storage    TEXT NOT NULL,
    used       INTEGER NOT NULL CHECK (used >= 0),
    total      INTEGER NOT NULL CHECK (total >= 0),
    updated_ms INTEGER NOT NULL
) STRICT;
"#;

/// The Twilio Proxy facade's own objects: services (pools of SIMs with
/// Proxy's settings), their numbers, and the sessions and participants
/// created through it. A session that has both participants points at the
/// appliance's session; one still waiting for its second has none.
const TWILIO_PROXY: &str = r#"
CREATE TABLE twilio_services (
    sid                         TEXT PRIMARY KEY,
    unique_name                 TEXT UNIQUE,
    default_ttl                 INTEGER CHECK (default_ttl >= 0),
    callback_url                TEXT,
    intercept_callback_url      TEXT,
    out_of_session_callback_url TEXT,
    number_selection_behavior   TEXT NOT NULL DEFAULT 'prefer-sticky'
        CHECK (number_selection_behavior IN ('prefer-sticky', 'avoid-sticky')),
    geo_match_level             TEXT NOT NULL DEFAULT 'country',
    created_ms                  INTEGER NOT NULL,
    updated_ms                  INTEGER NOT NULL
) STRICT;

-- A SIM belongs to at most one service.
CREATE TABLE twilio_numbers (
    iccid       TEXT PRIMARY KEY REFERENCES sims(iccid) ON DELETE CASCADE,
    service_sid TEXT NOT NULL REFERENCES twilio_services(sid) ON DELETE CASCADE,
    is_reserved INTEGER NOT NULL DEFAULT 0 CHECK (is_reserved IN (0, 1)),
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
) STRICT;
CREATE INDEX twilio_numbers_service ON twilio_numbers(service_sid);

CREATE TABLE twilio_sessions (
    sid         TEXT PRIMARY KEY,
    service_sid TEXT NOT NULL REFERENCES twilio_services(sid) ON DELETE CASCADE,
    session_id  TEXT UNIQUE REFERENCES sessions(id) ON DELETE CASCADE,
    unique_name TEXT,
    ttl         INTEGER CHECK (ttl >= 0),
    expiry_ms   INTEGER,
    mode        TEXT NOT NULL CHECK (mode IN ('sms', 'voice', 'both')),
    -- A session closed before its second participant came.
    closed_ms   INTEGER,
    deleted_ms  INTEGER,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    UNIQUE (service_sid, unique_name)
) STRICT;
CREATE INDEX twilio_sessions_service ON twilio_sessions(service_sid, created_ms);

CREATE TABLE twilio_participants (
    sid           TEXT PRIMARY KEY,
    session_sid   TEXT NOT NULL REFERENCES twilio_sessions(sid) ON DELETE CASCADE,
    position      INTEGER NOT NULL CHECK (position IN (0, 1)),
    -- Only while the session waits for its second participant; then the
    -- appliance's participants table holds it.
    identifier    TEXT,
    friendly_name TEXT,
    proxy_iccid   TEXT,
    created_ms    INTEGER NOT NULL,
    deleted_ms    INTEGER,
    UNIQUE (session_sid, position)
) STRICT;
"#;

/// Hubs: numbers that may be in many open sessions on one proxy, each
/// session told apart by a code on the hub's participant row. The masking
/// rule stays a database constraint for everyone else: the open-route
/// index leaves out only rows with a code, only a hub's rows may have one
/// (and a hub's open rows always have one), and a code is unique among the
/// hub's open sessions on the proxy.
const HUBS: &str = r#"
CREATE TABLE hubs (
    id         TEXT PRIMARY KEY,
    number     TEXT NOT NULL UNIQUE,
    label      TEXT,
    created_ms INTEGER NOT NULL
) STRICT;

ALTER TABLE participants ADD COLUMN hub_code TEXT;
DROP INDEX participants_open_route;
CREATE UNIQUE INDEX participants_open_route
    ON participants(proxy_iccid, number) WHERE open = 1 AND hub_code IS NULL;
CREATE UNIQUE INDEX participants_open_hub_code
    ON participants(proxy_iccid, number, hub_code) WHERE open = 1 AND hub_code IS NOT NULL;
CREATE TRIGGER participants_hub_insert BEFORE INSERT ON participants
    WHEN NEW.open = 1
     AND (NEW.hub_code IS NOT NULL) != EXISTS (SELECT 1 FROM hubs WHERE number = NEW.number)
    BEGIN SELECT RAISE(ABORT, 'hub: only a hub''s side of a session has a code, and always one'); END;
CREATE TRIGGER participants_hub_update BEFORE UPDATE OF open, hub_code ON participants
    WHEN NEW.open = 1
     AND (NEW.hub_code IS NOT NULL) != EXISTS (SELECT 1 FROM hubs WHERE number = NEW.number)
    BEGIN SELECT RAISE(ABORT, 'hub: only a hub''s side of a session has a code, and always one'); END;
"#;

/// What a million sessions needs. Each SIM's number of open sessions,
/// kept by triggers on `sessions`: allocation balances the load on it, and
/// counting the open sessions at each opening read every one of them (a
/// second at a million). The open sessions' two deadlines indexed: the
/// sweep looked at every open session every few seconds.
const AT_SCALE: &str = r#"
CREATE TABLE sim_load (
    iccid         TEXT PRIMARY KEY,
    open_sessions INTEGER NOT NULL CHECK (open_sessions >= 0)
) STRICT, WITHOUT ROWID;
INSERT INTO sim_load (iccid, open_sessions)
    SELECT proxy_iccid, COUNT(*) FROM sessions WHERE status = 'open' GROUP BY proxy_iccid;
CREATE TRIGGER sim_load_insert AFTER INSERT ON sessions WHEN NEW.status = 'open'
    BEGIN
        INSERT INTO sim_load (iccid, open_sessions) VALUES (NEW.proxy_iccid, 1)
            ON CONFLICT (iccid) DO UPDATE SET open_sessions = open_sessions + 1;
    END;
CREATE TRIGGER sim_load_update AFTER UPDATE OF status, proxy_iccid ON sessions
    WHEN (OLD.status = 'open') != (NEW.status = 'open') OR OLD.proxy_iccid != NEW.proxy_iccid
    BEGIN
        UPDATE sim_load SET open_sessions = open_sessions - 1
            WHERE OLD.status = 'open' AND iccid = OLD.proxy_iccid;
        INSERT INTO sim_load (iccid, open_sessions)
            SELECT NEW.proxy_iccid, 1 WHERE NEW.status = 'open'
            ON CONFLICT (iccid) DO UPDATE SET open_sessions = open_sessions + 1;
    END;
CREATE TRIGGER sim_load_delete AFTER DELETE ON sessions WHEN OLD.status = 'open'
    BEGIN
        UPDATE sim_load SET open_sessions = open_sessions - 1 WHERE iccid = OLD.proxy_iccid;
    END;
CREATE INDEX sessions_open_expires ON sessions(expires_ms)
    WHERE status = 'open' AND expires_ms IS NOT NULL;
CREATE INDEX sessions_open_idle ON sessions(last_activity_ms + idle_ttl_s * 1000)
    WHERE status = 'open' AND idle_ttl_s IS NOT NULL;
"#;

/// The Twilio facade's held interactions and status callbacks. Held: a
/// message waiting for its service's intercept callback (its outbox row held back) or for its
/// out-of-session callback (recorded `held`, not yet routed). The row is
/// the durable record of the decision still owed, so a restart asks again
/// and nothing is relayed, or lost, while the receiver has not answered.
const TWILIO_HOLDS: &str = r#"
CREATE TABLE twilio_holds (
    interaction_id INTEGER PRIMARY KEY REFERENCES interactions(id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('intercept', 'out_of_session')),
    service_sid    TEXT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    next_ms        INTEGER NOT NULL,
    created_ms     INTEGER NOT NULL
) STRICT;
CREATE INDEX twilio_holds_due ON twilio_holds(next_ms);

-- A service's status callbacks not yet delivered (form-encoded, signed
-- when sent), kept across restarts as the native callback deliveries are.
CREATE TABLE twilio_callbacks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    url        TEXT NOT NULL,
    body       TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_ms    INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX twilio_callbacks_due ON twilio_callbacks(next_ms);
"#;

/// The daemon's runs, counted: each start takes the next run number, and
/// the event bus numbers that run's events from it, so that an event id
/// never repeats across restarts (an SSE client resuming with
/// `Last-Event-ID` after a restart is not mistaken for one that saw the
/// new run's first events).
const EVENT_RUNS: &str = r#"
CREATE TABLE event_runs (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    run  INTEGER NOT NULL CHECK (run > 0)
) STRICT;
"#;

/// Each SIM's traffic counters (`/api/v1/numbers`, `/metrics`), kept by
/// triggers on `inbound_parts` and `outbox` as `sim_load` keeps the open
/// sessions: counting every message of the history per SIM at each call
/// took the writer for as long as the history was long. The counts are of
/// the rows there are (retention's purges lower them), as the queries they
/// replace counted. `queued` holds the outbox rows queued or being sent.
const SIM_TRAFFIC: &str = r#"
CREATE TABLE sim_traffic (
    iccid    TEXT PRIMARY KEY,
    received INTEGER NOT NULL DEFAULT 0 CHECK (received >= 0),
    queued   INTEGER NOT NULL DEFAULT 0 CHECK (queued >= 0),
    sent     INTEGER NOT NULL DEFAULT 0 CHECK (sent >= 0),
    failed   INTEGER NOT NULL DEFAULT 0 CHECK (failed >= 0)
) STRICT, WITHOUT ROWID;
INSERT INTO sim_traffic (iccid, received, queued, sent, failed)
    SELECT iccid, SUM(received), SUM(queued), SUM(sent), SUM(failed) FROM (
        SELECT proxy_iccid AS iccid, COUNT(*) AS received,
               0 AS queued, 0 AS sent, 0 AS failed
            FROM inbound_parts GROUP BY proxy_iccid
        UNION ALL
        SELECT proxy_iccid, 0,
               SUM(state IN ('queued', 'sending')), SUM(state = 'sent'), SUM(state = 'failed')
            FROM outbox GROUP BY proxy_iccid
    ) GROUP BY iccid;
CREATE TRIGGER sim_traffic_part_insert AFTER INSERT ON inbound_parts
    BEGIN
        INSERT INTO sim_traffic (iccid, received) VALUES (NEW.proxy_iccid, 1)
            ON CONFLICT (iccid) DO UPDATE SET received = received + 1;
    END;
CREATE TRIGGER sim_traffic_part_update AFTER UPDATE OF proxy_iccid ON inbound_parts
    WHEN OLD.proxy_iccid != NEW.proxy_iccid
    BEGIN
        UPDATE sim_traffic SET received = received - 1 WHERE iccid = OLD.proxy_iccid;
        INSERT INTO sim_traffic (iccid, received) VALUES (NEW.proxy_iccid, 1)
            ON CONFLICT (iccid) DO UPDATE SET received = received + 1;
    END;
CREATE TRIGGER sim_traffic_part_delete AFTER DELETE ON inbound_parts
    BEGIN
        UPDATE sim_traffic SET received = received - 1 WHERE iccid = OLD.proxy_iccid;
    END;
CREATE TRIGGER sim_traffic_outbox_insert AFTER INSERT ON outbox
    BEGIN
        INSERT INTO sim_traffic (iccid, queued, sent, failed)
            VALUES (NEW.proxy_iccid, NEW.state IN ('queued', 'sending'),
                    NEW.state = 'sent', NEW.state = 'failed')
            ON CONFLICT (iccid) DO UPDATE SET queued = queued + excluded.queued,
                sent = sent + excluded.sent, failed = failed + excluded.failed;
    END;
-- queued -> sending changes no counter: the trigger runs only when the
-- row moves between the three counters or to another SIM.
CREATE TRIGGER sim_traffic_outbox_update AFTER UPDATE OF state, proxy_iccid ON outbox
    WHEN OLD.proxy_iccid != NEW.proxy_iccid
      OR (OLD.state IN ('queued', 'sending')) != (NEW.state IN ('queued', 'sending'))
      OR (OLD.state = 'sent') != (NEW.state = 'sent')
    BEGIN
        UPDATE sim_traffic SET queued = queued - (OLD.state IN ('queued', 'sending')),
                sent = sent - (OLD.state = 'sent'), failed = failed - (OLD.state = 'failed')
            WHERE iccid = OLD.proxy_iccid;
        INSERT INTO sim_traffic (iccid, queued, sent, failed)
            VALUES (NEW.proxy_iccid, NEW.state IN ('queued', 'sending'),
                    NEW.state = 'sent', NEW.state = 'failed')
            ON CONFLICT (iccid) DO UPDATE SET queued = queued + excluded.queued,
                sent = sent + excluded.sent, failed = failed + excluded.failed;
    END;
CREATE TRIGGER sim_traffic_outbox_delete AFTER DELETE ON outbox
    BEGIN
        UPDATE sim_traffic SET queued = queued - (OLD.state IN ('queued', 'sending')),
                sent = sent - (OLD.state = 'sent'), failed = failed - (OLD.state = 'failed')
            WHERE iccid = OLD.proxy_iccid;
    END;
"#;

/// The time the sender's SMSC took each received message (TP-SCTS, TS
/// 23.040 §9.2.3.11, in UTC; a long message's earliest part), which loop
/// protection orders the session's messages by: a backlog read at once
/// after a replug or downtime arrives within a second but was written over
/// minutes. NULL for what the daemon did not receive from a handset, and
/// for the rows before this version (their arrival time stands in).
const SENT_TIMES: &str = r#"
ALTER TABLE interactions ADD COLUMN sent_ms INTEGER;
"#;

/// The group commit's marker row is gone: the store's sync thread makes a
/// group durable with one `fdatasync` of the write-ahead log, off the
/// writer (see `store/mod.rs`), instead of a `FULL` commit of that row.
const NO_DURABILITY_ROW: &str = r#"
DROP TABLE durability;
"#;

/// Two indexes no longer take an entry for rows no query looks for, so a
/// relayed message writes two pages fewer to the log: a relayed message
/// has no `from_number` (its sender is a participant's position; only
/// strangers' and blocked messages name a number), and a single-part
/// message is linked to its interaction in the transaction that stored it
/// (only a concatenated message's parts wait for their siblings). Every
/// query on these columns compares them, which implies the new conditions.
const LEANER_INDEXES: &str = r#"
DROP INDEX interactions_by_sender;
CREATE INDEX interactions_by_sender ON interactions(from_number, created_ms)
    WHERE from_number IS NOT NULL;
DROP INDEX inbound_parts_pending;
CREATE INDEX inbound_parts_pending ON inbound_parts(proxy_iccid, sender, concat_ref)
    WHERE interaction_id IS NULL AND concat_ref IS NOT NULL;
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
    SESSION_SEMANTICS,
    SIM_STORAGE,
    TWILIO_PROXY,
    HUBS,
    AT_SCALE,
    TWILIO_HOLDS,
    EVENT_RUNS,
    SIM_TRAFFIC,
    SENT_TIMES,
    NO_DURABILITY_ROW,
    LEANER_INDEXES,
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

    #[test]
    fn the_rails_are_database_constraints() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO sims (iccid, msisdn, first_seen_ms, last_seen_ms)
                 VALUES ('1', '+447000000001', 0, 0), ('2', '+447000000002', 0, 0),
                        ('3', '+447000000003', 0, 0);
             UPDATE sims SET draining = 1 WHERE iccid = '1';
             UPDATE sims SET reserved_for = '+447911000001' WHERE iccid = '2';
             INSERT INTO opt_outs (number, keyword, at_ms) VALUES ('+447911000009', 'STOP', 0);",
        )
        .unwrap();
        let session = |id: &str, sim: &str| {
            format!(
                "INSERT INTO sessions (id, proxy_iccid, mode, status, opened_ms, last_activity_ms)
                 VALUES ('{id}', '{sim}', 'sms', 'open', 0, 0)"
            )
        };
        let refused = |sql: &str| conn.execute_batch(sql).unwrap_err().to_string();
        assert!(refused(&session("s1", "1")).starts_with("draining"));
        conn.execute_batch(&session("s2", "2")).unwrap();
        let participant = |id: &str, position: u8, number: &str, sim: &str| {
            format!(
                "INSERT INTO participants (session_id, position, number, proxy_iccid, open)
                 VALUES ('{id}', {position}, '{number}', '{sim}', 1)"
            )
        };
        conn.execute_batch(&participant("s2", 0, "+447911000002", "2"))
            .unwrap();
        assert!(refused(&participant("s2", 1, "+447911000003", "2")).starts_with("reserved"));
        conn.execute_batch(&session("s3", "3")).unwrap();
        assert!(refused(&participant("s3", 0, "+447911000009", "3")).starts_with("opted_out"));
        conn.execute_batch(&participant("s2", 1, "+447911000001", "2"))
            .unwrap();
        // An ended session says why; an open one does not.
        assert!(
            refused("UPDATE sessions SET status = 'closed' WHERE id = 's2'")
                .contains("close_reason")
        );
        conn.execute_batch(
            "UPDATE sessions SET status = 'closed', close_reason = 'operator' WHERE id = 's2'",
        )
        .unwrap();
    }

    #[test]
    fn only_a_hub_escapes_the_masking_rule() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO sims (iccid, msisdn, first_seen_ms, last_seen_ms)
                 VALUES ('1', '+447000000001', 0, 0);
             INSERT INTO hubs (id, number, created_ms) VALUES ('hub_1', '+447911000100', 0);",
        )
        .unwrap();
        let session = |id: &str| {
            format!(
                "INSERT INTO sessions (id, proxy_iccid, mode, status, opened_ms, last_activity_ms)
                 VALUES ('{id}', '1', 'sms', 'open', 0, 0)"
            )
        };
        let participant = |id: &str, position: u8, number: &str, code: &str| {
            format!(
                "INSERT INTO participants (session_id, position, number, proxy_iccid, open, hub_code)
                 VALUES ('{id}', {position}, '{number}', '1', 1, {code})"
            )
        };
        let run = |sql: &str| conn.execute_batch(sql).map_err(|e| e.to_string());
        for id in ["s1", "s2", "s3", "s4"] {
            run(&session(id)).unwrap();
        }
        // The hub in two sessions on one proxy, with two codes.
        run(&participant("s1", 0, "+447911000001", "NULL")).unwrap();
        run(&participant("s1", 1, "+447911000100", "'K7'")).unwrap();
        run(&participant("s2", 0, "+447911000002", "NULL")).unwrap();
        run(&participant("s2", 1, "+447911000100", "'W3'")).unwrap();
        // The same code twice, a hub without a code, a code for someone
        // else, a counterpart twice: all refused.
        assert!(
            run(&participant("s3", 1, "+447911000100", "'K7'"))
                .unwrap_err()
                .contains("UNIQUE")
        );
        assert!(
            run(&participant("s3", 1, "+447911000100", "NULL"))
                .unwrap_err()
                .starts_with("hub")
        );
        assert!(
            run(&participant("s3", 0, "+447911000003", "'E5'"))
                .unwrap_err()
                .starts_with("hub")
        );
        assert!(
            run(&participant("s4", 0, "+447911000001", "NULL"))
                .unwrap_err()
                .contains("UNIQUE")
        );
    }
    #[test]
    fn the_open_session_count_follows_the_sessions() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO sims (iccid, msisdn, first_seen_ms, last_seen_ms)
                 VALUES ('1', '+447000000001', 0, 0), ('2', '+447000000002', 0, 0);
             INSERT INTO sessions (id, proxy_iccid, mode, status, opened_ms, last_activity_ms)
                 VALUES ('a', '1', 'sms', 'open', 0, 0), ('b', '1', 'sms', 'open', 0, 0),
                        ('c', '2', 'sms', 'open', 0, 0);
             INSERT INTO sessions (id, proxy_iccid, mode, status, close_reason, opened_ms,
                                   last_activity_ms)
                 VALUES ('d', '2', 'sms', 'closed', 'operator', 0, 0);",
        )
        .unwrap();
        let counted = |conn: &Connection| -> Vec<(String, i64, i64)> {
            conn.prepare(
                "SELECT sims.iccid, COALESCE(l.open_sessions, 0),
                        (SELECT COUNT(*) FROM sessions WHERE proxy_iccid = sims.iccid
                            AND status = 'open')
                 FROM sims LEFT JOIN sim_load l ON l.iccid = sims.iccid ORDER BY sims.iccid",
            )
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        let agree = |conn: &Connection, expected: [i64; 2]| {
            let rows = counted(conn);
            for (row, expected) in rows.iter().zip(expected) {
                assert_eq!((row.1, row.2), (expected, expected), "{rows:?}");
            }
        };
        agree(&conn, [2, 1]);
        conn.execute_batch(
            "UPDATE sessions SET status = 'expired', close_reason = 'ttl' WHERE id = 'a';
             UPDATE sessions SET status = 'open', close_reason = NULL WHERE id = 'd';
             UPDATE sessions SET last_activity_ms = 5 WHERE id = 'b';",
        )
        .unwrap();
        agree(&conn, [1, 2]);
        conn.execute_batch(
            "UPDATE sessions SET status = 'closed', close_reason = 'operator' WHERE id = 'a';
             DELETE FROM sessions WHERE id IN ('a', 'c');",
        )
        .unwrap();
        agree(&conn, [1, 1]);
        // A count below zero is refused rather than kept.
        assert!(
            conn.execute_batch("UPDATE sim_load SET open_sessions = -1 WHERE iccid = '1'")
                .is_err()
        );
    }

    #[test]
    fn the_traffic_counters_follow_the_parts_and_the_outbox() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        // History written before the counters existed is counted when they
        // are created.
        migrations()
            .to_version(&mut conn, before(SIM_TRAFFIC))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO sims (iccid, msisdn, first_seen_ms, last_seen_ms)
                 VALUES ('1', '+447000000001', 0, 0), ('2', '+447000000002', 0, 0);
             INSERT INTO interactions (id, proxy_iccid, kind, status, created_ms, updated_ms)
                 VALUES (1, '1', 'sms', 'relayed', 0, 0), (2, '2', 'sms', 'relayed', 0, 0);
             INSERT INTO inbound_parts (proxy_iccid, pdu_hex, received_ms)
                 VALUES ('1', 'a', 0), ('1', 'b', 0), ('2', 'c', 0);
             INSERT INTO outbox (id, interaction_id, proxy_iccid, state, next_attempt_ms,
                                 created_ms)
                 VALUES (1, 1, '1', 'queued', 0, 0), (2, 1, '1', 'sent', 0, 0),
                        (3, 2, '2', 'failed', 0, 0);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        // (iccid, received, queued, sent, failed) kept and counted.
        type Row = (String, i64, i64, i64, i64);
        let rows = |conn: &Connection, sql: &str| -> Vec<Row> {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let agree = |conn: &Connection, expected: &[(&str, i64, i64, i64, i64)]| {
            let kept = rows(
                conn,
                "SELECT iccid, received, queued, sent, failed FROM sim_traffic ORDER BY iccid",
            );
            let counted = rows(
                conn,
                "SELECT iccid,
                        (SELECT COUNT(*) FROM inbound_parts WHERE proxy_iccid = iccid),
                        (SELECT COUNT(*) FROM outbox WHERE proxy_iccid = iccid
                            AND state IN ('queued', 'sending')),
                        (SELECT COUNT(*) FROM outbox WHERE proxy_iccid = iccid AND state = 'sent'),
                        (SELECT COUNT(*) FROM outbox WHERE proxy_iccid = iccid
                            AND state = 'failed')
                 FROM sims ORDER BY iccid",
            );
            let expected: Vec<Row> = expected
                .iter()
                .map(|e| (e.0.to_string(), e.1, e.2, e.3, e.4))
                .collect();
            assert_eq!(kept, expected);
            assert_eq!(counted, expected);
        };
        agree(&conn, &[("1", 2, 1, 1, 0), ("2", 1, 0, 0, 1)]);
        conn.execute_batch(
            "UPDATE outbox SET state = 'sending' WHERE id = 1;
             UPDATE outbox SET attempts = 1 WHERE id = 1;
             UPDATE outbox SET state = 'queued' WHERE id = 3;
             INSERT INTO outbox (id, interaction_id, proxy_iccid, state, next_attempt_ms,
                                 created_ms)
                 VALUES (4, 2, '2', 'queued', 0, 0);
             INSERT INTO inbound_parts (proxy_iccid, pdu_hex, received_ms) VALUES ('2', 'd', 0);",
        )
        .unwrap();
        agree(&conn, &[("1", 2, 1, 1, 0), ("2", 2, 2, 0, 0)]);
        conn.execute_batch(
            "UPDATE outbox SET state = 'sent' WHERE id = 1;
             UPDATE outbox SET state = 'failed' WHERE id = 4;
             UPDATE outbox SET proxy_iccid = '1' WHERE id = 3;
             UPDATE inbound_parts SET proxy_iccid = '1' WHERE pdu_hex = 'c';",
        )
        .unwrap();
        agree(&conn, &[("1", 3, 1, 2, 0), ("2", 1, 0, 0, 1)]);
        // Retention's purges lower the counts, as the rows go.
        conn.execute_batch(
            "DELETE FROM inbound_parts WHERE pdu_hex IN ('a', 'd');
             DELETE FROM interactions WHERE id = 1;",
        )
        .unwrap();
        agree(&conn, &[("1", 2, 1, 0, 0), ("2", 0, 0, 0, 1)]);
        assert!(
            conn.execute_batch("UPDATE sim_traffic SET sent = -1 WHERE iccid = '1'")
                .is_err()
        );
    }

    /// The schema version just before `migration`.
    fn before(migration: &str) -> usize {
        ALL.iter()
            .position(|m| *m == migration)
            .expect("a migration of ALL")
    }

    #[test]
    fn the_smsc_times_of_earlier_messages_are_unknown() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrations()
            .to_version(&mut conn, before(SENT_TIMES))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO interactions (id, proxy_iccid, kind, status, created_ms, updated_ms)
                 VALUES (1, '1', 'sms', 'relayed', 5, 5);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let sent: Option<i64> = conn
            .query_row("SELECT sent_ms FROM interactions WHERE id = 1", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(sent, None);
        conn.execute("UPDATE interactions SET sent_ms = 4 WHERE id = 1", [])
            .unwrap();
        assert!(
            conn.execute("UPDATE interactions SET sent_ms = 'x' WHERE id = 1", [])
                .is_err(),
            "a STRICT table keeps it an integer"
        );
    }
}
