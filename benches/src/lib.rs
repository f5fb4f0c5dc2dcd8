//! Flock benchmarks: `flock-bench`, a packet-rate load generator for flockd, and a minimal
//! UDP echo server as the kernel baseline.
//!
//! The pieces: [`gen`] is the per-thread send/receive loop, driven by a [`gen::Workload`]
//! from [`modes`]; [`runner`] runs a phase on all threads and samples CPU use; `flock-udp` does
//! the batched I/O (sendmmsg + UDP GSO, recvmmsg); [`inflight`] matches answers to requests;
//! [`hist`] keeps latencies; [`report`] prints and serializes the results; [`chart`] turns
//! several results into a markdown table and an SVG bar chart. [`ws`] is the websocket side:
//! browser log-ins per second and memory per idle websocket. [`stalls`] measures the machine's
//! own pauses of a busy thread.

pub mod chart;
pub mod cli;
pub mod echo;
pub mod flood;
pub mod gen;
pub mod hist;
pub mod inflight;
pub mod modes;
pub mod proc_stat;
pub mod report;
pub mod runner;
pub mod stalls;
pub mod sys;
pub mod template;
pub mod tls;
pub mod ws;
