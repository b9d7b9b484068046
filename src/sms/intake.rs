//! What one PDU read from a SIM becomes: a part to relay, a delivery report,
//! or something that cannot be routed (with the reason). Pure.

use crate::number::PhoneNumber;
use crate::pdu::{self, PduError, Tpdu, TypeOfNumber};
use crate::sms::accept::InboundPart;
use crate::store::DeliveryStatus;

/// The meaning of one received PDU.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    /// An SMS-DELIVER: a part for [`crate::sms::accept::accept_inbound`].
    Part(InboundPart),
    /// An SMS-STATUS-REPORT for one of our sends; `None` while the network
    /// is still trying (TS 23.040 §9.2.3.15 status 0x20–0x3F).
    StatusReport {
        message_reference: u8,
        status: Option<DeliveryStatus>,
    },
    /// Nothing can be relayed (a service sender without a number, a PDU
    /// that is not for us); the reason is logged.
    Unroutable { reason: String },
}

/// The network's time in a received PDU: the SMSC timestamp of an
/// SMS-DELIVER (TS 23.040 §9.2.3.11), when the network took the message.
pub fn network_time(pdu_hex: &str) -> Option<time::OffsetDateTime> {
    match pdu::decode_hex(pdu_hex, true).ok()?.pdu.tpdu {
        Tpdu::Deliver(deliver) => deliver.timestamp.to_datetime(),
        _ => None,
    }
}

/// Reads `pdu_hex` (as `+CMGR`/`+CMGL`/`+CMT` give it, with the SMSC field)
/// received on the SIM `proxy_iccid`, whose home region reads national
/// sender numbers.
pub fn intake(
    proxy_iccid: &str,
    home_region: Option<&str>,
    pdu_hex: &str,
    location: Option<(String, u32)>,
) -> Result<Intake, PduError> {
    let decoded = pdu::decode_hex(pdu_hex, true)?;
    for warning in &decoded.warnings {
        tracing::debug!(%warning, "received PDU decoded with a warning");
    }
    match decoded.pdu.tpdu {
        Tpdu::Deliver(deliver) => {
            let address = &deliver.originator;
            let sender = match address.ton {
                TypeOfNumber::Alphanumeric => {
                    return Ok(Intake::Unroutable {
                        reason: "the sender is a service name, not a number".into(),
                    });
                }
                TypeOfNumber::International => {
                    PhoneNumber::from_e164(&format!("+{}", address.value))
                }
                _ => PhoneNumber::parse(&address.value, home_region),
            };
            let sender = match sender {
                Ok(sender) => sender,
                Err(error) => {
                    return Ok(Intake::Unroutable {
                        reason: format!("the sender is not a routable number: {error}"),
                    });
                }
            };
            let user_data = deliver.user_data;
            let text = match user_data.encoding {
                pdu::Encoding::EightBit => {
                    return Ok(Intake::Unroutable {
                        reason: "8-bit data (not text) is not relayed".into(),
                    });
                }
                _ => user_data.text,
            };
            Ok(Intake::Part(InboundPart {
                proxy_iccid: proxy_iccid.to_string(),
                sender,
                location,
                pdu_hex: pdu_hex.trim().to_ascii_uppercase(),
                concat: user_data.concat,
                text,
            }))
        }
        Tpdu::StatusReport(report) => Ok(Intake::StatusReport {
            message_reference: report.message_reference,
            status: if report.delivered() {
                Some(DeliveryStatus::Delivered)
            } else if report.still_trying() {
                None
            } else {
                Some(DeliveryStatus::Failed)
            },
        }),
        Tpdu::Submit(_) => Ok(Intake::Unroutable {
            reason: "an SMS-SUBMIT in the inbox (a draft or sent copy)".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{Address, StatusReport, Timestamp, encode_deliver, encode_status_report};

    fn ts() -> Timestamp {
        Timestamp {
            year: 2026,
            month: 11,
            day: 25,
            hour: 10,
            minute: 0,
            second: 0,
            offset_minutes: 0,
        }
    }

    #[test]
    fn an_international_sender_becomes_a_part() {
        let pdus =
            encode_deliver(&Address::international("447911123456"), "hi", ts(), 1, None).unwrap();
        let Intake::Part(part) =
            intake("89", Some("GB"), &pdus[0].hex, Some(("SM".into(), 3))).unwrap()
        else {
            panic!("not a part");
        };
        assert_eq!(part.sender.e164(), "+447911123456");
        assert_eq!(part.text, "hi");
        assert_eq!(part.location, Some(("SM".into(), 3)));
        assert_eq!(part.concat, None);
    }

    #[test]
    fn a_national_sender_is_read_in_the_sims_home_region() {
        let national = Address {
            ton: TypeOfNumber::National,
            npi: 1,
            value: "07911123456".into(),
        };
        let pdus = encode_deliver(&national, "hi", ts(), 1, None).unwrap();
        let Intake::Part(part) = intake("89", Some("GB"), &pdus[0].hex, None).unwrap() else {
            panic!("not a part");
        };
        assert_eq!(part.sender.e164(), "+447911123456");
        // Without a home region the number cannot be placed.
        assert!(matches!(
            intake("89", None, &pdus[0].hex, None).unwrap(),
            Intake::Unroutable { .. }
        ));
    }

    #[test]
    fn long_texts_carry_their_concatenation() {
        let text = "x".repeat(200);
        let pdus = encode_deliver(
            &Address::international("447911123456"),
            &text,
            ts(),
            7,
            None,
        )
        .unwrap();
        assert_eq!(pdus.len(), 2);
        let Intake::Part(part) = intake("89", None, &pdus[1].hex, None).unwrap() else {
            panic!("not a part");
        };
        let concat = part.concat.unwrap();
        assert_eq!((concat.total, concat.sequence), (2, 2));
    }

    #[test]
    fn an_alphanumeric_sender_is_unroutable() {
        let service = Address {
            ton: TypeOfNumber::Alphanumeric,
            npi: 0,
            value: "Operator".into(),
        };
        let pdus = encode_deliver(&service, "balance", ts(), 1, None).unwrap();
        assert!(matches!(
            intake("89", None, &pdus[0].hex, None).unwrap(),
            Intake::Unroutable { .. }
        ));
    }

    #[test]
    fn status_reports_map_to_delivery_states() {
        for (status, expected) in [
            (0x00, Some(DeliveryStatus::Delivered)),
            (0x30, None),
            (0x41, Some(DeliveryStatus::Failed)),
        ] {
            let report = StatusReport {
                message_reference: 42,
                recipient: Address::international("447911123456"),
                service_centre_timestamp: ts(),
                discharge_time: ts(),
                status,
                user_data: None,
            };
            let pdu = encode_status_report(&report, None).unwrap();
            assert_eq!(
                intake("89", None, &pdu.hex, None).unwrap(),
                Intake::StatusReport {
                    message_reference: 42,
                    status: expected
                }
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(intake("89", None, "zz", None).is_err());
        assert!(intake("89", None, "", None).is_err());
    }
}
