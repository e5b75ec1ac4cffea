//! CNI plugin mode: the calling side of the CNI spec (0.3.x, 0.4.0, 1.0, 1.1), for nodes
//! whose pod network comes from a cluster's plugin (Flannel, Calico, Cilium, kindnet).
//!
//! ```text
//! conf dir ──inotify──▶ watcher thread ──▶ the network new pods get (or why there is none)
//! setup_pod    cache entry (config, args; no result) → ADD each plugin in order, the result
//!              of one the prevResult of the next → cache entry with the result
//!              a failed ADD: DEL with what was made, then the entry goes (if DEL worked)
//! teardown_pod DEL each plugin in reverse, from the cache entry → entry removed
//! gc           DEL for entries whose pod is gone; GC (1.1) with the attachments we own
//! status       no config: not ready, with the reason; 1.1 configs: STATUS of each plugin
//! ```

pub mod args;
pub mod cache;
pub mod conf;
pub mod exec;
pub mod result;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rscni_types::version::SpecVersion;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::{PortMapping, POD_INTERFACE};
use cache::{Attachment, Cache};
use conf::{DirState, NetworkList};
use exec::{Exec, Op, Target};

/// How long one plugin may run before it is killed (containerd has no limit; kubelet's
/// RunPodSandbox deadline is 4 minutes).
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// STATUS results are reused this long (kubelet asks every 5 s).
const STATUS_TTL: Duration = Duration::from_secs(5);

/// Where CNI mode finds its configs and binaries, and keeps its cache.
#[derive(Clone, Debug)]
pub struct CniConfig {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    pub timeout: Duration,
}

/// The pod's DNS settings (`dns` capability).
#[derive(Clone, Debug, Default)]
pub struct DnsArgs {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// What ADD needs to know about a pod.
#[derive(Clone, Debug)]
pub struct PodRequest<'a> {
    pub id: &'a str,
    pub netns: &'a Path,
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub annotations: &'a BTreeMap<String, String>,
    pub ports: &'a [PortMapping],
    pub dns: Option<&'a DnsArgs>,
}

/// What a pod got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodAttachment {
    pub network: String,
    /// IPv4 first.
    pub ips: Vec<IpAddr>,
}

/// When a network's STATUS was asked, and its answer.
type StatusAnswer = (Instant, Arc<NetworkList>, std::result::Result<(), String>);

/// CNI mode's state: the chosen network (kept current by the watcher), the plugin runner
/// and the attachment cache.
pub struct Cni {
    exec: Exec,
    cache: Cache,
    conf_dir: PathBuf,
    current: Arc<RwLock<DirState>>,
    pod_cidr: Mutex<Option<String>>,
    status: tokio::sync::Mutex<Option<StatusAnswer>>,
}

impl Cni {
    /// Loads the config dir and starts watching it.
    pub fn open(config: CniConfig) -> Result<Cni> {
        let cache = Cache::open(&config.cache_dir)?;
        let current = Arc::new(RwLock::new(conf::load_dir(&config.conf_dir)));
        watch(config.conf_dir.clone(), Arc::downgrade(&current))?;
        Ok(Cni {
            exec: Exec {
                bin_dirs: config.bin_dirs,
                timeout: config.timeout,
            },
            cache,
            conf_dir: config.conf_dir,
            current,
            pod_cidr: Mutex::new(None),
            status: tokio::sync::Mutex::new(None),
        })
    }

    /// Whether `dir` holds a valid network config (`mode = "auto"` decides on it).
    pub fn dir_has_config(dir: &Path) -> bool {
        matches!(conf::load_dir(dir), DirState::Ready(_))
    }

    /// The network new pods get, or why there is none.
    pub fn current(&self) -> std::result::Result<Arc<NetworkList>, String> {
        match &*self.current.read().unwrap_or_else(|p| p.into_inner()) {
            DirState::Ready(l) => Ok(l.clone()),
            DirState::Missing(why) => Err(why.clone()),
        }
    }

