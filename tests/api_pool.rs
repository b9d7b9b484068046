//! The pool over real HTTP: modems, numbers with live state and counters,
//! enabling a SIM, USSD, the per-SIM charts, and a session's interactions.

mod api_common;

use api_common::{assert_error, iccid, imei, start};
use reqwest::{Method, StatusCode};
use serde_json::json;
use simmask::number::PhoneNumber;
use simmask::store::NewOutbound;
use time::OffsetDateTime;

#[tokio::test]
async fn numbers_join_the_store_the_bank_and_the_counters() {
    let api = start(2).await;
    // The bank lost the second SIM's modem.
    {
        let mut statuses = api.pool.statuses.lock().unwrap();
        statuses[1].state = "unplugged".into();
        statuses[1].healthy = false;
        statuses[1].signal_dbm = None;
        statuses[1].last_error = "port vanished".into();
    }
    let (status, numbers) = api
        .send(Method::GET, "/api/v1/numbers", Some(&api.viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{numbers}");
    let numbers = numbers.as_array().unwrap();
    assert_eq!(numbers.len(), 2);
    let first = &numbers[0];
    assert_eq!(first["iccid"], iccid(0));
    assert_eq!(first["msisdn"], "+447009000000");
    assert_eq!(first["imei"], imei(0));
    assert_eq!(first["model"], "SIM800L");
    assert_eq!(first["enabled"], true);
    assert_eq!(first["state"], "up");
    assert_eq!(first["healthy"], true);
    assert_eq!(first["signal_dbm"], -70);
    assert_eq!(first["registration"], "home");
    assert_eq!(first["operator"], "Virtual Mobile");
    assert_eq!(first["queue_depth"], 0);
    assert_eq!(first["sent"], 0);
    let second = &numbers[1];
    assert_eq!(second["state"], "unplugged");
    assert_eq!(second["healthy"], false);
    assert_eq!(second["signal_dbm"], serde_json::Value::Null);
    assert_eq!(second["last_error"], "port vanished");

    // A session on SIM 0 with one message queued and one sent.
    let (_, session) = api
        .send(
            Method::POST,
            "/api/v1/sessions",
            Some(&api.admin),
            Some(json!({"participants": ["+447911000001", "+447911000002"]})),
        )
        .await;
    let proxy = iccid(0);
    let now = OffsetDateTime::now_utc();
    for body in ["one", "two"] {
        api.store
            .queue_sms(
                NewOutbound {
                    session_id: session["id"].as_str().map(String::from),
                    proxy_iccid: proxy.clone(),
                    from_position: Some(0),
                    to: PhoneNumber::from_e164("+447911000002").unwrap(),
                    body: body.into(),
                },
                now,
            )
            .await
            .unwrap();
    }
    let item = api
        .store
        .claim_next_due(proxy.clone(), now)
        .await
        .unwrap()
        .unwrap();
    api.store.mark_sent(item.id, vec![1], now).await.unwrap();
    let (_, numbers) = api
        .send(Method::GET, "/api/v1/numbers", Some(&api.viewer), None)
        .await;
    assert_eq!(numbers[0]["queue_depth"], 1, "{numbers}");
    assert_eq!(numbers[0]["sent"], 1);
    assert_eq!(numbers[0]["open_sessions"], 1);

    let (status, history) = api
        .send(
            Method::GET,
            &format!("/api/v1/numbers/{proxy}/history"),
            Some(&api.viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history["traffic"][0]["sent"], 1, "{history}");
    // The sampler records the bank when the server starts.
    assert_eq!(history["signal"][0]["dbm"], -70, "{history}");
    let (status, body) = api
        .send(
            Method::GET,
            "/api/v1/numbers/nope/history",
            Some(&api.viewer),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn modems_show_their_sim_and_its_state() {
    let api = start(2).await;
    let (status, modems) = api
        .send(Method::GET, "/api/v1/modems", Some(&api.viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{modems}");
    let modems = modems.as_array().unwrap();
    assert_eq!(modems.len(), 2);
    assert_eq!(modems[1]["imei"], imei(1));
    assert_eq!(modems[1]["iccid"], iccid(1));
    assert_eq!(modems[1]["model"], "SIM800L");
    assert_eq!(modems[1]["profile"], "sim800");
    assert_eq!(modems[1]["state"], "up");
    assert_eq!(modems[1]["signal_dbm"], -71);
}

#[tokio::test]
async fn only_admins_enable_and_disable_sims() {
    let api = start(2).await;
    let path = format!("/api/v1/numbers/{}", iccid(1));
    let off = Some(json!({"enabled": false}));
    let (status, body) = api
        .send(Method::PUT, &path, Some(&api.viewer), off.clone())
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, sim) = api
        .send(Method::PUT, &path, Some(&api.admin), off.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{sim}");
    assert_eq!(sim["enabled"], false);
    assert_eq!(sim["iccid"], iccid(1));

    // A disabled SIM gets no new session: with SIM 0 busy for these two, none is free.
    let pair = json!({"participants": ["+447911000001", "+447911000002"]});
    let (status, _) = api
        .send(
            Method::POST,
            "/api/v1/sessions",
            Some(&api.admin),
            Some(pair.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = api
        .send(
            Method::POST,
            "/api/v1/sessions",
            Some(&api.admin),
            Some(pair),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "no_free_proxy");

    for (path, body, expected, code) in [
        (
            "/api/v1/numbers/89440000",
            json!({"enabled": true}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            path.as_str(),
            json!({"enabled": "yes"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            path.as_str(),
            json!({"enabled": true, "colour": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            path.as_str(),
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ] {
        let (status, answer) = api
            .send(Method::PUT, path, Some(&api.admin), Some(body))
            .await;
        assert_error(status, &answer, expected, code);
    }
}

#[tokio::test]
async fn ussd_goes_to_the_bank_and_its_refusal_is_a_502() {
    let api = start(1).await;
    let path = format!("/api/v1/numbers/{}/ussd", iccid(0));
    let (status, body) = api
        .send(
            Method::POST,
            &path,
            Some(&api.viewer),
            Some(json!({"code": "*100#"})),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, reply) = api
        .send(
            Method::POST,
            &path,
            Some(&api.admin),
            Some(json!({"code": "*100#"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["reply"], "Your balance is 4.20");
    assert_eq!(
        api.pool.ussd_seen.lock().unwrap().as_slice(),
        &[(iccid(0), "*100#".to_string())]
    );

    for (code, status_expected, error) in [
        (
            json!("AT+CFUN=0"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_ussd",
        ),
        (
            json!("*100#\""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_ussd",
        ),
        (json!(""), StatusCode::UNPROCESSABLE_ENTITY, "invalid_ussd"),
        (json!(100), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
    ] {
        let (status, body) = api
            .send(
                Method::POST,
                &path,
                Some(&api.admin),
                Some(json!({"code": code})),
            )
            .await;
        assert_error(status, &body, status_expected, error);
    }
    let (status, body) = api
        .send(
            Method::POST,
            "/api/v1/numbers/nope/ussd",
            Some(&api.admin),
            Some(json!({"code": "*100#"})),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        api.pool.ussd_seen.lock().unwrap().len(),
        1,
        "refused before the bank"
    );

    *api.pool.ussd_reply.lock().unwrap() = Err("+CME ERROR: 30 (no network service)".into());
    let (status, body) = api
        .send(
            Method::POST,
            &path,
            Some(&api.admin),
            Some(json!({"code": "*100#"})),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_GATEWAY, "ussd_failed");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no network service")
    );
}

#[tokio::test]
async fn interactions_are_listed_with_bodies_for_admins_only() {
    let api = start(1).await;
    let (_, session) = api
        .send(
            Method::POST,
            "/api/v1/sessions",
            Some(&api.admin),
            Some(json!({"participants": ["+447911000001", "+447911000002"]})),
        )
        .await;
    let id = session["id"].as_str().unwrap().to_string();
    api.store
        .queue_sms(
            NewOutbound {
                session_id: Some(id.clone()),
                proxy_iccid: iccid(0),
                from_position: Some(1),
                to: PhoneNumber::from_e164("+447911000001").unwrap(),
                body: "on my way".into(),
            },
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let path = format!("/api/v1/sessions/{id}/interactions");
    let (status, admin_view) = api.send(Method::GET, &path, Some(&api.admin), None).await;
    assert_eq!(status, StatusCode::OK, "{admin_view}");
    let first = &admin_view[0];
    assert_eq!(first["kind"], "sms");
    assert_eq!(first["from_participant"], 1);
    assert_eq!(first["status"], "queued");
    assert_eq!(first["body"], "on my way");
    assert!(first["created_at"].as_str().unwrap().contains('T'));
    let (_, viewer_view) = api.send(Method::GET, &path, Some(&api.viewer), None).await;
    assert_eq!(viewer_view[0]["body"], serde_json::Value::Null);
    assert!(!viewer_view.to_string().contains("7911000001"));

    let (status, body) = api
        .send(
            Method::GET,
            "/api/v1/sessions/ses_missing/interactions",
            Some(&api.viewer),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn metrics_carry_each_sims_signal_health_and_queue() {
    let api = start(1).await;
    let response = api
        .client
        .get(format!("{}/metrics", api.base))
        .bearer_auth(&api.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let sim = iccid(0);
    for line in [
        format!("simmask_sim_signal_dbm{{iccid=\"{sim}\"}} -70"),
        format!("simmask_sim_healthy{{iccid=\"{sim}\"}} 1"),
    ] {
        assert!(text.contains(&line), "{line} missing from {text}");
    }
    assert!(
        text.contains(&format!("simmask_sim_queue_depth{{iccid=\"{sim}\"}}")),
        "{text}"
    );
}

/// Issue 16: a SIM whose modem cannot read its ICCID is a pool unit known
/// by its IMSI; the number view says so, and its id works in the routes.
#[tokio::test]
async fn a_sim_known_by_its_imsi_shows_a_null_iccid_and_its_id() {
    let api = start(1).await;
    let id = "imsi:001010123456789";
    let msisdn = PhoneNumber::from_e164("+447009000009").unwrap();
    api.store
        .upsert_sim(
            id.to_string(),
            msisdn,
            "001010123456789".into(),
            None,
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let (status, numbers) = api
        .send(Method::GET, "/api/v1/numbers", Some(&api.viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{numbers}");
    let numbers = numbers.as_array().unwrap();
    let by_iccid = numbers.iter().find(|n| n["id"] == iccid(0)).unwrap();
    assert_eq!(by_iccid["iccid"], iccid(0));
    assert_eq!(by_iccid["id_source"], "iccid");
    let by_imsi = numbers.iter().find(|n| n["id"] == id).unwrap();
    assert_eq!(by_imsi["iccid"], serde_json::Value::Null, "{by_imsi}");
    assert_eq!(by_imsi["id_source"], "imsi");
    assert_eq!(by_imsi["msisdn"], "+447009000009");
    let (status, sim) = api
        .send(
            Method::PUT,
            &format!("/api/v1/numbers/{id}"),
            Some(&api.admin),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sim}");
    assert_eq!(sim["enabled"], false);
    assert_eq!(sim["id"], id);
}
