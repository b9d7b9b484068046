//! A daemon killed after a `> ` prompt (mid-send) leaves the modem reading
//! everything as message text. The next bring-up ends that input with Esc
//! and finds the modem: here `simmask probe` after a client left the
//! simulator's modem at its prompt.

use std::time::Duration;

use simmask::sim::{SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialStream;

async fn read_until(stream: &mut SerialStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let n = stream.read(&mut buf).await.expect("read");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(&seen)));
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modem_left_at_its_prompt_is_found_again() {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    let path = sim.description().modems[0].path.clone();
    {
        let mut port = SerialStream::open(&tokio_serial::new(path.to_string_lossy(), 115_200))
            .expect("open pty");
        port.write_all(b"ATE0\r").await.unwrap();
        read_until(&mut port, "OK").await;
        port.write_all(b"AT+CMGF=0\r").await.unwrap();
        read_until(&mut port, "OK").await;
        port.write_all(b"AT+CMGS=20\r").await.unwrap();
        read_until(&mut port, "> ").await;
        // Gone without sending the PDU or Ctrl-Z, as a killed daemon.
    }
    let path = path.to_string_lossy().into_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_simmask"))
            .args(["probe", &path])
            .output()
            .expect("run simmask")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["imei"].as_str(),
        Some(sim.description().modems[0].imei.as_str())
    );
    sim.shutdown().await;
}
