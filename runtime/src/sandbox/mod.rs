//! Pod sandboxes: pinned net/ipc/uts namespaces, the pod's network, its shared files, its
//! cgroup and its shim. One [`SandboxRecord`] per pod owns all of them; `stop` and `remove`
//! release them, each step idempotent.
//!
//! ```text
//!  run ──▶ Ready ──stop──▶ NotReady ──remove──▶ (gone)
//!    ╰─ failure: every step made so far is undone, nothing is recorded
//! ```

mod cgroup;
mod files;
mod port_forward;
mod recover;
mod remove;
mod run;
mod stop;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use cgroup::PodCgroup;
pub use network::{IdMapping, NetworkConfig, NetworkMode, PortMapping, Protocol, UserNamespace};

use crate::error::{Error, Result};
use crate::store::Db;

/// How a pod's namespace relates to the host (CRI `NamespaceMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceMode {
    Pod,
    Container,
    Node,
    Target,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// What RunPodSandbox asks for, already validated for shape by the CRI layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxConfig {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
    pub hostname: String,
    pub log_directory: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub dns: Option<DnsConfig>,
    pub port_mappings: Vec<PortMapping>,
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
    pub cgroup_parent: Option<String>,
    pub sysctls: BTreeMap<String, String>,
    pub runtime_handler: String,
    /// The pod's own user namespace (CRI `userns_options` mode POD) with its maps; None:
    /// the host's (mode NODE). Absent in records of older versions.
    #[serde(default)]
    pub userns: Option<UserNamespace>,
    /// Pod-level limits (kubelet's pod resources, or the runtime class overhead), written
    /// at run to a `cgroup_parent` that the run made (a caller's own parent is never
    /// written: kubelet sets them there itself). Not persisted: they live in the cgroup files.
    #[serde(skip)]
    pub resources: Option<crate::cgroups::Resources>,
}

impl SandboxConfig {
    /// The four metadata fields that make a pod unique (kubelet's sandbox name).
    pub fn unique_name(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.name, self.namespace, self.uid, self.attempt
        )
    }

    pub fn host_network(&self) -> bool {
        self.network == NamespaceMode::Node
    }
}

/// What a RunPodSandbox is about to make, in the pod dir before anything else
/// ([`crate::intent`]): the start-up releases a pod dir without a record by it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PodIntent {
    pub id: String,
    pub cgroup: Option<PodCgroup>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub config: SandboxConfig,
    pub state: SandboxState,
    /// Unix nanoseconds.
    pub created_at: i64,
    /// The pod's primary address (IPv4 when it has one).
    pub ip: Option<IpAddr>,
    /// Its other addresses (the IPv6 one of a dual-stack pod). Absent in older records.
    #[serde(default)]
    pub additional_ips: Vec<IpAddr>,
    /// Why the last release of the pod's network failed (a CNI plugin's DEL), until one
    /// succeeds.
    #[serde(default)]
    pub network_error: Option<String>,
    /// `<state>/pods/<id>`: pinned namespaces, hostname/hosts/resolv.conf, shm, shim socket.
    pub dir: PathBuf,
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    /// The pinned user namespace that owns `netns`, `ipcns` and `utsns`, when the pod has
    /// its own.
    #[serde(default)]
    pub userns: Option<PathBuf>,
    pub shim_pid: Option<i32>,
    pub pause_pid: Option<i32>,
    /// The pod's own cgroup below its parent (shim, pause). Absent in records of older
    /// versions, whose pods get no cgroup released: their parent is not theirs.
    #[serde(default)]
    pub cgroup: Option<PodCgroup>,
}

impl SandboxRecord {
    pub fn can_stop(&self) -> bool {
        self.state == SandboxState::Ready
    }

