//! Prometheus metrics. Counters are fed from the event bus in one place
//! ([`count`], registered on a bus by [`observe`]), so every component that
//! publishes an event is counted the same way; the relay and the bridge
//! time themselves into histograms ([`relay_latency`], [`call_setup`]), in
//! seconds as Prometheus' conventions ask. Per-SIM gauges are rendered by
//! the API at scrape time from the live state, so a SIM whose signal is
//! unknown has no sample at all (not NaN). The API serves [`handle`]'s
//! rendering at `/metrics`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::events::{Event, EventBus};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(RELAY_LATENCY.into()), RELAY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(CALL_SETUP.into()), CALL_SETUP_BUCKETS)
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Only fails if another recorder is installed; ours then renders empty.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

/// From an inbound SMS committed to its relay accepted by the network.
const RELAY_LATENCY: &str = "simmask_relay_latency_seconds";
/// From a call reaching the proxy to the other participant answering.
const CALL_SETUP: &str = "simmask_call_setup_seconds";
/// A relay within the same second is the norm; rate limits and retries
/// push some to minutes.
const RELAY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];
/// A phone rings for seconds; the ring timeout is 30 s by default.
const CALL_SETUP_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 30.0, 45.0, 60.0];

/// Observes one relay's latency.
pub fn relay_latency(latency: Duration) {
    handle();
    metrics::histogram!(RELAY_LATENCY).record(latency.as_secs_f64());
}

/// Observes one bridged call's set-up time.
pub fn call_setup(setup: Duration) {
    handle();
    metrics::histogram!(CALL_SETUP).record(setup.as_secs_f64());
}

/// Events the MQTT publisher could not keep: its queue was full while the
/// broker was away or slow, or it fell behind the event bus.
const MQTT_EVENTS_DROPPED: &str = "simmask_mqtt_events_dropped_total";
/// 1 while the MQTT publisher is connected to its broker.
const MQTT_CONNECTED: &str = "simmask_mqtt_connected";

/// Counts `count` events the MQTT publisher dropped.
pub fn mqtt_events_dropped(count: u64) {
    handle();
    metrics::counter!(MQTT_EVENTS_DROPPED).increment(count);
}

/// Whether the MQTT publisher is connected now.
pub fn mqtt_connected(connected: bool) {
    handle();
    metrics::gauge!(MQTT_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

fn describe() {
    metrics::describe_gauge!(
        "simmask_build_info",
        "Always 1; the labels say which simmask this is"
    );
    metrics::gauge!("simmask_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::describe_histogram!(
        RELAY_LATENCY,
        metrics::Unit::Seconds,
        "From an inbound SMS stored to its relay accepted by the network"
    );
    metrics::describe_histogram!(
        CALL_SETUP,
        metrics::Unit::Seconds,
        "From a call reaching the proxy to the other participant answering"
    );
    metrics::describe_counter!("simmask_sessions_opened_total", "Sessions opened");
    metrics::describe_counter!(
        "simmask_sessions_ended_total",
        "Sessions ended, by how (closed, expired)"
    );
    metrics::describe_counter!("simmask_messages_relayed_total", "SMS relayed");
    metrics::describe_counter!(
        "simmask_messages_delivered_total",
        "Relayed SMS confirmed delivered"
    );
    metrics::describe_counter!(
        "simmask_messages_failed_total",
        "SMS that could not be relayed"
    );
    metrics::describe_counter!("simmask_calls_total", "Calls, by outcome");
    metrics::describe_counter!("simmask_modem_events_total", "Modems up and down");
    metrics::describe_counter!(
        MQTT_EVENTS_DROPPED,
        "Events not published to MQTT: the queue was full while the broker was away or slow"
    );
    metrics::describe_gauge!(
        MQTT_CONNECTED,
        "1 while connected to the MQTT broker ([mqtt] on)"
    );
}

/// One SIM's gauges at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct SimGauges {
    pub iccid: String,
    /// Absent when the modem has not reported one: no sample is written.
    pub signal_dbm: Option<i32>,
    pub healthy: bool,
    pub queue_depth: u32,
    /// Sends in the last minute and day, against the SIM's limits.
    pub sends_last_minute: u32,
    pub sends_last_day: u32,
}

/// The per-SIM gauges in Prometheus text format, to append to [`handle`]'s
/// rendering.
pub fn render_sim_gauges(sims: &[SimGauges]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut family = |name: &str, help: &str, value: &dyn Fn(&SimGauges) -> Option<f64>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for sim in sims {
            if let Some(value) = value(sim) {
                let _ = writeln!(out, "{name}{{iccid=\"{}\"}} {value}", sim.iccid);
            }
        }
        out.push('\n');
    };
    family(
        "simmask_sim_signal_dbm",
        "Signal of each SIM's modem, dBm (absent when unknown)",
        &|s| s.signal_dbm.map(f64::from),
    );
    family(
        "simmask_sim_healthy",
        "1 when a SIM can serve sessions",
        &|s| Some(if s.healthy { 1.0 } else { 0.0 }),
    );
    family(
        "simmask_sim_queue_depth",
        "Outbound SMS waiting or being sent, per SIM",
        &|s| Some(f64::from(s.queue_depth)),
    );
    family(
        "simmask_sim_sends_last_minute",
        "Send attempts in the last 60 s, per SIM (the per-minute limit applies)",
        &|s| Some(f64::from(s.sends_last_minute)),
    );
    family(
        "simmask_sim_sends_last_day",
        "Send attempts in the last 24 h, per SIM (the per-day limit applies)",
        &|s| Some(f64::from(s.sends_last_day)),
    );
    out
}

