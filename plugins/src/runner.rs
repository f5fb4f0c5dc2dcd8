//! Runs hooks off the caller's thread (packet cores must never wait on a plugin) on a small
//! pool of plain threads, with a time budget the runner enforces itself, so callers on glommio,
//! tokio or no runtime at all get an answer by the deadline. Fail closed: a call that
//! overruns its budget, or finds the queue full, is answered `Deny` (filters: `None`, show no
//! persona); a late result is discarded. Audit events go to their own thread, in order,
//! dropped when its queue is full.
//!
//! Besides its counters, the runner keeps a latency histogram per hook ([`Runner::latency`]):
//! how long the plugin chain took to run each call, on the thread that ran it. Fixed buckets,
//! atomics only, nothing allocated per call, and no label but the hook.

use crate::deadline::Deadlines;
use crate::loader::Plugins;
use crate::types::*;
use futures_channel::oneshot;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;
type Done<T> = Box<dyn FnOnce(T) + Send>;

/// Counters since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunnerStats {
    /// Hook calls asked for (registrations, log-ins, persona lists).
    pub calls: u64,
    /// Calls answered other than allow (`Deny`, `RetryAfter`, filter `None`), whatever the
    /// cause: policy, error, timeout or full queue.
    pub denied: u64,
    /// Calls answered at the deadline because the plugins had not finished.
    pub timeouts: u64,
    /// Error codes and caught panics returned by plugins (late ones included).
    pub errors: u64,
    /// Calls refused at once because `queue` calls were already waiting.
    pub queue_full: u64,
    /// Audit events dropped because the audit queue was full.
    pub audit_dropped: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    denied: AtomicU64,
    timeouts: AtomicU64,
    queue_full: AtomicU64,
    audit_dropped: AtomicU64,
    /// Indexed by `Hook as usize`.
    latency: [Histogram; 4],
}

/// A hook of the chain, for [`Runner::latency`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    AdmitRegistration = 0,
    AuthorizeLogin = 1,
    FilterPersonas = 2,
    Audit = 3,
}

impl Hook {
    pub const ALL: [Hook; 4] = [
        Hook::AdmitRegistration,
        Hook::AuthorizeLogin,
        Hook::FilterPersonas,
        Hook::Audit,
    ];

    /// The hook's name in the ABI (and the `hook` label in flockd's `/metrics`).
    pub fn name(self) -> &'static str {
        match self {
            Hook::AdmitRegistration => "admit_registration",
            Hook::AuthorizeLogin => "authorize_login",
            Hook::FilterPersonas => "filter_personas",
            Hook::Audit => "audit",
        }
    }
}

/// Upper bounds (inclusive) of the latency buckets, 50 µs to 1 s; a last bucket holds the rest.
pub const LATENCY_BOUNDS: [Duration; 14] = {
    const fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }
    [
        us(50),
        us(100),
        us(250),
        us(500),
        us(1_000),
        us(2_500),
        us(5_000),
        us(10_000),
        us(25_000),
        us(50_000),
        us(100_000),
        us(250_000),
        us(500_000),
        us(1_000_000),
    ]
};

/// How long one hook's runs took: a histogram over [`LATENCY_BOUNDS`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// Runs per bucket (not cumulative): `buckets[i]` took at most `LATENCY_BOUNDS[i]` and more
    /// than the bound before; the last one, more than 1 s.
    pub buckets: [u64; LATENCY_BOUNDS.len() + 1],
    /// Total time of those runs.
    pub sum: Duration,
}

