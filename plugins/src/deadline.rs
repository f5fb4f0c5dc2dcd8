//! One timer thread that fires callbacks at deadlines, so the runner enforces its budget on
//! any runtime or none. Entries are not removed when their call finishes in time: the
//! callback then finds its reply taken and does nothing (the heap holds at most a budget's
//! worth of calls).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

type Fire = Box<dyn FnOnce() + Send>;

pub(crate) struct Deadlines {
    shared: Arc<(Mutex<State>, Condvar)>,
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Entry>,
    seq: u64,
    closed: bool,
}

struct Entry {
    at: Instant,
    seq: u64,
    fire: Fire,
}

impl Deadlines {
    pub(crate) fn start() -> std::io::Result<Deadlines> {
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name("flock-plugin-timer".into())
            .spawn(move || run(&theirs))?;
        Ok(Deadlines { shared })
    }

    pub(crate) fn add(&self, at: Instant, fire: Fire) {
        let (lock, wake) = &*self.shared;
        let mut s = lock.lock().unwrap_or_else(PoisonError::into_inner);
        s.seq += 1;
        let seq = s.seq;
        s.heap.push(Entry { at, seq, fire });
        // Only a new earliest deadline changes how long the thread should sleep.
        if s.heap.peek().is_some_and(|e| e.seq == seq) {
            wake.notify_one();
        }
    }
}

impl Drop for Deadlines {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        lock.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        wake.notify_one();
    }
}

fn run(shared: &(Mutex<State>, Condvar)) {
    let (lock, wake) = shared;
    let mut s = lock.lock().unwrap_or_else(PoisonError::into_inner);
    while !s.closed {
        let now = Instant::now();
        match s.heap.peek().map(|e| e.at) {
            None => s = wake.wait(s).unwrap_or_else(PoisonError::into_inner),
            Some(at) if at > now => {
                s = wake
                    .wait_timeout(s, at - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            Some(_) => {
                let e = s.heap.pop().expect("peeked");
                drop(s);
                // A panicking caller callback must not stop every later deadline.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(e.fire));
                s = lock.lock().unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}

// BinaryHeap is a max-heap: the earliest deadline must compare greatest.
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}
