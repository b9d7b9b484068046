//! Pure parsers of AT response lines, one per command, named after it.
//!
//! Fields are split by hand rather than with `at-commands`' parser: that
//! parser fails on an empty field followed by a quoted one (`+CMT: ,24`,
//! `+CMGL: 1,0,,23`) and parses integers as i32.

use super::error::AtError;

mod identity;
pub use identity::{
    Ati, iccid_from_ef, parse_ati, parse_cfun, parse_cgmi, parse_cgmm, parse_cgmr, parse_cgsn,
    parse_cimi, parse_cpms_set,
};

/// Splits the parameters after `prefix` on commas outside quotes; quoted
/// fields lose their quotes. Empty fields stay as empty strings.
pub fn fields(line: &str, prefix: &str) -> Option<Vec<String>> {
    let rest = line.strip_prefix(prefix)?.trim();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in rest.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    Some(out)
}

fn parse_err(command: &'static str, line: &str, reason: &str) -> AtError {
    AtError::Parse {
        command,
        line: line.to_string(),
        reason: reason.to_string(),
    }
}

fn num<T: std::str::FromStr>(
    command: &'static str,
    line: &str,
    f: Option<&String>,
) -> Result<T, AtError> {
    f.ok_or_else(|| parse_err(command, line, "missing field"))?
        .parse()
        .map_err(|_| parse_err(command, line, "not a number"))
}

/// Signal quality (3GPP TS 27.007 §8.5): `+CSQ: <rssi>,<ber>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    /// dBm = -113 + 2·rssi; `None` when the modem reports 99 (unknown).
    pub dbm: Option<i16>,
    pub ber: u8,
}

/// `+CCLK: "24/05/06,12:34:56+08"` (3GPP TS 27.007 §8.15): the modem's
/// clock as local time and its zone in quarter hours (`+08` is UTC+2).
/// Some SIMCom firmwares leave the zone out: read as UTC. `None` when the
/// line is not a time.
pub fn parse_cclk(line: &str) -> Option<time::OffsetDateTime> {
    let field = fields(line, "+CCLK:")?.join(",");
    let (date, rest) = field.split_once(',')?;
    let (clock, zone_quarters) = match rest.find(['+', '-']) {
        Some(at) => (&rest[..at], rest[at..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let numbers = |text: &str, separator: char| -> Option<Vec<u8>> {
        text.split(separator)
            .map(|n| n.trim().parse().ok())
            .collect()
    };
    let (d, t) = (numbers(date, '/')?, numbers(clock, ':')?);
    let ([yy, month, day], [hour, minute, second]): ([u8; 3], [u8; 3]) =
        (d[..].try_into().ok()?, t[..].try_into().ok()?);
    let date = time::Date::from_calendar_date(
        2000 + i32::from(yy),
        time::Month::try_from(month).ok()?,
        day,
    )
    .ok()?;
    let clock = time::Time::from_hms(hour, minute, second).ok()?;
    let offset = time::UtcOffset::from_whole_seconds(zone_quarters * 15 * 60).ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_offset(offset))
}

pub fn parse_csq(line: &str) -> Result<Signal, AtError> {
    let f = fields(line, "+CSQ:").ok_or_else(|| parse_err("+CSQ", line, "no +CSQ: prefix"))?;
    let rssi: u8 = num("+CSQ", line, f.first())?;
    let ber: u8 = num("+CSQ", line, f.get(1))?;
    let dbm = match rssi {
        0..=31 => Some(-113 + 2 * i16::from(rssi)),
        99 => None,
        _ => return Err(parse_err("+CSQ", line, "rssi out of range 0..=31, 99")),
    };
    Ok(Signal { dbm, ber })
}

/// Network registration status (3GPP TS 27.007 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationStatus {
    NotSearching,
    Home,
    Searching,
    Denied,
    Unknown,
    Roaming,
}

/// `+CREG: [<n>,]<stat>[,<lac>,<ci>[,<AcT>]]`, as answer or URC (also +CGREG/+CEREG).
pub fn parse_creg(line: &str) -> Result<RegistrationStatus, AtError> {
    let prefix = ["+CREG:", "+CGREG:", "+CEREG:"]
        .into_iter()
        .find(|p| line.starts_with(p))
        .ok_or_else(|| parse_err("+CREG", line, "no +CREG: prefix"))?;
    let f = fields(line, prefix).unwrap_or_default();
    // The answer to `AT+CREG?` leads with <n>; the URC does not. A second
    // unquoted numeric field means <n>,<stat>; a quoted one is the <lac>.
    let second_is_quoted = line
        .split_once(',')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('"'));
    let stat_field = if f.len() >= 2 && !second_is_quoted {
        f.get(1)
    } else {
        f.first()
    };
    let stat: u8 = num("+CREG", line, stat_field)?;
    Ok(match stat {
        0 => RegistrationStatus::NotSearching,
        1 => RegistrationStatus::Home,
        2 => RegistrationStatus::Searching,
        3 => RegistrationStatus::Denied,
        5 => RegistrationStatus::Roaming,
        _ => RegistrationStatus::Unknown,
    })
}

