//! The inbound relay's transaction on a real PostgreSQL (started by the
//! test): the relay's one copy of the rules (`sms::accept`) over the fleet's
//! database: a part read twice is recognised, the parts of a concatenated
//! message meet in call order whatever their arrival, the reassembly sweep
//! relays what waited too long once, STOP and START, the auto-reply's
//! limit, a claim in the same transaction, a failed transaction leaves
//! nothing, the database away is an outage the caller sees, and each
//! relay keeps its SMSC time, which loop protection goes by (a backlog
//! read at once is no loop; machines answering each other are).

mod pg_common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use pg_common::Postgres;
use simmask::masking::Mode;
use simmask::masking::allocation::PoolLimits;
use simmask::masking::lifecycle::{CloseReason, SessionStatus};
use simmask::masking::policy::OutOfSessionPolicy;
use simmask::number::PhoneNumber;
use simmask::pdu::{Address, Concat, Timestamp, encode_deliver};
use simmask::sms::accept::{InboundOutcome, InboundPart, accept_inbound, sweep_incomplete};
use simmask::sms::intake::{Intake, intake};
use simmask::sms::rails::Rules;
use simmask::store::{LiveSim, Location, NewSession, Store, StoreError};
use time::{Duration, OffsetDateTime};

const TIMEOUT: StdDuration = StdDuration::from_secs(30);
const A: &str = "+447911000001";
const B: &str = "+447911000002";
const X: &str = "+447911000009";
const PROXY: &str = "8944000000000000001";

