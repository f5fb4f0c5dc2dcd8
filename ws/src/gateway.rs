//! The gateway's runtime: its own tokio threads, the listener, and one task per connection
//! (request head → page, refusal or websocket → session).

use crate::config::{GatewayConfig, Net};
use crate::http::{self, Response, Route};
use crate::limits::{Limits, Refusal, Running, Slot};
use crate::policy::{AllowAll, Policy};
use crate::replay::Replay;
use crate::stats::{bump, Counters, GatewayStats, MetricsSource};
use crate::{session, CoreLink};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{watch, Semaphore};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// Refused connections answered at once (429/503); past this, extra ones are just closed, so a
/// flood over the bounds costs no memory.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;
/// Time to read a refused connection's request head before answering it.
const REFUSAL_BUDGET: Duration = Duration::from_secs(1);
/// TCP backlog of the listener (std's 128 is short for reconnect storms).
const BACKLOG: i32 = 1024;

/// The settings a connection runs with: the current ones when it was accepted (a reload
/// swaps in new ones for the connections that follow).
pub(crate) struct Live {
    pub config: GatewayConfig,
    /// Who may read `/metrics` (the parsed `config.metrics_allow`).
    metrics_allow: Vec<Net>,
    ws_config: WebSocketConfig,
}

impl Live {
    fn new(config: GatewayConfig) -> Live {
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(config.read_buffer)
            // Replies are sent one at a time and flushed: write each out at once. (The write
            // buffer then holds at most one reply, e.g. a 256-persona list of ~140 KB.)
            .write_buffer_size(0)
            .max_message_size(Some(config.max_message))
            .max_frame_size(Some(config.max_message));
        Live {
            metrics_allow: config.metrics_nets(),
            config,
            ws_config,
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
    refusals: Arc<Semaphore>,
}

impl Shared {
    fn stats(&self) -> GatewayStats {
        self.counters.snapshot(self.limits.open())
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

    /// The answer to `GET /metrics` from `peer`: 404 when `metrics_allow` is empty, 403 from
    /// outside it, else the gateway's counters and then the source's, rendered now.
    fn metrics(&self, peer: SocketAddr, live: &Live) -> Response {
        if live.metrics_allow.is_empty() {
            return Response::status(404);
        }
        if !live.metrics_allow.iter().any(|n| n.contains(peer.ip())) {
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
        let listener = bind(config.listen)?;
        let local_addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads)
            .thread_name("flock-ws")
            .enable_all()
            .build()?;
        let listener = {
            let _in_runtime = runtime.enter();
            TcpListener::from_std(listener)?
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
        });
        runtime.spawn(accept_loop(listener, shared.clone()));
        tracing::info!(%local_addr, "websocket gateway listening");
        Ok(GatewayHandle {
            local_addr,
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

    pub fn stats(&self) -> GatewayStats {
        self.shared.stats()
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
            metrics_allow
        );
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

/// Until the drain (or shutdown) starts; returning drops, so closes, the listener.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let (mut shutdown, mut draining) = (shared.shutdown.clone(), shared.draining.clone());
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = draining.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    tracing::warn!(error = %e, "websocket gateway: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        bump(&shared.counters.accepted);
        match shared.limits.admit(peer.ip()) {
            Ok(slot) => {
                tokio::spawn(connection(stream, peer, slot, shared.clone()));
            }
            Err(refusal) => {
                let (counter, status) = match refusal {
                    Refusal::PerIp => (&shared.counters.refused_per_ip, 429),
                    Refusal::Full => (&shared.counters.refused_full, 503),
                };
                bump(counter);
                if let Ok(permit) = shared.refusals.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        let _permit = permit;
                        let _ = timeout(REFUSAL_BUDGET, refuse(stream, status)).await;
                    });
                }
            }
        }
    }
}

/// Reads the request (so that closing does not reset the connection under the answer) and
/// answers `status`.
async fn refuse(mut stream: TcpStream, status: u16) {
    let _ = http::read_head(&mut stream).await;
    respond(&mut stream, Response::status(status)).await;
}

async fn respond(stream: &mut TcpStream, response: Response) {
    if stream.write_all(&response.to_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// One connection, from accept to close; `_slot` holds its place under the socket bounds.
async fn connection(stream: TcpStream, peer: SocketAddr, _slot: Slot, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let live = shared.live();
    let mut shutdown = shared.shutdown.clone();
    let deadline = Instant::now() + live.config.handshake_timeout;
    let ws = tokio::select! {
        _ = shutdown.changed() => return,
        ws = timeout_at(deadline, handshake(stream, peer, &shared, &live)) => match ws {
            Ok(Some(ws)) => ws,
            _ => return,
        },
    };
    let _gauge = shared.counters.websocket_opened();
    session::run(ws.0, peer, ws.1, &shared, &live.config).await;
}

/// Reads the request head and either answers it or opens the websocket.
/// The websocket and the page's `Origin` header, if any.
async fn handshake(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    live: &Live,
) -> Option<(WebSocketStream<Replay<TcpStream>>, Option<String>)> {
    let route = match http::read_head(&mut stream).await {
        Ok(Some(head)) => (http::route(&head, &live.config.allowed_origins), head),
        Ok(None) => (Route::Respond(Response::status(400)), Vec::new()),
        Err(_) => return None,
    };
    match route {
        (Route::WebSocket, head) => {
            // tungstenite validates the handshake again and writes the 101.
            let origin = http::header_value(&head, "Origin");
            let ws = tokio_tungstenite::accept_async_with_config(
                Replay::new(head, stream),
                Some(live.ws_config),
            )
            .await
            .ok()?;
            Some((ws, origin))
        }
        (Route::Metrics, _) => {
            respond(&mut stream, shared.metrics(peer, live)).await;
            None
        }
        (Route::Respond(response), _) => {
            match response.status {
                400 => bump(&shared.counters.bad_requests),
                403 => bump(&shared.counters.refused_origin),
                _ => {}
            }
            respond(&mut stream, response).await;
            None
        }
    }
}