    pub fn hostname_file(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    pub fn hosts_file(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    pub fn shm_dir(&self) -> PathBuf {
        self.dir.join("shm")
    }
}

/// The node's pod network: the built-in bridge, or a cluster's CNI plugins.
pub(crate) enum PodNetwork {
    Native(network::Network),
    Cni(network::cni::Cni),
}

/// All pods of this node.
pub struct Sandboxes {
    db: Arc<Db>,
    pods_dir: PathBuf,
    network: Option<PodNetwork>,
    network_error: Option<String>,
    /// Unique names of pods being created, so two concurrent runs of the same pod can't both
    /// get past the AlreadyExists check.
    creating: Mutex<HashSet<String>>,
    /// Serialises state changes per pod (stop vs remove vs a second stop).
    locks: crate::locks::KeyedLocks,
    /// Whether pods may have their own user namespace here, else why not
    /// ([`Sandboxes::probe_user_namespaces`]).
    userns_support: std::result::Result<(), String>,
}

impl Sandboxes {
    /// Open the sandbox store and the pod network. A network that can't be set up is not
    /// fatal: the daemon reports NetworkReady=false with the reason, and hostNetwork pods
    /// still run.
    ///
    /// `cni_cache` keeps CNI mode's attachments (config and result of each ADD): on the
    /// persistent root, so that pods recorded there can be DELeted after a reboot too.
    pub async fn open(
        state: &Path,
        cni_cache: &Path,
        db: Arc<Db>,
        net: NetworkConfig,
    ) -> Result<Sandboxes> {
        let pods_dir = state.join("pods");
        std::fs::create_dir_all(&pods_dir).map_err(Error::io("creating", &pods_dir))?;
        let mode = match net.mode {
            NetworkMode::Auto if network::cni::Cni::dir_has_config(&net.conf_dir) => {
                NetworkMode::Cni
            }
            NetworkMode::Auto => NetworkMode::Native,
            m => m,
        };
        let opened = if mode == NetworkMode::Cni {
            // kubelet waits for NetworkReady until the cluster's plugin installs its config
            // here; the watcher needs the dir to exist.
            if let Err(e) = std::fs::create_dir_all(&net.conf_dir) {
                tracing::warn!(dir = %net.conf_dir.display(), error = %e, "creating the CNI config dir");
            }
            tracing::info!(conf_dir = %net.conf_dir.display(), "pod network: CNI plugins");
            network::cni::Cni::open(network::cni::CniConfig {
                conf_dir: net.conf_dir.clone(),
                bin_dirs: net.bin_dirs.clone(),
                cache_dir: cni_cache.to_path_buf(),
                timeout: std::time::Duration::from_secs(net.plugin_timeout_seconds.max(1)),
            })
            .map(PodNetwork::Cni)
        } else {
            network::Network::open(net, db.database())
                .await
                .map(PodNetwork::Native)
        };
        let (network, network_error) = match opened {
            Ok(n) => (Some(n), None),
            Err(e) => {
                tracing::error!(error = %e, "pod network unavailable");
                (None, Some(e.to_string()))
            }
        };
        let sandboxes = Sandboxes {
            db,
            pods_dir,
            network,
            network_error,
            creating: Mutex::new(HashSet::new()),
            locks: Default::default(),
            userns_support: Err("not probed".into()),
        };
        sandboxes.recover().await?;
        Ok(sandboxes)
    }

    /// `Ok` when pod networking works, else the reason (a CRI condition reason) and why.
    pub async fn network_status(&self) -> std::result::Result<(), (&'static str, String)> {
        match (&self.network, &self.network_error) {
            (Some(PodNetwork::Cni(c)), _) => c
                .status()
                .await
                .map_err(|why| ("NetworkPluginNotReady", format!("cni: {why}"))),
            (_, Some(e)) => Err((
                "NetworkSetupFailed",
                format!("the pod network could not be set up: {e}"),
            )),
            (_, None) => Ok(()),
        }
    }

    /// `native` or `cni`: what this daemon uses.
    pub fn network_mode(&self) -> &'static str {
        match &self.network {
            Some(PodNetwork::Cni(_)) => "cni",
            _ => "native",
        }
    }

    /// Probe once, at start, whether this kernel and these filesystems can run pods with
    /// their own user namespace (`layers_dir`: where image snapshots and writable layers
    /// live): a user namespace, idmapped mounts of `layers_dir`'s and the state dir's
    /// filesystems and of a tmpfs, and an overlay over idmapped layers.
    pub async fn probe_user_namespaces(&mut self, layers_dir: &Path) {
        let layers_dir = layers_dir.to_path_buf();
        let state_dir = self.pods_dir.clone();
        // The probe forks a namespace holder: on a thread of its own, never one of tokio's
        // (see DESIGN.md), reporting back over a channel.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let probe = move || {
            let maps = UserNamespace {
                uids: vec![IdMapping {
                    container_id: 0,
                    host_id: 1_000_000,
                    length: 65536,
                }],
                gids: vec![IdMapping {
                    container_id: 0,
                    host_id: 1_000_000,
                    length: 65536,
                }],
            };
            network::with_user_namespace(&maps, |userns| {
                crate::shim::init::probe_user_namespaces(&layers_dir, &state_dir, userns)
            })
            .map_err(|e| e.to_string())?
        };
        let spawned = std::thread::Builder::new()
            .name("corral-userns-probe".into())
            .spawn(move || {
                let _ = tx.send(probe());
            });
        let probed = match spawned {
            Ok(_) => rx
                .await
                .unwrap_or_else(|_| Err("the probe thread panicked".into())),
            Err(e) => Err(format!("spawning the probe thread: {e}")),
        };
        match &probed {
            Ok(()) => tracing::info!("pods may have their own user namespace"),
            Err(why) => tracing::warn!(%why, "pods with their own user namespace are refused"),
        }
        self.userns_support = probed;
    }

