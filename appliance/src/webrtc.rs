//! A WebRTC peer for the appliance's side of a log-in (cargo feature `webrtc`, str0m, Rust
//! 1.89): it makes the SDP offer with one data channel ([`CHANNEL_LABEL`]), takes the browser's
//! answer and candidates, and answers every text message `m` on the channel with
//! `"echo: m"`. The `flock-appliance` simulator runs one per accepted log-in ([`Peers`] bounds
//! them); the end-to-end tests use it as the appliance.
//!
//! str0m is sans-IO; one std thread owns the `Rtc` and its UDP socket and drives it. Other
//! threads talk to it through commands (so every mutation is followed by a full drain of
//! `poll_output`, as str0m requires); each call returns once the thread took it (within 20 ms:
//! in async code, call from `spawn_blocking`). The thread stops when the [`WebRtcPeer`] is
//! dropped, when its lifetime is over, when the browser closes the channel, after ICE stayed
//! disconnected for [`DISCONNECTED_LIMIT`], or on an error.
//!
//! The peer's one host candidate is its socket's address (trickled, not in the offer). Bound to
//! a loopback address, it keeps to loopback: datagrams from other addresses are dropped and
//! nothing is sent to them (a browser also probes from its LAN interfaces), so nothing leaves
//! the machine.

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// Label of the data channel the peer offers.
pub const CHANNEL_LABEL: &str = "flock";
/// Text messages kept in [`PeerState::received`] (the most recent).
pub const MAX_RECEIVED: usize = 64;
/// ICE disconnected this long (the browser went away without closing): the peer stops.
pub const DISCONNECTED_LIMIT: Duration = Duration::from_secs(30);

/// What the peer tells its owner as it happens (see [`PeerOptions::on_event`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// ICE and DTLS are up.
    Connected,
    /// The data channel is open.
    ChannelOpen,
    /// A text message arrived on the data channel (and was echoed).
    Message(String),
    /// The peer's thread ended, for this reason (an error, "lifetime over", "closed by the
    /// browser", "ICE disconnected", or the reason given to [`WebRtcPeer::close`]).
    Stopped(String),
}

/// Called on the peer's thread with each [`PeerEvent`]; keep it quick.
pub type EventSink = Box<dyn FnMut(PeerEvent) + Send>;

/// How to start a peer.
pub struct PeerOptions {
    /// The IP to bind the peer's UDP socket to (a free port). It is also the host candidate,
    /// so it must be an address of this machine the browser can reach (not unspecified).
    pub bind: IpAddr,
    /// The peer stops this long after it started, whatever it is doing.
    pub lifetime: Duration,
    pub on_event: Option<EventSink>,
}

impl Default for PeerOptions {
    /// 127.0.0.1, 10 minutes, no event sink.
    fn default() -> PeerOptions {
        PeerOptions {
            bind: IpAddr::from([127, 0, 0, 1]),
            lifetime: Duration::from_secs(600),
            on_event: None,
        }
    }
}

/// What the peer has seen so far.
#[derive(Clone, Debug, Default)]
pub struct PeerState {
    pub ice: Option<IceConnectionState>,
    /// ICE and DTLS are up.
    pub connected: bool,
    pub channel_open: bool,
    /// Text messages received on the data channel, in order (the last [`MAX_RECEIVED`]).
    pub received: Vec<String>,
    /// Set when the driving thread stopped on an error.
    pub error: Option<String>,
    /// Set when the driving thread stopped, with the reason.
    pub stopped: Option<String>,
}

enum Cmd {
    Answer(String, mpsc::Sender<Result<(), String>>),
    Candidate(String, mpsc::Sender<Result<(), String>>),
}

#[derive(Default)]
struct Inner {
    state: PeerState,
    /// Set by the owner: stop, for this reason.
    stop: Option<String>,
}

type Shared = Arc<(Mutex<Inner>, Condvar)>;