/// `+CMTI: <mem>,<index>` (3GPP TS 27.005 §3.4.1).
pub fn parse_cmti(line: &str) -> Result<(String, u32), AtError> {
    let f = fields(line, "+CMTI:").ok_or_else(|| parse_err("+CMTI", line, "no +CMTI: prefix"))?;
    let mem = f.first().cloned().unwrap_or_default();
    let index = num("+CMTI", line, f.get(1))?;
    Ok((mem, index))
}

/// `+CMGS: <mr>` (3GPP TS 27.005 §3.5.1): the message reference.
pub fn parse_cmgs(line: &str) -> Result<u8, AtError> {
    let f = fields(line, "+CMGS:").ok_or_else(|| parse_err("+CMGS", line, "no +CMGS: prefix"))?;
    num("+CMGS", line, f.first())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cclk_reads_local_time_and_its_zone_in_quarter_hours() {
        use time::macros::datetime;
        // Quectel EC25 after NITZ, in UTC+2.
        assert_eq!(
            parse_cclk("+CCLK: \"24/05/06,12:34:56+08\""),
            Some(datetime!(2024-05-06 12:34:56 +2))
        );
        assert_eq!(
            parse_cclk("+CCLK: \"26/12/31,23:59:59-20\""),
            Some(datetime!(2026-12-31 23:59:59 -5))
        );
        // SIMCom firmware without the zone.
        assert_eq!(
            parse_cclk("+CCLK: \"25/01/02,03:04:05\""),
            Some(datetime!(2025-01-02 03:04:05 UTC))
        );
        // A SIM800 that never heard the network: its own 2004 clock (the
        // clock module ignores such times).
        assert_eq!(
            parse_cclk("+CCLK: \"04/01/01,00:00:11+00\""),
            Some(datetime!(2004-01-01 00:00:11 UTC))
        );
        assert_eq!(parse_cclk("+CCLK: \"24/13/06,12:34:56+08\""), None);
        assert_eq!(parse_cclk("+CCLK: \"garbage\""), None);
        assert_eq!(parse_cclk("+CSQ: 20,99"), None);
    }

    // Shapes from 3GPP TS 27.007 §8.5 and §7.2 and TS 27.005 §3.4.1 / §3.5.1.
    #[test]
    fn csq_to_dbm() {
        assert_eq!(parse_csq("+CSQ: 17,99").unwrap().dbm, Some(-79));
        assert_eq!(parse_csq("+CSQ: 99,99").unwrap().dbm, None);
        assert!(parse_csq("+CSQ: 40,0").is_err());
        assert!(parse_csq("+CSQ: 99999999999,0").is_err());
        assert!(parse_csq("+CSQ:").is_err());
    }

    #[test]
    fn creg_answer_and_urc() {
        use RegistrationStatus::*;
        assert_eq!(parse_creg("+CREG: 0,1").unwrap(), Home);
        assert_eq!(parse_creg("+CREG: 2,5,\"1A2B\",\"00C3\"").unwrap(), Roaming);
        assert_eq!(parse_creg("+CREG: 5").unwrap(), Roaming);
        assert_eq!(parse_creg("+CREG: 1,\"1A2B\",\"00C3\"").unwrap(), Home);
        assert_eq!(parse_creg("+CGREG: 0,2").unwrap(), Searching);
        assert!(parse_creg("+CREG: x").is_err());
    }

    #[test]
    fn cmti_and_cmgs() {
        assert_eq!(
            parse_cmti("+CMTI: \"SM\",4").unwrap(),
            ("SM".to_string(), 4)
        );
        assert_eq!(parse_cmgs("+CMGS: 17").unwrap(), 17);
        assert!(parse_cmgs("+CMGS: 300").is_err());
    }

    #[test]
    fn empty_field_then_quoted() {
        assert_eq!(
            fields("+CMGL: 1,0,,23", "+CMGL:").unwrap(),
            vec!["1", "0", "", "23"]
        );
    }
}

