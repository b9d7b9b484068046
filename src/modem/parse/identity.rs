//! Pure parsers of what a modem says about itself and its SIM: the
//! identification texts (`+CGMI`/`+GMI`, `+CGMM`/`+GMM`, `+CGMR`/`+GMR`,
//! `ATI`), the IMEI, the IMSI, EF_ICCID read through `+CRSM`, the
//! functionality level and what a `+CPMS` selection reports.
//!
//! Each takes the answer's information lines as the port collected them.

use super::{AtError, fields, num, parse_err};

/// The text of an identification answer: its lines without the command's
/// tag (`+CGMI:`, `+GMI:` …) or quotes, joined by a space; `None` when the
/// answer holds no text.
fn info_text(lines: &[String], tags: &[&str]) -> Option<String> {
    let parts: Vec<String> = lines
        .iter()
        .map(|line| {
            let line = line.trim();
            let untagged = tags
                .iter()
                .find_map(|tag| line.strip_prefix(tag))
                .unwrap_or(line);
            untagged.trim().trim_matches('"').trim().to_string()
        })
        .filter(|part| !part.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// `AT+CGMI` / `AT+GMI` (3GPP TS 27.007 §5.1, ITU-T V.250 §6.1.4): the
/// manufacturer.
pub fn parse_cgmi(lines: &[String]) -> Option<String> {
    info_text(lines, &["+CGMI:", "+GMI:"])
}

/// `AT+CGMM` / `AT+GMM` (3GPP TS 27.007 §5.2, V.250 §6.1.5): the model.
pub fn parse_cgmm(lines: &[String]) -> Option<String> {
    info_text(lines, &["+CGMM:", "+GMM:"])
}

/// `AT+CGMR` / `AT+GMR` (3GPP TS 27.007 §5.3, V.250 §6.1.6): the revision,
/// every line of it (a Nokia gives five).
pub fn parse_cgmr(lines: &[String]) -> Option<String> {
    info_text(lines, &["+CGMR:", "+GMR:"])
}

/// `AT+CGSN` / `AT+GSN` (3GPP TS 27.007 §5.4, V.250 §6.1.7): the IMEI, 15
/// digits (14 without the check digit, 16 as IMEISV; 3GPP TS 23.003 §6.2).
pub fn parse_cgsn(lines: &[String]) -> Result<String, AtError> {
    let text = info_text(lines, &["+CGSN:", "+GSN:"])
        .ok_or_else(|| parse_err("+CGSN", "", "no value in the answer"))?;
    let imei = text
        .strip_prefix("IMEI:")
        .or_else(|| text.strip_prefix("IMEI"))
        .unwrap_or(&text)
        .trim()
        .trim_matches('"');
    if (14..=17).contains(&imei.len()) && imei.chars().all(|c| c.is_ascii_digit()) {
        Ok(imei.to_string())
    } else {
        Err(parse_err("+CGSN", &text, "not an IMEI (14 to 17 digits)"))
    }
}

/// `AT+CIMI` (3GPP TS 27.007 §7.1): the IMSI, at most 15 digits (3GPP TS
/// 23.003 §2.2), the 3-digit MCC and a 2- or 3-digit MNC at least.
pub fn parse_cimi(lines: &[String]) -> Result<String, AtError> {
    let text = info_text(lines, &["+CIMI:"])
        .ok_or_else(|| parse_err("+CIMI", "", "no value in the answer"))?;
    if (6..=15).contains(&text.len()) && text.chars().all(|c| c.is_ascii_digit()) {
        Ok(text)
    } else {
        Err(parse_err("+CIMI", &text, "not an IMSI (6 to 15 digits)"))
    }
}

/// What `ATI` (ITU-T V.250 §6.1.3) told: its text is the manufacturer's
/// choice, so labelled lines (`Manufacturer: huawei`) are read by their
/// label and unlabelled ones in order (manufacturer, then model).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ati {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub revision: Option<String>,
    pub imei: Option<String>,
}

/// `ATI`: see [`Ati`].
pub fn parse_ati(lines: &[String]) -> Ati {
    let mut ati = Ati::default();
    let mut plain = Vec::new();
    for line in lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        // Capability lists (`+GCAP: +CGSM,+DS`) say nothing of identity.
        if line.starts_with('+') {
            continue;
        }
        let labelled = line.split_once(':').and_then(|(label, value)| {
            let value = value.trim().to_string();
            let slot = match label.trim().to_ascii_lowercase().as_str() {
                "manufacturer" => &mut ati.manufacturer,
                "model" => &mut ati.model,
                "revision" => &mut ati.revision,
                "imei" => &mut ati.imei,
                _ => return None,
            };
            (!value.is_empty()).then(|| *slot = Some(value))
        });
        if labelled.is_none() {
            plain.push(line.to_string());
        }
    }
    let mut plain = plain.into_iter();
    if ati.manufacturer.is_none() {
        ati.manufacturer = plain.next();
    }
    if ati.model.is_none() {
        // One line for both is all some firmware gives (`SIM800 R14.18`).
        ati.model = plain.next().or_else(|| ati.manufacturer.clone());
    }
    ati.imei = ati
        .imei
        .filter(|imei| imei.chars().all(|c| c.is_ascii_digit()));
    ati
}