/// The running peer; its thread stops when this is dropped.
pub struct WebRtcPeer {
    cmds: mpsc::Sender<Cmd>,
    shared: Shared,
    local: Vec<(String, Option<String>)>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for WebRtcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcPeer")
            .field("addr", &self.addr)
            .field("state", &self.state())
            .finish()
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl WebRtcPeer {
    /// Binds `options.bind` (a free port), creates the offer and starts the driving thread.
    /// Returns the peer and the offer's SDP. The offer carries no candidates: they are
    /// trickled (see [`WebRtcPeer::local_candidates`]).
    pub fn start(options: PeerOptions) -> io::Result<(WebRtcPeer, String)> {
        let socket = UdpSocket::bind(SocketAddr::new(options.bind, 0))?;
        let addr = socket.local_addr()?;
        let started = Instant::now();
        let mut rtc = Rtc::new(started);
        let mut api = rtc.sdp_api();
        api.add_channel(CHANNEL_LABEL.to_string());
        let (offer, pending) = api.apply().ok_or_else(|| other("no offer was made"))?;
        let offer = offer.to_sdp_string();
        let mid = offer
            .lines()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .map(|m| m.trim().to_string());
        let shared: Shared = Default::default();
        let mut driver = Driver {
            rtc,
            pending: Some(pending),
            loopback_only: addr.ip().is_loopback(),
            socket,
            local: addr,
            shared: shared.clone(),
            sink: options.on_event,
        };
        // Drain after the SDP change, then add the candidate (another mutation) and drain.
        driver.drain().map_err(other)?;
        let cand = Candidate::host(addr, "udp").map_err(other)?;
        let line = driver
            .rtc
            .add_local_candidate(cand)
            .ok_or_else(|| other(format!("host candidate {addr} refused")))?
            .to_sdp_string();
        let deadline = driver.drain().map_err(other)?;
        let (tx, rx) = mpsc::channel();
        let end = started + options.lifetime;
        let thread = std::thread::Builder::new()
            .name("webrtc-peer".into())
            .spawn(move || driver.run(rx, deadline, end))?;
        let peer = WebRtcPeer {
            cmds: tx,
            shared,
            local: vec![(line, mid)],
            addr,
            thread: Some(thread),
        };
        Ok((peer, offer))
    }

    /// Local candidates as (`candidate:…` line, sdpMid).
    pub fn local_candidates(&self) -> Vec<(String, Option<String>)> {
        self.local.clone()
    }

    /// The UDP address the peer uses.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies the remote answer SDP.
    pub fn accept_answer(&self, sdp: &str) -> Result<(), String> {
        self.call(|r| Cmd::Answer(sdp.to_string(), r))
    }

    /// Adds a trickled remote candidate (`candidate:…`, with or without `a=`). The mid is
    /// not needed: everything is bundled on one transport. A candidate whose address is an mDNS
    /// name (`….local`: a browser hiding its address) is skipped, as Ok: there is no resolver
    /// here, and the browser's connectivity checks show its address anyway (peer-reflexive).
    pub fn add_remote_candidate(&self, candidate: &str, _mid: Option<&str>) -> Result<(), String> {
        let line = candidate.trim_start_matches("a=");
        if is_mdns(line) {
            return Ok(());
        }
        self.call(|r| Cmd::Candidate(line.to_string(), r))
    }

    fn call(
        &self,
        cmd: impl FnOnce(mpsc::Sender<Result<(), String>>) -> Cmd,
    ) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.cmds.send(cmd(tx)).map_err(|_| self.stopped())?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> String {
        let st = self.state();
        format!(
            "webrtc peer stopped: {}",
            st.stopped.as_deref().unwrap_or("(no reason)")
        )
    }

    /// A snapshot of the state.
    pub fn state(&self) -> PeerState {
        lock(&self.shared).state.clone()
    }

    /// Text received on the data channel so far.
    pub fn received(&self) -> Vec<String> {
        self.state().received
    }

    pub fn channel_open(&self) -> bool {
        self.state().channel_open
    }

    /// The driving thread has stopped.
    pub fn is_stopped(&self) -> bool {
        lock(&self.shared).state.stopped.is_some()
    }

    /// Asks the thread to stop for `reason` (reported in [`PeerEvent::Stopped`]) without
    /// waiting for it; dropping the peer then joins it.
    pub fn close(&self, reason: &str) {
        lock(&self.shared).stop.get_or_insert_with(|| reason.into());
    }

    /// Blocks until `pred` holds (Ok with that state) or `timeout` passes (Err with the last
    /// state). Also returns Err early if the peer stopped.
    pub fn wait_for(
        &self,
        pred: impl Fn(&PeerState) -> bool,
        timeout: Duration,
    ) -> Result<PeerState, PeerState> {
        let (lock, cv) = &*self.shared;
        let end = Instant::now() + timeout;
        let mut inner = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if pred(&inner.state) {
                return Ok(inner.state.clone());
            }
            let now = Instant::now();
            if now >= end || inner.state.stopped.is_some() {
                return Err(inner.state.clone());
            }
            inner = cv
                .wait_timeout(inner, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for WebRtcPeer {
    fn drop(&mut self) {
        self.close("closed");
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The candidate's address (its fifth field) is an mDNS name.
fn is_mdns(line: &str) -> bool {
    line.split_whitespace()
        .nth(4)
        .is_some_and(|a| a.ends_with(".local"))
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    shared.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the driving thread owns.
struct Driver {
    rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    socket: UdpSocket,
    local: SocketAddr,
    /// Bound to loopback: keep to it (see the module doc).
    loopback_only: bool,
    shared: Shared,
    sink: Option<EventSink>,
}

impl Driver {
    fn update(&self, f: impl FnOnce(&mut PeerState)) {
        f(&mut lock(&self.shared).state);
        self.shared.1.notify_all();
    }

    fn emit(&mut self, e: PeerEvent) {
        if let Some(sink) = &mut self.sink {
            sink(e);
        }
    }

    /// Why to stop now, if so.
    fn should_stop(
        &self,
        now: Instant,
        end: Instant,
        disconnected: Option<Instant>,
    ) -> Option<String> {
        if let Some(reason) = &lock(&self.shared).stop {
            return Some(reason.clone());
        }
        if now >= end {
            return Some("lifetime over".into());
        }
        if disconnected.is_some_and(|t| now >= t + DISCONNECTED_LIMIT) {
            return Some("ICE disconnected".into());
        }
        if !self.rtc.is_alive() {
            return Some("connection closed".into());
        }
        None
    }

    /// The driving loop: commands and socket input are the mutations, each followed by a
    /// drain. `end` is the end of the peer's lifetime.
    fn run(mut self, cmds: mpsc::Receiver<Cmd>, mut deadline: Instant, end: Instant) {
        let mut buf = vec![0u8; 2000];
        let mut disconnected: Option<Instant> = None;
        let result = (|| -> Result<String, String> {
            loop {
                let now = Instant::now();
                let ice = lock(&self.shared).state.ice;
                match ice {
                    Some(IceConnectionState::Disconnected) => {
                        disconnected.get_or_insert(now);
                    }
                    _ => disconnected = None,
                }
                if let Some(reason) = self.should_stop(now, end, disconnected) {
                    return Ok(reason);
                }
                while let Ok(cmd) = cmds.try_recv() {
                    let (res, reply) = match cmd {
                        Cmd::Answer(sdp, reply) => (self.accept_answer(&sdp), reply),
                        Cmd::Candidate(line, reply) => {
                            let res = Candidate::from_sdp_string(&line)
                                .map(|c| self.rtc.add_remote_candidate(c))
                                .map_err(|e| format!("bad candidate: {e}"));
                            (res, reply)
                        }
                    };
                    let _ = reply.send(res);
                    deadline = self.drain()?;
                }
                // Timers first, so a stream of datagrams cannot starve them.
                if Instant::now() >= deadline {
                    self.rtc
                        .handle_input(Input::Timeout(Instant::now()))
                        .map_err(|e| e.to_string())?;
                    deadline = self.drain()?;
                }
                // Wake at least every 20 ms so commands and stops are seen promptly.
                let wait = deadline.saturating_duration_since(Instant::now());
                self.socket
                    .set_read_timeout(Some(
                        wait.clamp(Duration::from_millis(1), Duration::from_millis(20)),
                    ))
                    .map_err(|e| e.to_string())?;
                let input = match self.socket.recv_from(&mut buf) {
                    Ok((_, source)) if self.loopback_only && !source.ip().is_loopback() => continue,
                    Ok((n, source)) => {
                        match Receive::new(Protocol::Udp, source, self.local, &buf[..n]) {
                            Ok(r) => Input::Receive(Instant::now(), r),
                            Err(_) => continue, // not STUN/DTLS/RTP: ignore stray datagrams
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        Input::Timeout(Instant::now())
                    }
                    Err(e) => return Err(format!("recv: {e}")),
                };
                self.rtc.handle_input(input).map_err(|e| e.to_string())?;
                deadline = self.drain()?;
            }
        })();
        let reason = match result {
            Ok(reason) => reason,
            Err(e) => {
                self.update(|s| s.error = Some(e.clone()));
                e
            }
        };
        self.update(|s| {
            s.stopped = Some(reason.clone());
            s.channel_open = false;
        });
        self.emit(PeerEvent::Stopped(reason));
    }

    fn accept_answer(&mut self, sdp: &str) -> Result<(), String> {
        match (self.pending.take(), SdpAnswer::from_sdp_string(sdp)) {
            (Some(p), Ok(a)) => self
                .rtc
                .sdp_api()
                .accept_answer(p, a)
                .map_err(|e| e.to_string()),
            (None, _) => Err("answer already accepted".into()),
            (Some(p), Err(e)) => {
                self.pending = Some(p); // a better answer may still come
                Err(format!("bad answer sdp: {e}"))
            }
        }
    }

    /// Polls until str0m asks for a timeout: sends datagrams, records events, echoes text.
    fn drain(&mut self) -> Result<Instant, String> {
        loop {
            match self.rtc.poll_output().map_err(|e| e.to_string())? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    // A failed send is a lost packet, which ICE retries.
                    if !self.loopback_only || t.destination.ip().is_loopback() {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                }
                Output::Event(Event::IceConnectionStateChange(s)) => {
                    self.update(|st| st.ice = Some(s))
                }
                Output::Event(Event::Connected) => {
                    self.update(|st| st.connected = true);
                    self.emit(PeerEvent::Connected);
                }
                Output::Event(Event::ChannelOpen(_, _)) => {
                    self.update(|st| st.channel_open = true);
                    self.emit(PeerEvent::ChannelOpen);
                }
                Output::Event(Event::ChannelClose(_)) => {
                    self.update(|st| st.channel_open = false);
                    // Our only channel: nothing more to do.
                    lock(&self.shared)
                        .stop
                        .get_or_insert_with(|| "closed by the browser".into());
                }
                Output::Event(Event::ChannelData(d)) if !d.binary => {
                    let text = String::from_utf8_lossy(&d.data).into_owned();
                    if let Some(mut ch) = self.rtc.channel(d.id) {
                        // false = no buffer space: a lost echo (the sender may retry).
                        let _ = ch
                            .write(false, format!("echo: {text}").as_bytes())
                            .map_err(|e| e.to_string())?;
                    }
                    self.update(|st| {
                        if st.received.len() == MAX_RECEIVED {
                            st.received.remove(0);
                        }
                        st.received.push(text.clone());
                    });
                    self.emit(PeerEvent::Message(text));
                }
                Output::Event(_) => {}
            }
        }
    }
}

/// A bounded set of running peers, oldest first (the simulator keeps its log-ins' peers in
/// one). Each peer ends by itself at the end of its lifetime; adding one when `max` are
/// running closes the oldest.
pub struct Peers<K> {
    max: usize,
    peers: VecDeque<(K, Arc<WebRtcPeer>)>,
}

impl<K: PartialEq> Peers<K> {
    /// At most `max` peers (at least one).
    pub fn new(max: usize) -> Peers<K> {
        Peers {
            max: max.max(1),
            peers: VecDeque::new(),
        }
    }

    /// Adds `peer` under `key`. Returns the peers taken out to make room: those that had
    /// stopped, and the oldest running one when `max` were running (it is told to close,
    /// "replaced by a newer log-in (`max` at most)"). Dropping a peer joins its thread (up to 20 ms): in
    /// async code, drop them from `spawn_blocking`.
    pub fn insert(&mut self, key: K, peer: Arc<WebRtcPeer>) -> Vec<Arc<WebRtcPeer>> {
        let mut out = vec![];
        let mut i = 0;
        while i < self.peers.len() {
            if self.peers[i].1.is_stopped() || self.peers[i].0 == key {
                out.extend(self.peers.remove(i).map(|(_, p)| p));
            } else {
                i += 1;
            }
        }
        while self.peers.len() >= self.max {
            let Some((_, oldest)) = self.peers.pop_front() else {
                break;
            };
            oldest.close(&format!(
                "replaced by a newer log-in ({} at most)",
                self.max
            ));
            out.push(oldest);
        }
        self.peers.push_back((key, peer));
        out
    }

    pub fn get(&self, key: &K) -> Option<Arc<WebRtcPeer>> {
        self.peers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, p)| p.clone())
    }

    pub fn remove(&mut self, key: &K) -> Option<Arc<WebRtcPeer>> {
        let i = self.peers.iter().position(|(k, _)| k == key)?;
        self.peers.remove(i).map(|(_, p)| p)
    }

    /// Peers held (some may have stopped since the last [`Peers::insert`]).
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Arc<WebRtcPeer> {
        Arc::new(WebRtcPeer::start(PeerOptions::default()).unwrap().0)
    }

    #[test]
    fn offer_has_a_data_channel_and_the_candidate_is_the_socket() {
        let (p, offer) = WebRtcPeer::start(PeerOptions::default()).unwrap();
        assert!(
            offer.contains("m=application") && offer.contains("webrtc-datachannel"),
            "{offer}"
        );
        let c = p.local_candidates();
        assert_eq!(c.len(), 1);
        assert!(
            c[0].0
                .contains(&format!(" {} {} typ host", p.addr().ip(), p.addr().port())),
            "{c:?}"
        );
        assert!(p.addr().ip().is_loopback());
        // The offer's (only) mid.
        let mid = offer.lines().find_map(|l| l.strip_prefix("a=mid:"));
        assert_eq!(c[0].1.as_deref(), mid);
        assert!(mid.is_some());
    }

    #[test]
    fn lifetime_ends_the_peer_and_says_so() {
        let (tx, rx) = mpsc::channel();
        let options = PeerOptions {
            lifetime: Duration::from_millis(50),
            on_event: Some(Box::new(move |e| {
                let _ = tx.send(e);
            })),
            ..PeerOptions::default()
        };
        let (p, _) = WebRtcPeer::start(options).unwrap();
        let st = p.wait_for(|s| s.stopped.is_some(), Duration::from_secs(5));
        assert_eq!(st.unwrap().stopped.as_deref(), Some("lifetime over"));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(1)).unwrap(),
            PeerEvent::Stopped("lifetime over".into())
        );
        assert!(p
            .accept_answer("v=0\r\n")
            .unwrap_err()
            .contains("lifetime over"));
    }

    #[test]
    fn a_bad_answer_or_candidate_is_refused_and_the_peer_lives_on() {
        let (p, _) = WebRtcPeer::start(PeerOptions::default()).unwrap();
        assert!(p
            .accept_answer("v=0\r\na=x\r\n")
            .unwrap_err()
            .contains("bad answer"));
        assert!(p.add_remote_candidate("candidate:nonsense", None).is_err());
        let mdns = "candidate:1 1 udp 2113937151 1f69-e8.local 37656 typ host generation 0";
        assert_eq!(p.add_remote_candidate(mdns, None), Ok(()), "skipped");
        assert!(is_mdns(mdns) && !is_mdns("candidate:1 1 udp 1 127.0.0.1 9 typ host"));
        assert!(!p.is_stopped());
    }

    #[test]
    fn peers_are_bounded_oldest_out_first() {
        let mut peers = Peers::new(2);
        assert!(peers.insert(1, peer()).is_empty());
        assert!(peers.insert(2, peer()).is_empty());
        let out = peers.insert(3, peer());
        assert_eq!(out.len(), 1);
        let st = out[0].wait_for(|s| s.stopped.is_some(), Duration::from_secs(5));
        assert_eq!(
            st.unwrap().stopped.as_deref(),
            Some("replaced by a newer log-in (2 at most)")
        );
        assert!(peers.get(&1).is_none() && peers.get(&2).is_some() && peers.get(&3).is_some());
        // A stopped peer makes room without closing a running one.
        peers.get(&2).unwrap().close("test");
        peers
            .get(&2)
            .unwrap()
            .wait_for(|s| s.stopped.is_some(), Duration::from_secs(5))
            .ok();
        let out = peers.insert(4, peer());
        assert_eq!(out.len(), 1);
        assert!(peers.get(&3).is_some_and(|p| !p.is_stopped()));
        assert_eq!(peers.remove(&3).map(|_| ()), Some(()));
        assert_eq!(peers.len(), 1);
    }
}
