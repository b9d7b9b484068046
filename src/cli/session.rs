//! `simmask session open|list|close|reopen`: sessions from the shell. The commands
//! open the same store as the daemon (the SQLite file, where WAL lets both
//! work at once, or the fleet's database; the database's constraints keep
//! the masking rule) and print the API's JSON.

use std::path::PathBuf;
use std::time::Duration;

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{DEFAULT_CONFIG, Output, output};

use crate::api::auth::{Caller, Role};
use crate::api::sessions::SessionView;
use crate::config::Config;
use crate::masking::Mode;
use crate::masking::lifecycle::SessionStatus;
use crate::number::PhoneNumber;
use crate::store::{NewSession, SessionFilter, Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Open a session between two numbers on a free proxy.
    Open {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The first participant (E.164, or national in the default region).
        a: String,
        /// The second participant.
        b: String,
        /// Absolute lifetime, e.g. `2h`, `30m`, `1d`.
        #[arg(long)]
        ttl: Option<String>,
        /// End after this long without traffic.
        #[arg(long)]
        idle_ttl: Option<String>,
        /// What the session carries.
        #[arg(long, value_enum, default_value_t = ModeArg::Both)]
        mode: ModeArg,
        /// A label to find the session by (never a number).
        #[arg(long)]
        label: Option<String>,
        /// Where a participant's calls go once the session has expired.
        #[arg(long)]
        fallback: Option<String>,
    },
    /// List sessions, newest first.
    List {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// `open`, `closed` or `expired`.
        #[arg(long)]
        status: Option<String>,
        /// Only sessions whose label contains this text.
        #[arg(long)]
        label: Option<String>,
        /// At most this many sessions.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Close a session.
    Close {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The session's id.
        id: String,
    },
    /// Reopen a closed or expired session on its proxy, when the masking
    /// rule still allows it.
    Reopen {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The session's id.
        id: String,
        /// A new absolute lifetime (default: the one it had).
        #[arg(long)]
        ttl: Option<String>,
    },
}

/// What a session carries, on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Sms,
    Voice,
    Both,
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Sms => Mode::Sms,
            ModeArg::Voice => Mode::Voice,
            ModeArg::Both => Mode::Both,
        }
    }
}

pub fn run(command: SessionCommand, out: Output) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let (value, one) = match command {
            SessionCommand::Open {
                config,
                a,
                b,
                ttl,
                idle_ttl,
                mode,
                label,
                fallback,
            } => {
                let (config, store) = super::connect_store(&config).await?;
                let request = OpenRequest {
                    fallback,
                    participants: [a, b],
                    ttl: ttl.map(|t| parse_duration("ttl", &t)).transpose()?,
                    idle_ttl: idle_ttl
                        .map(|t| parse_duration("idle-ttl", &t))
                        .transpose()?,
                    mode: mode.into(),
                    label,
                };
                (open_session(&store, &config, request).await?, true)
            }
            SessionCommand::List {
                config,
                status,
                label,
                limit,
            } => {
                let status = status
                    .map(|s| s.parse::<SessionStatus>())
                    .transpose()
                    .map_err(anyhow::Error::msg)?;
                let (_, store) = super::connect_store(&config).await?;
                (list_sessions(&store, status, label, limit).await?, false)
            }
            SessionCommand::Close { config, id } => {
                let (_, store) = super::connect_store(&config).await?;
                (close_session(&store, id).await?, true)
            }
            SessionCommand::Reopen { config, id, ttl } => {
                let ttl = ttl.map(|t| parse_duration("ttl", &t)).transpose()?;
                let (_, store) = super::connect_store(&config).await?;
                let ttl = ttl.map(|d| time::Duration::try_from(d).unwrap_or(time::Duration::MAX));
                let record = store
                    .reopen_session(id, ttl, None, "cli".into(), OffsetDateTime::now_utc())
                    .await?;
                (json!(SessionView::new(record, &operator())), true)
            }
        };
        out.emit(&value, |value, out| {
            if one {
                session_card(value, out)
            } else {
                sessions_table(value, out)
            }
        })
    })
}

