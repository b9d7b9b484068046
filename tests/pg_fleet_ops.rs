//! The operators' fleet end to end: two `simmask run` daemons on one
//! `simmask sim` (one modem each) and one PostgreSQL started by the test.
//! A token made through one appliance's API works on the other's until it
//! is revoked there; a voice session opened through site-2's API on a SIM
//! site-1 holds is bridged by site-1, the callee sees only the proxy, and
//! the call's record is on both APIs.

mod browser_common;
mod common;
mod pg_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Daemon, Sim, free_port, write_config};
use pg_common::Postgres;
use serde_json::{Value, json};

const A: &str = "+447911123456";
const B: &str = "+447912345678";
const STAFF: &str = "+447911500500";
const STRANGER: &str = "+447400123456";
const BLOCKED: &str = "+447400654321";

/// A daemon's configuration in `dir`: the modem `modem` of `sim` only, the
/// fleet's database, the appliance's name.
fn fleet_config(dir: &Path, sim: &Sim, modem: usize, port: u16, url: &str, name: &str) -> PathBuf {
    let appliance = format!("[appliance]\nname = \"{name}\"\nheartbeat_timeout_seconds = 3\n");
    let path = write_config(dir, sim, port, &appliance);
    pg_common::store_in_postgres(&path, url);
    // Only the modem `modem` of the simulated bank.
    let text = std::fs::read_to_string(&path)
        .unwrap()
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
    // The fleet's export, from the API of the appliance that did not
    // bridge the call: the call is in it, with who called whom.
    let since = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
        .replace('+', "%2B");
    let export = common::client()
        .get(format!(
            "{}/api/v1/interactions?from={since}&format=jsonl",
            site2.url
        ))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status().as_u16(), 200);
    let exported: Vec<Value> = export
        .text()
        .await
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let call = exported
        .iter()
        .find(|row| row["session_id"] == id.as_str() && row["kind"] == "call")
        .unwrap_or_else(|| panic!("no call in the export: {exported:?}"));
    assert_eq!(
        (&call["from"], &call["to"]),
        (&json!(A), &json!(B)),
        "{call}"
    );
    assert_eq!(call["proxy_number"], proxy.as_str(), "{call}");

    // A number blocked through site-2 is on site-1's list.
    let (status, _) = site2
        .api(
            reqwest::Method::POST,
            "/api/v1/blocks",
            json!({"number": BLOCKED, "reason": "abuse"}),
        )
        .await;
    assert!((200..300).contains(&status), "{status}");
    let blocks = site1.get("/api/v1/blocks").await;
    assert!(blocks.to_string().contains(BLOCKED), "{blocks}");

    // Site-1's SIM made a front desk through site-2's API: a stranger's
    // call is paired with the staff number by site-1, showing the proxy.
    let (status, body) = site2
        .api(
            reqwest::Method::PUT,
            &format!("/api/v1/numbers/{}", sim1["id"].as_str().unwrap()),
            json!({"front_desk": STAFF}),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    sim.bridge(&proxy, STRANGER, STAFF).await;
    sim.hang_up(STRANGER, STAFF).await;
    let listed = site2.get("/api/v1/sessions?status=open").await;
    let desk = listed
        .as_array()
        .or_else(|| listed["sessions"].as_array())
        .expect("sessions")
        .iter()
        .find(|s| s["label"] == "front desk")
        .unwrap_or_else(|| panic!("no front desk session: {listed}"))
        .clone();
    assert_eq!(desk["proxy_number"], proxy.as_str(), "{desk}");
    // Once it is closed the desk is free again, but not for a blocked
    // number: its call reaches nobody.
    let (status, _) = site1
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/sessions/{}", desk["id"].as_str().unwrap()),
            json!(null),
        )
        .await;
    assert!((200..300).contains(&status), "{status}");
    sim.act(BLOCKED, "dial", json!({"to": proxy})).await;
    let refused = sim
        .wait_call(BLOCKED, "was refused", |c| {
            c["state"] == "idle" && !c["last_end"].is_null()
        })
        .await;
    assert_eq!(refused["connected_to"], json!([]), "{refused}");
    assert_eq!(sim.call_state(STAFF).await["state"], "idle");
}

