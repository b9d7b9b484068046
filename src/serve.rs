//! Serving an axum router on a TCP listener with the limits a service on a
//! network it does not control needs: a deadline for each request's
//! headers (which is also how long a kept-alive connection may sit idle), a
//! cap on open connections with a reserve behind it, and a bounded drain at
//! shutdown. Used by the API and by the simulator's control API, so it
//! knows nothing of either: what a reserve connection may do is decided by
//! the router, which finds the connection's [`Slot`] among the request's
//! extensions (beside axum's `ConnectInfo<SocketAddr>`).
//!
//! The HTTP/1 connection itself is hyper's (`http1::Builder` with its
//! `header_read_timeout`, re-armed by hyper each time a kept-alive
//! connection goes back to waiting for a request, and hyper-util's
//! graceful shutdown). The connection cap is counted here: hyper and
//! hyper-util have none, and `tower::limit` bounds requests in flight
//! inside one connection's service, not sockets, and makes the excess wait
//! instead of refusing it, which is what exhausts descriptors.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How connections are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// A request's headers must have arrived this long after the connection
    /// opened or its previous response was sent, or the connection is
    /// closed: slow, dripped and idle connections alike.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections accepted beyond `max_connections` when every one of
    /// those is busy; the router decides what they may ask (see [`Slot`]).
    /// Each serves one request, whose headers must arrive within
    /// [`RESERVE_HEADER_TIMEOUT`] (or `header_read_timeout`, if shorter).
    pub reserve_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 256,
            reserve_connections: 16,
        }
    }
}

/// How long a reserve connection may take to send its one request's headers.
pub const RESERVE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long open connections get to finish their answers at shutdown
/// before they are closed (an event stream never finishes by itself).
pub const DRAIN: Duration = Duration::from_secs(3);

/// Which pool a connection was admitted to: a request extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Within `max_connections`.
    Regular,
    /// Beyond it, while every regular connection is busy.
    Reserve,
}

/// The fixed answer to a connection refused before anything is read from it.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 90\r\n\r\n{\"error\":\"too_many_connections\",\"message\":\"every connection slot is busy: try again soon\"}";

/// One admitted connection, as the registry sees it.
struct Entry {
    id: u64,
    /// Set once the connection's first request has arrived: from then on it
    /// is a client's, not a socket held open for nothing.
    started: Arc<AtomicBool>,
    evict: CancellationToken,
}

/// The open connections of both pools, oldest first.
#[derive(Default)]
struct Registry {
    regular: VecDeque<Entry>,
    reserve: VecDeque<Entry>,
}

/// Closes the oldest connection of `pool` that has not sent a request yet,
/// and says whether there was one.
fn evict_oldest_silent(pool: &mut VecDeque<Entry>) -> bool {
    let Some(at) = pool
        .iter()
        .position(|entry| !entry.started.load(Ordering::Relaxed))
    else {
        return false;
    };
    if let Some(entry) = pool.remove(at) {
        entry.evict.cancel();
    }
    true
}

/// The connection cap. A connection that has not sent its first request
/// is the one given up when the cap is reached: the oldest such is closed
/// to make room, so sockets opened and held silent (a flood, a scanner)
/// push each other out while clients that ask something get served.
#[derive(Clone, Default)]
struct Slots {
    registry: Arc<Mutex<Registry>>,
    next_id: Arc<AtomicU64>,
}

/// A connection's place in the registry, released when dropped.
struct Admission {
    slots: Slots,
    slot: Slot,
    id: u64,
    started: Arc<AtomicBool>,
    evict: CancellationToken,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut registry = self
            .slots
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let pool = match self.slot {
            Slot::Regular => &mut registry.regular,
            Slot::Reserve => &mut registry.reserve,
        };
        pool.retain(|entry| entry.id != self.id);
    }
}