/// Sessions as a table, participants masked unless `--show-numbers`.
pub fn sessions_table(value: &Value, out: &Output) -> String {
    let sessions = value.as_array().cloned().unwrap_or_default();
    if sessions.is_empty() {
        return "No sessions.".into();
    }
    let mut table = output::table([
        "session",
        "label",
        "participants",
        "proxy",
        "mode",
        "status",
        "opened",
        "expires",
    ]);
    for session in sessions {
        table.add_row(vec![
            output::text(&session["id"]),
            output::text(&session["label"]),
            participants(&session, out),
            output::text(&session["proxy_number"]),
            output::text(&session["mode"]),
            output::text(&session["status"]),
            output::when(&session["opened_at"]),
            if session["expires_at"].is_null() {
                "never".into()
            } else {
                output::when(&session["expires_at"])
            },
        ]);
    }
    table.to_string()
}

/// `A ⇄ B`, as the output may show them.
pub fn participants(session: &Value, out: &Output) -> String {
    let number = |i: usize| out.number(session["participants"][i].as_str().unwrap_or("?"));
    format!("{} ⇄ {}", number(0), number(1))
}

fn session_card(session: &Value, out: &Output) -> String {
    let idle = session["idle_ttl_seconds"]
        .as_u64()
        .map_or("-".into(), output::duration);
    output::pairs([
        ("session", output::text(&session["id"])),
        ("status", output::text(&session["status"])),
        ("participants", participants(session, out)),
        ("proxy", output::text(&session["proxy_number"])),
        ("mode", output::text(&session["mode"])),
        ("label", output::text(&session["label"])),
        ("opened", output::when(&session["opened_at"])),
        (
            "expires",
            if session["expires_at"].is_null() {
                "never".into()
            } else {
                output::when(&session["expires_at"])
            },
        ),
        ("idle limit", idle),
        ("ended", output::when(&session["ended_at"])),
    ])
    .to_string()
}

/// Errors of the shell commands, each naming what the operator gave.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    // Shown redacted like every number (the reason already is): stderr
    // of scripted runs ends up in the journal.
    #[error("participant {:?}: {reason}", crate::number::redact(.input))]
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
pub fn parse_duration(flag: &'static str, input: &str) -> Result<Duration, CliError> {
    let duration = humantime::parse_duration(input).map_err(|e| CliError::Duration {
        flag,
        input: input.into(),
        reason: e.to_string(),
    })?;
    if duration.is_zero() {
        return Err(CliError::Duration {
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
    /// Where calls go once it expired.
    pub fallback: Option<String>,
}

/// Opens a session on the pool as the daemon last reported it.
pub async fn open_session(
    store: &Store,
    config: &Config,
    request: OpenRequest,
) -> Result<Value, CliError> {
    let region = config.numbers.default_region.as_deref();
    let parse = |input: &String| {
        PhoneNumber::parse_as(input, region, config.numbers.validation).map_err(|e| {
            CliError::Number {
                input: input.clone(),
                reason: e.to_string(),
            }
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
        fallback_number: request.fallback.as_ref().map(parse).transpose()?,
        proxy: None,
        limits: config.pool_limits(),
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
) -> Result<Value, CliError> {
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
pub async fn close_session(store: &Store, id: String) -> Result<Value, CliError> {
    let record = store
        .close_session(id, "cli".into(), OffsetDateTime::now_utc())
        .await?;
    Ok(json!(SessionView::new(record, &operator())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_number_is_named_without_being_repeated() {
        let error = CliError::Number {
            input: "+44 7911 1234567".into(),
            reason: "too long".into(),
        };
        assert_eq!(
            error.to_string(),
            "participant \"+** **** ****567\": too long"
        );
    }
}
