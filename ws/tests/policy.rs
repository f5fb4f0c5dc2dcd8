//! The operator's policy as the gateway consults it: a log-in attempt is authorized before its
//! credential reaches any core (deny → `denied`, retry-after → `rate-limited`), the persona list
//! is filtered per browser (and shown empty when the policy cannot decide), and outcomes are
//! audited with the client address and origin.

use flock_proto::login::{Command, Event, Personas};
use flock_testkit::browser::*;
use flock_testkit::gateway::*;
use flock_ws::policy::BoxFuture;
use flock_ws::{LoginAttempt, Outcome, Persona, Policy, Verdict};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Scripted {
    audit: Mutex<Vec<(String, Outcome, Option<String>)>>,
}

impl Policy for Scripted {
    fn authorize_login(&self, a: LoginAttempt) -> BoxFuture<Verdict> {
        assert!(a.client.ip().is_loopback());
        let v = match a.persona.as_str() {
            "mallory" => Verdict::Deny,
            "eager" => Verdict::RetryAfter(Duration::from_millis(2500)),
            _ => Verdict::Allow,
        };
        Box::pin(std::future::ready(v))
    }
    fn filter_personas(
        &self,
        appliance: String,
        _: SocketAddr,
        personas: Vec<Persona>,
    ) -> BoxFuture<Option<Vec<Persona>>> {
        // "undecided-box": the policy cannot decide (say, a plugin overran its budget).
        let out = (appliance != "undecided-box")
            .then(|| personas.into_iter().filter(|p| p.id != "guest").collect());
        Box::pin(std::future::ready(out))
    }
    fn audit_login(&self, a: &LoginAttempt, outcome: Outcome) {
        self.audit
            .lock()
            .unwrap()
            .push((a.persona.clone(), outcome, a.origin.clone()));
    }
}

fn list() -> Event {
    Event::Personas(Personas::List(Arc::from(
        &br#"[{"id":"alice","name":"Alice"},{"id":"guest","name":"Guest"}]"#[..],
    )))
}

async fn opened(ws: &mut Browser, cores: &mut Cores, name: &str) -> (u64, flock_ws::EventSink) {
    ws.open(name).await;
    let (_, session, sink) = cores.expect_open(name).await;
    sink.try_send(list()).unwrap();
    (session, sink)
}

#[tokio::test]
async fn personas_are_filtered_and_attempts_authorized_and_audited() {
    let policy = Arc::new(Scripted::default());
    let (gw, mut cores) = start_with_policy(1, policy.clone(), |_| {});

    let mut ws = Browser::connect(gw.local_addr()).await;
    let (session, sink) = opened(&mut ws, &mut cores, "my-box").await;
    assert_eq!(
        ws.recv().await,
        json!({"type":"personas","personas":[{"id":"alice","name":"Alice"}]})
    );
    ws.login("alice", "x").await;
    cores.expect_login(session, "alice", "x").await;
    sink.try_send(Event::Rejected { attempts_left: 2 }).unwrap();
    ws.recv().await;
    ws.login("alice", "y").await;
    cores.expect_login(session, "alice", "y").await;
    sink.try_send(Event::Accepted).unwrap();
    assert_eq!(ws.recv().await["type"], "accepted");

    // Denied by policy: the credential never reaches the core.
    let mut ws = Browser::connect(gw.local_addr()).await;
    let (session, _sink) = opened(&mut ws, &mut cores, "my-box").await;
    ws.recv().await;
    ws.send(json!({"type":"login","persona":"mallory","credential":"pwd:z"}))
        .await;
    assert_eq!(ws.expect_error("denied").await, Closed::new(1008, "denied"));
    cores.expect(session, Command::Close).await;

    // Rate limited: a typed error that says when to come back.
    let mut ws = Browser::connect(gw.local_addr()).await;
    let (session, _sink) = opened(&mut ws, &mut cores, "my-box").await;
    ws.recv().await;
    ws.send(json!({"type":"login","persona":"eager","credential":"pwd:z"}))
        .await;
    let e = ws.recv().await;
    assert_eq!(
        (e["code"].as_str(), e["retry_after_ms"].as_u64()),
        (Some("rate-limited"), Some(2500)),
        "{e}"
    );
    assert_eq!(ws.closed().await, Closed::new(1013, "rate-limited"));
    cores.expect(session, Command::Close).await;

    let audit = policy.audit.lock().unwrap().clone();
    let outcomes: Vec<_> = audit.iter().map(|(p, o, _)| (p.as_str(), *o)).collect();
    assert_eq!(
        outcomes,
        [
            ("alice", Outcome::Failed),
            ("alice", Outcome::Accepted),
            ("mallory", Outcome::Failed),
            ("eager", Outcome::Failed)
        ]
    );
}

#[tokio::test]
async fn an_undecided_filter_shows_no_persona() {
    let (gw, mut cores) = start_with_policy(1, Arc::new(Scripted::default()), |_| {});
    let mut ws = Browser::connect(gw.local_addr()).await;
    opened(&mut ws, &mut cores, "undecided-box").await;
    assert_eq!(ws.recv().await, json!({"type":"personas","personas":[]}));
}

#[tokio::test]
async fn the_origin_reaches_the_policy() {
    let policy = Arc::new(Scripted::default());
    let (gw, mut cores) = start_with_policy(1, policy.clone(), |c| {
        c.allowed_origins = vec!["https://flock.example".into()]
    });
    let mut ws = Browser::try_connect(gw.local_addr(), &[("Origin", "https://flock.example")])
        .await
        .expect("allowed origin");
    let (_, sink) = opened(&mut ws, &mut cores, "my-box").await;
    ws.recv().await;
    ws.send(json!({"type":"login","persona":"alice","credential":"pwd:x"}))
        .await;
    cores.next().await;
    sink.try_send(Event::Accepted).unwrap();
    ws.recv().await;
    let audit = policy.audit.lock().unwrap().clone();
    assert_eq!(audit[0].2.as_deref(), Some("https://flock.example"));
}
