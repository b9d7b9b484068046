//! The wire ceiling: how many relays per second one serial line can carry
//! at all, from the exact bytes each relay moves across it (pure).
//!
//! A relay of a message stored on the SIM moves, with echo off:
//!
//! ```text
//! modem: \r\n+CMTI: "SM",1\r\n
//! host:  AT+CMGR=1\r
//! modem: \r\n+CMGR: 0,,<len>\r\n<DELIVER PDU>\r\n\r\nOK\r\n
//! host:  AT+CMGS=<len>\r
//! modem: \r\n>
//! host:  <SUBMIT PDU>^Z
//! modem: \r\n+CMGS: 1\r\n\r\nOK\r\n
//! host:  AT+CMGD=1,0\r
//! modem: \r\nOK\r\n
//! ```
//!
//! A direct delivery moves `\r\n+CMT: ,<len>\r\n<DELIVER PDU>\r\n`, the same
//! send, and `AT+CNMA\r` with its `\r\nOK\r\n` instead. Each direction is
//! counted: AT is command and answer, so the two directions take turns.
//! Indexes and references are one digit, the fewest bytes: for strict
//! turns the ceiling is an upper bound. The line is full duplex, though,
//! and unsolicited codes do not wait their turn: a `+CMT` or `+CDS` can
//! cross the host's `AT+CMGS` and PDU. On the direct path with delivery
//! reports, where such codes carry much of the traffic, a run can pass the
//! ceiling by a little (1.003 with 16 modems, 1.097 with one, measured).
//!
//! With delivery reports asked for (`[sms] delivery_reports`, the default),
//! each send also brings `\r\n+CDS: <len>\r\n<STATUS-REPORT PDU>\r\n`, and
//! on the direct path (phase 2+) its `AT+CNMA\r` and `\r\nOK\r\n`; the
//! ceiling then counts those bytes too.

use crate::pdu::{self, Address, StatusReport, SubmitOptions, Timestamp};

/// How a message reaches the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// `+CMTI`, then read and deleted.
    Stored,
    /// `+CMT` with the PDU, acknowledged by `AT+CNMA`.
    Direct,
}

/// Bytes on the line for relaying `text` from `sender` to `recipient`
/// (single-part texts; a longer one counts its first part), with or without
/// the send's delivery report.
pub fn bytes_per_relay(
    path: Path,
    sender: &str,
    recipient: &str,
    text: &str,
    reports: bool,
) -> usize {
    let timestamp = Timestamp {
        year: 2026,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
        offset_minutes: 0,
    };
    let smsc = Address::international(crate::sim::network::SMSC);
    let deliver = pdu::encode_deliver(
        &Address::international(sender),
        text,
        timestamp,
        1,
        Some(&smsc),
    )
    .ok()
    .and_then(|parts| parts.into_iter().next());
    let submit = Address::from_number(recipient)
        .ok()
        .and_then(|to| {
            pdu::encode_submit(
                &to,
                text,
                1,
                &SubmitOptions {
                    status_report: reports,
                    ..SubmitOptions::default()
                },
            )
            .ok()
        })
        .and_then(|parts| parts.into_iter().next());
    let report = Address::from_number(recipient).ok().and_then(|to| {
        pdu::encode_status_report(
            &StatusReport {
                message_reference: 1,
                recipient: to,
                service_centre_timestamp: timestamp,
                discharge_time: timestamp,
                status: 0,
                user_data: None,
            },
            Some(&smsc),
        )
        .ok()
    });
    let (Some(deliver), Some(submit), Some(report)) = (deliver, submit, report) else {
        return 0;
    };
    let report_bytes = if reports {
        format!("\r\n+CDS: {}\r\n", report.tpdu_length).len()
            + report.hex.len()
            + "\r\n".len()
            + match path {
                Path::Stored => 0,
                Path::Direct => "AT+CNMA\r".len() + "\r\nOK\r\n".len(),
            }
    } else {
        0
    };
    let send = format!("AT+CMGS={}\r", submit.tpdu_length).len()
        + "\r\n> ".len()
        + submit.hex.len()
        + 1
        + "\r\n+CMGS: 1\r\n\r\nOK\r\n".len()
        + report_bytes;
    match path {
        Path::Stored => {
            "\r\n+CMTI: \"SM\",1\r\n".len()
                + "AT+CMGR=1\r".len()
                + format!("\r\n+CMGR: 0,,{}\r\n", deliver.tpdu_length).len()
                + deliver.hex.len()
                + "\r\n\r\nOK\r\n".len()
                + send
                + "AT+CMGD=1,0\r".len()
                + "\r\nOK\r\n".len()
        }
        Path::Direct => {
            format!("\r\n+CMT: ,{}\r\n", deliver.tpdu_length).len()
                + deliver.hex.len()
                + "\r\n".len()
                + send
                + "AT+CNMA\r".len()
                + "\r\nOK\r\n".len()
        }
    }
}

/// Relays per second one line at `baud` (8N1) can carry.
pub fn ceiling_per_second(baud: u32, bytes_per_relay: usize) -> f64 {
    if bytes_per_relay == 0 {
        return 0.0;
    }
    f64::from(baud) / 10.0 / bytes_per_relay as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_text_at_115200_baud_is_fifteen_relays_a_second() {
        let text = "x".repeat(160);
        let (from, to) = ("+447911100000", "+447912100000");
        let bytes = bytes_per_relay(Path::Stored, from, to, &text, false);
        let ceiling = ceiling_per_second(115_200, bytes);
        assert!((15.3..15.5).contains(&ceiling), "{bytes} bytes: {ceiling}");
        let direct = bytes_per_relay(Path::Direct, from, to, &text, false);
        assert!(
            direct < bytes,
            "no read-back and no delete: {direct} < {bytes}"
        );
    }

    #[test]
    fn a_delivery_report_adds_its_urc_and_on_the_direct_path_its_acknowledgement() {
        let (from, to, text) = ("+447911100000", "+447912100000", "x".repeat(160));
        // "\r\n+CDS: 25\r\n", 25 octets of TPDU after an 8-octet SMSC
        // address (66 hex digits), "\r\n".
        let cds = 12 + 66 + 2;
        for (path, extra) in [(Path::Stored, cds), (Path::Direct, cds + 8 + 6)] {
            let without = bytes_per_relay(path, from, to, &text, false);
            let with = bytes_per_relay(path, from, to, &text, true);
            assert_eq!(with - without, extra, "{path:?}");
        }
    }
}
