//! The real server state machine served over a loopback UDP socket in wall-clock time, for
//! tests of the SDK's tokio driver.

use crate::sim::Host;
use flock_proto::Time;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

/// Now, as the server's clock.
pub fn wall() -> Time {
    Time(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    )
}

/// A server shared between its UDP loop and the test.
pub type SharedHost = Arc<Mutex<Host>>;

/// Serves `server` on a loopback socket. Returns its address and a kick that wakes the loop
/// early (after a command given through the shared server, whose datagrams would otherwise
/// wait for the next timer).
pub async fn serve_udp(server: SharedHost) -> (SocketAddr, Arc<Notify>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let kick = Arc::new(Notify::new());
    let kicked = kick.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        let mut out = [0u8; 1500];
        loop {
            let mut sends = vec![];
            let deadline = {
                let mut s = server.lock().unwrap();
                while let Some((dst, n)) = s.next_sent(&mut out) {
                    sends.push((dst, out[..n].to_vec()));
                }
                s.timeout()
            };
            for (dst, bytes) in sends {
                let _ = socket.send_to(&bytes, dst).await;
            }
            let wait = deadline.map_or(Duration::from_millis(100), |t| {
                Duration::from_millis(t.0.saturating_sub(wall().0))
            });
            tokio::select! {
                r = socket.recv_from(&mut buf) => {
                    let Ok((n, src)) = r else { continue };
                    let reply = server
                        .lock()
                        .unwrap()
                        .handle(wall(), src, &buf[..n], &mut out)
                        .reply()
                        .map(|len| out[..len].to_vec());
                    if let Some(reply) = reply {
                        let _ = socket.send_to(&reply, src).await;
                    }
                }
                () = tokio::time::sleep(wait) => server.lock().unwrap().handle_timeout(wall()),
                () = kicked.notified() => {}
            }
        }
    });
    (addr, kick)
}
