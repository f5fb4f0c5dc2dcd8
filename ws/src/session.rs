//! One browser log-in over one websocket: check the order of the browser's messages, pass them
//! to the core that owns the appliance, pass the core's events back, and end with a typed
//! error or "done".

use crate::code::Code;
use crate::config::GatewayConfig;
use crate::gateway::Shared;
use crate::json::{self, Reply, Request};
use crate::limits::RunningGuard;
use crate::policy::{LoginAttempt, Outcome, Verdict};
use crate::sink::{event_queue, EventQueue};
use crate::stats::bump;
use crate::{EventSink, ToCore};
use flock_proto::login::{Candidate, Command, Event, Personas, SessionId};
use flock_proto::Name;
use futures_util::{SinkExt, StreamExt};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// How long to wait for the browser's half of the closing handshake.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Session ids, unique for the process (so unique per gateway too).
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Where the log-in stands, from the browser's side.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitOpen,
    AwaitPersonas,
    CanLogin,
    AwaitVerdict,
    AwaitOffer,
    Signalling { answered: bool, ended: bool },
}

/// Why a session ended.
enum End {
    /// End-of-candidates went both ways: close 1000.
    Done,
    Error(Code, Cow<'static, str>),
    /// The policy said not now.
    RateLimited(Duration),
    /// The gateway is shutting down: close 1001.
    GoingAway,
    /// The browser closed or the connection broke: nobody to tell.
    Gone,
}

fn error(code: Code, message: impl Into<Cow<'static, str>>) -> End {
    End::Error(code, message.into())
}

/// What one turn of the loop brought.
enum Input {
    Shutdown,
    Event(Option<Event>),
    Frame(Option<Result<Message, WsError>>),
    Idle,
    Deadline,
}

struct Session<'a> {
    id: SessionId,
    state: State,
    /// The core chosen at `open`; every later command goes there.
    core: Option<usize>,
    events: Option<EventQueue>,
    shared: &'a Shared,
    /// The settings in force when the connection was accepted.
    config: &'a GatewayConfig,
    /// Held from a `login` taken until the session ends or asks for credentials again: a
    /// drain waits for these.
    running: Option<RunningGuard>,
    client: SocketAddr,
    origin: Option<String>,
    /// The normalized appliance name, once opened.
    appliance: String,
    /// The log-in attempt waiting for the appliance's verdict (for audit).
    attempt: Option<LoginAttempt>,
}

pub(crate) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    client: SocketAddr,
    origin: Option<String>,
    shared: &Shared,
    config: &GatewayConfig,
) {
    let mut s = Session {
        id: NEXT_SESSION.fetch_add(1, Relaxed),
        state: State::AwaitOpen,
        core: None,
        events: None,
        shared,
        config,
        running: None,
        client,
        origin,
        appliance: String::new(),
        attempt: None,
    };
    let end = s.drive(&mut ws).await;
    if let Some(core) = s.core {
        // Best effort: if the core's queue is full, the core notices the dropped event sink.
        let _ = shared.link.send(
            core,
            ToCore {
                session: s.id,
                command: Command::Close,
                events: None,
            },
        );
    }
    drop(s.events.take());
    // Still counted as running until the browser was told (a drain waits for the close).
    let _running = s.running.take();
    finish(&mut ws, end, s.id, shared).await;
}

