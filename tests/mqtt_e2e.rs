//! MQTT and Home Assistant end to end: `simmask sim`, `simmask run` and a
//! real broker (Debian's `mosquitto`, on a free port, started here), as
//! separate processes. What Home Assistant would discover and read is
//! checked the way it reads it: retained discovery configurations, state
//! topics, availability, events.

mod common;
mod mqtt_common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{ADMIN_TOKEN, Daemon, Sim, client, free_port, write_config};
use mqtt_common::{Mosquitto, Received, Setup, Watcher};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const A: &str = "+447911123456";
const B: &str = "+447912345678";
const PREFIX: &str = "simmask/attic";
const NODE: &str = "simmask_attic";
const WAIT: Duration = Duration::from_secs(45);

fn mqtt_config(broker: &Mosquitto, extra: &str) -> String {
    format!(
        "[appliance]\nname = \"Attic\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nstate_interval_seconds = 5\n{extra}\n",
        broker.port
    )
}

/// The discovery configurations among `latest` (topic → last payload),
/// removed ones left out.
fn configs(latest: &BTreeMap<String, String>) -> BTreeMap<String, Value> {
    latest
        .iter()
        .filter(|(topic, payload)| topic.starts_with("homeassistant/") && !payload.is_empty())
        .filter(|(topic, _)| topic.ends_with("/config"))
        .map(|(topic, payload)| (topic.clone(), serde_json::from_str(payload).expect("JSON")))
        .collect()
}

/// The fields of a state's JSON a `value_template` reads.
fn fields(template: &str) -> Vec<String> {
    template
        .split("value_json.")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// The keys Home Assistant's MQTT schemas know (its `mqtt/schemas.py` and
/// each platform's): a discovery payload with another key is an error in a
/// device or origin, and silently dropped in an entity.
const COMMON_KEYS: &[&str] = &[
    "name",
    "unique_id",
    "device",
    "origin",
    "availability",
    "availability_mode",
    "qos",
    "entity_category",
    "icon",
    "enabled_by_default",
    "json_attributes_topic",
    "json_attributes_template",
];
const DEVICE_KEYS: &[&str] = &[
    "identifiers",
    "connections",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "hw_version",
    "serial_number",
    "sw_version",
    "via_device",
    "suggested_area",
    "configuration_url",
];

fn platform_keys(component: &str) -> &'static [&'static str] {
    match component {
        "sensor" => &[
            "state_topic",
            "value_template",
            "device_class",
            "state_class",
            "unit_of_measurement",
            "expire_after",
            "force_update",
        ],
        "binary_sensor" => &[
            "state_topic",
            "value_template",
            "device_class",
            "payload_on",
            "payload_off",
            "expire_after",
            "off_delay",
        ],
        "switch" => &[
            "state_topic",
            "value_template",
            "command_topic",
            "payload_on",
            "payload_off",
            "state_on",
            "state_off",
            "device_class",
            "optimistic",
            "retain",
        ],
        "text" => &[
            "state_topic",
            "value_template",
            "command_topic",
            "command_template",
            "min",
            "max",
            "pattern",
            "mode",
            "retain",
        ],
        other => panic!("no {other} here"),
    }
}

