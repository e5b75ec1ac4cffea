//! CRI container config + image config + pod → the OCI runtime spec written to the bundle.
//!
//! The merge follows containerd's CRI plugin (and CRI-O where containerd is silent), so that
//! a bundle made here runs the same under runc: process args, env, cwd and user; the default
//! capability set with add/drop; the standard mounts, the pod's files, the requested binds;
//! devices and their cgroup rules; the pod's namespaces; masked and read-only paths.
//!
//! [`build`] reads the host (cgroup version, `cap_last_cap`, `/dev` for privileged
//! containers), the image's `/etc/passwd` and `/etc/group`, and stats mount and device
//! sources; the rest is pure. Seccomp and AppArmor profiles are not emitted yet (the
//! security work fills them in), nor `cgroupsPath`: corrald's cgroups module makes and
//! limits the container's cgroup itself, from the CRI resources; of `linux.resources` it
//! reads only `devices`, the device cgroup's rules (the rest is for the record).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use nix::sys::signal::Signal;
use oci_spec::runtime::{
    Capabilities, Capability, Linux, LinuxCapabilities, LinuxCpu, LinuxDevice, LinuxDeviceCgroup,
    LinuxDeviceType, LinuxHugepageLimit, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceType,
    LinuxPids, LinuxResources, Mount, Process, Root, Spec, User,
};

use super::config::{ContainerConfig, ImageInfo, Propagation, SecurityConfig};
use super::user;
use crate::cgroups::{CgroupMode, Resources};
use crate::error::{Error, Result};
use crate::sandbox::NamespaceMode;

/// What the pod gives its containers.
#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    pub pod_id: String,
    /// Bound on `/etc/hostname`; its first line is also the `HOSTNAME` env.
    pub hostname_file: PathBuf,
    pub hosts_file: PathBuf,
    pub resolv_conf: PathBuf,
    /// Bound on `/dev/shm`.
    pub shm_dir: PathBuf,
    /// The pinned namespaces; `None` for ipc/uts means the host's.
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    /// The pod's PID namespace, when the pod shares one (pid mode POD, with a pause).
    pub pidns: Option<PathBuf>,
    pub host_network: bool,
    /// The pod's pinned user namespace and its maps, when it has one.
    pub userns: Option<(PathBuf, crate::sandbox::UserNamespace)>,
}

pub struct SpecInput<'a> {
    pub config: &'a ContainerConfig,
    pub image: &'a ImageInfo,
    /// The image's layer dirs, topmost first: where `/etc/passwd` and `/etc/group` are read.
    pub rootfs_lower: &'a [PathBuf],
    pub pod: PodInfo,
    /// The init pid of the target container, for pid mode TARGET.
    pub target_pid: Option<i32>,
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's default set (runc's and Docker's too).
const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability by its kernel number (`CAP_CHOWN` is 0 … `CAP_CHECKPOINT_RESTORE` 40).
const CAPS_BY_NUMBER: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// The highest capability number we know; the fallback when the kernel does not say.
const LAST_KNOWN_CAP: u32 = 40;

/// containerd's default masked paths.
const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// containerd's default read-only paths.
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Device nodes every container may use, after a deny-all rule: what a containerd
/// container gets, which is runc's `AllowedDevices` (containerd's CRI spec itself has only
/// the deny-all; runc appends these to every container's rules). Not `/dev/console`
/// (c 5:1), which is in containerd's `WithDefaultUnixDevices` but not used by its CRI, nor
/// fuse (c 10:229). `(type, major, minor, access)`; `None` is a wildcard.
const DEFAULT_DEVICE_RULES: [(LinuxDeviceType, Option<i64>, Option<i64>, &str); 11] = [
    // mknod of any node is allowed; using it is not, unless allowed below.
    (LinuxDeviceType::C, None, None, "m"),
    (LinuxDeviceType::B, None, None, "m"),
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"), // null
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"), // zero
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"), // full
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"), // random
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"), // urandom
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"), // tty
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"), // ptmx
    (LinuxDeviceType::C, Some(136), None, "rwm"),  // pts/*
    // /dev/net/tun: no node is made, but runc keeps the rule for Docker's sake.
    (LinuxDeviceType::C, Some(10), Some(200), "rwm"),
];

/// Bounds on walking a device directory (a requested dir, or `/dev` for privileged).
const MAX_DEVICES: usize = 4096;
const MAX_DEVICE_DEPTH: usize = 8;

/// What the host contributes; detected by [`build`], given by tests.
#[derive(Debug, Clone, Default)]
struct Host {
    /// `/sys/fs/cgroup` is a cgroup2 mount.
    cgroup_v2: bool,
    cap_last_cap: u32,
    /// The host's device nodes, read only for privileged containers.
    devices: Vec<LinuxDevice>,
}

impl Host {
    fn detect(privileged: bool) -> Host {
        let devices = if privileged {
            let mut out = Vec::new();
            if let Err(e) = walk_devices(Path::new("/dev"), Path::new("/dev"), 0, true, &mut out) {
                tracing::warn!(error = %e, "reading the host's /dev for a privileged container");
            }
            out
        } else {
            Vec::new()
        };
        Host {
            cgroup_v2: crate::cgroups::mode() == CgroupMode::Unified,
            cap_last_cap: cap_last_cap(),
            devices,
        }
    }
}

fn cap_last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map_or(LAST_KNOWN_CAP, |n| n.min(LAST_KNOWN_CAP))
}

/// The OCI spec for a container. User errors are InvalidArgument naming the CRI field.
pub fn build(input: &SpecInput<'_>) -> Result<Spec> {
    let host = Host::detect(input.config.security.privileged);
    build_with(input, &host)
}

fn build_with(input: &SpecInput<'_>, host: &Host) -> Result<Spec> {
    let config = input.config;
    let sec = &config.security;

    let args = args(config, input.image)?;
    let resolved = user::resolve(sec, &input.image.user, input.rootfs_lower)?;
    let env = env(config, input.image, &input.pod, resolved.home.as_deref());
    let caps = capabilities(sec, host.cap_last_cap)?;
    let seccomp = super::seccomp::profile(sec, &caps)?;
    let mut process = Process::default();
    process
        .set_terminal(Some(config.tty))
        .set_console_size(None)
        .set_user(oci_user(resolved))
        .set_args(Some(args))
        .set_command_line(None)
        .set_env(Some(env))
        .set_cwd(cwd(config, input.image)?)
        .set_capabilities(Some(caps))
        // The runtime's own rlimits are kept, as containerd does.
        .set_rlimits(None)
        .set_no_new_privileges(Some(sec.no_new_privs))
        .set_apparmor_profile(super::apparmor::profile(&sec.apparmor)?)
        .set_oom_score_adj(config.oom_score_adj)
        .set_selinux_label(None)
        .set_io_priority(None)
        .set_scheduler(None)
        .set_exec_cpu_affinity(None);

    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"))
        .set_readonly(Some(sec.readonly_rootfs));

    let (mounts, rootfs_propagation) = mounts(config, &input.pod, host)?;
    let (devices, device_rules) = devices(config, host)?;

    let (masked, readonly) = if sec.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            sec.masked_paths
                .clone()
                .unwrap_or_else(|| MASKED_PATHS.iter().map(|s| s.to_string()).collect()),
            sec.readonly_paths
                .clone()
                .unwrap_or_else(|| READONLY_PATHS.iter().map(|s| s.to_string()).collect()),
        )
    };

    let mut linux = Linux::default();
    // The pod's maps, for the executor (the rootfs's owner) and for readers of the spec;
    // the namespace itself is joined by path.
    let (uid_mappings, gid_mappings) = match &input.pod.userns {
        Some((_, ns)) => (Some(oci_maps(&ns.uids)?), Some(oci_maps(&ns.gids)?)),
        None => (None, None),
    };
    linux
        .set_uid_mappings(uid_mappings)
        .set_gid_mappings(gid_mappings)
        // Namespaced sysctls are the pod's, applied in its pinned namespaces.
        .set_sysctl(None)
        .set_resources(Some(resources(config.resources.as_ref(), device_rules)?))
        .set_cgroups_path(None)
        .set_namespaces(Some(namespaces(sec, &input.pod, input.target_pid, host)?))
        .set_devices((!devices.is_empty()).then_some(devices))
        .set_seccomp(seccomp)
        .set_rootfs_propagation(rootfs_propagation.map(str::to_string))
        .set_masked_paths(Some(masked))
        .set_readonly_paths(Some(readonly))
        .set_mount_label(None)
        .set_intel_rdt(None)
        .set_personality(None)
        .set_time_offsets(None);

    let mut spec = Spec::default();
    let mut mounts = mounts;
    if input.pod.userns.is_some() {
        mark_idmapped_binds(&mut mounts);
    }
    spec.set_version(oci_spec::runtime::version())
        .set_root(Some(root))
        .set_mounts(Some(mounts))
        .set_process(Some(process))
        // UTS is the pod's: its hostname is set once, when the pod's namespace is made.
        .set_hostname(None)
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations(Some(annotations(input)))
        .set_linux(Some(linux))
        .set_solaris(None)
        .set_windows(None)
        .set_vm(None)
        .set_uid_mappings(None)
        .set_gid_mappings(None);
    Ok(spec)
}

