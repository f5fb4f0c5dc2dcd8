//! A WebRTC peer that plays the appliance's side in browser tests: it makes the SDP offer
//! with one data channel ("flock"), answers "ping" with "pong", and records what it got.
//!
//! str0m is sans-IO; one std thread owns the `Rtc` and a UDP socket on 127.0.0.1 and drives
//! it. Other threads talk to it through commands, so every mutation is followed by a full
//! drain of `poll_output`, as str0m requires.
//!
//! It only talks over loopback: datagrams from or to other addresses (a browser also probes
//! from its LAN interfaces) are dropped, so tests never send beyond this machine's loopback.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// Label of the data channel the peer offers.
pub const CHANNEL_LABEL: &str = "flock";

/// What the peer has seen so far.
#[derive(Clone, Debug, Default)]
pub struct PeerState {
    pub ice: Option<IceConnectionState>,
    /// ICE and DTLS are up.
    pub connected: bool,
    pub channel_open: bool,
    /// Text messages received on the data channel, in order.
    pub received: Vec<String>,
    /// Set when the driving thread stopped on an error.
    pub error: Option<String>,
}

enum Cmd {
    Answer(String, mpsc::Sender<Result<(), String>>),
    Candidate(String, mpsc::Sender<Result<(), String>>),
}

type Shared = Arc<(Mutex<PeerState>, Condvar)>;

