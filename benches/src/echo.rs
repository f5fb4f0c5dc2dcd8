//! `echo-server`: the kernel's UDP path with as little work per datagram as possible, as a
//! baseline for flockd. `mmsg` answers batches of up to 32 with one recvmmsg and one
//! sendmmsg; `plain` does one recvfrom and one sendto per datagram. With `--stun` a Binding
//! request gets a Binding success instead of its own bytes back.

use crate::cli::{EchoMode, EchoServerArgs};
use flock_proto::stun::{
    Class, Encoder, MessageType, Method, TransactionId, HEADER_LEN, MAGIC_COOKIE,
};
use flock_udp::{RecvBatch, SendBatch, Sent};
use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const BATCH: usize = 32;
/// Largest datagram answered (longer ones are truncated, as the generator's).
const SLOT: usize = 2048;

#[derive(Debug, Default, Clone, Copy)]
pub struct EchoStats {
    pub received: u64,
    pub answered: u64,
}

/// Binding success for a Binding request from `src`, written into `out`. Only the header is
/// checked (type, cookie, length); like flockd, a request smaller than the answer gets none.
pub fn stun_answer(req: &[u8], src: SocketAddr, out: &mut [u8]) -> Option<usize> {
    if req.len() < HEADER_LEN
        || req[..2] != [0x00, 0x01]
        || req[4..8] != MAGIC_COOKIE.to_be_bytes()
        || u16::from_be_bytes([req[2], req[3]]) as usize + HEADER_LEN != req.len()
    {
        return None;
    }
    let v4 = match src {
        SocketAddr::V4(_) => true,
        SocketAddr::V6(a) => a.ip().to_ipv4_mapped().is_some(),
    };
    if req.len() < if v4 { 40 } else { 52 } {
        return None;
    }
    let txid: &TransactionId = req[8..20].try_into().ok()?;
    let mut e = Encoder::new(out, MessageType::new(Method::BINDING, Class::Success), txid).ok()?;
    e.xor_mapped_address(src).ok()?;
    e.fingerprint().ok()
}

/// Binds, prints `echo-server ready udp=ADDR` on stderr, and serves until the duration ends.
pub fn serve(a: &EchoServerArgs) -> io::Result<EchoStats> {
    if let Some(cpu) = a.cpu {
        flock_udp::pin_current_thread(cpu)?;
    }
    let sock = UdpSocket::bind(a.addr)?;
    let rcvbuf = flock_udp::set_buffer_sizes(&sock, a.sock_buf, a.sock_buf)?.recv_bytes;
    // Blocking, with a timeout so the loop sees its deadline.
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mode = match a.mode {
        EchoMode::Mmsg => "mmsg",
        EchoMode::Plain => "plain",
    };
    eprintln!(
        "echo-server ready udp={} mode={mode} stun={} recv_buffer={rcvbuf}",
        sock.local_addr()?,
        a.stun
    );
    let _ = io::stderr().flush();
    let deadline = Instant::now() + Duration::from_secs_f64(a.duration.clamp(0.0, 1e7));
    match a.mode {
        EchoMode::Mmsg => serve_mmsg(&sock, a.stun, deadline),
        EchoMode::Plain => serve_plain(&sock, a.stun, deadline),
    }
}

fn serve_mmsg(sock: &UdpSocket, stun: bool, deadline: Instant) -> io::Result<EchoStats> {
    let fd = sock.as_raw_fd();
    let mut rx = RecvBatch::new(BATCH, SLOT);
    let mut tx = SendBatch::<()>::new(BATCH, SLOT);
    let mut st = EchoStats::default();
    while Instant::now() < deadline {
        let n = rx.recv(fd, libc::MSG_WAITFORONE)?;
        st.received += n as u64;
        for i in 0..n {
            let d = rx.get(i);
            let Some(src) = d.src else { continue };
            let out = tx.next_buf();
            let len = if stun {
                stun_answer(d.data, src, out)
            } else {
                out[..d.data.len()].copy_from_slice(d.data);
                Some(d.data.len())
            };
            if let Some(len) = len {
                tx.commit_to(src, len, ());
            }
        }
        if !tx.is_empty() {
            st.answered += flush(&mut tx, fd) as u64;
        }
    }
    Ok(st)
}

/// Sends everything queued on the blocking socket (a few tries on a short count), then clears.
/// A send error (e.g. a peer's buffer full) drops the rest, as UDP would.
fn flush(tx: &mut SendBatch, fd: std::os::fd::RawFd) -> usize {
    let mut done = 0;
    for _ in 0..8 {
        if done == tx.len() {
            break;
        }
        match tx.send(fd, done, 0) {
            Sent::Count(k) => done += k,
            Sent::WouldBlock | Sent::Failed(_) => break,
        }
    }
    tx.clear();
    done
}

fn serve_plain(sock: &UdpSocket, stun: bool, deadline: Instant) -> io::Result<EchoStats> {
    let mut buf = [0u8; 2048];
    let mut out = [0u8; 128];
    let mut st = EchoStats::default();
    while Instant::now() < deadline {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        st.received += 1;
        let reply = if stun {
            match stun_answer(&buf[..n], src, &mut out) {
                Some(m) => &out[..m],
                None => continue,
            }
        } else {
            &buf[..n]
        };
        if sock.send_to(reply, src).is_ok() {
            st.answered += 1;
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::stun::binding_request;
    use flock_proto::stun::Message;

    #[test]
    fn answers_padded_binding_only() {
        let mut req = [0u8; 64];
        let n = binding_request().write(&[9; 12], &mut req);
        let src: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        let mut out = [0u8; 128];
        let m = stun_answer(&req[..n], src, &mut out).expect("answered");
        assert_eq!(m, 40);
        let msg = Message::parse(&out[..m]).unwrap();
        assert_eq!(
            (msg.class(), msg.transaction_id()),
            (Class::Success, &[9; 12])
        );
        assert_eq!(msg.xor_mapped_address(), Some(Ok(src)));
        // A bare 20-byte request is smaller than the answer: no answer.
        let mut bare = [0u8; 20];
        bare[..20].copy_from_slice(&req[..20]);
        bare[2..4].copy_from_slice(&[0, 0]);
        assert_eq!(stun_answer(&bare, src, &mut out), None);
        assert_eq!(
            stun_answer(&req[..n - 4], src, &mut out),
            None,
            "length field mismatch"
        );
    }
}
