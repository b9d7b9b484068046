//! Status reports (3GPP TS 23.040 §9.2.2.3) back to the SIM that asked
//! for one: a `+CDS` line, or stored with `+CDSI`, as its `+CNMI` ds says.

use crate::pdu::{self, StatusReport};
use crate::sim::storage::{Stat, StoredMessage};
use crate::sim::textmode;

use std::time::Instant;

use super::Network;
use super::delivery::{ACK_TIMEOUT, AwaitingAck};
use super::smsc::{Held, ReportTo, smsc_address};

/// TS 23.040 §9.2.3.15 TP-Status: short message received by the SME.
pub(super) const DELIVERED: u8 = 0x00;
/// TS 23.040 §9.2.3.15 TP-Status: permanent error, SM validity period expired.
pub(super) const VALIDITY_EXPIRED: u8 = 0x46;

impl Network {
    /// A status report to the SIM that asked, per its `+CNMI` ds. Under
    /// `+CSMS=1` a `+CDS` needs `+CNMA` like a `+CMT`, and waits while one
    /// of either is unacknowledged (27.005 §3.4.1).
    pub(super) fn send_report(&self, report: ReportTo, status: u8) {
        let waits = self
            .with_modem(report.modem, |slot| {
                slot.plugged
                    && slot.settings.cnmi.ds == 1
                    && slot.settings.csms == 1
                    && !slot.awaiting_ack.is_empty()
            })
            .unwrap_or(false);
        if waits {
            self.lock().held.push_back(Held::Report(report, status));
            return;
        }
        let status = StatusReport {
            message_reference: report.mr,
            recipient: report.recipient.clone(),
            service_centre_timestamp: report.submitted,
            discharge_time: self.now_timestamp(),
            status,
            user_data: None,
        };
        let Ok(pdu) = pdu::encode_status_report(&status, Some(&smsc_address())) else {
            return;
        };
        let mut state = self.lock();
        let Some(slot) = state.modems.get_mut(report.modem) else {
            return;
        };
        if !slot.plugged {
            return;
        }
        let settings = slot.settings.clone();
        match settings.cnmi.ds {
            1 => {
                let urc = if settings.text_mode {
                    let Ok(decoded) = pdu::decode_hex(&pdu.hex, true) else {
                        return;
                    };
                    format!(
                        "\r\n+CDS: {}\r\n",
                        textmode::cds_fields(&decoded, report.mr, settings.charset)
                    )
                } else {
                    format!("\r\n+CDS: {}\r\n{}\r\n", pdu.tpdu_length, pdu.hex)
                };
                slot.queue_urc(urc.into_bytes());
                if settings.csms == 1 {
                    slot.awaiting_ack.push_back(AwaitingAck {
                        delivery: None,
                        deadline: Instant::now() + ACK_TIMEOUT,
                    });
                }
            }
            2 => {
                let storage = slot.storages.report_storage(&slot.profile);
                // The name announced may not be the storage's (the EC25
                // quirk the profile describes).
                let name = slot
                    .profile
                    .sms
                    .cdsi_announces
                    .clone()
                    .unwrap_or_else(|| storage.name.clone());
                if let Some(i) = storage.insert(StoredMessage {
                    stat: Stat::RecUnread,
                    pdu: pdu.hex,
                    tpdu_length: pdu.tpdu_length,
                }) {
                    slot.queue_urc(format!("\r\n+CDSI: \"{name}\",{i}\r\n").into_bytes());
                }
            }
            _ => return,
        }
        drop(state);
        self.wake(report.modem);
    }
}
