//! `simmask status [--watch]`: a running appliance at a glance, read from
//! its API (`GET /api/v1/status`), never from its ports or its database:
//! what `mmcli -m 0` is to ModemManager.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use time::OffsetDateTime;

use super::{DEFAULT_CONFIG, Output, output};
use crate::config::Config;

/// Options of `simmask status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Refresh in place until Ctrl-C (JSON: one line per refresh).
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2.0)]
    pub interval: f64,
    /// The API's address, e.g. `http://127.0.0.1:8080` (default: the configuration's `[api] listen`).
    #[arg(long)]
    pub url: Option<String>,
    /// An API token, viewer or admin (`simmask token create NAME`).
    #[arg(long, env = "SIMMASK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The configuration file, read for `[api] listen` when there is no --url.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// The API's base URL: `--url`, else `[api] listen` (a wildcard address
/// is reached on loopback).
fn base_url(args: &StatusArgs) -> anyhow::Result<String> {
    if let Some(url) = &args.url {
        return Ok(url.trim_end_matches('/').to_string());
    }
    let config = Config::load(&args.config)
        .context("no --url: the API address comes from the configuration")?;
    let mut address: std::net::SocketAddr = config.api.listen.parse()?;
    if address.ip().is_unspecified() {
        address.set_ip(if address.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(format!("http://{address}"))
}

pub fn run(args: StatusArgs, out: Output) -> anyhow::Result<ExitCode> {
    let url = base_url(&args)?;
    let token = args.token.clone().context(
        "a token is needed: --token or SIMMASK_TOKEN (create one with `simmask token create NAME`)",
    )?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    super::runtime()?.block_on(async {
        if !args.watch {
            let status = fetch(&client, &url, &token).await?;
            return out.emit(&status, |value, out| render(value, &url, out));
        }
        let every = Duration::from_secs_f64(args.interval.clamp(0.2, 3600.0));
        loop {
            let shown = match fetch(&client, &url, &token).await {
                Ok(status) if out.json => format!("{status}\n"),
                Ok(status) => format!("\x1b[H\x1b[2J{}\n", render(&status, &url, &out)),
                // A daemon restarting is what one watches for: keep trying.
                Err(error) if out.json => {
                    format!("{}\n", serde_json::json!({"error": error.to_string()}))
                }
                Err(error) => format!("\x1b[H\x1b[2J{url}: {error:#}\n(retrying)\n"),
            };
            print!("{shown}");
            use std::io::Write;
            let _ = std::io::stdout().flush();
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            }
        }
    })
}

async fn fetch(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Value> {
    let response = client
        .get(format!("{url}/api/v1/status"))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("{url}: is `simmask run` running there?"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["message"].as_str().unwrap_or("no message");
        anyhow::bail!("{url}: {status}: {message}");
    }
    Ok(body)
}

/// The status for a person.
pub fn render(status: &Value, url: &str, out: &Output) -> String {
    let mut text = String::new();
    let uptime = status["uptime_seconds"].as_u64().unwrap_or(0);
    text.push_str(&format!(
        "simmask {} at {url}, up {}\n",
        output::text(&status["version"]),
        output::duration(uptime)
    ));
    text.push_str(&clock_line(&status["now"]));
    text.push_str(&store_line(&status["store"]));

    let sims = status["sims"].as_array().cloned().unwrap_or_default();
    let healthy = sims
        .iter()
        .filter(|s| s["healthy"] == Value::Bool(true))
        .count();
    text.push_str(&format!("\nSIMs: {} ({healthy} healthy)\n", sims.len()));
    if !sims.is_empty() {
        let limits = &status["limits"];
        let mut table = output::table([
            "number",
            "state",
            "signal",
            "registration",
            "operator",
            "queue",
            "sent (minute)",
            "sent (day)",
            "sessions",
            "last error",
        ]);
        for sim in &sims {
            let used = |count: &Value, limit: &Value| match limit.as_u64() {
                Some(limit) => format!("{} / {limit}", output::text(count)),
                None => output::text(count),
            };
            let state = match (sim["enabled"].as_bool(), sim["healthy"].as_bool()) {
                (Some(false), _) => format!("{} (disabled)", output::text(&sim["state"])),
                (_, Some(false)) => format!("{} (unhealthy)", output::text(&sim["state"])),
                _ => output::text(&sim["state"]),
            };
            table.add_row(vec![
                output::text(&sim["msisdn"]),
                state,
                output::signal(&sim["signal_dbm"]),
                output::text(&sim["registration"]),
                output::text(&sim["operator"]),
                output::text(&sim["queue_depth"]),
                used(&sim["sends_last_minute"], &limits["per_minute"]),
                used(&sim["sends_last_day"], &limits["per_day"]),
                output::text(&sim["open_sessions"]),
                output::text(&sim["last_error"]),
            ]);
        }
        text.push_str(&format!("{table}\n"));
    }

    let open = status["open_sessions"].as_u64().unwrap_or(0);
    text.push_str(&format!("\nOpen sessions: {open}\n"));
    let sessions = status["sessions"].as_array().cloned().unwrap_or_default();
    if !sessions.is_empty() {
        let mut table = output::table([
            "session",
            "label",
            "participants",
            "proxy",
            "mode",
            "expires",
        ]);
        for session in &sessions {
            table.add_row(vec![
                output::text(&session["id"]),
                output::text(&session["label"]),
                super::session::participants(session, out),
                output::text(&session["proxy_number"]),
                output::text(&session["mode"]),
                if session["expires_at"].is_null() {
                    "never".into()
                } else {
                    output::when(&session["expires_at"])
                },
            ]);
        }
        text.push_str(&format!("{table}\n"));
        if open as usize > sessions.len() {
            text.push_str(&format!("(the newest {} shown)\n", sessions.len()));
        }
    }

    let recent = status["recent"].as_array().cloned().unwrap_or_default();
    text.push_str("\nLast relays and calls:\n");
    if recent.is_empty() {
        text.push_str("none yet\n");
    } else {
        let mut table = output::table(["time", "kind", "from → to", "via", "status", "detail"]);
        for item in &recent {
            let number = |v: &Value| v.as_str().map_or("-".into(), |n| out.number(n));
            let detail = [&item["outcome"], &item["reason"]]
                .iter()
                .filter_map(|v| v.as_str().filter(|s| !s.is_empty()))
                .collect::<Vec<_>>()
                .join(": ");
            let mut detail = if detail.is_empty() {
                "-".to_string()
            } else {
                detail
            };
            if let Some(seconds) = item["duration_seconds"].as_f64() {
                detail.push_str(&format!(" ({})", output::duration(seconds.round() as u64)));
            }
            table.add_row(vec![
                output::when(&item["created_at"]),
                output::text(&item["kind"]),
                format!("{} → {}", number(&item["from"]), number(&item["to"])),
                output::text(&item["proxy_number"]),
                output::text(&item["status"]),
                detail,
            ]);
        }
        text.push_str(&format!("{table}\n"));
    }
    text
}

/// The appliance's clock and how far it is from this machine's.
fn clock_line(now: &Value) -> String {
    let parsed = now.as_str().and_then(|t| {
        OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    match parsed {
        Some(at) => {
            let skew = (at - OffsetDateTime::now_utc()).as_seconds_f64();
            let verdict = if skew.abs() < 2.0 {
                "in step with this machine".to_string()
            } else {
                format!("{skew:+.1} s from this machine's clock")
            };
            format!("clock: {} ({verdict})\n", output::when(now))
        }
        None => "clock: unknown\n".into(),
    }
}

fn store_line(store: &Value) -> String {
    if store["ok"] != Value::Bool(true) {
        return format!("store: FAILING: {}\n", output::text(&store["error"]));
    }
    let schema = if store["schema"] == store["schema_latest"] {
        format!("schema {}", output::text(&store["schema"]))
    } else {
        format!(
            "schema {} of {}",
            output::text(&store["schema"]),
            output::text(&store["schema_latest"])
        )
    };
    format!(
        "store: ok, {schema}, {} + {} write-ahead log, answered in {:.1} ms\n",
        output::bytes(store["database_bytes"].as_u64().unwrap_or(0)),
        output::bytes(store["wal_bytes"].as_u64().unwrap_or(0)),
        store["latency_ms"].as_f64().unwrap_or(0.0)
    )
}