impl Session<'_> {
    async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        ws: &mut WebSocketStream<S>,
    ) -> End {
        let config = self.config;
        let idle = sleep(config.idle_timeout);
        let deadline = sleep(config.session_timeout);
        tokio::pin!(idle, deadline);
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            let input = tokio::select! {
                biased;
                _ = shutdown.changed() => Input::Shutdown,
                ev = recv(&self.events) => Input::Event(ev),
                frame = ws.next() => Input::Frame(frame),
                _ = &mut idle => Input::Idle,
                _ = &mut deadline => Input::Deadline,
            };
            let reply = match input {
                Input::Shutdown => return End::GoingAway,
                Input::Idle => {
                    return error(Code::Timeout, "no message from the browser for too long")
                }
                Input::Deadline => return error(Code::Timeout, "the log-in took too long"),
                Input::Event(ev) => self.on_event(ev).await,
                Input::Frame(frame) => {
                    idle.as_mut().reset(Instant::now() + config.idle_timeout);
                    self.on_frame(frame).await
                }
            };
            match reply {
                Ok(Some(text)) => {
                    if !send(ws, text, config.idle_timeout).await {
                        return End::Gone;
                    }
                }
                Ok(None) => {}
                Err(end) => return end,
            }
        }
    }

    /// A core event: the text for the browser, if any, or the end of the session.
    async fn on_event(&mut self, ev: Option<Event>) -> Result<Option<String>, End> {
        // The core drops the sink when it fails a session it cannot report to (full queue).
        let ev = ev.ok_or_else(|| {
            error(
                Code::Busy,
                "the server dropped the session; try again later",
            )
        })?;
        let text = match ev {
            Event::Personas(Personas::List(bytes)) => {
                let personas = json::decode_personas(&bytes).map_err(|e| {
                    error(
                        Code::Malformed,
                        format!("the appliance sent a bad persona list: {e}"),
                    )
                })?;
                // Fail closed: a policy that cannot decide shows no persona.
                let personas = self
                    .shared
                    .policy
                    .filter_personas(self.appliance.clone(), self.client, personas)
                    .await
                    .unwrap_or_default();
                self.state = State::CanLogin;
                Reply::Personas {
                    personas: &personas,
                }
                .encode()
            }
            Event::Personas(Personas::CredentialsRequired) => {
                self.state = State::CanLogin;
                Reply::CredentialsRequired.encode()
            }
            Event::Accepted => {
                self.audit(Outcome::Accepted);
                self.state = State::AwaitOffer;
                Reply::Accepted.encode()
            }
            Event::Rejected { attempts_left } => {
                self.audit(Outcome::Failed);
                self.state = State::CanLogin;
                // Waiting for the person again: not something a drain waits for.
                self.running = None;
                Reply::Rejected { attempts_left }.encode()
            }
            Event::Offer { sdp } => {
                self.state = State::Signalling {
                    answered: false,
                    ended: false,
                };
                Reply::Offer { sdp: &sdp }.encode()
            }
            Event::Candidate(c) => Reply::Candidate {
                candidate: &c.candidate,
                sdp_mid: c.mid.as_deref(),
            }
            .encode(),
            Event::EndOfCandidates => Reply::EndOfCandidates.encode(),
            Event::Done => return Err(End::Done),
            Event::Failed(f) => {
                self.audit(Outcome::Failed);
                let (code, message) = Code::from_failure(f);
                return Err(error(code, message));
            }
        };
        Ok(Some(text))
    }

    /// A frame from the browser (or the end of the stream).
    async fn on_frame(
        &mut self,
        frame: Option<Result<Message, WsError>>,
    ) -> Result<Option<String>, End> {
        match frame {
            None | Some(Ok(Message::Close(_))) => Err(End::Gone),
            Some(Ok(Message::Text(text))) => {
                let req = json::parse(&text)
                    .map_err(|e| error(Code::Malformed, format!("bad message: {e}")))?;
                self.on_request(req).await.map(|()| None)
            }
            Some(Ok(Message::Binary(_))) => Err(error(
                Code::Malformed,
                "binary frames are not part of the protocol",
            )),
            // tungstenite answers pings itself; they only keep the socket from idling out.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(None),
            Some(Err(WsError::Capacity(_))) => Err(error(
                Code::TooLarge,
                format!("messages are limited to {} bytes", self.config.max_message),
            )),
            Some(Err(WsError::Utf8(_))) => {
                Err(error(Code::Malformed, "a text frame was not UTF-8"))
            }
            Some(Err(_)) => Err(End::Gone),
        }
    }

    async fn on_request(&mut self, req: Request) -> Result<(), End> {
        let kind = req.kind();
        let login = matches!((&req, self.state), (Request::Login { .. }, State::CanLogin));
        if login {
            // Counted before the drain flag is read (a drain sets the flag, then counts), so
            // a log-in is either refused or waited for; and before the policy is asked.
            self.running = Some(self.shared.running.enter());
        }
        if (login || matches!((&req, self.state), (Request::Open { .. }, State::AwaitOpen)))
            && self.shared.is_draining()
        {
            if let Some(r) = self.running.take() {
                r.cancel();
            }
            return Err(error(
                Code::Busy,
                "the server is shutting down; try again later",
            ));
        }
        let command = match (req, &mut self.state) {
            (Request::Open { appliance }, State::AwaitOpen) => return self.open(&appliance),
            (
                Request::Login {
                    persona,
                    credential,
                },
                State::CanLogin,
            ) => {
                self.authorize(&persona).await?;
                self.state = State::AwaitVerdict;
                Command::Login {
                    persona,
                    credential,
                }
            }
            (
                Request::Answer { sdp },
                State::Signalling {
                    answered: answered @ false,
                    ended: false,
                },
            ) => {
                *answered = true;
                Command::Answer { sdp }
            }
            (Request::Candidate { candidate, sdp_mid }, State::Signalling { ended: false, .. }) => {
                Command::Candidate(Candidate {
                    candidate,
                    mid: sdp_mid,
                })
            }
            (
                Request::EndOfCandidates,
                State::Signalling {
                    ended: ended @ false,
                    ..
                },
            ) => {
                *ended = true;
                Command::EndOfCandidates
            }
            _ => {
                return Err(error(
                    Code::Malformed,
                    format!("`{kind}` is not expected now"),
                ))
            }
        };
        self.to_core(command)
    }

    /// Asks the policy before the credential goes anywhere.
    async fn authorize(&mut self, persona: &str) -> Result<(), End> {
        let attempt = LoginAttempt {
            appliance: self.appliance.clone(),
            persona: persona.to_owned(),
            client: self.client,
            origin: self.origin.clone(),
        };
        match self.shared.policy.authorize_login(attempt.clone()).await {
            Verdict::Allow => {
                self.attempt = Some(attempt);
                Ok(())
            }
            Verdict::Deny => {
                self.shared.policy.audit_login(&attempt, Outcome::Failed);
                Err(error(Code::Denied, "the log-in was refused by policy"))
            }
            Verdict::RetryAfter(d) => {
                self.shared.policy.audit_login(&attempt, Outcome::Failed);
                Err(End::RateLimited(d))
            }
        }
    }

    /// Records how the pending attempt ended (once).
    fn audit(&mut self, outcome: Outcome) {
        if let Some(a) = self.attempt.take() {
            self.shared.policy.audit_login(&a, outcome);
        }
    }

    fn open(&mut self, appliance: &str) -> Result<(), End> {
        let name = Name::normalize(appliance.as_bytes())
            .map_err(|e| error(Code::Malformed, format!("bad appliance name: {e}")))?;
        self.appliance = name.as_str().to_owned();
        let core = self.shared.link.core_for(&name);
        let (sink, events) = event_queue(self.config.events_queue);
        self.send_to(core, Command::Open { name }, Some(sink))?;
        bump(&self.shared.counters.sessions);
        self.core = Some(core);
        self.events = Some(events);
        self.state = State::AwaitPersonas;
        Ok(())
    }

    /// A command for the core chosen at `open` (the state machine only allows them after it).
    fn to_core(&self, command: Command) -> Result<(), End> {
        self.send_to(self.core.expect("commands follow open"), command, None)
    }

    fn send_to(&self, core: usize, command: Command, events: Option<EventSink>) -> Result<(), End> {
        self.shared
            .link
            .send(
                core,
                ToCore {
                    session: self.id,
                    command,
                    events,
                },
            )
            .map_err(|_| error(Code::Busy, "the server is overloaded; try again later"))
    }
}

