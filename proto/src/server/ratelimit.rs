//! Per-source-IP token buckets in a fixed-size table. The port is ignored (one host, one
//! budget); IPs that hash to the same slot share it, which errs on the strict side. The hash is
//! keyed with a per-shard random seed so nobody can aim at another IP's slot.

use crate::time::Time;
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Copy, Default)]
struct Bucket {
    tokens: f32,
    last: Time,
    used: bool,
}

pub(crate) struct RateTable {
    slots: Box<[Bucket]>,
    seed: [u8; 16],
    burst: f32,
    per_ms: f32,
}

impl RateTable {
    pub(crate) fn new(slots: usize, burst: u32, per_minute: u32, seed: [u8; 16]) -> RateTable {
        RateTable {
            slots: vec![Bucket::default(); slots.max(1)].into_boxed_slice(),
            seed,
            burst: burst.max(1) as f32,
            per_ms: per_minute as f32 / 60_000.0,
        }
    }

    /// Takes one token for `src`'s IP; false when its budget is spent.
    pub(crate) fn allow(&mut self, now: Time, src: SocketAddr) -> bool {
        let i = self.slot(src.ip());
        let (burst, per_ms) = (self.burst, self.per_ms);
        let b = &mut self.slots[i];
        if !b.used {
            *b = Bucket {
                tokens: burst,
                last: now,
                used: true,
            };
        }
        let elapsed = now.0.saturating_sub(b.last.0) as f32;
        b.tokens = (b.tokens + elapsed * per_ms).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn slot(&self, ip: IpAddr) -> usize {
        use sha2::{Digest, Sha256};
        let ip = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(|v4| v4.to_ipv6_mapped())
                .unwrap_or(v6),
        };
        // Rare path (only when a check would start), so a real hash costs nothing that matters.
        let h = Sha256::new()
            .chain_update(self.seed)
            .chain_update(ip.octets())
            .finalize();
        (u64::from_le_bytes(h[..8].try_into().unwrap_or_default()) % self.slots.len() as u64)
            as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_ip_not_per_port() {
        let mut t = RateTable::new(64, 2, 6, [1; 16]);
        let a: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let a2: SocketAddr = "192.0.2.1:2".parse().unwrap();
        let now = Time::from_secs(100);
        assert!(t.allow(now, a));
        assert!(t.allow(now, a2));
        assert!(!t.allow(now, a), "burst of 2 spent, other port same IP");
        assert!(!t.allow(now + core::time::Duration::from_secs(9), a));
        assert!(
            t.allow(now + core::time::Duration::from_secs(11), a),
            "6/min = one per 10 s"
        );
    }
}