/// `+CFUN: <fun>` (3GPP TS 27.007 §8.2): 0 minimum functionality, 1 full,
/// 4 radio off.
pub fn parse_cfun(line: &str) -> Result<u8, AtError> {
    let f = fields(line, "+CFUN:").ok_or_else(|| parse_err("+CFUN", line, "no +CFUN: prefix"))?;
    num("+CFUN", line, f.first())
}

/// The answer to a `+CPMS=<mem1>[,<mem2>[,<mem3>]]` selection (3GPP TS
/// 27.005 §3.2.2): `+CPMS: <used1>,<total1>[,<used2>,<total2>[,…]]`, one
/// pair per storage selected.
pub fn parse_cpms_set(line: &str) -> Result<Vec<(u32, u32)>, AtError> {
    let f = fields(line, "+CPMS:").ok_or_else(|| parse_err("+CPMS", line, "no +CPMS: prefix"))?;
    if f.is_empty() || f.len() % 2 != 0 || f.len() > 6 {
        return Err(parse_err(
            "+CPMS",
            line,
            "expected one to three used,total pairs",
        ));
    }
    f.chunks(2)
        .map(|pair| {
            Ok((
                num("+CPMS", line, pair.first())?,
                num("+CPMS", line, pair.get(1))?,
            ))
        })
        .collect()
}

