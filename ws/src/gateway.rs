//! The gateway's runtime: its own tokio threads, the listener, and one task per connection
//! (request head → page, refusal or websocket → session).

use crate::client::Trusted;
use crate::config::{GatewayConfig, Net};
use crate::connection::{accept_loop, redirect_loop};
use crate::http::Response;
use crate::limits::{Limits, Refusal, Running};
use crate::policy::{AllowAll, Policy};
use crate::replay::Replay;
use crate::stats::{bump, Counters, GatewayStats, MetricsSource, TlsStats};
use crate::stream::Stream;
use crate::tls::{CertStore, Reload};
use crate::CoreLink;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Refused connections answered at once (429/503); past this, extra ones are just closed, so a
/// flood over the bounds costs no memory.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;
/// TCP backlog of the listener (std's 128 is short for reconnect storms).
const BACKLOG: i32 = 1024;

/// The settings a connection runs with: the current ones when it was accepted (a reload
/// swaps in new ones for the connections that follow).
pub(crate) struct Live {
    pub config: GatewayConfig,
    /// Who may read `/metrics` (the parsed `config.metrics_allow`).
    metrics_allow: Vec<Net>,
    /// The parsed `config.trusted_proxies`.
    pub trusted: Trusted,
    pub ws_config: WebSocketConfig,
    /// The same over TLS (see [`TLS_WEBSOCKET_READ`]).
    pub wss_config: WebSocketConfig,
}

/// Over TLS, rustls holds the socket's read buffer (up to a 4 KiB record at a time) and the
/// websocket only copies decrypted bytes out of it, so a small step saves 3.5 KiB per idle
/// wss socket; frames of any size still arrive whole (the websocket reserves a frame's length).
const TLS_WEBSOCKET_READ: usize = 512;

impl Live {
    fn new(config: GatewayConfig) -> Live {
        let ws_config = |read_buffer| {
            WebSocketConfig::default()
                .read_buffer_size(read_buffer)
                // Replies are sent one at a time and flushed: write each out at once. (The
                // write buffer then holds at most one reply, e.g. a 256-persona list of ~140 KB.)
                .write_buffer_size(0)
                .max_message_size(Some(config.max_message))
                .max_frame_size(Some(config.max_message))
        };
        Live {
            metrics_allow: config.metrics_nets(),
            trusted: Trusted::new(config.trusted_nets()),
            ws_config: ws_config(config.read_buffer),
            wss_config: ws_config(config.read_buffer.min(TLS_WEBSOCKET_READ)),
            config,
        }
    }
}

/// What every connection task shares.
pub(crate) struct Shared {
    live: RwLock<Arc<Live>>,
    pub link: Arc<dyn CoreLink>,
    pub policy: Arc<dyn Policy>,
    pub limits: Arc<Limits>,
    /// Log-ins past `login`: what a drain waits for.
    pub running: Arc<Running>,
    pub counters: Counters,
    /// Rendered after the gateway's own counters on `/metrics`.
    metrics: Option<Arc<dyn MetricsSource>>,
    /// Turns true once, when the drain starts: no new connection, `open` or `login`.
    pub draining: watch::Receiver<bool>,
    /// Turns true once, at shutdown (after the drain): every websocket gets 1001.
    pub shutdown: watch::Receiver<bool>,
    /// Refusals being answered now (bounded by `MAX_REFUSALS_IN_FLIGHT`).
    pub refusals: Arc<Semaphore>,
    /// Set when `[ws.tls]` is: every connection is TLS.
    pub tls: Option<Tls>,
    /// TLS handshakes under way (bounded by `tls.max_handshakes`).
    handshakes: AtomicUsize,
}

/// The gateway's TLS side: the certificate and the acceptor that asks it.
pub(crate) struct Tls {
    pub store: Arc<CertStore>,
    acceptor: TlsAcceptor,
}

/// A place among the TLS handshakes under way; dropping it frees the place.
struct Handshaking<'a>(&'a AtomicUsize);

