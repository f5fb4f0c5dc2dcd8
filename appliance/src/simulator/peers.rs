//! The log-ins' WebRTC peers, and the IP they bind.

use flock_appliance::webrtc::{PeerEvent, PeerOptions, Peers, WebRtcPeer};
use flock_appliance::{ApplianceHandle, Candidate, Event, SessionNonce};
use std::io::{self};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// The IP the WebRTC peers bind (and show as their host candidate): loopback for a loopback
/// server (nothing leaves the machine), else the --bind IP, else the local address of the route
/// to the server (a connected UDP socket tells it; nothing is sent).
pub(crate) fn peer_ip(server: SocketAddr, bind: SocketAddr) -> io::Result<IpAddr> {
    if server.ip().is_loopback() {
        return Ok(server.ip());
    }
    if !bind.ip().is_unspecified() {
        return Ok(bind.ip());
    }
    let probe = UdpSocket::bind(SocketAddr::new(bind.ip(), 0))?;
    probe.connect(server)?;
    Ok(probe.local_addr()?.ip())
}

/// The log-ins' WebRTC peers, shared by the appliances of the process (with --personas).
pub(crate) struct Webrtc {
    /// What the peers bind (see [`peer_ip`]).
    pub(crate) ip: IpAddr,
    pub(crate) lifetime: Duration,
    /// Keyed by appliance index and session.
    pub(crate) peers: Mutex<Peers<(usize, SessionNonce)>>,
}

impl Webrtc {
    /// Plays the appliance's side of the signalling for `event`: a peer, its offer, candidate
    /// and end-of-candidates for an accepted log-in; the browser's answer and candidates to
    /// its peer. Returns what went wrong (the log-in carries on; the browser sees no channel).
    pub(crate) async fn signal(
        &self,
        index: usize,
        handle: &ApplianceHandle,
        event: &Event,
        peer_events: &mpsc::Sender<(SessionNonce, PeerEvent)>,
    ) -> Vec<String> {
        let mut errors = vec![];
        match event {
            Event::LoginAccepted { session, .. } => {
                let (tx, s) = (peer_events.clone(), *session);
                let options = PeerOptions {
                    bind: self.ip,
                    lifetime: self.lifetime,
                    // A full channel loses the event, not the peer (bounded like the rest).
                    on_event: Some(Box::new(move |e| {
                        let _ = tx.try_send((s, e));
                    })),
                };
                match blocking(move || WebRtcPeer::start(options).map_err(|e| e.to_string())).await
                {
                    Ok((peer, offer)) => {
                        let _ = handle.send_offer(s, offer);
                        for (candidate, mid) in peer.local_candidates() {
                            let _ = handle.add_candidate(s, Candidate { candidate, mid });
                        }
                        let _ = handle.end_of_candidates(s);
                        let out = self.lock().insert((index, s), Arc::new(peer));
                        drop_peers(out);
                    }
                    Err(e) => errors.push(format!("cannot start a WebRTC peer: {e}")),
                }
            }
            Event::RemoteAnswer { session, sdp } => {
                if let Some(peer) = self.peer(index, session) {
                    let sdp = sdp.clone();
                    if let Err(e) = blocking(move || peer.accept_answer(&sdp)).await {
                        errors.push(format!("answer not applied: {e}"));
                    }
                }
            }
            Event::RemoteCandidate { session, candidate } => {
                if let Some(peer) = self.peer(index, session) {
                    let c = candidate.clone();
                    let r =
                        blocking(move || peer.add_remote_candidate(&c.candidate, c.mid.as_deref()));
                    if let Err(e) = r.await {
                        errors.push(format!("candidate not applied: {e}"));
                    }
                }
            }
            // Signalling failed: a peer that never connected has nothing more to do.
            Event::SessionFailed { session, .. } => {
                if let Some(peer) = self.peer(index, session).filter(|p| !p.state().connected) {
                    peer.close("signalling failed");
                }
            }
            _ => {}
        }
        errors
    }

    pub(crate) fn peer(&self, index: usize, session: &SessionNonce) -> Option<Arc<WebRtcPeer>> {
        self.lock().get(&(index, *session))
    }

    /// Drops a peer that stopped.
    pub(crate) fn forget(&self, index: usize, session: &SessionNonce) {
        let peer = self.lock().remove(&(index, *session));
        drop_peers(peer.into_iter().collect());
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Peers<(usize, SessionNonce)>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs a blocking peer call off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
}

/// Dropping a peer joins its thread: not on the async threads.
pub(crate) fn drop_peers(peers: Vec<Arc<WebRtcPeer>>) {
    if !peers.is_empty() {
        tokio::task::spawn_blocking(move || drop(peers));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_bind_loopback_for_a_loopback_server() {
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let v6: SocketAddr = "[::1]:3478".parse().unwrap();
        assert_eq!(
            peer_ip("127.0.0.1:3478".parse().unwrap(), any).unwrap(),
            IpAddr::from([127, 0, 0, 1])
        );
        assert_eq!(peer_ip(v6, "[::]:0".parse().unwrap()).unwrap(), v6.ip());
        // Not loopback: the --bind IP (no route lookup, nothing sent).
        assert_eq!(
            peer_ip(
                "192.0.2.1:3478".parse().unwrap(),
                "127.0.0.5:0".parse().unwrap()
            )
            .unwrap(),
            IpAddr::from([127, 0, 0, 5])
        );
    }
}