fn number(n: &str) -> PhoneNumber {
    PhoneNumber::from_e164(n).unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn part(from: &str, pdu: &str, concat: Option<(u16, u8, u8)>, text: &str) -> InboundPart {
    InboundPart {
        proxy_iccid: PROXY.into(),
        sender: number(from),
        location: Some(("SM".into(), 3)),
        pdu_hex: pdu.into(),
        concat: concat.map(|(reference, total, sequence)| Concat {
            reference,
            total,
            sequence,
        }),
        text: text.into(),
    }
}

fn reject() -> Arc<Rules> {
    Arc::new(Rules::default())
}

/// A store on a fresh database of `pg` holding one proxy SIM, with A and B
/// in a session on it.
async fn store_with_session(pg: &Postgres, db: &str) -> (Store, String) {
    let url = pg.database(db).await;
    let store = Store::connect(&Location::Postgres(url), "site-1", TIMEOUT)
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
        .open_session(
            NewSession {
                participants: [number(A), number(B)],
                mode: Mode::Both,
                ttl: None,
                idle_ttl: None,
                label: None,
                sticky: false,
                actor: "test".into(),
                fallback_number: None,
                proxy: None,
                limits: PoolLimits::default(),
            },
            vec![LiveSim {
                iccid: PROXY.into(),
                healthy: true,
                signal_dbm: Some(-70),
                voice_capable: true,
            }],
            now(),
        )
        .await
        .unwrap();
    (store, session.id)
}

/// What is queued for the proxy, claimed in order.
async fn queued(store: &Store) -> Vec<(String, String)> {
    queued_at(store, now()).await
}

/// What is due for the proxy at `at`, claimed in order.
async fn queued_at(store: &Store, at: OffsetDateTime) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(item) = store.claim_next_due(PROXY.into(), at).await.unwrap() {
        out.push((item.to_number, item.body));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relays_rules_run_on_postgresql() {
    let pg = Postgres::start();
    let (store, session) = store_with_session(&pg, "rules").await;

    // Relayed once though read twice.
    let first = accept_inbound(&store, part(A, "01AA", None, "hi"), reject(), now())
        .await
        .unwrap();
    assert!(matches!(first, InboundOutcome::Relayed { .. }), "{first:?}");
    let again = accept_inbound(&store, part(A, "01AA", None, "hi"), reject(), now())
        .await
        .unwrap();
    assert_eq!(again, InboundOutcome::Duplicate);
    assert_eq!(queued(&store).await, [(B.to_string(), "hi".to_string())]);

    // Three parts out of order make one message, in order.
    let outcome = accept_inbound(
        &store,
        part(B, "03", Some((9, 3, 3)), "baz"),
        reject(),
        now(),
    )
    .await
    .unwrap();
    assert_eq!(outcome, InboundOutcome::Waiting { missing: 2 });
    accept_inbound(
        &store,
        part(B, "01", Some((9, 3, 1)), "foo"),
        reject(),
        now(),
    )
    .await
    .unwrap();
    let last = accept_inbound(
        &store,
        part(B, "02", Some((9, 3, 2)), "bar"),
        reject(),
        now(),
    )
    .await
    .unwrap();
    assert!(matches!(last, InboundOutcome::Relayed { .. }), "{last:?}");
    assert_eq!(
        queued(&store).await,
        [(A.to_string(), "foobarbaz".to_string())]
    );
    let interactions = store.interactions(session.clone()).await.unwrap();
    let joined = interactions
        .iter()
        .find(|i| i.body.as_deref() == Some("foobarbaz"))
        .expect("the joined message");
    assert_eq!((joined.parts, joined.from_position), (3, Some(1)));

    // A message missing a part waits; the sweep relays it once, marked
    // incomplete.
    for (pdu, sequence, text) in [("21", 1, "one "), ("23", 3, "three")] {
        let outcome = accept_inbound(
            &store,
            part(A, pdu, Some((4, 3, sequence)), text),
            reject(),
            now(),
        )
        .await
        .unwrap();
        assert!(
            matches!(outcome, InboundOutcome::Waiting { .. }),
            "{outcome:?}"
        );
    }
    let later = now() + time::Duration::minutes(10);
    let cutoff = later - time::Duration::minutes(5);
    let swept = sweep_incomplete(&store, cutoff, reject(), later)
        .await
        .unwrap();
    assert_eq!(swept.len(), 1, "{swept:?}");
    assert!(
        sweep_incomplete(&store, cutoff, reject(), later)
            .await
            .unwrap()
            .is_empty()
    );
    let out = queued_at(&store, later).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, B);
    assert!(
        out[0].1.contains("one") && out[0].1.contains("three"),
        "{out:?}"
    );

    // A stranger: dropped under the default policy; with an auto-reply,
    // one reply per day.
    let dropped = accept_inbound(&store, part(X, "30", None, "hello?"), reject(), now())
        .await
        .unwrap();
    assert!(
        matches!(dropped, InboundOutcome::Dropped { .. }),
        "{dropped:?}"
    );
    let auto = Arc::new(Rules::with_policy(OutOfSessionPolicy::AutoReply {
        text: "closed".into(),
    }));
    let replied = accept_inbound(&store, part(X, "31", None, "hi"), auto.clone(), now())
        .await
        .unwrap();
    assert!(
        matches!(replied, InboundOutcome::AutoReplied { .. }),
        "{replied:?}"
    );
    let twice = accept_inbound(&store, part(X, "32", None, "hi"), auto, now())
        .await
        .unwrap();
    assert!(matches!(twice, InboundOutcome::Dropped { .. }), "{twice:?}");
    assert_eq!(
        queued(&store).await,
        [(X.to_string(), "closed".to_string())]
    );

    // STOP ends B's sessions and confirms once; START lifts it.
    let rules = reject();
    let stop = accept_inbound(&store, part(B, "40", None, "STOP"), rules.clone(), now())
        .await
        .unwrap();
    let InboundOutcome::OptedOut {
        sessions_closed,
        confirmed,
        ..
    } = stop
    else {
        panic!("{stop:?}");
    };
    assert_eq!((sessions_closed, confirmed), (vec![session.clone()], true));
    let closed = store.session(session.clone()).await.unwrap();
    assert_eq!(closed.status, SessionStatus::Closed);
    assert_eq!(closed.close_reason, Some(CloseReason::OptOut));
    assert_eq!(
        queued(&store).await,
        [(B.to_string(), rules.opt_out.stop_reply.clone())]
    );
    let again = accept_inbound(&store, part(B, "41", None, "stop"), rules.clone(), now())
        .await
        .unwrap();
    assert!(
        matches!(
            again,
            InboundOutcome::OptedOut {
                confirmed: false,
                ..
            }
        ),
        "{again:?}"
    );
    assert!(store.is_opted_out(number(B)).await.unwrap());
    let start = accept_inbound(&store, part(B, "42", None, "START"), rules.clone(), now())
        .await
        .unwrap();
    assert!(matches!(start, InboundOutcome::OptedIn { .. }), "{start:?}");
    assert_eq!(
        queued(&store).await,
        [(B.to_string(), rules.opt_out.start_reply.clone())]
    );
    assert!(!store.is_opted_out(number(B)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_queued_together_meet_in_call_order_and_a_failure_leaves_nothing() {
    let pg = Postgres::start();
    let (store, _session) = store_with_session(&pg, "ordering").await;

    // Twenty messages of three parts each, every part queued before any is
    // awaited: each message is relayed exactly once, whole.
    let mut pending = Vec::new();
    for message in 0..20u16 {
        for sequence in [2u8, 1, 3] {
            pending.push(accept_inbound(
                &store,
                part(
                    A,
                    &format!("{message:04X}{sequence:02X}"),
                    Some((message, 3, sequence)),
                    &format!("m{message}p{sequence} "),
                ),
                reject(),
                now(),
            ));
        }
    }
    let started = std::time::Instant::now();
    let mut relayed = 0;
    let outcomes = futures::future::join_all(pending).await;
    // A figure for the notes, not a check: the machine's load decides it.
    println!(
        "60 parts accepted on PostgreSQL in {:?} (one transaction each, in call order)",
        started.elapsed()
    );
    for outcome in outcomes {
        if matches!(outcome.unwrap(), InboundOutcome::Relayed { .. }) {
            relayed += 1;
        }
    }
    assert_eq!(relayed, 20);
    let out = queued(&store).await;
    assert_eq!(out.len(), 20);
    for message in 0..20 {
        let whole = format!("m{message}p1 m{message}p2 m{message}p3 ");
        assert!(
            out.iter().any(|(_, body)| *body == whole),
            "{whole}: {out:?}"
        );
    }

    // A transaction that fails half-way leaves nothing behind: the same
    // part is new afterwards.
    let kept = part(A, "EE", None, "kept?");
    let failed = store
        .inbound_durable(move |tx| {
            tx.keep_part(
                &simmask::store::ReceivedPart {
                    proxy_iccid: kept.proxy_iccid.clone(),
                    sender: kept.sender.clone(),
                    location: kept.location.clone(),
                    pdu_hex: kept.pdu_hex.clone(),
                    concat: None,
                    text: kept.text.clone(),
                },
                now(),
            )?;
            Err::<(), _>(StoreError::Corrupt("given up on purpose".into()))
        })
        .await;
    assert!(matches!(failed, Err(StoreError::Corrupt(_))), "{failed:?}");
    let outcome = accept_inbound(&store, part(A, "EE", None, "kept?"), reject(), now())
        .await
        .unwrap();
    assert!(
        matches!(outcome, InboundOutcome::Relayed { .. }),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_away_is_an_outage_and_the_part_is_stored_once_back() {
    let pg = Postgres::start();
    let (store, _session) = store_with_session(&pg, "away").await;
    pg.stop();
    let refused = accept_inbound(&store, part(A, "50", None, "wait"), reject(), now()).await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{refused:?}"
    );
    pg.start_again();
    // The pool's connections died with the server: the next transaction
    // takes a new one (within a few tries while the server warms up).
    let mut outcome = None;
    for _ in 0..50 {
        match accept_inbound(&store, part(A, "50", None, "wait"), reject(), now()).await {
            Ok(done) => {
                outcome = Some(done);
                break;
            }
            Err(StoreError::Unavailable(_)) => {
                tokio::time::sleep(StdDuration::from_millis(200)).await;
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(
        matches!(outcome, Some(InboundOutcome::Relayed { .. })),
        "{outcome:?}"
    );
    assert_eq!(queued(&store).await, [(B.to_string(), "wait".to_string())]);
}

/// Waits until some transaction on `url` waits for a lock (the inbound
/// worker's, in the test below).
async fn until_a_lock_is_awaited(raw: &tokio_postgres::Client, kind: &str) {
    for _ in 0..300 {
        let waiting: i64 = raw
            .query_one(
                "SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND locktype = $1",
                &[&kind],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    panic!("nothing waits for a {kind} lock: the inbound transaction did not take it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_and_a_message_of_the_same_person_never_cross() {
    let pg = Postgres::start();
    let (store, _session) = store_with_session(&pg, "erasing").await;
    let url = pg.url("erasing");
    let watch = Postgres::client(&url).await;

    // An erasure of A holds A's lock (as `simmask erase` does): A's message
    // waits for it, nothing of it is stored meanwhile.
    let mut erasing = Postgres::client(&url).await;
    let held = erasing.transaction().await.unwrap();
    held.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&A],
    )
    .await
    .unwrap();
    let relay = tokio::spawn({
        let store = store.clone();
        async move { accept_inbound(&store, part(A, "0E", None, "secret"), reject(), now()).await }
    });
    until_a_lock_is_awaited(&watch, "advisory").await;
    let stored: i64 = watch
        .query_one(
            "SELECT COUNT(*) FROM inbound_parts WHERE sender = $1",
            &[&A],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    // The real erasure queues behind the message, which commits first
    // (relayed: the session was open) and is then erased with the rest.
    let erase = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .erase_participant(number(A), "test".into(), now())
                .await
        }
    });
    held.commit().await.unwrap();
    let outcome = relay.await.unwrap().unwrap();
    assert!(
        matches!(outcome, InboundOutcome::Relayed { .. }),
        "{outcome:?}"
    );
    erase.await.unwrap().unwrap();
    for (sql, what) in [
        (
            "SELECT COUNT(*) FROM inbound_parts WHERE sender = $1 OR text = 'secret'",
            "parts",
        ),
        (
            "SELECT COUNT(*) FROM interactions WHERE from_number = $1 OR to_number = $1 \
             OR body = 'secret'",
            "interactions",
        ),
        (
            "SELECT COUNT(*) FROM outbox WHERE to_number = $1 OR body = 'secret'",
            "outbox",
        ),
    ] {
        let left: i64 = watch.query_one(sql, &[&A]).await.unwrap().get(0);
        assert_eq!(left, 0, "{what} still name A or hold the message");
    }
    assert!(queued(&store).await.is_empty());

    // The other side: B's message in a session whose other participant is
    // being erased. The erasure ends the session first (its row locked):
    // the message waits, then finds the session ended and is not relayed
    // to the erased person.
    let session = store
        .open_session(
            NewSession {
                participants: [number(B), number(X)],
                mode: Mode::Both,
                ttl: None,
                idle_ttl: None,
                label: None,
                sticky: false,
                actor: "test".into(),
                fallback_number: None,
                proxy: None,
                limits: PoolLimits::default(),
            },
            vec![LiveSim {
                iccid: PROXY.into(),
                healthy: true,
                signal_dbm: Some(-70),
                voice_capable: true,
            }],
            now(),
        )
        .await
        .unwrap()
        .id;
    let held = erasing.transaction().await.unwrap();
    held.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&X],
    )
    .await
    .unwrap();
    held.execute(
        "UPDATE sessions SET status = 'closed', close_reason = 'erased', ended_ms = 1 \
         WHERE id = $1",
        &[&session],
    )
    .await
    .unwrap();
    held.execute(
        "UPDATE participants SET open = FALSE WHERE session_id = $1",
        &[&session],
    )
    .await
    .unwrap();
    let relay = tokio::spawn({
        let store = store.clone();
        async move { accept_inbound(&store, part(B, "0F", None, "for X"), reject(), now()).await }
    });
    until_a_lock_is_awaited(&watch, "transactionid").await;
    held.commit().await.unwrap();
    let outcome = relay.await.unwrap().unwrap();
    assert!(
        !matches!(outcome, InboundOutcome::Relayed { .. }),
        "{outcome:?}"
    );
    let to_x: i64 = watch
        .query_one("SELECT COUNT(*) FROM outbox WHERE to_number = $1", &[&X])
        .await
        .unwrap()
        .get(0);
    assert_eq!(to_x, 0, "a message was queued to the person being erased");
}

/// `text` from `from`, stamped `written` by the sender's SMSC, as the
/// modem driver decodes its parts.
fn delivered(from: &str, text: &str, written: OffsetDateTime, reference: u16) -> Vec<InboundPart> {
    let pdus = encode_deliver(
        &Address::international(from.trim_start_matches('+')),
        text,
        Timestamp::from_datetime(written),
        reference,
        None,
    )
    .unwrap();
    pdus.iter()
        .map(|pdu| match intake(PROXY, None, &pdu.hex, None).unwrap() {
            Intake::Part(part) => part,
            other => panic!("{other:?}"),
        })
        .collect()
}

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_keep_their_smsc_time_and_loop_protection_goes_by_it() {
    let pg = Postgres::start();
    let (store, session) = store_with_session(&pg, "sent_times").await;
    let rules = Arc::new(Rules::default());
    let lines = [
        "are you on the train yet",
        "just got on, it's packed",
        "which carriage are you in",
        "the fourth one, near the doors",
        "ok I'm coming through",
        "wait, the doors are closing",
        "made it, see you in a minute",
        "found a seat by the window",
        "I can see you now",
        "waving at you",
        "what a morning",
        "coffee later? my treat",
    ];
    // A replug's backlog: twelve turns written over six minutes (stamped
    // at UTC+1), read within a second.
    let replug = now().replace_nanosecond(0).unwrap();
    let first =
        (replug - Duration::minutes(7)).to_offset(time::UtcOffset::from_hms(1, 0, 0).unwrap());
    for (i, line) in (0_i64..).zip(lines) {
        let from = if i % 2 == 0 { A } else { B };
        let [part] = &delivered(from, line, first + Duration::seconds(30 * i), 0)[..] else {
            panic!("one part");
        };
        let at = replug + Duration::milliseconds(80 * i);
        let outcome = accept_inbound(&store, part.clone(), rules.clone(), at)
            .await
            .unwrap();
        assert!(
            matches!(outcome, InboundOutcome::Relayed { .. }),
            "{i}: {outcome:?}"
        );
    }
    // A long message whose later parts were stamped a second after the
    // first, which arrives last: placed at the first.
    let long = "a long one ".repeat(30);
    let written = replug - Duration::minutes(3);
    let mut parts = delivered(A, &long, written, 9);
    let later = delivered(A, &long, written + Duration::seconds(1), 9);
    parts[1..].clone_from_slice(&later[1..]);
    parts.rotate_left(1);
    for part in parts {
        accept_inbound(&store, part, rules.clone(), replug + Duration::seconds(1))
            .await
            .unwrap();
    }
    let id = session.clone();
    let kept = store
        .inbound(move |tx| tx.recent_messages(&id, replug - Duration::HOUR))
        .await
        .unwrap();
    let sent: Vec<Option<i64>> = kept.iter().map(|m| m.sent_ms).collect();
    let mut expected: Vec<Option<i64>> = (0..12)
        .map(|i| Some(ms(first + Duration::seconds(30 * i))))
        .collect();
    expected.push(Some(ms(written)));
    assert_eq!(sent, expected);
    assert_eq!(kept.last().unwrap().body.as_deref(), Some(long.as_str()));
    let record = store.session(session.clone()).await.unwrap();
    assert_eq!(record.status, SessionStatus::Open);

    // The same lines written a second apart are two machines: stopped.
    let machines = replug + Duration::minutes(10);
    let mut stopped = None;
    for (i, line) in (0_i64..).zip(lines) {
        let from = if i % 2 == 0 { B } else { A };
        let [part] = &delivered(from, line, machines + Duration::seconds(i), 1)[..] else {
            panic!("one part");
        };
        let at = machines + Duration::seconds(i) + Duration::milliseconds(300);
        match accept_inbound(&store, part.clone(), rules.clone(), at)
            .await
            .unwrap()
        {
            InboundOutcome::Relayed { .. } => {}
            InboundOutcome::Blocked {
                rule: "loop",
                stopped_session: Some((id, reason)),
                ..
            } => {
                assert_eq!(id, session);
                stopped = Some((i, reason));
                break;
            }
            other => panic!("{i}: {other:?}"),
        }
    }
    let (at, reason) = stopped.expect("a loop");
    assert_eq!(at, 9, "{reason}");
    assert!(reason.contains("replies back and forth"), "{reason}");
    let record = store.session(session).await.unwrap();
    assert_eq!(record.close_reason, Some(CloseReason::Loop));
}
