//! A scripted browser for the websocket gateway: a real websocket client speaking the JSON
//! protocol of docs/PROTOCOL.md §10, over plain TCP or TLS, from a chosen loopback source.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// Longest wait for any one answer.
pub const WAIT: Duration = Duration::from_secs(10);

/// A plain or TLS connection.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Browser {
    /// The websocket itself, for frames the helpers do not cover (pings, binary, a close).
    pub ws: WebSocketStream<Box<dyn Io>>,
}

/// How the flock ended the websocket.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl Closed {
    pub fn new(code: u16, reason: &str) -> Closed {
        Closed {
            code,
            reason: reason.to_string(),
        }
    }
}

/// A TCP connection to `addr` from the loopback address `source` (e.g. "127.0.0.2", "::1"),
/// any port.
pub async fn tcp_from(source: &str, addr: SocketAddr) -> TcpStream {
    let source: IpAddr = source.parse().expect("a source address");
    let socket = if source.is_ipv6() {
        TcpSocket::new_v6()
    } else {
        TcpSocket::new_v4()
    }
    .unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

impl Browser {
    /// A websocket to `gateway`'s `/ws`; panics if it does not open.
    pub async fn connect(gateway: SocketAddr) -> Browser {
        let tcp = TcpStream::connect(gateway).await.expect("connect");
        Browser::over(Box::new(tcp), &format!("ws://{gateway}/ws"), &[])
            .await
            .unwrap_or_else(|status| panic!("websocket refused: {status}"))
    }

    /// The same from the loopback address `source`.
    pub async fn connect_from(source: IpAddr, gateway: SocketAddr) -> Browser {
        Browser::try_connect_from(&source.to_string(), gateway, b"", &[])
            .await
            .unwrap_or_else(|status| panic!("websocket refused: {status}"))
    }

    /// Over wss, as `localhost`, trusting what `tls` trusts.
    pub async fn connect_tls(gateway: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Browser {
        let stream = tokio::time::timeout(WAIT, crate::tls::TestCa::connect(tls, gateway))
            .await
            .expect("TLS in time")
            .expect("TLS handshake");
        let url = format!("wss://localhost:{}/ws", gateway.port());
        Browser::over(Box::new(stream), &url, &[])
            .await
            .unwrap_or_else(|status| panic!("websocket refused: {status}"))
    }

    /// A websocket with extra request `headers`: Err(status) on an HTTP refusal, Err(0) when
    /// the connection was closed without an answer.
    pub async fn try_connect(
        gateway: SocketAddr,
        headers: &[(&'static str, &str)],
    ) -> Result<Browser, u16> {
        let tcp = TcpStream::connect(gateway).await.expect("connect");
        Browser::over(Box::new(tcp), &format!("ws://{gateway}/ws"), headers).await
    }

    /// As [`Browser::try_connect`], from `source`, first sending `preface` (a PROXY header).
    pub async fn try_connect_from(
        source: &str,
        gateway: SocketAddr,
        preface: &[u8],
        headers: &[(&'static str, &str)],
    ) -> Result<Browser, u16> {
        let mut tcp = tcp_from(source, gateway).await;
        tcp.write_all(preface).await.unwrap();
        Browser::over(Box::new(tcp), &format!("ws://{gateway}/ws"), headers).await
    }

    /// The websocket handshake on `stream`, bounded by [`WAIT`].
    pub async fn over(
        stream: Box<dyn Io>,
        url: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<Browser, u16> {
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(*k, v.parse().unwrap());
        }
        let handshake = tokio_tungstenite::client_async(req, stream);
        match tokio::time::timeout(WAIT, handshake)
            .await
            .expect("websocket handshake in time")
        {
            Ok((ws, _)) => Ok(Browser { ws }),
            Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
            Err(_) => Err(0),
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.send_raw(Message::text(v.to_string())).await;
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    pub async fn open(&mut self, appliance: &str) {
        self.send(json!({"type": "open", "appliance": appliance}))
            .await;
    }

    pub async fn login(&mut self, persona: &str, password: &str) {
        self.send(
            json!({"type": "login", "persona": persona, "credential": format!("pwd:{password}")}),
        )
        .await;
    }

    /// The next JSON message, or the close code (`Err`, `None` for a close without one).
    pub async fn recv_or_close(&mut self) -> Result<Value, Option<u16>> {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message in time");
            match m {
                Some(Ok(Message::Text(t))) => {
                    return Ok(serde_json::from_str(&t).expect("JSON from the flock"))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(f))) => return Err(f.map(|f| u16::from(f.code))),
                other => panic!("expected a JSON message, got {other:?}"),
            }
        }
    }

    /// The next JSON message; panics on close, timeout or a non-text frame.
    pub async fn recv(&mut self) -> Value {
        match self.recv_or_close().await {
            Ok(v) => v,
            Err(code) => panic!("expected a JSON message, got a close ({code:?})"),
        }
    }

    /// The next message, which must be of `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], kind, "expected {kind}, got {v}");
        v
    }

    /// The next message must be an error with `code` and a message, then the close.
    pub async fn expect_error(&mut self, code: &str) -> Closed {
        let v = self.expect("error").await;
        assert_eq!(v["code"], code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        self.closed().await
    }

    /// Waits for the flock's close frame (any other message is a failure), then for the end
    /// of the stream: our close reply goes out as we read on, and the server then ends TCP.
    pub async fn closed(&mut self) -> Closed {
        let m = tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("close in time");
        let closed = match m {
            Some(Ok(Message::Close(Some(f)))) => Closed {
                code: u16::from(f.code),
                reason: f.reason.to_string(),
            },
            Some(Ok(Message::Close(None))) => Closed {
                code: u16::from(CloseCode::Status),
                reason: String::new(),
            },
            other => panic!("expected a close, got {other:?}"),
        };
        if let Some(Ok(m)) = tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("end in time")
        {
            panic!("message after close: {m:?}");
        }
        closed
    }
}
