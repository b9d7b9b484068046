//! `simmask migrate` through the command line, against a real PostgreSQL
//! started by the test: an appliance's SQLite store, filled by its daemon
//! (an open session that relayed an SMS, a closed one, a token, a hub), moved
//! into a fleet database; a daemon started on that database serves the
//! same sessions, interactions and token through its API; a second run is
//! refused, and so is a source newer than this simmask. The url's password
//! is never printed. The Twilio facade's services, numbers, sessions,
//! participants and undelivered status callbacks move too, and the fleet's
//! facade goes on with them.

mod common;
mod pg_common;
mod twilio_common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{Daemon, Sim, free_port, write_config};
use pg_common::Postgres;
use serde_json::{Value, json};

const A: &str = "+447911123456";
const B: &str = "+447912345678";
const C: &str = "+447911777888";
const D: &str = "+447911777999";
const HUB: &str = "+447911555000";
const PASSWORD: &str = "s3cret-pw";

fn migrate(from: &Path, url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simmask"))
        .arg("migrate")
        .arg("--from")
        .arg(format!("sqlite:{}", from.display()))
        .args(["--to", &format!("postgres:{url}"), "--appliance", "site-1"])
        .output()
        .expect("simmask migrate")
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `url` with a password in it (the test server trusts local connections,
/// so any password is accepted: it is there to be hidden).
fn with_password(url: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appliances_store_moves_into_a_fleet_database_once() {
    let pg = Postgres::start();
    let url = with_password(&pg.database("fleet").await);
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");

    // The appliance on SQLite: a session that relays a message, a closed
    // one, a token.
    let sqlite_dir = dir.path().join("sqlite");
    std::fs::create_dir_all(&sqlite_dir).unwrap();
    let daemon = Daemon::start_on(&sqlite_dir, &sim, "").await;
    let open = daemon.open_session(A, B, json!({"label": "kept"})).await;
    let proxy = open["proxy_number"].as_str().unwrap().to_string();
    let open_id = open["id"].as_str().unwrap().to_string();
    sim.handset_sms(A, &proxy, "hello through the proxy").await;
    sim.wait_messages(B, 1, Duration::from_secs(60)).await;
    let closed = daemon.open_session(C, D, json!({"label": "ended"})).await;
    let closed_id = closed["id"].as_str().unwrap().to_string();
    let (status, _) = daemon
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/sessions/{closed_id}"),
            json!(null),
        )
        .await;
    assert!((200..300).contains(&status), "{status}");
    let (status, made) = daemon
        .api(
            reqwest::Method::POST,
            "/api/v1/tokens",
            json!({"name": "ordering", "role": "admin"}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    let (status, hub) = daemon
        .api(
            reqwest::Method::POST,
            "/api/v1/hubs",
            json!({"number": HUB, "label": "dispatch"}),
        )
        .await;
    assert_eq!(status, 201, "{hub}");
    let before = daemon.interactions(&open_id).await;
    assert!(!before.is_empty(), "the relayed SMS is an interaction");
    drop(daemon);
    let database = sqlite_dir.join("simmask.db");
    // A callback the receiver had not taken yet: the appliance resumes it
    // from the fleet's database.
    simmask::store::Store::open(&database)
        .unwrap()
        .queue_delivery(
            "session_closed".into(),
            "{\"pending\":1}".into(),
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();

    // Moved, once.
    let output = migrate(&database, &url);
    let text = printed(&output);
    assert!(output.status.success(), "{text}");
    assert!(!text.contains(PASSWORD), "the password was printed: {text}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON when piped");
    let rows = |table: &str| {
        report["moved"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .unwrap_or_else(|| panic!("{table} not in {report}"))["rows"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(rows("sessions"), 2, "{report}");
    assert_eq!(rows("participants"), 4, "{report}");
    assert_eq!(rows("sims"), 1, "{report}");
    assert_eq!(rows("api_tokens"), 1, "{report}");
    assert_eq!(rows("hubs"), 1, "{report}");
    assert_eq!(rows("callback_deliveries"), 1, "{report}");
    assert_eq!(rows("interactions") as usize, before.len(), "{report}");
    assert!(rows("audit") >= 3, "{report}");
    assert_eq!(report["appliance"], "site-1");
    assert!(!report["database"].as_str().unwrap().contains(PASSWORD));

    // A daemon on the fleet database serves it all.
    let fleet_dir = dir.path().join("fleet");
    std::fs::create_dir_all(&fleet_dir).unwrap();
    let port = free_port();
    let config = write_config(&fleet_dir, &sim, port, "[appliance]\nname = \"site-1\"\n");
    pg_common::store_in_postgres(&config, &url);
    let fleet = Daemon::start(&config, port, 1).await;
    let seen = fleet.get(&format!("/api/v1/sessions/{open_id}")).await;
    assert_eq!(seen["status"], "open", "{seen}");
    assert_eq!(seen["proxy_number"], proxy.as_str(), "{seen}");
    assert_eq!(seen["label"], "kept", "{seen}");
    let ended = fleet.get(&format!("/api/v1/sessions/{closed_id}")).await;
    assert_eq!(ended["status"], "closed", "{ended}");
    let after = fleet.interactions(&open_id).await;
    let ids = |list: &[Value]| -> Vec<(Value, Value, Value)> {
        list.iter()
            .map(|i| (i["kind"].clone(), i["status"].clone(), i["body"].clone()))
            .collect()
    };
    assert_eq!(ids(&after), ids(&before));
    // The token works on the fleet, and the masking rule holds over the
    // moved sessions: A already has the only proxy.
    let response = common::client()
        .get(format!("{}/api/v1/tokens", fleet.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let listed: Value = response.json().await.unwrap();
    assert_eq!(listed[0]["name"], "ordering", "{listed}");
    let refused = common::client()
        .post(format!("{}/api/v1/sessions", fleet.url))
        .bearer_auth(&token)
        .json(&json!({"participants": [A, C]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    let numbers = fleet.get("/api/v1/numbers").await;
    assert_eq!(numbers[0]["appliance"], "site-1", "{numbers}");
    // The shell's token commands work on the fleet's database: listed,
    // revoked there, refused by the running daemon at once.
    let shell = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_simmask"))
            .args(["token"])
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("simmask token")
    };
    let listed = shell(&["list"]);
    assert!(listed.status.success(), "{}", printed(&listed));
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["name"], "ordering", "{listed}");
    let revoked = shell(&["revoke", "ordering"]);
    assert!(revoked.status.success(), "{}", printed(&revoked));
    assert!(!printed(&revoked).contains(PASSWORD));
    let refused = common::client()
        .get(format!("{}/api/v1/numbers", fleet.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    drop(fleet);

    // A second run is refused, saying why, and moves nothing.
    let again = migrate(&database, &url);
    let text = printed(&again);
    assert!(!again.status.success(), "{text}");
    assert!(text.contains("already holds a migrated store"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    let client = Postgres::client(&url).await;
    let sessions: i64 = client
        .query_one("SELECT count(*) FROM sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sessions, 2);
    // The open sessions the move wrote are counted per SIM (`sim_load`,
    // which the opening reads), as a count of the rows says.
    let uncounted: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT proxy_iccid, count(*) AS n FROM sessions \
             WHERE status = 'open' GROUP BY proxy_iccid) AS c \
             FULL JOIN (SELECT iccid, open_sessions FROM sim_load WHERE open_sessions <> 0) AS l \
             ON l.iccid = c.proxy_iccid WHERE l.open_sessions IS DISTINCT FROM c.n",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(uncounted, 0, "sim_load after the move");
    let counted: i64 = client
        .query_one(
            "SELECT COALESCE(SUM(open_sessions), 0)::BIGINT FROM sim_load",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(counted > 0, "the open session moved is counted");
    // The hub moved with its number and label (the relay routes by it).
    let hub = client
        .query_one("SELECT number, label FROM hubs", &[])
        .await
        .unwrap();
    assert_eq!(hub.get::<_, String>(0), HUB);
    assert_eq!(hub.get::<_, Option<String>>(1).as_deref(), Some("dispatch"));
    // The pending callback is site-1's.
    let delivery = client
        .query_one(
            "SELECT a.name, d.kind, d.body FROM callback_deliveries d \
             JOIN appliances a ON a.id = d.appliance_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(delivery.get::<_, String>(0), "site-1");
    assert_eq!(delivery.get::<_, String>(1), "session_closed");
    assert_eq!(delivery.get::<_, String>(2), "{\"pending\":1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_or_foreign_source_is_refused_and_nothing_moves() {
    let pg = Postgres::start();
    let url = with_password(&pg.database("fleet").await);
    let dir = tempfile::tempdir().unwrap();
    // A store from a newer simmask.
    let newer = dir.path().join("newer.db");
    drop(simmask::store::Store::open(&newer).unwrap());
    let conn = rusqlite::Connection::open(&newer).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    let output = migrate(&newer, &url);
    let text = printed(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("newer simmask"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    // Not a simmask store, and no file at all.
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER)")
        .unwrap();
    let output = migrate(&foreign, &url);
    assert!(!output.status.success());
    assert!(
        printed(&output).contains("not a simmask"),
        "{}",
        printed(&output)
    );
    let output = migrate(&dir.path().join("missing.db"), &url);
    assert!(!output.status.success());
    assert!(
        printed(&output).contains("no such file"),
        "{}",
        printed(&output)
    );
    assert!(!dir.path().join("missing.db").exists());
    // A bad --to never echoes its password either.
    let output = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["migrate", "--from", "sqlite:/nowhere.db", "--to"])
        .arg(format!("mysql://root:{PASSWORD}@db/x"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(!printed(&output).contains(PASSWORD), "{}", printed(&output));
    // Nothing moved: the marker is absent, a later migration can run.
    let client = Postgres::client(&url).await;
    let marked: i64 = client
        .query_one("SELECT count(*) FROM sqlite_imports", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(marked, 0);
}

/// A store whose hub has two open sessions on one SIM (and a closed one)
/// moves with its codes: the fleet lists them, routes by them, and a new
/// session of the hub there draws a code apart from theirs while its
/// counterparts keep the masking rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_hub_sessions_move_with_their_codes() {
    use simmask::masking::allocation::{AllocationError, PoolLimits};
    use simmask::masking::hub;
    use simmask::store::{LiveSim, Location, NewSession, Store, StoreError};

    let pg = Postgres::start();
    let url = pg.database("hubs").await;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("hubs.db");
    let now = time::OffsetDateTime::now_utc();
    let number = |text: &str| simmask::number::PhoneNumber::from_e164(text).unwrap();
    let iccid = "8944000000000000001".to_string();
    let live = vec![LiveSim {
        iccid: iccid.clone(),
        healthy: true,
        signal_dbm: Some(-70),
        voice_capable: true,
    }];
    let new = |a: &str, b: &str| NewSession {
        participants: [number(a), number(b)],
        mode: simmask::masking::Mode::Sms,
        ttl: None,
        idle_ttl: None,
        label: None,
        sticky: false,
        actor: "test".into(),
        fallback_number: None,
        proxy: None,
        limits: PoolLimits::default(),
    };
    let mut codes = Vec::new();
    {
        let store = Store::open(&source).unwrap();
        store
            .upsert_sim(
                iccid.clone(),
                number("+447000000001"),
                "imsi".into(),
                None,
                now,
            )
            .await
            .unwrap();
        store
            .create_hub(number(HUB), Some("dispatch".into()), "test".into(), now)
            .await
            .unwrap();
        for counterpart in [A, B, C] {
            let session = store
                .open_session(new(counterpart, HUB), live.clone(), now)
                .await
                .unwrap();
            codes.push((session.id.clone(), session.hub.unwrap().code));
        }
        store
            .close_session(codes[2].0.clone(), "test".into(), now)
            .await
            .unwrap();
    }

    let output = migrate(&source, &url);
    assert!(output.status.success(), "{}", printed(&output));

    let fleet = Store::connect(
        &Location::Postgres(url.clone()),
        "site-1",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let hubs = fleet.hubs().await.unwrap();
    assert_eq!(hubs.len(), 1);
    assert_eq!(hubs[0].label.as_deref(), Some("dispatch"));
    let mut moved: Vec<(String, String)> = fleet
        .hub_sessions()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, session)| (session.id, session.hub.unwrap().code))
        .collect();
    moved.sort();
    let mut open = codes[..2].to_vec();
    open.sort();
    assert_eq!(moved, open, "the open sessions with their codes");
    let (conversations, _) = fleet
        .hub_conversations(iccid.clone(), number(HUB))
        .await
        .unwrap();
    assert_eq!(conversations.len(), 2);
    // One more on the fleet: a code keyed apart from the moved ones.
    let third = fleet
        .open_session(new(D, HUB), live.clone(), now)
        .await
        .unwrap();
    let code = third.hub.unwrap().code;
    assert!(
        open.iter().all(|(_, c)| hub::keys(c) != hub::keys(&code)),
        "{code} vs {open:?}"
    );
    // A moved counterpart keeps the masking rule on the only SIM.
    let refused = fleet
        .open_session(new(A, D), live.clone(), now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::Allocation(AllocationError::NoFreeProxy(_))
        ),
        "{refused:?}"
    );
    // The closed one reopens on the fleet with its code (free again).
    let reopened = fleet
        .reopen_session(codes[2].0.clone(), None, None, "test".into(), now)
        .await
        .unwrap();
    let kept = reopened.hub.unwrap().code;
    // Its old code is free again unless the one opened on the fleet since
    // took the same keys (codes are drawn at random); then a new one.
    if hub::keys(&codes[2].1) != hub::keys(&code) {
        assert_eq!(kept, codes[2].1);
    } else {
        assert_ne!(hub::keys(&kept), hub::keys(&code), "{kept} vs {code}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twilio_facade_moves_with_the_store() {
    use twilio_common::{ACCOUNT, AUTH_TOKEN, facade_post, token};
    let facade = format!("[twilio]\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"{AUTH_TOKEN}\"\n");
    let pg = Postgres::start();
    let url = pg.database("facade").await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 1, "generic");
    let proxy = sim.msisdn(0);

    // On SQLite: a service with its number, a session that sent a message
    // interaction, a session still waiting for its second participant.
    let sqlite_dir = dir.path().join("sqlite");
    std::fs::create_dir_all(&sqlite_dir).unwrap();
    let daemon = Daemon::start_on(&sqlite_dir, &sim, &facade).await;
    let admin = token(&daemon, "orders", "admin").await;
    let service = facade_post(&daemon, &admin, "/Services", &[("UniqueName", "market")]).await;
    let sid = service["sid"].as_str().unwrap().to_string();
    facade_post(
        &daemon,
        &admin,
        &format!("/Services/{sid}/PhoneNumbers"),
        &[("PhoneNumber", &proxy)],
    )
    .await;
    let sessions = format!("/Services/{sid}/Sessions");
    let (a, b) = (
        format!("{{\"Identifier\": \"{A}\"}}"),
        format!("{{\"Identifier\": \"{B}\"}}"),
    );
    let open = facade_post(
        &daemon,
        &admin,
        &sessions,
        &[
            ("UniqueName", "order-1"),
            ("Participants", &a),
            ("Participants", &b),
        ],
    )
    .await;
    let open_sid = open["sid"].as_str().unwrap().to_string();
    let listed: Value = common::client()
        .get(format!(
            "{}/twilio/v1{sessions}/{open_sid}/Participants",
            daemon.url
        ))
        .basic_auth(ACCOUNT, Some(&admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bob = listed["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["identifier"] == B)
        .unwrap_or_else(|| panic!("{listed}"))["sid"]
        .as_str()
        .unwrap()
        .to_string();
    facade_post(
        &daemon,
        &admin,
        &format!("{sessions}/{open_sid}/Participants/{bob}/MessageInteractions"),
        &[("Body", "your order is ready")],
    )
    .await;
    sim.wait_messages(B, 1, Duration::from_secs(60)).await;
    let c = format!("{{\"Identifier\": \"{C}\"}}");
    let waiting = facade_post(
        &daemon,
        &admin,
        &sessions,
        &[("UniqueName", "order-2"), ("Participants", &c)],
    )
    .await;
    let waiting_sid = waiting["sid"].as_str().unwrap().to_string();
    drop(daemon);
    let database = sqlite_dir.join("simmask.db");
    {
        // A status callback the receiver had not taken, its attempt in
        // flight (leased) when the daemon stopped.
        let store = simmask::store::Store::open(&database).unwrap();
        let now = time::OffsetDateTime::now_utc();
        store
            .twilio_queue_callback(
                "http://127.0.0.1:9/status".into(),
                "interactionSid=KI1".into(),
                now,
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .twilio_due_callbacks(now, 3_600_000, 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }

    let output = migrate(&database, &url);
    let text = printed(&output);
    assert!(output.status.success(), "{text}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON when piped");
    let rows = |table: &str| {
        report["moved"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .unwrap_or_else(|| panic!("{table} not in {report}"))["rows"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(rows("twilio_services"), 1, "{report}");
    assert_eq!(rows("twilio_numbers"), 1, "{report}");
    assert_eq!(rows("twilio_sessions"), 2, "{report}");
    assert_eq!(rows("twilio_participants"), 3, "{report}");
    assert_eq!(rows("twilio_callbacks"), 1, "{report}");
    assert_eq!(
        report["not_moved"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "nothing left behind: {report}"
    );

    // The fleet's facade goes on: the same service, number and sessions
    // under the same SIDs, the message in the session's interactions, and
    // the waiting session opens when its second participant comes.
    let fleet_dir = dir.path().join("fleet");
    std::fs::create_dir_all(&fleet_dir).unwrap();
    let port = free_port();
    let config = write_config(
        &fleet_dir,
        &sim,
        port,
        &format!("[appliance]\nname = \"site-1\"\n{facade}"),
    );
    pg_common::store_in_postgres(&config, &url);
    let fleet = Daemon::start(&config, port, 1).await;
    let get = |path: String| {
        let url = format!("{}/twilio/v1{path}", fleet.url);
        let admin = admin.clone();
        async move {
            let response = common::client()
                .get(url)
                .basic_auth(ACCOUNT, Some(&admin))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let found = get("/Services/market".into()).await;
    assert_eq!(found["sid"], sid.as_str(), "{found}");
    let numbers = get(format!("/Services/{sid}/PhoneNumbers")).await;
    assert_eq!(
        numbers["phone_numbers"][0]["phone_number"],
        proxy.as_str(),
        "{numbers}"
    );
    assert_eq!(numbers["phone_numbers"][0]["in_use"], 1, "{numbers}");
    let listed = get(sessions.clone()).await;
    assert_eq!(
        listed["sessions"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    let interactions = get(format!("{sessions}/order-1/Interactions")).await;
    let interactions = interactions["interactions"].as_array().unwrap();
    assert_eq!(interactions.len(), 1, "{interactions:?}");
    let joined = facade_post(
        &fleet,
        &admin,
        &format!("{sessions}/{waiting_sid}/Participants"),
        &[("Identifier", D)],
    )
    .await;
    assert_eq!(joined["proxy_identifier"], proxy.as_str(), "{joined}");
    // The callback whose lease the stopped daemon held is due at once:
    // the fleet's appliance takes it (it was leased for an hour).
    let client = Postgres::client(&url).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let taken: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM twilio_callbacks WHERE leased_by IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if taken == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never asked again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let native = fleet.get("/api/v1/sessions?status=open&limit=10").await;
    assert_eq!(
        native["sessions"].as_array().map(Vec::len),
        Some(2),
        "{native}"
    );
}