impl Drop for Handshaking<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Shared {
    fn stats(&self) -> GatewayStats {
        let mut stats = self.counters.snapshot(self.limits.open());
        stats.tls = self.tls.as_ref().map(|t| TlsStats {
            cert_not_after: t.store.not_after(),
            cert_reloads: t.store.reloads(),
            cert_reload_failures: t.store.failures(),
        });
        stats
    }

    /// Counts a refusal over the socket bounds; the HTTP status that says it.
    pub fn count_refusal(&self, refusal: Refusal) -> u16 {
        let (counter, status) = match refusal {
            Refusal::PerIp => (&self.counters.refused_per_ip, 429),
            Refusal::Full => (&self.counters.refused_full, 503),
        };
        bump(counter);
        status
    }

    /// The connection's stream: as it is without TLS, else after a TLS handshake, which
    /// takes one of `max_handshakes` places (none free: closed at once, no TLS work done).
    pub async fn secure(&self, tcp: Replay<TcpStream>, live: &Live) -> Option<Stream> {
        let Some(tls) = &self.tls else {
            return Some(Stream::Plain(tcp));
        };
        let max = live.config.tls.as_ref().map_or(1, |t| t.max_handshakes);
        if self
            .handshakes
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_err()
        {
            bump(&self.counters.refused_handshakes);
            return None;
        }
        let _place = Handshaking(&self.handshakes);
        match tls.acceptor.accept(tcp).await {
            Ok(stream) => {
                bump(&self.counters.tls_handshakes);
                Some(Stream::Tls(Box::new(stream)))
            }
            Err(e) => {
                bump(&self.counters.tls_handshake_failures);
                tracing::debug!(error = %e, "websocket gateway: TLS handshake failed");
                None
            }
        }
    }

    /// The settings for a connection accepted now.
    pub fn live(&self) -> Arc<Live> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// The answer to `GET /metrics` from `client`: 404 when `metrics_allow` is empty, 403 from
    /// outside it, else the gateway's counters and then the source's, rendered now.
    pub fn metrics(&self, client: SocketAddr, live: &Live) -> Response {
        if live.metrics_allow.is_empty() {
            return Response::status(404);
        }
        if !live.metrics_allow.iter().any(|n| n.contains(client.ip())) {
            return Response::metrics_forbidden();
        }
        let mut out = String::with_capacity(16 * 1024);
        self.stats().render(&mut out);
        if let Some(source) = &self.metrics {
            source.render(&mut out);
        }
        Response::metrics(out)
    }
}

/// The websocket gateway.
pub struct Gateway;

/// A running gateway; dropping it stops it abruptly (prefer [`GatewayHandle::shutdown`]).
pub struct GatewayHandle {
    local_addr: SocketAddr,
    redirect_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    drain: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    runtime: Option<Runtime>,
}

/// How a drain went ([`GatewayHandle::drain`], [`GatewayHandle::shutdown`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Log-ins past `login` when the drain started (`finished + cut`).
    pub running: usize,
    /// Of those, the ones that ended by themselves during the drain (done or failed).
    pub finished: usize,
    /// Sessions that closed with 1000 "done" during the drain.
    pub done: u64,
    /// Log-ins still under way at the deadline (closed with 1001 "going away").
    pub cut: usize,
    /// How long the drain took.
    pub elapsed: Duration,
}

/// What a [`GatewayHandle::reconfigure`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// Keys whose new value now applies (to new connections; the bounds to new admissions).
    pub applied: Vec<&'static str>,
    /// Keys that changed but only apply at a restart (kept at their running value).
    pub need_restart: Vec<&'static str>,
}

impl Gateway {
    /// Binds `config.listen` and serves on a new multi-threaded tokio runtime of
    /// `config.threads` threads. Fails on a bad config or when the address cannot be bound.
    pub fn start(config: GatewayConfig, link: Arc<dyn CoreLink>) -> io::Result<GatewayHandle> {
        Gateway::start_with_policy(config, link, Arc::new(AllowAll))
    }

    /// As [`start`](Self::start), consulting `policy` on every log-in attempt and persona list.
    pub fn start_with_policy(
        config: GatewayConfig,
        link: Arc<dyn CoreLink>,
        policy: Arc<dyn Policy>,
    ) -> io::Result<GatewayHandle> {
        Gateway::start_full(config, link, policy, None)
    }

