//! One core's event loop: drain the socket and the mesh inbox, run the shard (which answers a
//! datagram or names the core owning it, which then gets it over the mesh), send the replies in
//! one sendmmsg, then park until the socket is readable, a peer core forwards a datagram, the
//! shard's next timer is due, or the engine stops.
//!
//! Waiting for readability: glommio 0.9 has no public "fd is readable" future for UDP, and its
//! `recv_from` takes a datagram at a time (plus, when the socket is empty, a fresh `Source` and
//! DMA buffer per io_uring op). So the loop reads with `recvmmsg(MSG_DONTWAIT)` itself and asks
//! glommio only to tell it when there is something to read, by peeking one byte on the same fd
//! (`UdpSocket::peek_from`, MSG_PEEK: the datagram stays queued for recvmmsg). `peek_from` first
//! tries a plain non-blocking recvmsg, so if data arrived while we were busy it returns at once
//! without touching io_uring; only a truly empty socket costs an io_uring op (and glommio's
//! per-op allocations). `UdpSocket::peek` would be cheaper to call but refuses unconnected
//! sockets. The peek future is kept across wake-ups caused by the inbox or the timer instead of
//! being dropped, which would cancel and later resubmit the io_uring op.

use crate::clock::Clock;
use crate::commands::CommandQueues;
use crate::config::MAX_DATAGRAM;
use crate::mesh::Forwarded;
use crate::shared::Shared;
use crate::stats::bump;
use crate::Shard;
use flock_proto::server::Outcome;
use flock_proto::Time;
use flock_udp::{RecvBatch, SendBatch, Sent};
use glommio::net::UdpSocket;
use glommio::timer::Timer;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// What a queued datagram is, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Reply,
    Transmit,
}

/// Everything a core needs besides its shard; built on the starting thread.
pub(crate) struct CoreSetup {
    pub index: usize,
    pub cores: usize,
    pub socket: socket2::Socket,
    pub batch: usize,
    pub clock: Clock,
    pub shared: Arc<Shared>,
}

/// Why the core woke up.
#[derive(Default)]
struct Woke {
    socket: bool,
    inbox: bool,
    commands: bool,
    timer: bool,
}

struct Core<S: Shard> {
    index: usize,
    cores: usize,
    shard: S,
    socket: Rc<UdpSocket>,
    fd: RawFd,
    rx: RecvBatch,
    tx: SendBatch<Kind>,
    clock: Clock,
    shared: Arc<Shared>,
    commands: Arc<CommandQueues<S::Command>>,
    /// Peers whose inbox got datagrams since they were last notified.
    to_notify: Vec<bool>,
    timer: Option<Timer>,
    /// The deadline `timer` is set for, if it is set and has not fired.
    timer_deadline: Option<Time>,
}

/// Runs core `setup.index` until the engine stops. `on_ready` is called once the core is set up.
pub(crate) async fn run<S: Shard>(
    setup: CoreSetup,
    shard: S,
    commands: Arc<CommandQueues<S::Command>>,
    on_ready: impl FnOnce(),
) -> io::Result<()> {
    let v6 = setup.socket.local_addr()?.is_ipv6();
    // Must be created on the executor thread: glommio ties the socket to this reactor.
    let socket = Rc::new(crate::socket::into_glommio(setup.socket));
    let fd = socket.as_raw_fd();
    let mut core = Core {
        index: setup.index,
        cores: setup.cores,
        shard,
        socket,
        fd,
        rx: RecvBatch::new(setup.batch, MAX_DATAGRAM),
        tx: if v6 {
            SendBatch::new(setup.batch, MAX_DATAGRAM).v4_mapped()
        } else {
            SendBatch::new(setup.batch, MAX_DATAGRAM)
        },
        clock: setup.clock,
        shared: setup.shared,
        commands,
        to_notify: vec![false; setup.cores],
        timer: None,
        timer_deadline: None,
    };
    // Declared after `core`, so dropped before it (and before the socket closes), also when a
    // shard panics.
    let _exit = ExitGuard {
        shared: core.shared.clone(),
        index: core.index,
    };
    let _commands = CommandGuard {
        queues: core.commands.clone(),
        index: core.index,
    };
    core.shared.cores[core.index].set_fd(Some(fd));
    on_ready();
    core.run().await
}

/// When a core exits, for whatever reason: forget its descriptor, refuse further wakes, and stop
/// the other cores (an engine missing a core would silently lose its share of the traffic).
struct ExitGuard {
    shared: Arc<Shared>,
    index: usize,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let me = &self.shared.cores[self.index];
        me.set_fd(None);
        me.inbox.close();
        self.shared.shutdown();
    }
}

/// When a core exits: refuse further command wakes and drop queued commands on this thread.
struct CommandGuard<C> {
    queues: Arc<CommandQueues<C>>,
    index: usize,
}

impl<C> Drop for CommandGuard<C> {
    fn drop(&mut self) {
        self.queues.inboxes[self.index].close();
    }
}

