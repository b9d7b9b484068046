//! The interpreter's SMS commands, 3GPP TS 27.005 §3 (text and PDU mode):
//! settings, storage (`+CPMS`, `+CMGL`, `+CMGR`, `+CMGD`, `+CMGW`), sending
//! with the `> ` prompt (`+CMGS`, or `+CMSS` from storage) and acknowledging
//! direct deliveries (`+CNMA`).

use super::{CTRL_Z, ESC, Interpreter, Outcome};
use crate::pdu::{self, Address, Encoding, Submit, Tpdu, UserData, gsm7};
use crate::sim::network::Cnmi;
use crate::sim::storage::{Stat, StatFilter, StoredMessage};
use crate::sim::textmode;

/// The longest text a host may type after `> ` before Ctrl-Z: a PDU is at
/// most 176 octets (352 hex digits); text mode allows a long message.
const MAX_PROMPT: usize = 2048;

/// A message being typed after the `> ` prompt.
#[derive(Debug)]
pub(super) struct Prompt {
    kind: PromptKind,
    action: Action,
    buffer: Vec<u8>,
    overflowed: bool,
}

/// What Ctrl-Z does with the typed message.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// `+CMGS`: hand it to the network.
    Send,
    /// `+CMGW`: store it in `<mem2>` with this status.
    Write(Stat),
}

#[derive(Debug)]
enum PromptKind {
    /// `+CMGS=<length>`: the PDU's hex follows, `<length>` octets after the SMSC.
    Pdu { length: usize },
    /// `+CMGS="<da>"`: the text follows.
    Text { destination: Address },
}

/// 27.005 §3.2.5 codes used here.
const CMS_OPERATION_NOT_ALLOWED: u16 = 302;
const CMS_INVALID_PDU: u16 = 304;
const CMS_INVALID_TEXT: u16 = 305;
const CMS_INVALID_INDEX: u16 = 321;
const CMS_NO_ACK_EXPECTED: u16 = 340;

