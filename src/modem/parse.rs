//! Pure parsers of AT response lines, one per command, named after it.
//!
//! Fields are split by hand rather than with `at-commands`' parser: that
//! parser fails on an empty field followed by a quoted one (`+CMT: ,24`,
//! `+CMGL: 1,0,,23`) and parses integers as i32 (see CRATES.md).

use super::error::AtError;

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
pub enum Registration {
    NotSearching,
    Home,
    Searching,
    Denied,
    Unknown,
    Roaming,
}

/// `+CREG: [<n>,]<stat>[,<lac>,<ci>[,<AcT>]]`, as answer or URC (also +CGREG/+CEREG).
pub fn parse_creg(line: &str) -> Result<Registration, AtError> {
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
        0 => Registration::NotSearching,
        1 => Registration::Home,
        2 => Registration::Searching,
        3 => Registration::Denied,
        5 => Registration::Roaming,
        _ => Registration::Unknown,
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
        assert_eq!(parse_creg("+CREG: 0,1").unwrap(), Registration::Home);
        assert_eq!(
            parse_creg("+CREG: 2,5,\"1A2B\",\"00C3\"").unwrap(),
            Registration::Roaming
        );
        assert_eq!(parse_creg("+CREG: 5").unwrap(), Registration::Roaming);
        assert_eq!(
            parse_creg("+CREG: 1,\"1A2B\",\"00C3\"").unwrap(),
            Registration::Home
        );
        assert_eq!(parse_creg("+CGREG: 0,2").unwrap(), Registration::Searching);
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

/// One call from `+CLCC: <id>,<dir>,<stat>,<mode>,<mpty>[,<number>,<type>]`
/// (3GPP TS 27.007 §7.18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLine {
    pub id: u8,
    pub incoming: bool,
    /// 0 active, 1 held, 2 dialling, 3 alerting, 4 incoming, 5 waiting.
    pub state: u8,
    pub voice: bool,
    pub multiparty: bool,
    pub number: Option<String>,
}

pub fn parse_clcc(line: &str) -> Result<CallLine, AtError> {
    let f = fields(line, "+CLCC:").ok_or_else(|| parse_err("+CLCC", line, "no +CLCC: prefix"))?;
    let id = num("+CLCC", line, f.first())?;
    let dir: u8 = num("+CLCC", line, f.get(1))?;
    let state = num("+CLCC", line, f.get(2))?;
    let mode: u8 = num("+CLCC", line, f.get(3))?;
    let mpty: u8 = num("+CLCC", line, f.get(4))?;
    let number = f.get(5).filter(|n| !n.is_empty()).cloned();
    Ok(CallLine {
        id,
        incoming: dir == 1,
        state,
        voice: mode == 0,
        multiparty: mpty == 1,
        number,
    })
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
        let c = parse_clcc("+CLCC: 1,1,4,0,0,\"+15550001\",145").unwrap();
        assert!(c.incoming && c.voice && !c.multiparty);
        assert_eq!((c.id, c.state), (1, 4));
        assert_eq!(c.number.as_deref(), Some("+15550001"));
        let held = parse_clcc("+CLCC: 2,0,1,0,1,,128").unwrap();
        assert_eq!((held.state, held.number), (1, None));
        assert!(parse_clcc("+CLCC: 1,1").is_err());
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
