//! Hubs on a real PostgreSQL (started by the test), through two
//! appliances' store handles on one database: one hub list for the fleet;
//! a hub holds many sessions on one proxy, each with a code unique (by its
//! keys) among the hub's open sessions there, while its counterparts keep
//! the masking rule; reopening keeps a code unless it was taken, expiry
//! and closing free it; the database itself refuses rows that break the
//! rules; and openers racing on two appliances never break them (a
//! property test).

mod pg_common;

use std::collections::{HashMap, HashSet};

use pg_common::{Postgres, add_sims, connect, healthy, iccid};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use simmask::masking::Mode;
use simmask::masking::allocation::{AllocationError, PoolLimits};
use simmask::masking::hub;
use simmask::masking::lifecycle::{CloseReason, SessionStatus};
use simmask::number::PhoneNumber;
use simmask::store::{NewSession, StoreError};
use time::OffsetDateTime;

const HUB: &str = "+447911000100";

fn number(n: u32) -> PhoneNumber {
    PhoneNumber::from_e164(&format!("+4479110{n:05}")).unwrap()
}

fn hub_number() -> PhoneNumber {
    PhoneNumber::from_e164(HUB).unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn request(a: PhoneNumber, b: PhoneNumber) -> NewSession {
    NewSession {
        participants: [a, b],
        mode: Mode::Sms,
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

fn conflict_code(error: &StoreError) -> Option<&'static str> {
    match error {
        StoreError::Conflict { code, .. } => Some(code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleets_hub_holds_many_sessions_on_one_sim_each_with_its_code() {
    let pg = Postgres::start();
    let url = pg.database("hubs").await;
    let site1 = connect(&url, "site-1").await;
    let site2 = connect(&url, "site-2").await;
    add_sims(&site1, &[1]).await;
    let live = healthy(&[1]);
    let counterparts: Vec<PhoneNumber> = (200..212).map(number).collect();

    // Before it is a hub, a second session on the only SIM is refused.
    site1
        .open_session(
            request(hub_number(), counterparts[0].clone()),
            live.clone(),
            now(),
        )
        .await
        .unwrap();
    let refused = site2
        .open_session(
            request(hub_number(), counterparts[1].clone()),
            live.clone(),
            now(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::Allocation(AllocationError::NoFreeProxy(_))
        ),
        "{refused:?}"
    );

    // Made a hub through site-2: site-1 lists it (one list for the fleet),
    // and its open session got a code.
    let (made, converted) = site2
        .create_hub(hub_number(), Some("dispatch".into()), "test".into(), now())
        .await
        .unwrap();
    assert_eq!(converted.len(), 1);
    let side = converted[0].hub.clone().expect("a code");
    assert_eq!(side.position, 0);
    let listed = site1.hubs().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, made.id);
    assert_eq!(listed[0].number, hub_number());
    assert_eq!(listed[0].label.as_deref(), Some("dispatch"));
    let again = site1
        .create_hub(hub_number(), None, "test".into(), now())
        .await
        .unwrap_err();
    assert_eq!(conflict_code(&again), Some("hub_exists"), "{again:?}");

    // Eleven more, opened through either appliance, on the one SIM.
    let mut codes = vec![side.code];
    for (i, other) in counterparts[1..].iter().enumerate() {
        let store = if i % 2 == 0 { &site1 } else { &site2 };
        let session = store
            .open_session(request(other.clone(), hub_number()), live.clone(), now())
            .await
            .unwrap();
        assert_eq!(session.proxy_iccid, iccid(1));
        let side = session.hub.clone().expect("a hub session");
        assert_eq!(side.position, 1);
        codes.push(side.code);
    }
    let keyed: HashSet<String> = codes.iter().map(|c| hub::keys(c)).collect();
    assert_eq!(keyed.len(), codes.len(), "{codes:?}");
    assert!(codes.iter().all(|c| hub::looks_like_code(c)), "{codes:?}");

    // A counterpart keeps the masking rule; two hubs are never paired, and
    // a number in an open session with a hub cannot become one.
    let busy = site2
        .open_session(
            request(counterparts[3].clone(), hub_number()),
            live.clone(),
            now(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            busy,
            StoreError::Allocation(AllocationError::NoFreeProxy(_))
        ),
        "{busy:?}"
    );
    let paired = site1
        .create_hub(counterparts[3].clone(), None, "test".into(), now())
        .await
        .unwrap_err();
    assert_eq!(conflict_code(&paired), Some("two_hubs"), "{paired:?}");
    let other_hub = number(300);
    site1
        .create_hub(other_hub.clone(), None, "test".into(), now())
        .await
        .unwrap();
    let two = site2
        .open_session(request(other_hub, hub_number()), live.clone(), now())
        .await
        .unwrap_err();
    assert!(
        matches!(two, StoreError::Allocation(AllocationError::TwoHubs)),
        "{two:?}"
    );

    // The conversations on the proxy, from either appliance.
    let (conversations, last) = site2
        .hub_conversations(iccid(1), hub_number())
        .await
        .unwrap();
    assert_eq!((conversations.len(), last), (12, None));
    let mut seen: Vec<String> = conversations.iter().map(|c| c.code.clone()).collect();
    seen.sort();
    let mut expected = codes.clone();
    expected.sort();
    assert_eq!(seen, expected);
    let sessions = site1.hub_sessions().await.unwrap();
    assert_eq!(sessions.len(), 12);
    assert!(sessions.iter().all(|(id, _)| id == &made.id));

    // Removed through site-1: its sessions end (the rule would break
    // otherwise); a second removal is told there is no such hub.
    let (_, ended) = site1
        .remove_hub(made.id.clone(), "test".into(), now())
        .await
        .unwrap();
    assert_eq!(ended.len(), 12);
    assert!(ended.iter().all(
        |s| s.status == SessionStatus::Closed && s.close_reason == Some(CloseReason::Operator)
    ));
    assert_eq!(site2.hubs().await.unwrap().len(), 1, "the other hub stays");
    assert!(matches!(
        site2.remove_hub(made.id, "test".into(), now()).await,
        Err(StoreError::NoSuchHub(_))
    ));
    assert!(site1.hub_sessions().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reopening_expiring_and_the_databases_own_rules() {
    let pg = Postgres::start();
    let url = pg.database("lifecycle").await;
    let site1 = connect(&url, "site-1").await;
    let site2 = connect(&url, "site-2").await;
    add_sims(&site1, &[1]).await;
    let live = healthy(&[1]);
    site1
        .create_hub(hub_number(), None, "test".into(), now())
        .await
        .unwrap();

    // Closed and reopened (through the other appliance): the same code.
    let first = site1
        .open_session(request(number(201), hub_number()), live.clone(), now())
        .await
        .unwrap();
    let code = first.hub.clone().unwrap().code;
    site2
        .close_session(first.id.clone(), "test".into(), now())
        .await
        .unwrap();
    let reopened = site2
        .reopen_session(first.id.clone(), None, None, "test".into(), now())
        .await
        .unwrap();
    assert_eq!(reopened.status, SessionStatus::Open);
    assert_eq!(reopened.hub.clone().unwrap().code, code);

    // Closed again, and its code taken meanwhile by another session of the
    // hub: reopened with a new one, keyed apart.
    site1
        .close_session(first.id.clone(), "test".into(), now())
        .await
        .unwrap();
    let second = site1
        .open_session(request(number(202), hub_number()), live.clone(), now())
        .await
        .unwrap();
    let client = Postgres::client(&url).await;
    client
        .execute(
            "UPDATE participants SET hub_code = $2 WHERE session_id = $1 AND number = $3",
            &[&second.id, &code, &HUB],
        )
        .await
        .unwrap();
    let moved = site2
        .reopen_session(first.id.clone(), None, None, "test".into(), now())
        .await
        .unwrap();
    let new_code = moved.hub.clone().unwrap().code;
    assert_ne!(
        hub::keys(&new_code),
        hub::keys(&code),
        "{new_code} vs {code}"
    );
    // A counterpart keeps the masking rule when a session reopens: 210's
    // closed session with 211 does not, once 210 talks to the hub on the
    // only proxy.
    let plain = site1
        .open_session(request(number(210), number(211)), live.clone(), now())
        .await
        .unwrap();
    site1
        .close_session(plain.id.clone(), "test".into(), now())
        .await
        .unwrap();
    site2
        .open_session(request(number(210), hub_number()), live.clone(), now())
        .await
        .unwrap();
    let busy = site2
        .reopen_session(plain.id.clone(), None, None, "test".into(), now())
        .await
        .unwrap_err();
    assert_eq!(conflict_code(&busy), Some("participant_busy"), "{busy:?}");

    // Expiry frees a session's code and its counterpart.
    let mut short = request(number(205), hub_number());
    short.ttl = Some(time::Duration::seconds(1));
    let short = site2
        .open_session(short, live.clone(), now())
        .await
        .unwrap();
    let expired = site1
        .expire_due(now() + time::Duration::seconds(5))
        .await
        .unwrap();
    assert!(expired.iter().any(|s| s.id == short.id), "{expired:?}");
    let (conversations, _) = site1
        .hub_conversations(iccid(1), hub_number())
        .await
        .unwrap();
    assert!(conversations.iter().all(|c| c.session.id != short.id));
    site2
        .open_session(request(number(205), hub_number()), live.clone(), now())
        .await
        .unwrap();

    // The database refuses what would break the rules, whoever writes it.
    let open = site1
        .open_session(request(number(206), hub_number()), live.clone(), now())
        .await
        .unwrap();
    let taken = open.hub.clone().unwrap().code;
    let insert = |session: &str, position: i16, who: &str, code: Option<&str>| {
        let (session, who, code) = (
            session.to_string(),
            who.to_string(),
            code.map(str::to_string),
        );
        let client = &client;
        async move {
            client
                .execute(
                    "INSERT INTO participants (session_id, position, number, proxy_iccid, open, \
                     hub_code) VALUES ($1, $2, $3, $4, TRUE, $5)",
                    &[&session, &position, &who, &iccid(1), &code],
                )
                .await
        }
    };
    client
        .execute(
            "INSERT INTO sessions (id, proxy_iccid, mode, status, opened_ms, last_activity_ms) \
             VALUES ('ses_raw', $1, 'sms', 'open', 0, 0)",
            &[&iccid(1)],
        )
        .await
        .unwrap();
    // The hub with a code another open session of it has on the proxy,
    // the same keys in another spelling, no code at all.
    for code in [Some(taken.clone()), Some(taken.to_lowercase()), None] {
        let error = insert("ses_raw", 1, HUB, code.as_deref())
            .await
            .unwrap_err();
        let db = error.as_db_error().expect("refused by the database");
        assert!(
            db.constraint() == Some("participants_open_hub_code")
                || db.message().starts_with("hub:"),
            "{code:?}: {db:?}"
        );
    }
    // A code on someone who is not a hub.
    let error = insert("ses_raw", 0, "+447911999999", Some("K7"))
        .await
        .unwrap_err();
    assert!(
        error.as_db_error().unwrap().message().starts_with("hub:"),
        "{error:?}"
    );
    // A counterpart in a second open session on the proxy.
    let error = insert("ses_raw", 0, number(206).e164(), None)
        .await
        .unwrap_err();
    assert_eq!(
        error.as_db_error().unwrap().constraint(),
        Some("participants_open_route")
    );

    // The hub goes: its sessions end, and one reopened is ordinary.
    let hub_id = site2.hubs().await.unwrap()[0].id.clone();
    site2
        .remove_hub(hub_id, "test".into(), now())
        .await
        .unwrap();
    let ordinary = site1
        .reopen_session(open.id.clone(), None, None, "test".into(), now())
        .await
        .unwrap();
    assert_eq!(ordinary.hub, None);
    assert_eq!(ordinary.status, SessionStatus::Open);
}

/// Property: however many openers race on two appliances for one hub and
/// its counterparts, each open session of the hub has a code whose keys no
/// other open session of it on that proxy has, and no counterpart has two
/// open sessions on a proxy.
#[test]
fn racing_hub_openers_on_two_appliances_never_share_a_code() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let pg = Postgres::start();
    let (url, stores) = runtime.block_on(async {
        let url = pg.database("hubprops").await;
        let one = connect(&url, "site-1").await;
        let two = connect(&url, "site-2").await;
        add_sims(&one, &[1, 2]).await;
        add_sims(&two, &[3]).await;
        one.create_hub(hub_number(), None, "prop".into(), now())
            .await
            .unwrap();
        (url, [one, two])
    });
    // Each site sees its own SIMs; both claim SIM 1, where races would show.
    let live = |site: usize| healthy(if site == 0 { &[1, 2] } else { &[1, 3] });
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    });
    let openers = prop::collection::vec((0usize..2, 0u32..6), 2..16);
    runner
        .run(&openers, |openers| {
            let (rows, failures) = runtime.block_on(async {
                let client = Postgres::client(&url).await;
                client
                    .batch_execute("TRUNCATE sessions, participants, audit CASCADE")
                    .await
                    .unwrap();
                let mut tasks = Vec::new();
                for (site, counterpart) in openers {
                    let store = stores[site].clone();
                    let live = live(site);
                    tasks.push(tokio::spawn(async move {
                        store
                            .open_session(request(number(counterpart), hub_number()), live, now())
                            .await
                    }));
                }
                let mut failures = Vec::new();
                for task in tasks {
                    match task.await.unwrap() {
                        Ok(session) => assert!(session.hub.is_some(), "{session:?}"),
                        Err(StoreError::Allocation(AllocationError::NoFreeProxy(_))) => {}
                        Err(other) => failures.push(format!("{other:?}")),
                    }
                }
                let rows: Vec<(String, String, Option<String>)> = client
                    .query(
                        "SELECT p.proxy_iccid, p.number, p.hub_code FROM participants p \
                         JOIN sessions s ON s.id = p.session_id \
                         WHERE p.open AND s.status = 'open'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| (row.get(0), row.get(1), row.get(2)))
                    .collect();
                (rows, failures)
            });
            prop_assert!(failures.is_empty(), "{failures:?}");
            let mut routes: HashMap<(String, String), usize> = HashMap::new();
            let mut keys: HashMap<String, HashSet<String>> = HashMap::new();
            for (proxy, who, code) in rows {
                match code {
                    Some(code) => {
                        prop_assert_eq!(&who, HUB);
                        prop_assert!(
                            keys.entry(proxy.clone())
                                .or_default()
                                .insert(hub::keys(&code)),
                            "two open sessions of the hub on {} keyed {}",
                            proxy,
                            hub::keys(&code)
                        );
                    }
                    None => {
                        let count = routes.entry((proxy, who)).or_default();
                        *count += 1;
                        prop_assert!(*count <= 1, "a counterpart twice on one proxy");
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}
