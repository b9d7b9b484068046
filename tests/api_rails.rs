//! Proxy-grade session semantics over real HTTP: reserved and draining
//! numbers, budgets in the number view, close reasons and reopening,
//! retiring a SIM, opt-outs refusing new sessions, the block list, and the
//! numbering-plan setting.

mod api_common;

use api_common::{Api, assert_error, iccid, start, start_configured};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use simmask::masking::allocation::{PoolLimits, SimLimits};
use simmask::number::{NumberValidation, PhoneNumber};
use time::OffsetDateTime;

const A: &str = "+447911000001";
const B: &str = "+447911000002";
const C: &str = "+447911000003";
const D: &str = "+447911000004";

async fn open(api: &Api, a: &str, b: &str) -> (StatusCode, Value) {
    api.send(
        Method::POST,
        "/api/v1/sessions",
        Some(&api.admin),
        Some(json!({"participants": [a, b]})),
    )
    .await
}

async fn put_number(api: &Api, i: usize, body: Value) -> (StatusCode, Value) {
    api.send(
        Method::PUT,
        &format!("/api/v1/numbers/{}", iccid(i)),
        Some(&api.admin),
        Some(body),
    )
    .await
}

async fn number_view(api: &Api, token: &str, i: usize) -> Value {
    let (status, numbers) = api
        .send(Method::GET, "/api/v1/numbers", Some(token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{numbers}");
    numbers
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["iccid"] == iccid(i))
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn a_reserved_number_serves_only_its_owner_and_shows_masked_to_viewers() {
    let api = start(2).await;
    let (status, view) = put_number(&api, 0, json!({"reserved_for": "07911 000001"})).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["reserved_for"], A);
    assert_eq!(
        number_view(&api, &api.viewer, 0).await["reserved_for"],
        "+44*******001"
    );

    // Sessions without the owner never get it, however it is loaded.
    for (one, other) in [(B, C), (D, "+447911000006")] {
        let (status, session) = open(&api, one, other).await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        assert_eq!(session["proxy_number"], "+447009000001");
    }
    // The owner's session takes it first.
    let (_, own) = open(&api, A, B).await;
    assert_eq!(own["proxy_number"], "+447009000000");
    // Nothing left for a pair without the owner once SIM 1 is busy for C.
    let (status, body) = open(&api, C, "+447911000005").await;
    assert_error(status, &body, StatusCode::CONFLICT, "no_free_proxy");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("reserved for another participant"),
        "{body}"
    );

    // Released, it is anyone's again.
    let (status, view) = put_number(&api, 0, json!({"reserved_for": null})).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["reserved_for"], Value::Null);
    let (status, _) = open(&api, C, D).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_draining_number_takes_no_new_sessions_and_counts_those_left() {
    let api = start(1).await;
    let (_, session) = open(&api, A, B).await;
    let (status, view) = put_number(&api, 0, json!({"draining": true})).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["draining"], true);
    assert_eq!(view["sessions_left"], 1);
    let (status, body) = open(&api, C, D).await;
    assert_error(status, &body, StatusCode::CONFLICT, "no_free_proxy");
    assert!(
        body["message"].as_str().unwrap().contains("draining"),
        "{body}"
    );
    // The open session goes on until it ends; then none are left.
    let id = session["id"].as_str().unwrap();
    let (status, got) = api
        .send(
            Method::GET,
            &format!("/api/v1/sessions/{id}"),
            Some(&api.viewer),
            None,
        )
        .await;
    assert_eq!(
        (status, got["status"].as_str()),
        (StatusCode::OK, Some("open"))
    );
    api.send(
        Method::DELETE,
        &format!("/api/v1/sessions/{id}"),
        Some(&api.admin),
        None,
    )
    .await;
    assert_eq!(number_view(&api, &api.admin, 0).await["sessions_left"], 0);
    // Reopening is a new session on a draining SIM: refused with the reason.
    let (status, body) = api
        .send(
            Method::POST,
            &format!("/api/v1/sessions/{id}/reopen"),
            Some(&api.admin),
            Some(json!({})),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "draining");
    let (status, view) = put_number(&api, 0, json!({"draining": false})).await;
    assert_eq!(
        (status, view["sessions_left"].clone()),
        (StatusCode::OK, Value::Null)
    );
}

