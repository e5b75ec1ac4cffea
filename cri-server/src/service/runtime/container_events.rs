//! GetContainerEvents: every container's CREATED / STARTED / STOPPED / DELETED, each with
//! its pod's status and the statuses of the pod's containers, as kubelet's evented PLEG
//! reads them. Any number of subscribers; one that falls more than
//! `runtime::events::BACKLOG` events behind gets an error and its stream ends, so a slow
//! client never holds the runtime up.

use std::pin::Pin;

use futures::Stream;
use runtime::events::{ContainerEvent, ContainerEventKind};
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use super::sandbox_status::host_ip;
use crate::convert::container_status::to_status;
use crate::service::CriService;

pub(crate) type EventStream =
    Pin<Box<dyn Stream<Item = Result<proto::ContainerEventResponse, Status>> + Send>>;

impl CriService {
    pub(crate) fn container_events(&self) -> EventStream {
        let rx = self.containers().events().subscribe();
        let service = self.clone();
        let stream = futures::stream::unfold(Some(rx), move |rx| {
            let service = service.clone();
            async move {
                let mut rx = rx?;
                match rx.recv().await {
                    Ok(event) => Some((Ok(service.event_response(event)), Some(rx))),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "an event subscriber fell behind; dropping it");
                        let status = Status::resource_exhausted(format!(
                            "the subscriber fell {missed} events behind; subscribe again"
                        ));
                        Some((Err(status), None))
                    }
                    Err(RecvError::Closed) => None,
                }
            }
        });
        Box::pin(stream)
    }

    fn event_response(&self, event: ContainerEvent) -> proto::ContainerEventResponse {
        let kind = match event.kind {
            ContainerEventKind::Created => proto::ContainerEventType::ContainerCreatedEvent,
            ContainerEventKind::Started => proto::ContainerEventType::ContainerStartedEvent,
            ContainerEventKind::Stopped => proto::ContainerEventType::ContainerStoppedEvent,
            ContainerEventKind::Deleted => proto::ContainerEventType::ContainerDeletedEvent,
        };
        let pod_sandbox_status = self
            .sandboxes()
            .find(&event.pod_id)
            .ok()
            .flatten()
            .map(|pod| crate::convert::sandbox::to_status(&pod, host_ip()));
        let containers_statuses = self
            .containers()
            .of_pod(&event.pod_id)
            .unwrap_or_default()
            .iter()
            .map(to_status)
            .collect();
        proto::ContainerEventResponse {
            container_id: event.container_id,
            container_event_type: kind as i32,
            created_at: event.at,
            pod_sandbox_status,
            containers_statuses,
        }
    }
}
