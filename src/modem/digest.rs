//! The pure AT digester: splits bytes read from a modem port into echo,
//! intermediate lines, final results, the `> ` prompt and URCs.
//!
//! No tokio here: `digest` is a plain function over a byte buffer, so it can be
//! fed one byte at a time or all at once with the same result (see the tests).

/// A final result code ending a command (3GPP TS 27.007 §5.7 / V.250 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalResult {
    Ok,
    Error,
    /// `+CME ERROR: <err>`, numeric or verbose (3GPP TS 27.007 §9.2).
    Cme(String),
    /// `+CMS ERROR: <err>`, numeric or verbose (3GPP TS 27.005 §3.2.5).
    Cms(String),
    NoCarrier,
    Busy,
    NoAnswer,
    NoDialtone,
    Connect(String),
    /// Huawei's `COMMAND NOT SUPPORT`.
    NotSupported,
}

/// One unit the digester recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    /// The modem echoed the command we sent.
    Echo,
    /// An information line belonging to the command in flight.
    Line(String),
    Final(FinalResult),
    /// The `> ` prompt of `AT+CMGS` (no CRLF follows it).
    Prompt,
    /// An unsolicited result; `+CMT`/`+CDS` carry their PDU as a second line.
    Urc(Vec<String>),
}

/// The longest line the digester waits for; longer runs without a line
/// terminator are cut here (V.250 allows far shorter lines; a PDU line is at
/// most 2 × 176 hex digits).
pub const MAX_LINE: usize = 4096;

/// The most lines a quoted `+CUSD` text may span before the quote is taken
/// as never closing.
const MAX_USSD_LINES: usize = 8;

/// What the digester knows about the command in flight.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestState {
    /// The command line sent (without `\r`), to recognise its echo.
    pub command: Option<String>,
    /// Response prefix of the command in flight (e.g. `+CREG:`): a line with
    /// this prefix is the answer, not the URC of the same name.
    pub response_prefix: Option<String>,
    /// The modem may be in numeric mode (`ATV0`, V.250 §6.2.6): a bare
    /// digit is a result code and ends with a lone CR. Set only while
    /// finding out whether a port speaks AT at all.
    pub numeric_results: bool,
}

/// Prefixes of unsolicited result codes (3GPP TS 27.005 §3.4, 27.007 §6–§7)
/// and vendor noise that is recognised so it never pollutes a response.
const URC_PREFIXES: &[&str] = &[
    "+CMTI:",
    "+CMT:",
    "+CDS:",
    "+CDSI:",
    "RING",
    "+CRING:",
    "+CLIP:",
    "+CCWA:",
    "+CLCC:",
    "+CUSD:",
    "+CREG:",
    "+CEREG:",
    "+CGREG:",
    "^RSSI:",
    "^BOOT:",
    "^MODE:",
    "^SRVST:",
    "RDY",
    "Call Ready",
    "SMS Ready",
    "+QIND:",
    "+QUSIM:",
    "+CFUN:",
    "+CPIN:",
    // Huawei call progress (python-gsmmodem test/fakemodems.py, HuaweiK3715).
    "^ORIG:",
    "^CONF:",
    "^CONN:",
    "^CEND:",
    // Wavecom indications (+WIND) and ZTE's call end (HANGUP: <id>).
    "+WIND:",
    "HANGUP:",
    // Keys the other side of a call pressed: SIMCom (AT+DDET) and Quectel
    // (AT+QTONEDET) DTMF detection.
    "+DTMF:",
    "+QTONEDET:",
];

fn is_call_result(line: &str) -> bool {
    matches!(line, "NO CARRIER" | "BUSY" | "NO ANSWER")
}

/// `ATD`, `ATA` and `ATO` end with a call's result code (ITU-T V.250 §6.3.1,
/// §6.3.5, §6.3.7).
fn awaits_call_result(command: &str) -> bool {
    let upper = command.trim().to_ascii_uppercase();
    ["ATD", "ATA", "ATO"].iter().any(|p| upper.starts_with(p))
}

