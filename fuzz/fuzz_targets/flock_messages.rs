#![no_main]
//! See src/lib.rs (`flock_fuzz::flock_messages`) for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| flock_fuzz::flock_messages(data));