/// The signal StopContainer sends first: the image's `StopSignal` (`SIGTERM`, `TERM`,
/// `15`), else SIGTERM. Real-time signals (`SIGRTMIN+3`) have no [`Signal`] and fall back
/// to SIGTERM too, with a warning.
pub fn stop_signal(image: &ImageInfo) -> Signal {
    let Some(s) = image
        .stop_signal
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Signal::SIGTERM;
    };
    parse_signal(s).unwrap_or_else(|| {
        tracing::warn!(stop_signal = s, image = %image.id, "unsupported stop signal; using SIGTERM");
        Signal::SIGTERM
    })
}

fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).ok()
}

/// Kubernetes' command/args over the image's Entrypoint/Cmd.
fn args(config: &ContainerConfig, image: &ImageInfo) -> Result<Vec<String>> {
    let args: Vec<String> = if config.command.is_empty() {
        let tail = if config.args.is_empty() {
            &image.cmd
        } else {
            &config.args
        };
        image.entrypoint.iter().chain(tail).cloned().collect()
    } else {
        config.command.iter().chain(&config.args).cloned().collect()
    };
    if args.is_empty() {
        return Err(Error::invalid(
            "config.command",
            "no command specified: neither the container config nor the image gives one",
        ));
    }
    Ok(args)
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Sets `entry` (`KEY=value`), replacing an earlier one with the same key in place.
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = env_key(&entry);
    match env.iter_mut().find(|e| env_key(e) == key) {
        Some(old) => *old = entry,
        None => env.push(entry),
    }
}

/// The first line of the pod's hostname file, when it can be read.
fn pod_hostname(pod: &PodInfo) -> Option<String> {
    match std::fs::read_to_string(&pod.hostname_file) {
        Ok(s) => s
            .lines()
            .next()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string),
        Err(e) => {
            tracing::debug!(file = %pod.hostname_file.display(), error = %e, "no pod hostname for HOSTNAME");
            None
        }
    }
}

/// Default PATH (when nobody gives one), the image's env, the config's (a later key
/// replaces an earlier one in place), then, unless set: HOSTNAME (as containerd adds it),
/// HOME (the user's from the image's passwd, else `/`, as runc sets it), and with a tty
/// TERM.
fn env(
    config: &ContainerConfig,
    image: &ImageInfo,
    pod: &PodInfo,
    home: Option<&str>,
) -> Vec<String> {
    let has_path = image.env.iter().any(|e| env_key(e) == "PATH")
        || config.envs.iter().any(|(k, _)| k == "PATH");
    let mut env = Vec::with_capacity(image.env.len() + config.envs.len() + 3);
    if !has_path {
        env.push(DEFAULT_PATH.to_string());
    }
    for e in &image.env {
        set_env(&mut env, e.clone());
    }
    for (k, v) in &config.envs {
        set_env(&mut env, format!("{k}={v}"));
    }
    let is_set = |env: &[String], key: &str| env.iter().any(|e| env_key(e) == key);
    if !is_set(&env, "HOSTNAME") {
        if let Some(h) = pod_hostname(pod) {
            env.push(format!("HOSTNAME={h}"));
        }
    }
    if !is_set(&env, "HOME") {
        env.push(format!("HOME={}", home.unwrap_or("/")));
    }
    if config.tty && !is_set(&env, "TERM") {
        env.push("TERM=xterm".to_string());
    }
    env
}

fn cwd(config: &ContainerConfig, image: &ImageInfo) -> Result<PathBuf> {
    let (dir, field) = if !config.working_dir.is_empty() {
        (config.working_dir.as_str(), "config.working_dir")
    } else if !image.working_dir.is_empty() {
        (image.working_dir.as_str(), "image config WorkingDir")
    } else {
        ("/", "")
    };
    if !dir.starts_with('/') {
        return Err(Error::invalid(
            field,
            format!("{dir:?} is not an absolute path"),
        ));
    }
    Ok(PathBuf::from(dir))
}

fn oci_user(resolved: user::ResolvedUser) -> User {
    let mut u = User::default();
    u.set_uid(resolved.uid)
        .set_gid(resolved.gid)
        .set_umask(None)
        .set_additional_gids(
            (!resolved.additional_gids.is_empty()).then_some(resolved.additional_gids),
        )
        .set_username(resolved.username);
    u
}

fn cap_number(c: Capability) -> Option<u32> {
    CAPS_BY_NUMBER
        .iter()
        .position(|k| *k == c)
        .and_then(|n| u32::try_from(n).ok())
}

/// A capability name as CRI gives it: any case, with or without `CAP_`.
fn parse_cap(name: &str) -> Option<Capability> {
    serde_json::from_value(serde_json::Value::String(name.trim().to_string())).ok()
}

/// containerd's rules: privileged gets every capability the kernel has; else the default
/// set, then add ALL, drop ALL, then the named adds, then the named drops. Bounding,
/// effective and permitted get the result; inheritable and ambient stay empty.
fn capabilities(sec: &SecurityConfig, last_cap: u32) -> Result<LinuxCapabilities> {
    const F_ADD: &str = "config.linux.security_context.capabilities.add_capabilities";
    let available = |c: &Capability| cap_number(*c).is_some_and(|n| n <= last_cap);
    let all: Vec<Capability> = CAPS_BY_NUMBER.iter().copied().filter(available).collect();
    let is_all = |s: &String| s.trim().eq_ignore_ascii_case("ALL");

    let set: Vec<Capability> = if sec.privileged {
        all
    } else {
        let mut set: Vec<Capability> = DEFAULT_CAPS.iter().copied().filter(available).collect();
        if sec.add_capabilities.iter().any(is_all) {
            set = all;
        }
        if sec.drop_capabilities.iter().any(is_all) {
            set.clear();
        }
        for name in sec.add_capabilities.iter().filter(|s| !is_all(s)) {
            let Some(cap) = parse_cap(name) else {
                return Err(Error::invalid(
                    F_ADD,
                    format!("unknown capability {name:?}"),
                ));
            };
            if !available(&cap) {
                tracing::warn!(capability = %name, last_cap, "capability unknown to this kernel; not added");
                continue;
            }
            if !set.contains(&cap) {
                set.push(cap);
            }
        }
        for name in sec.drop_capabilities.iter().filter(|s| !is_all(s)) {
            match parse_cap(name) {
                Some(cap) => set.retain(|c| *c != cap),
                // Dropping what nobody can have is harmless (containerd and CRI-O accept
                // it too); said loudly since it may be a typo.
                None => tracing::warn!(capability = %name, "dropping an unknown capability"),
            }
        }
        set
    };
    let caps: Capabilities = set.into_iter().collect();
    let mut lc = LinuxCapabilities::default();
    lc.set_bounding(Some(caps.clone()))
        .set_effective(Some(caps.clone()))
        .set_permitted(Some(caps))
        .set_inheritable(Some(Capabilities::new()))
        .set_ambient(Some(Capabilities::new()));
    Ok(lc)
}

