//! Commands over MQTT, when `[mqtt] commands = true`: the same actions as
//! the API's admin routes, through the same functions, so each is checked,
//! logged and written to the audit trail (actor `mqtt`) exactly as there.
//!
//! The broker's ACL is what authenticates them: whoever may publish to
//! `<prefix>/command/#` acts as an admin of this appliance.
//!
//! | topic | payload | does |
//! | --- | --- | --- |
//! | `<prefix>/command/sim_enabled` | `{"sim": "<id>", "enabled": false}` | takes a SIM out of allocation (or back) |
//! | `<prefix>/command/ussd` | `{"sim": "<id>", "code": "*100#"}` | sends USSD; the reply also goes to `<prefix>/sim/<sim>/ussd` |
//! | `<prefix>/command/session_close` | `{"session_id": "ses_…"}` | closes a session (its call ends) |
//!
//! Each payload may carry an `"id"`, echoed in the result published to
//! `<prefix>/command/<name>/result`: `{"command", "id", "ok", …}` with the
//! outcome, or `"error"` (a stable code) and `"message"`.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::ApiState;
use crate::api::auth::{Caller, Role};
use crate::api::error::ApiError;
use crate::store::SimChange;

/// The actor the audit trail names for commands over MQTT.
pub const ACTOR: &str = "mqtt";

/// The largest command payload read.
pub const MAX_PAYLOAD: usize = 4096;