/// URCs whose PDU follows on the next line (3GPP TS 27.005 §3.4.1).
fn has_pdu_line(line: &str) -> bool {
    line.starts_with("+CMT:") || line.starts_with("+CDS:")
}

fn final_result(line: &str) -> Option<FinalResult> {
    Some(match line {
        "OK" => FinalResult::Ok,
        "ERROR" => FinalResult::Error,
        "NO CARRIER" => FinalResult::NoCarrier,
        "BUSY" => FinalResult::Busy,
        "NO ANSWER" => FinalResult::NoAnswer,
        "NO DIALTONE" => FinalResult::NoDialtone,
        "COMMAND NOT SUPPORT" => FinalResult::NotSupported,
        _ => {
            if let Some(rest) = line.strip_prefix("+CME ERROR:") {
                FinalResult::Cme(rest.trim().to_string())
            } else if let Some(rest) = line.strip_prefix("+CMS ERROR:") {
                FinalResult::Cms(rest.trim().to_string())
            } else if let Some(rest) = line.strip_prefix("CONNECT") {
                FinalResult::Connect(rest.trim().to_string())
            } else {
                return None;
            }
        }
    })
}

/// Position and length of the next line terminator (`\r\n`, `\r` or `\n`)
/// at or after `from`; a lone `\r` at the very end may still become `\r\n`,
/// unless `lone_cr_ends` (numeric mode ends its result codes with a CR).
fn find_eol(buf: &[u8], from: usize, lone_cr_ends: bool) -> Option<(usize, usize)> {
    let pos = buf[from..].iter().position(|&b| b == b'\r' || b == b'\n')? + from;
    if buf[pos] == b'\r' {
        match buf.get(pos + 1) {
            Some(b'\n') => Some((pos, 2)),
            Some(_) => Some((pos, 1)),
            None if lone_cr_ends => Some((pos, 1)),
            None => None,
        }
    } else {
        Some((pos, 1))
    }
}

/// A numeric result code (ITU-T V.250 §5.7.1, table 1) that ends a command.
fn numeric_final(line: &str) -> Option<FinalResult> {
    Some(match line {
        "0" => FinalResult::Ok,
        "1" => FinalResult::Connect(String::new()),
        "3" => FinalResult::NoCarrier,
        "4" => FinalResult::Error,
        "6" => FinalResult::NoDialtone,
        "7" => FinalResult::Busy,
        "8" => FinalResult::NoAnswer,
        _ => return None,
    })
}

fn is_noise(b: u8) -> bool {
    b == b'\r' || b == b'\n' || b == 0 || b == b' '
}

