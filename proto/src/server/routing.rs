//! Which core and which server own a datagram: the name it is about, hashed. Every core of a
//! server and every server of a flock agrees on it (docs/PROTOCOL.md §2).

use crate::name::{Name, NameHash};
use crate::stun::Message;
use crate::wire::login::is_login;
use crate::wire::peer::Relay;
use crate::wire::{method, name_attr};

/// The name a request is about, for routing to the owning core without a full read.
pub fn request_name(msg: &Message<'_>) -> Option<Name> {
    if !msg.has_fingerprint() {
        return None;
    }
    match msg.method() {
        m if m == method::REGISTER || m == method::KEEPALIVE || m == method::CHECK => {
            name_attr(msg).ok()
        }
        _ if is_login(msg) => name_attr(msg).ok(),
        // Peer messages go to the core owning the name on both servers (a RELAY's is inside).
        m if m == method::LOOKUP => name_attr(msg).ok(),
        m if m == method::RELAY => Relay::parse(msg).ok().map(|r| r.name),
        _ => None,
    }
}

/// Which core of a server's `cores` a shard runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreSlot {
    pub index: usize,
    pub cores: usize,
}

impl CoreSlot {
    /// The core owning `hash` when it is not this one.
    pub fn other_owner(&self, hash: &NameHash) -> Option<usize> {
        let owner = hash.core_index(self.cores);
        (owner != self.index).then_some(owner)
    }
}

/// The hash of `name` when this core (or a one-core server: `None`) owns it, else the owning
/// core.
pub(crate) fn claim(core: Option<CoreSlot>, name: &Name) -> Result<NameHash, usize> {
    let hash = name.hash();
    match core.and_then(|c| c.other_owner(&hash)) {
        Some(other) => Err(other),
        None => Ok(hash),
    }
}

/// The core that owns a datagram: the owner of its name for flock requests and check answers,
/// `None` for anything else (stateless or dropped, any core will do).
#[cfg(feature = "testing")]
pub fn owner_core(datagram: &[u8], cores: usize) -> Option<usize> {
    if cores <= 1 || !crate::stun::looks_like_stun(datagram) {
        return None;
    }
    let msg = Message::parse(datagram).ok()?;
    request_name(&msg).map(|n| n.hash().core_index(cores))
}
