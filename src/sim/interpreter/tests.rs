//! One modem's AT interpreter driven byte by byte: framing and results,
//! identification, SMS in PDU and text mode, PIN, radio off, and a property
//! test that no input breaks it.

use super::general::swap_nibbles;
use super::*;
use crate::profile::Profiles;
use crate::sim::textmode;

fn modem(profile: &str) -> Interpreter {
    let profiles = Profiles::builtin();
    let profile = profiles.get(profile).expect("builtin profile").clone();
    let network = Network::new(vec![(profile, Identity::generate(1, 0))]);
    network.set_plugged(0, Some("/dev/null".into()), None);
    network.boot(0);
    Interpreter::new(network, 0)
}

fn run(modem: &mut Interpreter, input: &str) -> String {
    String::from_utf8_lossy(&modem.feed(input.as_bytes())).into_owned()
}

#[test]
fn echo_and_ok() {
    let mut m = modem("generic");
    let echo = m.profile.boot.echo;
    let out = run(&mut m, "AT\r");
    assert_eq!(out, if echo { "AT\r\r\nOK\r\n" } else { "\r\nOK\r\n" });
    assert_eq!(
        run(&mut m, "ATE0\r"),
        if echo {
            "ATE0\r\r\nOK\r\n"
        } else {
            "\r\nOK\r\n"
        }
    );
    assert_eq!(run(&mut m, "AT\r"), "\r\nOK\r\n");
}

#[test]
fn concatenated_and_chained_commands() {
    let mut m = modem("generic");
    run(&mut m, "ATE0\r");
    let out = run(&mut m, "ATE0V1+CMEE=1;+CGSN\r");
    assert_eq!(out, format!("\r\n{}\r\n\r\nOK\r\n", m.identity.imei));
    assert_eq!(run(&mut m, "AT+CMEE?\r"), "\r\n+CMEE: 1\r\n\r\nOK\r\n");
    assert_eq!(run(&mut m, "AT+CMEE=9\r"), "\r\n+CME ERROR: 3\r\n");
}

#[test]
fn numeric_results_and_repeat() {
    let mut m = modem("generic");
    run(&mut m, "ATE0V0\r");
    assert_eq!(run(&mut m, "AT\r"), "0\r");
    assert_eq!(run(&mut m, "ATXYZ\r"), "4\r");
    run(&mut m, "ATV1\r");
    assert_eq!(
        run(&mut m, "AT+CIMI\r"),
        format!("\r\n{}\r\n\r\nOK\r\n", m.identity.imsi)
    );
    assert_eq!(
        run(&mut m, "A/"),
        format!("\r\n{}\r\n\r\nOK\r\n", m.identity.imsi)
    );
}

#[test]
fn iccid_in_each_vendor_spelling() {
    for name in ["generic", "huawei-e173", "quectel-ec25", "simcom-sim800"] {
        let mut m = modem(name);
        run(&mut m, "ATE0\r");
        let command = m.profile.commands.iccid.clone();
        let out = run(&mut m, &format!("{command}\r"));
        let expected_digits = if m.profile.commands.iccid_swapped {
            swap_nibbles(&m.identity.iccid)
        } else {
            m.identity.iccid.clone()
        };
        let expected = format!("{}{}", m.profile.commands.iccid_prefix, expected_digits);
        assert!(out.contains(&expected), "{name}: {out:?}");
        assert!(out.ends_with("OK\r\n"), "{name}: {out:?}");
    }
}

#[test]
fn overlong_line_is_an_error_not_unbounded() {
    let mut m = modem("generic");
    run(&mut m, "ATE0\r");
    let long = format!("AT{}\r", "A".repeat(MAX_LINE * 2));
    assert_eq!(run(&mut m, &long), "\r\nERROR\r\n");
    assert_eq!(run(&mut m, "AT\r"), "\r\nOK\r\n");
}

#[test]
fn nibble_swap() {
    assert_eq!(swap_nibbles("8944"), "9844");
    assert_eq!(swap_nibbles("123"), "21F3");
}

fn sim_number(m: &Interpreter) -> String {
    m.identity.msisdn.clone()
}

