//! Handing datagrams to the core that owns them.
//!
//! Each core has an inbox: a bounded lock-free queue (crossbeam `ArrayQueue`, allocated once) of
//! fixed-size [`Forwarded`] values, so forwarding a datagram allocates nothing. A full inbox means
//! the owner is behind: the datagram is dropped and counted, never waited for.
//!
//! Why not glommio's `channel_mesh` / `shared_channel`: their receiver has no `try_recv`, and
//! every `Pending` poll of `recv()` pushes another waker clone into the reactor's list for that
//! channel, which is only drained as messages arrive. A core that waits on its socket and its
//! inbox at once, but rarely gets forwarded traffic, would grow that list by one waker per
//! sleep (and glommio task wakers are counted in an `i16`, which asserts at 32767).
//! `MeshBuilder` also shares an `Rc` across threads. Our inbox keeps one waker slot instead.
//!
//! Waking: the owner registers its waker and raises `sleeping` before it parks; a sender that
//! pushed takes the waker and wakes it, which glommio routes to the owner's executor (its
//! cross-thread wake queue plus an eventfd write if the reactor sleeps). Both sides use SeqCst
//! fences between "publish" and "check", so a push racing with the owner going to sleep is never
//! missed. The same wake serves shutdown.

use crate::config::MESH_PAYLOAD;
use crossbeam_queue::ArrayQueue;
use std::net::SocketAddr;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// A datagram on its way to its owner core.
pub(crate) struct Forwarded {
    pub src: SocketAddr,
    len: u16,
    data: [u8; MESH_PAYLOAD],
}

impl Forwarded {
    /// `None` if `data` is longer than [`MESH_PAYLOAD`].
    #[inline]
    pub(crate) fn new(src: SocketAddr, data: &[u8]) -> Option<Forwarded> {
        if data.len() > MESH_PAYLOAD {
            return None;
        }
        let mut msg = Forwarded {
            src,
            len: data.len() as u16,
            data: [0; MESH_PAYLOAD],
        };
        msg.data[..data.len()].copy_from_slice(data);
        Some(msg)
    }

    #[inline]
    pub(crate) fn data(&self) -> &[u8] {
        &self.data[..self.len as usize]
    }
}

/// A bounded queue with one owner core that can park on it; `T` is [`Forwarded`] for the
/// datagram mesh and the shard's command type for commands from other runtimes.
pub(crate) struct Inbox<T> {
    queue: ArrayQueue<T>,
    sleeping: AtomicBool,
    waker: Mutex<WakerSlot>,
}

struct WakerSlot {
    waker: Option<Waker>,
    /// The owner has exited; nobody may wake it any more.
    closed: bool,
}

impl<T> Inbox<T> {
    pub(crate) fn new(capacity: usize) -> Inbox<T> {
        Inbox {
            queue: ArrayQueue::new(capacity),
            sleeping: AtomicBool::new(false),
            waker: Mutex::new(WakerSlot {
                waker: None,
                closed: false,
            }),
        }
    }

    /// Sender side: queue a value; false (and the value dropped) when the inbox is full.
    /// Call [`notify`](Self::notify) after a run of pushes.
    #[inline]
    pub(crate) fn push(&self, msg: T) -> bool {
        self.queue.push(msg).is_ok()
    }

    /// Sender side: like [`push`](Self::push) but hands the value back when the inbox is full.
    pub(crate) fn try_push(&self, msg: T) -> Result<(), T> {
        self.queue.push(msg)
    }

    /// Owner side.
    #[inline]
    pub(crate) fn pop(&self) -> Option<T> {
        self.queue.pop()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Sender side (or shutdown): wake the owner if it is parked. Cheap when it is not.
    pub(crate) fn notify(&self) {
        // Pairs with the fence in `poll_ready`: either the owner sees our push (or the stop
        // flag), or we see `sleeping` set.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            let slot = self.waker.lock().unwrap_or_else(|p| p.into_inner());
            // Woken under the lock so the owner's `close` cannot run in between: no waker of an
            // exited executor is ever used from this thread.
            if let Some(w) = slot.waker.as_ref() {
                if !slot.closed {
                    w.wake_by_ref();
                }
            }
        }
    }

    /// Owner side: ready when the inbox holds a value or `stop` is set; otherwise registers
    /// `cx`'s waker to be woken by the next [`notify`](Self::notify).
    pub(crate) fn poll_ready(&self, cx: &Context<'_>, stop: &AtomicBool) -> Poll<()> {
        if !self.queue.is_empty() || stop.load(Ordering::Relaxed) {
            return Poll::Ready(());
        }
        {
            let mut slot = self.waker.lock().unwrap_or_else(|p| p.into_inner());
            match &slot.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => slot.waker = Some(cx.waker().clone()),
            }
        }
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !self.queue.is_empty() || stop.load(Ordering::Relaxed) {
            self.sleeping.store(false, Ordering::Relaxed);
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Owner side, when it exits: drop the waker on the owner's own thread and refuse further
    /// wakes.
    pub(crate) fn close(&self) {
        let waker = {
            let mut slot = self.waker.lock().unwrap_or_else(|p| p.into_inner());
            slot.closed = true;
            slot.waker.take()
        };
        drop(waker);
        while self.queue.pop().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_a_parked_owner_once() {
        let inbox = Inbox::new(2);
        let stop = AtomicBool::new(false);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let cx = Context::from_waker(&waker);
        assert!(inbox.poll_ready(&cx, &stop).is_pending());
        let src = "127.0.0.1:1".parse().unwrap();
        assert!(inbox.push(Forwarded::new(src, b"hi").unwrap()));
        inbox.notify();
        inbox.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(inbox.poll_ready(&cx, &stop).is_ready());
        assert_eq!(inbox.pop().unwrap().data(), b"hi");
        assert!(inbox.push(Forwarded::new(src, b"1").unwrap()));
        assert!(inbox.push(Forwarded::new(src, b"2").unwrap()));
        assert!(!inbox.push(Forwarded::new(src, b"3").unwrap()));
        assert!(Forwarded::new(src, &[0; MESH_PAYLOAD + 1]).is_none());
        inbox.close();
        assert!(inbox.is_empty());
        stop.store(true, Ordering::SeqCst);
        assert!(inbox.poll_ready(&cx, &stop).is_ready());
    }
}
