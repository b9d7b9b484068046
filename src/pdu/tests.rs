//! The codec against published vectors (each cites its source), the
//! standard's tables, and properties over arbitrary input.

use proptest::prelude::*;

use super::*;

fn decode_ok(hex: &str, with_smsc: bool) -> Decoded {
    decode_hex(hex, with_smsc).unwrap_or_else(|e| panic!("{hex}: {e}"))
}

fn deliver(decoded: &Decoded) -> &Deliver {
    match &decoded.pdu.tpdu {
        Tpdu::Deliver(d) => d,
        other => panic!("not a deliver: {other:?}"),
    }
}

// ModemManager src/tests/test-sms-part-3gpp.c, test_pdu1: extension table
// characters and a negative time zone (0x0A: -5 h).
#[test]
fn modemmanager_pdu1_extension_characters_and_negative_offset() {
    let hex = "07912104442961F4040B916171957291F800001120821105050A\
               6AC8B2BC7C9A83C220F6DB7D2ECB41EDF27C1E3E97411BDE06754FD3D1A0F9BB5D0695F1F4B29B5C2683C6E8B03C3CA697E5F34D6AE303D1D1F2F7DD0D4ABB59A0797D8C0685E7A00028EC26832A960B28EC2683BE6050780EBA97D96C17";
    let decoded = decode_ok(hex, true);
    let d = deliver(&decoded);
    assert_eq!(
        decoded.pdu.smsc.as_ref().unwrap().to_string(),
        "+12404492164"
    );
    assert_eq!(d.originator.to_string(), "+16175927198");
    assert_eq!(d.timestamp.to_rfc3339(), "2011-02-28T11:50:50-05:00");
    assert_eq!(
        d.user_data.text,
        "Here's a longer message [{with some extended characters}] thrown in, such as £ and ΩΠΨ and §¿ as well."
    );
    assert!(decoded.warnings.is_empty(), "{:?}", decoded.warnings);
}

// ModemManager test_pdu2: alphanumeric originator (packed 7-bit), UCS2.
#[test]
fn modemmanager_pdu2_alphanumeric_sender_and_ucs2() {
    let decoded = decode_ok(
        "07919730071111F1041 4D04937BD2C7797E9D3E6140008113092910240610804420435044104 42",
        true,
    );
    let d = deliver(&decoded);
    assert_eq!(d.originator.ton, TypeOfNumber::Alphanumeric);
    assert_eq!(d.originator.to_string(), "InternetSMS");
    assert_eq!(d.user_data.encoding, Encoding::Ucs2);
    assert_eq!(d.user_data.text, "тест");
    assert_eq!(d.timestamp.to_rfc3339(), "2011-03-29T19:20:04+04:00");
}

// ModemManager test_pdu3 and test_pdu3_natl: the dreamfabric "hellohello",
// international and national originators.
#[test]
fn modemmanager_pdu3_hellohello_international_and_national() {
    let international = decode_ok(
        "07912143658709F1040B918100551512F2000011101021436500 0AE8329BFD4697D9EC37",
        true,
    );
    assert_eq!(
        deliver(&international).originator.to_string(),
        "+18005551212"
    );
    assert_eq!(deliver(&international).user_data.text, "hellohello");
    let national = decode_ok(
        "07912143658709F1040B818100551512F20000111010214365000AE8329BFD4697D9EC37",
        true,
    );
    assert_eq!(deliver(&national).originator.to_string(), "18005551212");
    assert_eq!(
        deliver(&national).timestamp.to_rfc3339(),
        "2011-01-01T12:34:56+00:00"
    );
}

// ModemManager test_pdu3_8bit: 8-bit data is kept as octets.
#[test]
fn modemmanager_8bit_data() {
    let decoded = decode_ok(
        "07912143658709F1040B918100551512F20004111010214365000AE8329BFD4697D9EC37DE",
        true,
    );
    let d = deliver(&decoded);
    assert_eq!(d.user_data.encoding, Encoding::EightBit);
    assert_eq!(
        d.user_data.data,
        [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37, 0xDE]
    );
    let json = decoded_json(&decoded);
    assert_eq!(json["data_hex"], "E8329BFD4697D9EC37DE");
}

