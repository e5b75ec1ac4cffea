//! Containers: an OCI bundle, a writable layer, a cgroup below the pod's, and an init run
//! by the pod's `corral-shim`. One [`ContainerRecord`] per container owns all of them;
//! `remove` releases them, each step idempotent.
//!
//! ```text
//!  create ──▶ Created ──start──▶ Running ──exit / stop──▶ Exited ──remove──▶ (gone)
//!     ╰─ failure: every step made so far is undone, nothing is recorded
//! ```
//!
//! The shim, not corrald, sees a container exit: it writes the exit (code, signal, OOM,
//! time) atomically to `<bundle>/exit`. corrald reads that file whenever it looks at a
//! container that it last knew as running ([`Containers::refresh`]), so an exit while
//! corrald was down is reported with its real code and time after a restart.

pub mod apparmor;
pub mod cdi;
pub mod config;
mod create;
mod exec;
mod remove;
pub mod seccomp;
pub mod spec;
mod start;
mod stop;
mod stream;
mod update;
mod user;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use config::{ContainerConfig, ImageInfo};
pub use exec::ExecOutput;
pub use stream::{resize_pty, AttachSession, ExecExit, ExecSession, StreamFds, StreamRequest};
pub use update::ResourceUpdate;

use crate::error::{Error, Result};
use crate::events::{ContainerEventKind, Events};
use crate::shim::exit_file;
use crate::shim::protocol::ExitStatus;
use crate::store::Db;

/// The bundle's file that the shim records the exit in.
pub const EXIT_FILE: &str = "exit";
/// The bundle's OCI runtime spec.
pub const SPEC_FILE: &str = "config.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// The image a container was made from, as it was at create.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRef {
    /// The name ContainerStatus shows: the image's first tag, else what the request said.
    pub name: String,
    /// The image id (config digest).
    pub id: String,
    /// The digested reference (`repo@sha256:…`), what CRI calls image_ref.
    pub reference: String,
    /// The layers' diff ids, bottom first: held from garbage collection while the
    /// container exists.
    pub layers: Vec<String>,
}

/// The identity the container's process starts with (its spec's `process.user`), as
/// ContainerStatus.user reports it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    /// Sorted; holds the primary gid (see `user::ResolvedUser`).
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    pub config: ContainerConfig,
    pub image: ImageRef,
    pub state: ContainerState,
    /// Unix nanoseconds; 0 when it has not happened.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, `StartError`, or empty while it runs.
    pub reason: String,
    pub message: String,
    /// The init's host pid, once created.
    pub pid: Option<i32>,
    /// `<state>/containers/<id>`: config.json, the rootfs mount point, the exit file.
    pub bundle: PathBuf,
    /// `<root>/containers/<id>`: the overlay's upper and work dirs.
    pub layer_dir: PathBuf,
    /// The pod's state dir, where its shim listens.
    pub pod_dir: PathBuf,
    /// Absolute CRI log path, when kubelet asked for one.
    pub log_path: Option<PathBuf>,
    /// The container's cgroup (below the pod's).
    pub cgroup: String,
    /// The signal StopContainer sends first (the image's StopSignal, else SIGTERM).
    pub stop_signal: i32,
    /// None for records written before it was kept.
    #[serde(default)]
    pub user: Option<ProcessUser>,
}

impl ContainerRecord {
    pub fn exit_file(&self) -> PathBuf {
        self.bundle.join(EXIT_FILE)
    }

    pub fn spec_file(&self) -> PathBuf {
        self.bundle.join(SPEC_FILE)
    }

    /// The overlay's upper dir: what the container wrote.
    pub fn upper_dir(&self) -> PathBuf {
        self.layer_dir.join("upper")
    }

    /// kubelet's unique name for it: `name_podname_podnamespace_poduid_attempt` is made by
    /// the caller; here the part the container contributes.
    pub fn is_running(&self) -> bool {
        self.state == ContainerState::Running
    }

    /// Record an exit the shim wrote.
    fn apply_exit(&mut self, exit: &ExitStatus) {
        self.state = ContainerState::Exited;
        self.exit_code = exit.exit_code;
        self.finished_at = crate::shim::time::parse_rfc3339_nanos(&exit.finished_at)
            .unwrap_or_else(crate::clock::now_nanos);
        self.reason = if exit.oom_killed {
            "OOMKilled"
        } else if exit.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .to_string();
        if self.started_at == 0 && self.reason != "OOMKilled" {
            // The init died before StartContainer released it: it never ran.
            self.reason = "StartError".to_string();
        }
    }
}

/// All containers of this node.
pub struct Containers {
    db: Arc<Db>,
    /// Records state changes that no request drives (exits), for the watchers too.
    ledger: Arc<Ledger>,
    /// `<state>/containers`: bundles.
    bundles_dir: PathBuf,
    /// `<root>/containers`: writable layers.
    layers_dir: PathBuf,
    /// Unique names (pod id + name + attempt) of containers being created.
    creating: Mutex<HashSet<String>>,
    /// Serialises state changes per container (start vs stop vs remove).
    locks: crate::locks::KeyedLocks,
    /// Where CDI device specs are read from, lowest priority first.
    cdi_spec_dirs: Vec<PathBuf>,
}

