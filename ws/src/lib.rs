//! Flock's websocket gateway: browsers log in over a websocket (docs/PROTOCOL.md §10) and the
//! gateway relays their messages to the core that owns the appliance, through a [`CoreLink`]
//! that the server provides.
//!
//! The gateway runs on its own small multi-threaded tokio runtime (`tokio-tungstenite` for the
//! framing), apart from the glommio packet cores. The same port serves the demo page (`/`), the
//! client module (`/flock.js`), `/healthz`, `/metrics` (Prometheus text, loopback clients only
//! by default: `metrics_allow`) and the websocket (`/ws`).
//!
//! # Errors and close codes
//! A failed session sends `{"type":"error","code":…,"message":…}` and then closes with:
//! - 1008 (policy violation): `unknown-appliance`, `bad-credentials`, `denied`, `malformed` —
//!   a refusal, or a message that broke the protocol;
//! - 1009 (message too big): `too-large`;
//! - 1011 (server error): `appliance-unreachable`, `owner-down`, `timeout` — the log-in could
//!   not be completed, nobody refused it;
//! - 1013 (try again later): `busy`.
//!
//! A finished session (`Event::Done`) closes with 1000 "done"; shutdown closes with 1001
//! "going away". The close reason is the error code.
//!
//! # Bounds
//! Every socket counts against `max_sockets` and `max_sockets_per_ip` from accept to close
//! (429 / 503 when over). A request head is at most 8 KiB and must arrive, with the websocket
//! handshake, within `handshake_timeout`. A websocket reads into a `read_buffer`-sized buffer,
//! takes messages up to `max_message`, and fails after `idle_timeout` without a frame or
//! `session_timeout` in all.

mod client;
mod code;
mod config;
mod connection;
mod gateway;
mod http;
mod json;
mod limits;
mod origin;
pub mod policy;
mod replay;
mod session;
mod sink;
mod stats;
mod stream;
mod tls;

pub use config::{human as human_duration, GatewayConfig};
pub use gateway::{DrainReport, Gateway, GatewayHandle, Reconfigured};
pub use json::Persona;
pub use policy::{AllowAll, LoginAttempt, Outcome, Policy, Verdict};
pub use sink::{EventSink, Undelivered};
pub use stats::{write_metric, GatewayStats, MetricKind, MetricsSource, TlsStats};
pub use tls::{Reload, TlsConfig};

/// The browser-message parsers, for the fuzz targets in `fuzz/` only: not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::json::{decode_personas, parse, Request};

    /// Everything the gateway reads from a connection before the websocket, on `data`: the
    /// PROXY header (trusted and untrusted source), then the request head as the router, the
    /// forwarding-header walk and the redirect listener read it. Panics on a broken promise.
    pub fn connection_preface(data: &[u8]) {
        use crate::client::{self, Trusted};
        use crate::config::Net;
        use futures_util::FutureExt;
        let proxy: std::net::SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let mut input = data;
        if let Some(Ok((_, rest))) = client::read_proxy_header(&mut input, proxy).now_or_never() {
            assert!(rest.len() <= data.len());
        }
        let mut input = data;
        if let Some(Ok(first)) = client::refuse_proxy_header(&mut input).now_or_never() {
            assert!(data.starts_with(&first));
        }
        let allowed = ["https://flock.example".to_string()];
        for scheme in ["http", "https"] {
            let _ = crate::http::route(data, &[], scheme);
            let _ = crate::http::route(data, &allowed, scheme);
        }
        let trusted = Trusted::new(vec![Net::parse("10.0.0.0/8").unwrap()]);
        let values = |name| crate::http::header_values(data, name);
        let (_, scheme) = client::from_forwarding(
            proxy.ip(),
            &trusted,
            &values("Forwarded"),
            &values("X-Forwarded-For"),
            &values("X-Forwarded-Proto"),
        );
        assert!(scheme.is_none_or(|s| s == "http" || s == "https"));
        let answer = crate::http::redirect_to_https(data, 8443).to_bytes();
        let head = String::from_utf8_lossy(&answer);
        if let Some(location) = head.lines().find_map(|l| l.strip_prefix("Location: ")) {
            assert!(location.starts_with("https://"));
            assert!(
                location.bytes().all(|b| b.is_ascii_graphic()),
                "{location:?}"
            );
        }
    }
}

use flock_proto::login::{Command, SessionId};
use flock_proto::Name;

/// One request for the core that owns an appliance.
#[derive(Debug)]
pub struct ToCore {
    pub session: SessionId,
    pub command: Command,
    /// Set on [`Command::Open`] only: where the core sends the session's events. Bounded
    /// (`events_queue`): the core fails the session when it is full or closed.
    pub events: Option<EventSink>,
}

/// The gateway's way to the cores (implemented by the server over its engine).
///
/// A session's commands all go to the core chosen at `open`; when the websocket ends for any
/// reason the gateway sends [`Command::Close`] (best effort: if that core's queue is full,
/// the core learns of it from the closed [`EventSink`]).
pub trait CoreLink: Send + Sync + 'static {
    /// The core that serves log-ins to `name` on this server. A name another server of the
    /// flock owns is served here too (the core asks the owner, or relays through it; it
    /// reports `owner-down` itself when the owner cannot be reached).
    fn core_for(&self, name: &Name) -> usize;
    /// Queues `msg` for `core`; `Err(msg)` when its queue is full (the browser gets `busy`).
    // The message comes back by value (Name is inline, ~280 bytes): no allocation per command.
    #[allow(clippy::result_large_err)]
    fn send(&self, core: usize, msg: ToCore) -> Result<(), ToCore>;
}