// ModemManager test_pdu_udhi: KPN welcome message, 16-bit concatenation.
#[test]
fn modemmanager_udhi_16_bit_reference() {
    let decoded = decode_ok(
        "07911356131313F64004850120390011609232239180A006080400100201D7327BFD6EB340E232\
         1BF46E83EA7790F59D1E97DBE1341B442F83C465763D3DA797E56537C81D0ECB41AB59CC1693C1\
         6031D96C064241E5656838AF03A96230982A269BCD462917C8FA4E8FCBED709A0D7ABBE9F6B0FB\
         5C7683D27350984D4FABC9A0B33C4C4FCF5D20EBFB2D079DCB62793DBD06D9C36E50FB2D4E97D9\
         A0B49B5E96BBCB",
        true,
    );
    let d = deliver(&decoded);
    assert_eq!(d.originator.to_string(), "1002");
    assert_eq!(
        d.user_data.concat,
        Some(Concat {
            reference: 0x0010,
            total: 2,
            sequence: 1
        })
    );
    assert!(d.user_data.text.starts_with("Welkom, bel om uw Voicemail"));
    assert!(
        d.user_data
            .text
            .ends_with("Voor gebruik van mobiel interne")
    );
}

// ModemManager test_pdu_multipart: two parts of an 8-bit concatenation.
#[test]
fn modemmanager_multipart_8_bit_reference() {
    let second = decode_ok(
        "07912160130320F6440B916171056429F5000021405291651569320500034C0202E9E8301D4447\
         9741F0B09C3E0785E56590BCCC0ED3CB6410FD0D7ABBCBA0B0FB4D4797E52E10",
        true,
    );
    let d = deliver(&second);
    assert_eq!(
        d.user_data.concat,
        Some(Concat {
            reference: 0x4C,
            total: 2,
            sequence: 2
        })
    );
    assert_eq!(
        d.user_data.text,
        "that the parts are related to one another. "
    );
    assert_eq!(d.timestamp.to_rfc3339(), "2012-04-25T19:56:51-04:00");
}

// ModemManager test_pdu_dcsf1: DCS group F (class 1), text with CR LF.
#[test]
fn modemmanager_dcs_group_f_class_1() {
    let hex = "07913306091093F0040485810000F1116042318051 80A049B7F90D9A1AA5A01668F8769BD3E4B29B9E2EB359A03FC85D06A9C3ED707A0EA2CBC3EE79BB4CA7CBCBA056436 17DA7C76990FD4D979741EE77DD5E0ED741ED371D442E83E0E1F9BC0CD281E677D9B84C06C1DF7539E85C9097E520FB9B2E2F83C6EF369C5E064D8D52D0BC2E07DDEF77D7DC2C7799E5A0771D040FCB41F402BB0047BFDD6550B80ECAD966";
    let decoded = decode_ok(hex, true);
    let d = deliver(&decoded);
    assert_eq!(d.class, Some(1));
    assert_eq!(d.originator.to_string(), "1800");
    assert!(
        d.user_data
            .text
            .starts_with("Info SFR - Confidentiel, à ne jamais transmettre -\r\n")
    );
    assert!(d.user_data.text.ends_with("par téléphone au 963"));
}

// ModemManager test_pdu_stored_by_us: an SMS-SUBMIT as AT+CMGW stores it,
// no SMSC ("00"), UCS2.
#[test]
fn modemmanager_submit_stored_by_us() {
    let decoded = decode_ok(
        "002100098136397339F70008224F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60",
        true,
    );
    assert_eq!(decoded.pdu.smsc, None);
    let Tpdu::Submit(s) = &decoded.pdu.tpdu else {
        panic!("not a submit")
    };
    assert!(s.status_report_request);
    assert_eq!(s.destination.to_string(), "639337937");
    assert_eq!(s.user_data.text, "你好你好你好你好你好你好你好你好你");
}

// ModemManager test_pdu_not_stored: an SMS-STATUS-REPORT.
#[test]
fn modemmanager_status_report() {
    let decoded = decode_ok(
        "07914356060013F1065A098136397339F7219011700463802190117004638030",
        true,
    );
    let Tpdu::StatusReport(r) = &decoded.pdu.tpdu else {
        panic!("not a status report")
    };
    assert_eq!(
        decoded.pdu.smsc.as_ref().unwrap().to_string(),
        "+34656000311"
    );
    assert_eq!(r.message_reference, 0x5A);
    assert_eq!(r.recipient.to_string(), "639337937");
    assert_eq!(
        r.service_centre_timestamp.to_rfc3339(),
        "2012-09-11T07:40:36+02:00"
    );
    assert_eq!(r.status, 0x30);
    assert!(r.still_trying() && !r.delivered() && !r.failed());
}

