//! The per-thread send/receive loop.
//!
//! Each thread owns a few connected, non-blocking sockets and one epoll set. A round:
//! expire old requests; for every socket with free window slots (and rate credit) build
//! requests into one [`TxBatch`] and send it with a single `sendmmsg` — equal-size runs go
//! as one UDP GSO datagram train; then wait on epoll (not at all while there is still
//! something to send) and drain each ready socket with `recvmmsg`. Time is read once per
//! batch, not per datagram. The loop ends at a deadline, after a bounded drain.

use crate::hist::Histogram;
use crate::inflight::{split_txid, txid, Inflight};
use crate::sys;
use flock_proto::stun::TransactionId;
use flock_udp::{RecvBatch, SendBatch, Sent};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// What a load mode sends and how it checks answers. `sock` is the thread-local socket index.
pub trait Workload: Send {
    /// Writes the next request for `sock` with transaction id `txid` into `buf`; returns its
    /// length and a tag remembered with it, or `None` when this socket has nothing to send.
    fn next(&mut self, sock: usize, txid: &TransactionId, buf: &mut [u8]) -> Option<(usize, u32)>;
    /// An answer matched to a request sent with `tag`: is it the right answer?
    fn answer(&mut self, sock: usize, tag: u32, datagram: &[u8]) -> bool;
    /// A request got no answer in time, or was never sent.
    fn lost(&mut self, _sock: usize, _tag: u32) {}
    /// A datagram that answers none of our requests; may return a reply written into `reply`.
    fn unsolicited(&mut self, _sock: usize, _datagram: &[u8], _reply: &mut [u8]) -> Option<usize> {
        None
    }
    /// A finite workload is finished (phases with `stop_when_done` end then).
    fn done(&self) -> bool {
        false
    }
}

/// One source socket and its in-flight table.
pub struct Sock {
    pub udp: UdpSocket,
    /// Index over all threads (goes into the transaction id).
    pub global: u16,
    pub inflight: Inflight,
}

/// Settings of one phase, shared by its threads.
#[derive(Clone, Debug)]
pub struct LoopConfig {
    pub magic: u16,
    pub rate_per_thread: Option<f64>,
    pub gso: bool,
    pub busy_poll: bool,
    pub timeout: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    pub stop_when_done: bool,
}

/// Live counters read by the progress printer (cumulative, warm-up included).
#[derive(Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub answered: AtomicU64,
    pub lost: AtomicU64,
}

/// Counts of one thread over the measured interval (requests sent after the warm-up).
#[derive(Clone, Default)]
pub struct Counts {
    pub sent: u64,
    pub answered: u64,
    pub lost: u64,
    /// Answered, but the answer was wrong (error code, bad transaction id use, mismatch).
    pub bad: u64,
    /// Answers arriving after their request was given up (any phase part).
    pub late: u64,
    pub unsolicited: u64,
    pub send_calls: u64,
    pub recv_calls: u64,
    pub errors: u64,
    pub gso_disabled: bool,
    pub latency: Histogram,
}

impl Counts {
    pub fn merge(&mut self, o: &Counts) {
        self.sent += o.sent;
        self.answered += o.answered;
        self.lost += o.lost;
        self.bad += o.bad;
        self.late += o.late;
        self.unsolicited += o.unsolicited;
        self.send_calls += o.send_calls;
        self.recv_calls += o.recv_calls;
        self.errors += o.errors;
        self.gso_disabled |= o.gso_disabled;
        self.latency.merge(&o.latency);
    }
}

/// Most datagrams per recvmmsg and per socket per round.
/// Largest datagram the generator builds or accepts.
pub const MAX_DGRAM: usize = 2048;
const RX_BATCH: usize = 64;
const RX_ROUNDS: usize = 4;
/// Longest block in epoll (bounds how late expiry and the deadline are seen).
const MAX_WAIT: Duration = Duration::from_millis(5);
/// How often in-flight tables are scanned for expired requests.
const EXPIRE_EVERY: u64 = 5_000_000;

