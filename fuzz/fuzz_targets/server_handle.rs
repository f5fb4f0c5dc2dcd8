#![no_main]
//! See src/lib.rs (`flock_fuzz::server_handle`) for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| flock_fuzz::server_handle(data));