/// Digests the start of `buf`: returns what it found (if anything) and how many
/// bytes it consumed. `(None, 0)` means "need more bytes", never an error.
pub fn digest(buf: &[u8], state: &DigestState) -> (Option<Digest>, usize) {
    // Leading line terminators, NUL bytes and stray blanks separate nothing.
    let start = buf.iter().position(|&b| !is_noise(b)).unwrap_or(buf.len());
    if start == buf.len() {
        return (None, start);
    }
    if buf[start..].starts_with(b">") && buf.get(start + 1) == Some(&b' ') {
        return (Some(Digest::Prompt), start + 2);
    }
    if buf[start..].starts_with(b">") && start + 1 == buf.len() {
        return (None, start);
    }
    // Only the first MAX_LINE bytes may hold the terminator: a longer run is
    // cut there, so noise without line ends cannot grow the buffer forever.
    let window = &buf[..buf.len().min(start + MAX_LINE)];
    let (eol, eol_len) = match find_eol(window, start, state.numeric_results) {
        Some(found) => found,
        None if window.len() == start + MAX_LINE => (window.len(), 0),
        None => return (None, start),
    };
    let line = String::from_utf8_lossy(&buf[start..eol]).trim().to_string();
    let consumed = eol + eol_len;

    if let Some(command) = &state.command
        && line.eq_ignore_ascii_case(command.trim())
    {
        return (Some(Digest::Echo), consumed);
    }
    let in_flight = state.command.is_some();
    if let Some(prefix) = &state.response_prefix
        && in_flight
        && line.starts_with(prefix.as_str())
    {
        return (Some(Digest::Line(line)), consumed);
    }
    // NO CARRIER, BUSY and NO ANSWER end a dial or answer; with anything
    // else in flight (or nothing) they report a call that ended meanwhile.
    if is_call_result(&line) && !state.command.as_deref().is_some_and(awaits_call_result) {
        return (Some(Digest::Urc(vec![line])), consumed);
    }
    if in_flight && let Some(result) = final_result(&line) {
        return (Some(Digest::Final(result)), consumed);
    }
    if in_flight
        && state.numeric_results
        && let Some(result) = numeric_final(&line)
    {
        return (Some(Digest::Final(result)), consumed);
    }
    if URC_PREFIXES.iter().any(|p| line.starts_with(p)) {
        if line.starts_with("+CUSD:") && line.matches('"').count() % 2 == 1 {
            // The quoted USSD text holds a line break: take lines until the
            // quote closes (3GPP TS 27.007 §7.15 puts no limit on <str>).
            let mut lines = vec![line.clone()];
            let mut pos = consumed;
            loop {
                if lines.len() > MAX_USSD_LINES {
                    // The quote never closes: the first line is all there is.
                    return (Some(Digest::Urc(vec![line])), consumed);
                }
                let Some((next_eol, next_len)) = find_eol(buf, pos, false) else {
                    return (None, 0);
                };
                let next = String::from_utf8_lossy(&buf[pos..next_eol]).to_string();
                pos = next_eol + next_len;
                let closes = next.matches('"').count() % 2 == 1;
                lines.push(next);
                if closes {
                    return (Some(Digest::Urc(lines)), pos);
                }
            }
        }
        if has_pdu_line(&line) {
            let pdu_start = buf[consumed..]
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .map(|p| p + consumed);
            let Some(pdu_start) = pdu_start else {
                return (None, 0);
            };
            let Some((pdu_eol, pdu_eol_len)) = find_eol(buf, pdu_start, false) else {
                return (None, 0);
            };
            let pdu = String::from_utf8_lossy(&buf[pdu_start..pdu_eol])
                .trim()
                .to_string();
            return (Some(Digest::Urc(vec![line, pdu])), pdu_eol + pdu_eol_len);
        }
        return (Some(Digest::Urc(vec![line])), consumed);
    }
    if !in_flight && let Some(result) = final_result(&line) {
        // A final result with nothing in flight (e.g. after a timeout) is
        // reported as such so the caller can log and drop it.
        return (Some(Digest::Final(result)), consumed);
    }
    (Some(Digest::Line(line)), consumed)
}