/// The state of one call (3GPP TS 27.007 §7.18 `<stat>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    Active,
    Held,
    Dialing,
    Alerting,
    Incoming,
    Waiting,
}

/// One call from `+CLCC: <id>,<dir>,<stat>,<mode>,<mpty>[,<number>,<type>]`
/// (3GPP TS 27.007 §7.18).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Call {
    pub id: u8,
    pub incoming: bool,
    pub state: CallState,
    pub voice: bool,
    pub multiparty: bool,
    pub number: Option<String>,
}

///
/// `None` for a call being released: SIMCom firmware (SIM800 series AT
/// manual, `+CLCC`) reports one with the non-standard `<stat>` 6,
/// "disconnect". Such a call is gone, so a snapshot leaves it out.
pub fn parse_clcc(line: &str) -> Result<Option<Call>, AtError> {
    let f = fields(line, "+CLCC:").ok_or_else(|| parse_err("+CLCC", line, "no +CLCC: prefix"))?;
    let id = num("+CLCC", line, f.first())?;
    let dir: u8 = num("+CLCC", line, f.get(1))?;
    let stat: u8 = num("+CLCC", line, f.get(2))?;
    let mode: u8 = num("+CLCC", line, f.get(3))?;
    let mpty: u8 = num("+CLCC", line, f.get(4))?;
    let state = match stat {
        0 => CallState::Active,
        1 => CallState::Held,
        2 => CallState::Dialing,
        3 => CallState::Alerting,
        4 => CallState::Incoming,
        5 => CallState::Waiting,
        6 => return Ok(None),
        _ => return Err(parse_err("+CLCC", line, "stat out of range 0..=6")),
    };
    let number = f.get(5).filter(|n| !n.is_empty()).cloned();
    Ok(Some(Call {
        id,
        incoming: dir == 1,
        state,
        voice: mode == 0,
        multiparty: mpty == 1,
        number,
    }))
}

/// One storage in use: `(name, used, total)`.
pub type Storage = (String, u32, u32);

/// `+CPMS: <mem1>,<used1>,<total1>,<mem2>,...` (3GPP TS 27.005 §3.2.2).
pub fn parse_cpms(line: &str) -> Result<Vec<Storage>, AtError> {
    let f = fields(line, "+CPMS:").ok_or_else(|| parse_err("+CPMS", line, "no +CPMS: prefix"))?;
    if f.len() % 3 != 0 {
        return Err(parse_err("+CPMS", line, "fields not in triples"));
    }
    f.chunks(3)
        .map(|t| {
            Ok((
                t[0].clone(),
                num("+CPMS", line, t.get(1))?,
                num("+CPMS", line, t.get(2))?,
            ))
        })
        .collect()
}

/// `+CRSM: <sw1>,<sw2>[,<response>]` (3GPP TS 27.007 §8.18): the response
/// data when the SIM reports success (`sw1` 144 or 145), `None` otherwise.
pub fn parse_crsm(line: &str) -> Result<Option<String>, AtError> {
    let f = fields(line, "+CRSM:").ok_or_else(|| parse_err("+CRSM", line, "no +CRSM: prefix"))?;
    let sw1: u8 = num("+CRSM", line, f.first())?;
    if !matches!(sw1, 144 | 145) {
        return Ok(None);
    }
    Ok(f.get(2).filter(|data| !data.is_empty()).cloned())
}