#[test]
fn pdu_submit_reaches_the_handset_with_the_modems_reference() {
    let mut m = modem("generic");
    run(&mut m, "ATE0\r");
    let pdus = crate::pdu::encode_submit(
        &crate::pdu::Address::international("447700900777"),
        "hello handset",
        0,
        &crate::pdu::SubmitOptions::default(),
    )
    .expect("encode");
    let pdu = &pdus[0];
    assert_eq!(
        run(&mut m, &format!("AT+CMGS={}\r", pdu.tpdu_length)),
        "\r\n> "
    );
    assert!(!m.accepts_urcs());
    let out = run(&mut m, &format!("{}\x1a", pdu.hex));
    assert_eq!(out, "\r\n+CMGS: 1\r\n\r\nOK\r\n");
    let received = m
        .network
        .handset_messages("+447700900777")
        .expect("handset");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].text, "hello handset");
    assert_eq!(received[0].from, sim_number(&m));
    // A wrong length or a DELIVER instead of a SUBMIT is refused.
    run(&mut m, &format!("AT+CMGS={}\r", pdu.tpdu_length + 1));
    assert_eq!(
        run(&mut m, &format!("{}\x1a", pdu.hex)),
        "\r\n+CMS ERROR: 304\r\n"
    );
    // Esc cancels.
    run(&mut m, "AT+CMGS=5\r");
    assert_eq!(run(&mut m, "0011\x1b"), "\r\nOK\r\n");
    assert!(m.accepts_urcs());
    // Half a command line holds them back until its end.
    run(&mut m, "AT+CS");
    assert!(!m.accepts_urcs());
    run(&mut m, "Q\r");
    assert!(m.accepts_urcs());
    // A stray byte without "AT" does not.
    run(&mut m, "\x1b");
    assert!(m.accepts_urcs());
    run(&mut m, "\r");
}

#[test]
fn stored_message_is_listed_read_and_deleted() {
    let mut m = modem("simcom-sim800");
    run(&mut m, "ATE0\r");
    let sim = sim_number(&m);
    m.network
        .handset_sms("+447700900321", &sim, "stored one")
        .expect("sms");
    let urc = String::from_utf8_lossy(&m.network.take_urcs(0)).into_owned();
    assert_eq!(urc, "\r\n+CMTI: \"SM\",1\r\n");
    assert_eq!(
        run(&mut m, "AT+CPMS?\r"),
        "\r\n+CPMS: \"SM\",1,50,\"SM\",1,50,\"SM\",1,50\r\n\r\nOK\r\n"
    );
    let listed = run(&mut m, "AT+CMGL=4\r");
    let lines: Vec<&str> = listed.split("\r\n").collect();
    assert!(lines[1].starts_with("+CMGL: 1,0,,"), "{listed:?}");
    let decoded = crate::pdu::decode_hex(lines[2], true).expect("pdu");
    let crate::pdu::Tpdu::Deliver(deliver) = decoded.pdu.tpdu else {
        panic!("not a deliver");
    };
    assert_eq!(deliver.user_data.text, "stored one");
    assert_eq!(deliver.originator.to_string(), "+447700900321");
    // Listing marked it read.
    assert!(run(&mut m, "AT+CMGR=1\r").starts_with("\r\n+CMGR: 1,,"));
    run(&mut m, "AT+CMGF=1\r");
    let text = run(&mut m, "AT+CMGR=1\r");
    assert!(
        text.starts_with("\r\n+CMGR: \"REC READ\",\"+447700900321\",,\""),
        "{text:?}"
    );
    assert!(text.contains("\r\nstored one\r\n"), "{text:?}");
    assert_eq!(run(&mut m, "AT+CMGD=1\r"), "\r\nOK\r\n");
    assert_eq!(run(&mut m, "AT+CMGR=1\r"), "\r\nOK\r\n");
    assert_eq!(run(&mut m, "AT+CMGR=51\r"), "\r\n+CMS ERROR: 321\r\n");
}

#[test]
fn text_mode_submit_in_ucs2_charset() {
    let mut m = modem("quectel-ec25");
    run(&mut m, "ATE0\r");
    run(&mut m, "AT+CMGF=1\r");
    run(&mut m, "AT+CSCS=\"UCS2\"\r");
    let to = textmode::Charset::Ucs2.encode("+447700900778");
    assert_eq!(run(&mut m, &format!("AT+CMGS=\"{to}\"\r")), "\r\n> ");
    let text = textmode::Charset::Ucs2.encode("Grüße 👋");
    let out = run(&mut m, &format!("{text}\x1a"));
    assert_eq!(out, "\r\n+CMGS: 1\r\n\r\nOK\r\n");
    let received = m
        .network
        .handset_messages("+447700900778")
        .expect("handset");
    assert_eq!(received[0].text, "Grüße 👋");
}