/// Rate credit: requests allowed now, refilled continuously. Spent in batches of about 100 µs
/// worth of requests (1..=64), so that a paced run still sends trains of datagrams rather than
/// one syscall per request.
///
/// The credit is bounded to a few batches: when the machine pauses the generator's own thread
/// (milliseconds at a time on a shared VM, see `flock-bench stalls`), the requests it could not
/// send are not made up in one burst afterwards; that burst would queue at the server and count
/// as the server's latency. The offered rate then falls short by the paused time (`sent` shows
/// it).
/// Most batches of credit kept (see [`Credit`]).
const CATCH_UP_BATCHES: f64 = 4.0;

struct Credit {
    rate: Option<f64>,
    credit: f64,
    last: u64,
}

impl Credit {
    fn batch(&self) -> f64 {
        self.rate.map_or(1.0, |r| (r * 100e-6).clamp(1.0, 64.0))
    }

    fn available(&mut self, now: u64) -> usize {
        let Some(r) = self.rate else {
            return usize::MAX;
        };
        let cap = (r * 0.010).max(64.0).min(self.batch() * CATCH_UP_BATCHES);
        self.credit = (self.credit + (now - self.last) as f64 * r / 1e9).min(cap);
        self.last = now;
        if self.credit < self.batch() {
            0
        } else {
            self.credit as usize
        }
    }

    fn spend(&mut self, n: usize) {
        self.credit -= n as f64;
    }

    /// Time until the next batch is allowed.
    fn wait(&self) -> Duration {
        match self.rate {
            Some(r) if self.credit < self.batch() => {
                Duration::from_secs_f64((self.batch() - self.credit) / r)
            }
            _ => Duration::ZERO,
        }
    }
}

