//! URCs typed into [`ModemEvent`]s: a `RING` waits for its `+CLIP`, a
//! direct status report is acknowledged when the message service wants it.

use tokio::time::Instant;

use super::{Actor, ModemEvent};
use crate::modem::command::Command;
use crate::modem::network::AtExec;
use crate::modem::parse::Registration;
use crate::modem::urc::{Urc, parse_urc};

impl Actor {
    /// Types the URCs the port collected and sends them on as events.
    pub(super) async fn dispatch_urcs(&mut self) {
        loop {
            let Some(port) = self.port.as_mut() else {
                return;
            };
            if port.urcs.is_empty() {
                return;
            }
            let batch = std::mem::take(&mut port.urcs);
            for lines in batch {
                self.dispatch(&lines).await;
            }
        }
    }

    async fn dispatch(&mut self, lines: &[String]) {
        let urc = match parse_urc(lines) {
            Ok(urc) => urc,
            Err(error) => {
                tracing::debug!(%error, "unreadable URC dropped");
                return;
            }
        };
        let event = match urc {
            Urc::SmsStored { storage, index } => ModemEvent::SmsStored { storage, index },
            Urc::SmsDelivered { pdu_hex } => ModemEvent::SmsDirect { pdu_hex },
            Urc::StatusReport { pdu_hex } => {
                self.emit(ModemEvent::StatusReport { pdu_hex }).await;
                if self.sms_service() == 1 {
                    // Phase 2+ wants every +CDS acknowledged (27.005 §3.4.4).
                    if let Err(error) = self.exec(&Command::plain("AT+CNMA")).await {
                        tracing::debug!(%error, "status report acknowledgement failed");
                    }
                }
                return;
            }
            Urc::StatusReportStored { storage, index } => {
                ModemEvent::StatusReportStored { storage, index }
            }
            Urc::Ring => {
                self.ring_since.get_or_insert_with(Instant::now);
                return;
            }
            Urc::CallerId { number } | Urc::CallWaiting { number } => {
                self.ring_since = None;
                ModemEvent::Ring { caller: number }
            }
            Urc::CallEnded { busy: true } => ModemEvent::Busy,
            Urc::Call(_) | Urc::CallEnded { .. } | Urc::CallProgress => ModemEvent::CallsChanged,
            Urc::Ussd { text, .. } => ModemEvent::Ussd {
                text: text.unwrap_or_default(),
            },
            Urc::Registration(status) => {
                ModemEvent::Registration(Registration::from_status(status))
            }
            Urc::Dtmf(key) => ModemEvent::Dtmf { key },
            Urc::Ignored => {
                tracing::trace!(?lines, "vendor noise ignored");
                return;
            }
        };
        self.emit(event).await;
    }

    fn sms_service(&self) -> u8 {
        self.identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .capabilities
            .sms_service
    }
}