fn mount(dest: &str, typ: &str, source: impl Into<PathBuf>, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest))
        .set_typ(Some(typ.to_string()))
        .set_source(Some(source.into()))
        .set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

/// The standard mounts, then the pod's shm and files.
fn default_mounts(sec: &SecurityConfig, pod: &PodInfo, host: &Host) -> Vec<Mount> {
    let sys_mode = if sec.privileged { "rw" } else { "ro" };
    let cgroup_type = if host.cgroup_v2 { "cgroup2" } else { "cgroup" };
    let files_mode = if sec.readonly_rootfs { "ro" } else { "rw" };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
        mount(
            "/sys/fs/cgroup",
            cgroup_type,
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_mode],
        ),
        mount(
            "/dev/shm",
            "bind",
            &pod.shm_dir,
            &["rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"],
        ),
        mount(
            "/etc/hostname",
            "bind",
            &pod.hostname_file,
            &["rbind", "rprivate", files_mode],
        ),
        mount(
            "/etc/hosts",
            "bind",
            &pod.hosts_file,
            &["rbind", "rprivate", files_mode],
        ),
        mount(
            "/etc/resolv.conf",
            "bind",
            &pod.resolv_conf,
            &["rbind", "rprivate", files_mode],
        ),
    ]
}

/// An absolute container path, `.` and duplicate slashes removed; `..` refused.
fn clean_container_path(p: &str, field: &str) -> Result<PathBuf> {
    if !p.starts_with('/') {
        return Err(Error::invalid(
            field,
            format!("{p:?} is not an absolute path"),
        ));
    }
    let path = Path::new(p);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(Error::invalid(field, format!("{p:?} contains \"..\"")));
    }
    Ok(path.components().collect())
}

/// An image volume: the image's layers as a read-only overlay (a read-only bind when it
/// has one layer: overlayfs wants two lower dirs without an upper one).
fn image_volume(dest: PathBuf, volume: &super::config::ImageVolume, field: &str) -> Result<Mount> {
    let mut mount = Mount::default();
    mount.set_destination(dest);
    match volume.layers.as_slice() {
        [] => {
            return Err(Error::invalid(
                field,
                format!("image {:?} has no layers", volume.reference),
            ))
        }
        [one] => {
            mount
                .set_typ(Some("bind".to_string()))
                .set_source(Some(one.clone()))
                .set_options(Some(vec!["rbind".into(), "rprivate".into(), "ro".into()]));
        }
        many => {
            let lower: Vec<String> = many.iter().map(|l| l.display().to_string()).collect();
            mount
                .set_typ(Some("overlay".to_string()))
                .set_source(Some(PathBuf::from("overlay")))
                .set_options(Some(vec![
                    "ro".into(),
                    format!("lowerdir={}", lower.join(":")),
                ]));
        }
    }
    Ok(mount)
}

/// The mounts: defaults (minus those a requested mount replaces), then the requested binds
/// sorted by depth (so a parent never hides a child). Also the rootfs propagation the
/// requested propagations need, as containerd sets it.
fn mounts(
    config: &ContainerConfig,
    pod: &PodInfo,
    host: &Host,
) -> Result<(Vec<Mount>, Option<&'static str>)> {
    let mut requested = Vec::with_capacity(config.mounts.len());
    let mut propagation = None;
    for (i, m) in config.mounts.iter().enumerate() {
        let f_host = format!("config.mounts[{i}].host_path");
        let f_container = format!("config.mounts[{i}].container_path");
        let dest = clean_container_path(&m.container_path, &f_container)?;
        if let Some(volume) = &m.image {
            requested.push(image_volume(
                dest,
                volume,
                &format!("config.mounts[{i}].image"),
            )?);
            continue;
        }
        if m.host_path.is_empty() || !m.host_path.starts_with('/') {
            return Err(Error::invalid(
                f_host,
                format!("{:?} is not an absolute path", m.host_path),
            ));
        }
        // Symlinks are resolved here, on the host, as containerd does: the bind then
        // names the real file.
        let source = std::fs::canonicalize(&m.host_path).map_err(|e| {
            let why = if e.kind() == io::ErrorKind::NotFound {
                "does not exist".to_string()
            } else {
                e.to_string()
            };
            Error::invalid(f_host.clone(), format!("{:?}: {why}", m.host_path))
        })?;
        let prop = match m.propagation {
            Propagation::Private => "rprivate",
            Propagation::HostToContainer => {
                propagation = propagation.or(Some("rslave"));
                "rslave"
            }
            Propagation::Bidirectional => {
                propagation = Some("rshared");
                "rshared"
            }
        };
        let mode = if m.readonly { "ro" } else { "rw" };
        let mut options = vec!["rbind".to_string(), prop.into(), mode.into()];
        if m.recursive_readonly {
            options.push("rro".into());
        }
        let mut mount = Mount::default();
        mount
            .set_destination(dest)
            .set_typ(Some("bind".to_string()))
            .set_source(Some(source))
            .set_options(Some(options));
        requested.push(mount);
    }
    // Stable: equal depths keep the request's order.
    requested.sort_by_key(|m| m.destination().components().count());

    let taken: HashSet<&Path> = requested
        .iter()
        .map(|m| m.destination().as_path())
        .collect();
    let dev_taken = taken.contains(Path::new("/dev"));
    let mut all: Vec<Mount> = default_mounts(&config.security, pod, host)
        .into_iter()
        .filter(|m| {
            let d = m.destination().as_path();
            !(taken.contains(d) || (dev_taken && d.starts_with("/dev")))
        })
        .collect();
    all.extend(requested);
    Ok((all, propagation))
}

fn allow_rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(true)
        .set_typ(Some(typ))
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_string()));
    r
}

/// The device at `host` (symlinks followed), made visible at `container`; `None` when it
/// is not a character or block device.
fn device_at(host: &Path, container: &Path, meta: &std::fs::Metadata) -> Option<LinuxDevice> {
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let rdev = meta.rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let mut d = LinuxDevice::default();
    d.set_path(container.to_path_buf())
        .set_typ(typ)
        .set_major(i64::try_from(major).ok()?)
        .set_minor(i64::try_from(minor).ok()?)
        .set_file_mode(Some(meta.mode() & 0o777))
        .set_uid(Some(meta.uid()))
        .set_gid(Some(meta.gid()));
    tracing::trace!(host = %host.display(), "device");
    Some(d)
}