/// Runs one phase on this thread's sockets, starting at `start`.
pub fn run<W: Workload>(
    socks: &mut [Sock],
    wl: &mut W,
    cfg: &LoopConfig,
    start: Instant,
    progress: &Progress,
) -> Counts {
    let mut c = Counts::default();
    let window = socks
        .iter()
        .map(|s| s.inflight.free() + s.inflight.in_flight())
        .max()
        .unwrap_or(1);
    let mut tx = SendBatch::<()>::new(window, MAX_DGRAM);
    if cfg.gso {
        tx = tx.with_gso();
    }
    let mut rx = RecvBatch::new(RX_BATCH, MAX_DGRAM).with_timestamps();
    let mut reply = [0u8; MAX_DGRAM];
    let mut pending: Vec<u16> = Vec::with_capacity(window);
    let Ok(mut ep) = sys::Epoll::new(socks.len().min(64)) else {
        c.errors += 1;
        return c;
    };
    for (i, s) in socks.iter().enumerate() {
        if ep.add(s.udp.as_raw_fd(), i as u64).is_err() {
            c.errors += 1;
        }
    }
    if let Some(d) = start.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
    let ns = |d: Duration| d.as_nanos() as u64;
    // Maps the kernel's receive timestamps (CLOCK_REALTIME) onto this loop's clock.
    let realtime_at_start = flock_udp::realtime_ns() - ns(start.elapsed()) as i64;
    let (warm, end) = (ns(cfg.warmup), ns(cfg.warmup + cfg.duration));
    let timeout = ns(cfg.timeout);
    let hard_end = end + timeout;
    let mut credit = Credit {
        rate: cfg.rate_per_thread,
        credit: 0.0,
        last: 0,
    };
    let (mut next_expire, mut rr) = (0u64, 0usize);
    let (mut all_sent, mut all_answered, mut all_lost) = (0u64, 0u64, 0u64);
    let n = socks.len();

    loop {
        let now = ns(start.elapsed());
        let in_flight: usize = socks.iter().map(|s| s.inflight.in_flight()).sum();
        let sending = now < end && !(cfg.stop_when_done && wl.done());
        if now >= hard_end || (!sending && in_flight == 0) || n == 0 {
            break;
        }
        if now >= next_expire {
            next_expire = now + EXPIRE_EVERY;
            for (i, s) in socks.iter_mut().enumerate() {
                s.inflight.expire(now.saturating_sub(timeout), |slot| {
                    wl.lost(i, slot.tag);
                    all_lost += 1;
                    if slot.sent >= warm {
                        c.lost += 1;
                    }
                });
            }
        }

        // Send: one sendmmsg per socket with free slots.
        let mut budget = if sending { credit.available(now) } else { 0 };
        let mut sent_now = 0;
        for k in 0..n {
            if budget == 0 {
                break;
            }
            let i = (rr + k) % n;
            let s = &mut socks[i];
            let room = s.inflight.free().min(budget);
            // Refill in batches (a quarter window) unless the rate leaves fewer to send.
            if room == 0 || (room < (window / 4).max(1) && room < budget) {
                continue;
            }
            tx.clear();
            pending.clear();
            while pending.len() < room && !tx.is_full() {
                let Some((slot, seq)) = s.inflight.acquire(0, now) else {
                    break;
                };
                let id = txid(cfg.magic, s.global, slot, seq);
                match wl.next(i, &id, tx.next_buf()) {
                    Some((len, tag)) if len > 0 && len <= MAX_DGRAM => {
                        tx.commit(len, ());
                        s.inflight.set_tag(slot, tag);
                        pending.push(slot);
                    }
                    _ => {
                        s.inflight.release(slot);
                        break;
                    }
                }
            }
            if pending.is_empty() {
                continue;
            }
            if now >= warm {
                c.send_calls += 1;
            }
            let went = match tx.send(s.udp.as_raw_fd(), 0, libc::MSG_DONTWAIT) {
                Sent::Count(k) => k,
                // A full socket buffer (or device queue): these are lost, not errors.
                Sent::WouldBlock => 0,
                Sent::Failed(e) if e.raw_os_error() == Some(libc::ENOBUFS) => 0,
                Sent::Failed(e) => {
                    c.errors += 1;
                    let gso_refused = matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP)
                    );
                    if tx.gso() && gso_refused {
                        tx.disable_gso();
                        c.gso_disabled = true;
                    }
                    0
                }
            };
            for &slot in &pending[went..] {
                let tag = s.inflight.release(slot).tag;
                wl.lost(i, tag);
            }
            budget -= went.min(budget);
            credit.spend(went);
            sent_now += went;
            all_sent += went as u64;
            if now >= warm {
                c.sent += went as u64;
            }
        }
        rr = (rr + 1) % n.max(1);

        // Receive: block only when nothing could be sent.
        let wait = if cfg.busy_poll || sent_now > 0 {
            Duration::ZERO
        } else if sending && credit.rate.is_some() {
            credit.wait().min(MAX_WAIT)
        } else {
            MAX_WAIT
        };
        let mut tokens = [0usize; 64];
        let mut nt = 0;
        for t in ep.wait(wait) {
            if nt < tokens.len() {
                tokens[nt] = t as usize;
                nt += 1;
            }
        }
        if nt > 0 {
            let now = ns(start.elapsed());
            for &i in &tokens[..nt] {
                let measured = now >= warm;
                let mut rcv = Receiver {
                    sock: &mut socks[i],
                    index: i,
                    rx: &mut rx,
                    reply: &mut reply,
                    magic: cfg.magic,
                    warm,
                    measured,
                    realtime_at_start,
                };
                all_answered += rcv.drain(wl, now, &mut c);
            }
        }
        progress.sent.store(all_sent, Relaxed);
        progress.answered.store(all_answered, Relaxed);
        progress.lost.store(all_lost, Relaxed);
    }

    // Whatever is still in flight at the hard end is lost.
    for (i, s) in socks.iter_mut().enumerate() {
        s.inflight.expire(u64::MAX, |slot| {
            wl.lost(i, slot.tag);
            all_lost += 1;
            if slot.sent >= warm {
                c.lost += 1;
            }
        });
    }
    progress.lost.store(all_lost, Relaxed);
    c
}