/// A command, read from its topic's name and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    SimEnabled { sim: String, enabled: bool },
    Ussd { sim: String, code: String },
    SessionClose { session_id: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimEnabled {
    sim: String,
    enabled: bool,
    /// The request's id, read from the whole payload: accepted here.
    #[serde(default, rename = "id")]
    _id: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ussd {
    sim: String,
    code: String,
    /// The request's id, read from the whole payload: accepted here.
    #[serde(default, rename = "id")]
    _id: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionClose {
    session_id: String,
    /// The request's id, read from the whole payload: accepted here.
    #[serde(default, rename = "id")]
    _id: Option<Value>,
}

/// Every command's name.
pub const NAMES: &[&str] = &["sim_enabled", "ussd", "session_close"];

/// A command that could not be read: its result says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub error: &'static str,
    pub message: String,
}

/// Reads the command `name` from `payload`; answers it with the request
/// id (`"id"`, echoed in the result), or why it cannot be run.
pub fn parse(name: &str, payload: &[u8]) -> (Option<Value>, Result<Command, Refused>) {
    let refused = |error, message: String| Refused { error, message };
    if payload.len() > MAX_PAYLOAD {
        return (
            None,
            Err(refused(
                "too_large",
                format!("a command is at most {MAX_PAYLOAD} bytes"),
            )),
        );
    }
    let value: Value = match serde_json::from_slice(payload) {
        Ok(value) => value,
        Err(error) => {
            return (
                None,
                Err(refused("invalid_json", format!("not JSON: {error}"))),
            );
        }
    };
    let id = value.get("id").cloned();
    let invalid = |error: serde_json::Error| refused("invalid_body", error.to_string());
    let command = match name {
        "sim_enabled" => serde_json::from_value::<SimEnabled>(value)
            .map(|c| Command::SimEnabled {
                sim: c.sim,
                enabled: c.enabled,
            })
            .map_err(invalid),
        "ussd" => serde_json::from_value::<Ussd>(value)
            .map(|c| Command::Ussd {
                sim: c.sim,
                code: c.code,
            })
            .map_err(invalid),
        "session_close" => serde_json::from_value::<SessionClose>(value)
            .map(|c| Command::SessionClose {
                session_id: c.session_id,
            })
            .map_err(invalid),
        other => Err(refused(
            "unknown_command",
            format!("no command {other:?}: {}", NAMES.join(", ")),
        )),
    };
    (id, command)
}

/// The caller commands act as.
fn caller() -> Caller {
    Caller {
        name: ACTOR.into(),
        role: Role::Admin,
    }
}

fn failed(error: ApiError) -> Refused {
    Refused {
        error: error.code,
        message: error.message,
    }
}

/// Runs `command`; answers what its result says besides `ok`.
pub async fn run(state: &ApiState, command: Command) -> Result<Value, Refused> {
    let caller = caller();
    match command {
        Command::SimEnabled { sim, enabled } => {
            let change = SimChange {
                enabled: Some(enabled),
                ..SimChange::default()
            };
            let record = state
                .store
                .update_sim(
                    sim.clone(),
                    change,
                    caller.name.clone(),
                    crate::clock::now(),
                )
                .await
                .map_err(|e| failed(e.into()))?;
            tracing::info!(iccid = %sim, enabled, by = ACTOR, "sim changed");
            Ok(json!({"sim": record.iccid, "enabled": record.enabled}))
        }
        Command::Ussd { sim, code } => {
            let reply = crate::api::pool::send_ussd(state, &caller, sim.clone(), code.clone())
                .await
                .map_err(failed)?;
            Ok(json!({"sim": sim, "code": code, "reply": reply}))
        }
        Command::SessionClose { session_id } => {
            let record = crate::api::sessions::close_session(state, &caller, session_id)
                .await
                .map_err(failed)?;
            Ok(json!({
                "session_id": record.id,
                "status": record.status.as_str(),
            }))
        }
    }
}

/// A command's result, as published.
pub fn result(name: &str, id: Option<Value>, outcome: &Result<Value, Refused>) -> Value {
    let mut result = json!({"command": name, "id": id});
    let object = result.as_object_mut().expect("an object");
    match outcome {
        Ok(Value::Object(fields)) => {
            object.insert("ok".into(), true.into());
            object.extend(fields.clone());
        }
        Ok(_) => {
            object.insert("ok".into(), true.into());
        }
        Err(refused) => {
            object.insert("ok".into(), false.into());
            object.insert("error".into(), refused.error.into());
            object.insert("message".into(), refused.message.clone().into());
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read_from_their_name_and_json() {
        let (id, command) = parse(
            "sim_enabled",
            br#"{"sim": "8944", "enabled": false, "id": 7}"#,
        );
        assert_eq!(id, Some(json!(7)));
        assert_eq!(
            command,
            Ok(Command::SimEnabled {
                sim: "8944".into(),
                enabled: false
            })
        );
        assert_eq!(
            parse("ussd", br#"{"sim": "8944", "code": "*100#"}"#).1,
            Ok(Command::Ussd {
                sim: "8944".into(),
                code: "*100#".into()
            })
        );
        assert_eq!(
            parse("session_close", br#"{"session_id": "ses_1"}"#).1,
            Ok(Command::SessionClose {
                session_id: "ses_1".into()
            })
        );
        for (name, payload, error) in [
            ("reboot", &b"{}"[..], "unknown_command"),
            ("ussd", b"*100#", "invalid_json"),
            ("ussd", br#"{"sim": "8944"}"#, "invalid_body"),
            (
                "sim_enabled",
                br#"{"sim": "8944", "enabled": "no"}"#,
                "invalid_body",
            ),
            ("session_close", &[b' '; MAX_PAYLOAD + 1][..], "too_large"),
        ] {
            assert_eq!(parse(name, payload).1.unwrap_err().error, error, "{name}");
        }
    }

    #[test]
    fn results_say_ok_or_why_not() {
        let done = result("ussd", Some(json!("a")), &Ok(json!({"reply": "Balance 5"})));
        assert_eq!(
            done,
            json!({"command": "ussd", "id": "a", "ok": true, "reply": "Balance 5"})
        );
        let refused = result(
            "ussd",
            None,
            &Err(Refused {
                error: "not_found",
                message: "no SIM 1".into(),
            }),
        );
        assert_eq!(refused["ok"], false);
        assert_eq!(refused["error"], "not_found");
    }
}