/// `+CHLD: (0,1,1x,2,2x,3,4)` (3GPP TS 27.007 §7.13): supported services.
pub fn parse_chld_test(line: &str) -> Result<Vec<String>, AtError> {
    let rest = line
        .strip_prefix("+CHLD:")
        .ok_or_else(|| parse_err("+CHLD", line, "no +CHLD: prefix"))?
        .trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| parse_err("+CHLD", line, "expected a parenthesised list"))?;
    Ok(inner
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

#[cfg(test)]
mod call_and_storage_tests {
    use super::*;

    // Shapes from 3GPP TS 27.007 §7.18, §7.13 and TS 27.005 §3.2.2.
    #[test]
    fn clcc_lines() {
        let c = parse_clcc("+CLCC: 1,1,4,0,0,\"+15550001\",145")
            .unwrap()
            .unwrap();
        assert!(c.incoming && c.voice && !c.multiparty);
        assert_eq!((c.id, c.state), (1, CallState::Incoming));
        assert_eq!(c.number.as_deref(), Some("+15550001"));
        let held = parse_clcc("+CLCC: 2,0,1,0,1,,128").unwrap().unwrap();
        assert_eq!((held.state, held.number), (CallState::Held, None));
        assert!(parse_clcc("+CLCC: 1,1").is_err());
        assert!(parse_clcc("+CLCC: 1,0,9,0,0").is_err());
        assert_eq!(
            parse_clcc("+CLCC: 1,0,6,0,0,\"+15550001\",145").unwrap(),
            None
        );
    }

    #[test]
    fn cpms_triples() {
        let s = parse_cpms("+CPMS: \"SM\",3,30,\"SM\",3,30,\"ME\",0,100").unwrap();
        assert_eq!(s[2], ("ME".to_string(), 0, 100));
        assert!(parse_cpms("+CPMS: \"SM\",3").is_err());
    }

    #[test]
    fn chld_services() {
        assert_eq!(
            parse_chld_test("+CHLD: (0,1,1x,2,2x,3,4)").unwrap(),
            vec!["0", "1", "1x", "2", "2x", "3", "4"]
        );
        assert!(parse_chld_test("+CHLD: 0,1").is_err());
    }
}

/// Registration as the driver reports it: the status, whether the SIM is
/// roaming, and the operator when known.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Registration {
    pub status: RegistrationStatus,
    pub roaming: bool,
    pub operator: Option<String>,
}

impl Registration {
    pub fn from_status(status: RegistrationStatus) -> Self {
        Registration {
            status,
            roaming: status == RegistrationStatus::Roaming,
            operator: None,
        }
    }

    /// Registered on the home network or roaming.
    pub fn registered(&self) -> bool {
        matches!(
            self.status,
            RegistrationStatus::Home | RegistrationStatus::Roaming
        )
    }
}

/// `+COPS: <mode>[,<format>,<oper>[,<AcT>]]` (3GPP TS 27.007 §7.3): the
/// operator, `None` when the modem is not registered.
pub fn parse_cops(line: &str) -> Result<Option<String>, AtError> {
    let f = fields(line, "+COPS:").ok_or_else(|| parse_err("+COPS", line, "no +COPS: prefix"))?;
    let _mode: u8 = num("+COPS", line, f.first())?;
    Ok(f.get(2).filter(|o| !o.is_empty()).cloned())
}

/// `+CNUM: [<alpha>],<number>,<type>` (3GPP TS 27.007 §7.1): the subscriber
/// number, `None` when the SIM does not know it.
pub fn parse_cnum(line: &str) -> Result<Option<String>, AtError> {
    let f = fields(line, "+CNUM:").ok_or_else(|| parse_err("+CNUM", line, "no +CNUM: prefix"))?;
    Ok(f.get(1).filter(|n| !n.is_empty()).cloned())
}

/// Splits a test-command answer into its top-level fields: commas inside
/// parentheses or quotes do not split.
fn test_groups(rest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut depth, mut quoted) = (0u32, false);
    for c in rest.trim().chars() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            ',' if !quoted && depth == 0 => {
                out.push(std::mem::take(&mut cur).trim().to_string());
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_string());
    out
}

/// The names in a parenthesised list: `("SM","ME")` → `["SM", "ME"]`.
fn name_list(group: &str) -> Vec<String> {
    group
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `+CPMS: (<mem1>s),(<mem2>s),(<mem3>s)` (3GPP TS 27.005 §3.2.2, test
/// command): the storages usable for reading/deleting, writing, receiving.
pub fn parse_cpms_test(line: &str) -> Result<[Vec<String>; 3], AtError> {
    let rest = line
        .strip_prefix("+CPMS:")
        .ok_or_else(|| parse_err("+CPMS", line, "no +CPMS: prefix"))?;
    let mut groups = test_groups(rest);
    // Wavecom wraps its lists in one more pair and gives two of them:
    // `+CPMS: (("SM","BM","SR"),("SM"))` (python-gsmmodem test/fakemodems.py).
    if groups.len() == 1
        && let Some(inner) = groups[0].strip_prefix('(')
        && inner.starts_with('(')
    {
        let inner = inner.strip_suffix(')').unwrap_or(inner).to_string();
        groups = test_groups(&inner);
    }
    // Some phones leave the parentheses out: `"SM","SM","SM"` (noted in
    // gammu libgammu/phone/at/at-sms.c, ATGEN_ReplyGetSMSMemories).
    if groups.len() == 3 && groups.iter().all(|g| g.starts_with('"')) {
        groups = groups.into_iter().map(|g| format!("({g})")).collect();
    }
    if groups.is_empty() || groups.len() > 3 || groups.iter().any(|g| !g.starts_with('(')) {
        return Err(parse_err(
            "+CPMS",
            line,
            "expected one to three storage lists",
        ));
    }
    // A missing list means the same storages as the one before it.
    while groups.len() < 3 {
        let last = groups[groups.len() - 1].clone();
        groups.push(last);
    }
    Ok([
        name_list(&groups[0]),
        name_list(&groups[1]),
        name_list(&groups[2]),
    ])
}

/// The values a range list allows: `(0-2)`, `(0,2)`, `(0,1,2)`, `0`.
fn range_values(group: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for item in group.trim_matches(|c| c == '(' || c == ')').split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        match item.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (u8, u8) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
                out.extend(lo..=hi);
            }
            None => out.push(item.parse().ok()?),
        }
    }
    Some(out)
}