    /// `Ok` when pods may have their own user namespace, else why not.
    pub fn user_namespaces(&self) -> std::result::Result<(), &str> {
        self.userns_support
            .as_ref()
            .map(|_| ())
            .map_err(String::as_str)
    }

    pub async fn set_pod_cidr(&self, cidr: &str) -> Result<()> {
        let field = "runtime_config.network_config.pod_cidr";
        match &self.network {
            Some(PodNetwork::Native(n)) => n
                .set_pod_cidr(cidr)
                .await
                .map_err(|e| Error::invalid(field, e.to_string())),
            Some(PodNetwork::Cni(c)) => c
                .set_pod_cidr(cidr)
                .map_err(|e| Error::invalid(field, e.to_string())),
            None => Ok(()),
        }
    }

    /// Releases the pod's network (native: rules and address; CNI: DEL from the cache).
    /// Ok for a pod that has none.
    pub(crate) async fn teardown_network(&self, id: &str, netns: Option<&Path>) -> Result<()> {
        match &self.network {
            Some(PodNetwork::Native(n)) => Ok(n.teardown_pod(id, netns).await?),
            Some(PodNetwork::Cni(c)) => Ok(c.teardown_pod(id).await?),
            None => Ok(()),
        }
    }

    /// CHECK the pod's CNI attachments (CNI mode; Ok otherwise).
    pub async fn check_network(&self, id: &str) -> Result<()> {
        match &self.network {
            Some(PodNetwork::Cni(c)) => Ok(c.check_pod(id).await?),
            _ => Ok(()),
        }
    }

    pub fn list(&self) -> Result<Vec<SandboxRecord>> {
        self.db.list_sandboxes()
    }

    /// By full id or unique prefix.
    pub fn get(&self, id: &str) -> Result<SandboxRecord> {
        self.find(id)?.ok_or_else(|| Error::NotFound {
            what: format!("pod sandbox {id:?}"),
        })
    }

    pub fn find(&self, id: &str) -> Result<Option<SandboxRecord>> {
        if id.is_empty() {
            return Err(Error::invalid("pod_sandbox_id", "empty"));
        }
        let mut matches = self
            .db
            .list_sandboxes()?
            .into_iter()
            .filter(|s| s.id.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some(one), None) => Ok(Some(one)),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(Error::invalid(
                "pod_sandbox_id",
                format!("{id:?} matches more than one pod sandbox"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records written before dual stack (an IPv4 `ip`, no `additional_ips`) still load.
    #[test]
    fn old_records_load() {
        let mut v = serde_json::to_value(crate::stats::tests::pod_record("p1", None)).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.remove("additional_ips");
        obj.remove("network_error");
        obj.insert("ip".into(), serde_json::json!("10.89.0.7"));
        let r: SandboxRecord = serde_json::from_value(v).unwrap();
        assert_eq!(r.ip, Some("10.89.0.7".parse().unwrap()));
        assert!(r.additional_ips.is_empty());
        assert!(r.network_error.is_none());
    }
}
