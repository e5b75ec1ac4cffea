//! The cgroup manager, cgroupfs driver: a pod's cgroup at kubelet's `cgroup_parent`, and
//! each container's beneath it.
//!
//! Three layouts, found once from `/proc/self/mountinfo` ([`mode`]):
//! - **Unified** (cgroup v2 at `/sys/fs/cgroup`): one tree. [`Cgroup::create`] enables the
//!   controllers we use in every ancestor's `cgroup.subtree_control`.
//! - **Legacy** (v1): one hierarchy per mounted controller, or group of co-mounted ones
//!   (`cpu,cpuacct`). Controllers that are not mounted are skipped.
//! - **Hybrid** (v1 controllers plus cgroup2 at `/sys/fs/cgroup/unified`): as Legacy, and the
//!   cgroup is also made in the cgroup2 tree and processes join it there. That tree holds
//!   only the controllers no v1 hierarchy took, often none or just hugetlb; hugetlb limits
//!   go there when v1 has no hugetlb, and `cgroup.kill` works there.
//!
//! [`Resources`] come in v1 terms and are translated for v2 as runc does (`resources.rs`,
//! pure and table-tested). A limit for a controller that no hierarchy offers is skipped,
//! with one warning per controller per process (see [`Cgroup::apply`]); a `unified` key
//! for one is refused, naming the field.
//!
//! Every call here is blocking file I/O on cgroupfs (and [`Cgroup::kill_all`] and
//! [`Cgroup::delete`] sleep briefly while waiting): call them from `spawn_blocking` in async
//! code.
//!
//! Why not the `cgroups-rs` crate: its v1/v2 choice is all or nothing (statfs of
//! `/sys/fs/cgroup`), so on a hybrid host it cannot reach hugetlb on the cgroup2 side, and
//! it creates a directory for every subsystem it knows rather than those mounted. What we
//! need is a few dozen reads and writes, each of which we want to name its path in its
//! error; so the file I/O is ours (`fs.rs`) and the tests drive it over tempdir fixtures.

pub mod devices;
mod error;
mod fs;
mod layout;
mod resources;
mod stats;
mod v1;
mod v2;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use error::CgroupError;
pub use resources::Resources;
pub use stats::{CpuStats, MemoryStats, PidsStats, Stats};

use layout::Layout;
use resources::{Absent, Target, Write};
/// The flat-keyed file and "unlimited" conventions, for the stats readers outside.
pub(crate) use stats::{keyed_value, V1_UNLIMITED};

pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// The parent of the cgroups of pods that name none (crictl without a cgroup_parent);
/// removed with the last cgroup in it.
pub const DEFAULT_PARENT: &str = "/corral";

/// How long [`Cgroup::kill_all`] keeps killing before it reports the cgroup busy.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times [`Cgroup::delete`] retries an `rmdir` that says EBUSY (processes that
/// were just killed may take a moment to leave), backing off from 1 ms to about 0.4 s in all.
const DELETE_RETRIES: u32 = 8;

/// Which cgroup layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupMode {
    /// v1 only.
    Legacy,
    /// v1 controllers, plus a cgroup2 mount (usually `/sys/fs/cgroup/unified`).
    Hybrid,
    /// cgroup2 only.
    Unified,
}

fn host_layout() -> &'static Arc<Layout> {
    static HOST: OnceLock<Arc<Layout>> = OnceLock::new();
    HOST.get_or_init(|| Arc::new(Layout::detect()))
}

/// Runs `log` the first time `key` is seen in this process: a host that lacks a controller
/// lacks it for every container, and one line says so.
fn warn_once(key: &str, log: impl FnOnce()) {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let first = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key.to_string());
    if first {
        log();
    }
}

/// The host's cgroup layout, detected on first use.
pub fn mode() -> CgroupMode {
    host_layout().mode
}