/// `+CNMI: (<mode>s),(<mt>s),(<bm>s),(<ds>s),(<bfr>s)` (3GPP TS 27.005
/// §3.4.1, test command): the values each parameter allows.
pub fn parse_cnmi_test(line: &str) -> Result<Vec<Vec<u8>>, AtError> {
    let rest = line
        .strip_prefix("+CNMI:")
        .ok_or_else(|| parse_err("+CNMI", line, "no +CNMI: prefix"))?;
    test_groups(rest)
        .iter()
        .map(|g| range_values(g).ok_or_else(|| parse_err("+CNMI", line, "bad range list")))
        .collect()
}

/// Whether a `+CNMI` setting such as `2,1,0,1,0` is within what the test
/// command allows (a parameter the modem does not list is not checked).
pub fn cnmi_allowed(setting: &str, allowed: &[Vec<u8>]) -> bool {
    setting.split(',').enumerate().all(|(i, value)| {
        let Ok(value) = value.trim().parse::<u8>() else {
            return false;
        };
        allowed.get(i).is_none_or(|values| values.contains(&value))
    })
}

/// `+CMGR: <stat>,[<alpha>],<length>` (3GPP TS 27.005 §3.4.3, PDU mode):
/// the message status (0 received unread … 3 stored sent).
pub fn parse_cmgr(line: &str) -> Result<u8, AtError> {
    let f = fields(line, "+CMGR:").ok_or_else(|| parse_err("+CMGR", line, "no +CMGR: prefix"))?;
    num("+CMGR", line, f.first())
}

/// `+CMGL: <index>,<stat>,[<alpha>],<length>` (3GPP TS 27.005 §3.4.2, PDU
/// mode): the index and status of one listed message.
pub fn parse_cmgl(line: &str) -> Result<(u32, u8), AtError> {
    let f = fields(line, "+CMGL:").ok_or_else(|| parse_err("+CMGL", line, "no +CMGL: prefix"))?;
    Ok((
        num("+CMGL", line, f.first())?,
        num("+CMGL", line, f.get(1))?,
    ))
}

/// `+CSMS: <service>,<mt>,<mo>,<bm>` (answer to `AT+CSMS?`, 3GPP TS 27.005
/// §3.2.1): service 1 means each `+CMT` and `+CDS` needs `AT+CNMA`.
pub fn parse_csms(line: &str) -> Result<u8, AtError> {
    let f = fields(line, "+CSMS:").ok_or_else(|| parse_err("+CSMS", line, "no +CSMS: prefix"))?;
    num("+CSMS", line, f.first())
}

#[cfg(test)]
mod sms_and_network_tests {
    use super::*;

    // `+CPMS=?` in the shape of 3GPP TS 27.005 §3.2.2 (test command).
    #[test]
    fn cpms_test_lists() {
        let [r, w, x] =
            parse_cpms_test("+CPMS: (\"SM\",\"ME\"),(\"SM\",\"ME\"),(\"SM\",\"ME\",\"MT\")")
                .unwrap();
        assert_eq!(r, vec!["SM", "ME"]);
        assert_eq!(w, vec!["SM", "ME"]);
        assert_eq!(x, vec!["SM", "ME", "MT"]);
        assert!(parse_cpms_test("+CPMS: \"SM\",1,30").is_err());
        let [r, _, x] = parse_cpms_test("+CPMS: \"SM\",\"SM\",\"SM\"").unwrap();
        assert_eq!((r, x), (vec!["SM".to_string()], vec!["SM".to_string()]));
    }