/// Checks one configuration the way Home Assistant's discovery reads it.
fn check_config(topic: &str, config: &Value, latest: &BTreeMap<String, String>) {
    let parts: Vec<&str> = topic.split('/').collect();
    assert_eq!(parts.len(), 5, "{topic}");
    assert_eq!(parts[0], "homeassistant");
    assert!(
        ["sensor", "binary_sensor", "switch", "text"].contains(&parts[1]),
        "{topic}: component"
    );
    assert_eq!(parts[2], NODE, "{topic}: node id");
    for key in config.as_object().expect("an object").keys() {
        assert!(
            COMMON_KEYS.contains(&key.as_str()) || platform_keys(parts[1]).contains(&key.as_str()),
            "{topic}: Home Assistant has no {key}"
        );
    }
    for key in config["device"].as_object().expect("device").keys() {
        assert!(DEVICE_KEYS.contains(&key.as_str()), "{topic}: device {key}");
    }
    for key in config["origin"].as_object().expect("origin").keys() {
        assert!(
            ["name", "sw_version", "support_url"].contains(&key.as_str()),
            "{topic}: origin {key}"
        );
    }
    match (config["device_class"].as_str(), parts[1]) {
        (None, _) => {}
        (Some("signal_strength"), "sensor") => assert!(
            ["dB", "dBm"].contains(&config["unit_of_measurement"].as_str().unwrap_or_default())
        ),
        (Some("duration"), "sensor") => assert!(
            ["d", "h", "min", "s", "ms"]
                .contains(&config["unit_of_measurement"].as_str().unwrap_or_default())
        ),
        (Some("problem"), "binary_sensor") => {}
        (Some(other), component) => panic!("{topic}: {component} device class {other}?"),
    }
    if let Some(class) = config["state_class"].as_str() {
        assert!(
            ["measurement", "total", "total_increasing"].contains(&class),
            "{topic}: {class}"
        );
    }
    if let Some(category) = config["entity_category"].as_str() {
        assert!(["config", "diagnostic"].contains(&category), "{topic}");
    }
    assert!(
        parts[3]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "{topic}: object id"
    );
    let unique = config["unique_id"].as_str().expect("unique_id");
    assert!(unique.starts_with(NODE), "{topic}: {unique}");
    let identifiers = config["device"]["identifiers"].as_array().expect("device");
    assert!(identifiers.iter().all(Value::is_string) && !identifiers.is_empty());
    assert!(config["device"]["name"].is_string(), "{topic}: device name");
    assert_eq!(config["origin"]["name"], "simmask", "{topic}: origin");
    for availability in config["availability"].as_array().expect("availability") {
        let topic = availability["topic"].as_str().expect("availability topic");
        assert!(
            latest
                .get(topic)
                .is_some_and(|p| p == "online" || p == "offline"),
            "{topic}: availability not published"
        );
    }
    if parts[1] == "text" {
        assert!(config["command_topic"].is_string(), "{topic}");
        return;
    }
    let state_topic = config["state_topic"].as_str().expect("state_topic");
    let state: Value = serde_json::from_str(latest.get(state_topic).expect("state published"))
        .expect("state JSON");
    for field in fields(config["value_template"].as_str().expect("value_template")) {
        assert!(
            state.get(&field).is_some(),
            "{topic}: the state has no {field}"
        );
        if config.get("state_class").is_some() {
            assert!(
                state[&field].is_number() || state[&field].is_null(),
                "{topic}: {field} is no number"
            );
        }
    }
    if config["state_class"] == "total_increasing" || config["state_class"] == "measurement" {
        assert!(config["unit_of_measurement"].is_string(), "{topic}: unit");
    }
}

async fn numbers(daemon: &Daemon) -> Vec<Value> {
    let body = daemon.get("/api/v1/numbers").await;
    body.as_array().cloned().unwrap_or_default()
}

fn state_of(watcher: &Watcher, iccid: &str) -> Value {
    watcher
        .last(&format!("{PREFIX}/sim/{iccid}/state"))
        .and_then(|p| serde_json::from_str(&p).ok())
        .unwrap_or(Value::Null)
}

