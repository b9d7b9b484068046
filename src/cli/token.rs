//! `simmask token create|list|revoke`: API tokens. A new token is printed
//! once; only its hash is stored. A revoked or expired token is refused at
//! once by a running daemon, on every route and on open event streams.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;
use time::OffsetDateTime;

use super::{DEFAULT_CONFIG, Output, output};
use crate::api::auth;
use crate::api::tokens::TokenView;
use crate::store::{NewToken, Role, TokenRef};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it, once: only its hash is stored.
    Create {
        /// A name for the token (who or what uses it).
        name: String,
        /// What the token may do: `metrics` only scrapes /metrics.
        #[arg(long, value_enum, default_value_t = Role::Viewer)]
        role: Role,
        /// Stop working after this long, e.g. `90d`, `12h` (default: never).
        #[arg(long)]
        expires: Option<String>,
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// List the tokens with their last use (names and roles, never the tokens).
    List {
        /// Include revoked and expired tokens.
        #[arg(long)]
        all: bool,
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Revoke a token by name or number: refused from now on, everywhere.
    Revoke {
        /// The token's name, or its number from `token list`.
        token: String,
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

pub fn run(command: TokenCommand, out: Output) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let now = OffsetDateTime::now_utc();
        match command {
            TokenCommand::Create {
                name,
                role,
                expires,
                config,
            } => {
                let expires_at = expires
                    .map(|e| super::session::parse_duration("expires", &e))
                    .transpose()?
                    .map(|d| now + d);
                let (_, store) = super::connect_store(&config).await?;
                let token = auth::generate_token();
                let new = NewToken {
                    name,
                    role,
                    hash: auth::hash_token(&token),
                    expires_at,
                    actor: "cli".into(),
                };
                let record = store.add_token(new, now).await?;
                let mut shown = serde_json::json!({
                    "name": record.name,
                    "role": record.role,
                    "token": token,
                    "note": "shown once: store it now, only its hash is kept",
                });
                if let Some(at) = record.expires_at {
                    shown["expires_at"] = serde_json::to_value(at.format(
                        &time::format_description::well_known::Rfc3339,
                    )?)?;
                }
                if out.json {
                    println!("{shown}");
                } else {
                    println!(
                        "Token {:?} ({}), number {}, {}:\n\n  {token}\n\nShown once: store it now, only its hash is kept.",
                        record.name,
                        record.role.as_str(),
                        record.id,
                        record
                            .expires_at
                            .map_or("never expires".to_string(), |_| format!(
                                "expires {}",
                                output::when(&shown["expires_at"]).trim_end_matches(" UTC")
                            )),
                        token = shown["token"].as_str().unwrap_or_default()
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            TokenCommand::List { all, config } => {
                let (_, store) = super::connect_store(&config).await?;
                if all {
                    let views: Vec<TokenView> = store
                        .all_tokens()
                        .await?
                        .into_iter()
                        .map(|t| TokenView::new(t, now))
                        .collect();
                    out.emit(&views, |value, _| tokens_table(value))
                } else {
                    out.emit(&store.tokens().await?, |value, _| tokens_table(value))
                }
            }
            TokenCommand::Revoke { token, config } => {
                let (_, store) = super::connect_store(&config).await?;
                let record = store
                    .revoke_token(TokenRef::NameOrId(token), "cli".into(), now)
                    .await?;
                let view = TokenView::new(record, now);
                out.emit(&view, |value, _| {
                    format!(
                        "Revoked token {} (number {}): a running simmask refuses it from now on.",
                        value["name"], value["id"]
                    )
                })
            }
        }
    })
}

/// Tokens as a table: number, name, role, state, dates.
fn tokens_table(value: &Value) -> String {
    let rows = value.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "No tokens: create one with `simmask token create NAME --role admin|viewer|metrics`."
            .into();
    }
    let mut table = output::table([
        "#",
        "name",
        "role",
        "state",
        "created",
        "last used",
        "expires",
    ]);
    for token in rows {
        table.add_row(vec![
            output::text(&token["id"]),
            output::text(&token["name"]),
            output::text(&token["role"]),
            token["state"].as_str().unwrap_or("live").to_string(),
            output::when(&token["created_at"]),
            if token["last_used_at"].is_null() {
                "never".into()
            } else {
                output::when(&token["last_used_at"])
            },
            if token["expires_at"].is_null() {
                "never".into()
            } else {
                output::when(&token["expires_at"])
            },
        ]);
    }
    table.to_string()
}