impl Interpreter {
    /// Answers an SMS command; `None` when `upper` is not one.
    pub(super) fn sms_command(
        &mut self,
        command: &str,
        upper: &str,
        out: &mut Vec<u8>,
    ) -> Option<Outcome> {
        let argument = |name: &str| -> Option<&str> {
            upper
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
        };
        let outcome = match upper {
            "+CMGF?" => {
                let mode = u8::from(self.settings().text_mode);
                self.info(out, &format!("+CMGF: {mode}"));
                Outcome::Ok
            }
            "+CMGF=?" => self.line_ok(out, "+CMGF: (0,1)"),
            "+CMGF" | "+CMGF=0" | "+CMGF=1" => {
                let text = upper.ends_with('1');
                self.update_settings(|s| s.text_mode = text);
                Outcome::Ok
            }
            "+CSMS?" => {
                let service = self.settings().csms;
                self.line_ok(out, &format!("+CSMS: {service},1,1,1"))
            }
            "+CSMS=?" if !self.profile.sms.phase2plus => self.line_ok(out, "+CSMS: (0)"),
            "+CSMS=?" => self.line_ok(out, "+CSMS: (0,1)"),
            // Phase 2 firmware: the service it does not offer is refused
            // (27.005 §3.2.1), 303 "operation not supported".
            "+CSMS=1" if !self.profile.sms.phase2plus => Outcome::CmsError(303),
            "+CSMS=0" | "+CSMS=1" => {
                let service = u8::from(upper.ends_with('1'));
                self.update_settings(|s| s.csms = service);
                self.line_ok(out, "+CSMS: 1,1,1")
            }
            "+CPMS=?" => {
                let names = self.profile.sms.storages.iter();
                let list = format!(
                    "({})",
                    names
                        .map(|s| format!("\"{}\"", s.name))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                self.line_ok(out, &format!("+CPMS: {list},{list},{list}"))
            }
            "+CPMS?" => {
                let triple = self
                    .network
                    .with_modem(self.index, |slot| slot.storages.cpms(true))
                    .unwrap_or_default();
                self.line_ok(out, &format!("+CPMS: {triple}"))
            }
            "+CNMI?" => {
                let cnmi = self.settings().cnmi.render();
                self.line_ok(out, &format!("+CNMI: {cnmi}"))
            }
            "+CNMI=?" => {
                let supported = self.profile.sms.cnmi_supported.clone();
                self.line_ok(out, &format!("+CNMI: {supported}"))
            }
            "+CSCA?" => {
                let line = format!("+CSCA: \"{}\",145", self.csca);
                self.line_ok(out, &line)
            }
            "+CSCA=?" => Outcome::Ok,
            "+CSDH?" => {
                let csdh = u8::from(self.settings().csdh);
                self.line_ok(out, &format!("+CSDH: {csdh}"))
            }
            "+CSDH=?" => self.line_ok(out, "+CSDH: (0,1)"),
            "+CSDH" | "+CSDH=0" | "+CSDH=1" => {
                let on = upper.ends_with('1');
                self.update_settings(|s| s.csdh = on);
                Outcome::Ok
            }
            "+CSMP?" => {
                let [fo, vp, pid, dcs] = self.csmp;
                self.line_ok(out, &format!("+CSMP: {fo},{vp},{pid},{dcs}"))
            }
            "+CSMP=?" => Outcome::Ok,
            // 27.005 §3.4.4: PDU mode lists the <n> values; text mode has none.
            "+CNMA=?" if !self.settings().text_mode => self.line_ok(out, "+CNMA: (0-2)"),
            "+CMGS=?" | "+CMGR=?" | "+CNMA=?" | "+CMGW=?" | "+CMSS=?" => Outcome::Ok,
            "+CMGW" => self.start_write("", out),
            "+CMGL=?" => {
                let line = if self.settings().text_mode {
                    "+CMGL: (\"REC UNREAD\",\"REC READ\",\"STO UNSENT\",\"STO SENT\",\"ALL\")"
                } else {
                    "+CMGL: (0-4)"
                };
                self.line_ok(out, line)
            }
            "+CMGD=?" => {
                let capacity = self
                    .network
                    .with_modem(self.index, |slot| slot.storages.read_storage().capacity)
                    .unwrap_or(0);
                self.line_ok(out, &format!("+CMGD: (1-{capacity}),(0-4)"))
            }
            "+CMGL" => self.list(None, out),
            "+CNMA" => self.acknowledge(0),
            _ => {
                if let Some(modes) = argument("+CNMI") {
                    self.set_cnmi(modes)
                } else if let Some(names) = argument("+CPMS") {
                    self.select_storages(names, out)
                } else if let Some(address) = argument("+CSCA") {
                    let address = address.split(',').next().unwrap_or("").trim_matches('"');
                    if Address::from_number(address).is_ok() {
                        self.csca = address.to_string();
                        Outcome::Ok
                    } else {
                        Outcome::Error
                    }
                } else if let Some(values) = argument("+CSMP") {
                    self.set_csmp(values)
                } else if upper.starts_with("+CMGS=") {
                    self.start_send(&command["+CMGS=".len()..], out)
                } else if upper.starts_with("+CMGW=") {
                    self.start_write(&command["+CMGW=".len()..], out)
                } else if upper.starts_with("+CMSS=") {
                    self.send_stored(&command["+CMSS=".len()..], out)
                } else if let Some(filter) = argument("+CMGL") {
                    self.list(Some(filter), out)
                } else if let Some(index) = argument("+CMGR") {
                    self.read(index, out)
                } else if let Some(arguments) = argument("+CMGD") {
                    self.delete(arguments)
                } else if let Some(arguments) = argument("+CNMA") {
                    match arguments.split(',').next().map(str::trim) {
                        Some("0" | "1") => self.acknowledge(0),
                        Some("2") => self.acknowledge(2),
                        _ => Outcome::CmsError(CMS_OPERATION_NOT_ALLOWED),
                    }
                } else {
                    return None;
                }
            }
        };
        Some(outcome)
    }

    fn line_ok(&self, out: &mut Vec<u8>, line: &str) -> Outcome {
        self.info(out, line);
        Outcome::Ok
    }

    /// Information lines written as one block: a header line and its PDU or
    /// text on the very next line, with no blank line between (27.005 §3.4.2).
    fn block(&self, out: &mut Vec<u8>, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        if self.verbose {
            out.extend_from_slice(b"\r\n");
        }
        for line in lines {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    fn set_cnmi(&mut self, modes: &str) -> Outcome {
        match Cnmi::parse(modes) {
            Some(cnmi) if cnmi.mode <= 3 && cnmi.mt <= 3 && cnmi.ds <= 2 && cnmi.bfr <= 1 => {
                self.update_settings(|s| s.cnmi = cnmi);
                Outcome::Ok
            }
            // 27.005 §3.2.5 303: operation not supported.
            _ => Outcome::CmsError(303),
        }
    }

    fn set_csmp(&mut self, values: &str) -> Outcome {
        let mut csmp = self.csmp;
        for (slot, field) in csmp.iter_mut().zip(values.split(',')) {
            let field = field.trim();
            if field.is_empty() {
                continue;
            }
            match field.parse() {
                Ok(value) => *slot = value,
                Err(_) => return Outcome::CmsError(CMS_INVALID_TEXT),
            }
        }
        self.csmp = csmp;
        Outcome::Ok
    }

    /// `+CPMS=<mem1>[,<mem2>[,<mem3>]]` (27.005 §3.2.2).
    fn select_storages(&mut self, names: &str, out: &mut Vec<u8>) -> Outcome {
        let names: Vec<&str> = names
            .split(',')
            .map(|n| n.trim().trim_matches('"'))
            .collect();
        if names.is_empty() || names.len() > 3 {
            return Outcome::CmsError(CMS_OPERATION_NOT_ALLOWED);
        }
        let answer = self.network.with_modem(self.index, |slot| {
            let mut positions = slot.storages.mem;
            for (i, name) in names.iter().enumerate() {
                positions[i] = slot.storages.position(name)?;
            }
            slot.storages.mem = positions;
            Some(slot.storages.cpms(false))
        });
        match answer {
            Ok(Some(counts)) => self.line_ok(out, &format!("+CPMS: {counts}")),
            _ => Outcome::CmsError(CMS_OPERATION_NOT_ALLOWED),
        }
    }

    /// `+CMGL[=<stat>]` (27.005 §3.4.2): the selected messages of `<mem1>`.
    fn list(&mut self, filter: Option<&str>, out: &mut Vec<u8>) -> Outcome {
        let settings = self.settings();
        let filter = match filter {
            None => Some(StatFilter::One(Stat::RecUnread)),
            Some(text) => StatFilter::parse(text, settings.text_mode),
        };
        let Some(filter) = filter else {
            return Outcome::CmsError(if settings.text_mode {
                CMS_INVALID_TEXT
            } else {
                CMS_INVALID_PDU
            });
        };
        let listed = self
            .network
            .with_modem(self.index, |slot| slot.storages.read_storage().list(filter))
            .unwrap_or_default();
        let mut lines = Vec::new();
        for (index, message) in listed {
            if settings.text_mode {
                let Ok(decoded) = pdu::decode_hex(&message.pdu, true) else {
                    continue;
                };
                lines.push(format!(
                    "+CMGL: {index},{}",
                    textmode::cmgl_header(
                        &decoded,
                        message.stat.text(),
                        settings.charset,
                        settings.csdh
                    )
                ));
                if !matches!(decoded.pdu.tpdu, Tpdu::StatusReport(_)) {
                    lines.push(textmode::data(&decoded, settings.charset));
                }
            } else {
                lines.push(format!(
                    "+CMGL: {index},{},,{}",
                    message.stat.code(),
                    message.tpdu_length
                ));
                lines.push(message.pdu.clone());
            }
        }
        self.block(out, &lines);
        Outcome::Ok
    }

    /// `+CMGR=<index>` (27.005 §3.4.3); reading marks a received message read.
    fn read(&mut self, index: &str, out: &mut Vec<u8>) -> Outcome {
        let Ok(index) = index.trim().parse::<u16>() else {
            return Outcome::CmsError(CMS_INVALID_INDEX);
        };
        let settings = self.settings();
        let message = self.network.with_modem(self.index, |slot| {
            let storage = slot.storages.read_storage();
            if !storage.valid_index(index) {
                return Err(());
            }
            Ok(storage.read(index))
        });
        let message: Option<StoredMessage> = match message {
            Ok(Ok(message)) => message,
            _ => return Outcome::CmsError(CMS_INVALID_INDEX),
        };
        // An empty location answers OK with no information (as SIMCom and
        // Huawei firmware do).
        let Some(message) = message else {
            return Outcome::Ok;
        };
        let lines = if settings.text_mode {
            let Ok(decoded) = pdu::decode_hex(&message.pdu, true) else {
                return Outcome::CmsError(CMS_INVALID_INDEX);
            };
            let mut lines = vec![format!(
                "+CMGR: {}",
                textmode::cmgr_header(
                    &decoded,
                    message.stat.text(),
                    settings.charset,
                    settings.csdh
                )
            )];
            if !matches!(decoded.pdu.tpdu, Tpdu::StatusReport(_)) {
                lines.push(textmode::data(&decoded, settings.charset));
            }
            lines
        } else {
            vec![
                format!("+CMGR: {},,{}", message.stat.code(), message.tpdu_length),
                message.pdu,
            ]
        };
        self.block(out, &lines);
        Outcome::Ok
    }

    /// `+CMGD=<index>[,<delflag>]` (27.005 §3.5.4). Freed space lets the
    /// network deliver what it held.
    fn delete(&mut self, arguments: &str) -> Outcome {
        let mut fields = arguments.split(',').map(str::trim);
        let index = fields.next().unwrap_or("");
        let flag = match fields.next() {
            None | Some("") => 0,
            Some(flag) => match flag.parse::<u8>() {
                Ok(flag) if flag <= 4 => flag,
                _ => return Outcome::CmsError(CMS_OPERATION_NOT_ALLOWED),
            },
        };
        let index = if index.is_empty() && flag > 0 {
            None
        } else {
            match index.parse::<u16>() {
                Ok(index) => Some(index),
                Err(_) => return Outcome::CmsError(CMS_INVALID_INDEX),
            }
        };
        let deleted = self.network.with_modem(self.index, |slot| {
            let storage = slot.storages.read_storage();
            if flag > 0 {
                return Ok(storage.delete_by_flag(flag));
            }
            match index {
                Some(index) if storage.valid_index(index) => {
                    Ok(usize::from(storage.delete(index).is_some()))
                }
                _ => Err(()),
            }
        });
        match deleted {
            Ok(Ok(count)) => {
                if count > 0 {
                    self.network.retry_held();
                }
                Outcome::Ok
            }
            _ => Outcome::CmsError(CMS_INVALID_INDEX),
        }
    }

    /// `+CNMA` (27.005 §3.4.4): `0`/`1` acknowledge, `2` rejects the oldest
    /// direct delivery (the network then stores it).
    fn acknowledge(&mut self, reply: u8) -> Outcome {
        let taken = if reply == 2 {
            self.network.reject(self.index)
        } else {
            self.network.acknowledge(self.index)
        };
        if taken {
            Outcome::Ok
        } else {
            Outcome::CmsError(CMS_NO_ACK_EXPECTED)
        }
    }

    /// `+CMGS=<length>` (PDU) or `+CMGS="<da>"[,<toda>]` (text): the `> `
    /// prompt, then the message until Ctrl-Z.
    fn start_send(&mut self, arguments: &str, out: &mut Vec<u8>) -> Outcome {
        let text_mode = self.settings().text_mode;
        let fields: Vec<&str> = arguments.split(',').map(str::trim).collect();
        match self.prompt_kind(fields.first().copied().unwrap_or(""), text_mode) {
            Ok(kind) => self.open_prompt(kind, Action::Send, out),
            Err(code) => Outcome::CmsError(code),
        }
    }

    /// `+CMGW=<length>[,<stat>]` (PDU) or `+CMGW[="<da>"[,<toda>[,<stat>]]]`
    /// (text), 27.005 §3.5.3: the message typed after the prompt is stored.
    fn start_write(&mut self, arguments: &str, out: &mut Vec<u8>) -> Outcome {
        let text_mode = self.settings().text_mode;
        let fields: Vec<&str> = arguments.split(',').map(str::trim).collect();
        let stat_field = if text_mode {
            fields.get(2)
        } else {
            fields.get(1)
        };
        let stat = match stat_field.copied().filter(|f| !f.is_empty()) {
            None => Stat::StoUnsent,
            Some(field) => match StatFilter::parse(field, text_mode) {
                Some(StatFilter::One(stat)) => stat,
                _ => {
                    return Outcome::CmsError(if text_mode {
                        CMS_INVALID_TEXT
                    } else {
                        CMS_INVALID_PDU
                    });
                }
            },
        };
        let full = self
            .network
            .with_modem(self.index, |slot| slot.storages.write_storage().is_full())
            .unwrap_or(true);
        if full {
            // The profile's "memory full" code (27.005 §3.2.5: 322).
            return Outcome::CmsError(self.profile.sms.storage_full_error);
        }
        let first = fields.first().copied().unwrap_or("");
        // Text mode without a destination stores a draft to no one yet.
        let kind = if text_mode && first.is_empty() {
            Ok(PromptKind::Text {
                destination: Address {
                    ton: pdu::TypeOfNumber::Unknown,
                    npi: 1,
                    value: String::new(),
                },
            })
        } else {
            self.prompt_kind(first, text_mode)
        };
        match kind {
            Ok(kind) => self.open_prompt(kind, Action::Write(stat), out),
            Err(code) => Outcome::CmsError(code),
        }
    }

    /// The first argument of `+CMGS`/`+CMGW`: a length (PDU) or a number (text).
    fn prompt_kind(&self, first: &str, text_mode: bool) -> Result<PromptKind, u16> {
        if text_mode {
            let typed = first.trim_matches('"');
            self.settings()
                .charset
                .decode(typed)
                .and_then(|number| Address::from_number(&number).ok())
                .map(|destination| PromptKind::Text { destination })
                .ok_or(CMS_INVALID_TEXT)
        } else {
            match first.parse::<usize>() {
                // TS 23.040: an SMS-SUBMIT TPDU is at most 164 octets.
                Ok(length) if (1..=164).contains(&length) => Ok(PromptKind::Pdu { length }),
                _ => Err(CMS_INVALID_PDU),
            }
        }
    }

    fn open_prompt(&mut self, kind: PromptKind, action: Action, out: &mut Vec<u8>) -> Outcome {
        self.prompt = Some(Prompt {
            kind,
            action,
            buffer: Vec::new(),
            overflowed: false,
        });
        out.extend_from_slice(b"\r\n> ");
        Outcome::Pending
    }

    /// `+CMSS=<index>[,<da>]` (27.005 §3.5.2): sends a stored message.
    fn send_stored(&mut self, arguments: &str, out: &mut Vec<u8>) -> Outcome {
        let mut fields = arguments.split(',').map(str::trim);
        let Some(index) = fields.next().and_then(|i| i.parse::<u16>().ok()) else {
            return Outcome::CmsError(CMS_INVALID_INDEX);
        };
        let destination = match fields.next().map(|d| d.trim_matches('"')) {
            None | Some("") => None,
            Some(number) => match Address::from_number(number) {
                Ok(address) => Some(address),
                Err(_) => return Outcome::CmsError(CMS_OPERATION_NOT_ALLOWED),
            },
        };
        let stored = self
            .network
            .with_modem(self.index, |slot| {
                slot.storages.write_storage().get(index).cloned()
            })
            .ok()
            .flatten();
        let Some(stored) = stored else {
            return Outcome::CmsError(CMS_INVALID_INDEX);
        };
        let Some(Tpdu::Submit(mut submit)) =
            pdu::decode_hex(&stored.pdu, true).ok().map(|d| d.pdu.tpdu)
        else {
            return Outcome::CmsError(CMS_OPERATION_NOT_ALLOWED);
        };
        if let Some(destination) = destination {
            submit.destination = destination;
        }
        self.submitted = true;
        match self.network.submit(self.index, &submit) {
            Ok(mr) => {
                let _ = self.network.with_modem(self.index, |slot| {
                    slot.storages.write_storage().set_stat(index, Stat::StoSent)
                });
                self.info(out, &format!("+CMSS: {mr}"));
                Outcome::Ok
            }
            Err(refused) => Outcome::CmsError(refused.code()),
        }
    }

    /// One byte typed after the prompt.
    pub(super) fn prompt_byte(&mut self, byte: u8, out: &mut Vec<u8>) {
        match byte {
            CTRL_Z => {
                if let Some(prompt) = self.prompt.take() {
                    let outcome = self.send(prompt, out);
                    self.final_result(out, outcome);
                }
            }
            ESC => {
                self.prompt = None;
                self.final_result(out, Outcome::Ok);
            }
            b'\r' => {
                let text_mode = matches!(
                    self.prompt.as_ref().map(|p| &p.kind),
                    Some(PromptKind::Text { .. })
                );
                if text_mode {
                    // 27.005 §3.5.1: a CR in the text starts a new line and a
                    // new prompt.
                    self.push_prompt_byte(b'\n');
                    out.extend_from_slice(b"\r\n> ");
                }
            }
            b'\n' => {}
            _ => {
                if self.echo {
                    out.push(byte);
                }
                self.push_prompt_byte(byte);
            }
        }
    }

    fn push_prompt_byte(&mut self, byte: u8) {
        if let Some(prompt) = self.prompt.as_mut() {
            if prompt.buffer.len() >= MAX_PROMPT {
                prompt.overflowed = true;
            } else {
                prompt.buffer.push(byte);
            }
        }
    }

    fn send(&mut self, prompt: Prompt, out: &mut Vec<u8>) -> Outcome {
        if prompt.overflowed {
            return Outcome::CmsError(match prompt.kind {
                PromptKind::Pdu { .. } => CMS_INVALID_PDU,
                PromptKind::Text { .. } => CMS_INVALID_TEXT,
            });
        }
        let submit = match prompt.kind {
            PromptKind::Pdu { length } => match submit_from_pdu(&prompt.buffer, length) {
                Some(submit) => submit,
                None => return Outcome::CmsError(CMS_INVALID_PDU),
            },
            PromptKind::Text { destination } => {
                let typed = String::from_utf8_lossy(&prompt.buffer);
                let Some(text) = self.settings().charset.decode(&typed) else {
                    return Outcome::CmsError(CMS_INVALID_TEXT);
                };
                let [fo, _vp, pid, dcs] = self.csmp;
                // TS 23.038 §4: DCS bits 3-2 = 10 is UCS2.
                let encoding = if dcs & 0x0C == 0x08 || !gsm7::is_gsm7(&text) {
                    Encoding::Ucs2
                } else {
                    Encoding::Gsm7
                };
                Submit {
                    message_reference: 0,
                    destination,
                    pid,
                    dcs: if encoding == Encoding::Ucs2 {
                        0x08
                    } else {
                        0x00
                    },
                    class: None,
                    validity: None,
                    // TS 23.040 §9.2.3.5: TP-SRR is bit 5 of the first octet.
                    status_report_request: fo & 0x20 != 0,
                    reject_duplicates: false,
                    reply_path: false,
                    user_data: UserData::text(encoding, &text),
                }
            }
        };
        match prompt.action {
            Action::Send => {
                self.submitted = true;
                match self.network.submit(self.index, &submit) {
                    Ok(mr) => {
                        self.info(out, &format!("+CMGS: {mr}"));
                        Outcome::Ok
                    }
                    Err(refused) => Outcome::CmsError(refused.code()),
                }
            }
            Action::Write(stat) => self.write(&submit, stat, out),
        }
    }

    /// Stores a SUBMIT in `<mem2>`, answering `+CMGW: <index>`.
    fn write(&mut self, submit: &Submit, stat: Stat, out: &mut Vec<u8>) -> Outcome {
        let encoded = pdu::encode(&pdu::Pdu {
            smsc: None,
            tpdu: Tpdu::Submit(submit.clone()),
        });
        let Ok(encoded) = encoded else {
            return Outcome::CmsError(CMS_INVALID_TEXT);
        };
        let stored = self.network.with_modem(self.index, |slot| {
            slot.storages.write_storage().insert(StoredMessage {
                stat,
                pdu: encoded.hex,
                tpdu_length: encoded.tpdu_length,
            })
        });
        match stored {
            Ok(Some(index)) => {
                self.info(out, &format!("+CMGW: {index}"));
                Outcome::Ok
            }
            _ => Outcome::CmsError(self.profile.sms.storage_full_error),
        }
    }
}

/// The SMS-SUBMIT in what the host typed, if it is one of `length` TPDU
/// octets (27.005 §3.5.1: `<length>` excludes the SMSC field).
fn submit_from_pdu(typed: &[u8], length: usize) -> Option<Submit> {
    let hex = String::from_utf8_lossy(typed);
    let hex = hex.trim();
    let decoded = pdu::decode_hex(hex, true).ok()?;
    let smsc_octets = usize::from(u8::from_str_radix(hex.get(..2)?, 16).ok()?) + 1;
    if hex.len() / 2 != smsc_octets + length {
        return None;
    }
    match decoded.pdu.tpdu {
        Tpdu::Submit(submit) => Some(submit),
        _ => None,
    }
}