#[test]
fn every_query_form_answers() {
    for name in ["generic", "huawei-e173", "quectel-ec25", "simcom-sim800"] {
        let mut m = modem(name);
        run(&mut m, "ATE0\r");
        for query in [
            "AT+CREG?",
            "AT+CREG=?",
            "AT+CEREG?",
            "AT+COPS?",
            "AT+COPS=?",
            "AT+CPMS?",
            "AT+CPMS=?",
            "AT+CNMI?",
            "AT+CNMI=?",
            "AT+CMGF?",
            "AT+CMGF=?",
            "AT+CSMS?",
            "AT+CSMS=?",
            "AT+CSCA?",
            "AT+CSDH?",
            "AT+CSDH=?",
            "AT+CSMP?",
            "AT+CMGL=?",
            "AT+CMGD=?",
            "AT+CMGS=?",
            "AT+CMGR=?",
            "AT+CNMA=?",
            "AT+CHLD=?",
            "AT+CLIP?",
            "AT+CLIP=?",
            "AT+CRC?",
            "AT+CUSD=?",
            "AT+CMUT?",
            "AT+CSCS?",
            "AT+CSCS=?",
            "AT+CSQ",
            "AT+CSQ=?",
            "AT+CFUN?",
            "AT+CMEE?",
            "AT+CPIN?",
            "AT+CLCC",
        ] {
            let out = run(&mut m, &format!("{query}\r"));
            assert!(out.ends_with("\r\nOK\r\n"), "{name} {query}: {out:?}");
        }
    }
}

#[test]
fn urc_between_information_lines_and_ok_when_asked() {
    let mut m = modem("generic");
    run(&mut m, "ATE0\r");
    let sim = sim_number(&m);
    m.network
        .update_faults(
            0,
            crate::sim::network::FaultsUpdate {
                urc_mid_response: Some(true),
                ..Default::default()
            },
        )
        .expect("faults");
    m.network
        .handset_sms("+447700900321", &sim, "one")
        .expect("sms");
    m.network.take_urcs(0);
    m.network
        .handset_sms("+447700900321", &sim, "two")
        .expect("sms");
    let out = run(&mut m, "AT+CMGL=4\r");
    let urc = out
        .find("+CMTI: \"SM\",2")
        .expect("urc inside the response");
    let last_info = out.rfind("+CMGL: 2").expect("second message listed");
    let ok = out.rfind("OK").expect("final result");
    assert!(last_info < urc && urc < ok, "{out:?}");
}

#[test]
fn written_drafts_are_sent_from_storage_and_a_full_storage_says_so() {
    let mut m = modem("generic");
    run(&mut m, "ATE0\r");
    run(&mut m, "AT+CMGF=1\r");
    assert_eq!(run(&mut m, "AT+CMGW=\"+447700900779\"\r"), "\r\n> ");
    assert_eq!(run(&mut m, "draft\x1a"), "\r\n+CMGW: 1\r\n\r\nOK\r\n");
    let listed = run(&mut m, "AT+CMGL=\"STO UNSENT\"\r");
    assert!(
        listed.contains("+CMGL: 1,\"STO UNSENT\",\"+447700900779\""),
        "{listed:?}"
    );
    assert_eq!(run(&mut m, "AT+CMSS=1\r"), "\r\n+CMSS: 1\r\n\r\nOK\r\n");
    let received = m
        .network
        .handset_messages("+447700900779")
        .expect("handset");
    assert_eq!(received[0].text, "draft");
    assert!(run(&mut m, "AT+CMGR=1\r").contains("\"STO SENT\""));
    // Fill the rest of SM: the profile's memory-full code answers.
    let capacity = m.profile.storage_capacity("SM").expect("SM");
    for _ in 1..capacity {
        run(&mut m, "AT+CMGW=\"+447700900779\"\r");
        run(&mut m, "x\x1a");
    }
    let code = m.profile.sms.storage_full_error;
    assert_eq!(
        run(&mut m, "AT+CMGW=\"+447700900779\"\r"),
        format!("\r\n+CMS ERROR: {code}\r\n")
    );
}

