//! Modem misbehaviour storm (issue 13, "Faults"): five simulated modems,
//! each misbehaving its own way at the same time while traffic flows, as
//! real firmware does:
//!
//! - modem 0: a noisy line (garbage bytes between answers), two answers
//!   dropped, then every answer held back beyond the command timeout for a
//!   while;
//! - modem 1: temporary `+CMS ERROR`s on send (38, 41, 42, 47, 500), each
//!   retried with the designed backoff, then permanent ones (96 from the
//!   network, 21 for a barred recipient), recorded failed with the reason;
//! - modem 2: registration lost (`+CREG: 2` searching, then `3` denied)
//!   and back;
//! - modem 3: firmware that locks up after the `> ` prompt of a send: the
//!   send times out, the health polls go unanswered, `AT+CFUN=1,1` is not
//!   answered either, and the power-cycle hook brings it back;
//! - modem 4: firmware locked up with no power cycle that helps: reset,
//!   power cycle, again, then quarantine (`quarantine_after = 2`), until it
//!   is unplugged and plugged back.
//!
//! Asserted: nothing hangs (every phase has a deadline), every message is
//! delivered exactly once when its fault clears or is recorded failed with
//! its reason when the fault is permanent, and each state is seen on
//! `/api/v1/numbers`, `/api/v1/modems`, `/healthz` and in the dashboard in
//! headless Chromium: no network, resetting, quarantined, recovered. No
//! participant's number reaches the info log.

mod browser_common;
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Daemon, Sim, assert_no_numbers_in, free_port, write_config};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const MODEMS: usize = 5;
const NOISY: usize = 0;
const CMS: usize = 1;
const ROAMER: usize = 2;
const HANGS_MID_SEND: usize = 3;
const HUNG: usize = 4;

fn participant(side: usize, i: usize) -> String {
    format!("+44791{}3{i:05}", side + 1)
}

/// What the API and the dashboard showed of each SIM over the storm.
#[derive(Default, Debug)]
struct Seen {
    /// By ICCID: `state/registration/healthy` as `/api/v1/numbers` said.
    numbers: BTreeMap<String, BTreeSet<String>>,
    /// By ICCID: `state` as `/api/v1/modems` said.
    modems: BTreeMap<String, BTreeSet<String>>,
    /// `/healthz`'s `sims.states` keys and whether `no_network` was > 0.
    healthz_states: BTreeSet<String>,
    healthz_no_network: bool,
    /// By ICCID: the dashboard card's badge, and `no network` when its
    /// text named the registration lost.
    dashboard: BTreeMap<String, BTreeSet<String>>,
}