    /// As [`start_with_policy`](Self::start_with_policy); `GET /metrics` also renders
    /// `metrics` after the gateway's own counters (clients in `config.metrics_allow` only).
    pub fn start_full(
        config: GatewayConfig,
        link: Arc<dyn CoreLink>,
        policy: Arc<dyn Policy>,
        metrics: Option<Arc<dyn MetricsSource>>,
    ) -> io::Result<GatewayHandle> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = match &config.tls {
            None => None,
            Some(t) => {
                let store = Arc::new(
                    CertStore::open(&t.cert, &t.key)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
                );
                let acceptor = TlsAcceptor::from(store.server_config(t.session_cache));
                Some(Tls { store, acceptor })
            }
        };
        let listener = bind(config.listen)?;
        let local_addr = listener.local_addr()?;
        let redirect = match config.tls.as_ref().and_then(|t| t.redirect_listen) {
            Some(addr) => Some(bind(addr)?),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads)
            .thread_name("flock-ws")
            .enable_all()
            .build()?;
        let (listener, redirect) = {
            let _in_runtime = runtime.enter();
            let redirect = redirect.map(TcpListener::from_std).transpose()?;
            (TcpListener::from_std(listener)?, redirect)
        };
        let (stop, shutdown) = watch::channel(false);
        let (drain, draining) = watch::channel(false);
        let shared = Arc::new(Shared {
            limits: Arc::new(Limits::new(config.max_sockets, config.max_sockets_per_ip)),
            running: Arc::default(),
            metrics,
            live: RwLock::new(Arc::new(Live::new(config))),
            link,
            policy,
            counters: Counters::default(),
            draining,
            shutdown,
            refusals: Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT)),
            tls,
            handshakes: AtomicUsize::new(0),
        });
        runtime.spawn(accept_loop(listener, shared.clone()));
        let redirect_addr = redirect.as_ref().map(TcpListener::local_addr).transpose()?;
        if let Some(redirect) = redirect {
            tracing::info!(addr = ?redirect_addr, "websocket gateway: plain HTTP redirects to https");
            runtime.spawn(redirect_loop(redirect, local_addr.port(), shared.clone()));
        }
        if shared.tls.is_some() {
            runtime.spawn(watch_certificate(shared.clone()));
        }
        tracing::info!(%local_addr, tls = shared.tls.is_some(), "websocket gateway listening");
        Ok(GatewayHandle {
            local_addr,
            redirect_addr,
            shared,
            drain,
            stop,
            runtime: Some(runtime),
        })
    }
}