/// Receives on one ready socket and matches answers to requests.
struct Receiver<'a> {
    sock: &'a mut Sock,
    index: usize,
    rx: &'a mut RecvBatch,
    reply: &'a mut [u8; MAX_DGRAM],
    magic: u16,
    warm: u64,
    /// Count receive calls (after the warm-up).
    measured: bool,
    /// CLOCK_REALTIME at this loop's time 0 (for the kernel's receive timestamps).
    realtime_at_start: i64,
}

impl Receiver<'_> {
    /// Drains up to RX_ROUNDS batches; returns how many answers matched a request.
    fn drain<W: Workload>(&mut self, wl: &mut W, now: u64, c: &mut Counts) -> u64 {
        let mut matched_total = 0;
        let (s, i) = (&mut *self.sock, self.index);
        for _ in 0..RX_ROUNDS {
            c.recv_calls += self.measured as u64;
            let got = self
                .rx
                .recv(s.udp.as_raw_fd(), libc::MSG_DONTWAIT)
                .unwrap_or_else(|_| {
                    c.errors += 1; // e.g. ECONNREFUSED: nobody listens at the target
                    0
                });
            for d in 0..got {
                let got = self.rx.get(d);
                let dgram = got.data;
                let ours = match dgram.get(8..20).and_then(split_txid) {
                    Some((m, g, slot, seq)) if m == self.magic && g == s.global => {
                        Some(s.inflight.complete(slot, seq))
                    }
                    _ => None,
                };
                match ours {
                    Some(Some(slot)) => {
                        matched_total += 1;
                        let ok = !got.truncated && wl.answer(i, slot.tag, dgram);
                        if slot.sent >= self.warm {
                            if ok {
                                c.answered += 1;
                                // The kernel's arrival time, so that the time an answer waits
                                // for this thread (busy sending, descheduled) does not count;
                                // kept within [sent, now] in case the wall clock stepped.
                                let arrived = self.rx.rx_time_ns(d).map_or(now, |rt| {
                                    ((rt - self.realtime_at_start).max(0) as u64)
                                        .clamp(slot.sent, now.max(slot.sent))
                                });
                                c.latency.record(arrived - slot.sent);
                            } else {
                                c.bad += 1;
                            }
                        }
                    }
                    Some(None) => c.late += 1,
                    None => {
                        c.unsolicited += 1;
                        if let Some(len) = wl.unsolicited(i, dgram, self.reply) {
                            let _ = s.udp.send(&self.reply[..len.min(MAX_DGRAM)]);
                        }
                    }
                }
            }
            if got < RX_BATCH {
                break;
            }
        }
        matched_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credit(rate: Option<f64>) -> Credit {
        Credit {
            rate,
            credit: 0.0,
            last: 0,
        }
    }

    #[test]
    fn paced_credit_comes_in_trains() {
        let mut c = credit(Some(100_000.0)); // a train = 10 requests per 100 µs
        assert_eq!(c.available(50_000), 0, "half a train is not sent yet");
        assert_eq!(c.wait(), Duration::from_micros(50));
        assert_eq!(c.available(100_000), 10);
        c.spend(10);
        assert_eq!(c.available(150_000), 0);
    }

    #[test]
    fn a_pause_of_the_generator_is_not_made_up_in_one_burst() {
        let mut c = credit(Some(100_000.0));
        // 10 ms without running: 1000 requests were due, at most 4 trains go out.
        assert_eq!(c.available(10_000_000), 40);
        c.spend(40);
        // Then the rate resumes.
        assert_eq!(c.available(10_100_000), 10);
    }

    #[test]
    fn closed_loop_has_no_credit_limit() {
        let mut c = credit(None);
        assert_eq!(c.available(1), usize::MAX);
        assert_eq!(c.wait(), Duration::ZERO);
    }
}