// The SMS-SUBMIT example of the dreamfabric PDU tutorial
// (www.dreamfabric.com/sms/): "hellohello" to +46708251358, relative
// validity 0xAA (4 days), also oFono unit/test-sms.c test_simple_submit.
#[test]
fn dreamfabric_submit_encodes_byte_for_byte() {
    let options = SubmitOptions {
        validity: Some(ValidityPeriod::Relative(0xAA)),
        ..SubmitOptions::default()
    };
    let parts = encode_submit(
        &Address::international("46708251358"),
        "hellohello",
        0,
        &options,
    )
    .unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(
        parts[0].hex,
        "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"
    );
    assert_eq!(parts[0].tpdu_length, 23);
    assert_eq!(
        ValidityPeriod::Relative(0xAA).seconds(),
        Some(4 * 24 * 3600)
    );
}

// ModemManager test_address_encode_smsc_intl.
#[test]
fn smsc_address_encodes_as_modemmanager_does() {
    let options = SubmitOptions {
        smsc: Some(Address::international("19037029920")),
        ..SubmitOptions::default()
    };
    let parts = encode_submit(&Address::international("1"), "x", 0, &options).unwrap();
    assert!(
        parts[0].hex.starts_with("07919130079229F0"),
        "{}",
        parts[0].hex
    );
}

/// A deliver PDU whose header selects national language tables (TS 23.040
/// §9.2.3.24.15-16) around `septets`.
fn national_pdu(locking: u8, single: u8, septets: &[u8]) -> String {
    let header = [0x25, 0x01, locking, 0x24, 0x01, single];
    let udhl = header.len() as u8;
    let fill = ((7 - (header.len() + 1) * 8 % 7) % 7) as u8;
    let header_septets = ((header.len() + 1) * 8).div_ceil(7);
    let mut tpdu = vec![0x40, 0x01, 0x81, 0xF1, 0x00, 0x00];
    tpdu.extend([0x62, 0x11, 0x52, 0x21, 0x43, 0x65, 0x00]);
    tpdu.push((header_septets + septets.len()) as u8);
    tpdu.push(udhl);
    tpdu.extend(header);
    tpdu.extend(gsm7::pack(septets, fill));
    tpdu.iter().map(|b| format!("{b:02X}")).collect()
}

// TS 23.038 A.3.1 / A.2.1: Turkish locking 0x07 = ı, 0x40 = İ, 0x60 = ç;
// single shift 0x47 = Ğ, 0x73 = ş.
#[test]
fn turkish_tables_decode() {
    let decoded = decode_ok(
        &national_pdu(
            1,
            1,
            &[0x07, 0x40, 0x60, 0x1B, 0x47, 0x1B, 0x73, 0x1B, 0x65],
        ),
        false,
    );
    assert_eq!(deliver(&decoded).user_data.text, "ıİçĞş€");
    assert!(decoded.warnings.is_empty(), "{:?}", decoded.warnings);
}

// TS 23.038 A.2.2 (Spanish single shift) and A.3.3/A.2.3 (Portuguese).
#[test]
fn spanish_and_portuguese_tables_decode() {
    let spanish = decode_ok(&national_pdu(0, 2, &[0x1B, 0x41, 0x1B, 0x6F, 0x61]), false);
    assert_eq!(deliver(&spanish).user_data.text, "Áóa");
    let portuguese = decode_ok(&national_pdu(3, 3, &[0x04, 0x12, 0x7D, 0x1B, 0x5B]), false);
    assert_eq!(deliver(&portuguese).user_data.text, "êª`Ã");
}

// TS 23.038 A.3.6 / A.2.6: Hindi locking 0x00 = U+0901, 0x15 = क (U+0915),
// 0x5F = ् (U+094D); single shift 0x22 = ५ (U+096B). And A.3.13 Urdu 0x00 = ا.
#[test]
fn indian_tables_decode() {
    let hindi = decode_ok(&national_pdu(6, 6, &[0x15, 0x5F, 0x00, 0x1B, 0x21]), false);
    assert_eq!(
        deliver(&hindi).user_data.text,
        "\u{0915}\u{094D}\u{0901}\u{096B}"
    );
    let urdu = decode_ok(&national_pdu(13, 13, &[0x00, 0x20, 0x01]), false);
    assert_eq!(deliver(&urdu).user_data.text, "\u{0627} \u{0622}");
    for language in 4..=13 {
        assert!(
            national::known(language),
            "{}",
            national::language_name(language)
        );
    }
}

#[test]
fn an_unknown_language_falls_back_with_a_warning() {
    let decoded = decode_ok(&national_pdu(14, 0, &[0x41]), false);
    assert_eq!(deliver(&decoded).user_data.text, "A");
    assert!(decoded.warnings.iter().any(|w| w.contains("unknown")));
}