    /// Reads the dir now, without waiting for the watcher (tests, start-up).
    pub fn reload(&self) {
        let state = conf::load_dir(&self.conf_dir);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// `ipRanges` for new pods (kubelet's pod CIDR).
    pub fn set_pod_cidr(&self, cidr: &str) -> Result<()> {
        if cidr.len() > 64 || (cidr.parse::<crate::ipam::Ipv4Net>().is_err() && !is_v6_cidr(cidr)) {
            return Err(Error::invalid(
                "pod_cidr",
                format!("{cidr:?} is not a CIDR"),
            ));
        }
        *self.pod_cidr.lock().unwrap_or_else(|p| p.into_inner()) = Some(cidr.to_string());
        Ok(())
    }

    /// NetworkReady: a valid config, and for 1.1 configs every plugin's STATUS.
    pub async fn status(&self) -> std::result::Result<(), String> {
        let list = self.current()?;
        if list.version < SpecVersion::new(1, 1, 0) {
            return Ok(());
        }
        let mut cached = self.status.lock().await;
        if let Some((at, l, r)) = &*cached {
            if Arc::ptr_eq(l, &list) && at.elapsed() < STATUS_TTL {
                return r.clone();
            }
        }
        let mut r = Ok(());
        for (i, p) in list.plugins.iter().enumerate() {
            let stdin = list
                .plugin_stdin(i, &Map::new(), None, &[])
                .map_err(|e| e.to_string())?;
            if let Err(e) = self.exec.run(&p.kind, Op::Status, None, stdin).await {
                r = Err(format!("network {} is not ready: {e}", list.name));
                break;
            }
        }
        *cached = Some((Instant::now(), list, r.clone()));
        r
    }

    /// ADD the pod to the current network. The attachment is recorded before the first
    /// plugin runs; a failure runs DEL for what was made before the error is returned.
    pub async fn setup_pod(&self, req: &PodRequest<'_>) -> Result<PodAttachment> {
        let list = self.current().map_err(Error::NotReady)?;
        let cni_args = args::cni_args(req)?;
        let pod_cidr = self
            .pod_cidr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let runtime_config = args::runtime_config(req, pod_cidr.as_deref())?;
        conf::validate_name(req.id).map_err(|e| Error::invalid("pod_sandbox_id", e))?;
        let mut attachment = Attachment {
            kind: cache::KIND.into(),
            network: list.name.clone(),
            container_id: req.id.to_string(),
            if_name: POD_INTERFACE.into(),
            netns: Some(req.netns.to_path_buf()),
            config: list.to_json(),
            cni_args,
            runtime_config,
            result: None,
        };
        // The pod's loopback is the runtime's (containerd runs the loopback plugin for
        // it); brought up over netlink on its own thread, no exec.
        crate::link::Netlink::connect_in(req.netns)
            .await?
            .loopback_up()
            .await?;
        let c = self.cache.clone();
        let a = attachment.clone();
        blocking(move || c.write(&a)).await?;
        match self.add(&list, &attachment).await {
            Ok((value, parsed)) => {
                attachment.result = Some(value);
                let c = self.cache.clone();
                let a = attachment.clone();
                blocking(move || c.write(&a)).await?;
                let ips = result::pod_ips(&parsed, POD_INTERFACE);
                tracing::info!(pod = %req.id, network = %list.name, ?ips, "CNI ADD done");
                Ok(PodAttachment {
                    network: list.name.clone(),
                    ips,
                })
            }
            Err((err, partial)) => {
                attachment.result = partial;
                let cleanup = match self.del(&attachment).await {
                    Ok(()) => Vec::new(),
                    Err(e) => vec![e],
                };
                Err(err.with_cleanup(cleanup))
            }
        }
    }

    /// Runs the chain's ADDs; on failure, the error and the last result any plugin gave.
    async fn add(
        &self,
        list: &NetworkList,
        a: &Attachment,
    ) -> std::result::Result<(Value, rscni_types::types::CNIResult), (Error, Option<Value>)> {
        let target = target(a);
        let mut prev: Option<(Value, rscni_types::types::CNIResult)> = None;
        for (i, p) in list.plugins.iter().enumerate() {
            let stdin = list
                .plugin_stdin(i, &a.runtime_config, prev.as_ref().map(|p| &p.0), &[])
                .map_err(|e| (e, prev.as_ref().map(|p| p.0.clone())))?;
            let out = self
                .exec
                .run(&p.kind, Op::Add, Some(&target), stdin)
                .await
                .map_err(|e| (e, prev.as_ref().map(|p| p.0.clone())))?;
            prev = Some(
                result::parse(&p.kind, &out)
                    .map_err(|e| (e, prev.as_ref().map(|p| p.0.clone())))?,
            );
        }
        prev.ok_or_else(|| (Error::Internal("network without plugins".into()), None))
    }

    /// DEL every attachment of the pod, each with the config and result its ADD used;
    /// each cache entry goes once its DEL succeeded. Ok when there is none.
    pub async fn teardown_pod(&self, id: &str) -> Result<()> {
        let c = self.cache.clone();
        let i = id.to_string();
        let attachments = blocking(move || Ok(c.find(&i))).await?;
        for a in attachments {
            self.del(&a).await?;
        }
        Ok(())
    }

    async fn del(&self, a: &Attachment) -> Result<()> {
        let list = cached_list(a)?;
        // prevResult on DEL exists from 0.4.0 on (libcni sends none before).
        let prev = if list.version >= SpecVersion::new(0, 4, 0) {
            a.result.as_ref()
        } else {
            None
        };
        let mut target = target(a);
        // A netns that is gone already: the plugins release what is outside it (the
        // address, the host's rules), as the spec asks of DEL.
        if target.netns.as_deref().is_some_and(|p| !p.exists()) {
            target.netns = None;
        }
        for (i, p) in list.plugins.iter().enumerate().rev() {
            let stdin = list.plugin_stdin(i, &a.runtime_config, prev, &[])?;
            self.exec
                .run(&p.kind, Op::Del, Some(&target), stdin)
                .await?;
        }
        let c = self.cache.clone();
        let a2 = a.clone();
        blocking(move || c.remove(&a2)).await?;
        tracing::info!(pod = %a.container_id, network = %a.network, "CNI DEL done");
        Ok(())
    }

    /// CHECK the pod's attachments (0.4.0 and later, unless the list disables it).
    pub async fn check_pod(&self, id: &str) -> Result<()> {
        for a in self.cache.find(id) {
            let list = cached_list(&a)?;
            if list.version < SpecVersion::new(0, 4, 0) || list.disable_check {
                continue;
            }
            let Some(prev) = a.result.as_ref() else {
                continue;
            };
            let target = target(&a);
            for (i, p) in list.plugins.iter().enumerate() {
                let stdin = list.plugin_stdin(i, &a.runtime_config, Some(prev), &[])?;
                self.exec
                    .run(&p.kind, Op::Check, Some(&target), stdin)
                    .await?;
            }
        }
        Ok(())
    }

    /// The pods that have an attachment recorded.
    pub fn attached_pods(&self) -> Vec<String> {
        self.cache
            .list()
            .into_iter()
            .map(|a| a.container_id)
            .collect()
    }

    /// The pod's addresses as its ADD reported them (also after a restart).
    pub fn pod_ips(&self, id: &str) -> Vec<IpAddr> {
        self.cache
            .find(id)
            .iter()
            .filter_map(|a| a.result.as_ref())
            .filter_map(|r| result::parse("cache", &serde_json::to_vec(r).ok()?).ok())
            .flat_map(|(_, r)| result::pod_ips(&r, POD_INTERFACE))
            .collect()
    }

    /// Start-up garbage collection: DEL (from the cache) every attachment whose pod is not
    /// in `owners`, then, for a 1.1 network that allows it, GC with the attachments that
    /// remain so that plugins free what no cache entry names. Failures are logged: the
    /// entries stay for the next start-up.
    pub async fn gc(&self, owners: &HashSet<String>) {
        for a in self.cache.list() {
            if owners.contains(&a.container_id) {
                continue;
            }
            tracing::warn!(pod = %a.container_id, network = %a.network, "CNI attachment whose pod is gone: DEL");
            if let Err(e) = self.del(&a).await {
                tracing::error!(pod = %a.container_id, network = %a.network, error = %e, "DEL of an attachment whose pod is gone");
            }
        }
        let Ok(list) = self.current() else { return };
        if list.version < SpecVersion::new(1, 1, 0) || list.disable_gc {
            return;
        }
        let valid: Vec<Value> = self
            .cache
            .list()
            .into_iter()
            .filter(|a| a.network == list.name)
            .map(|a| serde_json::json!({ "containerID": a.container_id, "ifname": a.if_name }))
            .collect();
        for (i, p) in list.plugins.iter().enumerate() {
            let stdin = match list.plugin_stdin(
                i,
                &Map::new(),
                None,
                &[("cni.dev/valid-attachments", Value::Array(valid.clone()))],
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "GC config");
                    return;
                }
            };
            if let Err(e) = self.exec.run(&p.kind, Op::Gc, None, stdin).await {
                tracing::error!(network = %list.name, error = %e, "CNI GC");
            }
        }
    }
}