/// `/api/v1/fleet` of `daemon`, by appliance name: (online, SIMs, this).
async fn fleet_of(daemon: &Daemon) -> Vec<(String, bool, u64, bool)> {
    let fleet = daemon.get("/api/v1/fleet").await;
    assert_eq!(fleet["backend"], "postgres", "{fleet}");
    assert_eq!(fleet["heartbeat_timeout_seconds"], 3, "{fleet}");
    fleet["appliances"]
        .as_array()
        .expect("appliances")
        .iter()
        .map(|a| {
            assert!(a["last_heartbeat"].is_string(), "{a}");
            (
                a["name"].as_str().unwrap().to_string(),
                a["online"].as_bool().unwrap(),
                a["sims"].as_u64().unwrap(),
                a["this"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_view_shows_each_appliance_and_one_that_stops_goes_offline() {
    let pg = Postgres::start();
    let url = pg.database("fleet").await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 2, "generic");
    let (site1, site2) = fleet(dir.path(), &sim, &url).await;

    let entry = |name: &str, online: bool, this: bool| (name.to_string(), online, 1, this);
    assert_eq!(
        fleet_of(&site1).await,
        [entry("site-1", true, true), entry("site-2", true, false)]
    );
    assert_eq!(
        fleet_of(&site2).await,
        [entry("site-1", true, false), entry("site-2", true, true)]
    );

    let (status, hub) = site2
        .api(
            reqwest::Method::POST,
            "/api/v1/hubs",
            json!({"number": "+447911500500", "label": "dispatch"}),
        )
        .await;
    assert_eq!(status, 201, "{hub}");

    // The dashboard's fleet panel, and each SIM card names its holder.
    let browser = browser_common::Browser::start().await;
    browser.sign_in(&site1.url, common::ADMIN_TOKEN, 2).await;
    browser
        .wait_until(
            "return document.querySelectorAll('#fleet-list [data-appliance]').length === 2;",
            "two appliances",
        )
        .await;
    let rows = browser
        .eval(
            "return Array.from(document.querySelectorAll('#fleet-list [data-appliance]'))\
               .map((li) => [li.dataset.appliance, li.dataset.online, li.innerText]);",
        )
        .await;
    assert_eq!(rows[0][0], "site-1", "{rows}");
    assert_eq!(rows[1][1], "true", "{rows}");
    let text = rows[1][2].as_str().unwrap();
    assert!(text.contains("online") && text.contains("1 SIM"), "{rows}");
    assert!(text.contains("last heartbeat"), "{rows}");
    let summary = browser
        .eval("return document.getElementById('fleet-summary').innerText;")
        .await;
    assert_eq!(summary, "2 appliances, 2 online");
    // The hub made through site-2's API is on site-1's dashboard: one hub
    // list for the fleet.
    browser
        .wait_until(
            "const li = document.querySelector('#hub-list li[data-hub]');\
             return li !== null && li.innerText.includes('dispatch');",
            "the fleet's hub",
        )
        .await;
    let cards = browser.cards().await;
    for (iccid, holder) in [(sim.iccid(0), "site-1"), (sim.iccid(1), "site-2")] {
        let card = cards[&iccid]["text"].as_str().unwrap_or_default();
        assert!(card.contains(&format!("held by {holder}")), "{cards}");
    }

    // Site-2 stops (kill -9): past the 3 s timeout it is offline for
    // site-1's API and dashboard, its SIM still its own.
    drop(site2);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let fleet = fleet_of(&site1).await;
        if fleet == [entry("site-1", true, true), entry("site-2", false, false)] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "site-2 never offline: {fleet:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    browser
        .wait_until(
            "const li = document.querySelector('#fleet-list [data-appliance=\"site-2\"]');\
             return li !== null && li.dataset.online === 'false';",
            "site-2 offline",
        )
        .await;
    // In French, as the rest of the dashboard.
    browser
        .eval(
            "const select = document.getElementById('lang'); select.value = 'fr';\
             select.dispatchEvent(new Event('change')); return true;",
        )
        .await;
    browser
        .wait_until(
            "return document.getElementById('fleet-summary').innerText === '2 appareils, 1 en ligne';",
            "the fleet in French",
        )
        .await;
    let offline = browser
        .eval("return document.querySelector('#fleet-list [data-appliance=\"site-2\"]').innerText;")
        .await;
    assert!(
        offline.as_str().unwrap().contains("hors ligne"),
        "{offline}"
    );
    browser.close().await;
}
