//! Container lifecycle events for kubelet's evented PLEG (`GetContainerEvents`).
//!
//! One broadcast channel: publishing never waits, each subscriber has its own bounded
//! backlog, and a subscriber that falls behind by more than that is told so (and the CRI
//! layer ends its stream with an error) instead of slowing the runtime down.

use tokio::sync::broadcast;

/// Events a subscriber may fall behind by before it is dropped.
pub const BACKLOG: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerEventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub container_id: String,
    pub pod_id: String,
    pub kind: ContainerEventKind,
    /// Unix nanoseconds.
    pub at: i64,
}

/// The publishing side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<ContainerEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new(BACKLOG)
    }
}

impl Events {
    pub fn new(backlog: usize) -> Events {
        let (tx, _) = broadcast::channel(backlog.max(1));
        Events { tx }
    }

    pub fn publish(&self, container_id: &str, pod_id: &str, kind: ContainerEventKind) {
        let event = ContainerEvent {
            container_id: container_id.to_string(),
            pod_id: pod_id.to_string(),
            kind,
            at: crate::clock::now_nanos(),
        };
        tracing::debug!(container = %container_id, pod = %pod_id, ?kind, "event");
        // No subscriber is not an error: events are only for whoever listens now.
        let _ = self.tx.send(event);
    }

    /// Every event from now on; `recv` answers `Lagged` once the backlog overflowed.
    pub fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::RecvError;

    #[tokio::test]
    async fn every_subscriber_sees_every_event_in_order() {
        let events = Events::new(8);
        let (mut a, mut b) = (events.subscribe(), events.subscribe());
        for kind in [
            ContainerEventKind::Created,
            ContainerEventKind::Started,
            ContainerEventKind::Stopped,
            ContainerEventKind::Deleted,
        ] {
            events.publish("c1", "p1", kind);
        }
        for rx in [&mut a, &mut b] {
            let mut got = Vec::new();
            for _ in 0..4 {
                got.push(rx.recv().await.map(|e| e.kind).ok());
            }
            assert_eq!(
                got,
                vec![
                    Some(ContainerEventKind::Created),
                    Some(ContainerEventKind::Started),
                    Some(ContainerEventKind::Stopped),
                    Some(ContainerEventKind::Deleted)
                ]
            );
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_it_fell_behind() {
        let events = Events::new(4);
        let mut slow = events.subscribe();
        for i in 0..10 {
            events.publish(&format!("c{i}"), "p", ContainerEventKind::Created);
        }
        assert!(matches!(slow.recv().await, Err(RecvError::Lagged(6))));
    }
}