fn events(received: &[Received], kind: &str) -> Vec<Value> {
    received
        .iter()
        .filter(|m| m.topic == format!("{PREFIX}/events/{kind}"))
        .map(Received::json)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_discovers_the_appliance_and_its_state_follows_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), &Setup::default());
    // The network's time is two hours ahead of this machine's.
    let sim = Sim::start_with(dir.path(), 2, "generic", &["--clock-offset", "7200"]);
    let (iccid0, iccid1) = (sim.iccid(0), sim.iccid(1));
    let port = free_port();
    let config = write_config(
        dir.path(),
        &sim,
        port,
        &mqtt_config(&broker, "forget_missing_sims_seconds = 6"),
    );
    let mut daemon = Daemon::start(&config, port, 2).await;
    let watcher = Watcher::connect(&broker, None, &["#"]).await;

    // Everything appears, retained: 6 appliance entities (5 sensors and
    // the clock's problem binary sensor) and 12 per SIM (11 sensors and a
    // problem binary sensor), no command entity.
    watcher
        .wait("discovery and state", WAIT, |_| {
            let latest = watcher.latest();
            configs(&latest).len() == 30
                && latest.contains_key(&format!("{PREFIX}/sim/{iccid1}/state"))
                && latest.contains_key(&format!("{PREFIX}/state"))
        })
        .await;
    let latest = watcher.latest();
    assert_eq!(latest[&format!("{PREFIX}/availability")], "online");
    let found = configs(&latest);
    let mut unique_ids = BTreeSet::new();
    for (topic, config) in &found {
        check_config(topic, config, &latest);
        assert!(
            unique_ids.insert(config["unique_id"].to_string()),
            "{topic}"
        );
        assert!(
            config.get("command_topic").is_none(),
            "{topic}: commands are off"
        );
    }
    // Retained: a client arriving now (Home Assistant starting) gets it all.
    let late = Watcher::connect(&broker, None, &["homeassistant/#", "simmask/#"]).await;
    late.wait("the retained configurations", WAIT, |all| {
        all.iter()
            .filter(|m| m.retain && m.topic.ends_with("/config"))
            .count()
            >= 30
    })
    .await;
    drop(late);
    let signal = &found[&format!("homeassistant/sensor/{NODE}/sim_{iccid0}_signal/config")];
    assert_eq!(signal["device_class"], "signal_strength");
    assert_eq!(signal["unit_of_measurement"], "dBm");
    assert_eq!(signal["state_class"], "measurement");
    assert_eq!(signal["device"]["via_device"], NODE);
    let sent = &found[&format!("homeassistant/sensor/{NODE}/sim_{iccid0}_sent/config")];
    assert_eq!(sent["state_class"], "total_increasing");
    let appliance = &found[&format!("homeassistant/sensor/{NODE}/appliance_open_sessions/config")];
    assert_eq!(appliance["device"]["identifiers"], json!([NODE]));
    assert_eq!(appliance["device"]["name"], "simmask Attic");

    // The state is the API's, and follows the network's signal.
    let api = numbers(&daemon).await;
    let sim0 = api.iter().find(|n| n["id"] == iccid0.as_str()).unwrap();
    let state = state_of(&watcher, &iccid0);
    assert_eq!(state["signal_dbm"], sim0["signal_dbm"], "{state}");
    assert_eq!(state["msisdn"], sim0["msisdn"]);
    assert_eq!(state["state"], "up");
    let faults = sim.post("/modems/0/faults", json!({"signal": 7})).await;
    assert!(faults.status().is_success());
    let topic = format!("{PREFIX}/sim/{iccid0}/state");
    watcher
        .wait_value(&topic, WAIT, |p| p.contains("\"signal_dbm\":-99"))
        .await;

    // Events arrive as on /api/v1/events, participants masked as for a
    // viewer, and no text.
    let session = daemon.open_session(A, B, json!({"label": "mqtt"})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    sim.handset_sms(A, &proxy, "the secret is 4242").await;
    assert_eq!(sim.wait_messages(B, 1, WAIT).await.len(), 1);
    let received = watcher
        .wait("message_relayed", WAIT, |all| {
            !events(all, "message_relayed").is_empty() && !events(all, "session_opened").is_empty()
        })
        .await;
    let relayed = &events(&received, "message_relayed")[0];
    assert_eq!(relayed["kind"], "message_relayed");
    assert_eq!(relayed["session_id"], session["id"]);
    assert_eq!(relayed["interaction"]["from"], "+44*******456", "{relayed}");
    assert_eq!(relayed["interaction"]["to"], "+44*******678", "{relayed}");
    assert_eq!(relayed["interaction"]["proxy_number"], proxy.as_str());
    assert!(relayed["interaction"].get("body").is_none(), "{relayed}");
    let opened = &events(&received, "session_opened")[0];
    assert_eq!(opened["proxy_number"], proxy.as_str());
    for message in received.iter().filter(|m| m.topic.starts_with(PREFIX)) {
        assert!(!message.payload.contains("7911123456"), "{message:?}");
        assert!(!message.payload.contains("7912345678"), "{message:?}");
        assert!(!message.payload.contains("4242"), "{message:?}");
        assert!(!message.retain || !message.topic.contains("/events/"));
    }
    watcher
        .wait_value(&format!("{PREFIX}/state"), WAIT, |p| {
            let state: Value = serde_json::from_str(p).unwrap_or_default();
            state["open_sessions"] == 1 && state["messages_relayed_today"] == 1
        })
        .await;

    // The clock offset is the one /healthz reports: the system clock two
    // hours behind the network's.
    let appliance = watcher
        .wait_value(&format!("{PREFIX}/state"), WAIT, |p| {
            let state: Value = serde_json::from_str(p).unwrap_or_default();
            state["clock_offset_seconds"]
                .as_i64()
                .is_some_and(|o| (o + 7200).abs() <= 5)
        })
        .await;
    let appliance: Value = serde_json::from_str(&appliance).unwrap();
    let health = client()
        .get(format!("{}/healthz", daemon.url))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        appliance["clock_suspect"], health["clock"]["suspect"],
        "{appliance} {health}"
    );

    // Commands are off: nothing happens.
    watcher
        .publish(
            &format!("{PREFIX}/command/sim_enabled"),
            &json!({"sim": iccid0, "enabled": false}).to_string(),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let api = numbers(&daemon).await;
    assert!(api.iter().all(|n| n["enabled"] == true), "{api:?}");
    assert!(
        watcher.all().iter().all(|m| !m.topic.ends_with("/result")),
        "no command ran"
    );

    // A SIM unplugged goes offline; its state says why.
    assert!(
        sim.post("/modems/1/unplug", json!({}))
            .await
            .status()
            .is_success()
    );
    watcher
        .wait_value(&format!("{PREFIX}/sim/{iccid1}/availability"), WAIT, |p| {
            p == "offline"
        })
        .await;
    watcher
        .wait_value(&format!("{PREFIX}/sim/{iccid1}/state"), WAIT, |p| {
            p.contains("\"state\":\"unplugged\"") && p.contains("\"healthy\":false")
        })
        .await;

    let metrics = client()
        .get(format!("{}/metrics", daemon.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("simmask_mqtt_connected 1"), "{metrics}");
    assert!(
        metrics.contains("simmask_mqtt_events_dropped_total 0"),
        "{metrics}"
    );

    // Unplugged for longer than the grace, the SIM has left the bank: its
    // device is removed from Home Assistant while the appliance runs.
    let sim1_configs: Vec<String> = found
        .keys()
        .filter(|t| t.contains(&format!("/sim_{iccid1}_")))
        .cloned()
        .collect();
    assert_eq!(sim1_configs.len(), 12);
    let removed = |watcher: &Watcher| {
        let latest = watcher.latest();
        sim1_configs.iter().all(|t| latest[t].is_empty())
            && latest[&format!("{PREFIX}/sim/{iccid1}/state")].is_empty()
            && latest[&format!("{PREFIX}/sim/{iccid1}/availability")].is_empty()
    };
    watcher
        .wait("the unplugged SIM removed", WAIT, |_| removed(&watcher))
        .await;
    assert_eq!(configs(&watcher.latest()).len(), 18);

    // Plugged in again, it comes back as it was.
    assert!(
        sim.post("/modems/1/plug", json!({}))
            .await
            .status()
            .is_success()
    );
    watcher
        .wait("the SIM back", WAIT, |_| {
            let latest = watcher.latest();
            sim1_configs
                .iter()
                .all(|t| latest.get(t).is_some_and(|p| !p.is_empty()))
                && latest[&format!("{PREFIX}/sim/{iccid1}/availability")] == "online"
        })
        .await;
    assert_eq!(configs(&watcher.latest()).len(), 30);

    // A clean stop says offline; back without SIM 1 (unplugged while the
    // appliance was stopped), the appliance removes that SIM's device once
    // the grace is over.
    assert!(
        sim.post("/modems/1/unplug", json!({}))
            .await
            .status()
            .is_success()
    );
    assert!(daemon.process.terminate(), "a clean stop");
    watcher
        .wait_value(&format!("{PREFIX}/availability"), WAIT, |p| p == "offline")
        .await;
    daemon = Daemon::start(&config, port, 1).await;
    watcher
        .wait_value(&format!("{PREFIX}/availability"), WAIT, |p| p == "online")
        .await;
    watcher
        .wait("the SIM that left removed", WAIT, |_| removed(&watcher))
        .await;
    let latest = watcher.latest();
    assert_eq!(latest[&format!("{PREFIX}/availability")], "online");
    assert_eq!(
        configs(&latest).len(),
        18,
        "the appliance and one SIM remain"
    );

    // Killed outright, it cannot say goodbye: the broker says it for it,
    // with the last will.
    daemon.process.signal(Signal::SIGKILL);
    watcher
        .wait_value(&format!("{PREFIX}/availability"), WAIT, |p| p == "offline")
        .await;
    drop(daemon);
}

const ACL: &str = "user simmask
topic readwrite simmask/attic/#
topic readwrite homeassistant/#

user ha
topic read simmask/#
topic readwrite simmask/attic/command/#
topic readwrite homeassistant/#

user viewer
topic read #
";

fn audit(db: &std::path::Path) -> Vec<(String, String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut statement = conn
        .prepare("SELECT actor, action, object FROM audit WHERE actor = 'mqtt' ORDER BY id")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_over_tls_work_only_when_enabled_and_allowed_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(
        dir.path(),
        &Setup {
            users: vec![("simmask", "s3cret"), ("ha", "h0me"), ("viewer", "l00k")],
            acl: Some(ACL.into()),
            tls: true,
        },
    );
    let sim = Sim::start(dir.path(), 1, "generic");
    let iccid = sim.iccid(0);
    let port = free_port();
    let extra = format!(
        "[appliance]\nname = \"Attic\"\n\n[mqtt]\nurl = \"mqtts://localhost:{}\"\nusername = \"simmask\"\npassword = \"s3cret\"\nca_file = \"{}\"\ncommands = true\npublish_numbers = true\npublish_bodies = true\n",
        broker.port,
        broker.ca.as_ref().unwrap().display()
    );
    let config = write_config(dir.path(), &sim, port, &extra);
    let daemon = Daemon::start(&config, port, 1).await;
    let ha = Watcher::connect(
        &broker,
        Some(("ha", "h0me")),
        &["simmask/#", "homeassistant/#"],
    )
    .await;
    let viewer = Watcher::connect(&broker, Some(("viewer", "l00k")), &["#"]).await;
    ha.wait_value(&format!("{PREFIX}/availability"), WAIT, |p| p == "online")
        .await;
    // With commands on, a SIM has a switch and a USSD box.
    let switch = format!("homeassistant/switch/{NODE}/sim_{iccid}_enabled/config");
    let text = format!("homeassistant/text/{NODE}/sim_{iccid}_ussd/config");
    ha.wait("the command entities", WAIT, |_| {
        let latest = ha.latest();
        latest.contains_key(&switch) && latest.contains_key(&text)
    })
    .await;
    let latest = ha.latest();
    let switch: Value = serde_json::from_str(&latest[&switch]).unwrap();
    assert_eq!(
        switch["command_topic"],
        format!("{PREFIX}/command/sim_enabled")
    );
    check_config(
        &format!("homeassistant/switch/{NODE}/sim_{iccid}_enabled/config"),
        &switch,
        &latest,
    );

    // The broker's ACL is the authentication: a viewer's command never
    // reaches the appliance.
    let command =
        |enabled: bool, id: &str| json!({"sim": iccid, "enabled": enabled, "id": id}).to_string();
    viewer
        .publish(
            &format!("{PREFIX}/command/sim_enabled"),
            &command(false, "v1"),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(numbers(&daemon).await.iter().all(|n| n["enabled"] == true));

    // Home Assistant's switch: the payload it sends when turned off.
    let result_topic = format!("{PREFIX}/command/sim_enabled/result");
    ha.publish(
        &format!("{PREFIX}/command/sim_enabled"),
        switch["payload_off"].as_str().unwrap(),
    )
    .await;
    ha.wait_value(&result_topic, WAIT, |p| p.contains("\"ok\":true"))
        .await;
    assert!(numbers(&daemon).await.iter().all(|n| n["enabled"] == false));
    ha.wait_value(&format!("{PREFIX}/sim/{iccid}/state"), WAIT, |p| {
        p.contains("\"enabled\":false")
    })
    .await;
    ha.publish(
        &format!("{PREFIX}/command/sim_enabled"),
        &command(true, "h2"),
    )
    .await;
    let result = ha
        .wait_value(&result_topic, WAIT, |p| p.contains("\"h2\""))
        .await;
    let result: Value = serde_json::from_str(&result).unwrap();
    assert_eq!(
        result,
        json!({"command": "sim_enabled", "id": "h2", "ok": true, "sim": iccid, "enabled": true})
    );

    // USSD: the reply comes back, to the result and to the SIM's topic.
    ha.publish(
        &format!("{PREFIX}/command/ussd"),
        &json!({"sim": iccid, "code": "*100#", "id": "u1"}).to_string(),
    )
    .await;
    let reply = ha
        .wait_value(&format!("{PREFIX}/command/ussd/result"), WAIT, |p| {
            p.contains("\"u1\"")
        })
        .await;
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(
        reply["reply"].as_str().unwrap().contains("balance"),
        "{reply}"
    );
    let on_sim = ha
        .wait_value(&format!("{PREFIX}/sim/{iccid}/ussd"), WAIT, |_| true)
        .await;
    assert!(on_sim.contains("balance"), "{on_sim}");

    // Configured so, events name the participants and carry the text.
    let session = daemon.open_session(A, B, json!({})).await;
    let id = session["id"].as_str().unwrap();
    let proxy = session["proxy_number"].as_str().unwrap();
    sim.handset_sms(A, proxy, "disclosed on purpose").await;
    let received = ha
        .wait("message_relayed", WAIT, |all| {
            !events(all, "message_relayed").is_empty()
        })
        .await;
    let relayed = &events(&received, "message_relayed")[0];
    assert_eq!(relayed["interaction"]["from"], A, "{relayed}");
    assert_eq!(relayed["interaction"]["to"], B, "{relayed}");
    assert_eq!(relayed["interaction"]["body"], "disclosed on purpose");

    // Closing a session; a bad command is refused with a reason.
    ha.publish(
        &format!("{PREFIX}/command/session_close"),
        &json!({"session_id": id}).to_string(),
    )
    .await;
    ha.wait_value(
        &format!("{PREFIX}/command/session_close/result"),
        WAIT,
        |p| p.contains("\"status\":\"closed\""),
    )
    .await;
    let closed = daemon.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(closed["status"], "closed", "{closed}");
    ha.wait("session_closed", WAIT, |all| {
        !events(all, "session_closed").is_empty()
    })
    .await;
    ha.publish(&format!("{PREFIX}/command/ussd"), "*100#").await;
    ha.wait_value(&format!("{PREFIX}/command/ussd/result"), WAIT, |p| {
        p.contains("\"invalid_json\"")
    })
    .await;

    let trail = audit(&dir.path().join("simmask.db"));
    let actions: Vec<&str> = trail.iter().map(|(_, action, _)| action.as_str()).collect();
    assert_eq!(
        actions,
        ["sim.disable", "sim.enable", "sim.ussd", "session.close"],
        "{trail:?}"
    );
    assert_eq!(trail[2].2, iccid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_traffic_loses_no_relay_and_publishing_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), &Setup::default());
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    let config = write_config(dir.path(), &sim, port, &mqtt_config(&broker, ""));
    let daemon = Daemon::start(&config, port, 1).await;
    let before = Watcher::connect(&broker, None, &["simmask/#"]).await;
    before
        .wait_value(&format!("{PREFIX}/availability"), WAIT, |p| p == "online")
        .await;
    let session = daemon.open_session(A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    let relayed_ids = |all: &[Received]| -> BTreeSet<i64> {
        events(all, "message_relayed")
            .iter()
            .filter_map(|e| e["interaction_id"].as_i64())
            .collect()
    };

    for i in 1..=3 {
        sim.handset_sms(A, &proxy, &format!("message {i}")).await;
    }
    assert_eq!(sim.wait_messages(B, 3, WAIT).await.len(), 3);
    before
        .wait("three events", WAIT, |all| relayed_ids(all).len() == 3)
        .await;

    // The broker dies: the relay goes on, as fast as before.
    broker.kill();
    let started = std::time::Instant::now();
    for i in 4..=7 {
        sim.handset_sms(A, &proxy, &format!("message {i}")).await;
    }
    assert_eq!(sim.wait_messages(B, 7, WAIT).await.len(), 7);
    let while_down = started.elapsed();
    assert!(
        while_down < Duration::from_secs(30),
        "relaying without a broker took {while_down:?}"
    );

    // Down a while longer: the appliance keeps trying, backing off.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // It comes back: what was held is published, and what follows too.
    broker.restart();
    let after = Watcher::connect(&broker, None, &["simmask/#", "homeassistant/#"]).await;
    for i in 8..=10 {
        sim.handset_sms(A, &proxy, &format!("message {i}")).await;
    }
    let at_b = sim.wait_messages(B, 10, WAIT).await;
    let texts: Vec<&str> = at_b.iter().filter_map(|m| m["text"].as_str()).collect();
    let expected: Vec<String> = (1..=10).map(|i| format!("message {i}")).collect();
    assert_eq!(texts, expected, "every message relayed, in order");
    after
        .wait(
            "every relay's event, once the broker is back",
            WAIT,
            |all| {
                let ids: BTreeSet<i64> = relayed_ids(&before.all())
                    .union(&relayed_ids(all))
                    .copied()
                    .collect();
                ids.len() == 10
            },
        )
        .await;
    // The snapshot on reconnecting (availability, discovery) is queued
    // beside the held events, so it may land just after the last of them.
    after
        .wait(
            "availability and discovery published again to the restarted broker",
            WAIT,
            |all| {
                let latest: BTreeMap<String, String> = all
                    .iter()
                    .map(|m| (m.topic.clone(), m.payload.clone()))
                    .collect();
                latest
                    .get(&format!("{PREFIX}/availability"))
                    .map(String::as_str)
                    == Some("online")
                    && !configs(&latest).is_empty()
            },
        )
        .await;
    let metrics = client()
        .get(format!("{}/metrics", daemon.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("simmask_mqtt_events_dropped_total 0"),
        "{metrics}"
    );
}

/// Every event's id among `received` (events carry the bus's sequence).
fn event_ids(received: &[Received]) -> BTreeSet<u64> {
    received
        .iter()
        .filter(|m| m.topic.starts_with(&format!("{PREFIX}/events/")))
        .filter_map(|m| m.json()["id"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_away_costs_at_most_the_queue_and_every_event_dropped_is_counted() {
    const QUEUE: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(dir.path(), &Setup::default());
    let sim = Sim::start(dir.path(), 1, "generic");
    let port = free_port();
    let config = write_config(
        dir.path(),
        &sim,
        port,
        &mqtt_config(&broker, &format!("queue_size = {QUEUE}")),
    );
    let daemon = Daemon::start(&config, port, 1).await;
    let before = Watcher::connect(&broker, None, &["simmask/#"]).await;
    before
        .wait_value(&format!("{PREFIX}/availability"), WAIT, |p| p == "online")
        .await;
    let session = daemon.open_session(A, B, json!({})).await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();

    // With the broker up: how long an event takes from the bus (its `at`)
    // to a subscriber, printed (a figure, not a test).
    for i in 1..=10 {
        sim.handset_sms(A, &proxy, &format!("up {i}")).await;
    }
    assert_eq!(sim.wait_messages(B, 10, WAIT).await.len(), 10);
    let received = before
        .wait("ten relays", WAIT, |all| {
            events(all, "message_relayed").len() == 10
        })
        .await;
    let mut latencies: Vec<f64> = received
        .iter()
        .filter(|m| m.topic == format!("{PREFIX}/events/message_relayed"))
        .map(|m| {
            let at = time::OffsetDateTime::parse(
                m.json()["at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            (m.arrived - at).as_seconds_f64() * 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "mqtt publish latency, event on the bus to a subscriber, 10 relays: median {:.1} ms, max {:.1} ms",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    let first = *event_ids(&received).first().unwrap();

    // The broker goes away; far more events than the queue holds happen.
    broker.kill();
    for i in 1..=20 {
        sim.handset_sms(A, &proxy, &format!("away {i}")).await;
    }
    assert_eq!(sim.wait_messages(B, 30, WAIT).await.len(), 30);

    // Back: what the queue held is published, the newest events; each one
    // dropped is counted, in the appliance's state and in the metrics. The
    // daemon is held still (SIGSTOP) until the watcher has subscribed: its
    // reconnection publishes the queue at once, and on a loaded machine it
    // could otherwise come before the watcher's subscription, so that the
    // held events were published to nobody (seen twice in whole runs).
    daemon.process.signal(Signal::SIGSTOP);
    broker.restart();
    let restarted = time::OffsetDateTime::now_utc();
    let after = Watcher::connect(&broker, None, &["simmask/#"]).await;
    daemon.process.signal(Signal::SIGCONT);
    let state = after
        .wait_value(&format!("{PREFIX}/state"), WAIT, |p| {
            serde_json::from_str::<Value>(p).unwrap_or_default()["events_dropped"]
                .as_u64()
                .is_some_and(|n| n > 0)
        })
        .await;
    let dropped = serde_json::from_str::<Value>(&state).unwrap()["events_dropped"]
        .as_u64()
        .unwrap();
    // Let the queue drain: until what arrived accounts for every event
    // since the first (arrived or counted as dropped) and nothing more has
    // come for a second; bounded, the assertions below then say what is
    // wrong. A fixed pause was too short on a loaded machine.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (mut arrived, mut quiet_since) = (0, tokio::time::Instant::now());
    loop {
        let all = after.all();
        if all.len() != arrived {
            (arrived, quiet_since) = (all.len(), tokio::time::Instant::now());
        }
        let seen: BTreeSet<u64> = event_ids(&before.all())
            .union(&event_ids(&all))
            .copied()
            .collect();
        let accounted = seen
            .last()
            .is_some_and(|newest| seen.len() as u64 + dropped == newest - first + 1);
        if (accounted && quiet_since.elapsed() >= Duration::from_secs(1))
            || tokio::time::Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held: Vec<Received> = after
        .all()
        .into_iter()
        .filter(|m| m.topic.starts_with(&format!("{PREFIX}/events/")))
        .filter(|m| {
            time::OffsetDateTime::parse(
                m.json()["at"].as_str().unwrap_or_default(),
                &time::format_description::well_known::Rfc3339,
            )
            .is_ok_and(|at| at < restarted)
        })
        .collect();
    let held_ids = event_ids(&held);
    assert!(
        held_ids.len() <= QUEUE,
        "at most the queue is held: {held_ids:?}"
    );
    // Nothing lost uncounted: every event since the first seen either
    // arrived or is counted as dropped.
    let seen: BTreeSet<u64> = event_ids(&before.all())
        .union(&event_ids(&after.all()))
        .copied()
        .collect();
    let newest = *seen.last().unwrap();
    let span = newest - first + 1;
    assert_eq!(
        seen.len() as u64 + dropped,
        span,
        "events {first}..={newest}: {} arrived, {dropped} counted as dropped",
        seen.len()
    );
    // The oldest went first: what was held is the newest of the outage.
    let missing: BTreeSet<u64> = (first..=newest).filter(|id| !seen.contains(id)).collect();
    assert!(
        held_ids
            .iter()
            .all(|held| missing.iter().all(|gone| gone < held)),
        "held {held_ids:?}, dropped {missing:?}"
    );
    println!(
        "mqtt outbox of {QUEUE} with the broker away for 20 relays: {} events held and published on return, {dropped} dropped and counted",
        held_ids.len()
    );
    let metrics = client()
        .get(format!("{}/metrics", daemon.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("simmask_mqtt_events_dropped_total {dropped}")),
        "{metrics}"
    );
}