/// Validates a cgroupfs-driver cgroup path such as `/kubepods/burstable/pod<uid>`: absolute,
/// not the root, no empty, `.` or `..` components, letters, digits and `_ . - : @` only.
/// Errors name the field `linux.cgroup_parent`.
pub fn validate_path(path: &str) -> Result<()> {
    let bad = |reason| {
        Err(CgroupError::InvalidPath {
            path: path.to_string(),
            reason,
        })
    };
    let Some(rel) = path.strip_prefix('/') else {
        return bad("must be an absolute path");
    };
    if rel.is_empty() {
        return bad("must not be the root cgroup");
    }
    if path.len() > 4096 {
        return bad("is too long");
    }
    for comp in rel.split('/') {
        match comp {
            "" => return bad("has an empty component"),
            "." | ".." => return bad("must not contain . or .."),
            c if c.len() > 255 => return bad("has a component longer than 255 bytes"),
            c if !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-:@".contains(&b)) =>
            {
                return bad("may hold only letters, digits and _ . - : @")
            }
            _ => {}
        }
    }
    Ok(())
}

/// One cgroup, by its path relative to the cgroup roots, in every hierarchy of the host.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// Validated, absolute: `/kubepods/pod123`.
    path: String,
    layout: Arc<Layout>,
}

impl Cgroup {
    /// A handle on the cgroup at `path` (validated as [`validate_path`]); no I/O.
    pub fn new(path: &str) -> Result<Cgroup> {
        Self::with_layout(path, Arc::clone(host_layout()))
    }

    pub(crate) fn with_layout(path: &str, layout: Arc<Layout>) -> Result<Cgroup> {
        validate_path(path)?;
        Ok(Cgroup {
            path: path.to_string(),
            layout,
        })
    }

    /// A cgroup in a pure cgroup2 tree rooted at `root` (tests use a tempdir fixture).
    #[cfg(test)]
    pub(crate) fn with_root(path: &str, root: &Path) -> Result<Cgroup> {
        let mut layout = Layout::unified(root);
        layout.read_unified_controllers();
        Self::with_layout(path, Arc::new(layout))
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn mode(&self) -> CgroupMode {
        self.layout.mode
    }

    /// The path without its leading `/`, to join onto mount points.
    fn rel(&self) -> &str {
        &self.path[1..]
    }

    fn unified_dir(&self) -> Option<PathBuf> {
        self.layout.unified.as_ref().map(|u| u.join(self.rel()))
    }

    fn v1_dir(&self, controller: &str) -> Option<PathBuf> {
        self.layout.v1.get(controller).map(|m| m.join(self.rel()))
    }

    fn v1_mounts(&self) -> Vec<&Path> {
        self.layout.v1_mounts().into_iter().collect()
    }

    /// The cgroup's directory in every hierarchy it lives in.
    fn dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = match self.layout.mode {
            CgroupMode::Unified => Vec::new(),
            CgroupMode::Legacy | CgroupMode::Hybrid => self
                .v1_mounts()
                .iter()
                .map(|m| m.join(self.rel()))
                .collect(),
        };
        if self.layout.mode != CgroupMode::Legacy {
            out.extend(self.unified_dir());
        }
        out
    }

    /// The directory holding `controller`'s files for this cgroup, if any hierarchy has
    /// it (`"unified"` names the cgroup2 side of a hybrid host). No I/O.
    pub fn fs_path(&self, controller: &str) -> Option<PathBuf> {
        match self.layout.mode {
            CgroupMode::Unified => self.unified_dir(),
            CgroupMode::Legacy => self.v1_dir(controller),
            CgroupMode::Hybrid => self.v1_dir(controller).or_else(|| {
                (controller == "unified" || self.layout.unified_controllers.contains(controller))
                    .then(|| self.unified_dir())
                    .flatten()
            }),
        }
    }

