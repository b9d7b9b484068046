//! The operators' fleet end to end: two `simmask run` daemons on one
//! `simmask sim` (one modem each) and one PostgreSQL started by the test.
//! A token made through one appliance's API works on the other's until it
//! is revoked there; a voice session opened through site-2's API on a SIM
//! site-1 holds is bridged by site-1, the callee sees only the proxy, and
//! the call's record is on both APIs.

mod common;
mod pg_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Daemon, Sim, free_port, write_config};
use pg_common::Postgres;
use serde_json::{Value, json};

const A: &str = "+447911123456";
const B: &str = "+447912345678";

/// A daemon's configuration in `dir`: the modem `modem` of `sim` only, the
/// fleet's database, the appliance's name.
fn fleet_config(dir: &Path, sim: &Sim, modem: usize, port: u16, url: &str, name: &str) -> PathBuf {
    let path = write_config(dir, sim, port, &format!("[appliance]\nname = \"{name}\"\n"));
    // `[store] path` is the SQLite file: refused beside `backend = "postgres"`.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("path = "))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            "[store]\n",
            &format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"),
        )
        .replace("/modem*\"]", &format!("/modem{modem}\"]"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Two daemons, site-1 on modem 0 and site-2 on modem 1, both ready.
async fn fleet(dir: &Path, sim: &Sim, url: &str) -> (Daemon, Daemon) {
    let (dir1, dir2) = (dir.join("site-1"), dir.join("site-2"));
    std::fs::create_dir_all(&dir1).unwrap();
    std::fs::create_dir_all(&dir2).unwrap();
    let (port1, port2) = (free_port(), free_port());
    let config1 = fleet_config(&dir1, sim, 0, port1, url, "site-1");
    let config2 = fleet_config(&dir2, sim, 1, port2, url, "site-2");
    let daemon1 = Daemon::start_logged(
        &config1,
        port1,
        1,
        &dir1.join("daemon.log"),
        Duration::from_secs(60),
    )
    .await;
    let daemon2 = Daemon::start_logged(
        &config2,
        port2,
        2,
        &dir2.join("daemon.log"),
        Duration::from_secs(60),
    )
    .await;
    daemon1.wait_ready(2).await;
    (daemon1, daemon2)
}

async fn status_with(daemon: &Daemon, token: &str, path: &str) -> u16 {
    common::client()
        .get(format!("{}{path}", daemon.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_fleet_wide_and_calls_are_bridged_by_the_sims_holder() {
    let pg = Postgres::start();
    let url = pg.database("fleet").await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 2, "quectel-ec25");
    let (site1, site2) = fleet(dir.path(), &sim, &url).await;

    // A token made through site-1's API…
    let made: Value = common::client()
        .post(format!("{}/api/v1/tokens", site1.url))
        .bearer_auth(common::ADMIN_TOKEN)
        .json(&json!({"name": "ops", "role": "viewer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = made["token"].as_str().expect("the token").to_string();
    // …works on site-2's, with its role (a viewer may not open sessions),
    // and both list it.
    assert_eq!(status_with(&site2, &token, "/api/v1/numbers").await, 200);
    let refused = common::client()
        .post(format!("{}/api/v1/sessions", site2.url))
        .bearer_auth(&token)
        .json(&json!({"participants": [A, B]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    for site in [&site1, &site2] {
        let listed = site.get("/api/v1/tokens").await;
        let names: Vec<&str> = listed
            .as_array()
            .expect("tokens")
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["ops"], "{listed}");
    }
    // Revoked through site-2: refused by site-1 from then on.
    let revoked = common::client()
        .delete(format!("{}/api/v1/tokens/{}", site2.url, made["id"]))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    assert_eq!(status_with(&site1, &token, "/api/v1/numbers").await, 401);
    assert_eq!(status_with(&site2, &token, "/api/v1/numbers").await, 401);

    // Only site-1's SIM takes sessions (site-2's is disabled through
    // site-1's API): a session opened through site-2 lands on a SIM held
    // by site-1.
    let numbers = site1.get("/api/v1/numbers").await;
    let held_by = |name: &str| -> Value {
        numbers
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["appliance"] == name)
            .unwrap_or_else(|| panic!("no SIM of {name}: {numbers}"))
            .clone()
    };
    let (sim1, sim2) = (held_by("site-1"), held_by("site-2"));
    assert_eq!(sim1["voice_method"], "conference", "{sim1}");
    let disabled = common::client()
        .put(format!(
            "{}/api/v1/numbers/{}",
            site1.url,
            sim2["id"].as_str().unwrap()
        ))
        .bearer_auth(common::ADMIN_TOKEN)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert!(disabled.status().is_success(), "{}", disabled.status());
    let session = site2.open_session(A, B, json!({"mode": "voice"})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    assert_eq!(proxy, sim1["msisdn"].as_str().unwrap());
    let id = session["id"].as_str().unwrap().to_string();

    // A dials the proxy: site-1 bridges, B is shown the proxy only.
    let (at_a, at_b) = sim.bridge(&proxy, A, B).await;
    // What the network showed each (not `connected_to`: whose voice it
    // hears).
    let shown = |call: &Value| {
        json!([
            call["caller_id"],
            call["connected_line"],
            call["notifications"]
        ])
        .to_string()
    };
    assert!(!shown(&at_b).contains(A), "B was shown A: {at_b}");
    assert!(!shown(&at_a).contains(B), "A was shown B: {at_a}");
    sim.hang_up(A, B).await;
    // The call's record, through either API.
    for site in [&site2, &site1] {
        let calls = site.wait_calls(&id, 1).await;
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0]["outcome"], "completed", "{calls:?}");
        assert_eq!(calls[0]["status"], "bridged", "{calls:?}");
    }
}