#[test]
fn a_sim_with_a_pin_asks_for_it_and_blocks_after_three_wrong_ones() {
    let mut m = modem("simcom-sim800");
    m.network
        .update_faults(
            0,
            crate::sim::network::FaultsUpdate {
                sim_pin: Some(Some("1234".into())),
                ..Default::default()
            },
        )
        .expect("faults");
    // The PIN takes effect at the next power-on.
    assert!(run(&mut m, "AT+CPIN?\r").contains("+CPIN: READY"));
    m.network.boot(0);
    run(&mut m, "ATE0\r");
    run(&mut m, "AT+CMEE=1\r");
    assert_eq!(
        run(&mut m, "AT+CPIN?\r"),
        "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
    );
    assert_eq!(run(&mut m, "AT+CIMI\r"), "\r\n+CME ERROR: 11\r\n");
    assert_eq!(run(&mut m, "AT+CMGL=4\r"), "\r\n+CMS ERROR: 311\r\n");
    assert!(run(&mut m, "AT+CREG?\r").contains("+CREG: 0,0"));
    let sim = sim_number(&m);
    m.network
        .handset_sms("+447700900321", &sim, "held while locked")
        .expect("sms");
    assert!(m.network.take_urcs(0).is_empty());
    for _ in 0..3 {
        assert_eq!(run(&mut m, "AT+CPIN=\"0000\"\r"), "\r\n+CME ERROR: 16\r\n");
    }
    assert!(run(&mut m, "AT+CPIN?\r").contains("+CPIN: SIM PUK"));
    assert_eq!(run(&mut m, "AT+CIMI\r"), "\r\n+CME ERROR: 12\r\n");
    assert_eq!(run(&mut m, "AT+CPIN=\"1234\"\r"), "\r\n+CME ERROR: 16\r\n");
    let puk = crate::sim::network::PUK;
    assert_eq!(
        run(&mut m, &format!("AT+CPIN=\"{puk}\",\"4321\"\r")),
        "\r\nOK\r\n"
    );
    assert!(run(&mut m, "AT+CPIN?\r").contains("+CPIN: READY"));
    let urc = String::from_utf8_lossy(&m.network.take_urcs(0)).into_owned();
    assert_eq!(urc, "\r\n+CMTI: \"SM\",1\r\n");
    assert_eq!(run(&mut m, "AT+CPIN=\"4321\"\r"), "\r\n+CME ERROR: 3\r\n");
}

#[test]
fn with_the_radio_off_nothing_is_sent_or_received() {
    let mut m = modem("quectel-ec25");
    run(&mut m, "ATE0\r");
    run(&mut m, "AT+CFUN=4\r");
    assert!(run(&mut m, "AT+CREG?\r").contains("+CREG: 0,0"));
    run(&mut m, "AT+CMGF=1\r");
    run(&mut m, "AT+CMGS=\"+447700900780\"\r");
    assert_eq!(run(&mut m, "x\x1a"), "\r\n+CMS ERROR: 331\r\n");
    let sim = sim_number(&m);
    m.network
        .handset_sms("+447700900780", &sim, "wait for the radio")
        .expect("sms");
    assert!(m.network.take_urcs(0).is_empty());
    run(&mut m, "AT+CFUN=1\r");
    let urc = String::from_utf8_lossy(&m.network.take_urcs(0)).into_owned();
    assert_eq!(urc, "\r\n+CMTI: \"ME\",1\r\n");
}

/// Pieces of input a host (or line noise) produces: whole and half
/// commands, the prompt's Ctrl-Z and Esc with and without a prompt,
/// PDUs good and bad, huge lines and raw bytes.
fn fragment() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let words: Vec<&'static str> = vec![
        "AT",
        "AT\r",
        "ATE1\r",
        "ATV0\r",
        "AT+CMGF=1\r",
        "AT+CMGF=0\r",
        "AT+CMGS=",
        "AT+CMGS=23\r",
        "AT+CMGS=\"+447700900123\"\r",
        "AT+CMGL=4\r",
        "AT+CMGL=\"ALL\"\r",
        "AT+CMGR=1\r",
        "AT+CMGD=1,4\r",
        "AT+CNMI=2,2,0,1,0\r",
        "AT+CSMS=1\r",
        "AT+CNMA\r",
        "AT+CPMS=\"ME\",\"SM\"\r",
        "AT+CSCS=\"UCS2\"\r",
        "AT+CSCS=\"HEX\"\r",
        "AT+CFUN=1,1\r",
        "ATD+447700900123;\r",
        "AT+CHLD=?\r",
        "AT+CLIP=1\r",
        "A/",
        "0011000B914477009001F20000AA05E8329BFD06",
        "\x1a",
        "\x1b",
        "\r",
        "\n",
        ";",
        "\"",
    ];
    prop_oneof![
        4 => proptest::sample::select(words).prop_map(|w| w.as_bytes().to_vec()),
        2 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => (0usize..3000).prop_map(|n| vec![b'A'; n]),
    ]
}