async fn readable(socket: Rc<UdpSocket>) -> io::Result<()> {
    let mut byte = [0u8; 1];
    socket
        .peek_from(&mut byte)
        .await
        .map(|_| ())
        .map_err(io::Error::from)
}

impl<S: Shard> Core<S> {
    async fn run(&mut self) -> io::Result<()> {
        let mut peek = pin!(readable(self.socket.clone()));
        // `peek` is a fresh future that has not been polled yet, or one still pending.
        let mut peek_armed = true;
        let mut socket_may_have_data = true;
        let mut peek_failures = 0u32;
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = self.clock.now();
            let mut busy = false;
            if socket_may_have_data {
                busy |= self.drain_socket(now).await?;
            }
            busy |= self.drain_inbox(now).await;
            busy |= self.drain_commands(now);
            self.notify_peers();
            self.run_timers(now).await;
            self.flush().await;
            if busy {
                // More is waiting somewhere. Read the socket on the next round too even if only
                // the inbox was busy: the peek is only polled when we park, and a flood of
                // forwarded datagrams must not starve this core's own socket.
                socket_may_have_data = true;
                glommio::yield_if_needed().await;
                continue;
            }

            if !peek_armed {
                peek.set(readable(self.socket.clone()));
                peek_armed = true;
            }
            self.arm_timer(now);
            let inbox = &self.shared.cores[self.index].inbox;
            let commands = &self.commands.inboxes[self.index];
            let stop = &self.shared.stop;
            let timer = &mut self.timer;
            let mut peek_result = Ok(());
            let woke = poll_fn(|cx| {
                let mut w = Woke {
                    inbox: inbox.poll_ready(cx, stop).is_ready(),
                    commands: commands.poll_ready(cx, stop).is_ready(),
                    ..Woke::default()
                };
                if let Some(t) = timer.as_mut() {
                    w.timer = Pin::new(t).poll(cx).is_ready();
                }
                if let Poll::Ready(r) = peek.as_mut().poll(cx) {
                    peek_result = r;
                    w.socket = true;
                }
                if w.socket || w.inbox || w.commands || w.timer {
                    Poll::Ready(w)
                } else {
                    Poll::Pending
                }
            })
            .await;
            bump(&self.shared.cores[self.index].counters.wakeups, 1);
            if woke.timer {
                self.timer_deadline = None;
            }
            socket_may_have_data = woke.socket;
            if woke.socket {
                peek_armed = false;
                match peek_result {
                    Ok(()) => peek_failures = 0,
                    Err(e) => {
                        bump(&self.shared.cores[self.index].counters.recv_errors, 1);
                        peek_failures += 1;
                        if peek_failures > 1 {
                            return Err(io::Error::new(
                                e.kind(),
                                format!("core {}: waiting for datagrams: {e}", self.index),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// One recvmmsg; routes every datagram. True if the batch was full (more may be waiting).
    async fn drain_socket(&mut self, now: Time) -> io::Result<bool> {
        let counters = &self.shared.cores[self.index].counters;
        let n = match self.rx.recv(self.fd, libc::MSG_DONTWAIT) {
            Ok(n) => n,
            Err(e) => {
                bump(&counters.recv_errors, 1);
                return match e.raw_os_error() {
                    Some(libc::EBADF | libc::ENOTSOCK | libc::EFAULT | libc::EINVAL) => Err(
                        io::Error::new(e.kind(), format!("core {}: recvmmsg: {e}", self.index)),
                    ),
                    _ => Ok(false),
                };
            }
        };
        if n == 0 {
            return Ok(false);
        }
        let (mut truncated, mut forwarded, mut mesh_full, mut misrouted) = (0, 0, 0, 0);
        for i in 0..n {
            if self.tx.is_full() {
                self.flush().await;
            }
            let d = self.rx.get(i);
            let Some(src) = d.src else { continue };
            if d.truncated {
                truncated += 1;
                continue;
            }
            match handle(&mut self.shard, &mut self.tx, now, src, d.data) {
                Some(owner) if owner != self.index && owner < self.cores => {
                    match Forwarded::new(src, d.data) {
                        None => truncated += 1,
                        Some(msg) => {
                            if self.shared.cores[owner].inbox.push(msg) {
                                forwarded += 1;
                                self.to_notify[owner] = true;
                            } else {
                                mesh_full += 1;
                            }
                        }
                    }
                }
                Some(_) => misrouted += 1,
                None => {}
            }
        }
        let counters = &self.shared.cores[self.index].counters;
        bump(&counters.received, n as u64);
        bump(&counters.batches, 1);
        bump(&counters.dropped_truncated, truncated);
        bump(&counters.forwarded_out, forwarded);
        bump(&counters.dropped_mesh_full, mesh_full);
        bump(&counters.dropped_misrouted, misrouted);
        Ok(n == self.rx.capacity())
    }

    /// Handles up to one batch of datagrams forwarded by other cores. True if more are waiting.
    async fn drain_inbox(&mut self, now: Time) -> bool {
        let (mut count, mut misrouted) = (0, 0);
        while count < self.rx.capacity() {
            if self.tx.is_full() {
                self.flush().await;
            }
            let Some(msg) = self.shared.cores[self.index].inbox.pop() else {
                break;
            };
            // Sent here as its owner: never passed on again.
            if handle(&mut self.shard, &mut self.tx, now, msg.src, msg.data()).is_some() {
                misrouted += 1;
            }
            count += 1;
        }
        let me = &self.shared.cores[self.index];
        bump(&me.counters.forwarded_in, count as u64);
        bump(&me.counters.dropped_misrouted, misrouted);
        !me.inbox.is_empty()
    }

    /// Hands up to one batch of commands to the shard; their datagrams go out with the timers'.
    /// True if more are waiting.
    fn drain_commands(&mut self, now: Time) -> bool {
        let inbox = &self.commands.inboxes[self.index];
        for _ in 0..self.rx.capacity() {
            match inbox.pop() {
                Some(cmd) => self.shard.handle_command(now, cmd),
                None => return false,
            }
        }
        !inbox.is_empty()
    }

    fn notify_peers(&mut self) {
        for (peer, pending) in self.to_notify.iter_mut().enumerate() {
            if std::mem::take(pending) {
                self.shared.cores[peer].inbox.notify();
            }
        }
    }

    /// Fires the shard's due timers and queues whatever it wants to send.
    async fn run_timers(&mut self, now: Time) {
        if self.shard.poll_timeout().is_some_and(|t| t <= now) {
            self.shard.handle_timeout(now);
        }
        loop {
            if self.tx.is_full() {
                self.flush().await;
            }
            match self.shard.poll_transmit(now, self.tx.next_buf()) {
                Some((dest, len)) => self.tx.commit_to(dest, len, Kind::Transmit),
                None => break,
            }
        }
    }

    /// Points the timer at the shard's next deadline (at least 1 ms ahead, so a shard that leaves
    /// a past deadline in place cannot make the loop spin).
    fn arm_timer(&mut self, now: Time) {
        let Some(deadline) = self.shard.poll_timeout() else {
            self.timer = None;
            self.timer_deadline = None;
            return;
        };
        if self.timer_deadline == Some(deadline) {
            return;
        }
        let wait = Duration::from_millis(deadline.0.saturating_sub(now.0).max(1));
        match &mut self.timer {
            Some(t) => t.reset(wait),
            None => self.timer = Some(Timer::new(wait)),
        }
        self.timer_deadline = Some(deadline);
    }

    /// Sends everything queued: one sendmmsg when the socket has room. When its send buffer is
    /// full, waits for room through glommio's `send_to` for one datagram (a non-blocking try,
    /// then an io_uring sendmsg that completes once the kernel takes it), then resumes sendmmsg.
    async fn flush(&mut self) {
        let queued = self.tx.len();
        let (mut answered, mut transmitted, mut errors) = (0, 0, 0);
        let mut count = |kind: Kind| match kind {
            Kind::Reply => answered += 1,
            Kind::Transmit => transmitted += 1,
        };
        let mut i = 0;
        while i < queued {
            match self.tx.send(self.fd, i, libc::MSG_DONTWAIT) {
                Sent::Count(k) => {
                    for j in i..i + k {
                        count(self.tx.get(j).tag);
                    }
                    i += k;
                }
                Sent::WouldBlock => {
                    let q = self.tx.get(i);
                    // Every datagram is queued with `commit_to`.
                    let dest = q.dest.expect("a destination");
                    match self.socket.send_to(q.data, dest).await {
                        Ok(_) => count(q.tag),
                        Err(_) => errors += 1,
                    }
                    i += 1;
                }
                Sent::Failed(e) => {
                    tracing::debug!(core = self.index, dest = ?self.tx.get(i).dest, error = %e, "send failed");
                    errors += 1;
                    i += 1;
                }
            }
        }
        self.tx.clear();
        let counters = &self.shared.cores[self.index].counters;
        bump(&counters.answered, answered);
        bump(&counters.transmitted, transmitted);
        bump(&counters.send_errors, errors);
    }
}

/// Runs the shard on one datagram and queues its reply, if any; returns the owning core when the
/// shard says another core owns it. The caller makes sure `tx` has room.
#[inline]
fn handle<S: Shard>(
    shard: &mut S,
    tx: &mut SendBatch<Kind>,
    now: Time,
    src: SocketAddr,
    data: &[u8],
) -> Option<usize> {
    match shard.handle(now, src, data, tx.next_buf()) {
        Outcome::Reply(len) => {
            tx.commit_to(src, len, Kind::Reply);
            None
        }
        Outcome::Done => None,
        Outcome::OtherCore(owner) => Some(owner),
    }
}