impl Latency {
    /// Runs observed (the sum of the buckets).
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Runs that took at most `LATENCY_BOUNDS[i]` (Prometheus' `le` buckets); `i ==
    /// LATENCY_BOUNDS.len()` is every run.
    pub fn cumulative(&self, i: usize) -> u64 {
        self.buckets[..=i].iter().sum()
    }
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let i = LATENCY_BOUNDS
            .iter()
            .position(|b| took <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    fn read(&self) -> Latency {
        Latency {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            sum: Duration::from_nanos(self.sum_ns.load(Relaxed)),
        }
    }
}

/// Threads, only when there are plugins.
struct Pool {
    jobs: SyncSender<Job>,
    deadlines: Deadlines,
    /// `None` when no plugin has an audit hook.
    audit: Option<SyncSender<AuditEvent>>,
}

/// The chain in use; [`Runner::replace_plugins`] swaps it (a call already asked keeps the
/// chain it started with).
type Current = Arc<RwLock<Arc<Plugins>>>;

fn current(c: &RwLock<Arc<Plugins>>) -> Arc<Plugins> {
    c.read().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Runs the plugins' hooks with a budget. `Send + Sync`: share it in an `Arc`.
pub struct Runner {
    plugins: Current,
    budget: Duration,
    counters: Arc<Counters>,
    pool: Option<Pool>,
}

/// An answer type and what it is when the plugins could not answer (fail closed).
pub trait Answer: Send + 'static {
    fn fail() -> Self;
    fn denies(&self) -> bool;
}

impl Answer for Verdict {
    fn fail() -> Self {
        Verdict::Deny
    }
    fn denies(&self) -> bool {
        !self.is_allow()
    }
}

impl Answer for Option<Vec<bool>> {
    fn fail() -> Self {
        None
    }
    fn denies(&self) -> bool {
        self.is_none()
    }
}

impl Runner {
    /// `threads` run hooks (at least 1), `queue` calls may wait for them (at least 1), each
    /// call is answered within `budget` of being asked (queueing included). With no plugins,
    /// no thread is started and every call is answered at once on the caller's thread.
    pub fn new(
        plugins: Arc<Plugins>,
        threads: usize,
        queue: usize,
        budget: Duration,
    ) -> std::io::Result<Runner> {
        let with_audit = plugins.has_audit();
        let plugins: Current = Arc::new(RwLock::new(plugins));
        let counters: Arc<Counters> = Arc::default();
        let pool = if current(&plugins).is_empty() {
            None
        } else {
            Some(start(&plugins, &counters, with_audit, threads, queue)?)
        };
        Ok(Runner {
            plugins,
            budget,
            counters,
            pool,
        })
    }

    /// The chain in use now.
    pub fn plugins(&self) -> Arc<Plugins> {
        current(&self.plugins)
    }

    /// Swaps in `new` (e.g. [`Plugins::reinit`] of the current chain, on a reload) for every
    /// call asked from now on; calls already running finish on the old chain. Returns the old
    /// chain. Refused (`Err(new)`, nothing changes) when `new` does not have the same hooks
    /// as the current chain (plugins or none, audit or not), since the threads were started
    /// for those: change the plugin list with a restart.
    pub fn replace_plugins(&self, new: Arc<Plugins>) -> Result<Arc<Plugins>, Arc<Plugins>> {
        let mut slot = self.plugins.write().unwrap_or_else(PoisonError::into_inner);
        if new.is_empty() != slot.is_empty() || new.has_audit() != slot.has_audit() {
            return Err(new);
        }
        Ok(std::mem::replace(&mut *slot, new))
    }

    /// `done` runs exactly once, on a runner thread (or on the caller's, when there are no
    /// plugins or the queue is full): keep it short, e.g. send to the core that asked.
    pub fn admit_registration_then(
        &self,
        r: Registration,
        done: impl FnOnce(Verdict) + Send + 'static,
    ) {
        self.submit(
            Hook::AdmitRegistration,
            move |p| p.admit_registration(&r),
            Box::new(done),
        );
    }

    pub fn authorize_login_then(
        &self,
        l: LoginAttempt,
        done: impl FnOnce(Verdict) + Send + 'static,
    ) {
        self.submit(
            Hook::AuthorizeLogin,
            move |p| p.authorize_login(&l),
            Box::new(done),
        );
    }

    pub fn filter_personas_then(
        &self,
        q: PersonaQuery,
        done: impl FnOnce(Option<Vec<bool>>) + Send + 'static,
    ) {
        self.submit(
            Hook::FilterPersonas,
            move |p| p.filter_personas(&q),
            Box::new(done),
        );
    }

    /// Asks now; the answer is awaited on any executor (the budget runs from this call).
    pub fn admit_registration(&self, r: Registration) -> Pending<Verdict> {
        Pending::new(|tx| self.admit_registration_then(r, tx))
    }

    pub fn authorize_login(&self, l: LoginAttempt) -> Pending<Verdict> {
        Pending::new(|tx| self.authorize_login_then(l, tx))
    }

    /// `None`: a plugin failed or overran: show the browser no persona.
    pub fn filter_personas(&self, q: PersonaQuery) -> Pending<Option<Vec<bool>>> {
        Pending::new(|tx| self.filter_personas_then(q, tx))
    }

    /// Fire and forget; dropped (and counted) when the audit queue is full.
    pub fn audit(&self, e: AuditEvent) {
        if let Some(tx) = self.pool.as_ref().and_then(|p| p.audit.as_ref()) {
            if tx.try_send(e).is_err() {
                self.counters.audit_dropped.fetch_add(1, Relaxed);
            }
        }
    }

    pub fn stats(&self) -> RunnerStats {
        let c = &self.counters;
        RunnerStats {
            calls: c.calls.load(Relaxed),
            denied: c.denied.load(Relaxed),
            timeouts: c.timeouts.load(Relaxed),
            errors: self.plugins().errors(),
            queue_full: c.queue_full.load(Relaxed),
            audit_dropped: c.audit_dropped.load(Relaxed),
        }
    }

    /// How long `hook`'s runs took since start: the whole chain, on the thread that ran it
    /// (queueing not included; runs that overran the budget are included when they end; calls
    /// that never ran — queue full, expired while queued — are not). Nothing is observed when
    /// there are no plugins.
    pub fn latency(&self, hook: Hook) -> Latency {
        self.counters.latency[hook as usize].read()
    }

    fn submit<T: Answer>(
        &self,
        hook: Hook,
        work: impl FnOnce(&Plugins) -> T + Send + 'static,
        done: Done<T>,
    ) {
        let counters = self.counters.clone();
        counters.calls.fetch_add(1, Relaxed);
        let done: Done<T> = Box::new(move |v: T| {
            if v.denies() {
                counters.denied.fetch_add(1, Relaxed);
            }
            done(v)
        });
        let plugins = self.plugins();
        let Some(pool) = &self.pool else {
            return done(work(&plugins));
        };
        // Whoever takes the callback first answers: the worker, or the timer at the deadline.
        let slot = Arc::new(Mutex::new(Some(done)));
        let take =
            |s: &Mutex<Option<Done<T>>>| s.lock().unwrap_or_else(PoisonError::into_inner).take();
        let job_slot = slot.clone();
        let job_counters = self.counters.clone();
        let job: Job = Box::new(move || {
            // Answered at the deadline while it queued: do not run it at all.
            if job_slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_none()
            {
                return;
            }
            let started = Instant::now();
            let v = work(&plugins);
            job_counters.latency[hook as usize].observe(started.elapsed());
            if let Some(done) = take(&job_slot) {
                done(v);
            }
        });
        if pool.jobs.try_send(job).is_err() {
            self.counters.queue_full.fetch_add(1, Relaxed);
            return take(&slot).expect("not yet answered")(T::fail());
        }
        let counters = self.counters.clone();
        pool.deadlines.add(
            Instant::now() + self.budget,
            Box::new(move || {
                if let Some(done) = take(&slot) {
                    counters.timeouts.fetch_add(1, Relaxed);
                    done(T::fail());
                }
            }),
        );
    }
}

fn start(
    plugins: &Current,
    counters: &Arc<Counters>,
    with_audit: bool,
    threads: usize,
    queue: usize,
) -> std::io::Result<Pool> {
    let (jobs, rx) = sync_channel::<Job>(queue.max(1));
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..threads.max(1) {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("flock-plugin-{i}"))
            .spawn(move || work(&rx))?;
    }
    let audit = if with_audit {
        let (tx, rx) = sync_channel::<AuditEvent>(queue.max(1));
        let plugins = plugins.clone();
        let counters = counters.clone();
        std::thread::Builder::new()
            .name("flock-plugin-audit".into())
            .spawn(move || {
                for e in rx {
                    let started = Instant::now();
                    current(&plugins).audit(&e);
                    counters.latency[Hook::Audit as usize].observe(started.elapsed());
                }
            })?;
        Some(tx)
    } else {
        None
    };
    Ok(Pool {
        jobs,
        deadlines: Deadlines::start()?,
        audit,
    })
}

/// Until the runner is dropped (its sender closes the queue).
fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        // A panicking `done` callback must not shrink the pool.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

/// An answer on its way; needs no particular runtime to await. Resolves to the fail-closed
/// answer if the runner is dropped first.
pub struct Pending<T> {
    rx: oneshot::Receiver<T>,
}

impl<T: Answer> Pending<T> {
    fn new(ask: impl FnOnce(Box<dyn FnOnce(T) + Send>)) -> Pending<T> {
        let (tx, rx) = oneshot::channel();
        ask(Box::new(move |v| {
            let _ = tx.send(v);
        }));
        Pending { rx }
    }
}

impl<T: Answer> Future for Pending<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| T::fail()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_buckets() {
        let h = Histogram::default();
        for us in [0, 50, 51, 999, 1_000, 1_000_000, 1_000_001, 30_000_000] {
            h.observe(Duration::from_micros(us));
        }
        let l = h.read();
        assert_eq!(l.count(), 8);
        assert_eq!(l.buckets[0], 2, "0 and 50 µs (bounds are inclusive): {l:?}");
        assert_eq!(l.buckets[1], 1, "51 µs");
        assert_eq!(l.buckets[4], 2, "999 µs and 1 ms");
        assert_eq!(l.buckets[13], 1, "1 s");
        assert_eq!(l.buckets[14], 2, "over 1 s");
        assert_eq!(l.cumulative(4), 5);
        assert_eq!(l.cumulative(LATENCY_BOUNDS.len()), 8);
        assert_eq!(
            l.sum,
            Duration::from_micros(50 + 51 + 999 + 1_000 + 1_000_000 + 1_000_001 + 30_000_000)
        );
        assert!(LATENCY_BOUNDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn no_plugins_observe_nothing() {
        let r = Runner::new(Arc::new(Plugins::none()), 1, 1, Duration::from_millis(10)).unwrap();
        let l = LoginAttempt {
            appliance: "box".into(),
            persona: "alice".into(),
            client: "192.0.2.1:1".parse().unwrap(),
            origin: None,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        r.authorize_login_then(l, move |v| tx.send(v).unwrap());
        assert_eq!(
            rx.try_recv(),
            Ok(Verdict::Allow),
            "answered at once, on this thread"
        );
        for hook in Hook::ALL {
            assert_eq!(r.latency(hook), Latency::default(), "{hook:?}");
        }
    }
}