    // Test-command ranges in both spellings (3GPP TS 27.005 §3.4.1).
    #[test]
    fn cnmi_ranges() {
        let allowed = parse_cnmi_test("+CNMI: (0-3),(0-3),(0,2),(0,1),(0,1)").unwrap();
        assert_eq!(allowed[1], vec![0, 1, 2, 3]);
        assert_eq!(allowed[2], vec![0, 2]);
        assert!(cnmi_allowed("2,1,0,1,0", &allowed));
        assert!(!cnmi_allowed("2,1,0,2,0", &allowed));
        assert!(!cnmi_allowed("2,x", &allowed));
        let huawei = parse_cnmi_test("+CNMI: (0,1,2),(0,1,2,3),(0,2),(0,1,2),(0,1)").unwrap();
        assert!(cnmi_allowed("2,1,0,2,0", &huawei));
        assert!(parse_cnmi_test("+CNMI: (0-x)").is_err());
    }

    #[test]
    fn cmgr_cmgl_csms_cops_cnum() {
        assert_eq!(parse_cmgr("+CMGR: 0,,24").unwrap(), 0);
        assert_eq!(parse_cmgl("+CMGL: 3,1,,24").unwrap(), (3, 1));
        assert!(parse_cmgl("+CMGL: x,1,,24").is_err());
        assert_eq!(parse_csms("+CSMS: 1,1,1,1").unwrap(), 1);
        assert_eq!(
            parse_cops("+COPS: 0,0,\"SIMMASK TEST\",0").unwrap(),
            Some("SIMMASK TEST".to_string())
        );
        assert_eq!(parse_cops("+COPS: 0").unwrap(), None);
        assert_eq!(
            parse_cnum("+CNUM: \"\",\"+15550100\",145").unwrap(),
            Some("+15550100".to_string())
        );
        assert_eq!(parse_cnum("+CNUM: ,\"\",129").unwrap(), None);
    }

    // EF_ICCID read with `AT+CRSM=176,12258,0,0,10` (3GPP TS 27.007 §8.18):
    // success carries the file's bytes; 148,4 is "file not found".
    #[test]
    fn crsm_answers() {
        assert_eq!(
            parse_crsm("+CRSM: 144,0,\"984411663647862149F7\"").unwrap(),
            Some("984411663647862149F7".to_string())
        );
        assert_eq!(parse_crsm("+CRSM: 148,4").unwrap(), None);
        assert_eq!(parse_crsm("+CRSM: 144,0,\"\"").unwrap(), None);
        assert!(parse_crsm("+CRSM: x").is_err());
    }
}

#[cfg(test)]
mod never_panic {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a modem prints after a prefix, every parser answers with
        /// a value or an error, never a panic.
        #[test]
        fn parsers_never_panic(
            prefix in prop::sample::select(vec![
                "+CSQ:", "+CREG:", "+CEREG:", "+CMTI:", "+CMGS:", "+CLCC:", "+CPMS:",
                "+CHLD:", "+COPS:", "+CNUM:", "+CRSM:", "+CNMI:", "+CMGR:", "+CMGL:", "+CSMS:", "",
            ]),
            rest in "\\PC{0,60}",
        ) {
            let line = format!("{prefix}{rest}");
            let _ = parse_csq(&line);
            let _ = parse_creg(&line);
            let _ = parse_cmti(&line);
            let _ = parse_cmgs(&line);
            let _ = parse_clcc(&line);
            let _ = parse_cpms(&line);
            let _ = parse_cpms_test(&line);
            let _ = parse_chld_test(&line);
            let _ = parse_cops(&line);
            let _ = parse_cnum(&line);
            let _ = parse_crsm(&line);
            if let Ok(allowed) = parse_cnmi_test(&line) {
                let _ = cnmi_allowed(&rest, &allowed);
            }
            let _ = parse_cmgr(&line);
            let _ = parse_cmgl(&line);
            let _ = parse_csms(&line);
        }

        /// Parentheses, quotes and commas in any order.
        #[test]
        fn test_command_lists_never_panic(rest in "[()\",A-Z0-9é-]{0,40}") {
            let _ = parse_cpms_test(&format!("+CPMS: {rest}"));
            let _ = parse_cnmi_test(&format!("+CNMI: {rest}"));
            let _ = parse_chld_test(&format!("+CHLD: {rest}"));
        }
    }
}