impl Slots {
    /// A slot for a new connection, or `None` when every slot holds a
    /// connection that is being served.
    fn admit(&self, limits: &ServeLimits) -> Option<Admission> {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let slot = if registry.regular.len() < limits.max_connections
            || evict_oldest_silent(&mut registry.regular)
        {
            Slot::Regular
        } else if registry.reserve.len() < limits.reserve_connections
            || evict_oldest_silent(&mut registry.reserve)
        {
            Slot::Reserve
        } else {
            return None;
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let started = Arc::new(AtomicBool::new(false));
        let evict = CancellationToken::new();
        let entry = Entry {
            id,
            started: started.clone(),
            evict: evict.clone(),
        };
        match slot {
            Slot::Regular => registry.regular.push_back(entry),
            Slot::Reserve => registry.reserve.push_back(entry),
        }
        Some(Admission {
            slots: self.clone(),
            slot,
            id,
            started,
            evict,
        })
    }
}

/// Whether an `accept` error is the client's (the connection died before
/// it was accepted) rather than the process's (out of descriptors).
fn client_gone(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Serves `router` on `listener` within `limits` until `shutdown` is
/// cancelled, then lets open connections finish for at most [`DRAIN`].
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) {
    let slots = Slots::default();
    let graceful = GracefulShutdown::new();
    let closing = CancellationToken::new();
    let mut refused: u64 = 0;
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if client_gone(&error) => continue,
            Err(error) => {
                // EMFILE and the like: the descriptors free up as the
                // timeouts close connections. Wait a little, not a second.
                if last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(%error, "accept failed");
                    last_warning = Some(tokio::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Some(admission) = slots.admit(&limits) else {
            refused += 1;
            if last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    refused,
                    max_connections = limits.max_connections,
                    reserve_connections = limits.reserve_connections,
                    "connection refused: every slot is busy"
                );
                last_warning = Some(tokio::time::Instant::now());
            }
            // Best effort: a client that reads gets a reason, not a reset.
            let _ = stream.try_write(REFUSAL);
            continue;
        };
        serve_connection(
            stream,
            remote,
            admission,
            &router,
            &limits,
            &graceful,
            closing.clone(),
        );
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open after the drain: closing them");
    }
    closing.cancel();
}

fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    admission: Admission,
    router: &axum::Router,
    limits: &ServeLimits,
    graceful: &GracefulShutdown,
    closing: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let slot = admission.slot;
    let started = admission.started.clone();
    let service = router.clone().map_request(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            started.store(true, Ordering::Relaxed);
            request.extensions_mut().insert(ConnectInfo(remote));
            request.extensions_mut().insert(slot);
            request
        },
    );
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new());
    match slot {
        Slot::Regular => builder.header_read_timeout(limits.header_read_timeout),
        Slot::Reserve => builder
            .header_read_timeout(limits.header_read_timeout.min(RESERVE_HEADER_TIMEOUT))
            .keep_alive(false),
    };
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        let evict = admission.evict.clone();
        tokio::select! {
            _ = connection => {}
            () = evict.cancelled() => {}
            () = closing.cancelled() => {}
        }
        drop(admission);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, reserve: usize) -> ServeLimits {
        ServeLimits {
            header_read_timeout: Duration::from_secs(1),
            max_connections: max,
            reserve_connections: reserve,
        }
    }

    #[test]
    fn silent_connections_make_room_and_busy_ones_fill_the_reserve() {
        let slots = Slots::default();
        let limits = limits(2, 1);
        let first = slots.admit(&limits).unwrap();
        let second = slots.admit(&limits).unwrap();
        assert_eq!((first.slot, second.slot), (Slot::Regular, Slot::Regular));
        // Both silent: the oldest is closed for the third.
        let third = slots.admit(&limits).unwrap();
        assert_eq!(third.slot, Slot::Regular);
        assert!(first.evict.is_cancelled() && !second.evict.is_cancelled());
        drop(first);
        // Both regular ones now serve clients: the next goes to the reserve.
        second.started.store(true, Ordering::Relaxed);
        third.started.store(true, Ordering::Relaxed);
        let reserve = slots.admit(&limits).unwrap();
        assert_eq!(reserve.slot, Slot::Reserve);
        // A silent reserve connection gives way too; a busy one does not.
        let next = slots.admit(&limits).unwrap();
        assert_eq!(next.slot, Slot::Reserve);
        assert!(reserve.evict.is_cancelled());
        drop(reserve);
        next.started.store(true, Ordering::Relaxed);
        assert!(slots.admit(&limits).is_none());
        // A closed connection frees its slot.
        drop(second);
        assert_eq!(slots.admit(&limits).unwrap().slot, Slot::Regular);
    }
}
