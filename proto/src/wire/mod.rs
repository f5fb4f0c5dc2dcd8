//! Flock's messages on STUN framing: typed views of parsed messages and encoders, no state.
//! Every byte is documented in `docs/PROTOCOL.md`; keep the two in step.
//!
//! - [`numbers`]: every method and attribute number, in one table;
//! - [`registration`]: REGISTER, KEEPALIVE, CHECK and their answers (appliance ↔ server);
//! - [`login`]: PERSONAS, CONNECT, SIGNAL (server ↔ appliance, for a browser's log-in);
//! - [`peer`]: LOOKUP and RELAY (server ↔ server).
//!
//! Parsing never allocates; each typed view borrows the datagram. Encoders write into the
//! caller's buffer and return the length. The families only depend on `numbers` and the shared
//! attribute readers (`attrs`), and `peer` on `login` (a RELAY carries a log-in datagram).

mod attrs;
pub mod login;
pub mod numbers;
pub mod peer;
pub mod registration;

pub use attrs::MsgError;
pub(crate) use attrs::{expect, fixed, name_attr};
pub use numbers::{attr, method};
