//! Flock protocol, sans-IO.
//!
//! The wire codec (`stun`), name rules (`name`), identities (`identity`), address-bound proofs
//! (`token`), the flock messages (`msg`) and the server's registration state machine (`server`).
//! Nothing here performs I/O, reads a clock or spawns a thread: time and randomness are passed
//! in, replies are written into caller-owned buffers.

pub mod entropy;
pub mod flock;
pub mod identity;
pub mod login;
pub mod msg;
pub mod name;
pub mod peer;
pub mod server;
pub mod stun;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod token;

pub use name::{Name, NameHash};
pub use time::Time;