/// The device nodes under `dir` (not following symlinks), as runc's `HostDevices` walks
/// them, at most [`MAX_DEVICES`] and [`MAX_DEVICE_DEPTH`] deep. `skip_special` leaves out
/// what the container gets its own of (`pts`, `shm`, `mqueue`, `console`, and `ptmx`, which
/// is the new devpts instance's, as runc skips it).
fn walk_devices(
    dir: &Path,
    container_dir: &Path,
    depth: usize,
    skip_special: bool,
    out: &mut Vec<LinuxDevice>,
) -> io::Result<()> {
    if depth > MAX_DEVICE_DEPTH {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        if out.len() >= MAX_DEVICES {
            tracing::warn!(dir = %dir.display(), "too many devices; the rest are left out");
            return Ok(());
        }
        let entry = entry?;
        let name = entry.file_name();
        let path = entry.path();
        let target = container_dir.join(&name);
        // lstat: a symlink is neither walked nor taken.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            let special = matches!(
                name.to_str(),
                Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
            );
            if !(skip_special && special) {
                // An unreadable subdirectory loses its devices, not the others'.
                if let Err(e) = walk_devices(&path, &target, depth + 1, skip_special, out) {
                    tracing::debug!(dir = %path.display(), error = %e, "skipping a device dir");
                }
            }
        } else if !(skip_special && (name == "console" || name == "ptmx")) {
            if let Some(d) = device_at(&path, &target, &meta) {
                out.push(d);
            }
        }
    }
    Ok(())
}

fn valid_permissions(p: &str) -> bool {
    let mut seen = BTreeSet::new();
    p.chars()
        .all(|c| matches!(c, 'r' | 'w' | 'm') && seen.insert(c))
}

/// The requested devices (and, privileged, the host's) and the device cgroup rules: deny
/// all, then runc's defaults and the requested ones with their permissions; privileged:
/// allow all.
fn devices(
    config: &ContainerConfig,
    host: &Host,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>)> {
    let mut devices: Vec<LinuxDevice> = Vec::new();
    let mut rules = Vec::new();
    for (i, d) in config.devices.iter().enumerate() {
        let f_host = format!("config.devices[{i}].host_path");
        if !d.host_path.starts_with('/') {
            return Err(Error::invalid(
                f_host,
                format!("{:?} is not an absolute path", d.host_path),
            ));
        }
        let container = if d.container_path.is_empty() {
            &d.host_path
        } else {
            &d.container_path
        };
        let container =
            clean_container_path(container, &format!("config.devices[{i}].container_path"))?;
        let permissions = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        if !valid_permissions(permissions) {
            return Err(Error::invalid(
                format!("config.devices[{i}].permissions"),
                format!("{permissions:?} is not some of \"rwm\""),
            ));
        }
        let host_path = Path::new(&d.host_path);
        let meta = std::fs::metadata(host_path).map_err(|e| {
            let why = if e.kind() == io::ErrorKind::NotFound {
                "does not exist".to_string()
            } else {
                e.to_string()
            };
            Error::invalid(f_host.clone(), format!("{:?}: {why}", d.host_path))
        })?;
        let mut found = Vec::new();
        if meta.is_dir() {
            walk_devices(host_path, &container, 0, false, &mut found)
                .map_err(|e| Error::invalid(f_host.clone(), format!("{:?}: {e}", d.host_path)))?;
        } else if let Some(dev) = device_at(host_path, &container, &meta) {
            found.push(dev);
        } else {
            return Err(Error::invalid(
                f_host,
                format!("{:?} is not a device", d.host_path),
            ));
        }
        for dev in found {
            rules.push(allow_rule(
                dev.typ(),
                Some(dev.major()),
                Some(dev.minor()),
                permissions,
            ));
            devices.retain(|old| old.path() != dev.path());
            devices.push(dev);
        }
    }

    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all
        .set_allow(false)
        .set_access(Some("rwm".to_string()));
    if config.security.privileged {
        // The host's devices first; a requested one at the same path wins.
        let requested: HashSet<PathBuf> = devices.iter().map(|d| d.path().clone()).collect();
        let mut all: Vec<LinuxDevice> = host
            .devices
            .iter()
            .filter(|d| !requested.contains(d.path()))
            .cloned()
            .collect();
        all.extend(devices);
        return Ok((all, vec![allow_rule(LinuxDeviceType::A, None, None, "rwm")]));
    }
    let mut all_rules = vec![deny_all];
    all_rules.extend(
        DEFAULT_DEVICE_RULES
            .iter()
            .map(|(t, major, minor, access)| allow_rule(*t, *major, *minor, access)),
    );
    all_rules.extend(rules);
    Ok((devices, all_rules))
}

fn oci_maps(maps: &[crate::sandbox::IdMapping]) -> Result<Vec<oci_spec::runtime::LinuxIdMapping>> {
    maps.iter()
        .map(|m| {
            oci_spec::runtime::LinuxIdMappingBuilder::default()
                .container_id(m.container_id)
                .host_id(m.host_id)
                .size(m.length)
                .build()
                .map_err(|e| Error::Internal(format!("id mapping: {e}")))
        })
        .collect()
}

/// In a pod with a user namespace every bind mount is idmapped with the pod's maps (the
/// executor does it; runc's option name): the host's files keep their owners inside.
pub(super) fn mark_idmapped_binds(mounts: &mut [Mount]) {
    for m in mounts {
        let mut options = m.options().clone().unwrap_or_default();
        let bind = m.typ().as_deref() == Some("bind")
            || options.iter().any(|o| o == "bind" || o == "rbind");
        if bind && !options.iter().any(|o| o == "idmap" || o == "ridmap") {
            options.push("idmap".into());
            m.set_options(Some(options));
        }
    }
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ).set_path(path);
    ns
}

/// A new mount namespace; the pod's network, IPC and UTS (the host's when the pod has
/// none); PID as the container asks; a new cgroup namespace on cgroup v2 hosts unless
/// privileged (containerd: on v1 a cgroup namespace would hide nothing useful, and
/// privileged containers see the host's tree).
fn namespaces(
    sec: &SecurityConfig,
    pod: &PodInfo,
    target_pid: Option<i32>,
    host: &Host,
) -> Result<Vec<LinuxNamespace>> {
    let mut out = vec![namespace(LinuxNamespaceType::Mount, None)];
    if let Some((path, _)) = &pod.userns {
        out.push(namespace(LinuxNamespaceType::User, Some(path.clone())));
    }
    match (&pod.netns, pod.host_network) {
        (_, true) => {}
        (Some(path), false) => out.push(namespace(LinuxNamespaceType::Network, Some(path.clone()))),
        (None, false) => {
            return Err(Error::FailedPrecondition(format!(
                "pod {} has no network namespace",
                pod.pod_id
            )))
        }
    }
    if let Some(path) = &pod.ipcns {
        out.push(namespace(LinuxNamespaceType::Ipc, Some(path.clone())));
    }
    if let Some(path) = &pod.utsns {
        out.push(namespace(LinuxNamespaceType::Uts, Some(path.clone())));
    }
    // CRI's default pid mode is POD.
    match sec.pid.unwrap_or(NamespaceMode::Pod) {
        // A pod that does not share its PID namespace gives each container its own.
        NamespaceMode::Pod => out.push(namespace(LinuxNamespaceType::Pid, pod.pidns.clone())),
        NamespaceMode::Container => out.push(namespace(LinuxNamespaceType::Pid, None)),
        NamespaceMode::Node => {}
        NamespaceMode::Target => {
            let Some(pid) = target_pid else {
                return Err(Error::invalid(
                    "config.linux.security_context.namespace_options.target_id",
                    "pid mode TARGET needs a running target container",
                ));
            };
            out.push(namespace(
                LinuxNamespaceType::Pid,
                Some(PathBuf::from(format!("/proc/{pid}/ns/pid"))),
            ));
        }
    }
    if host.cgroup_v2 && !sec.privileged {
        out.push(namespace(LinuxNamespaceType::Cgroup, None));
    }
    Ok(out)
}

