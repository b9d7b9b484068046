//! The actor's call requests that take more than one command: hanging up
//! with a fallback, and listing the calls.

use super::Actor;
use crate::modem::command::Command;
use crate::modem::error::AtError;
use crate::modem::network::AtExec;
use crate::modem::parse::{Call, parse_clcc};

impl Actor {
    pub(super) async fn hangup(&mut self) -> Result<(), AtError> {
        let command = self
            .profile
            .driver
            .hangup
            .clone()
            .unwrap_or_else(|| "AT+CHUP".to_string());
        match self.exec(&Command::plain(command)).await {
            Ok(_) => Ok(()),
            Err(AtError::Unplugged) => Err(AtError::Unplugged),
            Err(error) => {
                tracing::debug!(%error, "hang-up command refused; trying ATH");
                self.exec(&Command::plain("ATH")).await.map(drop)
            }
        }
    }

    pub(super) async fn list_calls(&mut self) -> Result<Vec<Call>, AtError> {
        let lines = self.exec(&Command::new("AT+CLCC", "+CLCC:")).await?;
        lines
            .iter()
            .filter(|l| l.starts_with("+CLCC:"))
            .filter_map(|l| parse_clcc(l).transpose())
            .collect()
    }
}
