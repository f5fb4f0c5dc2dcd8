//! One connection, from accept to websocket: the socket bounds, then (from trusted proxies)
//! the PROXY header, then TLS, then the request head (and forwarding headers), then the
//! answer or the websocket. Every step before the websocket runs under `handshake_timeout`,
//! and nothing costly (TLS) runs before the bounds of the client's address were checked.

use crate::client::{self, ProxyError};
use crate::gateway::{Live, Shared};
use crate::http::{self, Response, Route};
use crate::limits::{Refusal, Slot};
use crate::replay::Replay;
use crate::session;
use crate::stats::bump;
use crate::stream::Stream;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::WebSocketStream;

/// Time to read a refused connection's request head before answering it.
const REFUSAL_BUDGET: Duration = Duration::from_secs(1);

/// Until the drain (or shutdown) starts; returning drops, so closes, the listener.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
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
        let live = shared.live();
        // A trusted proxy's connections count against their client, known later.
        let from_proxy = live.trusted.contains(peer.ip());
        let admitted = if from_proxy {
            shared.limits.admit_total()
        } else {
            shared.limits.admit(peer.ip())
        };
        match admitted {
            Ok(slot) => {
                tokio::spawn(connection(stream, peer, from_proxy, slot, shared.clone()));
            }
            // Over TLS a plain-text answer would be noise, and TLS work is what the bounds
            // spare: just close.
            Err(refusal) if shared.tls.is_some() => {
                shared.count_refusal(refusal);
            }
            Err(refusal) => refuse_later(stream, refusal, &shared),
        }
    }
}

/// Answers 429/503 in the background, within budget; past `MAX_REFUSALS_IN_FLIGHT` refused
/// connections are just closed, so a flood over the bounds costs no memory.
fn refuse_later<S>(stream: S, refusal: Refusal, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let status = shared.count_refusal(refusal);
    if let Ok(permit) = shared.refusals.clone().try_acquire_owned() {
        tokio::spawn(async move {
            let _permit = permit;
            let _ = timeout(REFUSAL_BUDGET, refuse(stream, status)).await;
        });
    }
}

/// Reads the request (so that closing does not reset the connection under the answer) and
/// answers `status`.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, status: u16) {
    let _ = http::read_head(&mut stream).await;
    respond(&mut stream, Response::status(status)).await;
}

