//! The virtual network's SMS side through the real doors: each modem's pty
//! opened with tokio-serial, the handsets driven over the control API's HTTP.

use std::time::Duration;

use serde_json::{Value, json};
use simmask::pdu::{self, Address, SubmitOptions, Tpdu};
use simmask::sim::{SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialStream;

const HANDSET: &str = "+447700900555";

async fn start(profiles: &[&str], links: Option<std::path::PathBuf>) -> Simulator {
    Simulator::start(SimConfig {
        modems: profiles.len(),
        profiles: profiles.iter().map(|p| p.to_string()).collect(),
        links,
        seed: 11,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// A modem's port with what has been read but not yet consumed, so a URC
/// arriving in the same read as a final result is not lost.
struct Port {
    stream: SerialStream,
    pending: Vec<u8>,
}

fn open(path: &std::path::Path) -> Port {
    Port {
        stream: SerialStream::open(&tokio_serial::new(path.to_string_lossy(), 115_200))
            .expect("open pty"),
        pending: Vec::new(),
    }
}

impl Port {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.read(buf).await
    }
}

/// Reads up to and including `needle`; fails after 10 s instead of hanging.
async fn read_until(port: &mut Port, needle: &str) -> String {
    let mut buf = [0u8; 512];
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(at) = find(&port.pending, needle.as_bytes()) {
                let rest = port.pending.split_off(at + needle.len());
                let taken = std::mem::replace(&mut port.pending, rest);
                return String::from_utf8_lossy(&taken).into_owned();
            }
            let n = port.stream.read(&mut buf).await.expect("read pty");
            assert!(n > 0, "port closed");
            port.pending.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    match found {
        Ok(text) => text,
        Err(_) => panic!(
            "no {needle:?} in {:?}",
            String::from_utf8_lossy(&port.pending)
        ),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends a command line and returns everything up to its final result
/// (or the `> ` prompt).
async fn command(port: &mut Port, line: &str) -> String {
    port.write_all(format!("{line}\r").as_bytes())
        .await
        .expect("write");
    let mut seen = String::new();
    loop {
        let next = next_line(port).await;
        seen.push_str(&next);
        let last = next.trim();
        if last == "OK" || last == ">" || last.ends_with("ERROR") || last.starts_with("+CMS ERROR:")
        {
            return seen;
        }
    }
}

/// The next non-empty line through its CR LF (leading CR LFs included), or
/// the `> ` prompt.
async fn next_line(port: &mut Port) -> String {
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let start = port
                .pending
                .iter()
                .position(|b| !matches!(b, b'\r' | b'\n'))
                .unwrap_or(port.pending.len());
            let end = find(&port.pending[start..], b"\r\n")
                .map(|at| start + at + 2)
                .or_else(|| (&port.pending[start..] == b"> ").then_some(port.pending.len()));
            if let Some(end) = end {
                let rest = port.pending.split_off(end);
                let taken = std::mem::replace(&mut port.pending, rest);
                return String::from_utf8_lossy(&taken).into_owned();
            }
            let n = port.stream.read(&mut buf).await.expect("read pty");
            assert!(n > 0, "port closed");
            port.pending.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    read.unwrap_or_else(|_| panic!("no line in {:?}", String::from_utf8_lossy(&port.pending)))
}

/// A modem's port with echo off, ready for commands.
async fn ready(path: &std::path::Path) -> Port {
    let mut port = open(path);
    command(&mut port, "ATE0").await;
    port
}

struct Control {
    client: reqwest::Client,
    url: String,
}

impl Control {
    fn new(sim: &Simulator) -> Self {
        Control {
            client: reqwest::Client::new(),
            url: sim.control_url().to_string(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("control request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn handset_sms(&self, from: &str, to: &str, text: &str) {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                &format!("/handsets/{from}/sms"),
                Some(json!({"to": to, "text": text})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }

    async fn messages(&self, number: &str) -> Vec<Value> {
        let (status, body) = self
            .send(
                reqwest::Method::GET,
                &format!("/handsets/{number}/messages"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body.as_array().cloned().unwrap_or_default()
    }

    async fn set_state(&self, number: &str, state: Value) {
        let (status, body) = self
            .send(
                reqwest::Method::PUT,
                &format!("/handsets/{number}/state"),
                Some(state),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn faults(&self, index: usize, faults: Value) {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                &format!("/modems/{index}/faults"),
                Some(faults),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

/// The SUBMIT PDU for `text` to `to`, and its TPDU length.
fn submit_pdu(to: &str, text: &str, status_report: bool) -> (String, usize) {
    let parts = pdu::encode_submit(
        &Address::from_number(to).expect("number"),
        text,
        0,
        &SubmitOptions {
            status_report,
            ..SubmitOptions::default()
        },
    )
    .expect("encode");
    (parts[0].hex.clone(), parts[0].tpdu_length)
}

/// Sends one PDU with `AT+CMGS` and returns the final answer.
async fn send_pdu(port: &mut Port, to: &str, text: &str, report: bool) -> String {
    let (hex, length) = submit_pdu(to, text, report);
    let prompt = command(port, &format!("AT+CMGS={length}")).await;
    assert!(prompt.ends_with("> "), "{prompt:?}");
    port.write_all(format!("{hex}\x1a").as_bytes())
        .await
        .expect("write");
    let mut answer = String::new();
    while !(answer.ends_with("OK\r\n") || answer.contains("ERROR")) {
        answer.push_str(&next_line(port).await);
    }
    answer
}

/// The text of the DELIVER PDU on the line after `header` in `output`.
fn deliver_text(output: &str, header: &str) -> String {
    let mut lines = output.split("\r\n");
    lines.find(|l| l.starts_with(header)).expect("header line");
    let pdu_line = lines.next().expect("pdu line");
    match pdu::decode_hex(pdu_line, true).expect("pdu").pdu.tpdu {
        Tpdu::Deliver(deliver) => deliver.user_data.text,
        other => panic!("not a deliver: {other:?}"),
    }
}

#[tokio::test]
async fn a_handsets_sms_is_stored_announced_and_read_back() {
    let sim = start(&["generic"], None).await;
    let modem = sim.description().modems[0].clone();
    let control = Control::new(&sim);
    let mut port = ready(&modem.path).await;
    command(&mut port, "AT+CNMI=2,1,0,1,0").await;
    let long = "A long message that needs more than one part. ".repeat(5);
    control
        .handset_sms(HANDSET, &modem.msisdn, "Héllo modem")
        .await;
    assert!(
        read_until(&mut port, "+CMTI: \"SM\",1\r\n")
            .await
            .contains("+CMTI")
    );
    let read = command(&mut port, "AT+CMGR=1").await;
    assert_eq!(deliver_text(&read, "+CMGR: 0,,"), "Héllo modem");
    control.handset_sms(HANDSET, &modem.msisdn, &long).await;
    read_until(&mut port, "+CMTI: \"SM\",3\r\n").await;
    let listed = command(&mut port, "AT+CMGL=4").await;
    let texts: String = (2..=3)
        .map(|i| deliver_text(&listed, &format!("+CMGL: {i},0,,")))
        .collect();
    assert_eq!(texts, long);
    let cpms = command(&mut port, "AT+CPMS?").await;
    assert!(cpms.contains("+CPMS: \"SM\",3,50,"), "{cpms:?}");
    command(&mut port, "AT+CMGD=1,4").await;
    let cpms = command(&mut port, "AT+CPMS?").await;
    assert!(cpms.contains("+CPMS: \"SM\",0,50,"), "{cpms:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_submit_reaches_the_handset_and_a_report_comes_back() {
    let sim = start(&["quectel-ec25"], None).await;
    let modem = sim.description().modems[0].clone();
    let control = Control::new(&sim);
    let mut port = ready(&modem.path).await;
    command(&mut port, "AT+CNMI=2,1,0,1,0").await;
    let answer = send_pdu(&mut port, HANDSET, "hi handset", true).await;
    assert!(answer.contains("+CMGS: 1\r\n"), "{answer:?}");
    // "+CDS: <length>\r\n<pdu>\r\n" (27.005 §3.4.1).
    read_until(&mut port, "+CDS: ").await;
    next_line(&mut port).await;
    let pdu_line = next_line(&mut port).await.trim().to_string();
    match pdu::decode_hex(&pdu_line, true)
        .expect("report pdu")
        .pdu
        .tpdu
    {
        Tpdu::StatusReport(status) => {
            assert_eq!(status.message_reference, 1);
            assert!(status.delivered());
        }
        other => panic!("not a status report: {other:?}"),
    }
    let messages = control.messages(HANDSET).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["text"], "hi handset");
    assert_eq!(messages[0]["from"], modem.msisdn.as_str());
    assert!(
        time::OffsetDateTime::parse(
            messages[0]["at"].as_str().expect("at"),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_switched_off_handset_gets_held_messages_and_a_barred_one_refuses() {
    let sim = start(&["simcom-sim800"], None).await;
    let modem = sim.description().modems[0].clone();
    let control = Control::new(&sim);
    let mut port = ready(&modem.path).await;
    command(&mut port, "AT+CNMI=2,1,0,2,0").await;
    control.set_state(HANDSET, json!({"power": "off"})).await;
    let answer = send_pdu(&mut port, HANDSET, "while you were out", true).await;
    assert!(answer.contains("+CMGS: 1"), "{answer:?}");
    assert!(control.messages(HANDSET).await.is_empty());
    control.set_state(HANDSET, json!({"power": "on"})).await;
    // ds=2: the report is stored and announced with +CDSI.
    let cdsi = read_until(&mut port, "+CDSI: \"SM\",1\r\n").await;
    assert!(cdsi.contains("+CDSI"), "{cdsi:?}");
    let messages = control.messages(HANDSET).await;
    assert_eq!(messages[0]["text"], "while you were out");
    let stored = command(&mut port, "AT+CMGR=1").await;
    let pdu_line = stored.split("\r\n").nth(2).expect("pdu line");
    assert!(matches!(
        pdu::decode_hex(pdu_line, true).expect("pdu").pdu.tpdu,
        Tpdu::StatusReport(ref r) if r.message_reference == 1 && r.delivered()
    ));

    control
        .set_state("+447700900556", json!({"barred": true}))
        .await;
    let refused = send_pdu(&mut port, "+447700900556", "nope", false).await;
    assert!(refused.contains("+CMS ERROR: 21"), "{refused:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_full_sim_refuses_until_a_delete_frees_space() {
    let sim = start(&["simcom-sim800"], None).await;
    let modem = sim.description().modems[0].clone();
    let control = Control::new(&sim);
    let mut port = ready(&modem.path).await;
    command(&mut port, "AT+CNMI=2,1,0,0,0").await;
    for i in 0..50 {
        control
            .handset_sms(HANDSET, &modem.msisdn, &format!("fill {i}"))
            .await;
    }
    read_until(&mut port, "+CMTI: \"SM\",50\r\n").await;
    control
        .handset_sms(HANDSET, &modem.msisdn, "the one that waits")
        .await;
    let cpms = command(&mut port, "AT+CPMS?").await;
    assert!(cpms.contains("\"SM\",50,50"), "{cpms:?}");
    command(&mut port, "AT+CMGD=7").await;
    read_until(&mut port, "+CMTI: \"SM\",7\r\n").await;
    let read = command(&mut port, "AT+CMGR=7").await;
    assert_eq!(deliver_text(&read, "+CMGR: 0,,"), "the one that waits");
    sim.shutdown().await;
}

#[tokio::test]
async fn direct_delivery_with_cnma_and_text_mode() {
    let sim = start(&["generic", "huawei-e173"], None).await;
    let modems = sim.description().modems.clone();
    let control = Control::new(&sim);
    let mut port = ready(&modems[0].path).await;
    command(&mut port, "AT+CSMS=1").await;
    command(&mut port, "AT+CNMI=2,2,0,0,0").await;
    control
        .handset_sms(HANDSET, &modems[0].msisdn, "direct")
        .await;
    let cmt = read_until(&mut port, "+CMT: ,").await;
    let cmt = cmt + &read_until(&mut port, "\r\n").await;
    let cmt = cmt + &read_until(&mut port, "\r\n").await;
    assert_eq!(deliver_text(&cmt, "+CMT: ,"), "direct");
    assert!(command(&mut port, "AT+CNMA").await.ends_with("OK\r\n"));
    let again = command(&mut port, "AT+CNMA").await;
    assert!(again.contains("+CMS ERROR: 340"), "{again:?}");

    // Text mode: +CMT with the header and the text; a SIM-to-SIM submit.
    command(&mut port, "AT+CSMS=0").await;
    command(&mut port, "AT+CMGF=1").await;
    control
        .handset_sms(HANDSET, &modems[0].msisdn, "in text")
        .await;
    let cmt = read_until(&mut port, "in text\r\n").await;
    assert!(cmt.contains(&format!("+CMT: \"{HANDSET}\",,\"")), "{cmt:?}");
    let prompt = command(&mut port, &format!("AT+CMGS=\"{}\"", modems[1].msisdn)).await;
    assert!(prompt.ends_with("> "), "{prompt:?}");
    port.write_all(b"to the other SIM\x1a")
        .await
        .expect("write");
    read_until(&mut port, "OK\r\n").await;
    let mut other = ready(&modems[1].path).await;
    command(&mut other, "AT+CMGF=1").await;
    let listed = command(&mut other, "AT+CMGL=\"ALL\"").await;
    assert!(
        listed.contains(&format!("+CMGL: 1,\"REC UNREAD\",\"{}\"", modems[0].msisdn)),
        "{listed:?}"
    );
    assert!(listed.contains("\r\nto the other SIM\r\n"), "{listed:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn unplug_closes_the_port_and_plug_brings_it_back_renamed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let links = dir.path().join("links");
    let sim = start(&["simcom-sim800"], Some(links.clone())).await;
    let modem = sim.description().modems[0].clone();
    let control = Control::new(&sim);
    let link = links.join("modem0");
    let mut port = ready(&link).await;
    control
        .handset_sms(HANDSET, &modem.msisdn, "kept on the SIM")
        .await;
    read_until(&mut port, "+CMTI").await;

    let (status, _) = control
        .send(reqwest::Method::POST, "/modems/0/unplug", None)
        .await;
    assert_eq!(status, 202);
    let mut buf = [0u8; 64];
    let eof = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match port.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(eof.is_ok(), "the reader saw no EOF/EIO after unplug");
    drop(port);
    let (_, listed) = control.send(reqwest::Method::GET, "/modems", None).await;
    assert_eq!(listed[0]["plugged"], false);
    assert!(!link.exists(), "the link disappears with the device");

    let (status, _) = control
        .send(
            reqwest::Method::POST,
            "/modems/0/plug",
            Some(json!({"link": "modem7"})),
        )
        .await;
    assert_eq!(status, 202);
    let renamed = links.join("modem7");
    tokio::time::timeout(Duration::from_secs(5), async {
        while !renamed.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the new link appears");
    let mut port = open(&renamed);
    // The profile's boot noise, then the message still on the SIM.
    read_until(&mut port, "SMS Ready\r\n").await;
    command(&mut port, "ATE0").await;
    let read = command(&mut port, "AT+CMGR=1").await;
    assert_eq!(deliver_text(&read, "+CMGR: 0,,"), "kept on the SIM");
    let (_, listed) = control.send(reqwest::Method::GET, "/modems", None).await;
    assert_eq!(listed[0]["plugged"], true);
    assert_eq!(listed[0]["link"], renamed.to_string_lossy().as_ref());

    // A PIN set on the SIM is asked for from the next power-on.
    control.faults(0, json!({"sim_pin": "2468"})).await;
    drop(port);
    let boots = listed[0]["boots"].as_u64().expect("boots");
    let (status, _) = control
        .send(reqwest::Method::POST, "/modems/0/plug", None)
        .await;
    assert_eq!(status, 202);
    // The device re-enumerates on a fresh pty behind the same link and boots.
    let replugged = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (_, listed) = control.send(reqwest::Method::GET, "/modems", None).await;
            if listed[0]["plugged"] == true && listed[0]["boots"].as_u64() > Some(boots) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        replugged.is_ok(),
        "the modem did not come back on a fresh pty"
    );
    let mut port = open(&renamed);
    read_until(&mut port, "SMS Ready\r\n").await;
    command(&mut port, "ATE0").await;
    assert!(
        command(&mut port, "AT+CPIN?")
            .await
            .contains("+CPIN: SIM PIN")
    );
    assert!(
        command(&mut port, "AT+CPIN=\"2468\"")
            .await
            .ends_with("OK\r\n")
    );
    assert!(
        command(&mut port, "AT+CPIN?")
            .await
            .contains("+CPIN: READY")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn injected_faults_and_the_trace() {
    let sim = start(&["generic"], None).await;
    let modem = sim.description().modems[0].clone();
    let control = Control::new(&sim);
    let mut port = ready(&modem.path).await;

    control.faults(0, json!({"cms_error_on_submit": 500})).await;
    let refused = send_pdu(&mut port, HANDSET, "x", false).await;
    assert!(refused.contains("+CMS ERROR: 500"), "{refused:?}");
    control
        .faults(0, json!({"cms_error_on_submit": null}))
        .await;

    command(&mut port, "AT+CREG=1").await;
    control.faults(0, json!({"registration": "denied"})).await;
    read_until(&mut port, "+CREG: 3\r\n").await;
    let creg = command(&mut port, "AT+CREG?").await;
    assert!(creg.contains("+CREG: 1,3"), "{creg:?}");
    let refused = send_pdu(&mut port, HANDSET, "x", false).await;
    assert!(refused.contains("+CMS ERROR: 331"), "{refused:?}");
    control.faults(0, json!({"registration": "roaming"})).await;
    read_until(&mut port, "+CREG: 5\r\n").await;

    control.faults(0, json!({"signal": 7})).await;
    assert!(command(&mut port, "AT+CSQ").await.contains("+CSQ: 7,99"));
    let (_, listed) = control.send(reqwest::Method::GET, "/modems", None).await;
    assert_eq!(listed[0]["signal"], 7);
    assert_eq!(listed[0]["registration"], "roaming");

    // One dropped response: the first AT gets nothing, the next answers.
    control.faults(0, json!({"drop_responses": 1})).await;
    port.write_all(b"AT+CGMI\r").await.expect("write");
    let mut buf = [0u8; 64];
    let silent = tokio::time::timeout(Duration::from_millis(300), port.read(&mut buf)).await;
    assert!(silent.is_err(), "a dropped response was written");
    assert!(command(&mut port, "AT").await.ends_with("OK\r\n"));

    let (status, trace) = control
        .send(reqwest::Method::GET, "/modems/0/trace", None)
        .await;
    assert_eq!(status, 200);
    let trace = trace.as_array().expect("trace array");
    let position = |dir: &str, line: &str| {
        trace
            .iter()
            .position(|e| e["dir"] == dir && e["line"] == line)
            .unwrap_or_else(|| panic!("{dir} {line:?} not traced"))
    };
    let asked = position("rx", "AT+CREG?");
    let answered = position("tx", "+CREG: 1,3");
    assert!(asked < answered);
    assert!(trace[asked]["t_us"].as_u64() <= trace[answered]["t_us"].as_u64());
    // A poller asks only for what is newer than what it has seen.
    let last = trace.last().expect("entries")["t_us"]
        .as_u64()
        .expect("t_us");
    command(&mut port, "AT+CGMM").await;
    let (status, newer) = control
        .send(
            reqwest::Method::GET,
            &format!("/modems/0/trace?since={last}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let newer = newer.as_array().expect("array");
    assert!(
        newer.iter().all(|e| e["t_us"].as_u64() > Some(last)),
        "{newer:?}"
    );
    assert!(newer.iter().any(|e| e["line"] == "AT+CGMM"), "{newer:?}");
    let (status, _) = control
        .send(reqwest::Method::GET, "/modems/0/trace?since=soon", None)
        .await;
    assert_eq!(status, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_control_api_refuses_bad_requests_with_reasons() {
    let sim = start(&["generic"], None).await;
    let msisdn = sim.description().modems[0].msisdn.clone();
    let control = Control::new(&sim);
    let cases = [
        (
            reqwest::Method::GET,
            "/handsets/12345/messages".to_string(),
            None,
            422,
        ),
        (
            reqwest::Method::GET,
            format!("/handsets/{msisdn}/messages"),
            None,
            422,
        ),
        (
            reqwest::Method::POST,
            format!("/handsets/{HANDSET}/sms"),
            Some(json!({"to": "not a number", "text": "x"})),
            422,
        ),
        (
            reqwest::Method::POST,
            format!("/handsets/{HANDSET}/sms"),
            Some(json!({"text": "x"})),
            422,
        ),
        (
            reqwest::Method::PUT,
            format!("/handsets/{HANDSET}/state"),
            Some(json!({"power": "sideways"})),
            422,
        ),
        (
            reqwest::Method::POST,
            "/modems/9/unplug".to_string(),
            None,
            404,
        ),
        (
            reqwest::Method::POST,
            "/modems/0/faults".to_string(),
            Some(json!({"registration": "mars"})),
            422,
        ),
        (
            reqwest::Method::POST,
            "/modems/0/plug".to_string(),
            Some(json!({"link": "../escape"})),
            422,
        ),
        (
            reqwest::Method::GET,
            "/modems/x/trace".to_string(),
            None,
            404,
        ),
        (
            reqwest::Method::POST,
            "/modems/0/faults".to_string(),
            Some(json!({"signal": 50})),
            422,
        ),
        (
            reqwest::Method::POST,
            "/modems/0/faults".to_string(),
            Some(json!({"delay_ms": 86_400_000})),
            422,
        ),
        (
            reqwest::Method::POST,
            "/modems/0/faults".to_string(),
            Some(json!({"sim_pin": "12a4"})),
            422,
        ),
    ];
    for (method, path, body, expected) in cases {
        let (status, body) = control.send(method.clone(), &path, body).await;
        assert_eq!(status, expected, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
        assert!(body["message"].is_string(), "{path}: {body}");
    }
    // Malformed JSON.
    let response = reqwest::Client::new()
        .post(format!("{}/handsets/{HANDSET}/sms", sim.control_url()))
        .header("content-type", "application/json")
        .body("{\"to\": ")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "malformed_json");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_slow_line_paces_output_and_a_urc_lands_inside_a_long_listing() {
    // 9600 baud at 8N1 carries 960 bytes a second.
    let sim = Simulator::start(SimConfig {
        modems: 1,
        profiles: vec!["generic".into()],
        seed: 12,
        baud: Some(9600),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let modem = sim.description().modems[0].clone();
    let control = Control::new(&sim);
    let mut port = ready(&modem.path).await;
    command(&mut port, "AT+CNMI=2,1,0,0,0").await;
    for i in 0..20 {
        control
            .handset_sms(
                HANDSET,
                &modem.msisdn,
                &format!("message number {i} of a long listing"),
            )
            .await;
    }
    read_until(&mut port, "+CMTI: \"SM\",20\r\n").await;

    port.write_all(b"AT+CMGL=4\r").await.expect("write");
    let started = std::time::Instant::now();
    // The listing is on its way (about 1.9 kB, two seconds at this speed)
    // when a new message arrives.
    read_until(&mut port, "+CMGL: 1,").await;
    control
        .handset_sms(HANDSET, &modem.msisdn, "arrives mid-listing")
        .await;
    let listing = read_until(&mut port, "\r\nOK\r\n").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500),
        "1.9 kB took only {elapsed:?} at 9600 baud"
    );
    let urc = listing
        .find("+CMTI: \"SM\",21")
        .expect("the URC came inside the response");
    let last_entry = listing.rfind("+CMGL: 20,").expect("all entries listed");
    assert!(last_entry < urc, "{listing:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_reset_boots_again_with_the_profiles_noise() {
    let sim = start(&["quectel-ec25", "huawei-e173"], None).await;
    let modems = sim.description().modems.clone();
    let mut port = open(&modems[0].path);
    // Power-on noise waits in the port for the first reader.
    read_until(&mut port, "+QIND: PB DONE\r\n").await;
    command(&mut port, "ATE0").await;
    command(&mut port, "AT+CMGF=1").await;
    assert!(command(&mut port, "AT+CFUN=1,1").await.ends_with("OK\r\n"));
    read_until(&mut port, "RDY\r\n").await;
    read_until(&mut port, "+QIND: PB DONE\r\n").await;
    // Settings are back to the power-on defaults: echo on, PDU mode.
    assert_eq!(
        command(&mut port, "AT+CMGF?").await,
        "AT+CMGF?\r\r\n+CMGF: 0\r\n\r\nOK\r\n"
    );

    // The Huawei stick reports signal unasked until AT^CURC=0.
    let mut huawei = open(&modems[1].path);
    read_until(&mut huawei, "^RSSI: 20\r\n").await;
    assert!(command(&mut huawei, "AT^CURC=0").await.ends_with("OK\r\n"));
    sim.shutdown().await;
}

#[tokio::test]
async fn output_nobody_reads_is_discarded_and_never_wedges_the_port() {
    let sim = start(&["generic"], None).await;
    let control = Control::new(&sim);
    // Far more than a pty buffers, with no reader: a USB serial port with
    // no one listening drops it too.
    sim.network().push_urc(0, vec![b'x'; 512 * 1024]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The port task still takes commands: unplug is carried out.
    let (status, _) = control
        .send(reqwest::Method::POST, "/modems/0/unplug", None)
        .await;
    assert_eq!(status, 202);
    let unplugged = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (_, listed) = control.send(reqwest::Method::GET, "/modems", None).await;
            if listed[0]["plugged"] == false {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(unplugged.is_ok(), "the port task is stuck writing");
    tokio::time::timeout(Duration::from_secs(10), sim.shutdown())
        .await
        .expect("shutdown does not hang on a full pty");
}
