//! The live feed (`/api/v1/events`) across a restart of the daemon, as
//! processes: `simmask sim` and `simmask run`, the feed read as an
//! `EventSource` reads it. Event ids grow across restarts, and a client
//! resuming with a `Last-Event-ID` from before the restart gets everything
//! the new run has said, after a `lagged` event that says why.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Feed, start_bank};
use serde_json::{Value, json};

const A: &str = "+447911123456";
const B: &str = "+447912345678";
const C: &str = "+447911777888";
const D: &str = "+447911777999";

/// The n-th pair of people who have no session yet.
fn pair(n: u32) -> (String, String) {
    (format!("+44791160{n:04}"), format!("+44791170{n:04}"))
}

/// Opens a session once the restarted daemon's SIM is back (until then
/// the pool answers 409 `no_free_proxy`).
async fn open_when_up(daemon: &Daemon, a: &str, b: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = daemon
            .api(
                reqwest::Method::POST,
                "/api/v1/sessions",
                json!({"participants": [a, b]}),
            )
            .await;
        if status == 201 {
            return body;
        }
        assert!(
            status == 409 && Instant::now() < deadline,
            "{status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn id_of(event: &common::FeedEvent) -> u64 {
    event
        .id
        .as_deref()
        .expect("an id")
        .parse()
        .expect("a numeric id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ids_grow_across_a_restart_and_an_old_last_event_id_replays_the_new_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, mut daemon) = start_bank(dir.path(), 1, "generic", "").await;
    let mut feed = Feed::open(&daemon, None).await;
    let first = daemon.open_session(A, B, json!({})).await;
    let opened = feed.wait_kind("session_opened").await;
    assert_eq!(opened.data["session_id"], first["id"]);
    let before = id_of(&opened);
    assert_eq!(opened.data["id"], before, "the SSE id is the event's");
    drop(feed);

    // Restart: the new run's first events are numbered above every id of
    // the first run, whatever the first run had reached.
    assert!(daemon.process.terminate(), "a clean stop");
    let port = daemon.port();
    daemon = Daemon::start(&daemon.config, port, 1).await;
    let second = open_when_up(&daemon, C, D).await;
    let mut resumed = Feed::open(&daemon, Some(&before.to_string())).await;
    let gap = resumed.wait_kind("lagged").await;
    assert_eq!(gap.data["restarted"], true, "{:?}", gap.data);
    assert!(gap.id.is_none(), "a gap has no id of its own");
    let replayed = resumed.wait_kind("session_opened").await;
    assert_eq!(replayed.data["session_id"], second["id"]);
    let after = id_of(&replayed);
    assert!(after > before, "{after} after {before}");

    // Resuming from an id of this run: exactly what followed, no gap.
    let (e, f) = pair(1);
    let third = daemon.open_session(&e, &f, json!({})).await;
    let mut again = Feed::open(&daemon, Some(&after.to_string())).await;
    let mut next = again
        .next_within(Duration::from_secs(30))
        .await
        .expect("an event");
    assert_eq!(id_of(&next), after + 1, "resumes right after: {next:?}");
    // The modem's own events may come between; never a gap.
    while next.data["session_id"] != third["id"] {
        assert_ne!(next.event, "lagged", "{next:?}");
        let previous = id_of(&next);
        next = again
            .next_within(Duration::from_secs(30))
            .await
            .expect("the third session's event");
        assert_eq!(id_of(&next), previous + 1, "{next:?}");
    }
    assert_eq!(next.event, "session_opened", "{next:?}");

    // And a third run numbers above the second.
    drop((resumed, again));
    assert!(daemon.process.terminate(), "a clean stop");
    daemon = Daemon::start(&daemon.config, port, 1).await;
    let mut feed = Feed::open(&daemon, None).await;
    let (g, h) = pair(2);
    open_when_up(&daemon, &g, &h).await;
    let latest = feed.wait_kind("session_opened").await;
    assert!(id_of(&latest) > id_of(&next));
}