fn is_v6_cidr(s: &str) -> bool {
    s.split_once('/').is_some_and(|(ip, len)| {
        ip.parse::<std::net::Ipv6Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 128)
    })
}

fn target(a: &Attachment) -> Target {
    Target {
        container_id: a.container_id.clone(),
        netns: a.netns.clone(),
        ifname: a.if_name.clone(),
        args: a.cni_args.clone(),
    }
}

fn cached_list(a: &Attachment) -> Result<NetworkList> {
    let bytes = serde_json::to_vec(&a.config)
        .map_err(|e| Error::Internal(format!("encoding a cached config: {e}")))?;
    NetworkList::parse(
        &bytes,
        true,
        Path::new(&format!("cache entry {}-{}", a.network, a.container_id)),
    )
}

/// Watches `dir` on a thread of its own (inotify reads block) and reloads the network on
/// every change; a dir that is missing or removed is looked for again every second. Ends
/// at the first event after the [`Cni`] is gone.
fn watch(dir: PathBuf, current: std::sync::Weak<RwLock<DirState>>) -> Result<()> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC)
        .map_err(Error::nix("inotify_init for the CNI config dir"))?;
    let flags = AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF;
    // False once the Cni is gone.
    let reload = move |dir: &Path| -> bool {
        let Some(cur) = current.upgrade() else {
            return false;
        };
        let state = conf::load_dir(dir);
        match &state {
            DirState::Ready(l) => {
                tracing::info!(network = %l.name, file = %l.source.display(), "CNI network config")
            }
            DirState::Missing(why) => tracing::warn!(reason = %why, "no CNI network config"),
        }
        *cur.write().unwrap_or_else(|p| p.into_inner()) = state;
        true
    };
    std::thread::Builder::new()
        .name("cni-conf-watch".into())
        .spawn(move || loop {
            let wd = match inotify.add_watch(dir.as_path(), flags) {
                Ok(wd) => wd,
                Err(_) => {
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            // Whatever changed before the watch was in place.
            if !reload(&dir) {
                return;
            }
            while let Ok(events) = inotify.read_events() {
                // Installers write several events at once: let them finish first.
                std::thread::sleep(Duration::from_millis(20));
                if !reload(&dir) {
                    return;
                }
                let gone = events.iter().any(|e| {
                    e.mask.intersects(
                        AddWatchFlags::IN_IGNORED
                            | AddWatchFlags::IN_DELETE_SELF
                            | AddWatchFlags::IN_MOVE_SELF,
                    )
                });
                if gone {
                    let _ = inotify.rm_watch(wd);
                    break;
                }
            }
        })
        .map_err(Error::io("starting the CNI config watcher"))?;
    Ok(())
}

/// Run blocking file work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}
