//! Flock appliance SDK: register a name with a flock server over UDP, keep it registered, and let
//! browsers log in through the flock.
//!
//! - [`machine`]: the protocol state machine, sans-IO ([`Appliance`]): no sockets, clocks or
//!   threads; time and randomness are passed in. Use it directly to embed an appliance in any
//!   event loop, or to test against the real server in memory.
//! - [`driver`]: runs an [`Appliance`] over a tokio UDP socket ([`spawn`] → [`ApplianceHandle`]).
//! - [`keys`]: Ed25519 key generation and storage (PKCS#8 DER files, mode 0600).
//! - [`login`]: browser log-in: persona list, the authenticator, WebRTC signalling with the
//!   flock (part of [`Appliance`]).
//! - `webrtc` (cargo feature `webrtc`, str0m, Rust 1.89): a WebRTC peer for an accepted
//!   log-in: the offer with one data channel, trickled host candidate, an echo of every text
//!   message; and a bounded set of them. The simulator needs it; the SDK alone does not.
//!
//! The `flock-appliance` binary (`src/simulator/`) simulates one or many appliances with them. Its
//! own dependencies (clap, tracing-subscriber, toml, a multi-threaded tokio) sit behind the
//! `simulator` feature, which `webrtc` turns on: the library alone needs only a tokio runtime
//! of any flavour for the driver.

pub mod driver;
pub mod keys;
pub mod login;
pub mod machine;
#[cfg(feature = "webrtc")]
pub mod webrtc;

pub use driver::{spawn, ApplianceHandle, Status, SystemEntropy};
pub use login::{
    Authenticator, Candidate, Decision, LoginRequest, SessionFailure, SessionNonce, SignalError,
};
pub use machine::{
    Appliance, ApplianceConfig, Event, Output, State, Stats, MAX_DATAGRAM, MAX_REDIRECTS,
    MIN_KEEPALIVE_INTERVAL,
};
