//! GetContainerEvents end to end: two subscribers each see a container's CREATED,
//! STARTED, STOPPED (when it exits on its own, with nobody asking) and DELETED, in order,
//! with the pod's status attached.

use std::time::Duration;

use anyhow::{Context, Result};
use e2e::client::{spec, Cri};
use e2e::daemon::Daemon;
use e2e::images::{Image, ImageConfig};
use e2e::registry::{skip_reason, Registry, RegistryOptions};
use e2e::skip::have_root;
use futures::StreamExt;

type Events = tonic::Streaming<proto::ContainerEventResponse>;

async fn subscribe(cri: &mut Cri) -> Result<Events> {
    Ok(cri
        .runtime
        .get_container_events(proto::GetEventsRequest::default())
        .await?
        .into_inner())
}

/// The next `n` events about `id` (others are skipped), each within 10 s.
async fn next_for(
    events: &mut Events,
    id: &str,
    n: usize,
) -> Result<Vec<proto::ContainerEventResponse>> {
    let mut got = Vec::new();
    while got.len() < n {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .with_context(|| format!("no event after {got:?}"))?
            .context("stream ended")??;
        if event.container_id == id {
            got.push(event);
        }
    }
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subscribers_see_a_container_lifecycle_in_order() -> Result<()> {
    let test = "two_subscribers_see_a_container_lifecycle_in_order";
    if !have_root(test) {
        return Ok(());
    }
    if let Some(why) = skip_reason(&RegistryOptions::default()) {
        eprintln!("skipping {test}: {why}");
        return Ok(());
    }
    let reg = Registry::start(RegistryOptions::default()).await?;
    Image::busybox(ImageConfig::default())?
        .push(&reg, "e2e/busybox", &["latest"])
        .await?;
    let daemon =
        Daemon::start("[network]\nbridge = \"crtev1\"\nsubnet = \"10.217.1.0/24\"\n").await?;
    let mut cri = daemon.client().await?;
    let image = format!("{}/e2e/busybox:latest", reg.host());
    cri.pull(&image, None).await?;
    let (mut first, mut second) = (subscribe(&mut cri).await?, subscribe(&mut cri).await?);

    let pod_config = proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: "events".into(),
            uid: "uid-events".into(),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        linux: Some(proto::LinuxPodSandboxConfig::default()),
        ..Default::default()
    };
    let pod = cri
        .runtime
        .run_pod_sandbox(proto::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let id = cri
        .runtime
        .create_container(proto::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(proto::ContainerConfig {
                metadata: Some(proto::ContainerMetadata {
                    name: "short".into(),
                    attempt: 0,
                }),
                image: Some(spec(&image)),
                command: vec!["sh".into(), "-c".into(), "sleep 0.2; exit 5".into()],
                linux: Some(proto::LinuxContainerConfig::default()),
                ..Default::default()
            }),
            sandbox_config: Some(pod_config),
        })
        .await?
        .into_inner()
        .container_id;
    cri.runtime
        .start_container(proto::StartContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    // No status call: the STOPPED event comes from the exit itself.
    let stopped = next_for(&mut first, &id, 3).await?;
    let last = stopped.last().context("no events")?;
    let status = last
        .containers_statuses
        .iter()
        .find(|s| s.id == id)
        .context("the container's status is attached")?;
    assert_eq!(status.exit_code, 5);
    assert_eq!(status.state, proto::ContainerState::ContainerExited as i32);
    assert_eq!(
        last.pod_sandbox_status.as_ref().map(|p| p.id.as_str()),
        Some(pod.as_str())
    );
    cri.runtime
        .remove_container(proto::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    let deleted = next_for(&mut first, &id, 1).await?;
    let all: Vec<i32> = stopped
        .iter()
        .chain(&deleted)
        .map(|e| e.container_event_type)
        .collect();
    let want = vec![
        proto::ContainerEventType::ContainerCreatedEvent as i32,
        proto::ContainerEventType::ContainerStartedEvent as i32,
        proto::ContainerEventType::ContainerStoppedEvent as i32,
        proto::ContainerEventType::ContainerDeletedEvent as i32,
    ];
    assert_eq!(all, want);
    let other: Vec<i32> = next_for(&mut second, &id, 4)
        .await?
        .iter()
        .map(|e| e.container_event_type)
        .collect();
    assert_eq!(other, want);
    assert!(deleted[0].containers_statuses.iter().all(|s| s.id != id));

    cri.runtime
        .stop_pod_sandbox(proto::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    cri.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await?;
    drop(daemon);
    drop(reg);
    Ok(())
}
