//! Calls on the virtual network through the real doors: each modem's pty
//! opened with tokio-serial, handsets driven over the control API.

use std::time::Duration;

use serde_json::{Value, json};
use simmask::sim::{SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialStream;

const A: &str = "+15550100001";
const B: &str = "+15550100002";
const C: &str = "+15550100003";

async fn start(profiles: &[&str], modems: usize) -> Simulator {
    Simulator::start(SimConfig {
        modems,
        profiles: profiles.iter().map(|p| p.to_string()).collect(),
        seed: 11,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// A modem's port with everything read so far, so URCs that arrive between
/// two commands are never lost.
struct Port {
    stream: SerialStream,
    seen: String,
}

impl Port {
    async fn open(sim: &Simulator, index: usize) -> Port {
        let path = sim.description().modems[index]
            .path
            .to_string_lossy()
            .to_string();
        let stream =
            SerialStream::open(&tokio_serial::new(path, 115_200)).expect("open the modem's pty");
        let mut port = Port {
            stream,
            seen: String::new(),
        };
        port.command("ATE0").await;
        port.command("AT+CMEE=1;+CLIP=1").await;
        port
    }

    /// Reads until `needle` arrives; returns everything up to and including
    /// it and keeps the rest. Fails after 5 s instead of hanging.
    async fn until(&mut self, needle: &str) -> String {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            while !self.seen.contains(needle) {
                let n = self.stream.read(&mut buf).await.expect("read pty");
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await;
        if read.is_err() {
            panic!("no {needle:?} in {:?}", self.seen);
        }
        let end = self.seen.find(needle).expect("seen") + needle.len();
        let taken = self.seen[..end].to_string();
        self.seen.drain(..end);
        taken
    }

    /// Sends a command line and returns its answer up to the final result.
    async fn command(&mut self, line: &str) -> String {
        self.stream
            .write_all(format!("{line}\r").as_bytes())
            .await
            .expect("write pty");
        let mut answer = String::new();
        loop {
            let chunk = self.until("\r\n").await;
            answer.push_str(&chunk);
            let last = answer.trim_end().rsplit("\r\n").next().unwrap_or("").trim();
            if last == "OK"
                || last == "ERROR"
                || last == "NO CARRIER"
                || last.starts_with("+CME ERROR")
            {
                return answer;
            }
        }
    }
}

struct Control {
    url: String,
    client: reqwest::Client,
}

impl Control {
    fn new(sim: &Simulator) -> Control {
        Control {
            url: sim.control_url().to_string(),
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn put(&self, path: &str, body: Value) -> Value {
        let response = self
            .client
            .put(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("PUT");
        assert!(response.status().is_success(), "PUT {path}");
        response.json().await.expect("JSON")
    }

    async fn call(&self, number: &str) -> Value {
        self.client
            .get(format!("{}/handsets/{number}/call", self.url))
            .send()
            .await
            .expect("GET call")
            .json()
            .await
            .expect("JSON")
    }

    /// Polls a handset until its call is in `state` (the network alerts on
    /// its tick); fails after 5 s.
    async fn wait_state(&self, number: &str, state: &str) -> Value {
        for _ in 0..100 {
            let call = self.call(number).await;
            if call["state"] == state {
                return call;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{number} never {state}: {}", self.call(number).await);
    }

    async fn dial(&self, from: &str, to: &str) {
        let (status, body) = self
            .post(&format!("/handsets/{from}/dial"), json!({"to": to}))
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn act(&self, number: &str, action: &str) -> Value {
        let (status, body) = self
            .post(&format!("/handsets/{number}/{action}"), json!({}))
            .await;
        assert_eq!(status, 200, "{action}: {body}");
        body
    }
}

fn msisdn(sim: &Simulator, index: usize) -> String {
    sim.description().modems[index].msisdn.clone()
}

#[tokio::test]
async fn a_handset_calls_a_sim_and_sees_its_number() {
    let sim = start(&["generic"], 1).await;
    let control = Control::new(&sim);
    let mut port = Port::open(&sim, 0).await;
    let p = msisdn(&sim, 0);

    control.dial(A, &p).await;
    let ring = port.until(&format!("+CLIP: \"{A}\",145,,,,0\r\n")).await;
    assert!(ring.contains("\r\nRING\r\n"), "{ring:?}");
    let a = control.wait_state(A, "alerting").await;
    assert_eq!(a["caller_id"], p.as_str());
    assert_eq!(
        port.command("AT+CLCC").await,
        format!("\r\n+CLCC: 1,1,4,0,0,\"{A}\",145\r\n\r\nOK\r\n")
    );
    // RING repeats while it rings.
    port.until("RING\r\n").await;

    assert!(port.command("ATA").await.ends_with("OK\r\n"));
    let a = control.wait_state(A, "active").await;
    assert_eq!(a["connected_to"], json!([p]));

    control.act(A, "hangup").await;
    port.until("NO CARRIER\r\n").await;
    assert_eq!(port.command("AT+CLCC").await, "\r\nOK\r\n");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_sim_calls_a_handset_which_sees_the_sim_number() {
    let sim = start(&["quectel-ec25"], 1).await;
    let control = Control::new(&sim);
    let mut port = Port::open(&sim, 0).await;
    let p = msisdn(&sim, 0);

    assert!(port.command(&format!("ATD{B};")).await.ends_with("OK\r\n"));
    let b = control.wait_state(B, "ringing").await;
    assert_eq!(b["caller_id"], p.as_str());
    assert!(
        port.command("AT+CLCC")
            .await
            .contains(&format!("+CLCC: 1,0,3,0,0,\"{B}\",145"))
    );
    control.act(B, "answer").await;
    assert!(
        port.command("AT+CLCC")
            .await
            .contains(&format!("+CLCC: 1,0,0,0,0,\"{B}\",145"))
    );
    assert_eq!(control.call(B).await["connected_to"], json!([p]));

    assert!(port.command("ATH").await.ends_with("OK\r\n"));
    let b = control.call(B).await;
    assert_eq!(
        (b["state"].as_str(), b["last_end"].as_str()),
        (Some("idle"), Some("remote_hung_up"))
    );
    sim.shutdown().await;
}

/// The bridge's AT sequence: answer A, hold, dial B, B answers, then the
/// network joins them.
async fn bridge(port: &mut Port, control: &Control, p: &str) {
    control.dial(A, p).await;
    port.until("RING\r\n").await;
    assert!(port.command("ATA").await.ends_with("OK\r\n"));
    assert!(port.command("AT+CHLD=2").await.ends_with("OK\r\n"));
    assert_eq!(control.call(A).await["state"], "held");
    assert!(port.command(&format!("ATD{B};")).await.ends_with("OK\r\n"));
    let b = control.wait_state(B, "ringing").await;
    assert_eq!(b["caller_id"], p);
    control.act(B, "answer").await;
    assert_eq!(
        port.command("AT+CLCC").await,
        format!(
            "\r\n+CLCC: 1,1,1,0,0,\"{A}\",145\r\n\r\n+CLCC: 2,0,0,0,0,\"{B}\",145\r\n\r\nOK\r\n"
        )
    );
}

#[tokio::test]
async fn transfer_connects_the_parties_and_frees_the_sim() {
    let sim = start(&["simcom-sim800"], 1).await;
    let control = Control::new(&sim);
    let mut port = Port::open(&sim, 0).await;
    let p = msisdn(&sim, 0);
    bridge(&mut port, &control, &p).await;

    assert!(port.command("AT+CHLD=4").await.ends_with("OK\r\n"));
    assert_eq!(port.command("AT+CLCC").await, "\r\nOK\r\n");
    let (a, b) = (control.call(A).await, control.call(B).await);
    assert_eq!(a["connected_to"], json!([B]));
    assert_eq!(b["connected_to"], json!([A]));
    // Their caller IDs stay the proxy's, but the network told each of them
    // the other's number with the transfer (3GPP TS 23.091 §3): a transfer
    // unmasks.
    assert_eq!(a["caller_id"], p.as_str());
    assert_eq!(b["caller_id"], p.as_str());
    assert_eq!(b["notifications"][0]["number"], A, "{b}");
    assert_eq!(a["notifications"][1]["number"], B, "{a}");

    control.act(A, "hangup").await;
    let b = control.call(B).await;
    assert_eq!(
        (b["state"].as_str(), b["last_end"].as_str()),
        (Some("idle"), Some("remote_hung_up"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_muted_conference_connects_the_parties_until_one_leaves() {
    let sim = start(&["generic"], 1).await;
    let control = Control::new(&sim);
    let mut port = Port::open(&sim, 0).await;
    let p = msisdn(&sim, 0);
    bridge(&mut port, &control, &p).await;

    assert!(port.command("AT+CMUT=1;+CHLD=3").await.ends_with("OK\r\n"));
    assert_eq!(port.command("AT+CMUT?").await, "\r\n+CMUT: 1\r\n\r\nOK\r\n");
    assert!(
        port.command("AT+CLCC")
            .await
            .contains(&format!("+CLCC: 2,0,0,0,1,\"{B}\",145"))
    );
    assert_eq!(control.call(A).await["connected_to"], json!([B]));
    assert_eq!(control.call(B).await["connected_to"], json!([A]));
    // In the conference each is shown only the proxy.
    for number in [A, B] {
        let call = control.call(number).await;
        assert_eq!(call["caller_id"], p.as_str(), "{call}");
        let shown = call["notifications"].to_string();
        assert!(!shown.contains("+1555"), "{call}");
    }

    control.act(B, "hangup").await;
    port.until("NO CARRIER\r\n").await;
    assert_eq!(control.call(A).await["state"], "active");
    assert!(port.command("ATH").await.ends_with("OK\r\n"));
    assert_eq!(control.call(A).await["last_end"], "remote_hung_up");
    sim.shutdown().await;
}

#[tokio::test]
async fn busy_switched_off_barred_and_no_answer() {
    let sim = start(&["generic"], 1).await;
    let control = Control::new(&sim);
    let mut port = Port::open(&sim, 0).await;

    control.dial(B, C).await;
    control.wait_state(C, "ringing").await;
    assert!(port.command(&format!("ATD{B};")).await.ends_with("OK\r\n"));
    port.until("BUSY\r\n").await;
    control.act(C, "hangup").await;

    control
        .put(&format!("/handsets/{C}/state"), json!({"power": "off"}))
        .await;
    port.command(&format!("ATD{C};")).await;
    port.until("NO CARRIER\r\n").await;
    control
        .put(
            &format!("/handsets/{C}/state"),
            json!({"power": "on", "barred": true}),
        )
        .await;
    port.command(&format!("ATD{C};")).await;
    port.until("NO CARRIER\r\n").await;

    let timing = control
        .put("/calls/timing", json!({"ring_timeout_ms": 1000}))
        .await;
    assert_eq!(timing["ring_timeout_ms"], 1000);
    port.command(&format!("ATD{A};")).await;
    control.wait_state(A, "ringing").await;
    port.until("NO ANSWER\r\n").await;
    assert_eq!(control.call(A).await["state"], "idle");
    sim.shutdown().await;
}

#[tokio::test]
async fn services_the_sim_network_lacks_are_refused() {
    let sim = start(&["huawei-e173"], 1).await;
    let control = Control::new(&sim);
    let mut port = Port::open(&sim, 0).await;
    assert_eq!(
        port.command("AT+CHLD=?").await,
        "\r\n+CHLD: (0,1,1x,2,2x)\r\n\r\nOK\r\n"
    );
    bridge(&mut port, &control, &msisdn(&sim, 0)).await;
    assert_eq!(port.command("AT+CHLD=4").await, "\r\n+CME ERROR: 3\r\n");
    assert_eq!(port.command("AT+CHLD=3").await, "\r\n+CME ERROR: 3\r\n");
    // +CLCC reports are a SIMCom feature.
    assert_eq!(port.command("AT+CLCC=1").await, "\r\n+CME ERROR: 4\r\n");
    sim.shutdown().await;
}

#[tokio::test]
async fn unplugging_mid_call_hangs_up_the_other_side() {
    let sim = start(&["generic"], 1).await;
    let control = Control::new(&sim);
    let mut port = Port::open(&sim, 0).await;
    control.dial(A, &msisdn(&sim, 0)).await;
    port.until("RING\r\n").await;
    port.command("ATA").await;
    control.wait_state(A, "active").await;
    let (status, _) = control.post("/modems/0/unplug", json!({})).await;
    assert_eq!(status, 202);
    let a = control.wait_state(A, "idle").await;
    assert_eq!(a["last_end"], "remote_hung_up");
    sim.shutdown().await;
}

#[tokio::test]
async fn radio_off_ends_calls_and_makes_the_sim_unreachable() {
    let sim = start(&["generic"], 1).await;
    let control = Control::new(&sim);
    let mut port = Port::open(&sim, 0).await;
    let p = msisdn(&sim, 0);
    control.dial(A, &p).await;
    port.until("RING\r\n").await;
    port.command("ATA").await;
    control.wait_state(A, "active").await;
    assert!(port.command("AT+CFUN=4").await.ends_with("OK\r\n"));
    let a = control.wait_state(A, "idle").await;
    assert_eq!(a["last_end"], "remote_hung_up");
    control.dial(A, &p).await;
    let a = control.wait_state(A, "idle").await;
    assert_eq!(a["last_end"], "unreachable");
    assert!(port.command("AT+CFUN=1").await.ends_with("OK\r\n"));
    control.dial(A, &p).await;
    port.until("RING\r\n").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn two_sims_call_each_other_and_sim800_reports_changes() {
    let sim = start(&["simcom-sim800", "generic"], 2).await;
    let mut first = Port::open(&sim, 0).await;
    let mut second = Port::open(&sim, 1).await;
    assert!(first.command("AT+CLCC=1").await.ends_with("OK\r\n"));
    let (p0, p1) = (msisdn(&sim, 0), msisdn(&sim, 1));
    first.command(&format!("ATD{p1};")).await;
    second.until(&format!("+CLIP: \"{p0}\",145,,,,0\r\n")).await;
    first
        .until(&format!("+CLCC: 1,0,3,0,0,\"{p1}\",145\r\n"))
        .await;
    second.command("ATA").await;
    first
        .until(&format!("+CLCC: 1,0,0,0,0,\"{p1}\",145\r\n"))
        .await;
    second.command("AT+CHUP").await;
    first.until("NO CARRIER\r\n").await;
    first
        .until(&format!("+CLCC: 1,0,6,0,0,\"{p1}\",145\r\n"))
        .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn ussd_dial_errors_and_control_api_errors() {
    let sim = start(&["generic"], 1).await;
    let control = Control::new(&sim);
    let mut port = Port::open(&sim, 0).await;
    assert_eq!(port.command("AT+CUSD=1,\"*100#\",15").await, "\r\nOK\r\n");
    port.until("+CUSD: 0,\"Your balance is 12.34 EUR\",15\r\n")
        .await;
    // No `;`: a data call, and the network carries voice only.
    assert_eq!(port.command(&format!("ATD{A}")).await, "\r\nNO CARRIER\r\n");
    assert_eq!(port.command("ATDnobody;").await, "\r\nNO CARRIER\r\n");
    assert_eq!(port.command("ATA").await, "\r\nNO CARRIER\r\n");
    assert_eq!(port.command("AT+CHLD=9").await, "\r\n+CME ERROR: 4\r\n");

    let (status, body) = control
        .post(&format!("/handsets/{A}/dial"), json!({"to": "12"}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("invalid_number"))
    );
    let (status, body) = control
        .post(&format!("/handsets/{A}/answer"), json!({}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("no_incoming_call"))
    );
    let (status, body) = control
        .post(&format!("/handsets/{A}/dial"), json!({"to": A}))
        .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("own_number")));
    let response = reqwest::Client::new()
        .post(format!("{}/handsets/{A}/dial", control.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 400);
    let (status, _) = control
        .post(
            &format!("/handsets/{}/dial", msisdn(&sim, 0)),
            json!({"to": A}),
        )
        .await;
    assert_eq!(status, 422);
    for (path, body) in [
        ("/modems/0/services", json!({"chld": ["2", "9"]})),
        ("/calls/timing", json!({"ring_timeout_ms": 0})),
        ("/calls/timing", json!({"ring_timeout": 5})),
    ] {
        let response = control
            .client
            .put(format!("{}{path}", control.url))
            .json(&body)
            .send()
            .await
            .expect("PUT");
        assert_eq!(response.status(), 422, "{path} {body}");
    }
    let response = control
        .client
        .put(format!("{}/modems/9/services", control.url))
        .json(&json!({"chld": []}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn supplementary_service_notifications_reach_modems_and_handsets() {
    let sim = start(&["generic", "quectel-ec25"], 2).await;
    let control = Control::new(&sim);
    let mut served = Port::open(&sim, 0).await;
    let mut remote = Port::open(&sim, 1).await;
    let (p, q) = (msisdn(&sim, 0), msisdn(&sim, 1));
    assert_eq!(
        remote.command("AT+CSSN=?").await,
        "\r\n+CSSN: (0,1),(0,1)\r\n\r\nOK\r\n"
    );
    assert!(remote.command("AT+CSSN=1,1").await.ends_with("OK\r\n"));
    assert_eq!(
        remote.command("AT+CSSN?").await,
        "\r\n+CSSN: 1,1\r\n\r\nOK\r\n"
    );
    assert_eq!(remote.command("AT+CSSN=2").await, "\r\n+CME ERROR: 4\r\n");

    // Q calls P; P answers and holds Q: Q's modem hears it (27.007 §7.17).
    assert!(
        remote
            .command(&format!("ATD{p};"))
            .await
            .ends_with("OK\r\n")
    );
    served.until("RING\r\n").await;
    assert!(served.command("ATA").await.ends_with("OK\r\n"));
    assert!(served.command("AT+CHLD=2").await.ends_with("OK\r\n"));
    remote.until("+CSSU: 2\r\n").await;
    // P dials B, B answers, P joins them: Q is taken back into a multiparty.
    assert!(
        served
            .command(&format!("ATD{B};"))
            .await
            .ends_with("OK\r\n")
    );
    control.wait_state(B, "ringing").await;
    control.act(B, "answer").await;
    assert!(served.command("AT+CHLD=3").await.ends_with("OK\r\n"));
    remote.until("+CSSU: 3\r\n").await;
    remote.until("+CSSU: 4\r\n").await;
    let b = control.call(B).await;
    assert_eq!(
        b["notifications"],
        json!([{"kind": "multiparty", "code": "+CSSU: 4", "number": null}])
    );
    assert_eq!(b["caller_id"], p.as_str());
    // P splits off B privately, then transfers: each remote party is told
    // the other's number (3GPP TS 23.091 §3).
    assert!(served.command("AT+CHLD=22").await.ends_with("OK\r\n"));
    remote.until("+CSSU: 2\r\n").await;
    assert!(served.command("AT+CHLD=4").await.ends_with("OK\r\n"));
    remote.until(&format!("+CSSU: 8,,\"{B}\",145\r\n")).await;
    let b = control.call(B).await;
    assert_eq!(
        b["notifications"][1],
        json!({"kind": "transferred", "code": "+CSSU: 8", "number": q})
    );
    assert_eq!(b["connected_to"], json!([q]));
    control.act(B, "hangup").await;
    remote.until("NO CARRIER\r\n").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_handset_that_restricts_its_number_calls_withheld() {
    let sim = start(&["simcom-sim800"], 1).await;
    let control = Control::new(&sim);
    let mut port = Port::open(&sim, 0).await;
    let p = msisdn(&sim, 0);
    let state = control
        .put(&format!("/handsets/{A}/state"), json!({"clir": true}))
        .await;
    assert_eq!(state["clir"], true, "{state}");

    control.dial(A, &p).await;
    port.until("+CLIP: \"\",128,,,,1\r\n").await;
    assert_eq!(
        port.command("AT+CLCC").await,
        "\r\n+CLCC: 1,1,4,0,0\r\n\r\nOK\r\n"
    );
    let calls: Value = control
        .client
        .get(format!("{}/modems/0/calls", control.url))
        .send()
        .await
        .expect("GET calls")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        calls,
        json!([{"id": 1, "direction": "mobile_terminated", "state": "incoming",
                "multiparty": false, "number": null}])
    );
    assert!(port.command("ATA").await.ends_with("OK\r\n"));
    // The handset dialled P and P answered: its connected line is P.
    let a = control.wait_state(A, "active").await;
    assert_eq!(a["connected_line"], p.as_str(), "{a}");
    assert_eq!(a["notifications"], json!([]));
    control.act(A, "hangup").await;
    port.until("NO CARRIER\r\n").await;
    let calls: Value = control
        .client
        .get(format!("{}/modems/0/calls", control.url))
        .send()
        .await
        .expect("GET calls")
        .json()
        .await
        .expect("JSON");
    assert_eq!(calls, json!([]));
    let state = control
        .put(&format!("/handsets/{A}/state"), json!({"clir": false}))
        .await;
    assert_eq!(state["clir"], false, "{state}");
    sim.shutdown().await;
}
