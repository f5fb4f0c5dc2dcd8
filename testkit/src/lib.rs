//! The test harness shared by Flock's crates (a dev-dependency only, not a stable API).
//!
//! - [`TempDir`], [`workspace_bin`], [`lines_of`]: files and child processes.
//! - [`fake_appliance`]: an appliance's log-in answers (PERSONAS, CONNECT, SIGNAL) written
//!   by hand, for tests that drive the server and play the appliance.
//! - [`sim`]: a sans-IO simulation: the server, an appliance, the wire between them and a
//!   virtual clock, optionally losing datagrams.
//! - [`flock_sim`]: the simulation with three servers of a flock, routed by address.
//! - [`hand_driven`]: the simulation's server driven datagram by datagram, for tests that play
//!   every appliance themselves.
//! - `browser` (feature `browser`): a scripted websocket browser speaking the gateway's JSON
//!   protocol, and `tls`, a test CA.
//! - `gateway` (feature `gateway`): a real gateway over fake cores.
//! - `plugins` (feature `plugins`): plugin specs and hook requests.
//! - `engine` (feature `engine`): an echo shard and an engine on loopback.
//! - `udp_server` (feature `udp-server`): the server served over loopback UDP in wall-clock
//!   time.
//! - `bench` (feature `bench`): flock-bench's binary, the servers it runs, its reports.
//!
//! Every wait here is bounded.

mod process;
mod temp_dir;

pub mod fake_appliance;
pub mod flock_sim;
pub mod hand_driven;
pub mod sim;

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "browser")]
pub mod browser;
#[cfg(feature = "engine")]
pub mod engine;
#[cfg(feature = "gateway")]
pub mod gateway;
#[cfg(feature = "plugins")]
pub mod plugins;
#[cfg(feature = "browser")]
pub mod tls;
#[cfg(feature = "udp-server")]
pub mod udp_server;

pub use process::{lines_of, workspace_bin};
pub use temp_dir::TempDir;
