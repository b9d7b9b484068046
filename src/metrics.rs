//! Prometheus metrics. Counters are fed from the event bus in one place
//! ([`count`], registered on a bus by [`observe`]), so every component that
//! publishes an event is counted the same way; gauges (signal, queue depth)
//! are set by their owners. The API serves [`handle`]'s rendering at
//! `/metrics`.

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::events::{Event, EventBus};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Only fails if another recorder is installed; ours then renders empty.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
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
    metrics::describe_gauge!("simmask_sim_signal_dbm", "Signal of each SIM's modem, dBm");
    metrics::describe_gauge!("simmask_sim_healthy", "1 when a SIM can serve sessions");
    metrics::describe_gauge!(
        "simmask_sim_queue_depth",
        "Outbound SMS waiting or being sent, per SIM"
    );
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
        Event::CallBridged { .. } => {}
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