/// The ICCID in EF_ICCID's raw content (3GPP TS 31.102 §4.2.2, as `+CRSM`
/// reads it or Huawei's `^ICCID` prints it): BCD with the two digits of each
/// byte swapped, `F` padding. `None` unless 18 to 20 digits come out (ITU-T
/// E.118).
pub fn iccid_from_ef(raw: &str) -> Option<String> {
    let chars: Vec<char> = raw.trim().trim_matches('"').chars().collect();
    let iccid: String = chars
        .chunks(2)
        .flat_map(|pair| pair.iter().rev())
        .filter(|c| !c.eq_ignore_ascii_case(&'f'))
        .collect();
    ((18..=20).contains(&iccid.len()) && iccid.chars().all(|c| c.is_ascii_digit())).then_some(iccid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(answer: &[&str]) -> Vec<String> {
        answer.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn identification_texts_lose_their_tags() {
        // WavecomMultiband900E1800 (python-gsmmodem test/fakemodems.py):
        // NOTE the space before the text.
        assert_eq!(
            parse_cgmi(&lines(&[" WAVECOM MODEM"])).as_deref(),
            Some("WAVECOM MODEM")
        );
        // An answer under the command's own tag, quoted: the tag of either
        // spelling is dropped.
        assert_eq!(
            parse_cgmi(&lines(&["+CGMI: \"Quectel\""])).as_deref(),
            Some("Quectel")
        );
        assert_eq!(parse_cgmm(&lines(&["+GMM: EC25"])).as_deref(), Some("EC25"));
        // NokiaN79: +CGMR over five lines, all of it the revision.
        assert_eq!(
            parse_cgmr(&lines(&[
                "V ICPR72_08w44.1",
                "24-11-08",
                "RM-348",
                "(c) Nokia",
                "11.049"
            ]))
            .as_deref(),
            Some("V ICPR72_08w44.1 24-11-08 RM-348 (c) Nokia 11.049")
        );
        // GenericTestModem: a bare OK, nothing said.
        assert_eq!(parse_cgmi(&[]), None);
        assert_eq!(parse_cgmm(&lines(&[""])), None);
    }

    #[test]
    fn imei_and_imsi_are_digits_of_their_length() {
        // HuaweiE1752 (python-gsmmodem): bare digits.
        assert_eq!(
            parse_cgsn(&lines(&["111111111111111"])).unwrap(),
            "111111111111111"
        );
        // 3GPP TS 27.007 §5.4 (Rel-12 on): `AT+CGSN=1` answers `+CGSN: "<sn>"`,
        // and firmware that follows it answers the bare command the same way.
        assert_eq!(
            parse_cgsn(&lines(&["+CGSN: \"356938035643809\""])).unwrap(),
            "356938035643809"
        );
        assert_eq!(
            parse_cgsn(&lines(&["IMEI: 356938035643809"])).unwrap(),
            "356938035643809"
        );
        assert!(parse_cgsn(&[]).is_err());
        assert!(parse_cgsn(&lines(&["SIMMASK"])).is_err());
        assert_eq!(
            parse_cimi(&lines(&["001010123456789"])).unwrap(),
            "001010123456789"
        );
        assert!(parse_cimi(&lines(&["+CME ERROR: 10"])).is_err());
        assert!(parse_cimi(&[]).is_err());
    }

    #[test]
    fn ati_is_read_by_label_or_by_order() {
        // Huawei E173 (our profile, after the stick's own ATI): labelled.
        let huawei = parse_ati(&lines(&[
            "Manufacturer: huawei",
            "Model: E173",
            "Revision: 11.126.85.00.209",
            "IMEI: 356938035643809",
            "+GCAP: +CGSM,+DS,+ES",
        ]));
        assert_eq!(
            huawei,
            Ati {
                manufacturer: Some("huawei".into()),
                model: Some("E173".into()),
                revision: Some("11.126.85.00.209".into()),
                imei: Some("356938035643809".into()),
            }
        );
        // Quectel EC25 (AT command manual, ATI): two plain lines, then a
        // labelled revision.
        let quectel = parse_ati(&lines(&["Quectel", "EC25", "Revision: EC25EFAR06A06M4G"]));
        assert_eq!(quectel.manufacturer.as_deref(), Some("Quectel"));
        assert_eq!(quectel.model.as_deref(), Some("EC25"));
        assert_eq!(quectel.revision.as_deref(), Some("EC25EFAR06A06M4G"));
        // SIM800 (SIMCom AT manual, ATI): one line for everything.
        let sim800 = parse_ati(&lines(&["SIM800 R14.18"]));
        assert_eq!(sim800.manufacturer.as_deref(), Some("SIM800 R14.18"));
        assert_eq!(sim800.model.as_deref(), Some("SIM800 R14.18"));
        assert_eq!(sim800.imei, None);
        assert_eq!(parse_ati(&[]), Ati::default());
    }

    #[test]
    fn functionality_and_selection_answers() {
        // 3GPP TS 27.007 §8.2; SIMCom adds nothing, some add the <rst>.
        assert_eq!(parse_cfun("+CFUN: 0").unwrap(), 0);
        assert_eq!(parse_cfun("+CFUN: 4,0").unwrap(), 4);
        assert!(parse_cfun("+CFUN: on").is_err());
        // WavecomMultiband900E1800 answering AT+CPMS="SM","SM".
        assert_eq!(
            parse_cpms_set("+CPMS: 14,50,14,50").unwrap(),
            vec![(14, 50), (14, 50)]
        );
        assert_eq!(parse_cpms_set("+CPMS: 0,50,0,50,0,50").unwrap().len(), 3);
        assert!(parse_cpms_set("+CPMS: 14,50,14").is_err());
        // NokiaN79's AT+CPMS? answer: empty fields everywhere.
        assert!(parse_cpms_set("+CPMS: ,,,,,,,,").is_err());
    }

    #[test]
    fn ef_iccid_is_nibble_swapped_bcd() {
        // 3GPP TS 31.102 §4.2.2: 10 bytes, each byte's digits swapped, F pad.
        assert_eq!(
            iccid_from_ef("984411663647862149F7").as_deref(),
            Some("8944116663746812947")
        );
        assert_eq!(
            iccid_from_ef("\"98441166364786214907\"").as_deref(),
            Some("89441166637468129470")
        );
        // A record of nothing but padding, or of hex that is no BCD.
        assert_eq!(iccid_from_ef("FFFFFFFFFFFFFFFFFFFF"), None);
        assert_eq!(iccid_from_ef("98A411663647862149F7"), None);
    }
}