async fn get(daemon_url: &str, path: &str) -> Option<Value> {
    common::client()
        .get(format!("{daemon_url}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Polls the API until `stop`; every answer is recorded in `seen`.
async fn watch_api(url: String, seen: Arc<Mutex<Seen>>, stop: CancellationToken) {
    loop {
        if let Some(numbers) = get(&url, "/api/v1/numbers").await {
            let mut seen = seen.lock().unwrap();
            for n in numbers.as_array().into_iter().flatten() {
                seen.numbers
                    .entry(n["id"].as_str().unwrap_or_default().to_string())
                    .or_default()
                    .insert(format!(
                        "{}/{}/{}",
                        n["state"].as_str().unwrap_or_default(),
                        n["registration"].as_str().unwrap_or_default(),
                        n["healthy"]
                    ));
            }
        }
        if let Some(modems) = get(&url, "/api/v1/modems").await {
            let mut seen = seen.lock().unwrap();
            for m in modems.as_array().into_iter().flatten() {
                seen.modems
                    .entry(m["sim_id"].as_str().unwrap_or_default().to_string())
                    .or_default()
                    .insert(m["state"].as_str().unwrap_or_default().to_string());
            }
        }
        if let Some(health) = get(&url, "/healthz").await {
            let mut seen = seen.lock().unwrap();
            for (state, count) in health["sims"]["states"].as_object().into_iter().flatten() {
                if count.as_u64().unwrap_or(0) > 0 {
                    seen.healthz_states.insert(state.clone());
                }
            }
            if health["sims"]["no_network"].as_u64().unwrap_or(0) > 0 {
                seen.healthz_no_network = true;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Watches the dashboard's SIM cards until `stop`.
async fn watch_dashboard(
    url: String,
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let browser = browser_common::Browser::start().await;
    browser.sign_in(&url, ADMIN_TOKEN, MODEMS).await;
    let _ = ready.send(());
    loop {
        let cards = browser.cards().await;
        {
            let mut seen = seen.lock().unwrap();
            for (iccid, card) in cards.as_object().into_iter().flatten() {
                let entry = seen.dashboard.entry(iccid.clone()).or_default();
                entry.insert(card["badge"].as_str().unwrap_or_default().to_string());
                let text = card["text"].as_str().unwrap_or_default();
                if !card["healthy"].as_bool().unwrap_or(true)
                    && (text.contains("searching") || text.contains("denied"))
                {
                    entry.insert("no network".into());
                }
                if card["healthy"].as_bool().unwrap_or(false) {
                    entry.insert("healthy".into());
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
    }
    browser.close().await;
}

async fn faults(sim: &Sim, modem: usize, body: Value) {
    let response = sim.post(&format!("/modems/{modem}/faults"), body).await;
    assert!(
        response.status().is_success(),
        "faults of modem {modem}: {}",
        response.text().await.unwrap_or_default()
    );
}

async fn wait_for(what: &str, within: Duration, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !probe().await {
        assert!(Instant::now() < deadline, "{what} (within {within:?})");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The `/api/v1/numbers` entry of SIM `iccid`.
async fn number(daemon: &Daemon, iccid: &str) -> Value {
    let numbers = daemon.get("/api/v1/numbers").await;
    numbers
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["id"] == iccid)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_modems_are_retried_reset_quarantined_and_lose_nothing() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(
        dir.path(),
        MODEMS,
        "generic,simcom-sim800,quectel-ec25,generic,simcom-sim800",
    );
    // The power-cycle hook: a hub port that re-enumerates the modem (a
    // plug through the simulator) after a slow hub's pause, for the modems
    // listed in `revivable`; the others' ports do not come back.
    let revivable = dir.path().join("revivable");
    std::fs::write(&revivable, format!("{HANGS_MID_SEND}\n")).unwrap();
    let cycled = dir.path().join("power-cycled");
    let hook = dir.path().join("power-cycle.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nname=$(basename \"$1\")\ni=${{name#modem}}\necho \"$i\" >> '{cycled}'\n\
             grep -qx \"$i\" '{revivable}' || exit 1\nsleep 3\n\
             exec curl -sf -X POST -H 'content-type: application/json' -d '{{}}' '{control}/modems/'\"$i\"'/plug'\n",
            cycled = cycled.display(),
            revivable = revivable.display(),
            control = sim.control,
        ),
    )
    .unwrap();
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "poll_interval_seconds = 2\n",
        &format!(
            "poll_interval_seconds = 2\nquarantine_after = 2\npower_cycle_command = \"sh {} {{tty}}\"\n",
            hook.display()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("storm.log");
    let daemon = Daemon::start_logged(&config, port, MODEMS, &log, Duration::from_secs(60)).await;
    let iccid: Vec<String> = (0..MODEMS).map(|i| sim.iccid(i)).collect();
    let proxy: Vec<String> = (0..MODEMS).map(|i| sim.msisdn(i)).collect();

    // Sessions until every modem carries two.
    let mut sessions: Vec<Vec<(String, [String; 2])>> = vec![Vec::new(); MODEMS];
    let mut opened = 0;
    while sessions.iter().any(|s| s.len() < 2) {
        assert!(opened < 60, "the pool never spread sessions over every SIM");
        let (a, b) = (participant(0, opened), participant(1, opened));
        opened += 1;
        let session = daemon.open_session(&a, &b, json!({"mode": "sms"})).await;
        let on = proxy
            .iter()
            .position(|p| session["proxy_number"] == p.as_str())
            .expect("a proxy of the bank");
        sessions[on].push((session["id"].as_str().unwrap().to_string(), [a, b]));
    }
    let numbers: Vec<String> = sessions
        .iter()
        .flatten()
        .flat_map(|(_, p)| p.clone())
        .collect();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = CancellationToken::new();
    let api_watch = tokio::spawn(watch_api(daemon.url.clone(), seen.clone(), stop.clone()));
    let (ready, dashboard_ready) = tokio::sync::oneshot::channel();
    let dashboard_watch = tokio::spawn(watch_dashboard(
        daemon.url.clone(),
        seen.clone(),
        stop.clone(),
        ready,
    ));
    dashboard_ready.await.expect("the dashboard signed in");

    // Recipient → texts it must get (through which proxy).
    let mut expected: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut counter = 0usize;
    let mut send = async |modem: usize, session: usize, text: &str| {
        let (_, [a, b]) = &sessions[modem][session];
        counter += 1;
        let text = format!("{text} #{counter}");
        sim.handset_sms(a, &proxy[modem], &text).await;
        expected
            .entry(b.clone())
            .or_default()
            .push((proxy[modem].clone(), text.clone()));
        text
    };

    // Everything goes wrong at once.
    let faults_at = Instant::now();
    faults(
        &sim,
        NOISY,
        json!({"noise": true, "drop_responses": 2, "delay_ms": 2500}),
    )
    .await;
    faults(&sim, ROAMER, json!({"registration": "searching"})).await;
    faults(&sim, HANGS_MID_SEND, json!({"hang_after_prompt": true})).await;
    faults(&sim, HUNG, json!({"hung": true})).await;
    send(HANGS_MID_SEND, 0, "the send that meets the lock-up").await;
    for n in 0..3 {
        send(NOISY, n % 2, "over a noisy, slow line").await;
        send(ROAMER, n % 2, "while the network is gone").await;
        send(HUNG, n % 2, "to a modem that answers nothing").await;
    }

    // Temporary +CMS ERRORs, one submit each: retried after the designed
    // backoff (5 s), each delivered once.
    let mut refused = Vec::new();
    for code in [38, 41, 42, 47, 500] {
        faults(
            &sim,
            CMS,
            json!({"cms_error_on_submit": code, "cms_error_submits": 1}),
        )
        .await;
        let text = send(CMS, 0, &format!("refused once with +CMS ERROR: {code}")).await;
        wait_for(
            &format!("the submit refused with {code}"),
            Duration::from_secs(30),
            async || {
                let faults: Value = common::client()
                    .get(format!("{}/modems/{CMS}/faults", sim.control))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                faults["cms_error_on_submit"].is_null()
            },
        )
        .await;
        refused.push((text, time::OffsetDateTime::now_utc()));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    faults(&sim, ROAMER, json!({"registration": "denied"})).await;
    // Permanent ones: the network refuses the message (96, invalid
    // mandatory information), and a barred recipient (21).
    let (permanent_session, [pa, _]) = sessions[CMS][1].clone();
    faults(
        &sim,
        CMS,
        json!({"cms_error_on_submit": 96, "cms_error_submits": 1}),
    )
    .await;
    sim.handset_sms(&pa, &proxy[CMS], "refused for good with 96")
        .await;
    wait_for(
        "the submit refused with 96",
        Duration::from_secs(30),
        async || {
            let faults: Value = common::client()
                .get(format!("{}/modems/{CMS}/faults", sim.control))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            faults["cms_error_on_submit"].is_null()
        },
    )
    .await;
    let (_, [_, pb]) = &sessions[CMS][1];
    let barred = sim
        .put(&format!("/handsets/{pb}/state"), json!({"barred": true}))
        .await;
    assert!(barred.status().is_success());
    sim.handset_sms(&pa, &proxy[CMS], "to a barred recipient")
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // The network returns; the line's delay ends (the noise stays).
    faults(&sim, ROAMER, json!({"registration": "home"})).await;
    faults(&sim, NOISY, json!({"delay_ms": 0})).await;
    for n in 0..3 {
        send(NOISY, n % 2, "over a noisy line").await;
        send(ROAMER, n % 2, "with the network back").await;
    }

    // The permanent refusals are recorded failed, with their reasons.
    let mut reasons = Vec::new();
    wait_for(
        "both permanent refusals recorded failed",
        Duration::from_secs(60),
        async || {
            let list = daemon
                .get(&format!(
                    "/api/v1/sessions/{permanent_session}/interactions"
                ))
                .await;
            reasons = list
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| i["status"] == "failed")
                .map(|i| i["reason"].as_str().unwrap_or_default().to_string())
                .collect();
            reasons.len() >= 2
        },
    )
    .await;
    reasons.sort();
    assert!(
        reasons.iter().any(|r| r.contains("+CMS ERROR: 21")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("+CMS ERROR: 96")),
        "{reasons:?}"
    );
    let unbarred = sim
        .put(&format!("/handsets/{pb}/state"), json!({"barred": false}))
        .await;
    assert!(unbarred.status().is_success());

    // The locked-up modem that no power cycle revives is quarantined.
    wait_for(
        "the locked-up modem quarantined",
        Duration::from_secs(240),
        async || number(&daemon, &iccid[HUNG]).await["state"] == "quarantined",
    )
    .await;
    let quarantined = number(&daemon, &iccid[HUNG]).await;
    assert_eq!(quarantined["healthy"], false, "{quarantined}");
    assert!(
        quarantined["last_error"].as_str().is_some_and(
            |e| e.contains("quarantined: no answer after 2 reset(s) and power cycle(s)")
        ),
        "{quarantined}"
    );
    let quarantined_after = faults_at.elapsed();
    // It stays so (no polls, no traffic) until someone replugs it; the
    // dashboard has a moment to show it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(number(&daemon, &iccid[HUNG]).await["state"], "quarantined");
    let replug = sim.post(&format!("/modems/{HUNG}/plug"), json!({})).await;
    assert!(replug.status().is_success());

    // Everything recovers: every SIM up and healthy, the noise off.
    faults(&sim, NOISY, json!({"noise": false})).await;
    daemon
        .wait_ready_within(MODEMS, Duration::from_secs(120))
        .await;
    let recovered_after = faults_at.elapsed();
    for n in 0..2 {
        for modem in [HANGS_MID_SEND, HUNG, CMS] {
            send(modem, n, "after recovery").await;
        }
    }

    // Every message delivered exactly once.
    let deadline = Instant::now() + Duration::from_secs(180);
    for (recipient, want) in &expected {
        loop {
            let got = sim.messages(recipient).await.len();
            if got >= want.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{recipient}: {got} of {} messages: {want:?}",
                want.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let all_in = faults_at.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (recipient, want) in &expected {
        let mut got: Vec<(String, String)> = sim
            .messages(recipient)
            .await
            .into_iter()
            .map(|m| {
                (
                    m["from"].as_str().unwrap_or_default().to_string(),
                    m["text"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let mut want = want.clone();
        got.sort();
        want.sort();
        assert_eq!(
            got, want,
            "{recipient}: each message once, through its proxy"
        );
    }
    // Each temporary refusal was retried after the first backoff step
    // (5 s, src/sms/schedule.rs), not at once and not given up.
    let (_, [_, cms_b]) = &sessions[CMS][0];
    let arrived = sim.messages(cms_b).await;
    for (text, refused_at) in &refused {
        let at = arrived
            .iter()
            .find(|m| m["text"] == text.as_str())
            .and_then(|m| m["at"].as_str())
            .unwrap_or_else(|| panic!("{text} never arrived"));
        let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .unwrap();
        let waited = at - *refused_at;
        assert!(
            waited >= time::Duration::milliseconds(4_000) && waited <= time::Duration::seconds(60),
            "{text}: retried {waited} after its refusal"
        );
    }
    // Nothing of the refused messages arrived.
    let (_, [_, pb]) = &sessions[CMS][1];
    assert!(
        sim.messages(pb).await.iter().all(|m| m["text"]
            .as_str()
            .is_some_and(|t| t.contains("after recovery"))),
        "a permanently refused message arrived"
    );

    // Each state was visible.
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.cancel();
    api_watch.await.unwrap();
    dashboard_watch.await.unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!("misbehaviour storm: seen {seen:#?}");
    let numbers_of = |m: usize| seen.numbers.get(&iccid[m]).cloned().unwrap_or_default();
    assert!(
        numbers_of(ROAMER).contains("up/searching/false")
            && numbers_of(ROAMER).contains("up/denied/false"),
        "{:?}",
        numbers_of(ROAMER)
    );
    for m in [HANGS_MID_SEND, HUNG] {
        assert!(
            numbers_of(m).iter().any(|s| s.starts_with("resetting/")),
            "modem {m}: {:?}",
            numbers_of(m)
        );
        assert!(
            seen.modems
                .get(&iccid[m])
                .is_some_and(|s| s.contains("resetting")),
            "modem {m}: {:?}",
            seen.modems
        );
    }
    assert!(
        numbers_of(HUNG)
            .iter()
            .any(|s| s.starts_with("quarantined/"))
    );
    assert!(
        seen.modems
            .get(&iccid[HUNG])
            .is_some_and(|s| s.contains("quarantined"))
    );
    assert!(
        seen.healthz_no_network,
        "/healthz never counted a SIM without network"
    );
    for state in ["resetting", "quarantined", "up"] {
        assert!(
            seen.healthz_states.contains(state),
            "/healthz never counted a SIM {state}: {:?}",
            seen.healthz_states
        );
    }
    let dashboard_of = |m: usize| seen.dashboard.get(&iccid[m]).cloned().unwrap_or_default();
    assert!(
        dashboard_of(ROAMER).contains("no network"),
        "{:?}",
        dashboard_of(ROAMER)
    );
    for m in [HANGS_MID_SEND, HUNG] {
        assert!(
            dashboard_of(m).contains("resetting"),
            "modem {m}: {:?}",
            dashboard_of(m)
        );
    }
    assert!(
        dashboard_of(HUNG).contains("quarantined"),
        "{:?}",
        dashboard_of(HUNG)
    );
    for m in 0..MODEMS {
        assert!(
            dashboard_of(m).contains("healthy"),
            "modem {m}: {:?}",
            dashboard_of(m)
        );
    }
    // And at the end, every SIM recovered on every door.
    let health: Value = common::client()
        .get(format!("{}/healthz", daemon.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["sims"]["healthy"], MODEMS, "{health}");
    for id in &iccid {
        let n = number(&daemon, id).await;
        assert_eq!(n["state"], "up", "{n}");
        assert_eq!(n["healthy"], true, "{n}");
    }

    // The power-cycle hook ran for both locked-up modems, and only for them.
    let cycled = std::fs::read_to_string(&cycled).unwrap_or_default();
    let cycled: BTreeSet<&str> = cycled.lines().collect();
    assert_eq!(
        cycled,
        BTreeSet::from([
            HANGS_MID_SEND.to_string().as_str(),
            HUNG.to_string().as_str()
        ]),
        "power cycles"
    );

    drop(daemon);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_no_numbers_in(&logged, &numbers, "the misbehaviour storm's log");
    let messages: usize = expected.values().map(Vec::len).sum();
    eprintln!(
        "misbehaviour storm: {messages} messages delivered once each and 2 recorded failed; \
         quarantined after {quarantined_after:.0?}, all recovered after {recovered_after:.0?}, \
         all in after {all_in:.0?}, done after {:.0?}",
        started.elapsed()
    );
}
