//! Container records → CRI status and list items.

use std::collections::{BTreeMap, HashMap};

use runtime::container::config::Propagation;
use runtime::container::{ContainerRecord, ContainerState, ProcessUser};

pub fn state(s: ContainerState) -> proto::ContainerState {
    match s {
        ContainerState::Created => proto::ContainerState::ContainerCreated,
        ContainerState::Running => proto::ContainerState::ContainerRunning,
        ContainerState::Exited => proto::ContainerState::ContainerExited,
        ContainerState::Unknown => proto::ContainerState::ContainerUnknown,
    }
}

fn map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn metadata(r: &ContainerRecord) -> proto::ContainerMetadata {
    proto::ContainerMetadata {
        name: r.config.name.clone(),
        attempt: r.config.attempt,
    }
}

fn image_spec(r: &ContainerRecord) -> proto::ImageSpec {
    proto::ImageSpec {
        image: r.image.name.clone(),
        user_specified_image: r.config.image.clone(),
        ..Default::default()
    }
}

pub fn to_list_item(r: &ContainerRecord) -> proto::Container {
    proto::Container {
        id: r.id.clone(),
        pod_sandbox_id: r.pod_id.clone(),
        metadata: Some(metadata(r)),
        image: Some(image_spec(r)),
        image_ref: r.image.reference.clone(),
        state: state(r.state) as i32,
        created_at: r.created_at,
        labels: map(&r.config.labels),
        annotations: map(&r.config.annotations),
        // The config digest, as ImageStatus and ListImages report it (containerd's too).
        image_id: r.image.id.clone(),
    }
}

pub fn to_status(r: &ContainerRecord) -> proto::ContainerStatus {
    let mounts = r
        .config
        .mounts
        .iter()
        .map(|m| proto::Mount {
            container_path: m.container_path.clone(),
            host_path: m.host_path.clone(),
            readonly: m.readonly,
            propagation: match m.propagation {
                Propagation::Private => proto::MountPropagation::PropagationPrivate,
                Propagation::HostToContainer => proto::MountPropagation::PropagationHostToContainer,
                Propagation::Bidirectional => proto::MountPropagation::PropagationBidirectional,
            } as i32,
            image: m.image.as_ref().map(|v| proto::ImageSpec {
                image: v.reference.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    proto::ContainerStatus {
        id: r.id.clone(),
        metadata: Some(metadata(r)),
        state: state(r.state) as i32,
        created_at: r.created_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        exit_code: r.exit_code,
        image: Some(image_spec(r)),
        image_ref: r.image.reference.clone(),
        image_id: r.image.id.clone(),
        reason: r.reason.clone(),
        message: r.message.clone(),
        labels: map(&r.config.labels),
        annotations: map(&r.config.annotations),
        mounts,
        log_path: r
            .log_path
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        // The limits in force: create's, or the last update's.
        resources: Some(super::resources::to_proto(
            r.config.resources.as_ref(),
            r.config.oom_score_adj,
        )),
        user: r.user.as_ref().map(container_user),
    }
}

/// The identity the process started with (critest's SupplementalGroupsPolicy specs read
/// it; the list holds the primary gid, as containerd reports it).
fn container_user(u: &ProcessUser) -> proto::ContainerUser {
    proto::ContainerUser {
        linux: Some(proto::LinuxContainerUser {
            uid: i64::from(u.uid),
            gid: i64::from(u.gid),
            supplemental_groups: u.additional_gids.iter().map(|&g| i64::from(g)).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_is_reported_as_started() {
        let u = ProcessUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![1000, 1234, 50000],
        };
        let got = container_user(&u);
        let linux = got.linux.unwrap_or_default();
        assert_eq!((linux.uid, linux.gid), (1000, 1000));
        assert_eq!(linux.supplemental_groups, [1000, 1234, 50000]);
    }
}