#[test]
fn timestamps_keep_their_offset() {
    let t = Timestamp {
        year: 2026,
        month: 11,
        day: 25,
        hour: 7,
        minute: 5,
        second: 9,
        offset_minutes: -210,
    };
    let mut out = Vec::new();
    address::write_timestamp(&mut out, &t);
    assert_eq!(
        out[6], 0x49,
        "14 quarters: tens 1 with the sign bit, units 4"
    );
    let mut warnings = Vec::new();
    let back =
        address::read_timestamp(&mut address::Reader::new(&out), "time stamp", &mut warnings)
            .unwrap();
    assert_eq!(back, t);
    assert_eq!(back.to_rfc3339(), "2026-11-25T07:05:09-03:30");
}

#[test]
fn bad_input_names_the_octet() {
    assert_eq!(decode_hex("", true), Err(PduError::Empty));
    assert_eq!(
        decode_hex("0G", true),
        Err(PduError::NotHex {
            position: 1,
            found: 'G'
        })
    );
    assert_eq!(decode_hex("000", true), Err(PduError::OddHex(3)));
    let reserved = decode_hex("0003", true).unwrap_err();
    assert!(reserved.to_string().starts_with("octet 1:"), "{reserved}");
    let truncated = decode_hex("0004", true).unwrap_err();
    assert!(truncated.to_string().contains("octet 2"), "{truncated}");
    let too_long = decode_hex("000419", true).unwrap_err();
    assert!(too_long.to_string().contains("20 digits"), "{too_long}");
    let smsc = decode_hex("0C91", true).unwrap_err();
    assert!(smsc.to_string().contains("SMSC length 12"), "{smsc}");
}

#[test]
fn quirks_are_decoded_with_warnings() {
    // A user data length of 160 septets over 10 octets (seen from modems).
    let short = "0004".to_string() + "0B916407281553F8000011101021436500A0E8329BFD4697D9EC37";
    let decoded = decode_ok(&short, true);
    assert_eq!(deliver(&decoded).user_data.text, "hellohello");
    assert!(decoded.warnings[0].contains("user data length 160"));
    // Trailing garbage after the user data.
    let trailing = decode_ok(
        "07912143658709F1040B918100551512F20000111010214365000AE8329BFD4697D9EC37FFFF",
        true,
    );
    assert!(
        trailing
            .warnings
            .iter()
            .any(|w| w.contains("2 octets after"))
    );
    // Lowercase and whitespace, as some modems and people write them.
    let relaxed = decode_ok(
        "07912143658709f1 040b918100551512f2000011101021436500 0ae8329bfd4697d9ec37",
        true,
    );
    assert_eq!(deliver(&relaxed).user_data.text, "hellohello");
}

#[test]
fn segmentation_boundaries() {
    assert_eq!(segment(&"a".repeat(160)).parts.len(), 1);
    let two = segment(&"a".repeat(161));
    assert_eq!(
        two.parts.iter().map(String::len).collect::<Vec<_>>(),
        [153, 8]
    );
    // An escape pair that would straddle the boundary moves whole.
    let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
    let parts = segment(&text).parts;
    assert_eq!(parts[0], "a".repeat(152));
    assert!(parts[1].starts_with('€'));
    assert_eq!(segment(&"ж".repeat(70)).parts.len(), 1);
    let ucs2 = segment(&"ж".repeat(71));
    assert_eq!(ucs2.encoding, Encoding::Ucs2);
    assert_eq!(ucs2.parts[0].chars().count(), 67);
    // A surrogate pair never splits: 33 emoji (66 units) fill a part.
    let emoji = segment(&"😀".repeat(40)).parts;
    assert_eq!(emoji[0].chars().count(), 33);
    assert_eq!(emoji[1].chars().count(), 7);
}

#[test]
fn references_count_per_destination() {
    let mut references = ConcatReferences::new();
    assert_eq!(references.next("+441"), 1);
    assert_eq!(references.next("+441"), 2);
    assert_eq!(references.next("+442"), 1);
    for _ in 0..254 {
        references.next("+441");
    }
    assert_eq!(references.next("+441"), 1, "wraps within 8 bits");
}

#[test]
fn relative_validity_rounds_up() {
    for (seconds, octet) in [
        (300, 0),
        (301, 1),
        (12 * 3600, 143),
        (24 * 3600, 167),
        (2 * 86400, 168),
        (7 * 86400, 173),
    ] {
        assert_eq!(
            ValidityPeriod::relative_from_seconds(seconds),
            ValidityPeriod::Relative(octet),
            "{seconds}"
        );
    }
    assert_eq!(
        ValidityPeriod::Relative(255).seconds(),
        Some(63 * 7 * 86400)
    );
}

