//! The actor's message requests: sending in PDU mode (split into
//! concatenated parts), reading, listing and deleting stored messages.

use super::{Actor, StoredSms};
use crate::modem::command::Command;
use crate::modem::error::AtError;
use crate::modem::network::AtExec;
use crate::modem::parse::{parse_cmgl, parse_cmgr, parse_cmgs};
use crate::pdu::{self, Address, SubmitOptions};

impl Actor {
    pub(super) async fn send_sms(
        &mut self,
        to: &str,
        text: &str,
        status_report: bool,
    ) -> Result<Vec<u8>, AtError> {
        let destination = Address::from_number(to).map_err(|e| {
            AtError::Invalid(format!("destination {}: {e}", crate::number::redact(to)))
        })?;
        let reference = self.concat_reference;
        self.concat_reference = self.concat_reference.wrapping_add(1);
        let options = SubmitOptions {
            status_report,
            ..SubmitOptions::default()
        };
        let parts = pdu::encode_submit(&destination, text, reference, &options)
            .map_err(|e| AtError::Invalid(format!("message text: {e}")))?;
        let mut references = Vec::with_capacity(parts.len());
        for part in parts {
            let lines = self
                .exec_pdu(&Command::send_pdu(part.tpdu_length), &part.hex)
                .await?;
            let line = lines
                .iter()
                .find(|l| l.starts_with("+CMGS:"))
                .ok_or_else(|| AtError::Parse {
                    command: "+CMGS",
                    line: lines.join(" | "),
                    reason: "no +CMGS: <mr> in the answer".into(),
                })?;
            references.push(parse_cmgs(line)?);
        }
        Ok(references)
    }

    /// Selects `storage` for reading and deleting unless it already is.
    async fn select_storage(&mut self, storage: &str) -> Result<(), AtError> {
        if self.selected_storage.as_deref() == Some(storage) {
            return Ok(());
        }
        self.exec(&Command::select_storage(storage)?).await?;
        self.selected_storage = Some(storage.to_string());
        Ok(())
    }

    pub(super) async fn read_sms(
        &mut self,
        storage: &str,
        index: u32,
    ) -> Result<StoredSms, AtError> {
        self.select_storage(storage).await?;
        let lines = self
            .exec(&Command::new(format!("AT+CMGR={index}"), "+CMGR:"))
            .await?;
        let mut messages = pair_pdus(&lines, "+CMGR:", |line| {
            parse_cmgr(line).map(|status| (index, status))
        })?;
        let (index, status, pdu_hex) = messages.pop().ok_or_else(|| AtError::Parse {
            command: "+CMGR",
            line: lines.join(" | "),
            reason: format!("no message at {storage} {index}"),
        })?;
        Ok(StoredSms {
            storage: storage.to_string(),
            index,
            pdu_hex,
            status,
        })
    }

    pub(super) async fn list_sms(&mut self) -> Result<Vec<StoredSms>, AtError> {
        let storages = self
            .identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .capabilities
            .storages
            .clone();
        let mut all = Vec::new();
        for storage in storages {
            self.select_storage(&storage).await?;
            // 4: all messages, read or not (3GPP TS 27.005 §3.4.2, PDU mode).
            let lines = self.exec(&Command::new("AT+CMGL=4", "+CMGL:")).await?;
            for (index, status, pdu_hex) in pair_pdus(&lines, "+CMGL:", parse_cmgl)? {
                all.push(StoredSms {
                    storage: storage.clone(),
                    index,
                    pdu_hex,
                    status,
                });
            }
        }
        Ok(all)
    }

    pub(super) async fn delete_sms(&mut self, storage: &str, index: u32) -> Result<(), AtError> {
        self.select_storage(storage).await?;
        let line = if self.profile.driver.cmgd_without_flag {
            format!("AT+CMGD={index}")
        } else {
            format!("AT+CMGD={index},0")
        };
        self.exec(&Command::plain(line)).await.map(drop)
    }
}

/// Pairs each header line (`+CMGL: …` / `+CMGR: …`) with the PDU line that
/// follows it (3GPP TS 27.005 §3.4.2–3, PDU mode).
fn pair_pdus<F>(
    lines: &[String],
    prefix: &str,
    header: F,
) -> Result<Vec<(u32, u8, String)>, AtError>
where
    F: Fn(&str) -> Result<(u32, u8), AtError>,
{
    let mut out = Vec::new();
    let mut pending: Option<(u32, u8)> = None;
    for line in lines {
        if line.starts_with(prefix) {
            pending = Some(header(line)?);
        } else if let Some((index, status)) = pending.take() {
            let pdu = line.trim().to_string();
            if pdu.is_empty() || !pdu.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(AtError::Parse {
                    command: "+CMGL",
                    line: line.clone(),
                    reason: "expected a hexadecimal PDU line".into(),
                });
            }
            out.push((index, status, pdu));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // PDU-mode listing shape of 3GPP TS 27.005 §3.4.2; the PDUs are the
    // SMS-DELIVER examples of the digester tests.
    #[test]
    fn cmgl_headers_pair_with_their_pdus() {
        let lines: Vec<String> = [
            "+CMGL: 1,0,,24",
            "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07",
            "+CMGL: 4,1,,24",
            "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD08",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let pairs = pair_pdus(&lines, "+CMGL:", parse_cmgl).unwrap();
        assert_eq!(pairs.len(), 2);
        assert_eq!((pairs[1].0, pairs[1].1), (4, 1));
        assert!(pairs[1].2.ends_with("FD08"));
        let broken: Vec<String> = vec!["+CMGL: 1,0,,24".into(), "not hex".into()];
        assert!(pair_pdus(&broken, "+CMGL:", parse_cmgl).is_err());
    }
}