/// `linux.resources` from the requested limits, for the record (see the module doc).
pub(super) fn resources(
    r: Option<&Resources>,
    devices: Vec<LinuxDeviceCgroup>,
) -> Result<LinuxResources> {
    let mut out = LinuxResources::default();
    out.set_devices(Some(devices));
    let Some(r) = r else {
        return Ok(out);
    };
    if r.cpu_shares.is_some()
        || r.cpu_quota.is_some()
        || r.cpu_period.is_some()
        || r.cpuset_cpus.is_some()
        || r.cpuset_mems.is_some()
    {
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(r.cpu_shares)
            .set_quota(r.cpu_quota)
            .set_period(r.cpu_period)
            .set_cpus(r.cpuset_cpus.clone())
            .set_mems(r.cpuset_mems.clone());
        out.set_cpu(Some(cpu));
    }
    if r.memory_limit.is_some() || r.memory_swap_limit.is_some() {
        // LinuxMemory has no setters, only a builder (which cannot fail here: every field
        // has a default).
        let mut b = LinuxMemoryBuilder::default();
        if let Some(limit) = r.memory_limit {
            b = b.limit(limit);
        }
        if let Some(swap) = r.memory_swap_limit {
            b = b.swap(swap);
        }
        let mem = b
            .build()
            .map_err(|e| Error::Internal(format!("OCI memory resources: {e}")))?;
        out.set_memory(Some(mem));
    }
    if let Some(limit) = r.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        out.set_pids(Some(pids));
    }
    if !r.hugepage_limits.is_empty() {
        let limits = r
            .hugepage_limits
            .iter()
            .map(|(size, limit)| {
                let mut h = LinuxHugepageLimit::default();
                h.set_page_size(size.clone())
                    .set_limit(i64::try_from(*limit).unwrap_or(i64::MAX));
                h
            })
            .collect();
        out.set_hugepage_limits(Some(limits));
    }
    if !r.unified.is_empty() {
        out.set_unified(Some(
            r.unified
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
    }
    Ok(out)
}

fn annotations(input: &SpecInput<'_>) -> HashMap<String, String> {
    let mut a: HashMap<String, String> = input
        .config
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let image_name = if input.image.reference.is_empty() {
        &input.config.image
    } else {
        &input.image.reference
    };
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.sandbox-id", input.pod.pod_id.as_str()),
        (
            "io.kubernetes.cri.container-name",
            input.config.name.as_str(),
        ),
        ("io.kubernetes.cri.image-name", image_name.as_str()),
    ] {
        a.insert(k.to_string(), v.to_string());
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::config::{Device, Mount as CriMount};
    use crate::error::ErrorKind;

    struct Fixture {
        dir: tempfile::TempDir,
        config: ContainerConfig,
        image: ImageInfo,
        layers: Vec<PathBuf>,
        pod: PodInfo,
        target_pid: Option<i32>,
        host: Host,
    }

    fn tempdir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(parent) {
                panic!("mkdir {}: {e}", parent.display());
            }
        }
        if let Err(e) = std::fs::write(path, text) {
            panic!("write {}: {e}", path.display());
        }
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempdir();
            let layer = dir.path().join("layer0");
            write(
                &layer.join("etc/passwd"),
                "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
            );
            write(&layer.join("etc/group"), "root:x:0:\nwheel:x:10:root\n");
            let pod_dir = dir.path().join("pod");
            write(&pod_dir.join("hostname"), "mypod\n");
            write(&pod_dir.join("hosts"), "");
            write(&pod_dir.join("resolv.conf"), "");
            let pod = PodInfo {
                pod_id: "pod123".into(),
                hostname_file: pod_dir.join("hostname"),
                hosts_file: pod_dir.join("hosts"),
                resolv_conf: pod_dir.join("resolv.conf"),
                shm_dir: pod_dir.join("shm"),
                netns: Some(pod_dir.join("net")),
                ipcns: Some(pod_dir.join("ipc")),
                utsns: Some(pod_dir.join("uts")),
                pidns: None,
                host_network: false,
                userns: None,
            };
            Fixture {
                config: ContainerConfig {
                    name: "app".into(),
                    image: "busybox".into(),
                    ..Default::default()
                },
                image: ImageInfo {
                    id: "sha256:abc".into(),
                    reference: "docker.io/library/busybox@sha256:def".into(),
                    cmd: vec!["sh".into()],
                    ..Default::default()
                },
                layers: vec![layer],
                pod,
                target_pid: None,
                host: Host {
                    cgroup_v2: true,
                    cap_last_cap: 40,
                    devices: Vec::new(),
                },
                dir,
            }
        }

        fn build(&self) -> Result<Spec> {
            build_with(
                &SpecInput {
                    config: &self.config,
                    image: &self.image,
                    rootfs_lower: &self.layers,
                    pod: self.pod.clone(),
                    target_pid: self.target_pid,
                },
                &self.host,
            )
        }

        fn spec(&self) -> Spec {
            match self.build() {
                Ok(s) => s,
                Err(e) => panic!("build: {e}"),
            }
        }

        fn invalid(&self) -> String {
            match self.build() {
                Err(e) => match e.kind() {
                    ErrorKind::InvalidArgument { field } => field,
                    other => panic!("want InvalidArgument, got {other:?}: {e}"),
                },
                Ok(_) => panic!("want an error"),
            }
        }
    }

    fn process(s: &Spec) -> &Process {
        match s.process() {
            Some(p) => p,
            None => panic!("no process"),
        }
    }

    fn linux(s: &Spec) -> &Linux {
        match s.linux() {
            Some(l) => l,
            None => panic!("no linux"),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_and_args_merge() {
        // (entrypoint, cmd, command, args) → process args
        type Case<'a> = (
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            (&["/ep"], &["c1"], &[], &[], &["/ep", "c1"]),
            (&["/ep"], &["c1"], &[], &["a1"], &["/ep", "a1"]),
            (&["/ep"], &["c1"], &["/cmd"], &[], &["/cmd"]),
            (
                &["/ep"],
                &["c1"],
                &["/cmd"],
                &["a1", "a2"],
                &["/cmd", "a1", "a2"],
            ),
            (&[], &["c1", "x"], &[], &[], &["c1", "x"]),
            (&[], &["c1"], &[], &["a1"], &["a1"]),
            (&[], &[], &["/cmd"], &[], &["/cmd"]),
            (&[], &[], &[], &["a1"], &["a1"]),
        ];
        for &(ep, cmd, command, args, want) in cases {
            let mut f = Fixture::new();
            f.image.entrypoint = strings(ep);
            f.image.cmd = strings(cmd);
            f.config.command = strings(command);
            f.config.args = strings(args);
            let s = f.spec();
            assert_eq!(
                process(&s).args().as_deref(),
                Some(strings(want).as_slice()),
                "{ep:?} {cmd:?} {command:?} {args:?}"
            );
        }
        let mut f = Fixture::new();
        f.image.cmd.clear();
        assert_eq!(f.invalid(), "config.command");
    }

    #[test]
    fn env_order_and_overrides() {
        let mut f = Fixture::new();
        f.image.env = strings(&["A=image", "B=image", "PATH=/img/bin"]);
        f.config.envs = vec![
            ("B".into(), "config".into()),
            ("C".into(), "1".into()),
            ("C".into(), "2".into()),
        ];
        f.config.tty = true;
        let s = f.spec();
        assert_eq!(
            process(&s).env().as_deref(),
            Some(
                strings(&[
                    "A=image",
                    "B=config",
                    "PATH=/img/bin",
                    "C=2",
                    "HOSTNAME=mypod",
                    "HOME=/root",
                    "TERM=xterm"
                ])
                .as_slice()
            )
        );

        // No PATH anywhere: the default comes first; HOSTNAME, HOME and TERM given win.
        let mut f = Fixture::new();
        f.config.envs = vec![
            ("HOSTNAME".into(), "mine".into()),
            ("HOME".into(), "/h".into()),
            ("TERM".into(), "vt100".into()),
        ];
        f.config.tty = true;
        let s = f.spec();
        assert_eq!(
            process(&s).env().as_deref(),
            Some(strings(&[DEFAULT_PATH, "HOSTNAME=mine", "HOME=/h", "TERM=vt100"]).as_slice())
        );

        // PATH from the config only; a uid the image does not know gets HOME=/.
        let mut f = Fixture::new();
        f.config.envs = vec![("PATH".into(), "/x".into())];
        f.config.security.run_as_user = Some(4242);
        let s = f.spec();
        assert_eq!(
            process(&s).env().as_deref(),
            Some(strings(&["PATH=/x", "HOSTNAME=mypod", "HOME=/"]).as_slice())
        );
    }

    #[test]
    fn working_dir() {
        let mut f = Fixture::new();
        assert_eq!(process(&f.spec()).cwd(), Path::new("/"));
        f.image.working_dir = "/img".into();
        assert_eq!(process(&f.spec()).cwd(), Path::new("/img"));
        f.config.working_dir = "/cfg".into();
        assert_eq!(process(&f.spec()).cwd(), Path::new("/cfg"));
        f.config.working_dir = "rel".into();
        assert_eq!(f.invalid(), "config.working_dir");
    }

    #[test]
    fn users() {
        let mut f = Fixture::new();
        let u = process(&f.spec()).user().clone();
        assert_eq!((u.uid(), u.gid()), (0, 0));
        assert_eq!(u.additional_gids().as_deref(), Some([0, 10].as_slice()));

        f.image.user = "alice".into();
        let u = process(&f.spec()).user().clone();
        assert_eq!((u.uid(), u.gid()), (1000, 1000));
        assert_eq!(u.additional_gids().as_deref(), Some([1000].as_slice()));

        f.config.security.run_as_user = Some(7);
        f.config.security.run_as_group = Some(8);
        f.config.security.supplemental_groups = vec![9];
        let u = process(&f.spec()).user().clone();
        assert_eq!((u.uid(), u.gid()), (7, 8));
        assert_eq!(u.additional_gids().as_deref(), Some([8, 9].as_slice()));

        let mut f = Fixture::new();
        f.config.security.run_as_username = "bob".into();
        assert_eq!(f.invalid(), "config.linux.security_context.run_as_username");

        let mut f = Fixture::new();
        f.image.user = "bob".into();
        assert_eq!(f.invalid(), "image config User");
    }

    /// A name from passwd in a lower layer, hidden by a whiteout in an upper one.
    #[test]
    fn user_hidden_by_whiteout_in_upper_layer() {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        let mut f = Fixture::new();
        f.image.user = "alice".into();
        assert_eq!(process(&f.spec()).user().uid(), 1000);
        let upper = f.dir.path().join("layer1");
        write(&upper.join("etc/group"), "");
        if let Err(e) = mknod(
            &upper.join("etc/passwd"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            makedev(0, 0),
        ) {
            eprintln!("skipping: cannot make a whiteout: {e}");
            return;
        }
        f.layers.insert(0, upper);
        assert_eq!(f.invalid(), "image config User");
    }

    fn destinations(s: &Spec) -> Vec<String> {
        s.mounts()
            .iter()
            .flatten()
            .map(|m| m.destination().display().to_string())
            .collect()
    }

    fn find_mount<'a>(s: &'a Spec, dest: &str) -> &'a Mount {
        match s
            .mounts()
            .iter()
            .flatten()
            .find(|m| m.destination() == Path::new(dest))
        {
            Some(m) => m,
            None => panic!("no mount at {dest}"),
        }
    }

    fn options(m: &Mount) -> Vec<String> {
        m.options().clone().unwrap_or_default()
    }

    #[test]
    fn default_mounts_in_order() {
        let f = Fixture::new();
        let s = f.spec();
        assert_eq!(
            destinations(&s),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/shm",
                "/etc/hostname",
                "/etc/hosts",
                "/etc/resolv.conf"
            ]
        );
        let cg = find_mount(&s, "/sys/fs/cgroup");
        assert_eq!(cg.typ().as_deref(), Some("cgroup2"));
        assert!(options(cg).contains(&"ro".to_string()));
        assert!(options(find_mount(&s, "/etc/hosts")).contains(&"rw".to_string()));
        assert_eq!(
            find_mount(&s, "/dev/shm").source().as_deref(),
            Some(f.pod.shm_dir.as_path())
        );
        assert_eq!(linux(&s).rootfs_propagation(), &None);
        assert_eq!(s.root().as_ref().and_then(|r| r.readonly()), Some(false));
        assert_eq!(s.hostname(), &None);

        let mut f = Fixture::new();
        f.host.cgroup_v2 = false;
        f.config.security.readonly_rootfs = true;
        let s = f.spec();
        assert_eq!(
            find_mount(&s, "/sys/fs/cgroup").typ().as_deref(),
            Some("cgroup")
        );
        assert!(options(find_mount(&s, "/etc/resolv.conf")).contains(&"ro".to_string()));
        assert_eq!(s.root().as_ref().and_then(|r| r.readonly()), Some(true));
    }

    #[test]
    fn requested_mounts() {
        let mut f = Fixture::new();
        let data = f.dir.path().join("data");
        let hosts = f.dir.path().join("kubelet-hosts");
        write(&data.join("x"), "");
        write(&hosts, "");
        let link = f.dir.path().join("link");
        if let Err(e) = std::os::unix::fs::symlink(&data, &link) {
            panic!("symlink: {e}");
        }
        let host = |p: &Path| p.display().to_string();
        f.config.mounts = vec![
            CriMount {
                container_path: "/data/sub//".into(),
                host_path: host(&data),
                readonly: true,
                propagation: Propagation::HostToContainer,
                ..Default::default()
            },
            CriMount {
                container_path: "/data".into(),
                host_path: host(&link),
                readonly: false,
                propagation: Propagation::Private,
                ..Default::default()
            },
            CriMount {
                container_path: "/etc/hosts".into(),
                host_path: host(&hosts),
                readonly: false,
                propagation: Propagation::Private,
                ..Default::default()
            },
        ];
        let s = f.spec();
        let dests = destinations(&s);
        // The default /etc/hosts is replaced; shallower requested mounts come first, equal
        // depths in request order.
        assert_eq!(dests.iter().filter(|d| *d == "/etc/hosts").count(), 1);
        assert_eq!(
            &dests[dests.len() - 3..],
            ["/data", "/data/sub", "/etc/hosts"]
        );
        let data_mount = find_mount(&s, "/data");
        assert_eq!(
            data_mount.source().as_deref(),
            std::fs::canonicalize(&data).ok().as_deref()
        );
        assert_eq!(options(data_mount), ["rbind", "rprivate", "rw"]);
        assert_eq!(
            options(find_mount(&s, "/data/sub")),
            ["rbind", "rslave", "ro"]
        );
        assert_eq!(
            find_mount(&s, "/etc/hosts").source().as_deref(),
            std::fs::canonicalize(&hosts).ok().as_deref()
        );
        assert_eq!(linux(&s).rootfs_propagation().as_deref(), Some("rslave"));

        f.config.mounts[1].propagation = Propagation::Bidirectional;
        assert_eq!(
            linux(&f.spec()).rootfs_propagation().as_deref(),
            Some("rshared")
        );

        // Mounting /dev replaces every default below it.
        let mut f2 = Fixture::new();
        f2.config.mounts = vec![CriMount {
            container_path: "/dev".into(),
            host_path: host(&data),
            ..Default::default()
        }];
        let dests = destinations(&f2.spec());
        assert!(!dests.iter().any(|d| d.starts_with("/dev/")), "{dests:?}");
        assert_eq!(dests.iter().filter(|d| *d == "/dev").count(), 1);

        let bad = |m: CriMount| {
            let mut f = Fixture::new();
            f.config.mounts = vec![CriMount::default(), m];
            f.config.mounts[0] = CriMount {
                container_path: "/ok".into(),
                host_path: "/".into(),
                ..Default::default()
            };
            f.invalid()
        };
        assert_eq!(
            bad(CriMount {
                container_path: "/x".into(),
                host_path: host(&f.dir.path().join("missing")),
                ..Default::default()
            }),
            "config.mounts[1].host_path"
        );
        assert_eq!(
            bad(CriMount {
                container_path: "/x".into(),
                host_path: "relative".into(),
                ..Default::default()
            }),
            "config.mounts[1].host_path"
        );
        assert_eq!(
            bad(CriMount {
                container_path: "x".into(),
                host_path: "/".into(),
                ..Default::default()
            }),
            "config.mounts[1].container_path"
        );
        assert_eq!(
            bad(CriMount {
                container_path: "/a/../b".into(),
                host_path: "/".into(),
                ..Default::default()
            }),
            "config.mounts[1].container_path"
        );
    }

    fn ns(s: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        linux(s)
            .namespaces()
            .iter()
            .flatten()
            .map(|n| (n.typ(), n.path().clone()))
            .collect()
    }

    fn pid_ns(s: &Spec) -> Option<Option<PathBuf>> {
        ns(s)
            .into_iter()
            .find(|(t, _)| *t == LinuxNamespaceType::Pid)
            .map(|(_, p)| p)
    }

    #[test]
    fn user_namespace_is_joined_first_and_binds_are_idmapped() {
        let mut f = Fixture::new();
        let pod_dir = f.dir.path().join("pod");
        let map = crate::sandbox::IdMapping {
            container_id: 0,
            host_id: 200_000,
            length: 65_536,
        };
        f.pod.userns = Some((
            pod_dir.join("user"),
            crate::sandbox::UserNamespace {
                uids: vec![map],
                gids: vec![map],
            },
        ));
        let s = f.spec();
        let list = ns(&s);
        assert_eq!(
            list.get(1),
            Some(&(LinuxNamespaceType::User, Some(pod_dir.join("user"))))
        );
        let linux = s.linux().as_ref().expect("linux");
        for maps in [linux.uid_mappings(), linux.gid_mappings()] {
            let maps = maps.as_ref().expect("maps");
            assert_eq!(maps.len(), 1);
            assert_eq!(
                (maps[0].container_id(), maps[0].host_id(), maps[0].size()),
                (0, 200_000, 65_536)
            );
        }
        for m in s.mounts().iter().flatten() {
            let options = m.options().clone().unwrap_or_default();
            let bind = options.iter().any(|o| o == "rbind" || o == "bind");
            let idmap = options.iter().any(|o| o == "idmap");
            assert_eq!(bind, idmap, "{:?}: {options:?}", m.destination());
        }
        // Without one: no user namespace, no maps, no idmap.
        f.pod.userns = None;
        let s = f.spec();
        assert!(!ns(&s).iter().any(|(t, _)| *t == LinuxNamespaceType::User));
        assert!(s
            .linux()
            .as_ref()
            .and_then(|l| l.uid_mappings().as_ref())
            .is_none());
        assert!(!s.mounts().iter().flatten().any(|m| m
            .options()
            .iter()
            .flatten()
            .any(|o| o == "idmap")));
    }

    #[test]
    fn namespaces_per_mode() {
        let mut f = Fixture::new();
        let pod_dir = f.dir.path().join("pod");
        let s = f.spec();
        assert_eq!(
            ns(&s),
            [
                (LinuxNamespaceType::Mount, None),
                (LinuxNamespaceType::Network, Some(pod_dir.join("net"))),
                (LinuxNamespaceType::Ipc, Some(pod_dir.join("ipc"))),
                (LinuxNamespaceType::Uts, Some(pod_dir.join("uts"))),
                // POD mode in a pod that does not share PID: a new one.
                (LinuxNamespaceType::Pid, None),
                (LinuxNamespaceType::Cgroup, None),
            ]
        );

        f.pod.pidns = Some(pod_dir.join("pidns"));
        assert_eq!(pid_ns(&f.spec()), Some(Some(pod_dir.join("pidns"))));
        f.config.security.pid = Some(NamespaceMode::Pod);
        assert_eq!(pid_ns(&f.spec()), Some(Some(pod_dir.join("pidns"))));
        f.config.security.pid = Some(NamespaceMode::Container);
        assert_eq!(pid_ns(&f.spec()), Some(None));
        f.config.security.pid = Some(NamespaceMode::Node);
        assert_eq!(pid_ns(&f.spec()), None);
        f.config.security.pid = Some(NamespaceMode::Target);
        assert_eq!(
            f.invalid(),
            "config.linux.security_context.namespace_options.target_id"
        );
        f.target_pid = Some(4242);
        assert_eq!(
            pid_ns(&f.spec()),
            Some(Some(PathBuf::from("/proc/4242/ns/pid")))
        );

        // Host network, IPC and UTS: no entries; cgroup v1: no cgroup namespace.
        let mut f = Fixture::new();
        f.pod.host_network = true;
        f.pod.netns = None;
        f.pod.ipcns = None;
        f.pod.utsns = None;
        f.host.cgroup_v2 = false;
        assert_eq!(
            ns(&f.spec()),
            [
                (LinuxNamespaceType::Mount, None),
                (LinuxNamespaceType::Pid, None)
            ]
        );
        // No netns without host network is the pod's fault, not the request's.
        f.pod.host_network = false;
        assert!(matches!(
            f.build().map_err(|e| e.kind()),
            Err(ErrorKind::FailedPrecondition)
        ));
    }

    fn caps(s: &Spec) -> (BTreeSet<String>, usize, usize) {
        let Some(c) = process(s).capabilities() else {
            panic!("no capabilities");
        };
        let names = |set: &Option<Capabilities>| -> BTreeSet<String> {
            set.iter().flatten().map(|c| c.to_string()).collect()
        };
        let bounding = names(c.bounding());
        assert_eq!(bounding, names(c.effective()));
        assert_eq!(bounding, names(c.permitted()));
        let inheritable = c.inheritable().as_ref().map_or(0, |s| s.len());
        let ambient = c.ambient().as_ref().map_or(0, |s| s.len());
        (bounding, inheritable, ambient)
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn capabilities_add_drop_privileged() {
        let mut f = Fixture::new();
        let default = set(&[
            "CHOWN",
            "DAC_OVERRIDE",
            "FSETID",
            "FOWNER",
            "MKNOD",
            "NET_RAW",
            "SETGID",
            "SETUID",
            "SETFCAP",
            "SETPCAP",
            "NET_BIND_SERVICE",
            "SYS_CHROOT",
            "KILL",
            "AUDIT_WRITE",
        ]);
        assert_eq!(caps(&f.spec()), (default.clone(), 0, 0));

        f.config.security.add_capabilities = strings(&["sys_admin", "CAP_NET_ADMIN"]);
        f.config.security.drop_capabilities = strings(&["cap_chown", "Kill", "NOT_A_CAP"]);
        let mut want = default.clone();
        want.extend(set(&["SYS_ADMIN", "NET_ADMIN"]));
        want.remove("CHOWN");
        want.remove("KILL");
        assert_eq!(caps(&f.spec()).0, want);

        f.config.security.add_capabilities = strings(&["ALL"]);
        f.config.security.drop_capabilities = strings(&["chown"]);
        let (all_but_chown, _, _) = caps(&f.spec());
        assert_eq!(all_but_chown.len(), 40);
        assert!(!all_but_chown.contains("CHOWN"));

        f.config.security.add_capabilities = strings(&["NET_RAW"]);
        f.config.security.drop_capabilities = strings(&["all"]);
        assert_eq!(caps(&f.spec()).0, set(&["NET_RAW"]));

        f.config.security.add_capabilities = strings(&["CAP_MAGIC"]);
        f.config.security.drop_capabilities.clear();
        assert_eq!(
            f.invalid(),
            "config.linux.security_context.capabilities.add_capabilities"
        );

        // Privileged: everything the kernel has, add/drop ignored.
        let mut f = Fixture::new();
        f.config.security.privileged = true;
        f.config.security.drop_capabilities = strings(&["ALL"]);
        assert_eq!(caps(&f.spec()).0.len(), 41);
        f.host.cap_last_cap = 37;
        let (c, _, _) = caps(&f.spec());
        assert_eq!(c.len(), 38);
        assert!(!c.contains("BPF") && c.contains("AUDIT_READ"));
    }

    #[test]
    fn masked_and_readonly_paths() {
        let mut f = Fixture::new();
        let s = f.spec();
        assert_eq!(
            linux(&s).masked_paths().as_deref(),
            Some(strings(&MASKED_PATHS).as_slice())
        );
        assert_eq!(
            linux(&s).readonly_paths().as_deref(),
            Some(strings(&READONLY_PATHS).as_slice())
        );

        f.config.security.masked_paths = Some(strings(&["/proc/x"]));
        f.config.security.readonly_paths = Some(Vec::new());
        let s = f.spec();
        assert_eq!(
            linux(&s).masked_paths().as_deref(),
            Some(strings(&["/proc/x"]).as_slice())
        );
        assert_eq!(linux(&s).readonly_paths().as_deref(), Some([].as_slice()));

        f.config.security.privileged = true;
        let s = f.spec();
        assert_eq!(linux(&s).masked_paths().as_deref(), Some([].as_slice()));
        assert_eq!(linux(&s).readonly_paths().as_deref(), Some([].as_slice()));
        assert!(options(find_mount(&s, "/sys")).contains(&"rw".to_string()));
        assert!(options(find_mount(&s, "/sys/fs/cgroup")).contains(&"rw".to_string()));
        // Privileged: no cgroup namespace, every device allowed.
        assert!(!ns(&s).iter().any(|(t, _)| *t == LinuxNamespaceType::Cgroup));
        let rules = linux(&s)
            .resources()
            .as_ref()
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow() && rules[0].typ() == Some(LinuxDeviceType::A));
    }

    #[test]
    fn devices_and_rules() {
        let mut f = Fixture::new();
        f.config.devices = vec![Device {
            container_path: "/dev/mynull".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        }];
        let s = f.spec();
        let devs = linux(&s).devices().clone().unwrap_or_default();
        assert_eq!(devs.len(), 1);
        assert_eq!(devs[0].path(), Path::new("/dev/mynull"));
        assert_eq!(
            (devs[0].typ(), devs[0].major(), devs[0].minor()),
            (LinuxDeviceType::C, 1, 3)
        );
        let rules = linux(&s)
            .resources()
            .as_ref()
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        assert!(!rules[0].allow(), "deny all first");
        let last = rules.last().map(|r| r.to_string());
        assert_eq!(last.as_deref(), Some("c 1:3 rw"));

        let bad = |d: Device| {
            let mut f = Fixture::new();
            f.config.devices = vec![d];
            f.invalid()
        };
        assert_eq!(
            bad(Device {
                host_path: "/dev/does-not-exist".into(),
                ..Default::default()
            }),
            "config.devices[0].host_path"
        );
        assert_eq!(
            bad(Device {
                host_path: "/etc/hostname-not-a-device".into(),
                ..Default::default()
            }),
            "config.devices[0].host_path"
        );
        assert_eq!(
            bad(Device {
                host_path: "/dev/null".into(),
                permissions: "rwx".into(),
                ..Default::default()
            }),
            "config.devices[0].permissions"
        );
        assert_eq!(
            bad(Device {
                host_path: "/dev/null".into(),
                container_path: "dev/null".into(),
                ..Default::default()
            }),
            "config.devices[0].container_path"
        );
    }

    #[test]
    fn host_dev_walk_for_privileged() {
        let mut out = Vec::new();
        if let Err(e) = walk_devices(Path::new("/dev"), Path::new("/dev"), 0, true, &mut out) {
            panic!("walking /dev: {e}");
        }
        let paths: Vec<&Path> = out.iter().map(|d| d.path().as_path()).collect();
        assert!(paths.contains(&Path::new("/dev/null")), "{paths:?}");
        for p in &paths {
            assert!(
                !p.starts_with("/dev/pts") && !p.starts_with("/dev/shm"),
                "{p:?} is the container's own"
            );
            assert!(*p != Path::new("/dev/console") && *p != Path::new("/dev/ptmx"));
        }
    }

    #[test]
    fn resources_and_annotations() {
        let mut f = Fixture::new();
        f.config.annotations.insert("a".into(), "b".into());
        f.config
            .annotations
            .insert("io.kubernetes.cri.container-type".into(), "spoofed".into());
        f.config.resources = Some(Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(1 << 30),
            hugepage_limits: vec![("2MB".into(), 4 << 20)],
            ..Default::default()
        });
        let s = f.spec();
        let a = s.annotations().clone().unwrap_or_default();
        assert_eq!(a.get("a").map(String::as_str), Some("b"));
        assert_eq!(
            a.get("io.kubernetes.cri.container-type")
                .map(String::as_str),
            Some("container")
        );
        assert_eq!(
            a.get("io.kubernetes.cri.sandbox-id").map(String::as_str),
            Some("pod123")
        );
        assert_eq!(
            a.get("io.kubernetes.cri.container-name")
                .map(String::as_str),
            Some("app")
        );
        assert_eq!(
            a.get("io.kubernetes.cri.image-name").map(String::as_str),
            Some("docker.io/library/busybox@sha256:def")
        );
        let Some(r) = linux(&s).resources().clone() else {
            panic!("no resources");
        };
        let cpu = r.cpu().clone().unwrap_or_default();
        assert_eq!(
            (cpu.shares(), cpu.quota(), cpu.period()),
            (Some(512), Some(50_000), Some(100_000))
        );
        assert_eq!(r.memory().and_then(|m| m.limit()), Some(1 << 30));
        assert_eq!(r.pids(), &None);
        assert_eq!(r.hugepage_limits().as_ref().map(Vec::len), Some(1));

        // The spec round-trips through JSON, as the bundle stores it.
        let json = match serde_json::to_string(&s) {
            Ok(j) => j,
            Err(e) => panic!("encode: {e}"),
        };
        let back: Spec = match serde_json::from_str(&json) {
            Ok(b) => b,
            Err(e) => panic!("decode: {e}"),
        };
        assert_eq!(back, s);
        // Nothing of oci-spec's own defaults (youki's hostname, rlimits) leaks in.
        assert!(!json.contains("youki"));
        assert!(process(&s).rlimits().is_none());
    }

    #[test]
    fn stop_signals() {
        let sig = |s: Option<&str>| {
            stop_signal(&ImageInfo {
                stop_signal: s.map(str::to_string),
                ..Default::default()
            })
        };
        assert_eq!(sig(None), Signal::SIGTERM);
        assert_eq!(sig(Some("")), Signal::SIGTERM);
        assert_eq!(sig(Some("SIGKILL")), Signal::SIGKILL);
        assert_eq!(sig(Some("quit")), Signal::SIGQUIT);
        assert_eq!(sig(Some("SigInt")), Signal::SIGINT);
        assert_eq!(sig(Some("2")), Signal::SIGINT);
        assert_eq!(sig(Some("SIGRTMIN+3")), Signal::SIGTERM);
        assert_eq!(sig(Some("nonsense")), Signal::SIGTERM);
        assert_eq!(sig(Some("0")), Signal::SIGTERM);
    }
}
