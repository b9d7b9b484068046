//! The operator's commands from the shell: sessions, backup, erasure,
//! doctor. They open the same SQLite file as the daemon (WAL lets both
//! work at once; the database's constraints keep the masking rule).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::api::auth::{Caller, Role};
use crate::api::sessions::SessionView;
use crate::config::Config;
use crate::masking::Mode;
use crate::masking::lifecycle::SessionStatus;
use crate::number::PhoneNumber;
use crate::store::{NewSession, SessionFilter, Store, StoreError};

pub mod doctor;

/// Errors of the shell commands, each naming what the operator gave.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("participant {input:?}: {reason}")]
    Number { input: String, reason: String },
    #[error("--{flag} {input:?}: {reason}")]
    Duration {
        flag: &'static str,
        input: String,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How old a SIM's saved status may be and still count as healthy: the
/// daemon refreshes it every poll, so three polls missed means it is gone.
pub fn status_max_age(config: &Config) -> time::Duration {
    let poll = config.modems.poll_interval_seconds.max(1);
    time::Duration::seconds(i64::try_from(poll * 3 + 30).unwrap_or(i64::MAX))
}

/// The shell acts with the operator's full rights.
fn operator() -> Caller {
    Caller {
        name: "cli".into(),
        role: Role::Admin,
    }
}

/// Parses `2h`, `90m`, `1d 12h` (humantime), refusing zero.
pub fn parse_duration(flag: &'static str, input: &str) -> Result<Duration, AdminError> {
    let duration = humantime::parse_duration(input).map_err(|e| AdminError::Duration {
        flag,
        input: input.into(),
        reason: e.to_string(),
    })?;
    if duration.is_zero() {
        return Err(AdminError::Duration {
            flag,
            input: input.into(),
            reason: "must be longer than zero".into(),
        });
    }
    Ok(duration)
}

/// What `simmask session open` asks for.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    pub participants: [String; 2],
    pub ttl: Option<Duration>,
    pub idle_ttl: Option<Duration>,
    pub mode: Mode,
    pub label: Option<String>,
}

/// Opens a session on the pool as the daemon last reported it.
pub async fn open_session(
    store: &Store,
    config: &Config,
    request: OpenRequest,
) -> Result<Value, AdminError> {
    let region = config.numbers.default_region.as_deref();
    let parse = |input: &String| {
        PhoneNumber::parse(input, region).map_err(|e| AdminError::Number {
            input: input.clone(),
            reason: e.to_string(),
        })
    };
    let participants = [
        parse(&request.participants[0])?,
        parse(&request.participants[1])?,
    ];
    let now = OffsetDateTime::now_utc();
    let max_age = status_max_age(config);
    let live = store
        .sim_statuses()
        .await?
        .iter()
        .map(|status| status.live(now, max_age))
        .collect();
    let to_time = |d: Duration| time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
    let default_ttl = (config.sessions.default_ttl_seconds > 0)
        .then(|| time::Duration::seconds(config.sessions.default_ttl_seconds as i64));
    let new = NewSession {
        participants,
        mode: request.mode,
        ttl: request.ttl.map(to_time).or(default_ttl),
        idle_ttl: request.idle_ttl.map(to_time),
        label: request.label,
        sticky: config.sessions.sticky,
        actor: "cli".into(),
    };
    let record = store.open_session(new, live, now).await?;
    Ok(json!(SessionView::new(record, &operator())))
}

/// Lists sessions, newest first.
pub async fn list_sessions(
    store: &Store,
    status: Option<SessionStatus>,
    label: Option<String>,
    limit: usize,
) -> Result<Value, AdminError> {
    let records = store
        .sessions(SessionFilter {
            status,
            label,
            participant: None,
            limit,
            offset: 0,
        })
        .await?;
    let caller = operator();
    let views: Vec<SessionView> = records
        .into_iter()
        .map(|r| SessionView::new(r, &caller))
        .collect();
    Ok(json!(views))
}

/// Closes a session.
pub async fn close_session(store: &Store, id: String) -> Result<Value, AdminError> {
    let record = store
        .close_session(id, "cli".into(), OffsetDateTime::now_utc())
        .await?;
    Ok(json!(SessionView::new(record, &operator())))
}

/// Erases a participant for a data-protection request.
pub async fn erase(store: &Store, config: &Config, number: &str) -> Result<Value, AdminError> {
    let number =
        PhoneNumber::parse(number, config.numbers.default_region.as_deref()).map_err(|e| {
            AdminError::Number {
                input: number.into(),
                reason: e.to_string(),
            }
        })?;
    let counts = store
        .erase_participant(number, "cli".into(), OffsetDateTime::now_utc())
        .await?;
    Ok(json!({
        "erased": {
            "sessions_closed": counts.sessions_closed,
            "interactions": counts.interactions,
            "inbound_parts": counts.inbound_parts,
            "outbox": counts.outbox,
            "participants": counts.participants,
            "auto_replies": counts.auto_replies,
            "audit": counts.audit,
        }
    }))
}

/// Takes a consistent copy of the database while the daemon runs.
pub fn backup(config: &Config, out: &Path) -> Result<Value, AdminError> {
    Store::backup_file(&config.store.path, out)?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(json!({"backup": out.display().to_string(), "bytes": bytes}))
}
