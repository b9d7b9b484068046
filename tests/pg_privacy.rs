//! Privacy on a fleet's database, against a real PostgreSQL started by the
//! test: `simmask erase` removes a person from every table (bodies, the
//! number, the rails' lists, the audit trail's text), closes their open
//! sessions and cancels what was queued for them; retention forgets the
//! numbers of sessions ended before its cutoff and the auto-reply ledger's
//! strangers a day after it. The same rows go as on SQLite.

mod pg_common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use pg_common::Postgres;
use serde_json::Value;
use simmask::masking::Mode;
use simmask::masking::allocation::PoolLimits;
use simmask::masking::lifecycle::{CloseReason, SessionStatus};
use simmask::masking::policy::OutOfSessionPolicy;
use simmask::number::PhoneNumber;
use simmask::sms::accept::{InboundOutcome, InboundPart, accept_inbound};
use simmask::sms::rails::Rules;
use simmask::store::{LiveSim, Location, NewOutbound, NewSession, SessionFilter, Store};
use time::OffsetDateTime;

const TIMEOUT: StdDuration = StdDuration::from_secs(30);
const A: &str = "+447911000001";
const B: &str = "+447911000002";
const X: &str = "+447911000077";
const PROXY: &str = "8944000000000000001";

fn number(n: &str) -> PhoneNumber {
    PhoneNumber::from_e164(n).unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn digits(n: &str) -> String {
    n.trim_start_matches('+').to_string()
}

/// `number`'s digits as TP-address semi-octets in hex, the way a stored
/// PDU carries them (3GPP TS 23.040 §9.1.2.3: swapped nibbles, `F` pad).
fn semi_octets(number: &str) -> String {
    let mut digits: Vec<char> = digits(number).chars().collect();
    if digits.len() % 2 == 1 {
        digits.push('F');
    }
    digits
        .chunks(2)
        .flat_map(|pair| [pair[1], pair[0]])
        .collect()
}

/// A received PDU from `from` (its sender address in it), unique by `tag`.
fn pdu(from: &str, tag: &str) -> String {
    format!("0791447000000000040C91{}0000{tag}", semi_octets(from))
}

fn part(from: &str, pdu: String, text: &str) -> InboundPart {
    InboundPart {
        proxy_iccid: PROXY.into(),
        sender: number(from),
        location: Some(("SM".into(), 3)),
        pdu_hex: pdu,
        concat: None,
        text: text.into(),
    }
}

fn new_session(a: &str, b: &str) -> NewSession {
    NewSession {
        participants: [number(a), number(b)],
        mode: Mode::Both,
        ttl: None,
        idle_ttl: None,
        label: None,
        sticky: false,
        actor: "test".into(),
        fallback_number: None,
        proxy: None,
        limits: PoolLimits::default(),
    }
}

fn live() -> Vec<LiveSim> {
    vec![LiveSim {
        iccid: PROXY.into(),
        healthy: true,
        signal_dbm: Some(-70),
        voice_capable: true,
    }]
}

/// A store on a fresh database of `pg` holding one proxy SIM, with A and B
/// in a session on it and one message queued each way.
async fn store_with_traffic(url: &str) -> (Store, String) {
    let store = Store::connect(&Location::Postgres(url.into()), "site-1", TIMEOUT)
        .await
        .unwrap();
    store
        .upsert_sim(
            PROXY.into(),
            number("+447000000001"),
            "imsi".into(),
            None,
            now(),
        )
        .await
        .unwrap();
    let session = store
        .open_session(new_session(A, B), live(), now())
        .await
        .unwrap()
        .id;
    for (position, to) in [(0, B), (1, A)] {
        let new = NewOutbound {
            session_id: Some(session.clone()),
            proxy_iccid: PROXY.into(),
            from_position: Some(position),
            to: number(to),
            body: format!("secret {position}"),
        };
        store.queue_sms(new, now()).await.unwrap();
    }
    (store, session)
}

/// Every row of every table of the database at `url`, as text.
async fn all_rows(url: &str) -> Vec<String> {
    let client = Postgres::client(url).await;
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut rows = Vec::new();
    for table in tables {
        for row in client
            .query(&format!("SELECT t::text FROM \"{table}\" t"), &[])
            .await
            .unwrap()
        {
            rows.push(format!("{table}: {}", row.get::<_, String>(0)));
        }
    }
    rows
}

/// The rows of `url` that contain `needle` (case-insensitive).
async fn holding(url: &str, needle: &str) -> Vec<String> {
    let needle = needle.to_lowercase();
    all_rows(url)
        .await
        .into_iter()
        .filter(|row| row.to_lowercase().contains(&needle))
        .collect()
}

/// A configuration for the CLI on the fleet's database.
fn fleet_config(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("simmask.toml");
    std::fs::write(
        &path,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n\
             [modems]\nports = [\"{}/tty*\"]\n[numbers]\ndefault_region = \"GB\"\n\
             [appliance]\nname = \"site-1\"\n",
            dir.display()
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simmask_erase_removes_a_person_from_the_fleets_database() {
    let pg = Postgres::start();
    let url = pg.database("erase").await;
    let (store, session) = store_with_traffic(&url).await;
    let rules = Arc::new(Rules::default());
    // A writes to B and B answers; a stranger writes and is dropped.
    for (from, tag, text) in [
        (A, "01", "confidential from A"),
        (B, "02", "confidential from B"),
        (X, "03", "confidential too"),
    ] {
        accept_inbound(
            &store,
            part(from, pdu(from, tag), text),
            rules.clone(),
            now(),
        )
        .await
        .unwrap();
    }
    // A is on the block list and the audit trail names A in free text.
    store
        .block_number(number(A), "spam".into(), "test".into(), now())
        .await
        .unwrap();
    store
        .record_action(
            "test".into(),
            "note",
            format!("about {A}"),
            format!("called {A} back"),
            now(),
        )
        .await
        .unwrap();
    for needle in [digits(A), semi_octets(A), digits(X), "confidential".into()] {
        assert!(
            !holding(&url, &needle).await.is_empty(),
            "{needle} is stored first"
        );
    }

    // The person's request, through the CLI on the fleet's configuration.
    let dir = tempfile::tempdir().unwrap();
    let config = fleet_config(dir.path(), &url);
    let output = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args(["erase", A, "--config"])
        .arg(&config)
        .output()
        .expect("simmask erase");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let erased: Value = serde_json::from_slice(&output.stdout).expect("erase JSON");
    let counts = &erased["erased"];
    assert_eq!(counts["sessions_closed"], 1, "{erased}");
    assert_eq!(counts["participants"], 1, "{erased}");
    assert_eq!(counts["outbox"], 4, "{erased}");
    assert_eq!(counts["interactions"], 4, "{erased}");
    assert!(
        counts["opt_outs_blocks_and_recipients"].as_u64().unwrap() >= 1,
        "{erased}"
    );
    assert!(counts["audit"].as_u64().unwrap() >= 1, "{erased}");
    assert!(!stderr.contains(&digits(A)), "{stderr}");
    // The stranger asks too, through the store.
    let stranger = store
        .erase_participant(number(X), "test".into(), now())
        .await
        .unwrap();
    assert_eq!((stranger.inbound_parts, stranger.interactions), (1, 1));

    for needle in [
        digits(A),
        semi_octets(A),
        digits(X),
        semi_octets(X),
        "confidential".into(),
        "secret".into(),
    ] {
        assert_eq!(
            holding(&url, &needle).await,
            Vec::<String>::new(),
            "{needle}"
        );
    }
    // B and the records stay; the trail says a number was erased, not which.
    assert!(!holding(&url, &digits(B)).await.is_empty());
    let trail = store.audit_trail(10).await.unwrap();
    let erasures: Vec<_> = trail
        .iter()
        .filter(|line| line.action == "participant.erase")
        .collect();
    assert_eq!(erasures.len(), 2, "{trail:?}");
    assert_eq!(erasures[1].actor, "cli");
    assert_eq!(erasures[1].object, "+*********001");
    assert_eq!(store.interactions(session.clone()).await.unwrap().len(), 4);
    let record = store.session(session.clone()).await.unwrap();
    assert_eq!(record.status, SessionStatus::Closed);
    assert_eq!(record.close_reason, Some(CloseReason::Erased));
    assert_eq!(record.participants, [None, Some(number(B))]);
    // What was queued is not sent any more.
    assert_eq!(
        store.claim_next_due(PROXY.into(), now()).await.unwrap(),
        None
    );
    assert!(
        store
            .interactions(session)
            .await
            .unwrap()
            .iter()
            .all(|i| i.status != "queued")
    );
    // The block list forgot A too.
    assert!(!store.is_blocked(number(A)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_forgets_numbers_and_strangers_on_the_fleets_database() {
    let pg = Postgres::start();
    let url = pg.database("retention").await;
    let (store, session) = store_with_traffic(&url).await;
    let relayed = accept_inbound(
        &store,
        part(A, pdu(A, "01"), "hello"),
        Arc::new(Rules::default()),
        now(),
    )
    .await
    .unwrap();
    assert!(
        matches!(relayed, InboundOutcome::Relayed { .. }),
        "{relayed:?}"
    );
    while let Some(item) = store.claim_next_due(PROXY.into(), now()).await.unwrap() {
        store.mark_sent(item.id, vec![1], now()).await.unwrap();
    }
    // Still open: nothing is forgotten, however late the cutoff.
    let later = now() + time::Duration::days(30);
    assert_eq!(store.forget_numbers_older_than(later).await.unwrap(), 0);
    assert!(!holding(&url, &digits(A)).await.is_empty());

    let closed_at = now();
    store
        .close_session(session.clone(), "test".into(), closed_at)
        .await
        .unwrap();
    // Ended after the cutoff: kept.
    let before = closed_at - time::Duration::minutes(1);
    assert_eq!(store.forget_numbers_older_than(before).await.unwrap(), 0);
    assert!(!holding(&url, &digits(B)).await.is_empty());
    // Ended before it: both numbers go, the records stay.
    assert_eq!(store.forget_numbers_older_than(later).await.unwrap(), 2);
    for needle in [digits(A), digits(B), semi_octets(A)] {
        assert_eq!(
            holding(&url, &needle).await,
            Vec::<String>::new(),
            "{needle}"
        );
    }
    let record = store.session(session.clone()).await.unwrap();
    assert_eq!(record.participants, [None, None]);
    assert_eq!(store.interactions(session).await.unwrap().len(), 3);
    assert_eq!(store.forget_numbers_older_than(later).await.unwrap(), 0);

    // The auto-reply ledger remembers a stranger for a day past the cutoff.
    let auto = Arc::new(Rules::with_policy(OutOfSessionPolicy::AutoReply {
        text: "No conversation here.".into(),
    }));
    let at = now();
    let replied = accept_inbound(&store, part(X, pdu(X, "09"), "who?"), auto, at)
        .await
        .unwrap();
    assert!(
        matches!(replied, InboundOutcome::AutoReplied { .. }),
        "{replied:?}"
    );
    let ledger = || async {
        holding(&url, &digits(X))
            .await
            .into_iter()
            .filter(|row| row.starts_with("auto_replies"))
            .count()
    };
    assert_eq!(ledger().await, 1);
    store
        .erase_bodies_older_than(at + time::Duration::hours(23))
        .await
        .unwrap();
    assert_eq!(ledger().await, 1);
    store
        .erase_bodies_older_than(at + time::Duration::hours(25))
        .await
        .unwrap();
    assert_eq!(ledger().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_and_an_opening_on_another_appliance_never_leave_an_erased_open_session() {
    let pg = Postgres::start();
    let url = pg.database("race").await;
    let (site1, _session) = store_with_traffic(&url).await;
    let site2 = Store::connect(&Location::Postgres(url.clone()), "site-2", TIMEOUT)
        .await
        .unwrap();
    for round in 0..20 {
        let other = format!("+4479110020{round:02}");
        let (erased, opened) = tokio::join!(
            site1.erase_participant(number(A), "test".into(), now()),
            site2.open_session(new_session(A, &other), live(), now())
        );
        erased.unwrap();
        // Refused only by the masking rule (A still open from a round
        // whose opening came after its erasure).
        if let Err(error) = opened {
            let text = error.to_string();
            assert!(
                text.contains("already carry an open session") || text.contains("masking"),
                "{text}"
            );
        }
        let open = site2
            .sessions(SessionFilter {
                status: Some(SessionStatus::Open),
                label: None,
                participant: None,
                limit: 100,
                offset: 0,
            })
            .await
            .unwrap();
        for session in open {
            assert!(
                session.participants.iter().all(Option::is_some),
                "round {round}: an open session with an erased participant: {session:?}"
            );
        }
    }
}
