//! `simmask token create|list`: API tokens. A new token is printed once;
//! only its hash is stored.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::DEFAULT_CONFIG;
use crate::api::auth;
use crate::store::Role;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it, once: only its hash is stored.
    Create {
        /// A name for the token (who or what uses it).
        name: String,
        /// What the token may do.
        #[arg(long, value_enum, default_value_t = Role::Viewer)]
        role: Role,
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// List the tokens (names and roles, never the tokens).
    List {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

pub fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        match command {
            TokenCommand::Create { name, role, config } => {
                let (_, store) = super::open_store(&config)?;
                let token = auth::generate_token();
                let record = store
                    .create_token(
                        name,
                        role,
                        auth::hash_token(&token),
                        time::OffsetDateTime::now_utc(),
                    )
                    .await?;
                let shown = serde_json::json!({
                    "name": record.name,
                    "role": record.role,
                    "token": token,
                    "note": "shown once: store it now, only its hash is kept",
                });
                println!("{shown}");
                Ok(ExitCode::SUCCESS)
            }
            TokenCommand::List { config } => {
                let (_, store) = super::open_store(&config)?;
                super::print_json(&store.tokens().await?)
            }
        }
    })
}
