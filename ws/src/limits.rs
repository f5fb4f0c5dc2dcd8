//! Bounds on open sockets, in all and per source IP. Only live sockets count: a [`Slot`] is
//! taken at accept and given back when the connection's task drops it, whatever the outcome.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many sockets from this IP (→ 429).
    PerIp,
    /// Too many sockets in all (→ 503).
    Full,
}

pub struct Limits {
    // Changed live by a reload (sockets already open stay, even over a lowered bound).
    max_total: AtomicUsize,
    max_per_ip: AtomicUsize,
    table: Mutex<Table>,
    /// Signalled when the last socket closes (for a bounded shutdown without polling).
    empty: Condvar,
}

#[derive(Default)]
struct Table {
    total: usize,
    // Holds only IPs with a live socket, so it never outgrows `max_total` entries.
    per_ip: HashMap<IpAddr, usize>,
}

/// One live socket; dropping it frees the place.
pub struct Slot {
    limits: Arc<Limits>,
    /// The client it counts against, once known (see [`Limits::admit_total`]).
    key: Option<IpAddr>,
}

impl Limits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Limits {
        Limits {
            max_total: AtomicUsize::new(max_total),
            max_per_ip: AtomicUsize::new(max_per_ip),
            table: Mutex::new(Table::default()),
            empty: Condvar::new(),
        }
    }

    /// New bounds for the sockets admitted from now on.
    pub fn set_bounds(&self, max_total: usize, max_per_ip: usize) {
        self.max_total.store(max_total, Relaxed);
        self.max_per_ip.store(max_per_ip, Relaxed);
    }

    /// A place for a connection from `ip`, under both bounds.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut slot = self.admit_total()?;
        slot.claim_ip(ip)?;
        Ok(slot)
    }

    /// A place under the total bound only, for a connection from a trusted proxy whose
    /// client is not known yet: [`Slot::claim_ip`] once it is.
    pub fn admit_total(self: &Arc<Self>) -> Result<Slot, Refusal> {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.total >= self.max_total.load(Relaxed) {
            return Err(Refusal::Full);
        }
        t.total += 1;
        Ok(Slot {
            limits: self.clone(),
            key: None,
        })
    }

    pub fn open(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Waits until no socket is open or `grace` has passed; true when none is open.
    pub fn wait_empty(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        while t.total > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            t = self
                .empty
                .wait_timeout(t, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

impl Slot {
    /// Counts this connection against client `ip` (once; a second call changes nothing).
    pub fn claim_ip(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        if self.key.is_some() {
            return Ok(());
        }
        let key = key(ip);
        let mut t = self.limits.table.lock().unwrap_or_else(|e| e.into_inner());
        let n = t.per_ip.entry(key).or_insert(0);
        if *n >= self.limits.max_per_ip.load(Relaxed) {
            if *n == 0 {
                t.per_ip.remove(&key);
            }
            return Err(Refusal::PerIp);
        }
        *n += 1;
        self.key = Some(key);
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.limits.table.lock().unwrap_or_else(|e| e.into_inner());
        t.total -= 1;
        if let Some(key) = self.key {
            if let Some(n) = t.per_ip.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    t.per_ip.remove(&key);
                }
            }
        }
        if t.total == 0 {
            self.limits.empty.notify_all();
        }
    }
}

/// Log-ins under way (a `login` was taken and the session has not ended nor gone back to
/// asking for credentials): what a drain waits for.
#[derive(Default)]
pub struct Running {
    table: Mutex<RunningTable>,
    zero: Condvar,
}

#[derive(Default)]
struct RunningTable {
    now: usize,
    /// Ended since start (to tell how many ended during a drain).
    ended: u64,
}

/// One log-in under way; dropping it ends it.
pub struct RunningGuard {
    running: Arc<Running>,
    /// False: taken back ([`RunningGuard::cancel`]), not counted as ended.
    ended: bool,
}

impl Running {
    pub fn enter(self: &Arc<Self>) -> RunningGuard {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).now += 1;
        RunningGuard {
            running: self.clone(),
            ended: true,
        }
    }

    /// (under way now, ended since start)
    pub fn counts(&self) -> (usize, u64) {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        (t.now, t.ended)
    }

    /// Waits until none is under way or `limit` has passed; true when none is.
    pub fn wait_zero(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        while t.now > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            t = self
                .zero
                .wait_timeout(t, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

impl RunningGuard {
    /// The log-in never started after all (refused at once): not counted as ended.
    pub fn cancel(mut self) {
        self.ended = false;
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        let mut t = self.running.table.lock().unwrap_or_else(|e| e.into_inner());
        t.now -= 1;
        t.ended += u64::from(self.ended);
        if t.now == 0 {
            self.running.zero.notify_all();
        }
    }
}

/// The unit a bound applies to: an IPv4 address, or an IPv6 /64 (one host's usual share, so
/// rotating the low bits does not escape the bound).
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & u128::MAX << 64).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_count_live_sockets_only() {
        let l = Arc::new(Limits::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let (s1, _s2) = (l.admit(a).unwrap(), l.admit(a).unwrap());
        assert_eq!(l.admit(a).err(), Some(Refusal::PerIp));
        let _s3 = l.admit(b).unwrap();
        assert_eq!(
            l.admit("2001:db8::2".parse().unwrap()).err(),
            Some(Refusal::Full)
        );
        drop(s1);
        assert!(l.admit(a).is_ok(), "a dropped slot frees its place");
        let one = Arc::new(Limits::new(10, 1));
        let _v6 = one.admit(b).unwrap();
        assert_eq!(
            one.admit("2001:db8::9".parse().unwrap()).err(),
            Some(Refusal::PerIp),
            "same /64"
        );
        let _mapped = one.admit("::ffff:10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(
            one.admit(a).err(),
            Some(Refusal::PerIp),
            "v4-mapped is the v4 address"
        );
    }

    #[test]
    fn a_proxied_connection_counts_against_its_client_once_known() {
        let l = Arc::new(Limits::new(3, 1));
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let mut s1 = l.admit_total().unwrap();
        let mut s2 = l.admit_total().unwrap();
        assert_eq!(l.open(), 2);
        s1.claim_ip(client).unwrap();
        s1.claim_ip(client).unwrap();
        assert_eq!(s2.claim_ip(client).err(), Some(Refusal::PerIp));
        s2.claim_ip("203.0.113.10".parse().unwrap()).unwrap();
        let _s3 = l.admit_total().unwrap();
        assert_eq!(l.admit_total().err(), Some(Refusal::Full));
        drop(s1);
        assert!(l.admit(client).is_ok(), "its place is free again");
        drop(s2);
        assert!(
            l.table.lock().unwrap().per_ip.len() <= 1,
            "no empty entries left"
        );
    }

    #[test]
    fn bounds_change_live() {
        let l = Arc::new(Limits::new(3, 1));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let s1 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some(Refusal::PerIp));
        l.set_bounds(3, 2);
        let _s2 = l.admit(a).unwrap();
        l.set_bounds(1, 2);
        assert_eq!(
            l.admit("10.0.0.2".parse().unwrap()).err(),
            Some(Refusal::Full),
            "open sockets stay, new ones wait"
        );
        drop(s1);
        assert_eq!(l.open(), 1);
    }

    #[test]
    fn running_log_ins_are_counted_and_awaited() {
        let r = Arc::new(Running::default());
        assert!(r.wait_zero(Duration::ZERO));
        let (g1, g2) = (r.enter(), r.enter());
        assert_eq!(r.counts(), (2, 0));
        drop(g1);
        assert!(!r.wait_zero(Duration::from_millis(20)));
        std::thread::spawn(move || drop(g2));
        assert!(r.wait_zero(Duration::from_secs(5)));
        assert_eq!(r.counts(), (0, 2));
        r.enter().cancel();
        assert_eq!(r.counts(), (0, 2), "a cancelled log-in never ran");
    }

    #[test]
    fn wait_empty_is_bounded() {
        let l = Arc::new(Limits::new(3, 2));
        let s = l.admit("10.0.0.1".parse().unwrap()).unwrap();
        assert!(!l.wait_empty(Duration::from_millis(20)));
        std::thread::spawn(move || drop(s));
        assert!(l.wait_empty(Duration::from_secs(5)));
    }
}
