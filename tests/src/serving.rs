//! An SDK appliance's application side for the log-in tests: it serves a persona list,
//! checks credentials and, once a log-in is accepted, signals per a [`Behaviour`].

use flock_appliance::{ApplianceHandle, Candidate, Decision, Event};
use flock_testkit::browser::{Browser, WAIT};
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

impl Behaviour {
    /// Sends [`offer`] and one loopback candidate on `port`.
    pub fn offer_and_candidate(port: u16) -> Behaviour {
        Behaviour::Signal {
            offer: offer(),
            candidates: vec![candidate(port)],
        }
    }
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

/// A browser logged in to `appliance` (as alice, with the password [`run_appliance`] accepts)
/// and in the middle of signalling: it has the offer, a candidate and end-of-candidates of an
/// appliance signalling per [`Behaviour::offer_and_candidate`], and has sent nothing back yet.
pub async fn mid_signalling(gateway: std::net::SocketAddr, appliance: &str) -> Browser {
    let mut b = Browser::connect(gateway).await;
    b.open(appliance).await;
    b.expect("personas").await;
    b.login("alice", "wonderland").await;
    b.expect("accepted").await;
    b.expect("offer").await;
    b.expect("candidate").await;
    b.expect("end-of-candidates").await;
    b
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