/// Digests everything complete in `buf`; returns the digests and the bytes
/// consumed (the rest is an incomplete line to keep for the next read).
pub fn digest_all(buf: &[u8], state: &DigestState) -> (Vec<Digest>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let (found, used) = digest(&buf[pos..], state);
        pos += used;
        match found {
            Some(d) => out.push(d),
            None if used == 0 || pos == buf.len() => break,
            None => {}
        }
    }
    (out, pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `bytes` one at a time, as a slow serial port would.
    fn byte_by_byte(bytes: &[u8], state: &DigestState) -> Vec<Digest> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for &b in bytes {
            buf.push(b);
            let (found, used) = digest_all(&buf, state);
            out.extend(found);
            buf.drain(..used);
        }
        out
    }

    fn both(bytes: &[u8], state: &DigestState) -> Vec<Digest> {
        let (all, _) = digest_all(bytes, state);
        assert_eq!(all, byte_by_byte(bytes, state), "byte-by-byte differs");
        all
    }

    fn cmd(line: &str, prefix: &str) -> DigestState {
        DigestState {
            command: Some(line.to_string()),
            response_prefix: Some(prefix.to_string()),
            numeric_results: false,
        }
    }

    fn line(s: &str) -> Digest {
        Digest::Line(s.to_string())
    }

    // Response shape from 3GPP TS 27.007 §8.5 (+CSQ: <rssi>,<ber>), with echo on.
    #[test]
    fn echo_line_ok() {
        let got = both(
            b"AT+CSQ\r\r\n+CSQ: 17,99\r\n\r\nOK\r\n",
            &cmd("AT+CSQ", "+CSQ:"),
        );
        assert_eq!(
            got,
            vec![
                Digest::Echo,
                line("+CSQ: 17,99"),
                Digest::Final(FinalResult::Ok)
            ]
        );
    }

    // +CMTI URC format from 3GPP TS 27.005 §3.4.1, arriving mid-response.
    #[test]
    fn urc_in_the_middle_of_a_response() {
        let got = both(
            b"\r\n+CPMS: \"SM\",3,30\r\n\r\n+CMTI: \"SM\",4\r\n\r\nOK\r\n",
            &cmd("AT+CPMS?", "+CPMS:"),
        );
        assert_eq!(
            got,
            vec![
                line("+CPMS: \"SM\",3,30"),
                Digest::Urc(vec!["+CMTI: \"SM\",4".into()]),
                Digest::Final(FinalResult::Ok),
            ]
        );
    }

    // +CREG as the answer to AT+CREG? versus as a URC (3GPP TS 27.007 §7.2).
    #[test]
    fn creg_answer_versus_urc() {
        let answer = both(b"\r\n+CREG: 0,1\r\n\r\nOK\r\n", &cmd("AT+CREG?", "+CREG:"));
        assert_eq!(answer[0], line("+CREG: 0,1"));
        let urc = both(b"\r\n+CREG: 5\r\n", &DigestState::default());
        assert_eq!(urc, vec![Digest::Urc(vec!["+CREG: 5".into()])]);
    }

    // Keys pressed during a call arrive whatever is in flight (SIMCom
    // +DTMF, Quectel +QTONEDET); AT+QTONEDET?'s own answer is an answer.
    #[test]
    fn dtmf_reports_are_urcs() {
        let got = both(
            b"\r\n+DTMF: 5\r\n\r\n+CLCC: 1,1,0,0,0\r\n\r\n+QTONEDET: 55\r\n\r\nOK\r\n",
            &cmd("AT+CLCC", "+CLCC:"),
        );
        assert_eq!(
            got,
            vec![
                Digest::Urc(vec!["+DTMF: 5".into()]),
                line("+CLCC: 1,1,0,0,0"),
                Digest::Urc(vec!["+QTONEDET: 55".into()]),
                Digest::Final(FinalResult::Ok),
            ]
        );
        let answer = both(
            b"\r\n+QTONEDET: 1\r\n\r\nOK\r\n",
            &cmd("AT+QTONEDET?", "+QTONEDET:"),
        );
        assert_eq!(answer[0], line("+QTONEDET: 1"));
    }

    // +CMT in PDU mode: "+CMT: [<alpha>],<length><CR><LF><pdu>" (TS 27.005 §3.4.1).
    #[test]
    fn cmt_carries_its_pdu_line() {
        let got = both(
            b"\r\n+CMT: ,24\r\n07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07\r\n",
            &DigestState::default(),
        );
        assert_eq!(
            got,
            vec![Digest::Urc(vec![
                "+CMT: ,24".into(),
                "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07"
                    .into()
            ])]
        );
    }

    // The CMGS prompt is "> " with no line terminator (TS 27.005 §3.5.1).
    #[test]
    fn prompt_without_crlf() {
        let got = both(b"\r\n> ", &cmd("AT+CMGS=23", "+CMGS:"));
        assert_eq!(got, vec![Digest::Prompt]);
    }

    // Error finals: verbose CME (TS 27.007 §9.2), numeric CMS (TS 27.005 §3.2.5),
    // Huawei's "COMMAND NOT SUPPORT".
    #[test]
    fn error_finals() {
        let s = cmd("AT+CPIN?", "+CPIN:");
        assert_eq!(
            both(b"\r\n+CME ERROR: SIM not inserted\r\n", &s),
            vec![Digest::Final(FinalResult::Cme("SIM not inserted".into()))]
        );
        assert_eq!(
            both(b"\r\n+CMS ERROR: 321\r\n", &s),
            vec![Digest::Final(FinalResult::Cms("321".into()))]
        );
        assert_eq!(
            both(b"\r\nCOMMAND NOT SUPPORT\r\n", &s),
            vec![Digest::Final(FinalResult::NotSupported)]
        );
    }

    #[test]
    fn no_carrier_is_a_urc_when_idle_and_final_when_dialling() {
        assert_eq!(
            both(b"\r\nNO CARRIER\r\n", &DigestState::default()),
            vec![Digest::Urc(vec!["NO CARRIER".into()])]
        );
        assert_eq!(
            both(b"\r\nNO CARRIER\r\n", &cmd("ATD+15550001;", "+NONE")),
            vec![Digest::Final(FinalResult::NoCarrier)]
        );
    }

    #[test]
    fn garbage_nul_and_stray_terminators_are_skipped() {
        let got = both(b"\n\0\0\r\r\n\r\nOK\r\n", &cmd("AT", "+NONE"));
        assert_eq!(got, vec![Digest::Final(FinalResult::Ok)]);
    }

    // A USSD answer whose quoted text spans lines (3GPP TS 27.007 §7.15).
    #[test]
    fn cusd_spanning_lines() {
        let got = both(
            b"\r\n+CUSD: 0,\"Balance 5.00\r\nValid to 31/12\",15\r\n",
            &DigestState::default(),
        );
        assert_eq!(
            got,
            vec![Digest::Urc(vec![
                "+CUSD: 0,\"Balance 5.00".into(),
                "Valid to 31/12\",15".into()
            ])]
        );
    }

    #[test]
    fn noise_without_line_ends_is_cut_and_the_port_goes_on() {
        let mut bytes = vec![b'x'; MAX_LINE + 10];
        bytes.extend_from_slice(b"\r\nOK\r\n");
        let got = both(&bytes, &cmd("AT", "+NONE"));
        assert_eq!(got.len(), 3, "{:?}", &got[1..]);
        assert_eq!(got[2], Digest::Final(FinalResult::Ok));
    }

    #[test]
    fn an_unclosed_ussd_quote_does_not_swallow_the_port() {
        let mut bytes = b"\r\n+CUSD: 0,\"never closed\r\n".to_vec();
        for _ in 0..MAX_USSD_LINES {
            bytes.extend_from_slice(b"more\r\n");
        }
        bytes.extend_from_slice(b"\r\n+CMTI: \"SM\",1\r\n");
        let got = both(&bytes, &DigestState::default());
        assert_eq!(
            got.first(),
            Some(&Digest::Urc(vec!["+CUSD: 0,\"never closed".into()]))
        );
        assert_eq!(
            got.last(),
            Some(&Digest::Urc(vec!["+CMTI: \"SM\",1".into()]))
        );
    }

    // ITU-T V.250 §5.7.1: after ATV0 the modem answers `0<CR>` for OK and
    // `4<CR>` for ERROR, with no line feed and nothing after them.
    #[test]
    fn numeric_result_codes_end_a_probe() {
        let probing = DigestState {
            numeric_results: true,
            ..cmd("AT", "+NONE")
        };
        assert_eq!(both(b"0\r", &probing), vec![Digest::Final(FinalResult::Ok)]);
        assert_eq!(
            both(b"AT\r4\r", &probing),
            vec![Digest::Echo, Digest::Final(FinalResult::Error)]
        );
        // Verbose answers read the same in that mode.
        assert_eq!(
            both(b"\r\nERROR\r\n", &probing),
            vec![Digest::Final(FinalResult::Error)]
        );
        // Outside it a bare digit is an information line (an `ATS0?` answer).
        assert_eq!(both(b"0\r\n", &cmd("ATS0?", "+NONE")), vec![line("0")]);
    }

    proptest! {
        #[test]
        fn never_panics_and_byte_by_byte_equals_all_at_once(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            in_flight in any::<bool>(),
        ) {
            let state = if in_flight { cmd("AT+CSQ", "+CSQ:") } else { DigestState::default() };
            let (all, used) = digest_all(&bytes, &state);
            prop_assert!(used <= bytes.len());
            prop_assert_eq!(all, byte_by_byte(&bytes, &state));
        }
    }
}
