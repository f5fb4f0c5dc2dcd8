//! Gateway-wide counters (never per name or per user: labels would grow without bound).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of the gateway's counters; `open_*` are gauges, the rest count since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// TCP connections open now (page, health checks and websockets).
    pub open_sockets: u64,
    /// Websockets open now.
    pub open_websockets: u64,
    /// TCP connections accepted.
    pub accepted: u64,
    /// Sessions that sent `open` to a core.
    pub sessions: u64,
    /// Sessions that ended with `Event::Done`.
    pub sessions_done: u64,
    /// Sessions that ended with an `error` message.
    pub session_errors: u64,
    /// Websocket upgrades refused for their `Origin` (403).
    pub refused_origin: u64,
    /// Connections refused over `max_sockets_per_ip` (429).
    pub refused_per_ip: u64,
    /// Connections refused over `max_sockets` (503).
    pub refused_full: u64,
    /// Malformed or over-long request heads (400).
    pub bad_requests: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub open_websockets: AtomicU64,
    pub accepted: AtomicU64,
    pub sessions: AtomicU64,
    pub sessions_done: AtomicU64,
    pub session_errors: AtomicU64,
    pub refused_origin: AtomicU64,
    pub refused_per_ip: AtomicU64,
    pub refused_full: AtomicU64,
    pub bad_requests: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// Counts one open websocket while alive.
pub(crate) struct WebSocketGauge<'a>(&'a Counters);

impl Counters {
    pub fn websocket_opened(&self) -> WebSocketGauge<'_> {
        bump(&self.open_websockets);
        WebSocketGauge(self)
    }

    pub fn snapshot(&self, open_sockets: usize) -> GatewayStats {
        GatewayStats {
            open_sockets: open_sockets as u64,
            open_websockets: self.open_websockets.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            sessions: self.sessions.load(Relaxed),
            sessions_done: self.sessions_done.load(Relaxed),
            session_errors: self.session_errors.load(Relaxed),
            refused_origin: self.refused_origin.load(Relaxed),
            refused_per_ip: self.refused_per_ip.load(Relaxed),
            refused_full: self.refused_full.load(Relaxed),
            bad_requests: self.bad_requests.load(Relaxed),
        }
    }
}

impl Drop for WebSocketGauge<'_> {
    fn drop(&mut self) {
        self.0.open_websockets.fetch_sub(1, Relaxed);
    }
}