pub(crate) async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, response: Response) {
    if stream.write_all(&response.to_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// One connection, from accept to close; `slot` holds its place under the socket bounds.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    from_proxy: bool,
    mut slot: Slot,
    shared: Arc<Shared>,
) {
    let _ = tcp.set_nodelay(true);
    let live = shared.live();
    let mut shutdown = shared.shutdown.clone();
    let deadline = Instant::now() + live.config.handshake_timeout;
    let opened = tokio::select! {
        _ = shutdown.changed() => return,
        opened = timeout_at(deadline, open(tcp, peer, from_proxy, &mut slot, &shared, &live)) => {
            match opened {
                Ok(Some(opened)) => opened,
                Ok(None) => return,
                Err(_) => return bump(&shared.counters.handshake_timeouts),
            }
        }
    };
    let _gauge = shared.counters.websocket_opened();
    session::run(
        opened.ws,
        opened.client,
        opened.origin,
        &shared,
        &live.config,
    )
    .await;
}

struct Opened {
    ws: WebSocketStream<Replay<Stream>>,
    /// Who the client is (the port is 0 when a forwarding header named it).
    client: SocketAddr,
    /// The page's `Origin` header, if any.
    origin: Option<String>,
}

/// Everything up to an open websocket, or the answer that ends the connection.
async fn open(
    mut tcp: TcpStream,
    peer: SocketAddr,
    from_proxy: bool,
    slot: &mut Slot,
    shared: &Shared,
    live: &Live,
) -> Option<Opened> {
    let mut client = peer;
    let early = if !live.config.proxy_protocol {
        Vec::new()
    } else {
        let header = if from_proxy {
            client::read_proxy_header(&mut tcp, peer)
                .await
                .map(|(source, rest)| {
                    client = source;
                    rest
                })
        } else {
            client::refuse_proxy_header(&mut tcp).await
        };
        match header {
            Ok(rest) => rest,
            Err(ProxyError::Closed) => return None,
            Err(why) => {
                bump(&shared.counters.refused_proxy);
                tracing::debug!(%peer, ?why, "websocket gateway: PROXY header refused");
                return None;
            }
        }
    };
    // A client behind a trusted hop is named by the forwarding headers, read after TLS.
    let forwarded = from_proxy && live.trusted.contains(client.ip());
    if !forwarded {
        if let Err(refusal) = slot.claim_ip(client.ip()) {
            let plain = Replay::new(early, tcp);
            if shared.tls.is_some() {
                shared.count_refusal(refusal);
            } else {
                refuse_later(plain, refusal, shared);
            }
            return None;
        }
    }
    let mut stream = shared.secure(Replay::new(early, tcp), live).await?;
    let head = match http::read_head(&mut stream).await {
        Ok(Some(head)) => head,
        Ok(None) => {
            bump(&shared.counters.bad_requests);
            respond(&mut stream, Response::status(400)).await;
            return None;
        }
        Err(_) => return None,
    };
    let mut scheme = if matches!(stream, Stream::Tls(_)) {
        "https"
    } else {
        "http"
    };
    if forwarded {
        let values = |name| http::header_values(&head, name);
        let (ip, proto) = client::from_forwarding(
            client.ip(),
            &live.trusted,
            &values("Forwarded"),
            &values("X-Forwarded-For"),
            &values("X-Forwarded-Proto"),
        );
        if ip != client.ip() {
            client = SocketAddr::new(ip, 0);
        }
        match proto.as_deref() {
            Some("https") => scheme = "https",
            Some("http") => scheme = "http",
            _ => {}
        }
        if let Err(refusal) = slot.claim_ip(client.ip()) {
            let status = shared.count_refusal(refusal);
            respond(&mut stream, Response::status(status)).await;
            return None;
        }
    }
    match http::route(&head, &live.config.allowed_origins, scheme) {
        Route::WebSocket => {
            let origin = http::header_value(&head, "Origin");
            let ws_config = match stream {
                Stream::Plain(_) => live.ws_config,
                Stream::Tls(_) => live.wss_config,
            };
            // tungstenite validates the handshake again and writes the 101.
            let ws = tokio_tungstenite::accept_async_with_config(
                Replay::new(head, stream),
                Some(ws_config),
            )
            .await
            .ok()?;
            Some(Opened { ws, client, origin })
        }
        Route::Metrics => {
            respond(&mut stream, shared.metrics(client, live)).await;
            None
        }
        Route::Respond(response) => {
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

/// The plain-HTTP listener of `[ws.tls] redirect_listen`: every request gets a 308 to the
/// same host and path over https on `https_port`. Bounded like the main listener.
pub(crate) async fn redirect_loop(listener: TcpListener, https_port: u16, shared: Arc<Shared>) {
    let (mut shutdown, mut draining) = (shared.shutdown.clone(), shared.draining.clone());
    loop {
        let (mut stream, peer) = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = draining.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        bump(&shared.counters.accepted);
        match shared.limits.admit(peer.ip()) {
            Err(refusal) => refuse_later(stream, refusal, &shared),
            Ok(slot) => {
                let budget = shared.live().config.handshake_timeout;
                tokio::spawn(async move {
                    let _slot = slot;
                    let _ = timeout(budget, async {
                        let response = match http::read_head(&mut stream).await {
                            Ok(Some(head)) => http::redirect_to_https(&head, https_port),
                            Ok(None) => Response::status(400),
                            Err(_) => return,
                        };
                        respond(&mut stream, response).await;
                    })
                    .await;
                });
            }
        }
    }
}
