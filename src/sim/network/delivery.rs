//! Delivery to a bank modem or a handset: straight to the host as `+CMT`
//! (kept until `+CNMA` under `+CSMS=1`), or into the SIM's storage with
//! `+CMTI`, as the modem's `+CNMI` asks; a handset takes it when it is on.

use std::time::{Duration, Instant};

use crate::pdu;
use crate::sim::storage::{Stat, StoredMessage};
use crate::sim::textmode;

use super::reports::DELIVERED;
use super::smsc::{HandsetDelivery, Held, ModemDelivery, ReportTo};
use super::{Network, NetworkState};

/// How long a `+CMT` waits for `+CNMA` before the network takes it back and
/// stores it instead (3GPP TS 24.011 TR1M is 35-45 s; shorter here so tests
/// and operators see the fallback quickly).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A `+CMT` (or, with `delivery` `None`, a `+CDS`) shown to the host,
/// waiting for its `+CNMA` until `deadline`. Both are the network's one
/// mobile-terminated transfer in progress: the next of either waits.
#[derive(Debug)]
pub(super) struct AwaitingAck {
    pub(super) delivery: Option<ModemDelivery>,
    pub(super) deadline: Instant,
}

/// What came of offering a message once.
pub(super) enum Offer {
    Delivered {
        report: Option<ReportTo>,
        wake: Option<usize>,
    },
    AwaitingAck {
        wake: usize,
    },
    Held,
}

impl Network {
    /// `+CNMA`: the host acknowledged the oldest `+CMT`. False when nothing
    /// waited (27.005 §3.2.5 code 340).
    pub fn acknowledge(&self, index: usize) -> bool {
        let acked = {
            let mut state = self.lock();
            state
                .modems
                .get_mut(index)
                .and_then(|slot| slot.awaiting_ack.pop_front())
        };
        match acked {
            Some(waiting) => {
                if let Some(report) = waiting.delivery.and_then(|delivery| delivery.report) {
                    self.send_report(report, DELIVERED);
                }
                // The next direct delivery may go now.
                self.retry_held();
                true
            }
            None => false,
        }
    }

    /// `+CNMA=2`: the host refused the oldest `+CMT`; the network stores
    /// it instead. False when nothing waited.
    pub fn reject(&self, index: usize) -> bool {
        let taken = self
            .lock()
            .modems
            .get_mut(index)
            .and_then(|slot| slot.awaiting_ack.pop_front());
        match taken {
            Some(waiting) => {
                if let Some(delivery) = waiting.delivery {
                    self.take_back(delivery);
                }
                self.retry_held();
                true
            }
            None => false,
        }
    }

    /// A direct delivery the host did not take: stored this time, whatever
    /// +CNMI says (27.005 §3.4.4: the message must not be lost), or held.
    fn take_back(&self, delivery: ModemDelivery) {
        let stored = store_received(&mut self.lock(), &delivery, true);
        match stored {
            Some(index) => {
                self.wake(index);
                if let Some(report) = delivery.report {
                    self.send_report(report, DELIVERED);
                }
            }
            None => self.lock().held.push_back(Held::Modem(delivery)),
        }
    }

    /// Direct deliveries still unacknowledged at `now`, past their
    /// deadline, are taken back.
    pub(super) fn take_back_unacknowledged(&self, now: Instant) {
        let mut expired = Vec::new();
        for slot in &mut self.lock().modems {
            while slot
                .awaiting_ack
                .front()
                .is_some_and(|waiting| waiting.deadline <= now)
            {
                // A report nobody acknowledged is not kept (it is not a
                // message); a message is.
                if let Some(delivery) = slot.awaiting_ack.pop_front().and_then(|w| w.delivery) {
                    expired.push(delivery);
                }
            }
        }
        for delivery in expired {
            self.take_back(delivery);
        }
    }
}

/// Stores a received DELIVER in `<mem3>`, announcing it with `+CMTI` when
/// `announce` (or when +CNMI asks). Returns the modem index on success.
fn store_received(
    state: &mut NetworkState,
    delivery: &ModemDelivery,
    announce: bool,
) -> Option<usize> {
    let slot = state.modems.get_mut(delivery.modem)?;
    let storage = slot.storages.receive_storage();
    let name = storage.name.clone();
    let index = storage.insert(StoredMessage {
        stat: Stat::RecUnread,
        pdu: delivery.pdu.hex.clone(),
        tpdu_length: delivery.pdu.tpdu_length,
    })?;
    if announce {
        slot.queue_urc(format!("\r\n+CMTI: \"{name}\",{index}\r\n").into_bytes());
    }
    Some(delivery.modem)
}

pub(super) fn deliver_to_modem(state: &mut NetworkState, delivery: &ModemDelivery) -> Offer {
    let Some(slot) = state.modems.get_mut(delivery.modem) else {
        return Offer::Held;
    };
    // A locked SIM is not attached to the network.
    let attached = slot.plugged
        && slot.settings.radio_on
        && slot.faults.registration.registered()
        && slot.lock.ready();
    if !attached {
        return Offer::Held;
    }
    let settings = slot.settings.clone();
    let cnmi = settings.cnmi;
    // Mode 0 buffers indications in the TA: the message goes to storage
    // and no URC is sent (27.005 §3.4.1).
    if cnmi.mt == 2 && cnmi.mode != 0 {
        // 27.005 §3.4.4: no new +CMT before the previous one is
        // acknowledged; the network keeps the next one until then (so an
        // acknowledgement always answers the +CMT its sender saw).
        if settings.csms == 1 && !slot.awaiting_ack.is_empty() {
            return Offer::Held;
        }
        let urc = if settings.text_mode {
            let Ok(decoded) = pdu::decode_hex(&delivery.pdu.hex, true) else {
                return Offer::Held;
            };
            format!(
                "\r\n+CMT: {}\r\n{}\r\n",
                textmode::cmt_header(&decoded, settings.charset, settings.csdh).unwrap_or_default(),
                textmode::data(&decoded, settings.charset)
            )
        } else {
            format!(
                "\r\n+CMT: ,{}\r\n{}\r\n",
                delivery.pdu.tpdu_length, delivery.pdu.hex
            )
        };
        slot.queue_urc(urc.into_bytes());
        if settings.csms == 1 {
            slot.awaiting_ack.push_back(AwaitingAck {
                delivery: Some(delivery.clone()),
                deadline: Instant::now() + ACK_TIMEOUT,
            });
            return Offer::AwaitingAck {
                wake: delivery.modem,
            };
        }
        return Offer::Delivered {
            report: delivery.report.clone(),
            wake: Some(delivery.modem),
        };
    }
    let announce = matches!(cnmi.mt, 1 | 3) && cnmi.mode != 0;
    match store_received(state, delivery, announce) {
        Some(index) => Offer::Delivered {
            report: delivery.report.clone(),
            wake: Some(index),
        },
        // Memory capacity exceeded (TS 24.011 E-2 cause 22): the SMSC keeps it.
        None => Offer::Held,
    }
}

pub(super) fn deliver_to_handset(state: &mut NetworkState, delivery: &HandsetDelivery) -> Offer {
    let handset = state.handsets.entry(delivery.to.clone()).or_default();
    if !handset.power_on {
        return Offer::Held;
    }
    handset.receive(&delivery.from, &delivery.user_data);
    Offer::Delivered {
        report: delivery.report.clone(),
        wake: None,
    }
}
