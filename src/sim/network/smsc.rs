//! The SMSC: it routes each submitted message to a bank SIM (re-split
//! into parts when a long text-mode submit does not fit one DELIVER) or to
//! a handset, holds whatever cannot be delivered now and offers it again,
//! and gives up a message to a handset when its validity period ends.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::number::{PhoneNumber, redact};
use crate::pdu::{
    self, Address, Deliver, EncodedPdu, Encoding, Pdu, Submit, Timestamp, Tpdu, UserData,
};

use super::delivery::{Offer, deliver_to_handset, deliver_to_modem};
use super::reports::{DELIVERED, VALIDITY_EXPIRED};
use super::{Network, NetworkError};

/// The service centre every SIM of the bank is provisioned with (Ofcom's
/// drama range, so never a real number).
pub const SMSC: &str = "+447700900999";

/// Why the network refused a submitted message; each maps to a `+CMS ERROR`
/// code (3GPP TS 27.005 §3.2.5: 0-127 are TS 24.011 Annex E-2 RP-causes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitRefused {
    /// TS 24.011 E-2 cause 1: unassigned (unallocated) number.
    #[error("unassigned number")]
    Unassigned,
    /// TS 24.011 E-2 cause 21: short message transfer rejected (the
    /// destination is barred from receiving).
    #[error("short message transfer rejected")]
    Barred,
    /// TS 27.005 §3.2.5 code 331: no network service.
    #[error("no network service")]
    NoService,
    /// TS 27.005 §3.2.5 code 304: invalid PDU mode parameter.
    #[error("invalid PDU")]
    InvalidPdu,
    /// A code injected by the fault API.
    #[error("injected error {0}")]
    Injected(u16),
}

impl SubmitRefused {
    pub fn code(self) -> u16 {
        match self {
            Self::Unassigned => 1,
            Self::Barred => 21,
            Self::NoService => 331,
            Self::InvalidPdu => 304,
            Self::Injected(code) => code,
        }
    }
}

/// A status report owed to the SIM that submitted a message.
#[derive(Debug, Clone)]
pub(super) struct ReportTo {
    pub(super) modem: usize,
    pub(super) mr: u8,
    pub(super) recipient: Address,
    pub(super) submitted: Timestamp,
}

/// One DELIVER part on its way to a bank modem.
#[derive(Debug, Clone)]
pub(super) struct ModemDelivery {
    pub(super) modem: usize,
    pub(super) pdu: EncodedPdu,
    pub(super) report: Option<ReportTo>,
}

/// One part on its way to a handset.
#[derive(Debug, Clone)]
pub(super) struct HandsetDelivery {
    pub(super) to: String,
    pub(super) from: String,
    pub(super) user_data: UserData,
    pub(super) report: Option<ReportTo>,
    /// The submit's validity period ends here; a message still held then
    /// is given up (TS 23.040 §9.2.3.12).
    pub(super) expires: Option<Instant>,
}

/// What the SMSC carries until it is delivered: one part to a bank modem
/// or to a handset.
#[derive(Debug, Clone)]
pub(super) enum Held {
    Modem(ModemDelivery),
    Handset(HandsetDelivery),
    /// A `+CDS` waiting for the host to acknowledge the transfer before it.
    Report(ReportTo, u8),
}

pub(super) fn smsc_address() -> Address {
    Address::international(SMSC)
}

/// The number a TP address stands for: `+digits` when international,
/// the digits as given otherwise.
fn number_of(address: &Address) -> String {
    address.to_string()
}

impl Network {
    /// Modem `index` submits one SMS-SUBMIT part; the answer is its
    /// message reference (`+CMGS: <mr>`).
    pub fn submit(&self, index: usize, submit: &Submit) -> Result<u8, SubmitRefused> {
        let (from, mr) = {
            let mut state = self.lock();
            let Some(slot) = state.modems.get_mut(index) else {
                return Err(SubmitRefused::NoService);
            };
            if let Some(code) = slot.faults.cms_error_on_submit {
                // A count of refusals: the fault clears with the last one.
                match &mut slot.faults.cms_error_submits {
                    Some(0) => {}
                    Some(left) => {
                        *left -= 1;
                        if *left == 0 {
                            slot.faults.cms_error_on_submit = None;
                            slot.faults.cms_error_submits = None;
                        }
                        return Err(SubmitRefused::Injected(code));
                    }
                    None => return Err(SubmitRefused::Injected(code)),
                }
            }
            if !slot.faults.registration.registered() || !slot.settings.radio_on {
                return Err(SubmitRefused::NoService);
            }
            // TS 23.040 §9.2.3.6: the mobile assigns TP-MR, one more each time.
            slot.next_mr = slot.next_mr.wrapping_add(1);
            (slot.identity.msisdn.clone(), slot.next_mr)
        };
        let to = number_of(&submit.destination);
        let report = submit.status_report_request.then(|| ReportTo {
            modem: index,
            mr,
            recipient: submit.destination.clone(),
            submitted: self.now_timestamp(),
        });
        if let Some(target) = self.subscriber(&to) {
            let reference = self.lock().concat.next(&to);
            let pdu = deliver_for(
                &from,
                &submit.user_data,
                submit.dcs,
                reference,
                self.now_timestamp(),
            )
            .map_err(|_| SubmitRefused::InvalidPdu)?;
            tracing::debug!(modem = index, target, mr, "sms between bank SIMs");
            let count = pdu.len();
            for (i, pdu) in pdu.into_iter().enumerate() {
                self.offer(Held::Modem(ModemDelivery {
                    modem: target,
                    pdu,
                    // One report for the submit, on its last part.
                    report: if i + 1 == count { report.clone() } else { None },
                }));
            }
            return Ok(mr);
        }
        let Ok(number) = PhoneNumber::from_e164(&to) else {
            return Err(SubmitRefused::Unassigned);
        };
        let to = number.e164().to_string();
        {
            let mut state = self.lock();
            let handset = state.handsets.entry(to.clone()).or_default();
            if handset.barred {
                return Err(SubmitRefused::Barred);
            }
        }
        tracing::debug!(modem = index, to = %redact(&to), mr, "sms to handset");
        self.offer(Held::Handset(HandsetDelivery {
            to,
            from,
            user_data: submit.user_data.clone(),
            report,
            expires: submit
                .validity
                .and_then(|validity| validity.seconds())
                .map(|seconds| Instant::now() + Duration::from_secs(seconds)),
        }));
        Ok(mr)
    }