    /// The `cgroup.procs` file of every hierarchy: writing a pid (or "0", the writer) into
    /// each puts a process wholly in the cgroup. No I/O.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// The file whose `oom_kill <n>` line counts the OOM kills in this cgroup:
    /// `memory.events` on cgroup2, `memory.oom_control` on a v1 memory hierarchy. No I/O.
    pub fn oom_events_file(&self) -> Option<PathBuf> {
        match self.v1_dir("memory") {
            Some(dir) if self.layout.mode != CgroupMode::Unified => {
                Some(dir.join("memory.oom_control"))
            }
            _ => self
                .unified_dir()
                .filter(|_| self.layout.mode != CgroupMode::Legacy)
                .map(|d| d.join("memory.events")),
        }
    }

    /// Removes the cgroup's directories that are empty, once, without waiting; for a shared
    /// parent that other cgroups may still use. Never an error.
    pub fn delete_if_unused(&self) {
        for dir in self.dirs() {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// Whether the cgroup's directory exists in any hierarchy.
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.exists())
    }

    /// Makes the cgroup (and missing parents) in every hierarchy; idempotent.
    pub fn create(&self) -> Result<()> {
        let rel = self.rel();
        match (self.layout.mode, &self.layout.unified) {
            (CgroupMode::Unified, Some(root)) => v2::create(root, rel),
            (CgroupMode::Unified, None) => Err(CgroupError::NoHierarchy),
            (CgroupMode::Legacy | CgroupMode::Hybrid, unified) => {
                let mounts = self.v1_mounts();
                if mounts.is_empty() && unified.is_none() {
                    return Err(CgroupError::NoHierarchy);
                }
                v1::create(&self.layout.v1, &mounts, rel)?;
                // The cgroup2 side of a hybrid host: controllers are enabled there only
                // when a limit needs one (`apply`).
                match (self.layout.mode, unified) {
                    (CgroupMode::Hybrid, Some(root)) => fs::mkdir_all(&root.join(rel)),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Writes the limits. Every value is checked, and every file located, before the first
    /// write. A limit for a controller this cgroup cannot have (not mounted, not offered
    /// on the cgroup2 side) or for a huge page size the host lacks is skipped with one
    /// warning per process, not an error: kubelet sends hugepage limits for every size it
    /// knows, on every host. `unified` keys are explicit requests for cgroup2 files, so
    /// one whose controller is missing is refused, naming the field.
    pub fn apply(&self, r: &Resources) -> Result<()> {
        if !self.exists() {
            return Err(self.not_found());
        }
        let plan = match self.layout.mode {
            CgroupMode::Unified => resources::plan_v2(r)?,
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                let swap_first = v1::swap_first(
                    self.v1_dir("memory").as_deref(),
                    r.memory_limit,
                    r.memory_swap_limit,
                );
                resources::plan_v1(r, self.layout.hugetlb_on_unified(), swap_first)?
            }
        };
        let located = self.locate(&plan)?;
        for (dir, w) in located.iter().zip(&plan) {
            let Some(dir) = dir else {
                continue;
            };
            let file = dir.join(&w.file);
            match fs::write(&file, &w.value) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => match w.absent {
                    Absent::Ignore => {}
                    Absent::Warn => warn_once(&w.file, || {
                        tracing::warn!(
                            cgroup = %self.path,
                            file = %w.file,
                            field = w.field,
                            "this host's kernel has no such file (a huge page size it lacks?); the limit is skipped"
                        )
                    }),
                    Absent::Fail => {
                        return Err(CgroupError::Unsupported {
                            file: w.file.clone(),
                            field: w.field,
                        })
                    }
                },
                // The kernel's own refusal of a value the checks let through (a cpuset
                // naming CPUs this host lacks, a quota the hierarchy forbids) is the
                // request's fault: name the field.
                Err(CgroupError::Io { source, .. })
                    if matches!(source.raw_os_error(), Some(libc::EINVAL | libc::ERANGE)) =>
                {
                    return Err(CgroupError::InvalidResource {
                        field: w.field,
                        reason: format!("the kernel refused {:?} in {}: {source}", w.value, w.file),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Applies the device rules (the OCI spec's `linux.resources.devices`, in order): to
    /// the v1 `devices` hierarchy where there is one, else as a BPF program on the cgroup2
    /// directory. A host with neither enforces nothing, and says so.
    pub fn apply_devices(&self, rules: &[oci_spec::runtime::LinuxDeviceCgroup]) -> Result<()> {
        if !self.exists() {
            return Err(self.not_found());
        }
        let v1 = self.v1_dir("devices");
        let v2 = self
            .unified_dir()
            .filter(|_| self.layout.mode != CgroupMode::Legacy);
        let target = match (&v1, &v2) {
            (Some(dir), _) => devices::Target::V1(dir),
            (None, Some(dir)) => devices::Target::V2(dir),
            (None, None) => {
                tracing::warn!(cgroup = %self.path, "no device controller: device rules not enforced");
                return Ok(());
            }
        };
        devices::apply(target, rules)
    }

    /// The directory each write goes to; None for a write to skip (its controller is not
    /// available for this cgroup). A `unified` key without its controller is an error.
    fn locate(&self, plan: &[Write]) -> Result<Vec<Option<PathBuf>>> {
        let needed: BTreeSet<&str> = plan
            .iter()
            .filter_map(|w| match &w.target {
                Target::Unified(c) if c != "cgroup" => Some(c.as_str()),
                _ => None,
            })
            .collect();
        let mut leaf_controllers = BTreeSet::new();
        if let (false, Some(root)) = (needed.is_empty(), &self.layout.unified) {
            if self.layout.mode == CgroupMode::Hybrid {
                let wanted: Vec<&str> = needed.iter().copied().collect();
                v2::enable_controllers(root, self.rel(), &wanted)?;
            }
            leaf_controllers = v2::controllers(&root.join(self.rel()))?;
        }
        let mut out = Vec::with_capacity(plan.len());
        for w in plan {
            let (controller, dir) = match &w.target {
                Target::V1(c) => (*c, self.v1_dir(c)),
                Target::Unified(c) => (
                    c.as_str(),
                    self.unified_dir()
                        .filter(|_| c == "cgroup" || leaf_controllers.contains(c)),
                ),
            };
            match dir {
                Some(dir) => out.push(Some(dir)),
                None if w.field == resources::F_UNIFIED => {
                    return Err(CgroupError::InvalidResource {
                        field: w.field,
                        reason: format!(
                            "{} needs the cgroup v2 controller {controller:?}, which is not available for this cgroup on this host",
                            w.file
                        ),
                    })
                }
                None => {
                    warn_once(controller, || {
                        tracing::warn!(
                            cgroup = %self.path,
                            controller,
                            field = w.field,
                            "the host offers no such cgroup controller; its limits are skipped"
                        )
                    });
                    out.push(None);
                }
            }
        }
        Ok(out)
    }

    /// Moves process `pid` (all its threads) into the cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        if pid <= 0 {
            return Err(CgroupError::InvalidResource {
                field: "pid",
                reason: format!("{pid} is not a process id"),
            });
        }
        let dirs = self.dirs();
        if dirs.is_empty() {
            return Err(CgroupError::NoHierarchy);
        }
        for dir in dirs {
            match fs::write(&dir.join("cgroup.procs"), &pid.to_string()) {
                Err(e) if e.is_not_found() => return Err(self.not_found()),
                other => other?,
            }
        }
        Ok(())
    }

    /// The processes in this cgroup (not its children), in any hierarchy; sorted. A cgroup
    /// that doesn't exist has none.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut all = BTreeSet::new();
        for dir in self.dirs() {
            all.extend(fs::read_pids(&dir.join("cgroup.procs"))?);
        }
        Ok(all.into_iter().collect())
    }

    /// The processes of this cgroup and all its descendants, in any hierarchy.
    fn subtree_pids(&self) -> Result<BTreeSet<i32>> {
        let mut all = BTreeSet::new();
        let mut todo = self.dirs();
        while let Some(dir) = todo.pop() {
            all.extend(fs::read_pids(&dir.join("cgroup.procs"))?);
            todo.extend(fs::subdirs(&dir)?);
        }
        Ok(all)
    }

    /// SIGKILLs every process of the cgroup and its descendants and waits until none is
    /// left (up to a few seconds, then `Busy`). Uses `cgroup.kill` where the cgroup2 side
    /// has it; otherwise, and to catch anything that joined only a v1 hierarchy, freezes
    /// (where a freezer is), kills each process, thaws, and repeats until empty. A cgroup
    /// that doesn't exist is already empty.
    pub fn kill_all(&self) -> Result<()> {
        if !self.exists() {
            return Ok(());
        }
        if let Some(dir) = self.unified_dir() {
            if dir.exists() {
                v2::cgroup_kill(&dir)?;
            }
        }
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        let deadline = Instant::now() + KILL_TIMEOUT;
        let mut pause = Duration::from_millis(1);
        loop {
            let pids = self.subtree_pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            if pids.contains(&me) {
                return Err(self.busy("the calling process is in it".to_string()));
            }
            if Instant::now() >= deadline {
                return Err(self.busy(format!("{} processes left after SIGKILL", pids.len())));
            }
            let frozen = self.freeze(true).unwrap_or_else(|e| {
                tracing::debug!(cgroup = %self.path, error = %e, "freeze before kill failed");
                false
            });
            // Listed again once frozen: nothing can fork in between.
            let pids = if frozen { self.subtree_pids()? } else { pids };
            for pid in pids {
                match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => tracing::debug!(pid, error = %e, "SIGKILL failed"),
                }
            }
            if frozen {
                self.freeze(false)?;
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Freezes or thaws the cgroup with whatever freezer it has; false if none.
    fn freeze(&self, frozen: bool) -> Result<bool> {
        match self.layout.mode {
            CgroupMode::Unified => match self.unified_dir() {
                Some(dir) => v2::freeze(&dir, frozen),
                None => Ok(false),
            },
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                if v1::freeze(self.v1_dir("freezer").as_deref(), frozen)? {
                    return Ok(true);
                }
                // No v1 freezer: a hybrid host's processes are on the cgroup2 side too.
                match (self.layout.mode, self.unified_dir()) {
                    (CgroupMode::Hybrid, Some(dir)) => v2::freeze(&dir, frozen),
                    _ => Ok(false),
                }
            }
        }
    }

    /// Removes the cgroup's directory in every hierarchy, and nothing else (never a parent).
    /// Idempotent. EBUSY (processes just killed still leaving) is retried briefly, then
    /// reported as `Busy`; child cgroups make it `Busy` too. Every hierarchy is tried even
    /// when one fails; the first error is returned.
    pub fn delete(&self) -> Result<()> {
        let mut first_err = None;
        for dir in self.dirs() {
            if let Err(e) = self.rmdir(&dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn rmdir(&self, dir: &Path) -> Result<()> {
        let mut pause = Duration::from_millis(1);
        for attempt in 0..=DELETE_RETRIES {
            let err = match std::fs::remove_dir(dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => e,
            };
            if err.raw_os_error() != Some(libc::EBUSY) {
                return Err(CgroupError::io("rmdir", dir)(err));
            }
            // Child cgroups don't go away by waiting.
            if !fs::subdirs(dir)?.is_empty() {
                break;
            }
            if attempt < DELETE_RETRIES {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
        Err(self.busy(format!(
            "{} still has processes or child cgroups",
            dir.display()
        )))
    }

    /// What the cgroup has used, from whichever controllers are there.
    pub fn stats(&self) -> Result<Stats> {
        if !self.exists() {
            return Err(self.not_found());
        }
        match self.layout.mode {
            CgroupMode::Unified => match self.unified_dir() {
                Some(dir) => v2::stats(&dir),
                None => Err(CgroupError::NoHierarchy),
            },
            CgroupMode::Legacy | CgroupMode::Hybrid => v1::stats(|c| self.v1_dir(c)),
        }
    }

    fn not_found(&self) -> CgroupError {
        CgroupError::NotFound {
            path: self.path.clone(),
        }
    }

    fn busy(&self, reason: String) -> CgroupError {
        CgroupError::Busy {
            path: self.path.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests;
