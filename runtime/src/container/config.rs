//! What CreateContainer asks for, in the runtime's own terms (the CRI layer converts and
//! checks shapes; [`super::spec`] turns it, the image config and the pod into an OCI spec).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sandbox::NamespaceMode;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerConfig {
    pub name: String,
    pub attempt: u32,
    /// The image as the request named it (`ImageSpec.image`): a reference or an image id.
    pub image: String,
    /// Overrides the image's Entrypoint (and then drops its Cmd), as Kubernetes `command`.
    pub command: Vec<String>,
    /// Overrides the image's Cmd, as Kubernetes `args`.
    pub args: Vec<String>,
    /// Overrides the image's WorkingDir; made if missing.
    pub working_dir: String,
    /// In request order; a later key wins, and every key wins over the image's.
    pub envs: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub devices: Vec<Device>,
    /// CDI devices by fully-qualified name, from `cdi_devices` then the `cdi.k8s.io/*`
    /// annotations, each with the request field it came from.
    #[serde(default)]
    pub cdi_devices: Vec<super::cdi::CdiRequest>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Relative to the pod's log directory.
    pub log_path: String,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    /// The container's limits as they are now: create's, then each
    /// UpdateContainerResources merged over them (ContainerStatus reports these).
    #[serde(default)]
    pub resources: Option<crate::cgroups::Resources>,
    /// The container processes' `oom_score_adj` ([-1000, 1000]); None: the default, 0.
    /// Updated with the resources.
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
    pub security: SecurityConfig,
}

/// A bind mount of a host path.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mount {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    /// Read-only all the way down (submounts too; `rro`, mount_setattr). Needs `readonly`
    /// and private propagation.
    #[serde(default)]
    pub recursive_readonly: bool,
    pub propagation: Propagation,
    /// An image volume (KEP-4639): this image's root, read-only, instead of `host_path`.
    #[serde(default)]
    pub image: Option<ImageVolume>,
}

/// An image mounted as a volume; `layers` and `id` are resolved at create.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageVolume {
    /// The image as the request named it.
    pub reference: String,
    pub id: String,
    /// The image's layer dirs, topmost first.
    pub layers: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum Propagation {
    /// rprivate.
    #[default]
    Private,
    /// rslave: host mounts appear in the container.
    HostToContainer,
    /// rshared.
    Bidirectional,
}

/// A host device node made visible in the container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Device {
    pub container_path: String,
    pub host_path: String,
    /// Some of "rwm".
    pub permissions: String,
}

/// Which supplementary groups the process gets besides the requested ones.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum SupplementalGroupsPolicy {
    /// The groups of the image's `/etc/group` that list the user, plus the requested ones.
    #[default]
    Merge,
    /// Only the requested ones (and the primary gid): the image's `/etc/group` is not read.
    Strict,
}

/// The Linux security context of a container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecurityConfig {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    /// A user name to resolve in the image's /etc/passwd; wins over `run_as_user`, as in
    /// containerd.
    pub run_as_username: String,
    /// Kubernetes sends the pod's supplementalGroups and fsGroup here.
    pub supplemental_groups: Vec<i64>,
    #[serde(default)]
    pub supplemental_groups_policy: SupplementalGroupsPolicy,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub no_new_privs: bool,
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    /// The container's PID namespace: POD (the pod's), CONTAINER (its own), NODE (host's),
    /// TARGET (another container's, `target_id`).
    pub pid: Option<NamespaceMode>,
    pub target_id: String,
    /// The request's `userns_options`, when given: its mode and maps, which must be the
    /// pod's (POD with the pod's maps, or NODE for a pod without a user namespace).
    #[serde(default)]
    pub userns: Option<(NamespaceMode, crate::sandbox::UserNamespace)>,
    /// None: containerd's default list; given: exactly these. CRI gives a list always:
    /// kubelet sends the defaults for procMount Default and an empty list for Unmasked.
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    pub apparmor: String,
    pub seccomp: String,
}

/// The parts of the image that shape a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image id (config digest), as ImageStatus reports it.
    pub id: String,
    /// The digested reference (`repo@sha256:…`) or, lacking one, the first tag.
    pub reference: String,
    /// The image's layer dirs, topmost first (what becomes the overlay's lowerdirs).
    pub layers: Vec<PathBuf>,
    /// The image config's `config` part.
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub stop_signal: Option<String>,
}
