//! The Twilio Proxy facade on a fleet (`[store] backend = "postgres"`, a
//! real PostgreSQL started by the test): the official `twilio` Python
//! library drives it through the same scripts as on SQLite
//! (tests/twilio/*.py: services, numbers, sessions, participants, message
//! interactions relayed over the simulated modems, interactions pages,
//! closing, intercept and out-of-session callbacks); and two appliances
//! sharing the database are one facade: what one API makes, the other
//! sees and uses, and a message asked for through one goes out on the SIM
//! the other holds.

mod common;
mod pg_common;
mod twilio_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Daemon, Sim, client, free_port, write_config};
use pg_common::{Postgres, store_in_postgres};
use serde_json::Value;
use twilio_common::{ACCOUNT, AUTH_TOKEN, facade_post, run_script, token};

fn facade_settings() -> String {
    format!("[twilio]\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"{AUTH_TOKEN}\"\n")
}

/// `simmask run` on `sim`'s modems, its store in the fleet database `url`.
async fn fleet_daemon(dir: &Path, sim: &Sim, url: &str) -> Daemon {
    let port = free_port();
    let config = write_config(dir, sim, port, &facade_settings());
    store_in_postgres(&config, url);
    let modems = sim.bank["modems"].as_array().map_or(0, Vec::len);
    Daemon::start(&config, port, modems).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_twilio_library_drives_a_fleet_appliance() {
    let pg = Postgres::start();
    let url = pg.database("twilio_lib").await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 3, "generic");
    let daemon = fleet_daemon(dir.path(), &sim, &url).await;
    let admin = token(&daemon, "marketplace", "admin").await;
    let viewer = token(&daemon, "support", "viewer").await;
    let proxies: Vec<String> = (0..3).map(|i| sim.msisdn(i)).collect();

    let seen = run_script("proxy_client.py", &daemon, &sim, &admin, &viewer, &proxies).await;
    assert_eq!(seen["interactions"], 5, "{seen}");
    assert_eq!(seen["sessions"], 3, "one of four deleted: {seen}");

    let sessions = daemon.get("/api/v1/sessions?limit=50").await;
    let sessions = sessions["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 4, "{sessions:?}");
    let open = sessions.iter().filter(|s| s["status"] == "open").count();
    assert_eq!(
        open, 2,
        "order-1 reopened and the one on the reserved number: {sessions:?}"
    );

    // The rows are the fleet database's.
    let db = Postgres::client(&url).await;
    let services: i64 = db
        .query_one("SELECT COUNT(*) FROM twilio_services", &[])
        .await
        .unwrap()
        .get(0);
    assert!(services >= 1, "{services}");

    // The database gone: the facade says so (503), never a 500.
    drop(db);
    pg.stop();
    let (status, body) = facade_get(&daemon, &admin, "/Services").await;
    assert_eq!(status, 503, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercept_and_out_of_session_callbacks_decide_messages_on_a_fleet() {
    let pg = Postgres::start();
    let url = pg.database("twilio_hooks").await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), 2, "generic");
    let daemon = fleet_daemon(dir.path(), &sim, &url).await;
    let admin = token(&daemon, "helpdesk", "admin").await;
    let proxies: Vec<String> = (0..2).map(|i| sim.msisdn(i)).collect();
    let seen = run_script(
        "callbacks_client.py",
        &daemon,
        &sim,
        &admin,
        &admin,
        &proxies,
    )
    .await;
    assert_eq!(seen["blocked"], 1, "{seen}");
    assert_eq!(seen["calls_refused"], 1, "{seen}");
    assert_eq!(seen["intercepts"], 6, "four messages and two calls: {seen}");
    let db = Postgres::client(&url).await;
    let waiting: i64 = db
        .query_one("SELECT COUNT(*) FROM twilio_holds", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0, "every held message was decided");
}

/// A site of the fleet: `simmask run` on the links `ports` of one
/// simulated bank.
fn site_config(dir: &Path, sim: &Sim, ports: &str, url: &str, name: &str) -> (PathBuf, u16) {
    std::fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let config = dir.join("simmask.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[api]
listen = "127.0.0.1:{port}"

[store]
backend = "postgres"
url = "{url}"

[appliance]
name = "{name}"

[modems]
ports = ["{links}/{ports}"]
poll_interval_seconds = 2

[sms]
per_minute = 600
per_day = 100000

[sessions]
sweep_interval_seconds = 1

{facade}
"#,
            links = sim.links.display(),
            facade = facade_settings(),
        ),
    )
    .unwrap();
    (config, port)
}

