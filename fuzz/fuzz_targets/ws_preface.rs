#![no_main]
//! See src/lib.rs (`flock_fuzz::ws_preface`) for what this target checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| flock_fuzz::ws_preface(data));