#[tokio::test]
async fn changing_a_number_refuses_bad_input_precisely() {
    let api = start(1).await;
    for (body, code) in [
        (json!({}), "invalid_body"),
        (json!({"reserved_for": "not a number"}), "invalid_number"),
        (json!({"reserved_for": "+447009000000"}), "invalid_number"),
        (json!({"front_desk": 12}), "invalid_body"),
        (json!({"draining": "yes"}), "invalid_body"),
        (json!({"owner": A}), "invalid_body"),
    ] {
        let (status, answer) = put_number(&api, 0, body.clone()).await;
        assert_error(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    let (status, answer) = api
        .send(
            Method::PUT,
            "/api/v1/numbers/8944999",
            Some(&api.admin),
            Some(json!({"draining": true})),
        )
        .await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    let (status, answer) = api
        .send(
            Method::PUT,
            &format!("/api/v1/numbers/{}", iccid(0)),
            Some(&api.viewer),
            Some(json!({"draining": true})),
        )
        .await;
    assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn every_ended_session_says_why_and_reopens_when_the_rule_allows() {
    let api = start(1).await;
    let (_, first) = open(&api, A, B).await;
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["close_reason"], Value::Null);
    let (_, closed) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/sessions/{id}"),
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(closed["close_reason"], "operator");

    let reopen = |body: Value| {
        let id = id.clone();
        let api = &api;
        async move {
            api.send(
                Method::POST,
                &format!("/api/v1/sessions/{id}/reopen"),
                Some(&api.admin),
                Some(body),
            )
            .await
        }
    };
    // A is in another open session on the only proxy: the masking rule says no.
    let (_, second) = open(&api, A, C).await;
    let (status, body) = reopen(json!({})).await;
    assert_error(status, &body, StatusCode::CONFLICT, "participant_busy");
    api.send(
        Method::DELETE,
        &format!("/api/v1/sessions/{}", second["id"].as_str().unwrap()),
        Some(&api.admin),
        None,
    )
    .await;
    let (status, body) = reopen(json!({"ttl_seconds": 60})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "open");
    assert_eq!(body["close_reason"], Value::Null);
    assert_eq!(body["proxy_number"], first["proxy_number"]);
    assert!(body["expires_at"].is_string());
    let (status, body) = reopen(json!({})).await;
    assert_error(status, &body, StatusCode::CONFLICT, "session_open");
    let (status, body) = reopen(json!({"ttl_seconds": 0})).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_ttl",
    );
    let (status, body) = api
        .send(
            Method::POST,
            &format!("/api/v1/sessions/{id}/reopen"),
            Some(&api.viewer),
            Some(json!({})),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = api
        .send(
            Method::POST,
            "/api/v1/sessions/ses_nope/reopen",
            Some(&api.admin),
            Some(json!({})),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // Retiring the SIM ends what is open on it, with that reason.
    let (status, retired) = api
        .send(
            Method::POST,
            &format!("/api/v1/numbers/{}/retire", iccid(0)),
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{retired}");
    assert_eq!(retired["sessions_closed"], json!([id]));
    assert_eq!(retired["number"]["enabled"], false);
    let (_, session) = api
        .send(
            Method::GET,
            &format!("/api/v1/sessions/{id}"),
            Some(&api.viewer),
            None,
        )
        .await;
    assert_eq!(session["close_reason"], "sim_retired");
}

#[tokio::test]
async fn an_opted_out_participant_cannot_be_put_in_a_session() {
    let api = start(2).await;
    let (_, session) = open(&api, A, B).await;
    api.send(
        Method::DELETE,
        &format!("/api/v1/sessions/{}", session["id"].as_str().unwrap()),
        Some(&api.admin),
        None,
    )
    .await;
    let b = PhoneNumber::from_e164(B).unwrap();
    api.store
        .inbound(move |tx| tx.opt_out(&b, "STOP", OffsetDateTime::now_utc()))
        .await
        .unwrap();
    let (status, body) = open(&api, C, B).await;
    assert_error(status, &body, StatusCode::CONFLICT, "opted_out");
    assert!(!body["message"].as_str().unwrap().contains(B), "{body}");
    let (status, body) = api
        .send(
            Method::POST,
            &format!(
                "/api/v1/sessions/{}/reopen",
                session["id"].as_str().unwrap()
            ),
            Some(&api.admin),
            Some(json!({})),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "opted_out");
}

#[tokio::test]
async fn the_block_list_is_kept_in_bodies_and_masked_for_viewers() {
    let api = start(1).await;
    let (status, added) = api
        .send(
            Method::POST,
            "/api/v1/blocks",
            Some(&api.admin),
            Some(json!({"number": A, "reason": "harassment"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["number"], A);
    let (_, list) = api
        .send(Method::GET, "/api/v1/blocks", Some(&api.viewer), None)
        .await;
    assert_eq!(list[0]["number"], "+44*******001");
    assert_eq!(list[0]["reason"], "harassment");
    let (status, body) = api
        .send(
            Method::POST,
            "/api/v1/blocks",
            Some(&api.viewer),
            Some(json!({"number": B})),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = api
        .send(
            Method::POST,
            "/api/v1/blocks",
            Some(&api.admin),
            Some(json!({"number": "12"})),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_number",
    );
    let remove = |number: &'static str| {
        let api = &api;
        async move {
            api.send(
                Method::POST,
                "/api/v1/blocks/remove",
                Some(&api.admin),
                Some(json!({ "number": number })),
            )
            .await
        }
    };
    let (status, body) = remove(A).await;
    assert_eq!(
        (status, body["removed"].clone()),
        (StatusCode::OK, json!(true))
    );
    let (status, body) = remove(A).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn the_number_view_shows_each_budgets_use() {
    let api = start_configured(2, |state| {
        state.limits = PoolLimits {
            per_day: Some(1000),
            recipients_per_month: Some(100),
            per_sim: [(
                iccid(1),
                SimLimits {
                    per_day: Some(50),
                    recipients_per_month: None,
                },
            )]
            .into(),
            reserve_percent: 10,
        };
    })
    .await;
    let view = number_view(&api, &api.viewer, 0).await;
    assert_eq!(
        view["budgets"],
        json!({
            "messages_today": {"used": 0, "limit": 1000},
            "recipients_this_month": {"used": 0, "limit": 100}
        })
    );
    let view = number_view(&api, &api.viewer, 1).await;
    assert_eq!(view["budgets"]["messages_today"]["limit"], 50);
    // A relayed message counts its recipient for the month.
    let (_, session) = open(&api, A, B).await;
    let proxy = if session["proxy_number"] == "+447009000000" {
        0
    } else {
        1
    };
    api.store
        .queue_sms(
            simmask::store::NewOutbound {
                session_id: Some(session["id"].as_str().unwrap().into()),
                proxy_iccid: iccid(proxy),
                from_position: Some(0),
                to: PhoneNumber::from_e164(B).unwrap(),
                body: "hi".into(),
            },
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let view = number_view(&api, &api.admin, proxy).await;
    assert_eq!(view["budgets"]["recipients_this_month"]["used"], 1);
}

#[tokio::test]
async fn numbers_outside_the_plan_follow_the_validation_setting() {
    // +44 6… is a range the built-in plan does not know; ten national
    // digits is a possible length for GB.
    const NEW_RANGE: &str = "+446000000123";
    let api = start(1).await;
    let (status, body) = open(&api, A, NEW_RANGE).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let strict = start_configured(1, |state| {
        state.number_validation = NumberValidation::Strict
    })
    .await;
    let (status, body) = open(&strict, A, NEW_RANGE).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_number",
    );
    assert!(
        body["message"].as_str().unwrap().contains("numbering plan"),
        "{body}"
    );
    let (status, _) = open(&strict, A, B).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn the_openapi_document_describes_every_new_route_and_field() {
    let api = start(1).await;
    let (status, document) = api
        .send(Method::GET, "/api/v1/openapi.json", Some(&api.viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/v1/sessions/{id}/reopen",
        "/api/v1/numbers/{iccid}/retire",
        "/api/v1/blocks",
        "/api/v1/blocks/remove",
    ] {
        assert!(document["paths"][path].is_object(), "{path} undocumented");
    }
    let schemas = &document["components"]["schemas"];
    for (schema, fields) in [
        (
            "UpdateNumberRequest",
            &["enabled", "reserved_for", "draining", "front_desk"][..],
        ),
        (
            "NumberView",
            &[
                "reserved_for",
                "draining",
                "sessions_left",
                "front_desk",
                "budgets",
            ][..],
        ),
        ("SessionView", &["close_reason", "fallback_number"][..]),
        ("OpenSessionRequest", &["fallback_number"][..]),
        ("ReopenRequest", &["ttl_seconds", "idle_ttl_seconds"][..]),
        ("InteractionView", &["rule"][..]),
        ("Budgets", &["messages_today", "recipients_this_month"][..]),
        ("BlockView", &["number", "reason", "actor", "at"][..]),
    ] {
        for field in fields {
            assert!(
                schemas[schema]["properties"][field].is_object(),
                "{schema}.{field} undocumented: {}",
                schemas[schema]
            );
        }
    }
}
