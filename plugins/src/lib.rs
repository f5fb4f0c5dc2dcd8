//! Flock's policy plugins.
//!
//! Shared libraries listed in flockd's config decide which appliances may register, which
//! log-ins are allowed or rate limited, which personas a browser sees, and receive audit
//! events. They speak a stable C ABI ([`abi`], `include/flock_plugin.h`), so they can be
//! written in C or in Rust ([`sdk`]).
//!
//! - [`Plugins::load`] loads them at start (every failure is a clear start-up error);
//!   [`Plugins::none`] is the default: allow everything, show every persona.
//! - [`Plugins`] also calls the chain synchronously (all must allow; fail closed).
//! - [`Runner`] calls it off the caller's thread with a time budget, for the packet cores and
//!   the websocket gateway.
//!
//! See `docs/PLUGINS.md` for plugin authors.

pub mod abi;
mod deadline;
mod host;
mod loader;
mod runner;
pub mod sdk;
pub mod testing;
mod types;
mod view;

pub use loader::{LoadError, LoadErrorKind, PluginSpec, Plugins};
pub use runner::{Answer, Hook, Latency, Pending, Runner, RunnerStats, LATENCY_BOUNDS};
pub use types::{AuditEvent, LoginAttempt, Persona, PersonaQuery, Registration, Verdict};

/// The directory holding `flock_plugin.h`, for building C plugins.
pub const INCLUDE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/include");
