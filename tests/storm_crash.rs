//! Crash storm (issue 13, "Faults"): 1,000 messages across 8 modems and
//! 200 sessions while the daemon is killed with SIGKILL at random moments
//! ten times (some while it is still starting) and started again.
//!
//! What must hold, whatever the moments: every message arrives exactly as
//! sent (text, multipart and UCS2 included), at the other participant, from
//! the proxy of its session; a proxy carries at most one duplicate per kill
//! (the send that was in flight on it when the daemon died, README "What a
//! crash costs"); the 200 sessions come through open on their proxies, each
//! with one interaction per message carrying its text; the store passes
//! `PRAGMA quick_check`; and the logs of every run, at info level, hold no
//! participant's number.
//!
//! The moments are random but reproducible: the seed is printed, and
//! `STORM_SEED=<n>` replays a run.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::{Daemon, Sim, assert_no_numbers_in, free_port, write_config};
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

const MODEMS: usize = 8;
const SESSIONS: usize = 200;
const MESSAGES: usize = 1000;
const KILLS: usize = 10;

/// Participant `i` on side 0 (A) or 1 (B): distinct UK mobile numbers.
fn participant(side: usize, i: usize) -> String {
    format!("+44791{}1{i:05}", side + 1)
}

/// A text no other message of the storm has: random words (so that loop
/// protection, which compares letters, sees people talking, not a loop),
/// a tag, and now and then a long (multipart) or a UCS2 one.
fn text(rng: &mut StdRng, tag: &str) -> String {
    let mut words: Vec<String> = (0..rng.random_range(3..8))
        .map(|_| {
            (0..rng.random_range(3..9))
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect()
        })
        .collect();
    match rng.random_range(0..20) {
        0 => {
            // Three parts of GSM 7-bit.
            while words.iter().map(|w| w.len() + 1).sum::<usize>() < 400 {
                let again = words.clone();
                words.extend(again);
            }
        }
        1 => words.push("ça va? 👋 Привет".into()),
        _ => {}
    }
    format!("{} #{tag}", words.join(" "))
}

struct Opened {
    id: String,
    proxy: String,
    participants: [String; 2],
}

/// One message of the storm: who sends it on which session.
struct Message {
    session: usize,
    from_side: usize,
    text: String,
}