#[test]
fn status_reports_round_trip() {
    let report = StatusReport {
        message_reference: 42,
        recipient: Address::international("447911123456"),
        service_centre_timestamp: Timestamp {
            year: 2026,
            month: 1,
            day: 2,
            hour: 3,
            minute: 4,
            second: 5,
            offset_minutes: 60,
        },
        discharge_time: Timestamp {
            year: 2026,
            month: 1,
            day: 2,
            hour: 3,
            minute: 4,
            second: 9,
            offset_minutes: 60,
        },
        status: 0,
        user_data: None,
    };
    let encoded = encode_status_report(&report, None).unwrap();
    let decoded = decode_ok(&encoded.hex, true);
    assert_eq!(decoded.pdu.tpdu, Tpdu::StatusReport(report));
}

/// Decodes every part and joins the texts in sequence order.
fn reassemble(parts: &[EncodedPdu]) -> String {
    let mut pieces: Vec<(u8, String)> = parts
        .iter()
        .map(|p| {
            let decoded = decode_hex(&p.hex, true).unwrap();
            assert!(decoded.warnings.is_empty(), "{:?}", decoded.warnings);
            let user_data = match decoded.pdu.tpdu {
                Tpdu::Submit(s) => s.user_data,
                Tpdu::Deliver(d) => d.user_data,
                Tpdu::StatusReport(_) => panic!("status report"),
            };
            assert_eq!(p.tpdu_length * 2 + 2, p.hex.len());
            (user_data.concat.map_or(1, |c| c.sequence), user_data.text)
        })
        .collect();
    pieces.sort_by_key(|(sequence, _)| *sequence);
    pieces.into_iter().map(|(_, text)| text).collect()
}

fn minimal_parts(text: &str) -> usize {
    if let Some(septets) = gsm7::septet_count(text) {
        if septets <= 160 {
            1
        } else {
            septets.div_ceil(153).max(1)
        }
    } else {
        let units = text.encode_utf16().count();
        if units <= 70 { 1 } else { units.div_ceil(67) }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_text_survives_submit_and_deliver(text in "\\PC{0,400}", reference in 0u16..=255) {
        let submits = encode_submit(&Address::international("447911123456"), &text, reference, &SubmitOptions::default()).unwrap();
        prop_assert_eq!(reassemble(&submits), text.clone());
        let timestamp = Timestamp { year: 2026, month: 11, day: 25, hour: 8, minute: 0, second: 0, offset_minutes: 0 };
        let delivers = encode_deliver(&Address::international("447911123456"), &text, timestamp, reference, None).unwrap();
        prop_assert_eq!(reassemble(&delivers), text);
    }

    #[test]
    fn gsm_texts_with_escapes_survive(text in "[a-z€\\[\\]{}~^|\\\\ ]{0,500}") {
        let parts = encode_submit(&Address::international("1"), &text, 7, &SubmitOptions::default()).unwrap();
        prop_assert_eq!(reassemble(&parts), text);
    }

    #[test]
    fn part_counts_are_minimal(text in "\\PC{0,600}") {
        let segmentation = segment(&text);
        let parts = &segmentation.parts;
        prop_assert!(parts.len() >= minimal_parts(&text));
        prop_assert_eq!(parts.concat(), text.clone());
        if parts.len() > 1 {
            // Every part but the last is full: the next character would not
            // fit, so no split can use fewer parts than this greedy one.
            let (capacity, cost): (usize, fn(&str) -> usize) = match segmentation.encoding {
                Encoding::Gsm7 => (153, |s| gsm7::septet_count(s).unwrap()),
                _ => (67, |s| s.encode_utf16().count()),
            };
            for pair in parts.windows(2) {
                let next = pair[1].chars().next().unwrap().to_string();
                prop_assert!(cost(&pair[0]) <= capacity);
                prop_assert!(cost(&pair[0]) + cost(&next) > capacity);
            }
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), with_smsc: bool) {
        let _ = decode(&bytes, with_smsc);
    }

    #[test]
    fn decoding_arbitrary_hex_never_panics(hex in "[0-9A-Fa-f ]{0,400}", with_smsc: bool) {
        let _ = decode_hex(&hex, with_smsc);
    }

    #[test]
    fn plausible_pdus_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..180), first in 0u8..=255, udl in 0u8..=255) {
        // A valid prefix makes the fuzz reach the user data code.
        let mut bytes = vec![0x00, first, 0x04, 0x91, 0x44, 0x77, 0x00, 0x00];
        bytes.extend([0x62, 0x11, 0x52, 0x21, 0x43, 0x65, 0x00, udl]);
        bytes.extend(tail);
        let _ = decode(&bytes, true);
    }
}