async fn facade_get(daemon: &Daemon, token: &str, path: &str) -> (u16, Value) {
    let response = client()
        .get(format!("{}/twilio/v1{path}", daemon.url))
        .basic_auth(ACCOUNT, Some(token))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn facade_delete(daemon: &Daemon, token: &str, path: &str) -> u16 {
    client()
        .delete(format!("{}/twilio/v1{path}", daemon.url))
        .basic_auth(ACCOUNT, Some(token))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_appliances_are_one_facade() {
    let (alice, bob) = ("+447911223344", "+447912334455");
    let pg = Postgres::start();
    let url = pg.database("twilio_fleet").await;
    let root = tempfile::tempdir().unwrap();
    let sim = Sim::start(root.path(), 2, "generic");
    let (config1, port1) = site_config(&root.path().join("site-1"), &sim, "modem0", &url, "site-1");
    let (config2, port2) = site_config(&root.path().join("site-2"), &sim, "modem1", &url, "site-2");
    // Each waits until the fleet shows both SIMs up.
    let (site1, site2) = tokio::join!(
        Daemon::start(&config1, port1, 2),
        Daemon::start(&config2, port2, 2)
    );
    // A token made through one API is the fleet's.
    let admin = token(&site1, "orders", "admin").await;
    let proxy2 = sim.msisdn(1);

    // Made on site-1: the service and its number, which site-2's bank holds.
    let service = facade_post(&site1, &admin, "/Services", &[("UniqueName", "orders")]).await;
    let sid = service["sid"].as_str().unwrap().to_string();
    facade_post(
        &site1,
        &admin,
        &format!("/Services/{sid}/PhoneNumbers"),
        &[("PhoneNumber", &proxy2)],
    )
    .await;
    let (status, numbers) =
        facade_get(&site2, &admin, &format!("/Services/{sid}/PhoneNumbers")).await;
    assert_eq!(status, 200, "{numbers}");
    let listed = numbers["phone_numbers"].as_array().expect("phone_numbers");
    assert_eq!(listed.len(), 1, "{numbers}");
    assert_eq!(listed[0]["phone_number"], proxy2.as_str(), "{numbers}");
    // Fetched by unique name through the other API.
    let (status, fetched) = facade_get(&site2, &admin, "/Services/orders").await;
    assert_eq!((status, fetched["sid"].as_str()), (200, Some(sid.as_str())));

    // Made on site-2: a session with its first participant only...
    let sessions = format!("/Services/{sid}/Sessions");
    let session = facade_post(&site2, &admin, &sessions, &[("UniqueName", "order-7")]).await;
    let session_sid = session["sid"].as_str().unwrap().to_string();
    let participants = format!("{sessions}/{session_sid}/Participants");
    let first = facade_post(&site2, &admin, &participants, &[("Identifier", alice)]).await;
    // ...and its second through site-1: the fleet's session opens.
    let second = facade_post(&site1, &admin, &participants, &[("Identifier", bob)]).await;
    assert_eq!(second["proxy_identifier"], proxy2.as_str(), "{second}");
    assert_eq!(first["session_sid"], session_sid.as_str(), "{first}");
    let (status, both) = facade_get(&site2, &admin, &participants).await;
    assert_eq!(status, 200, "{both}");
    assert_eq!(
        both["participants"].as_array().map(Vec::len),
        Some(2),
        "{both}"
    );

    // A message interaction asked for through site-1 goes out on the SIM
    // that site-2 holds.
    let bob_sid = second["sid"].as_str().unwrap();
    let message = facade_post(
        &site1,
        &admin,
        &format!("{participants}/{bob_sid}/MessageInteractions"),
        &[("Body", "your order is on its way")],
    )
    .await;
    let asked = tokio::time::Instant::now();
    let deadline = asked + Duration::from_secs(30);
    loop {
        let got = sim.messages(bob).await;
        if let Some(m) = got.iter().find(|m| m["text"] == "your order is on its way") {
            assert_eq!(m["from"], proxy2.as_str(), "from the proxy: {got:?}");
            // Woken through NOTIFY, not by the idle worker's minute.
            eprintln!(
                "message interaction on another appliance's SIM received after {} ms",
                asked.elapsed().as_millis()
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never relayed: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Alice's reply relays too, and both show in site-1's interactions page.
    sim.handset_sms(alice, &proxy2, "thanks!").await;
    let interactions = format!("{sessions}/{session_sid}/Interactions");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let page = loop {
        let (status, page) =
            facade_get(&site1, &admin, &format!("{interactions}?PageSize=10")).await;
        assert_eq!(status, 200, "{page}");
        let found = page["interactions"].as_array().map_or(0, Vec::len);
        if found == 2
            && sim
                .messages(bob)
                .await
                .iter()
                .any(|m| m["text"] == "thanks!")
        {
            break page;
        }
        assert!(tokio::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let message_sid = message["sid"].as_str().unwrap();
    assert!(
        page["interactions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["sid"] == message_sid),
        "{page}"
    );
    let (status, one) = facade_get(&site2, &admin, &format!("{interactions}/{message_sid}")).await;
    assert_eq!(
        (status, one["sid"].as_str()),
        (200, Some(message_sid)),
        "{one}"
    );

    // Closed through site-2; site-1 sees it closed, and so does the
    // native API.
    let closed = facade_post(
        &site2,
        &admin,
        &format!("{sessions}/{session_sid}"),
        &[("Status", "closed")],
    )
    .await;
    assert_eq!(closed["status"], "closed", "{closed}");
    let (_, seen) = facade_get(&site1, &admin, &format!("{sessions}/order-7")).await;
    assert_eq!(seen["status"], "closed", "{seen}");
    let native = site1.get("/api/v1/sessions?status=open&limit=10").await;
    assert_eq!(
        native["sessions"].as_array().map(Vec::len),
        Some(0),
        "{native}"
    );

    // A pending session made on site-1 expires (its Ttl, no interaction),
    // whichever appliance's sweep sees it first; deleted through site-2.
    let pending = facade_post(
        &site1,
        &admin,
        &sessions,
        &[
            ("Ttl", "1"),
            ("Participants", &format!("{{\"Identifier\": \"{alice}\"}}")),
        ],
    )
    .await;
    let pending_sid = pending["sid"].as_str().unwrap().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, seen) = facade_get(&site2, &admin, &format!("{sessions}/{pending_sid}")).await;
        if seen["status"] == "closed" {
            assert_eq!(seen["closed_reason"], "idle", "{seen}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never expired: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        facade_delete(&site2, &admin, &format!("{sessions}/{pending_sid}")).await,
        204
    );
    let (status, _) = facade_get(&site1, &admin, &format!("{sessions}/{pending_sid}")).await;
    assert_eq!(status, 404);
    // A unique name is the fleet's: taken on site-1, refused on site-2.
    let refused = client()
        .post(format!("{}/twilio/v1/Services", site2.url))
        .basic_auth(ACCOUNT, Some(&admin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("UniqueName=orders")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
}

async fn appliance(url: &str, name: &str) -> simmask::store::Store {
    simmask::store::Store::connect(
        &simmask::store::Location::Postgres(url.into()),
        name,
        Duration::from_secs(30),
    )
    .await
    .unwrap()
}

/// Holds and status callbacks are worked by every appliance's hooks task:
/// each is taken by one at a time, a restart takes back at once only its
/// own leases, and a hold leased by an appliance that died is taken by
/// another once its lease ends. Pending sessions expire once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_and_status_callbacks_are_claimed_once_across_the_fleet() {
    use simmask::store::{TwilioParticipantRow, TwilioService, TwilioSessionRow};
    let pg = Postgres::start();
    let url = pg.database("twilio_claims").await;
    let (site1, site2) = (
        appliance(&url, "site-1").await,
        appliance(&url, "site-2").await,
    );
    let db = Postgres::client(&url).await;
    let now = time::OffsetDateTime::now_utc();
    let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    // Twenty held messages, as the inbound relay leaves them.
    for _ in 0..20 {
        db.execute(
            "WITH i AS (INSERT INTO interactions (proxy_iccid, kind, from_number, status, body, \
             created_ms, updated_ms) VALUES ('8944000000000000001', 'sms', '+447911223344', \
             'held', 'hello', $1, $1) RETURNING id) \
             INSERT INTO twilio_holds (interaction_id, kind, service_sid, next_ms, created_ms) \
             SELECT id, 'out_of_session', 'KS1', $1, $1 FROM i",
            &[&now_ms],
        )
        .await
        .unwrap();
    }
    // Both take at once, many times over: each hold goes to one.
    let mut takers = Vec::new();
    for round in 0..8 {
        let store = if round % 2 == 0 {
            site1.clone()
        } else {
            site2.clone()
        };
        takers.push(tokio::spawn(async move {
            store.twilio_due_holds(now, 60_000, 4).await.unwrap()
        }));
    }
    let mut taken = Vec::new();
    for taker in takers {
        taken.extend(taker.await.unwrap().into_iter().map(|h| h.interaction_id));
    }
    let mut unique = taken.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        taken.len(),
        "a hold handed out twice: {taken:?}"
    );
    let rest = site2.twilio_due_holds(now, 60_000, 100).await.unwrap();
    assert_eq!(taken.len() + rest.len(), 20);
    assert!(
        site1
            .twilio_due_holds(now, 60_000, 100)
            .await
            .unwrap()
            .is_empty()
    );

    // site-1 restarts: it takes back its own leases, not site-2's.
    let site1_leases: i64 = db
        .query_one(
            "SELECT COUNT(*) FROM twilio_holds h JOIN appliances a ON a.id = h.leased_by \
             WHERE a.name = 'site-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    drop(site1);
    let site1 = appliance(&url, "site-1").await;
    let resumed = site1.twilio_holds_resume(now).await.unwrap();
    assert_eq!(resumed as i64, site1_leases);
    let again = site1.twilio_due_holds(now, 60_000, 100).await.unwrap();
    assert_eq!(again.len() as i64, site1_leases);
    // site-1 dies with them leased: site-2 asks once the lease ends.
    let later = now + time::Duration::seconds(61);
    let orphans = site2.twilio_due_holds(later, 60_000, 100).await.unwrap();
    assert_eq!(orphans.len(), 20, "every lease ended");
    assert_eq!(site1.twilio_holds_waiting().await.unwrap(), 20);

    // A status callback queued by one is delivered by whichever takes it.
    let id = site1
        .twilio_queue_callback("http://receiver/status".into(), "a=1".into(), now)
        .await
        .unwrap();
    let due = site2.twilio_due_callbacks(now, 60_000, 10).await.unwrap();
    assert_eq!(due.iter().map(|c| c.id).collect::<Vec<_>>(), [id]);
    assert!(
        site1
            .twilio_due_callbacks(now, 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    site2
        .twilio_callback_retry(id, now + time::Duration::seconds(2))
        .await
        .unwrap();
    // site-1's restart leaves site-2's retry where it is.
    site1.twilio_holds_resume(now).await.unwrap();
    assert!(
        site1
            .twilio_due_callbacks(now, 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = site1
        .twilio_due_callbacks(now + time::Duration::seconds(2), 60_000, 10)
        .await
        .unwrap();
    assert_eq!((retried[0].id, retried[0].attempts), (id, 1));
    site1.twilio_callback_done(id).await.unwrap();

    // A pending session expires once, whichever sweeps.
    let created = now_ms - 5_000;
    site1
        .twilio_create_service(TwilioService {
            sid: "KS1".into(),
            unique_name: None,
            default_ttl: None,
            callback_url: None,
            intercept_callback_url: None,
            out_of_session_callback_url: None,
            number_selection_behavior: "prefer-sticky".into(),
            geo_match_level: "country".into(),
            created_ms: created,
            updated_ms: created,
        })
        .await
        .unwrap();
    for i in 0..10 {
        site2
            .twilio_create_session(
                TwilioSessionRow {
                    sid: format!("KC{i}"),
                    service_sid: "KS1".into(),
                    session_id: None,
                    unique_name: None,
                    ttl: Some(1),
                    expiry_ms: None,
                    mode: "both".into(),
                    closed_ms: None,
                    deleted_ms: None,
                    created_ms: created,
                    updated_ms: created,
                },
                Vec::new(),
                None,
                now,
            )
            .await
            .unwrap();
    }
    let (first, second) = tokio::join!(
        site1.twilio_expire_pending(now),
        site2.twilio_expire_pending(now)
    );
    let mut expired = first.unwrap();
    expired.extend(second.unwrap());
    expired.sort();
    assert_eq!(expired.len(), 10, "each once: {expired:?}");
    expired.dedup();
    assert_eq!(expired.len(), 10);

    // A number erased on request is forgotten as a waiting participant too.
    site1
        .twilio_create_session(
            TwilioSessionRow {
                sid: "KCwaiting".into(),
                service_sid: "KS1".into(),
                session_id: None,
                unique_name: None,
                ttl: None,
                expiry_ms: None,
                mode: "both".into(),
                closed_ms: None,
                deleted_ms: None,
                created_ms: now_ms,
                updated_ms: now_ms,
            },
            vec![TwilioParticipantRow {
                sid: "KPwaiting".into(),
                session_sid: "KCwaiting".into(),
                position: 0,
                identifier: Some("+447911223344".into()),
                friendly_name: None,
                proxy_iccid: None,
                created_ms: now_ms,
                deleted_ms: None,
            }],
            None,
            now,
        )
        .await
        .unwrap();
    let number = simmask::number::PhoneNumber::from_e164("+447911223344").unwrap();
    site2
        .erase_participant(number, "test".into(), now)
        .await
        .unwrap();
    let left: i64 = db
        .query_one(
            "SELECT COUNT(*) FROM twilio_participants WHERE identifier = '+447911223344'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let kept = site1.twilio_participants("KCwaiting".into()).await.unwrap();
    assert_eq!((kept.len(), kept[0].identifier.clone()), (1, None));
    // Data minimisation forgets the number of one that closed waiting.
    site1
        .twilio_create_session(
            TwilioSessionRow {
                sid: "KCclosed".into(),
                service_sid: "KS1".into(),
                session_id: None,
                unique_name: None,
                ttl: None,
                expiry_ms: None,
                mode: "both".into(),
                closed_ms: Some(now_ms),
                deleted_ms: None,
                created_ms: now_ms,
                updated_ms: now_ms,
            },
            vec![TwilioParticipantRow {
                sid: "KPclosed".into(),
                session_sid: "KCclosed".into(),
                identifier: Some("+447911998877".into()),
                ..kept[0].clone()
            }],
            None,
            now,
        )
        .await
        .unwrap();
    site2
        .forget_numbers_older_than(now + time::Duration::days(1))
        .await
        .unwrap();
    let kept = site1.twilio_participants("KCclosed".into()).await.unwrap();
    assert_eq!(kept[0].identifier, None);
}
