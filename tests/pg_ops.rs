//! The operators' part of the fleet on a real PostgreSQL (started by the
//! test): API tokens and the audit trail are one set for every appliance,
//! and a call bridged by one appliance is recorded where every appliance
//! sees it.

mod pg_common;

use std::time::Duration as StdDuration;

use pg_common::Postgres;
use simmask::masking::Mode;
use simmask::masking::allocation::PoolLimits;
use simmask::number::PhoneNumber;
use simmask::store::{
    CallInteraction, LiveSim, Location, NewSession, NewToken, Role, Store, TokenError, TokenRef,
};
use time::{Duration, OffsetDateTime};

const TIMEOUT: StdDuration = StdDuration::from_secs(30);

async fn connect(url: &str, appliance: &str) -> Store {
    Store::connect(&Location::Postgres(url.into()), appliance, TIMEOUT)
        .await
        .unwrap()
}

fn token(name: &str, hash: &str, role: Role, expires_at: Option<OffsetDateTime>) -> NewToken {
    NewToken {
        name: name.into(),
        role,
        hash: hash.into(),
        expires_at,
        actor: "test".into(),
    }
}

fn number(text: &str) -> PhoneNumber {
    PhoneNumber::from_e164(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_made_on_one_appliance_works_and_dies_on_every_one() {
    let pg = Postgres::start();
    let url = pg.database("tokens").await;
    let site1 = connect(&url, "site-1").await;
    let site2 = connect(&url, "site-2").await;
    let now = OffsetDateTime::now_utc();

    let made = site1
        .add_token(token("ops", "h-ops", Role::Admin, None), now)
        .await
        .unwrap();
    assert_eq!(made.role, Role::Admin);
    // Site 2 knows it, with its role, and marks it used for both.
    assert_eq!(
        site2.token_by_hash("h-ops".into(), now).await.unwrap(),
        Some(("ops".to_string(), Role::Admin))
    );
    assert!(site1.token_is_live("h-ops", now).await.unwrap());
    let listed = site1.tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].last_used_at.map(|t| t.unix_timestamp()),
        Some(now.unix_timestamp())
    );
    // A live name is taken fleet-wide.
    assert!(matches!(
        site2
            .add_token(token("ops", "h-other", Role::Viewer, None), now)
            .await,
        Err(TokenError::NameTaken(name)) if name == "ops"
    ));
    // Unknown hashes are nobody.
    assert_eq!(site2.token_by_hash("nope".into(), now).await.unwrap(), None);

    // Revoked through site 2: refused on site 1 from then on, and the name
    // is free again.
    let revoked = site2
        .revoke_token(TokenRef::NameOrId("ops".into()), "admin-2".into(), now)
        .await
        .unwrap();
    assert_eq!(revoked.id, made.id);
    assert_eq!(revoked.state(now), "revoked");
    assert_eq!(
        site1.token_by_hash("h-ops".into(), now).await.unwrap(),
        None
    );
    assert!(!site1.token_is_live("h-ops", now).await.unwrap());
    assert!(matches!(
        site1
            .revoke_token(TokenRef::Id(made.id), "admin-1".into(), now)
            .await,
        Err(TokenError::NotFound(_))
    ));
    let again = site1
        .add_token(token("ops", "h-ops-2", Role::Viewer, None), now)
        .await
        .unwrap();
    // By number, in the shell's form.
    site2
        .revoke_token(TokenRef::NameOrId(again.id.to_string()), "cli".into(), now)
        .await
        .unwrap();

    // Expiry: works until the instant it expires, on both.
    let expiry = now + Duration::hours(1);
    site1
        .add_token(token("ci", "h-ci", Role::Viewer, Some(expiry)), now)
        .await
        .unwrap();
    assert!(
        site2
            .token_is_live("h-ci", expiry - Duration::milliseconds(1))
            .await
            .unwrap()
    );
    assert_eq!(
        site2.token_by_hash("h-ci".into(), expiry).await.unwrap(),
        None
    );
    assert!(!site1.token_is_live("h-ci", expiry).await.unwrap());
    assert!(matches!(
        site1
            .add_token(token("old", "h-old", Role::Viewer, Some(now)), now)
            .await,
        Err(TokenError::ExpiryPast)
    ));
    assert!(matches!(
        site1
            .add_token(token("no spaces", "h-x", Role::Viewer, None), now)
            .await,
        Err(TokenError::BadName(_))
    ));
    assert_eq!(site2.tokens().await.unwrap().len(), 1);
    assert_eq!(site2.all_tokens().await.unwrap().len(), 3);

    // One trail: each line names the appliance it happened on.
    site2
        .record_action(
            "mqtt".into(),
            "sim.ussd",
            "8944".into(),
            "*100#".into(),
            now,
        )
        .await
        .unwrap();
    let trail = site1.audit_trail(10).await.unwrap();
    let lines: Vec<(&str, &str, Option<&str>)> = trail
        .iter()
        .map(|l| (l.action.as_str(), l.actor.as_str(), l.appliance.as_deref()))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("sim.ussd", "mqtt", Some("site-2")),
            ("token.create", "test", Some("site-1")),
            ("token.revoke", "cli", Some("site-2")),
            ("token.create", "test", Some("site-1")),
            ("token.revoke", "admin-2", Some("site-2")),
            ("token.create", "test", Some("site-1")),
        ]
    );
    assert_eq!(site2.audit_trail(2).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_appliances_creating_the_same_token_name_at_once_make_one() {
    let pg = Postgres::start();
    let url = pg.database("race").await;
    let site1 = connect(&url, "site-1").await;
    let site2 = connect(&url, "site-2").await;
    let now = OffsetDateTime::now_utc();
    for round in 0..20 {
        let name = format!("t{round}");
        let (one, two) = tokio::join!(
            site1.add_token(token(&name, &format!("a{round}"), Role::Viewer, None), now),
            site2.add_token(token(&name, &format!("b{round}"), Role::Viewer, None), now),
        );
        let made = [one.is_ok(), two.is_ok()];
        assert_eq!(made.iter().filter(|ok| **ok).count(), 1, "round {round}");
        for result in [one, two] {
            if let Err(error) = result {
                assert!(matches!(error, TokenError::NameTaken(_)), "{error}");
            }
        }
    }
    assert_eq!(site1.tokens().await.unwrap().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_recorded_by_the_holder_shows_on_every_appliance() {
    let pg = Postgres::start();
    let url = pg.database("calls").await;
    let site1 = connect(&url, "site-1").await;
    let site2 = connect(&url, "site-2").await;
    let now = OffsetDateTime::now_utc();
    let iccid = "8944000000000000001".to_string();
    site1
        .upsert_sim(
            iccid.clone(),
            number("+447000000001"),
            "imsi".into(),
            None,
            now,
        )
        .await
        .unwrap();
    let live = vec![LiveSim {
        iccid: iccid.clone(),
        healthy: true,
        signal_dbm: Some(-70),
        voice_capable: true,
    }];
    let (a, b) = (number("+447911000001"), number("+447911000002"));
    let session = site2
        .open_session(
            NewSession {
                participants: [a.clone(), b.clone()],
                mode: Mode::Voice,
                ttl: None,
                idle_ttl: None,
                label: None,
                sticky: false,
                actor: "test".into(),
                fallback_number: None,
                proxy: None,
                limits: PoolLimits::default(),
            },
            live,
            now,
        )
        .await
        .unwrap();
    let ended = now + Duration::seconds(30);
    let id = site1
        .record_call(CallInteraction {
            proxy_iccid: iccid.clone(),
            session_id: Some(session.id.clone()),
            from_position: Some(0),
            caller: Some(a),
            other: Some(b),
            started_at: now,
            answered_at: Some(now + Duration::seconds(5)),
            ended_at: ended,
            duration_ms: Some(25_000),
            outcome: "completed".into(),
            reason: String::new(),
        })
        .await
        .unwrap();
    for store in [&site1, &site2] {
        let interactions = store.interactions(session.id.clone()).await.unwrap();
        assert_eq!(interactions.len(), 1);
        let call = &interactions[0];
        assert_eq!(call.id, id);
        assert_eq!(
            (call.kind.as_str(), call.status.as_str(), call.from_position),
            ("call", "bridged", Some(0))
        );
        assert_eq!(call.duration_ms, Some(25_000));
        assert_eq!(call.outcome.as_deref(), Some("completed"));
        let answered = (now + Duration::seconds(5)).unix_timestamp_nanos() / 1_000_000;
        assert_eq!(call.answered_ms, Some(answered as i64));
    }
    // A call is activity: the session's idle clock restarted at its end.
    let seen = site2.session(session.id.clone()).await.unwrap();
    assert_eq!(
        seen.last_activity_at.unix_timestamp(),
        ended.unix_timestamp()
    );
    // A call refused by the appliance is recorded as such.
    site1
        .record_call(CallInteraction {
            proxy_iccid: iccid,
            session_id: None,
            from_position: None,
            caller: Some(number("+447400998877")),
            other: None,
            started_at: now,
            answered_at: None,
            ended_at: now,
            duration_ms: None,
            outcome: "rejected".into(),
            reason: "out of session".into(),
        })
        .await
        .unwrap();
    let client = Postgres::client(&url).await;
    let statuses: Vec<String> = client
        .query("SELECT status FROM interactions ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(statuses, ["bridged", "rejected"]);
    let events: i64 = client
        .query_one("SELECT count(*) FROM interaction_events", &[])
        .await
        .unwrap()
        .get(0);
    // ringing, answered, completed; ringing, rejected.
    assert_eq!(events, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_block_list_is_one_for_the_fleet_and_a_front_desk_opens_on_its_sim() {
    let pg = Postgres::start();
    let url = pg.database("rails").await;
    let site1 = connect(&url, "site-1").await;
    let site2 = connect(&url, "site-2").await;
    let now = OffsetDateTime::now_utc();
    let (stranger, staff) = (number("+447400998877"), number("+447911000009"));

    site1
        .block_number(stranger.clone(), "spam".into(), "ops".into(), now)
        .await
        .unwrap();
    assert!(site2.is_blocked(stranger.clone()).await.unwrap());
    assert!(!site2.is_blocked(staff.clone()).await.unwrap());
    // Blocking again updates the reason; the list has it once.
    site2
        .block_number(stranger.clone(), "abuse".into(), "ops-2".into(), now)
        .await
        .unwrap();
    let listed = site1.blocked_numbers().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].reason.as_str(), listed[0].actor.as_str()),
        ("abuse", "ops-2")
    );
    assert!(
        site2
            .unblock_number(stranger.clone(), "ops".into(), now)
            .await
            .unwrap()
    );
    assert!(
        !site1
            .unblock_number(stranger.clone(), "ops".into(), now)
            .await
            .unwrap()
    );
    assert!(!site1.is_blocked(stranger.clone()).await.unwrap());
    // The audit trail names neither number in full.
    for line in site1.audit_trail(10).await.unwrap() {
        assert!(!line.object.contains("998877"), "{line:?}");
    }
    // Old entries are forgotten by either appliance.
    site1
        .block_number(
            stranger.clone(),
            String::new(),
            "ops".into(),
            now - Duration::days(40),
        )
        .await
        .unwrap();
    assert_eq!(
        site2
            .forget_rail_lists_older_than(now - Duration::days(30))
            .await
            .unwrap(),
        1
    );
    assert!(!site1.is_opted_out(stranger.clone()).await.unwrap());

    // A front desk on site-1's SIM, opened by site-1 (the SIM rings there);
    // once ended, it is the caller's last session on that proxy for both.
    let iccid = "8944000000000000001".to_string();
    site1
        .upsert_sim(
            iccid.clone(),
            number("+447000000001"),
            "imsi".into(),
            None,
            now,
        )
        .await
        .unwrap();
    let live = LiveSim {
        iccid: iccid.clone(),
        healthy: true,
        signal_dbm: None,
        voice_capable: true,
    };
    let new = NewSession {
        participants: [stranger.clone(), staff.clone()],
        mode: Mode::Both,
        ttl: None,
        idle_ttl: None,
        label: Some("front desk".into()),
        sticky: false,
        actor: "front-desk".into(),
        fallback_number: None,
        proxy: Some(iccid.clone()),
        limits: PoolLimits::default(),
    };
    let desk = site1
        .open_session_on(new.clone(), live.clone(), now)
        .await
        .unwrap();
    assert_eq!(desk.proxy_iccid, iccid);
    // The masking rule holds for it too.
    assert!(site2.open_session_on(new, live, now).await.is_err());
    assert_eq!(
        site2
            .last_ended_session_of(iccid.clone(), stranger.clone())
            .await
            .unwrap(),
        None
    );
    site2
        .close_session(desk.id.clone(), "ops".into(), now)
        .await
        .unwrap();
    let last = site1
        .last_ended_session_of(iccid, stranger)
        .await
        .unwrap()
        .expect("the ended session");
    assert_eq!(last.id, desk.id);
}
