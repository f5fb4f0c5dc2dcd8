//! Example plugin: limits log-in attempts with token buckets per client IP (IPv6: per /64) and
//! per appliance, across websockets (the buckets outlive any one connection).
//!
//! Config, all optional (these are the defaults):
//! `per_ip=5/min,burst=3,per_appliance=20/min,appliance_burst=10,max_entries=65536`.
//! Rates are `N/s`, `N/min` or `N/h`; `burst` and `appliance_burst` are the bucket sizes (the
//! attempts allowed at once); `max_entries` bounds each table. An attempt takes a token from
//! both buckets, or from neither and is told when to retry. When a table is full of buckets
//! that are still refilling, new keys wait (fail closed) until some refill.

#![forbid(unsafe_code)]

use flock_plugins::sdk::*;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

struct RateLimit {
    tables: Mutex<(Buckets<IpAddr>, Buckets<String>)>,
}

impl Plugin for RateLimit {
    fn init(config: &str) -> Result<Self, String> {
        let (mut per_ip, mut burst, mut per_appliance, mut appliance_burst, mut max) =
            (5.0 / 60.0, 3.0, 20.0 / 60.0, 10.0, 65536);
        for item in config.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: expected key=value"))?;
            match key.trim() {
                "per_ip" => per_ip = rate(value)?,
                "per_appliance" => per_appliance = rate(value)?,
                "burst" => burst = size(value).ok_or("burst: a number ≥ 1")?,
                "appliance_burst" => {
                    appliance_burst = size(value).ok_or("appliance_burst: a number ≥ 1")?
                }
                "max_entries" => {
                    max = value
                        .trim()
                        .parse()
                        .ok()
                        .filter(|m| *m > 0)
                        .ok_or("max_entries: a count > 0")?
                }
                other => return Err(format!("unknown setting `{other}`")),
            }
        }
        let tables = (
            Buckets::new(per_ip, burst, max),
            Buckets::new(per_appliance, appliance_burst, max),
        );
        Ok(RateLimit {
            tables: Mutex::new(tables),
        })
    }

    fn authorize_login(&self, l: &LoginAttempt) -> Verdict {
        let now = Instant::now();
        let (ips, appliances) = &mut *self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let ip = per_64(l.client.ip());
        let wait = ips.wait(&ip, now).max(appliances.wait(&l.appliance, now));
        if !wait.is_zero() {
            return Verdict::RetryAfter(wait);
        }
        ips.take(ip, now);
        appliances.take(l.appliance.clone(), now);
        Verdict::Allow
    }
}

flock_plugin!(RateLimit, "login-ratelimit");

/// IPv6 clients usually hold a whole /64; IPv4-mapped addresses (a dual-stack socket) are IPv4.
fn per_64(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

fn size(s: &str) -> Option<f64> {
    number(s).filter(|b| *b >= 1.0)
}

/// `N/s`, `N/min`, `N/h` → tokens per second.
fn rate(s: &str) -> Result<f64, String> {
    let bad = || format!("`{s}`: expected a rate such as 5/min");
    let (n, unit) = s.split_once('/').ok_or_else(bad)?;
    let secs = match unit.trim() {
        "s" => 1.0,
        "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    number(n)
        .filter(|n| *n > 0.0)
        .map(|n| n / secs)
        .ok_or_else(bad)
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key, at most `max` of them. A missing key is a full bucket, so buckets
/// that have refilled can be forgotten.
struct Buckets<K> {
    rate: f64,
    burst: f64,
    max: usize,
    map: HashMap<K, Bucket>,
    swept: Option<Instant>,
}

impl<K: Hash + Eq> Buckets<K> {
    fn new(rate: f64, burst: f64, max: usize) -> Self {
        Buckets {
            rate,
            burst,
            max,
            map: HashMap::new(),
            swept: None,
        }
    }

    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst)
    }

    /// How long until `key` has a token (zero: now).
    fn wait<Q: Hash + Eq + ?Sized>(&mut self, key: &Q, now: Instant) -> Duration
    where
        K: std::borrow::Borrow<Q>,
    {
        let tokens = match self.map.get(key).map(|b| self.level(b, now)) {
            Some(level) => level,
            None if self.has_room(now) => self.burst,
            None => 0.0,
        };
        Duration::from_secs_f64((1.0 - tokens).max(0.0) / self.rate)
    }

    fn take(&mut self, key: K, now: Instant) {
        let level = self
            .map
            .get(&key)
            .map_or(self.burst, |b| self.level(b, now));
        self.map.insert(
            key,
            Bucket {
                tokens: level - 1.0,
                at: now,
            },
        );
    }

    /// Full: forget the buckets that refilled (at most once a second: it walks the table).
    fn has_room(&mut self, now: Instant) -> bool {
        if self.map.len() >= self.max
            && self
                .swept
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.swept = Some(now);
            let (rate, burst) = (self.rate, self.burst);
            self.map
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        self.map.len() < self.max
    }
}