impl Containers {
    /// Open the store; must run inside the tokio runtime (it starts an exit watcher for
    /// every running container).
    pub fn open(root: &Path, state: &Path, db: Arc<Db>, events: Events) -> Result<Containers> {
        let bundles_dir = state.join("containers");
        let layers_dir = root.join("containers");
        for dir in [&bundles_dir, &layers_dir] {
            std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
        }
        let containers = Containers {
            ledger: Arc::new(Ledger {
                db: db.clone(),
                events,
                transitions: Mutex::new(()),
            }),
            db,
            bundles_dir,
            layers_dir,
            creating: Mutex::new(HashSet::new()),
            locks: Default::default(),
            cdi_spec_dirs: cdi::DEFAULT_SPEC_DIRS.iter().map(PathBuf::from).collect(),
        };
        containers.recover()?;
        Ok(containers)
    }

    /// Reads CDI specs from `dirs` (a later one wins) instead of the defaults.
    pub fn with_cdi_spec_dirs(mut self, dirs: Vec<PathBuf>) -> Containers {
        self.cdi_spec_dirs = dirs;
        self
    }

    /// Every container, its state brought up to date.
    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        self.db
            .list_containers()?
            .into_iter()
            .map(|c| self.refresh(c))
            .collect()
    }

    /// By full id or unique prefix, brought up to date.
    pub fn get(&self, id: &str) -> Result<ContainerRecord> {
        self.find(id)?.ok_or_else(|| Error::NotFound {
            what: format!("container {id:?}"),
        })
    }

    pub fn find(&self, id: &str) -> Result<Option<ContainerRecord>> {
        if id.is_empty() {
            return Err(Error::invalid("container_id", "empty"));
        }
        if let Some(exact) = self.db.get_container(id)? {
            return self.refresh(exact).map(Some);
        }
        let mut matches = self
            .db
            .list_containers()?
            .into_iter()
            .filter(|c| c.id.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some(one), None) => self.refresh(one).map(Some),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(Error::invalid(
                "container_id",
                format!("{id:?} matches more than one container"),
            )),
        }
    }

    /// The containers of one pod.
    pub fn of_pod(&self, pod_id: &str) -> Result<Vec<ContainerRecord>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|c| c.pod_id == pod_id)
            .collect())
    }

    /// The OCI spec written at create, as JSON (for verbose status).
    pub fn spec_json(&self, record: &ContainerRecord) -> Option<String> {
        std::fs::read_to_string(record.spec_file()).ok()
    }

    /// Bring a record up to date with its exit file (see [`Ledger::refresh`]).
    fn refresh(&self, record: ContainerRecord) -> Result<ContainerRecord> {
        self.ledger.refresh(record, false)
    }

    /// The lifecycle events (GetContainerEvents).
    pub fn events(&self) -> &Events {
        &self.ledger.events
    }

    /// Watch a running container's exit through its shim, so that the exit is recorded
    /// (and STOPPED published) when it happens, not when someone next asks.
    fn watch(&self, record: &ContainerRecord) {
        let ledger = self.ledger.clone();
        let (id, pod_dir) = (record.id.clone(), record.pod_dir.clone());
        tokio::spawn(async move {
            let shim = crate::shim_client::PodShim::new(&pod_dir);
            // Asked again only when the long wait itself timed out; an exit, or a shim
            // that is gone (or forgot it), ends the watch: the record says which.
            while let Err(crate::shim_client::ShimError::Timeout { .. }) =
                shim.wait(&id, WATCH_LIMIT).await
            {}
            match ledger.db.get_container(&id) {
                Ok(Some(record)) => {
                    if let Err(e) = ledger.refresh(record, true) {
                        tracing::warn!(container = %id, error = %e, "recording an exit");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(container = %id, error = %e, "recording an exit"),
            }
        });
    }

    /// At start-up: bring every record up to date and release bundles that no record
    /// owns (a create killed half-way).
    fn recover(&self) -> Result<()> {
        let records = self
            .db
            .list_containers()?
            .into_iter()
            .map(|c| self.ledger.refresh(c, true))
            .collect::<Result<Vec<_>>>()?;
        for running in records.iter().filter(|c| c.is_running()) {
            self.watch(running);
        }
        let known: HashSet<PathBuf> = records.iter().map(|c| c.bundle.clone()).collect();
        let known_layers: HashSet<PathBuf> = records.iter().map(|c| c.layer_dir.clone()).collect();
        let unowned = |dir: &Path, known: &HashSet<PathBuf>| -> Vec<PathBuf> {
            std::fs::read_dir(dir)
                .map(|e| e.flatten().map(|e| e.path()).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .filter(|p| !known.contains(p))
                .collect()
        };
        // A bundle without a record is a create killed half-way: its init may still wait
        // in the shim and its cgroup may exist. Released in the background (nothing can
        // name it), each with its writable layer.
        let orphans = unowned(&self.bundles_dir, &known);
        let orphan_layers: HashSet<PathBuf> = orphans
            .iter()
            .filter_map(|b| b.file_name().map(|n| self.layers_dir.join(n)))
            .collect();
        for bundle in orphans {
            let layer = bundle.file_name().map(|n| self.layers_dir.join(n));
            tokio::spawn(release_orphan(bundle, layer));
        }
        for path in unowned(&self.layers_dir, &known_layers) {
            if orphan_layers.contains(&path) {
                continue;
            }
            tracing::warn!(dir = %path.display(), "releasing a writable layer no record owns");
            if let Err(e) = remove::remove_dir(&path) {
                tracing::error!(dir = %path.display(), error = %e, "releasing");
            }
        }
        Ok(())
    }
}

/// What a CreateContainer is about to make, in the bundle before the cgroup and the init
/// ([`crate::intent`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ContainerIntent {
    /// The pod's state dir: its shim may hold the create's init.
    pub pod_dir: PathBuf,
    /// The container's cgroup.
    pub cgroup: String,
}

/// Releases what a create killed half-way left: the init the pod's shim holds, the
/// cgroup, the bundle and the writable layer. What fails stays for the next start-up.
async fn release_orphan(bundle: PathBuf, layer: Option<PathBuf>) {
    let id = bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tracing::warn!(container = %id, "releasing a container no record owns");
    if let Some(intent) = crate::intent::read::<ContainerIntent>(&bundle) {
        if crate::shim_client::is_alive(&intent.pod_dir) {
            let shim = crate::shim_client::PodShim::new(&intent.pod_dir);
            // Each may find nothing: the create may have died before the init was made.
            let _ = shim.kill(&id, libc::SIGKILL).await;
            let _ = shim.wait(&id, std::time::Duration::from_secs(5)).await;
            let _ = shim.forget(&id).await;
        }
        if let Err(e) = stop::release_cgroup(&intent.cgroup).await {
            tracing::error!(container = %id, error = %e, "releasing an unrecorded container's cgroup");
            return;
        }
    }
    for dir in std::iter::once(bundle).chain(layer) {
        if let Err(e) = remove::remove_dir(&dir) {
            tracing::error!(dir = %dir.display(), error = %e, "releasing");
        }
    }
}

/// How long one exit watch waits before asking again (the shim answers at the exit).
const WATCH_LIMIT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The shared part of [`Containers`] that watchers use: the store, the events, and the
/// lock that makes each exit recorded (and published) exactly once.
struct Ledger {
    db: Arc<Db>,
    events: Events,
    transitions: Mutex<()>,
}

impl Ledger {
    /// Bring a record up to date with its exit file: a container last known as created or
    /// running whose init has exited becomes Exited, the change is stored and STOPPED is
    /// published, once, whoever notices first. `deep` also treats a container whose shim
    /// is gone without an exit file as exited (code 255).
    fn refresh(&self, record: ContainerRecord, deep: bool) -> Result<ContainerRecord> {
        if !matches!(
            record.state,
            ContainerState::Created | ContainerState::Running
        ) {
            return Ok(record);
        }
        let exit = exit_file::read(&record.exit_file()).map_err(|e| {
            Error::Internal(format!("reading {}: {e}", record.exit_file().display()))
        })?;
        // Whether the shim still lives is asked only by the exit watchers and at start-up
        // (`deep`): a list of N running containers must not read /proc N times over.
        let shim_gone = deep && exit.is_none() && !crate::shim_client::is_alive(&record.pod_dir);
        if exit.is_none() && !shim_gone {
            return Ok(record);
        }
        let _transition = self.transitions.lock().unwrap_or_else(|p| p.into_inner());
        // Re-read under the lock: another refresh may have recorded it already.
        let Some(mut record) = self.db.get_container(&record.id)? else {
            return Ok(record);
        };
        if !matches!(
            record.state,
            ContainerState::Created | ContainerState::Running
        ) {
            return Ok(record);
        }
        match &exit {
            Some(exit) => record.apply_exit(exit),
            None => {
                // Nobody is left to record an exit: the shim and its children are gone.
                record.state = ContainerState::Exited;
                record.exit_code = 255;
                record.finished_at = crate::clock::now_nanos();
                record.reason = "Error".into();
                record.message = "the pod's shim exited without recording an exit".into();
            }
        }
        self.db.put_container(&record)?;
        self.events
            .publish(&record.id, &record.pod_id, ContainerEventKind::Stopped);
        Ok(record)
    }
}

/// A fresh container id: 64 hex digits, like every CRI runtime's.
fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}
