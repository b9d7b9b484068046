//! The simulator in-process: its pty through tokio-serial, its control API
//! over real HTTP.

use std::time::Duration;

use simmask::sim::{SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(modems: usize) -> Simulator {
    Simulator::start(SimConfig {
        modems,
        profiles: vec!["generic".into(), "quectel-ec25".into()],
        control: "127.0.0.1:0".parse().expect("address"),
        links: None,
        seed: 3,
        baud: None,
    })
    .await
    .expect("simulator starts")
}

/// Reads from the port until `needle` has arrived (or fails after 5 s, so a
/// broken modem fails the test instead of hanging it).
async fn read_until(port: &mut tokio_serial::SerialStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let n = port.read(&mut buf).await.expect("read pty");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(&seen)));
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn pty_answers_identity_through_tokio_serial() {
    let sim = start(2).await;
    let modem = &sim.description().modems[1];
    let mut port =
        tokio_serial::SerialStream::open(&tokio_serial::new(modem.path.to_string_lossy(), 115_200))
            .expect("open pty");
    port.write_all(b"ATE0\r").await.expect("write");
    read_until(&mut port, "OK\r\n").await;
    port.write_all(b"AT+CGSN;+CIMI\r").await.expect("write");
    let answer = read_until(&mut port, "OK\r\n").await;
    assert_eq!(
        answer,
        format!("\r\n{}\r\n\r\n{}\r\n\r\nOK\r\n", modem.imei, modem.imsi)
    );
    port.write_all(b"AT+NOSUCH\r").await.expect("write");
    assert_eq!(read_until(&mut port, "ERROR\r\n").await, "\r\nERROR\r\n");
    drop(port);
    sim.shutdown().await;
}

#[tokio::test]
async fn control_lists_modems_and_rejects_unknown_index() {
    let sim = start(3).await;
    let client = reqwest::Client::new();
    let url = sim.control_url().to_string();
    let modems: serde_json::Value = client
        .get(format!("{url}/modems"))
        .send()
        .await
        .expect("GET /modems")
        .json()
        .await
        .expect("JSON");
    let modems = modems.as_array().expect("array");
    assert_eq!(modems.len(), 3);
    assert_eq!(modems[1]["profile"], "quectel-ec25");
    assert_eq!(modems[2]["imei"], sim.description().modems[2].imei.as_str());
    assert_eq!(modems[0]["plugged"], true);

    for bad in ["/modems/7", "/modems/x", "/nope"] {
        let response = client
            .get(format!("{url}{bad}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 404, "{bad}");
        let body: serde_json::Value = response.json().await.expect("JSON error body");
        assert!(body["error"].is_string(), "{bad}: {body}");
        assert!(body["message"].is_string(), "{bad}: {body}");
    }
    sim.shutdown().await;
}
