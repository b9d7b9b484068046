//! ITU-T V.250 framing: bytes are echoed and gathered into command lines
//! (`A/` repeats the last one, backspace edits, an overlong line is an
//! error), a line is split into its commands, and each answer is framed as
//! verbose or numeric results (§5.7.1).

use super::{Interpreter, MAX_LINE, Outcome};

impl Interpreter {
    /// Feeds bytes received on the port; returns the bytes the modem sends back.
    pub fn feed(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &byte in input {
            if self.prompt.is_some() {
                self.prompt_byte(byte, &mut out);
                continue;
            }
            if self.echo {
                out.push(byte);
            }
            match byte {
                b'\r' => {
                    let line = std::mem::take(&mut self.line);
                    if std::mem::take(&mut self.overflowed) {
                        self.final_result(&mut out, Outcome::Error);
                    } else {
                        self.execute_line(&line, &mut out);
                    }
                }
                b'\n' => {}
                // Backspace (V.250 S5) edits the line being typed.
                0x08 | 0x7f => {
                    self.line.pop();
                }
                b'/' if self.line.eq_ignore_ascii_case(b"A") => {
                    self.line.clear();
                    let previous = self.previous.clone();
                    self.execute_line(&previous, &mut out);
                }
                _ if self.line.len() >= MAX_LINE => self.overflowed = true,
                _ => self.line.push(byte),
            }
        }
        out
    }

    fn execute_line(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        // V.250 §5.2.1: characters before "AT" are ignored; a line without
        // the prefix gets no answer at all.
        let text = String::from_utf8_lossy(raw);
        let trimmed = text.trim();
        let Some(start) = trimmed.to_ascii_uppercase().find("AT") else {
            return;
        };
        let body = trimmed[start + 2..].to_string();
        self.previous = raw.to_vec();
        // The empty command line (a bare `AT`), which some firmware refuses.
        if body.trim().is_empty() && !self.profile.commands.implements("") {
            self.final_result(out, Outcome::Unknown);
            return;
        }
        let command_line = &trimmed[start..];
        if let Some(vendor) = self
            .profile
            .commands
            .vendor
            .iter()
            .find(|v| v.command.eq_ignore_ascii_case(command_line))
        {
            if self
                .profile
                .noise
                .off_command
                .as_deref()
                .is_some_and(|off| off.eq_ignore_ascii_case(command_line))
            {
                self.periodic_noise = false;
            }
            let lines = vendor.response.clone();
            for line in &lines {
                self.info(out, line);
            }
            self.final_result(out, Outcome::Ok);
            return;
        }
        let mut rest = body.as_str();
        while !rest.is_empty() {
            let (command, tail) = split_command(rest);
            rest = tail;
            match self.execute(command, out) {
                Outcome::Ok => {}
                Outcome::Pending => return,
                failure => {
                    self.final_result(out, failure);
                    return;
                }
            }
        }
        self.final_result(out, Outcome::Ok);
    }

    pub(super) fn set(&mut self, change: impl FnOnce(&mut Self)) -> Outcome {
        change(self);
        Outcome::Ok
    }

    pub(super) fn info(&self, out: &mut Vec<u8>, line: &str) {
        // V.250 §5.7.1: verbose responses are framed by CR LF on both sides,
        // numeric ones end with a single CR.
        if self.verbose {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// A final result in verbose or numeric form (V.250 §5.7.1).
    pub(super) fn final_text(&self, out: &mut Vec<u8>, verbose: &str, numeric: &str) {
        if self.verbose || numeric.is_empty() {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(verbose.as_bytes());
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(numeric.as_bytes());
            out.extend_from_slice(b"\r");
        }
    }

    pub(super) fn final_result(&mut self, out: &mut Vec<u8>, outcome: Outcome) {
        // With the fault flag set, URCs waiting in the network come out
        // between the information lines and the final result, as they can
        // on real hardware.
        let mid_response = self
            .network
            .with_modem(self.index, |slot| slot.faults.urc_mid_response)
            .unwrap_or(false);
        if mid_response {
            out.extend_from_slice(&self.network.take_urcs(self.index));
        }
        let (verbose, numeric) = match outcome {
            Outcome::Ok => ("OK".to_string(), "0"),
            Outcome::Error => ("ERROR".to_string(), "4"),
            Outcome::Unknown => (self.profile.commands.unknown_command.clone(), "4"),
            Outcome::CmeError(code, text) => match self.cmee {
                1 => (format!("+CME ERROR: {code}"), ""),
                2 => (format!("+CME ERROR: {text}"), ""),
                _ => ("ERROR".to_string(), "4"),
            },
            Outcome::CmsError(code) => (format!("+CMS ERROR: {code}"), ""),
            Outcome::Pending => return,
        };
        self.final_text(out, &verbose, numeric);
    }
}

/// Splits the first command off a command line body: a basic command (one
/// letter or `&` + letter, then digits), `D` with the rest of the line
/// (V.250 §6.3.1: the dial string runs to the end), or an extended one
/// (`+`/`^`/`$` up to the next `;` outside quotes).
fn split_command(body: &str) -> (&str, &str) {
    let bytes = body.as_bytes();
    match bytes.first() {
        Some(b'+' | b'^' | b'$' | b'%') => {
            let mut quoted = false;
            for (i, &b) in bytes.iter().enumerate() {
                match b {
                    b'"' => quoted = !quoted,
                    b';' if !quoted => return (&body[..i], &body[i + 1..]),
                    _ => {}
                }
            }
            (body, "")
        }
        Some(b';') => ("", &body[1..]),
        Some(b'D' | b'd') => (body, ""),
        Some(_) => {
            let mut end = body.chars().next().map_or(0, char::len_utf8);
            if bytes.first() == Some(&b'&') && bytes.len() > 1 && bytes[1].is_ascii() {
                end = 2;
            }
            while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'?') {
                end += 1;
            }
            (&body[..end], &body[end..])
        }
        None => ("", ""),
    }
}
