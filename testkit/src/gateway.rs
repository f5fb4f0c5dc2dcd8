//! A real gateway on 127.0.0.1:0 over scripted fake cores, for the gateway's own tests.

use crate::browser::{Browser, WAIT};
use flock_proto::login::{Command, Event};
use flock_proto::Name;
use flock_ws::{CoreLink, EventSink, Gateway, GatewayConfig, GatewayHandle, ToCore};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Fake cores: a name's last character, if a digit, picks the core (mod the number of cores).
/// Every command lands in one queue that the test reads, tagged with its core.
pub struct FakeLink {
    cores: usize,
    /// A core whose flag is set refuses commands (its inbox is full).
    pub full: Vec<AtomicBool>,
    tx: mpsc::UnboundedSender<(usize, ToCore)>,
}

impl CoreLink for FakeLink {
    fn core_for(&self, name: &Name) -> usize {
        let last = name.as_str().bytes().last().unwrap_or(b'0');
        if last.is_ascii_digit() {
            (last - b'0') as usize % self.cores
        } else {
            0
        }
    }

    fn send(&self, core: usize, msg: ToCore) -> Result<(), ToCore> {
        assert!(core < self.cores, "core {core} out of range");
        if self.full[core].load(Ordering::SeqCst) {
            return Err(msg);
        }
        self.tx.send((core, msg)).map_err(|e| e.0 .1)
    }
}

/// The test's side of the fake cores.
pub struct Cores {
    pub link: Arc<FakeLink>,
    rx: mpsc::UnboundedReceiver<(usize, ToCore)>,
}

impl Cores {
    /// The next command any core received.
    pub async fn next(&mut self) -> (usize, ToCore) {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("no command reached a core")
            .expect("link gone")
    }

    /// Expects an `open` for `name` and returns (core, session, sink).
    pub async fn expect_open(&mut self, name: &str) -> (usize, u64, EventSink) {
        let (core, msg) = self.next().await;
        match msg.command {
            Command::Open { name: got } => assert_eq!(got.as_str(), name),
            other => panic!("expected Open, got {other:?}"),
        }
        (
            core,
            msg.session,
            msg.events.expect("Open carries the event sink"),
        )
    }

    /// Expects `command` for `session`.
    pub async fn expect(&mut self, session: u64, command: Command) {
        let (_, msg) = self.next().await;
        assert_eq!(msg.session, session);
        assert_eq!(msg.command, command);
        assert!(msg.events.is_none());
    }

    /// Expects a log-in as `persona` with password `password` for `session`.
    pub async fn expect_login(&mut self, session: u64, persona: &str, password: &str) {
        let login = Command::Login {
            persona: persona.into(),
            credential: format!("pwd:{password}"),
        };
        self.expect(session, login).await;
    }

    /// No command arrives within `for_`.
    pub async fn expect_none(&mut self, for_: Duration) {
        if let Ok(Some((core, msg))) = tokio::time::timeout(for_, self.rx.recv()).await {
            panic!("unexpected command to core {core}: {:?}", msg.command);
        }
    }
}

/// A gateway on 127.0.0.1:0 over `cores` fake cores, with `tweak` applied to the defaults.
pub fn start(cores: usize, tweak: impl FnOnce(&mut GatewayConfig)) -> (GatewayHandle, Cores) {
    start_with_policy(cores, Arc::new(flock_ws::AllowAll), tweak)
}

/// As [`start`], consulting `policy`.
pub fn start_with_policy(
    cores: usize,
    policy: Arc<dyn flock_ws::Policy>,
    tweak: impl FnOnce(&mut GatewayConfig),
) -> (GatewayHandle, Cores) {
    let mut config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..GatewayConfig::default()
    };
    tweak(&mut config);
    let (tx, rx) = mpsc::unbounded_channel();
    let link = Arc::new(FakeLink {
        cores,
        full: (0..cores).map(|_| AtomicBool::new(false)).collect(),
        tx,
    });
    let gw = Gateway::start_with_policy(config, link.clone(), policy).expect("gateway starts");
    (gw, Cores { link, rx })
}

/// Opens a session on `name` and answers with a persona list; returns (session, sink).
pub async fn open_with_personas(
    ws: &mut Browser,
    cores: &mut Cores,
    name: &str,
) -> (u64, EventSink) {
    ws.open(name).await;
    let (_, session, sink) = cores.expect_open(name).await;
    let list = br#"[{"id":"alice","name":"Alice","extra":1},{"id":"guest","name":"Guest"}]"#;
    sink.try_send(Event::Personas(flock_proto::login::Personas::List(
        Arc::from(&list[..]),
    )))
    .unwrap();
    assert_eq!(
        ws.recv().await,
        json!({"type":"personas","personas":[{"id":"alice","name":"Alice"},{"id":"guest","name":"Guest"}]})
    );
    (session, sink)
}

/// One raw HTTP exchange: writes `request`, reads to EOF, returns (status, head, body).
pub async fn http(addr: SocketAddr, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, _) = text.split_once("\r\n\r\n").expect("a complete head");
    let body = out[head.len() + 4..].to_vec();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body)
}
