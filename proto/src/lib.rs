//! Flock protocol, sans-IO.
//!
//! The packet path, from the socket to the reply (the socket, the batches and the cores are
//! the host's: `flock-engine`, run by flockd):
//!
//! 1. the host reads a datagram and calls [`server::Server::handle`] on the shard of its core;
//! 2. [`stun::Message::parse`] reads the STUN framing once; the shard dispatches on the method
//!    (`server/mod.rs`) and reads the Flock message with its typed view in [`wire`]
//!    (`wire/registration.rs`, `wire/login/`, `wire/peer/`; every number in `wire/numbers.rs`);
//! 3. the name it is about decides which core owns it (`server/routing.rs`): another core's
//!    datagram comes back as [`server::Outcome::OtherCore`], untouched, for the host to pass on;
//! 4. the state machine takes it: registration (`server/registration.rs`: nonce → timestamp →
//!    signature → replay guard → table, or token → table for a keep-alive), address-change
//!    checks (`server/checks.rs`), admission (`server/admission.rs`), log-in sessions
//!    (`server/login/`), the flock's peers (`server/peers.rs`, `server/relay_table.rs`);
//! 5. an answer to the sender is encoded into the host's buffer at once
//!    ([`server::Outcome::Reply`]); everything else it causes (datagrams to other addresses,
//!    log-in events, policy requests, alarms, the next timer) comes out of
//!    [`server::Server::poll_output`] as one [`server::Output`] enum, which the host drains
//!    after every input.
//!
//! Around them: name rules (`name`), identities (`identity`), address-bound proofs (`token`),
//! the flock's server list (`membership`) and the interface between the websocket gateway and
//! a core (`login`). Nothing here performs I/O, reads a clock or spawns a thread: time and
//! randomness are passed in, replies are written into caller-owned buffers.

pub mod entropy;
pub mod identity;
pub mod login;
pub mod membership;
pub mod name;
pub mod server;
pub mod stun;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod token;
pub mod wire;

pub use name::{Name, NameHash};
pub use time::Time;