/// The messages each handset holds, as (from, text).
async fn inboxes(sim: &Sim, numbers: &[String]) -> HashMap<String, Vec<(String, String)>> {
    let mut all = HashMap::new();
    for number in numbers {
        let received = sim
            .messages(number)
            .await
            .into_iter()
            .map(|m| {
                (
                    m["from"].as_str().unwrap_or_default().to_string(),
                    m["text"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        all.insert(number.clone(), received);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_through_ten_kill_9s() {
    let started = Instant::now();
    let seed = std::env::var("STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("crash storm: STORM_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    // STORM_DIR=<dir> keeps the logs and the database for a post-mortem.
    let dir = match std::env::var_os("STORM_DIR") {
        Some(kept) => tempfile::Builder::new()
            .disable_cleanup(true)
            .tempdir_in(kept)
            .unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    eprintln!("crash storm: in {}", dir.path().display());
    let sim = Sim::start(
        dir.path(),
        MODEMS,
        "generic,simcom-sim800,quectel-ec25,huawei-e173",
    );
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let log = dir.path().join("storm.log");
    let ready_within = Duration::from_secs(120);
    let mut daemon = Daemon::start_logged(&config, port, MODEMS, &log, ready_within).await;

    // 200 sessions, 25 on each proxy.
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        let (a, b) = (participant(0, i), participant(1, i));
        // SMS only: the Huawei E173 cannot bridge calls (no multiparty).
        let opened = daemon.open_session(&a, &b, json!({"mode": "sms"})).await;
        sessions.push(Opened {
            id: opened["id"].as_str().unwrap().to_string(),
            proxy: opened["proxy_number"].as_str().unwrap().to_string(),
            participants: [a, b],
        });
    }
    let mut per_proxy: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &sessions {
        *per_proxy.entry(s.proxy.as_str()).or_default() += 1;
    }
    assert_eq!(per_proxy.len(), MODEMS, "every SIM serves: {per_proxy:?}");

    let messages: Vec<Message> = (0..MESSAGES)
        .map(|n| {
            let session = rng.random_range(0..SESSIONS);
            Message {
                session,
                from_side: rng.random_range(0..2),
                text: text(&mut rng, &format!("{session}.{n}")),
            }
        })
        .collect();

    // The handsets send at a steady pace, whatever the daemon is doing.
    let sender = {
        let control = sim.control.clone();
        let plan: Vec<(String, String, String)> = messages
            .iter()
            .map(|m| {
                let s = &sessions[m.session];
                (
                    s.participants[m.from_side].clone(),
                    s.proxy.clone(),
                    m.text.clone(),
                )
            })
            .collect();
        tokio::spawn(async move {
            let client = common::client();
            for (from, proxy, text) in plan {
                let response = client
                    .post(format!("{control}/handsets/{from}/sms"))
                    .json(&json!({"to": proxy, "text": text}))
                    .send()
                    .await
                    .expect("sim control");
                assert!(response.status().is_success());
                tokio::time::sleep(Duration::from_millis(45)).await;
            }
        })
    };

    // Ten kills at random moments: most once the daemon runs, some while
    // it is still finding its modems and reading what they stored.
    let mut during_start_up = 0;
    for kill in 0..KILLS {
        let early = kill > 0 && rng.random_bool(0.3);
        if early {
            during_start_up += 1;
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..2500))).await;
        } else {
            daemon.wait_ready_within(MODEMS, ready_within).await;
            tokio::time::sleep(Duration::from_millis(rng.random_range(500..5000))).await;
        }
        eprintln!(
            "crash storm: kill {} at {:.1?}{}",
            kill + 1,
            started.elapsed(),
            if early { " (starting)" } else { "" }
        );
        daemon.process.signal(Signal::SIGKILL);
        let _ = daemon.process.child.wait();
        daemon = Daemon::spawn_logged(&config, port, &log);
    }
    daemon.wait_ready_within(MODEMS, ready_within).await;
    sender.await.expect("every message handed to the network");
    let sent_by = started.elapsed();

    // Everything arrives.
    let recipients: Vec<String> = sessions
        .iter()
        .flat_map(|s| s.participants.clone())
        .collect();
    let mut expected: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for m in &messages {
        let s = &sessions[m.session];
        expected
            .entry(s.participants[1 - m.from_side].clone())
            .or_default()
            .push((s.proxy.clone(), m.text.clone()));
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut waiting: Vec<String> = expected.keys().cloned().collect();
    while !waiting.is_empty() {
        let now = inboxes(&sim, &waiting).await;
        waiting.retain(|number| now[number].len() < expected[number].len());
        assert!(
            Instant::now() < deadline,
            "{} recipients still waiting (seed {seed}), e.g. {:?}",
            waiting.len(),
            waiting.first().map(|n| (&now[n], &expected[n]))
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let all_in = started.elapsed();
    // Late duplicates have a moment to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received = inboxes(&sim, &recipients).await;

    // Exactly what was sent, from the right proxy; extras only duplicates.
    let mut duplicates: BTreeMap<String, usize> = BTreeMap::new();
    for number in &recipients {
        let mut want: HashMap<&(String, String), usize> = HashMap::new();
        for message in expected.get(number).into_iter().flatten() {
            *want.entry(message).or_default() += 1;
        }
        let mut got: HashMap<&(String, String), usize> = HashMap::new();
        for message in &received[number] {
            *got.entry(message).or_default() += 1;
        }
        for (message, count) in &got {
            let wanted = want.get(message).copied().unwrap_or(0);
            assert!(
                wanted > 0,
                "{number} got a message never sent to it (seed {seed}): {message:?}"
            );
            *duplicates.entry(message.0.clone()).or_default() += count - wanted;
        }
        for (message, count) in &want {
            let got = got.get(message).copied().unwrap_or(0);
            assert!(got >= *count, "lost (seed {seed}): {message:?} to {number}");
        }
    }
    let total_duplicates: usize = duplicates.values().sum();
    for (proxy, count) in &duplicates {
        assert!(
            *count <= KILLS,
            "{count} duplicates through {proxy} after {KILLS} kills (seed {seed})"
        );
    }

    // The sessions are as they were opened, each with its messages.
    for (index, session) in sessions.iter().enumerate() {
        let record = daemon
            .get(&format!("/api/v1/sessions/{}", session.id))
            .await;
        assert_eq!(record["status"], "open", "{record}");
        assert_eq!(record["proxy_number"], session.proxy.as_str(), "{record}");
        assert_eq!(
            record["participants"],
            json!(session.participants),
            "{record}"
        );
        let listed = daemon
            .get(&format!("/api/v1/sessions/{}/interactions", session.id))
            .await;
        let interactions = listed
            .as_array()
            .or_else(|| listed["interactions"].as_array())
            .cloned()
            .unwrap_or_default();
        let mut bodies: Vec<String> = interactions
            .iter()
            .map(|i| {
                assert!(
                    matches!(i["status"].as_str(), Some("sent" | "delivered")),
                    "{i}"
                );
                i["body"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        let mut sent: Vec<String> = messages
            .iter()
            .filter(|m| m.session == index)
            .map(|m| m.text.clone())
            .collect();
        bodies.sort();
        sent.sort();
        assert_eq!(bodies, sent, "session {index} (seed {seed})");
    }

    assert!(daemon.process.terminate(), "a clean exit on SIGTERM");
    drop(daemon);
    let db = rusqlite::Connection::open(dir.path().join("simmask.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.matches("simmask running").count() > KILLS - during_start_up,
        "every run that got going said so"
    );
    assert_no_numbers_in(&logged, &recipients, "the storm's logs");
    let resent = logged
        .lines()
        .filter(|l| l.contains("sending them again"))
        .count();
    eprintln!(
        "crash storm: seed {seed}, {MESSAGES} messages, {KILLS} kills ({during_start_up} during start-up), \
         {total_duplicates} duplicates {duplicates:?}, {resent} restarts resent a send in flight, all sent after {:.0?}, all in after {:.0?}, done after {:.0?}",
        sent_by,
        all_in,
        started.elapsed()
    );
}
