//! The gateway's way into the packet cores: a [`CoreLink`] over the engine's command inboxes.

use crate::shard::CoreCmd;
use flock_engine::Commander;
use flock_proto::Name;
use flock_ws::{CoreLink, ToCore};

pub struct EngineLink {
    pub commander: Commander<CoreCmd>,
}

impl CoreLink for EngineLink {
    fn core_for(&self, name: &Name) -> usize {
        // The core that owns the name's UDP traffic, so the session lives beside the
        // registration; for a name another server owns, that core talks to the owner.
        name.hash().core_index(self.commander.cores())
    }

    #[allow(clippy::result_large_err)] // the trait's shape: a refused command comes back whole
    fn send(&self, core: usize, msg: ToCore) -> Result<(), ToCore> {
        self.commander
            .send(core, CoreCmd::Login(msg))
            .map_err(|c| match c {
                CoreCmd::Login(msg) => msg,
                CoreCmd::Admission { .. } => unreachable!("the command sent comes back"),
            })
    }
}
