//! Latency histogram with logarithmic buckets: 16 linear sub-buckets per power of two, so a
//! reported percentile is within 1/32 (≈3 %) of the true value. Fixed size, no allocation
//! after creation; recording is a few integer operations.

const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Values up to 2^48 ns (about 3 days) are kept apart; larger ones share the last bucket.
const MAX_EXP: u32 = 48;
const BUCKETS: usize = SUB + (MAX_EXP - SUB_BITS) as usize * SUB;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // ≥ SUB_BITS
    if exp >= MAX_EXP {
        return BUCKETS - 1;
    }
    let mantissa = (v >> (exp - SUB_BITS)) as usize & (SUB - 1);
    SUB + (exp - SUB_BITS) as usize * SUB + mantissa
}

/// Lowest value and width of bucket `i`.
fn bounds(i: usize) -> (u64, u64) {
    if i < SUB {
        return (i as u64, 1);
    }
    let exp = (i - SUB) / SUB + SUB_BITS as usize;
    let mantissa = ((i - SUB) % SUB) as u64;
    let width = 1u64 << (exp - SUB_BITS as usize);
    ((SUB as u64 + mantissa) * width, width)
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            max: 0,
        }
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1): the middle of the bucket holding the ⌈q·n⌉-th
    /// smallest value, never above the largest recorded. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bounds(i);
                return (low + width / 2).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: u64, want: u64) -> bool {
        (got as f64 - want as f64).abs() <= want as f64 / 32.0 + 1.0
    }

    #[test]
    fn buckets_are_contiguous() {
        for i in 0..BUCKETS - 1 {
            let (low, width) = bounds(i);
            assert_eq!(bounds(i + 1).0, low + width, "bucket {i}");
            assert_eq!(index(low), i);
            assert_eq!(index(low + width - 1), i);
        }
    }

    #[test]
    fn small_values_exact() {
        let mut h = Histogram::new();
        for v in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 5);
        assert_eq!(h.quantile(0.9), 9);
        assert_eq!(h.quantile(1.0), 10);
        assert_eq!(h.quantile(0.0), 1);
    }

    #[test]
    fn uniform_percentiles() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1_000); // 1 µs .. 100 ms
        }
        assert_eq!(h.count(), 100_000);
        for (q, want) in [(0.5, 50_000_000), (0.99, 99_000_000), (0.999, 99_900_000)] {
            let got = h.quantile(q);
            assert!(close(got, want), "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max(), 100_000_000);
    }

    #[test]
    fn skewed_and_merged() {
        let (mut a, mut b) = (Histogram::new(), Histogram::new());
        for _ in 0..990 {
            a.record(20_000);
        }
        for _ in 0..10 {
            b.record(5_000_000);
        }
        a.merge(&b);
        assert!(close(a.quantile(0.5), 20_000));
        assert!(close(a.quantile(0.99), 20_000));
        assert!(close(a.quantile(0.995), 5_000_000));
        assert_eq!(a.quantile(0.999), 5_000_000, "capped at the maximum");
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }
}
