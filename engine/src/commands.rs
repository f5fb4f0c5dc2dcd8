//! Commands from other threads (the websocket gateway's tokio runtime) to a core's shard.
//!
//! One bounded inbox per core, with the same park/wake protocol as the datagram mesh, so a
//! command wakes a parked core at once and sending never blocks: a full inbox hands the command
//! back, and the sender reports "busy" instead of queueing without bound.

use crate::mesh::Inbox;
use crate::shared::Shared;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) struct CommandQueues<C> {
    pub inboxes: Box<[Inbox<C>]>,
}

impl<C> CommandQueues<C> {
    pub(crate) fn new(cores: usize, capacity: usize) -> CommandQueues<C> {
        CommandQueues {
            inboxes: (0..cores).map(|_| Inbox::new(capacity)).collect(),
        }
    }
}

/// Sends commands to the cores of a running engine. Cheap to clone, usable from any thread.
pub struct Commander<C> {
    queues: Arc<CommandQueues<C>>,
    shared: Arc<Shared>,
}

impl<C> Clone for Commander<C> {
    fn clone(&self) -> Self {
        Commander {
            queues: self.queues.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<C: Send + 'static> Commander<C> {
    pub(crate) fn new(queues: Arc<CommandQueues<C>>, shared: Arc<Shared>) -> Commander<C> {
        Commander { queues, shared }
    }

    pub fn cores(&self) -> usize {
        self.queues.inboxes.len()
    }

    /// Queues `command` for `core` and wakes it. Hands the command back when that core's inbox
    /// is full, the engine is stopping, or there is no such core.
    pub fn send(&self, core: usize, command: C) -> Result<(), C> {
        let Some(inbox) = self.queues.inboxes.get(core) else {
            return Err(command);
        };
        if self.shared.stop.load(Ordering::Relaxed) {
            return Err(command);
        }
        inbox.try_push(command)?;
        inbox.notify();
        Ok(())
    }
}
