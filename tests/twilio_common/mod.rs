//! What the Twilio facade's tests share: the account, the Python of
//! `scripts/twilio-client`, API tokens, the scripts of tests/twilio and a
//! form POST to the facade. Used beside `mod common;`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::common::{ADMIN_TOKEN, Daemon, Sim, client};

pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "a-secret-that-signs-callbacks";

/// The virtual environment's Python, which `scripts/twilio-client` makes.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("SIMMASK_TWILIO_PYTHON") {
        return PathBuf::from(path);
    }
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/twilio-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/twilio-client (scripts/test does) to install the \
         twilio library from PyPI",
        python.display()
    );
    python
}

pub async fn token(daemon: &Daemon, name: &str, role: &str) -> String {
    let created: Value = client()
        .post(format!("{}/api/v1/tokens", daemon.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": name, "role": role}))
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("token JSON");
    created["token"].as_str().expect("token").to_string()
}

/// Runs one of tests/twilio's scripts against the daemon; answers the JSON
/// line it prints.
pub async fn run_script(
    name: &str,
    daemon: &Daemon,
    sim: &Sim,
    admin: &str,
    viewer: &str,
    proxies: &[String],
) -> Value {
    let python = python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/twilio")
        .join(name);
    let mut command = Command::new(python);
    command
        .arg(script)
        .env("SIMMASK_URL", &daemon.url)
        .env("SIM_CONTROL", &sim.control)
        .env("TWILIO_ACCOUNT_SID", ACCOUNT)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("ADMIN_TOKEN", admin)
        .env("VIEWER_TOKEN", viewer)
        .env("PROXIES", serde_json::to_string(proxies).unwrap());
    let output = tokio::task::spawn_blocking(move || command.output().expect("python runs"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the twilio client script {name} failed:\n{stderr}\n{stdout}"
    );
    serde_json::from_str(stdout.trim()).expect("the script's JSON line")
}

pub async fn facade_post(daemon: &Daemon, token: &str, path: &str, form: &[(&str, &str)]) -> Value {
    let response = client()
        .post(format!("{}/twilio/v1{path}", daemon.url))
        .basic_auth(ACCOUNT, Some(token))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form.iter())
                .finish(),
        )
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status}: {body}");
    body
}
