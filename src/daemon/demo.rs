//! `simmask demo`: the whole appliance on the virtual network, in one
//! process, with nothing to set up: a mixed bank of virtual modems, the
//! daemon driving them through their ptys, and the API and dashboard.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{RunOptions, run};
use crate::config::Config;
use crate::sim::{SimConfig, Simulator};

/// Options of `simmask demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of virtual modems (profiles mixed).
    #[arg(long, default_value_t = 4)]
    pub modems: usize,
    /// Address of the API and dashboard; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Simulator control API address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sim_control: SocketAddr,
    /// The admin token to accept (default: a new random one, printed).
    #[arg(long, env = "SIMMASK_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Where the database and modem links live (default: a fresh temporary
    /// directory, removed on exit).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// The daemon's configuration for a demo bank in `data`.
fn demo_config(data: &std::path::Path, listen: SocketAddr) -> Result<Config, anyhow::Error> {
    let text = format!(
        r#"
[api]
listen = "{listen}"

[store]
path = "{db}"

[modems]
ports = ["{links}/modem*"]
poll_interval_seconds = 5

[sms]
per_minute = 60
per_day = 2000
reassembly_timeout_seconds = 60

[sessions]
sweep_interval_seconds = 5

[out_of_session]
policy = "auto-reply"
text = "This number is a masked line: there is no open conversation for you on it."
"#,
        db = data.join("simmask.db").display(),
        links = data.join("links").display(),
    );
    Ok(Config::parse(&text, "demo")?)
}

/// Runs the demo until SIGINT or SIGTERM.
pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let own_dir = args.data.is_none();
    let data = match args.data.clone() {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("simmask-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&data)?;
    let stop = CancellationToken::new();
    super::stop_on_signals(stop.clone())?;

    let profiles = crate::profile::Profiles::builtin()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let simulator = Simulator::start(SimConfig {
        modems: args.modems,
        profiles,
        control: args.sim_control,
        links: Some(data.join("links")),
        seed: 1,
        baud: None,
    })
    .await?;

    let token = args
        .admin_token
        .clone()
        .unwrap_or_else(crate::api::auth::generate_token);
    let config = demo_config(&data, args.listen)?;
    let (ready, bound) = oneshot::channel();
    let daemon = tokio::spawn(run(
        config,
        RunOptions {
            admin_token: Some(token.clone()),
            stop: stop.clone(),
            ready: Some(ready),
            reload_from: None,
        },
    ));
    let address = match bound.await {
        Ok(address) => address,
        Err(_) => {
            // The daemon stopped before it was ready: report why.
            simulator.shutdown().await;
            return match daemon.await {
                Ok(Err(error)) => Err(error.into()),
                _ => Err(anyhow::anyhow!("the daemon stopped while starting")),
            };
        }
    };
    let url = format!("http://{address}");
    let modems: Vec<_> = simulator
        .description()
        .modems
        .iter()
        .map(|m| json!({"index": m.index, "profile": m.profile, "msisdn": m.msisdn}))
        .collect();
    // One JSON line for programs, then the same for people.
    println!(
        "{}",
        json!({
            "dashboard": format!("{url}/"),
            "api": format!("{url}/api/v1"),
            "sim_control": simulator.control_url(),
            "admin_token": token,
            "data": data.display().to_string(),
            "modems": modems,
        })
    );
    println!();
    println!("simmask demo is running.");
    println!("  dashboard:         {url}/  (sign in with the admin token)");
    println!("  admin token:       {token}");
    println!("  simulator control: {}", simulator.control_url());
    for modem in &simulator.description().modems {
        println!(
            "  proxy SIM {}:       {} ({})",
            modem.index, modem.msisdn, modem.profile
        );
    }
    println!();
    println!("Try it (two made-up phones, A and B):");
    println!(
        "  curl -s -H 'Authorization: Bearer {token}' -d '{{\"participants\":[\"+447911123456\",\"+447912345678\"]}}' -H 'content-type: application/json' {url}/api/v1/sessions"
    );
    println!(
        "  curl -s -d '{{\"to\":\"<proxy_number>\",\"text\":\"hello from A\"}}' -H 'content-type: application/json' {}/handsets/+447911123456/sms",
        simulator.control_url()
    );
    println!(
        "  curl -s {}/handsets/+447912345678/messages   # B got it, from the proxy number",
        simulator.control_url()
    );
    println!("And a masked call: A dials the proxy, B's phone rings showing the proxy, B answers:");
    println!(
        "  curl -s -d '{{\"to\":\"<proxy_number>\"}}' -H 'content-type: application/json' {}/handsets/+447911123456/dial",
        simulator.control_url()
    );
    println!(
        "  curl -s -X POST {}/handsets/+447912345678/answer; curl -s {}/handsets/+447912345678/call",
        simulator.control_url(),
        simulator.control_url()
    );
    println!("Press Ctrl-C to stop.");

    let result = daemon.await;
    simulator.shutdown().await;
    if own_dir {
        let _ = std::fs::remove_dir_all(&data);
    }
    match result {
        Ok(result) => Ok(result?),
        Err(error) => Err(anyhow::anyhow!("the daemon task failed: {error}")),
    }
}
