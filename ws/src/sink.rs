//! The queue from a packet core to one websocket session. The cores run on glommio, the
//! sessions on tokio: the queue belongs to neither (flume), is bounded (`events_queue`), and
//! never makes the core wait: a full or closed queue is reported at once.

use flock_proto::login::Event;

/// Where the core sends a session's events (made by the gateway at `open`).
#[derive(Clone, Debug)]
pub struct EventSink(flume::Sender<Event>);

/// Why an event was not queued; the event comes back inside.
#[derive(Debug)]
pub enum Undelivered {
    /// The browser reads too slowly: `events_queue` events are waiting.
    Full(Event),
    /// The session has ended (its websocket closed).
    Closed(Event),
}

impl EventSink {
    /// Queues `event` without waiting.
    pub fn try_send(&self, event: Event) -> Result<(), Undelivered> {
        self.0.try_send(event).map_err(|e| match e {
            flume::TrySendError::Full(e) => Undelivered::Full(e),
            flume::TrySendError::Disconnected(e) => Undelivered::Closed(e),
        })
    }
}

/// The session's end of the queue; dropping it closes the sink.
pub(crate) struct EventQueue(flume::Receiver<Event>);

impl EventQueue {
    /// The next event; `None` once the core has dropped the sink. Cancel-safe (an event stays
    /// queued unless this returns it).
    pub(crate) async fn recv(&self) -> Option<Event> {
        self.0.recv_async().await.ok()
    }
}

/// A queue of `capacity` events.
pub(crate) fn event_queue(capacity: usize) -> (EventSink, EventQueue) {
    let (tx, rx) = flume::bounded(capacity);
    (EventSink(tx), EventQueue(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_closed_are_told_apart_without_waiting() {
        let (sink, queue) = event_queue(2);
        sink.try_send(Event::Accepted).unwrap();
        sink.try_send(Event::Done).unwrap();
        assert!(matches!(
            sink.try_send(Event::Accepted),
            Err(Undelivered::Full(Event::Accepted))
        ));
        drop(queue);
        assert!(matches!(
            sink.try_send(Event::Done),
            Err(Undelivered::Closed(Event::Done))
        ));
    }
}
