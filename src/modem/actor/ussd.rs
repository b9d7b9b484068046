//! A USSD request and the network's `+CUSD` answer, which comes as a URC.

use std::time::Duration;

use tokio::time::Instant;

use super::Actor;
use crate::modem::command::Command;
use crate::modem::error::AtError;
use crate::modem::network::AtExec;
use crate::modem::urc::{Urc, parse_urc};

/// How long the network may take to answer a USSD request.
const USSD_ANSWER: Duration = Duration::from_secs(30);

impl Actor {
    pub(super) async fn ussd(&mut self, code: &str) -> Result<String, AtError> {
        self.exec(&Command::ussd(code)?).await?;
        let deadline = Instant::now() + USSD_ANSWER;
        loop {
            let port = self.port.as_mut().ok_or(AtError::Unplugged)?;
            if let Some(at) = port
                .urcs
                .iter()
                .position(|u| u.first().is_some_and(|l| l.starts_with("+CUSD:")))
            {
                let lines = port.urcs.remove(at);
                return match parse_urc(&lines)? {
                    // 0 done, 1 more expected, 2 ended by the network: all
                    // may carry the answer (3GPP TS 27.007 §7.15 <m>).
                    Urc::Ussd {
                        status: 0..=2,
                        text: Some(text),
                    } => Ok(text),
                    Urc::Ussd { status: 0..=1, .. } => Ok(String::new()),
                    Urc::Ussd { status, .. } => Err(AtError::Cme {
                        code: None,
                        text: format!("ussd ended by the network (+CUSD status {status})"),
                    }),
                    _ => Err(AtError::Parse {
                        command: "+CUSD",
                        line: lines.join(" | "),
                        reason: "not a +CUSD answer".into(),
                    }),
                };
            }
            match tokio::time::timeout_at(deadline, port.read_unsolicited()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    self.lose_port();
                    return Err(error);
                }
                Err(_) => return Err(AtError::Timeout(USSD_ANSWER)),
            }
        }
    }
}