    /// A handset sends `text` to `to` (a bank SIM or another handset);
    /// returns the number of parts the SMSC carries.
    pub fn handset_sms(&self, from: &str, to: &str, text: &str) -> Result<usize, NetworkError> {
        let from = self.handset_number(from)?;
        let to = PhoneNumber::from_e164(to)
            .map_err(|_| NetworkError::InvalidNumber(to.to_string()))?
            .e164()
            .to_string();
        self.lock().handsets.entry(from.clone()).or_default();
        let parts = match self.subscriber(&to) {
            Some(modem) => {
                let reference = self.lock().concat.next(&to);
                let pdus = pdu::encode_deliver(
                    &Address::international(&from),
                    text,
                    self.now_timestamp(),
                    reference,
                    Some(&smsc_address()),
                )
                .map_err(|e| NetworkError::Encode(e.to_string()))?;
                let count = pdus.len();
                tracing::debug!(from = %from, modem, parts = count, "handset sms to bank");
                for pdu in pdus {
                    self.offer(Held::Modem(ModemDelivery {
                        modem,
                        pdu,
                        report: None,
                    }));
                }
                count
            }
            None => {
                self.offer(Held::Handset(HandsetDelivery {
                    to,
                    from,
                    user_data: UserData::text(Encoding::Gsm7, text),
                    report: None,
                    expires: None,
                }));
                1
            }
        };
        Ok(parts)
    }

    /// Offers every held message again (after a delete, a power-on, a plug).
    pub fn retry_held(&self) {
        let held: Vec<Held> = self.lock().held.drain(..).collect();
        for item in held {
            self.offer(item);
        }
    }

    /// Messages to handsets whose validity period has passed by `now` are
    /// given up, with a failed status report when one was asked for.
    pub(super) fn give_up_expired(&self, now: Instant) {
        let given_up: Vec<HandsetDelivery> = {
            let mut state = self.lock();
            let (expired, kept): (VecDeque<Held>, VecDeque<Held>) = state.held.drain(..).partition(
                |held| matches!(held, Held::Handset(d) if d.expires.is_some_and(|at| at <= now)),
            );
            state.held = kept;
            expired
                .into_iter()
                .filter_map(|held| match held {
                    Held::Handset(delivery) => Some(delivery),
                    Held::Modem(_) | Held::Report(..) => None,
                })
                .collect()
        };
        for delivery in given_up {
            tracing::debug!(to = %redact(&delivery.to), "validity period over; message given up");
            if let Some(report) = delivery.report {
                self.send_report(report, VALIDITY_EXPIRED);
            }
        }
    }

    /// Tries to deliver now; holds it if it cannot.
    pub(super) fn offer(&self, item: Held) {
        let outcome = {
            let mut state = self.lock();
            match &item {
                Held::Modem(delivery) => deliver_to_modem(&mut state, delivery),
                Held::Handset(delivery) => deliver_to_handset(&mut state, delivery),
                Held::Report(..) => {
                    drop(state);
                    if let Held::Report(report, status) = item {
                        // Held again there if it must still wait.
                        self.send_report(report, status);
                    }
                    return;
                }
            }
        };
        match outcome {
            Offer::Delivered { report, wake } => {
                if let Some(index) = wake {
                    self.wake(index);
                }
                if let Some(report) = report {
                    self.send_report(report, DELIVERED);
                }
            }
            Offer::AwaitingAck { wake } => self.wake(wake),
            Offer::Held => self.lock().held.push_back(item),
        }
    }
}

/// DELIVER PDUs carrying a submitted part on to another bank SIM: the same
/// user data (concatenation header included) when it fits one PDU, else
/// re-split under `reference` (a long text-mode submit).
fn deliver_for(
    from: &str,
    user_data: &UserData,
    dcs: u8,
    reference: u16,
    timestamp: Timestamp,
) -> Result<Vec<EncodedPdu>, pdu::PduError> {
    let one = pdu::encode(&Pdu {
        smsc: Some(smsc_address()),
        tpdu: Tpdu::Deliver(Deliver {
            originator: Address::international(from),
            pid: 0,
            dcs,
            class: None,
            timestamp,
            more_messages_to_send: false,
            status_report_indication: false,
            reply_path: false,
            user_data: user_data.clone(),
        }),
    });
    match one {
        Ok(pdu) => Ok(vec![pdu]),
        Err(_) => pdu::encode_deliver(
            &Address::international(from),
            &user_data.text,
            timestamp,
            reference,
            Some(&smsc_address()),
        ),
    }
}