proptest::proptest! {
    /// Any bytes on the port yield modem-like answers without
    /// panicking: every byte written is printable ASCII, CR or LF, or an
    /// echo of a byte received; the output stays bounded; and after an
    /// Esc (leaving any prompt) and a CR, the modem answers a plain `AT`.
    #[test]
    fn arbitrary_input_never_breaks_the_modem(
        profile in proptest::sample::select(vec!["generic", "huawei-e173", "quectel-ec25", "simcom-sim800"]),
        fragments in proptest::collection::vec(fragment(), 0..40),
    ) {
        let mut m = modem(profile);
        let input: Vec<u8> = fragments.concat();
        let out = m.feed(&input);
        for byte in &out {
            let modem_like = byte.is_ascii_graphic() || matches!(byte, b' ' | b'\r' | b'\n');
            proptest::prop_assert!(modem_like || input.contains(byte), "byte {byte:#04x} from nowhere");
        }
        proptest::prop_assert!(out.len() <= input.len() * 8 + 4096, "{} bytes out for {} in", out.len(), input.len());
        m.feed(b"\x1b\r");
        m.feed(b"ATE0V1\r");
        proptest::prop_assert_eq!(run(&mut m, "AT\r"), "\r\nOK\r\n");
    }
}

// 3GPP TS 27.007 §8.18 and TS 31.102 §4.2.2: EF_ICCID read through
// restricted SIM access on every profile, 10 bytes of swapped BCD; EF_IMSI
// too; another file is 3GPP TS 51.011 SW 9404 (file ID not found).
#[test]
fn every_profile_reads_ef_iccid_through_crsm() {
    for name in Profiles::builtin().names() {
        let mut m = modem(&name);
        run(&mut m, "AT+CFUN=1\r");
        run(&mut m, "ATE0\r");
        let out = run(&mut m, "AT+CRSM=176,12258,0,0,10\r");
        let expected = format!("+CRSM: 144,0,\"{}\"", swap_nibbles(&m.identity.iccid));
        assert!(out.contains(&expected), "{name}: {out:?}");
        let imsi = run(&mut m, "AT+CRSM=176,28423,0,0,9\r");
        assert!(imsi.contains("+CRSM: 144,0,\"08"), "{name}: {imsi:?}");
        let missing = run(&mut m, "AT+CRSM=176,28472,0,0,10\r");
        assert!(missing.contains("+CRSM: 148,4"), "{name}: {missing:?}");
    }
    let mut m = modem("generic");
    m.network
        .update_faults(
            0,
            crate::sim::network::FaultsUpdate {
                iccid_unreadable: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
    run(&mut m, "ATE0\r");
    assert_eq!(run(&mut m, "AT+CRSM=176,12258,0,0,10\r"), "\r\nERROR\r\n");
    assert_eq!(run(&mut m, "AT+CCID\r"), "\r\nERROR\r\n");
}

// The terse profile: only the mandatory core, ERROR to the rest, a bare AT
// refused, no echo whatever ATE says, radio and SIM off until AT+CFUN=1,
// and a slow AT+CPIN?.
#[test]
fn the_terse_firmware_knows_only_the_core() {
    let mut m = modem("terse");
    assert_eq!(run(&mut m, "AT\r"), "\r\nERROR\r\n");
    assert_eq!(run(&mut m, "ATE1\r"), "\r\nOK\r\n");
    assert_eq!(run(&mut m, "ATE1\r"), "\r\nOK\r\n", "still no echo");
    assert_eq!(run(&mut m, "AT+CFUN?\r"), "\r\n+CFUN: 0\r\n\r\nOK\r\n");
    assert_eq!(run(&mut m, "AT+CIMI\r"), "\r\nERROR\r\n", "+CMEE=0");
    run(&mut m, "AT+CMEE=1\r");
    assert_eq!(run(&mut m, "AT+CIMI\r"), "\r\n+CME ERROR: 13\r\n");
    assert_eq!(run(&mut m, "AT+CPMS=\"SM\"\r"), "\r\n+CMS ERROR: 313\r\n");
    assert!(run(&mut m, "AT+CREG?\r").contains("+CREG: 0,0"));
    assert_eq!(run(&mut m, "AT+CFUN=1\r"), "\r\nOK\r\n");
    assert_eq!(
        run(&mut m, "AT+CIMI\r"),
        format!("\r\n{}\r\n\r\nOK\r\n", m.identity.imsi)
    );
    assert!(run(&mut m, "AT+CREG?\r").contains("+CREG: 0,1"));
    assert_eq!(m.take_slowness(), 0);
    assert!(run(&mut m, "AT+CPIN?\r").contains("+CPIN: READY"));
    assert_eq!(m.take_slowness(), 2000);
    for refused in [
        "AT+CCID",
        "AT+QCCID",
        "AT^ICCID?",
        "AT+CNUM",
        "AT+CPMS?",
        "AT+CPMS=?",
        "AT+CHLD=?",
        "AT+CNMI=?",
        "AT+CMGF=1",
        "AT+CUSD=1,\"*100#\",15",
        "AT+GMI",
        "AT+CCWA=1",
    ] {
        assert_eq!(
            run(&mut m, &format!("{refused}\r")),
            "\r\nERROR\r\n",
            "{refused}"
        );
    }
    assert!(
        run(&mut m, "AT+CPMS=\"SM\",\"SM\",\"SM\"\r").contains("+CPMS: 0,30,0,30,0,30"),
        "the set command answers with the counts"
    );
    assert_eq!(run(&mut m, "AT+CMGF=0;+CNMI=2,1,0,1,0\r"), "\r\nOK\r\n");
    assert_eq!(
        run(&mut m, "ATI\r"),
        "\r\nSIMMASK TERSE-27007\r\n\r\nOK\r\n"
    );
}

// Huawei E173: USSD strings are 7-bit packed hex until AT^USSDMODE=0; a
// text request in that mode gets ERROR.
#[test]
fn a_huawei_answers_ussd_in_the_mode_set() {
    let mut m = modem("huawei-e173");
    run(&mut m, "ATE0\r");
    assert_eq!(
        run(&mut m, "AT^USSDMODE?\r"),
        "\r\n^USSDMODE: 1\r\n\r\nOK\r\n"
    );
    assert_eq!(run(&mut m, "AT+CUSD=1,\"*100#\",15\r"), "\r\nERROR\r\n");
    let packed = run(&mut m, "AT+CUSD=1,\"AA180C3602\",15\r");
    assert!(
        packed.starts_with("\r\nOK\r\n\r\n+CUSD: 0,\""),
        "{packed:?}"
    );
    assert!(!packed.contains("balance"), "{packed:?}");
    assert_eq!(run(&mut m, "AT^USSDMODE=0\r"), "\r\nOK\r\n");
    let text = run(&mut m, "AT+CUSD=1,\"*100#\",15\r");
    assert!(
        text.contains("+CUSD: 0,\"Your balance is 12.34 EUR\",15"),
        "{text:?}"
    );
    // Other models know no such command.
    let mut generic = modem("generic");
    run(&mut generic, "ATE0\r");
    assert_eq!(run(&mut generic, "AT^USSDMODE=0\r"), "\r\nERROR\r\n");
}

#[test]
fn dtmf_detection_in_each_vendors_dialect() {
    let mut simcom = modem("simcom-sim800");
    run(&mut simcom, "ATE0\r");
    assert!(run(&mut simcom, "AT+DDET=?\r").contains("+DDET: (0,1),(0-10000),(0,1),(0,1)"));
    assert!(run(&mut simcom, "AT+DDET=1,1000,1\r").contains("OK"));
    assert!(run(&mut simcom, "AT+DDET?\r").contains("+DDET: 1,0,1,0"));
    assert!(run(&mut simcom, "AT+DDET=2\r").contains("ERROR"));
    assert!(run(&mut simcom, "AT+QTONEDET=1\r").contains("ERROR"));
    let mut quectel = modem("quectel-ec25");
    run(&mut quectel, "ATE0\r");
    assert!(run(&mut quectel, "AT+QTONEDET=1\r").contains("OK"));
    assert!(run(&mut quectel, "AT+QTONEDET?\r").contains("+QTONEDET: 1"));
    assert!(run(&mut quectel, "AT+DDET=1\r").contains("ERROR"));
    // 27.007 has no key reports: a generic modem knows neither.
    let mut generic = modem("generic");
    assert!(run(&mut generic, "AT+QTONEDET=1\r").contains("ERROR"));
}
