//! Randomness, passed in: the protocol layer never reads the operating system's generator, so
//! tests run deterministically.

/// Source of randomness (challenges, transaction ids, jitter).
pub trait Entropy {
    fn fill(&mut self, dest: &mut [u8]);
}