impl GatewayHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The plain-HTTP redirect listener's address (`[ws.tls] redirect_listen`), if any.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect_addr
    }

    pub fn stats(&self) -> GatewayStats {
        self.shared.stats()
    }

    /// Re-reads the TLS certificate and key (SIGHUP): new handshakes get them when they are
    /// good; else the running certificate stays and the failure is logged and counted.
    /// `None` without TLS.
    pub fn reload_tls(&self) -> Option<Reload> {
        Some(self.tls_store()?.reload(None, true))
    }

    fn tls_store(&self) -> Option<&CertStore> {
        self.shared.tls.as_ref().map(|t| &*t.store)
    }

    /// The settings in use now (the last [`reconfigure`](Self::reconfigure)d ones).
    pub fn config(&self) -> GatewayConfig {
        self.shared.live().config.clone()
    }

    /// Applies a re-read configuration without dropping anything: every key but `listen` and
    /// `threads` applies to the connections accepted from now on, the socket bounds to new
    /// admissions at once (sockets already open stay, even over a lowered bound). `listen`
    /// and `threads` keep their running value (listed in `need_restart`). Refused, changing
    /// nothing, when `new` is invalid.
    pub fn reconfigure(&self, mut new: GatewayConfig) -> Result<Reconfigured, String> {
        new.validate()?;
        let mut slot = self
            .shared
            .live
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let old = &slot.config;
        let need_restart = old.restart_only_changes(&new);
        (new.listen, new.threads) = (old.listen, old.threads);
        if let (Some(old), Some(new)) = (&old.tls, &mut new.tls) {
            (new.redirect_listen, new.session_cache) = (old.redirect_listen, old.session_cache);
        } else {
            new.tls = old.tls.clone();
        }
        let mut applied = vec![];
        macro_rules! diff {
            ($($key:ident),*) => {$(
                if old.$key != new.$key {
                    applied.push(concat!("ws.", stringify!($key)));
                }
            )*};
        }
        diff!(
            allowed_origins,
            max_message,
            idle_timeout,
            session_timeout,
            max_sockets,
            max_sockets_per_ip,
            read_buffer,
            handshake_timeout,
            events_queue,
            drain_timeout,
            shutdown_grace,
            metrics_allow,
            trusted_proxies,
            proxy_protocol,
            tls
        );
        // New paths are read now; the same paths at the SIGHUP's own `reload_tls`.
        if let (Some(store), Some(t), Some(o)) = (self.tls_store(), &new.tls, &old.tls) {
            if (&t.cert, &t.key) != (&o.cert, &o.key) {
                store.reload(Some((&t.cert, &t.key)), true);
            }
        }
        self.shared
            .limits
            .set_bounds(new.max_sockets, new.max_sockets_per_ip);
        *slot = Arc::new(Live::new(new));
        Ok(Reconfigured {
            applied,
            need_restart,
        })
    }

    /// Starts (or continues) a drain: closes the listener at once (new connections are
    /// refused), answers a new `open` or `login` with `busy` (close 1013), and waits up to
    /// `limit` for the log-ins already past `login` to end by themselves. Sessions not yet
    /// logging in are left open (their next `open`/`login` is refused). Blocks the calling
    /// thread: call it from a plain thread, not from inside an async runtime.
    pub fn drain(&self, limit: Duration) -> DrainReport {
        let started = std::time::Instant::now();
        let done_before = self.shared.counters.sessions_done.load(Relaxed);
        let _ = self.drain.send(true);
        let (running, ended_before) = self.shared.running.counts();
        tracing::info!(
            running,
            timeout_ms = limit.as_millis() as u64,
            "websocket gateway draining: no new websockets or log-ins"
        );
        self.shared.running.wait_zero(limit);
        let (cut, ended) = self.shared.running.counts();
        let finished = (ended - ended_before) as usize;
        let done = self.shared.counters.sessions_done.load(Relaxed) - done_before;
        DrainReport {
            running: finished + cut,
            finished,
            done,
            cut,
            elapsed: started.elapsed(),
        }
    }

    /// Drains for `drain_timeout` (see [`drain`](Self::drain)), then closes every websocket
    /// left with 1001 "going away", waits up to `shutdown_grace` for the sockets to close,
    /// and stops the runtime. Blocks the calling thread: call it from a plain thread, not
    /// from inside an async runtime.
    pub fn shutdown(mut self) -> DrainReport {
        let live = self.shared.live();
        let report = self.drain(live.config.drain_timeout);
        let _ = self.stop.send(true);
        if !self.shared.limits.wait_empty(live.config.shutdown_grace) {
            tracing::warn!(
                open = self.shared.limits.open(),
                "websocket gateway: sockets still open after the grace period"
            );
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_millis(500));
        }
        report
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            let _ = self.stop.send(true);
            // Safe in any context, unlike dropping a runtime inside another one.
            runtime.shutdown_background();
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Checks the certificate files every `tls.watch_interval` (read live, "0s" = never) and
/// reloads them when their content changed.
async fn watch_certificate(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let interval = shared
            .live()
            .config
            .tls
            .as_ref()
            .map_or(Duration::ZERO, |t| t.watch_interval);
        let wait = if interval.is_zero() {
            Duration::from_secs(1)
        } else {
            interval
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if interval.is_zero() {
            continue;
        }
        if let Some(tls) = &shared.tls {
            let store = tls.store.clone();
            let _ = tokio::task::spawn_blocking(move || store.reload(None, false)).await;
        }
    }
}