async fn recv(events: &Option<EventQueue>) -> Option<Event> {
    match events {
        Some(queue) => queue.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends one text frame; false when the browser is gone or stopped reading.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    text: String,
    limit: Duration,
) -> bool {
    matches!(
        timeout(limit, ws.send(Message::text(text))).await,
        Ok(Ok(()))
    )
}

/// Tells the browser how the session ended and closes the websocket.
async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    end: End,
    id: SessionId,
    shared: &Shared,
) {
    let (code, reason) = match end {
        End::Done => {
            bump(&shared.counters.sessions_done);
            (CloseCode::Normal, "done")
        }
        End::GoingAway => (CloseCode::Away, "going away"),
        End::RateLimited(d) => {
            bump(&shared.counters.session_errors);
            let retry_after_ms = d.as_millis().min(u64::MAX as u128) as u64;
            let message = format!(
                "too many log-ins; try again in {} s",
                retry_after_ms.div_ceil(1000)
            );
            let text = Reply::Error {
                code: Code::RateLimited.as_str(),
                message: &message,
                retry_after_ms: Some(retry_after_ms),
            }
            .encode();
            if !send(ws, text, CLOSE_LINGER).await {
                return;
            }
            (Code::RateLimited.close_code(), Code::RateLimited.as_str())
        }
        End::Error(code, message) => {
            bump(&shared.counters.session_errors);
            tracing::debug!(session = id, code = code.as_str(), "log-in failed");
            let text = Reply::Error {
                code: code.as_str(),
                message: &message,
                retry_after_ms: None,
            }
            .encode();
            if !send(ws, text, CLOSE_LINGER).await {
                return;
            }
            (code.close_code(), code.as_str())
        }
        End::Gone => {
            // Flushes tungstenite's reply to the browser's close frame, if there was one.
            let _ = timeout(CLOSE_LINGER, ws.close(None)).await;
            return;
        }
    };
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if matches!(
        timeout(CLOSE_LINGER, ws.close(Some(frame))).await,
        Ok(Ok(()))
    ) {
        // Wait (briefly) for the browser's close frame, so that the browser, not the server,
        // holds the TIME_WAIT and sees a clean close.
        let _ = timeout(CLOSE_LINGER, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
}