/// Counts every event published on `bus` from now on (once per bus).
pub fn observe(bus: &EventBus) {
    handle();
    bus.observe("metrics", Arc::new(count));
}

/// Counts one event.
pub fn count(event: &Event) {
    handle();
    match event {
        Event::SessionOpened { mode, .. } => {
            metrics::counter!("simmask_sessions_opened_total", "mode" => mode.clone()).increment(1)
        }
        Event::SessionClosed { .. } => {
            metrics::counter!("simmask_sessions_ended_total", "how" => "closed").increment(1)
        }
        Event::SessionExpired { .. } => {
            metrics::counter!("simmask_sessions_ended_total", "how" => "expired").increment(1)
        }
        Event::MessageRelayed { .. } => {
            metrics::counter!("simmask_messages_relayed_total").increment(1)
        }
        Event::MessageDelivered { .. } => {
            metrics::counter!("simmask_messages_delivered_total").increment(1)
        }
        Event::MessageFailed { .. } => {
            metrics::counter!("simmask_messages_failed_total").increment(1)
        }
        // Counted where it shows: the hubs are listed, and a removed hub's
        // sessions are `session_closed` events.
        Event::CallBridged { .. } | Event::HubCreated { .. } | Event::HubRemoved { .. } => {}
        Event::CallEnded { outcome, .. } => {
            metrics::counter!("simmask_calls_total", "outcome" => outcome.clone()).increment(1)
        }
        Event::ModemUp { .. } => {
            metrics::counter!("simmask_modem_events_total", "event" => "up").increment(1)
        }
        Event::ModemDown { .. } => {
            metrics::counter!("simmask_modem_events_total", "event" => "down").increment(1)
        }
        Event::MessageBlocked { rule, .. } => {
            metrics::counter!("simmask_messages_blocked_total", "rule" => rule.clone()).increment(1)
        }
        Event::LoopDetected { .. } => metrics::counter!("simmask_loops_total").increment(1),
        Event::OptedOut { .. } => {
            metrics::counter!("simmask_opt_outs_total", "keyword" => "stop").increment(1)
        }
        Event::OptedIn { .. } => {
            metrics::counter!("simmask_opt_outs_total", "keyword" => "start").increment(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_signal_has_no_sample() {
        let sim = |iccid: &str, signal_dbm| SimGauges {
            iccid: iccid.into(),
            signal_dbm,
            healthy: true,
            queue_depth: 2,
            sends_last_minute: 1,
            sends_last_day: 9,
        };
        let text = render_sim_gauges(&[sim("1", Some(-71)), sim("2", None)]);
        assert!(
            text.contains("simmask_sim_signal_dbm{iccid=\"1\"} -71\n"),
            "{text}"
        );
        assert!(
            !text.contains("simmask_sim_signal_dbm{iccid=\"2\"}"),
            "{text}"
        );
        assert!(!text.contains("NaN"), "{text}");
        assert!(
            text.contains("simmask_sim_sends_last_day{iccid=\"2\"} 9\n"),
            "{text}"
        );
    }

    #[test]
    fn latencies_are_histograms_in_seconds_and_the_build_is_named() {
        relay_latency(Duration::from_millis(300));
        call_setup(Duration::from_secs(4));
        let text = handle().render();
        assert!(
            text.contains("simmask_relay_latency_seconds_bucket{le=\"0.5\"}"),
            "{text}"
        );
        assert!(
            text.contains("simmask_call_setup_seconds_bucket{le=\"5\"}"),
            "{text}"
        );
        assert!(text.contains("simmask_build_info{version=\""), "{text}");
    }
}