/// The running peer; its thread stops when this is dropped.
pub struct WebRtcPeer {
    cmds: mpsc::Sender<Cmd>,
    shared: Shared,
    local: Vec<(String, Option<String>)>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WebRtcPeer {
    /// Binds 127.0.0.1:0, creates the offer and starts the driving thread.
    /// Returns the peer and the offer's SDP. The offer carries no candidates: they are
    /// trickled (see [`WebRtcPeer::local_candidates`]), which is what the tests exercise.
    pub fn start() -> (WebRtcPeer, String) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let addr = socket.local_addr().unwrap();
        let mut rtc = Rtc::new(Instant::now());
        let mut api = rtc.sdp_api();
        api.add_channel(CHANNEL_LABEL.to_string());
        let (offer, pending) = api.apply().expect("an offer with a data channel");
        let offer = offer.to_sdp_string();
        let mid = offer
            .lines()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .map(|m| m.trim().to_string());
        // Drain after the SDP change, then add the candidate (another mutation) and drain.
        let shared: Shared = Default::default();
        drain(&mut rtc, &socket, &shared).expect("drain");
        let cand = Candidate::host(addr, "udp").expect("host candidate");
        let line = rtc
            .add_local_candidate(cand)
            .expect("candidate accepted")
            .to_sdp_string();
        let deadline = drain(&mut rtc, &socket, &shared).expect("drain");
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("webrtc-peer".into())
            .spawn(move || run(rtc, Some(pending), socket, rx, s, st, deadline))
            .unwrap();
        let peer = WebRtcPeer {
            cmds: tx,
            shared,
            local: vec![(line, mid)],
            addr,
            stop,
            thread: Some(thread),
        };
        (peer, offer)
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
    /// not needed: everything is bundled on one transport.
    pub fn add_remote_candidate(&self, candidate: &str, _mid: Option<&str>) -> Result<(), String> {
        self.call(|r| Cmd::Candidate(candidate.trim_start_matches("a=").to_string(), r))
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
        format!("webrtc peer stopped: {:?}", self.state().error)
    }

    /// A snapshot of the state.
    pub fn state(&self) -> PeerState {
        self.shared.0.lock().unwrap().clone()
    }

    /// Text received on the data channel so far.
    pub fn received(&self) -> Vec<String> {
        self.state().received
    }

    pub fn channel_open(&self) -> bool {
        self.state().channel_open
    }

    /// Blocks until `pred` holds (Ok with that state) or `timeout` passes (Err with the last
    /// state). Also returns Err early if the peer stopped on an error.
    pub fn wait_for(
        &self,
        pred: impl Fn(&PeerState) -> bool,
        timeout: Duration,
    ) -> Result<PeerState, PeerState> {
        let (lock, cv) = &*self.shared;
        let end = Instant::now() + timeout;
        let mut st = lock.lock().unwrap();
        loop {
            if pred(&st) {
                return Ok(st.clone());
            }
            let now = Instant::now();
            if now >= end || st.error.is_some() {
                return Err(st.clone());
            }
            st = cv.wait_timeout(st, end - now).unwrap().0;
        }
    }
}

impl Drop for WebRtcPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn update(shared: &Shared, f: impl FnOnce(&mut PeerState)) {
    f(&mut shared.0.lock().unwrap());
    shared.1.notify_all();
}

/// The driving loop: commands and socket input are the mutations, each followed by a drain.
fn run(
    mut rtc: Rtc,
    mut pending: Option<SdpPendingOffer>,
    socket: UdpSocket,
    cmds: mpsc::Receiver<Cmd>,
    shared: Shared,
    stop: Arc<AtomicBool>,
    mut deadline: Instant,
) {
    let local = socket.local_addr().unwrap();
    let mut buf = vec![0u8; 2000];
    let result = (|| -> Result<(), String> {
        while !stop.load(Ordering::Relaxed) {
            while let Ok(cmd) = cmds.try_recv() {
                let (res, reply) = match cmd {
                    Cmd::Answer(sdp, reply) => {
                        let res = match (pending.take(), SdpAnswer::from_sdp_string(&sdp)) {
                            (Some(p), Ok(a)) => {
                                rtc.sdp_api().accept_answer(p, a).map_err(|e| e.to_string())
                            }
                            (None, _) => Err("answer already accepted".into()),
                            (_, Err(e)) => Err(format!("bad answer sdp: {e}")),
                        };
                        (res, reply)
                    }
                    Cmd::Candidate(line, reply) => {
                        let res =
                            Candidate::from_sdp_string(&line).map(|c| rtc.add_remote_candidate(c));
                        (
                            res.map_err(|e| format!("bad candidate {line:?}: {e}")),
                            reply,
                        )
                    }
                };
                let _ = reply.send(res);
                deadline = drain(&mut rtc, &socket, &shared)?;
            }
            // Timers first, so a stream of datagrams cannot starve them.
            if Instant::now() >= deadline {
                rtc.handle_input(Input::Timeout(Instant::now()))
                    .map_err(|e| e.to_string())?;
                deadline = drain(&mut rtc, &socket, &shared)?;
            }
            // Wake at least every 20 ms so commands and `stop` are seen promptly.
            let wait = deadline.saturating_duration_since(Instant::now());
            socket
                .set_read_timeout(Some(
                    wait.clamp(Duration::from_millis(1), Duration::from_millis(20)),
                ))
                .unwrap();
            let input = match socket.recv_from(&mut buf) {
                // Loopback only (see the module doc).
                Ok((_, source)) if !source.ip().is_loopback() => continue,
                Ok((n, source)) => match Receive::new(Protocol::Udp, source, local, &buf[..n]) {
                    Ok(r) => Input::Receive(Instant::now(), r),
                    Err(_) => continue, // not STUN/DTLS/RTP: ignore stray datagrams
                },
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    Input::Timeout(Instant::now())
                }
                Err(e) => return Err(format!("recv: {e}")),
            };
            rtc.handle_input(input).map_err(|e| e.to_string())?;
            deadline = drain(&mut rtc, &socket, &shared)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        update(&shared, |s| s.error = Some(e));
    }
}

/// Polls until str0m asks for a timeout: sends datagrams, records events, answers "ping".
fn drain(rtc: &mut Rtc, socket: &UdpSocket, shared: &Shared) -> Result<Instant, String> {
    loop {
        match rtc.poll_output().map_err(|e| e.to_string())? {
            Output::Timeout(t) => return Ok(t),
            Output::Transmit(t) => {
                // Loopback only (see above); a failed send is a lost packet, which ICE retries.
                if t.destination.ip().is_loopback() {
                    let _ = socket.send_to(&t.contents, t.destination);
                }
            }
            Output::Event(Event::IceConnectionStateChange(s)) => {
                update(shared, |st| st.ice = Some(s))
            }
            Output::Event(Event::Connected) => update(shared, |st| st.connected = true),
            Output::Event(Event::ChannelOpen(_, _)) => update(shared, |st| st.channel_open = true),
            Output::Event(Event::ChannelClose(_)) => update(shared, |st| st.channel_open = false),
            Output::Event(Event::ChannelData(d)) => {
                let text = String::from_utf8_lossy(&d.data).into_owned();
                if !d.binary && text == "ping" {
                    if let Some(mut ch) = rtc.channel(d.id) {
                        // false = no buffer space: a lost pong, which the pinger's retry covers.
                        let _ = ch.write(false, b"pong").map_err(|e| e.to_string())?;
                    }
                }
                update(shared, |st| st.received.push(text));
            }
            Output::Event(_) => {}
        }
    }
}
