//! A scripted browser for the gateway: a real websocket client speaking the JSON protocol of
//! docs/PROTOCOL.md §10. Every wait is bounded.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const WAIT: Duration = Duration::from_secs(10);

/// A plain or TLS connection.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Browser {
    ws: WebSocketStream<Box<dyn Io>>,
}

/// How the flock ended the websocket.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl Browser {
    pub async fn connect(gateway: SocketAddr) -> Browser {
        let tcp = TcpStream::connect(gateway).await.expect("connect");
        Browser::over(Box::new(tcp), format!("ws://{gateway}/ws")).await
    }

    /// Over wss, as `localhost`, trusting what `tls` trusts.
    pub async fn connect_tls(
        gateway: SocketAddr,
        tls: std::sync::Arc<rustls::ClientConfig>,
    ) -> Browser {
        let stream = tokio::time::timeout(WAIT, flock_ws::testing::TestCa::connect(tls, gateway))
            .await
            .expect("TLS in time")
            .expect("TLS handshake");
        Browser::over(
            Box::new(stream),
            format!("wss://localhost:{}/ws", gateway.port()),
        )
        .await
    }

    async fn over(stream: Box<dyn Io>, url: String) -> Browser {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
            .await
            .expect("websocket handshake in time")
            .expect("websocket handshake");
        Browser { ws }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
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

    /// The next JSON message; panics on close, timeout or a non-text frame.
    pub async fn recv(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message in time");
            match m {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(&t).expect("JSON from the flock")
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a JSON message, got {other:?}"),
            }
        }
    }

    /// The next message, which must be of `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], kind, "expected {kind}, got {v}");
        v
    }

    /// The next message must be an error with `code`, then the close.
    pub async fn expect_error(&mut self, code: &str) -> Closed {
        let v = self.expect("error").await;
        assert_eq!(v["code"], code, "{v}");
        self.closed().await
    }

    /// Waits for the flock's close frame (skipping nothing: any other message is a failure).
    pub async fn closed(&mut self) -> Closed {
        let m = tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("close in time");
        match m {
            Some(Ok(Message::Close(Some(f)))) => Closed {
                code: u16::from(f.code),
                reason: f.reason.to_string(),
            },
            Some(Ok(Message::Close(None))) => Closed {
                code: u16::from(CloseCode::Status),
                reason: String::new(),
            },
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

use flock_appliance::{ApplianceHandle, Candidate, Decision, Event};
use tokio::sync::mpsc;

/// What a test appliance does once a browser's credentials are accepted.
#[derive(Clone)]
pub enum Behaviour {
    /// Sends `offer`, the candidates, then end-of-candidates.
    Signal {
        offer: String,
        candidates: Vec<Candidate>,
    },
    /// Accepts, then never signals anything.
    Mute,
}

/// Runs an SDK appliance's application side on a task: accepts `persona` with `password`
/// (anything else is a bad credential; `deny` is refused by policy) and reacts to accepted
/// log-ins per `behaviour`. Every event is forwarded to the returned channel.
pub fn run_appliance(
    mut h: ApplianceHandle,
    list: &[u8],
    behaviour: Behaviour,
) -> mpsc::UnboundedReceiver<Event> {
    h.set_personas(Some(list.to_vec())).unwrap();
    h.set_authenticator(|r| match (r.persona, r.credential) {
        ("deny", _) => Decision::Deny,
        ("alice", b"pwd:wonderland") => Decision::Accept,
        _ => Decision::BadCredentials,
    })
    .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(e) = h.next_event().await {
            if let (Event::LoginAccepted { session, .. }, Behaviour::Signal { offer, candidates }) =
                (&e, &behaviour)
            {
                h.send_offer(*session, offer.clone()).unwrap();
                for c in candidates {
                    h.add_candidate(*session, c.clone()).unwrap();
                }
                h.end_of_candidates(*session).unwrap();
            }
            if tx.send(e).is_err() {
                break;
            }
        }
        h.shutdown().await;
    });
    rx
}

/// Waits for the first event matching `want` from `run_appliance`'s channel.
pub async fn next_matching(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    what: &str,
    want: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = vec![];
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(e)) => seen.push(e),
            Ok(None) => panic!("appliance stopped while waiting for {what}; saw {seen:?}"),
            Err(_) => panic!("no {what} in time; saw {seen:?}"),
        }
    }
}

pub const LIST: &[u8] =
    br#"[{"id":"alice","name":"Alice"},{"id":"deny","name":"Refused by policy"}]"#;

pub fn candidate(port: u16) -> Candidate {
    Candidate {
        candidate: format!("candidate:{port} 1 udp 2130706431 127.0.0.1 {port} typ host"),
        mid: Some("0".into()),
    }
}

/// A synthetic offer long enough to need two SIGNAL chunks.
pub fn offer() -> String {
    let mut s = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    while s.len() < 1500 {
        s.push_str("a=x-filler:0123456789abcdef0123456789abcdef\r\n");
    }
    s
}
