//! The container's filesystem, made by its init in its own mount namespace: the overlay
//! on `<bundle>/rootfs`, the spec's mounts, /dev, pivot_root, then sysctls, read-only and
//! masked paths, a read-only root and the hostname.
//!
//! Until pivot_root every path of the container is resolved inside the rootfs, with its
//! symlinks taken as if the rootfs were `/` (openat2 RESOLVE_IN_ROOT, or a walk that does
//! the same on kernels before 5.6), and mounts go through `/proc/self/fd/<fd>` of what was
//! resolved, as runc does: an image's `/etc -> /host/etc` symlink cannot send a bind mount
//! out of the rootfs. After pivot_root the container's root is `/`, so plain paths do.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::sys::statvfs::{fstatvfs, statvfs, FsFlags};
use nix::unistd::{chdir, fchownat, pivot_root, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, Spec};

use super::InitError;
use crate::shim::protocol::RootfsMount;

/// The nodes every container gets: name, major, minor (mode 0666, owned by root).
const STANDARD_DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The links every container's /dev gets.
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// The spec's filesystem, checked in the shim before any fork.
#[derive(Debug)]
pub struct Plan<'a> {
    spec: &'a Spec,
    /// Where the overlay goes: `<bundle>/<root.path>` (`rootfs`).
    target: PathBuf,
    overlay: &'a RootfsMount,
    /// `linux.rootfsPropagation` (MS_PRIVATE by default), applied to `/` recursively.
    propagation: MsFlags,
    /// Remount `/` read-only at the end (the overlay itself is mounted read-write so that
    /// missing mount points can be made).
    readonly: bool,
    /// Set only when the container has a UTS namespace other than the host's.
    hostname: Option<&'a str>,
    mounts: Vec<MountPlan<'a>>,
    devices: Vec<Device>,
    tty: bool,
    /// For a container in a user namespace: the rootfs and mounts made idmapped by the
    /// shim, attached instead of mounted.
    idmapped: Option<super::idmap::Idmapped>,
}

#[derive(Debug)]
struct MountPlan<'a> {
    index: usize,
    /// Absolute and lexically clean.
    destination: PathBuf,
    typ: &'a str,
    /// Binds: an absolute host path (a relative one is taken from the bundle).
    source: Option<PathBuf>,
    options: Options,
    bind: bool,
    /// Binds: the source is a dir (else the mount point is a file).
    source_is_dir: bool,
}

#[derive(Debug, Clone)]
struct Device {
    path: PathBuf,
    kind: SFlag,
    mode: u32,
    major: u64,
    minor: u64,
    uid: u32,
    gid: u32,
}

impl<'a> Plan<'a> {
    pub fn new(
        spec: &'a Spec,
        bundle: &Path,
        overlay: &'a RootfsMount,
        tty: bool,
    ) -> Result<Self, InitError> {
        if overlay.lower.is_empty() {
            return Err(InitError::invalid("rootfs.lower", "no layer to mount"));
        }
        let root = spec.root().as_ref();
        let target = bundle.join(root.map_or(Path::new("rootfs"), |r| r.path().as_path()));
        let linux = spec.linux().as_ref();
        let propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
            None | Some("") | Some("private") | Some("rprivate") => MsFlags::MS_PRIVATE,
            Some("slave") | Some("rslave") => MsFlags::MS_SLAVE,
            Some("shared") | Some("rshared") => MsFlags::MS_SHARED,
            Some("unbindable") | Some("runbindable") => MsFlags::MS_UNBINDABLE,
            Some(other) => {
                return Err(InitError::invalid(
                    "linux.rootfsPropagation",
                    format!("unknown propagation {other:?}"),
                ))
            }
        };
        let mut mounts = Vec::new();
        for (index, m) in spec.mounts().iter().flatten().enumerate() {
            let destination = m.destination();
            if !destination.is_absolute() {
                return Err(InitError::invalid(
                    format!("mounts[{index}].destination"),
                    format!("{}: not an absolute path", destination.display()),
                ));
            }
            let options = Options::parse(m.options().as_deref().unwrap_or_default());
            let typ = m.typ().as_deref().unwrap_or("");
            let bind = typ == "bind" || options.bind;
            let mut source = m.source().clone();
            let mut source_is_dir = true;
            if bind {
                let field = format!("mounts[{index}].source");
                // A relative source is the bundle's, as runc takes it.
                source = source.map(|s| bundle.join(s));
                let Some(source) = &source else {
                    return Err(InitError::invalid(field, "a bind mount needs a source"));
                };
                let meta = std::fs::metadata(source)
                    .map_err(|e| InitError::invalid(field, format!("{}: {e}", source.display())))?;
                source_is_dir = meta.is_dir();
            }
            mounts.push(MountPlan {
                index,
                destination: clean(destination),
                typ,
                source,
                options,
                bind,
                source_is_dir,
            });
        }
        let mut devices = Vec::new();
        for (i, d) in linux
            .and_then(|l| l.devices().as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
                LinuxDeviceType::B => SFlag::S_IFBLK,
                LinuxDeviceType::P => SFlag::S_IFIFO,
                LinuxDeviceType::A => {
                    return Err(InitError::invalid(
                        format!("linux.devices[{i}].type"),
                        "a device node needs a type: c, b, u or p",
                    ))
                }
            };
            if !d.path().is_absolute() {
                return Err(InitError::invalid(
                    format!("linux.devices[{i}].path"),
                    format!("{}: not an absolute path", d.path().display()),
                ));
            }
            devices.push(Device {
                path: clean(d.path()),
                kind,
                mode: d.file_mode().unwrap_or(0o666) & 0o7777,
                major: d.major() as u64,
                minor: d.minor() as u64,
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            });
        }
        Ok(Plan {
            spec,
            target,
            overlay,
            propagation,
            readonly: overlay.readonly || root.and_then(|r| r.readonly()).unwrap_or(false),
            hostname: spec
                .hostname()
                .as_deref()
                .filter(|h| !h.is_empty() && own_uts(spec)),
            mounts,
            devices,
            tty,
            idmapped: None,
        })
    }

    /// In the shim, before the fork: the idmapped mounts a container in a user namespace
    /// needs (nothing otherwise). See [`super::idmap`].
    pub fn prepare_idmapped(&mut self) -> Result<(), InitError> {
        self.idmapped = super::idmap::Idmapped::prepare(self.spec, &self.target, self.overlay)?;
        Ok(())
    }

    /// Where the intermediate must be when it unshares the mount namespace: the rootfs's
    /// mount point, for a container in a user namespace (see `mount_overlay`).
    pub fn enter_first(&self) -> Option<&Path> {
        self.idmapped.as_ref().map(|_| self.target.as_path())
    }

    /// The fds the init must keep open until [`enter`](Self::enter) has attached them.
    pub fn keep_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.idmapped
            .as_ref()
            .map(super::idmap::Idmapped::fds)
            .unwrap_or_default()
    }

    /// Everything up to and including pivot_root; the working dir is `/` after it.
    pub fn enter(&self) -> Result<(), InitError> {
        // Modes are given in full below (0666 device nodes); the process's own umask is
        // set right before execve.
        nix::sys::stat::umask(Mode::empty());
        // As runc: the whole tree gets the root propagation, keeping (for rshared) the
        // copies in the host's peer groups, so that a bind of a shared host dir is a peer
        // of it (bidirectional propagation).
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            self.propagation | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| InitError::step("setting the propagation of /", e))?;
        // In a user namespace the shim made it, and the bundle's path may not be
        // searchable by this process: everything goes through the shim's fds then.
        if self.idmapped.is_none() {
            std::fs::create_dir_all(&self.target).map_err(|e| {
                InitError::step(format_args!("creating {}", self.target.display()), e)
            })?;
        }
        if self.propagation == MsFlags::MS_SHARED {
            // ...but the mount holding the rootfs must not pass the overlay (and the mounts
            // under it) back to the host, and pivot_root refuses a shared parent.
            let parent = mount_point_of(&self.target)
                .map_err(|e| InitError::step("finding the rootfs's parent mount", e))?;
            mount(
                None::<&str>,
                &parent,
                None::<&str>,
                MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| InitError::step("making the rootfs's parent mount private", e))?;
        }
        self.mount_overlay()?;
        let idmapped = self.idmapped.as_ref();
        let root = match idmapped {
            Some(i) => Root::mounted(&i.rootfs, &self.target)?,
            None => Root::at(&self.target)?,
        };
        for m in &self.mounts {
            m.apply(&root, idmapped.and_then(|i| i.mount(m.index)))?;
        }
        self.make_dev(&root)?;
        drop(root);
        pivot(&self.target, idmapped.map(|i| &i.rootfs))
    }

    /// After pivot_root: sysctls, read-only paths, masked paths, the read-only root, the
    /// hostname.
    pub fn finish(&self) -> Result<(), InitError> {
        let linux = self.spec.linux().as_ref();
        for (key, value) in linux
            .and_then(|l| l.sysctl().as_ref())
            .into_iter()
            .flatten()
        {
            let path = Path::new("/proc/sys").join(key.replace('.', "/"));
            std::fs::write(&path, value)
                .map_err(|e| InitError::step(format_args!("setting sysctl {key}={value}"), e))?;
        }
        for path in linux
            .and_then(|l| l.readonly_paths().as_ref())
            .into_iter()
            .flatten()
        {
            readonly_path(Path::new(path))?;
        }
        for path in linux
            .and_then(|l| l.masked_paths().as_ref())
            .into_iter()
            .flatten()
        {
            mask_path(Path::new(path))?;
        }
        if self.readonly {
            let flags = MsFlags::MS_RDONLY | kept_flags(statvfs("/").ok(), MsFlags::empty());
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
                None::<&str>,
            )
            .map_err(|e| InitError::step("remounting / read-only", e))?;
        }
        if self.propagation == MsFlags::MS_SHARED {
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_SHARED | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| InitError::step("making the mounts of / shared", e))?;
        }
        if let Some(name) = self.hostname {
            nix::unistd::sethostname(name)
                .map_err(|e| InitError::step(format_args!("sethostname({name:?})"), e))?;
        }
        Ok(())
    }

    /// The overlay (or a read-only bind of a single layer) on the target.
    fn mount_overlay(&self) -> Result<(), InitError> {
        let o = self.overlay;
        let target = &self.target;
        let failed = |e| {
            InitError::step(
                format_args!("mounting the rootfs on {}", target.display()),
                e,
            )
        };
        if let Some(idmapped) = &self.idmapped {
            // The intermediate entered the target before it unshared the mount namespace,
            // so the working dir is the target in this namespace (its path may not be
            // searchable from the user namespace; an fd the shim opened would name the
            // shim's namespace, where move_mount refuses it).
            let here = open_path(Path::new(".")).map_err(failed)?;
            return super::idmap::attach(&idmapped.rootfs, &here).map_err(failed);
        }
        if o.upper.as_os_str().is_empty() && o.lower.len() == 1 {
            // One layer and nowhere to write: the layer itself, which must stay untouched.
            let layer = &o.lower[0];
            mount(
                Some(layer),
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(failed)?;
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            let flags = flags | kept_flags(statvfs(target).ok(), MsFlags::empty());
            return mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(failed);
        }
        let mut dirs: Vec<&Path> = o.lower.iter().map(PathBuf::as_path).collect();
        if !o.upper.as_os_str().is_empty() {
            dirs.extend([o.upper.as_path(), o.work.as_path()]);
        }
        let mut data = overlay_options(o, Path::new(""));
        // The kernel takes one page of options: relative paths from the layers' common
        // parent, the working dir, when the absolute ones are too long.
        if data.len() >= page_size() {
            let common = common_parent(&dirs);
            chdir(&common).map_err(|e| {
                InitError::step(
                    format_args!("chdir to the layers' parent {}", common.display()),
                    e,
                )
            })?;
            data = overlay_options(o, &common);
            if data.len() >= page_size() {
                return Err(InitError::invalid(
                    "rootfs.lower",
                    format!("{} layers make overlay options too long", o.lower.len()),
                ));
            }
        }
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(failed)
    }

    /// /dev: the standard nodes, the spec's devices, the links, the console.
    fn make_dev(&self, root: &Root) -> Result<(), InitError> {
        let failed =
            |what: &Path, e| InitError::step(format_args!("creating {}", what.display()), e);
        let mut devices: Vec<Device> = STANDARD_DEVICES
            .iter()
            .map(|(name, major, minor)| Device {
                path: Path::new("/dev").join(name),
                kind: SFlag::S_IFCHR,
                mode: 0o666,
                major: *major,
                minor: *minor,
                uid: 0,
                gid: 0,
            })
            .filter(|d| !self.devices.iter().any(|s| s.path == d.path))
            .collect();
        devices.extend(self.devices.iter().cloned());
        for device in &devices {
            make_device(root, device).map_err(|e| failed(&device.path, e))?;
        }
        let dev = root
            .ensure(Path::new("/dev"), true)
            .map_err(|e| failed(Path::new("/dev"), e))?;
        let mut links = DEV_LINKS.to_vec();
        if Path::new("/proc/kcore").exists() {
            links.push(("core", "/proc/kcore"));
        }
        for (name, target) in links {
            if name == "ptmx" {
                // An image's own /dev/ptmx node would bypass the container's devpts.
                let _ = unlinkat(Some(dev.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir);
            }
            match symlinkat(target, Some(dev.as_raw_fd()), name) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(failed(&Path::new("/dev").join(name), e)),
            }
        }
        if self.tty {
            // The pty slave (stdin by now) as /dev/console, as runc does: by its path, as
            // its fd's mount is in the shim's namespace, not this copy of it.
            let console = Path::new("/dev/console");
            let slave = std::fs::read_link("/proc/self/fd/0")
                .map_err(|e| InitError::step("finding the terminal's path", e))?;
            let fd = root
                .ensure(console, false)
                .map_err(|e| failed(console, e))?;
            mount(
                Some(&slave),
                fd_path(&fd).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| InitError::step("bind-mounting the terminal on /dev/console", e))?;
        }
        Ok(())
    }
}

impl MountPlan<'_> {
    /// `detached`: the idmapped mount the shim made for it, attached instead.
    fn apply(&self, root: &Root, detached: Option<&OwnedFd>) -> Result<(), InitError> {
        let dest = &self.destination;
        let what = format!(
            "mounts[{}] ({} on {})",
            self.index,
            if self.bind { "bind" } else { self.typ },
            dest.display()
        );
        let failed = |step: &str, e: Errno| InitError::step(format_args!("{what}: {step}"), e);
        let dir = !self.bind || self.source_is_dir;
        let target = root
            .ensure(dest, dir)
            .map_err(|e| failed("creating the mount point", e))?;
        let target_path = fd_path(&target);
        let opts = &self.options;
        let mut rro = opts.rro;
        if let Some(detached) = detached {
            super::idmap::attach(detached, &target)
                .map_err(|e| failed("attaching its idmapped mount", e))?;
            drop(target);
            if self.bind && (!opts.set.is_empty() || !opts.clear.is_empty()) {
                let fresh = root.open(dest).map_err(|e| failed("reopening", e))?;
                remount(&fresh, opts.set, opts.clear).map_err(|e| failed("remount", e))?;
            }
        } else if self.bind {
            let source = self.source.as_deref().unwrap_or(Path::new(""));
            let rec = if opts.recursive {
                MsFlags::MS_REC
            } else {
                MsFlags::empty()
            };
            mount(
                Some(source),
                target_path.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | rec,
                None::<&str>,
            )
            .map_err(|e| failed("mount", e))?;
            drop(target);
            if !opts.set.is_empty() || !opts.clear.is_empty() {
                let fresh = root.open(dest).map_err(|e| failed("reopening", e))?;
                remount(&fresh, opts.set, opts.clear).map_err(|e| failed("remount", e))?;
            }
        } else {
            let source = self
                .source
                .as_deref()
                .map_or(OsStr::new(self.typ), Path::as_os_str);
            let mut data = opts.data.clone();
            if self.typ == "devpts" {
                for wanted in ["newinstance", "ptmxmode=0666"] {
                    let key = wanted.split('=').next().unwrap_or(wanted);
                    if !data.iter().any(|d| d.split('=').next() == Some(key)) {
                        data.push(wanted.to_string());
                    }
                }
            }
            let data = data.join(",");
            let data = (!data.is_empty()).then_some(data.as_str());
            let mounted = match self.typ {
                "cgroup" | "cgroup2" => mount_cgroup(&target_path, opts.set, data),
                _ => mount(
                    Some(source),
                    target_path.as_str(),
                    Some(self.typ),
                    opts.set,
                    data,
                )
                .map(|()| false),
            };
            rro = match mounted {
                // A sysfs needs a network namespace of the container's own: the host's
                // /sys instead, read-only unless asked for `rw` (privileged).
                Err(Errno::EPERM) if self.typ == "sysfs" => {
                    rbind("/sys", &target_path).map_err(|e| failed("binding /sys", e))?;
                    opts.set.contains(MsFlags::MS_RDONLY)
                }
                other => other.map_err(|e| failed("mount", e))?,
            };
            drop(target);
        }
        if rro {
            let fresh = root.open(dest).map_err(|e| failed("reopening", e))?;
            readonly_recursive(&fresh).map_err(|e| failed("making it read-only", e))?;
        }
        for propagation in &opts.propagation {
            let fresh = root.open(dest).map_err(|e| failed("reopening", e))?;
            mount(
                None::<&str>,
                fd_path(&fresh).as_str(),
                None::<&str>,
                *propagation,
                None::<&str>,
            )
            .map_err(|e| failed("setting the propagation", e))?;
        }
        Ok(())
    }
}

/// The mount point of the mount that holds `path` (the longest mount point in
/// /proc/self/mountinfo that is a prefix of it).
fn mount_point_of(path: &Path) -> Result<PathBuf, Errno> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|_| Errno::EIO)?;
    let path = std::fs::canonicalize(path).map_err(|_| Errno::ENOENT)?;
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|point| path.starts_with(point))
        .max_by_key(|point| point.as_os_str().len())
        .ok_or(Errno::ENOENT)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(d)) = (bytes[i], octal) {
            let v = (d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// A cgroup2 mount on a unified host; on a v1 (or hybrid) host, the host's
/// /sys/fs/cgroup bound with all its hierarchies, to be made read-only all the way down
/// (Ok(true)) unless the mount asks for `rw` (privileged, as containerd's
/// WithWriteableCgroupfs).
fn mount_cgroup(target: &str, flags: MsFlags, data: Option<&str>) -> Result<bool, Errno> {
    let unified = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    if unified {
        mount(Some("cgroup2"), target, Some("cgroup2"), flags, data).map(|()| false)
    } else {
        rbind("/sys/fs/cgroup", target).map(|()| flags.contains(MsFlags::MS_RDONLY))
    }
}

/// Bind `source` and every mount below it onto `target`.
fn rbind(source: &str, target: &str) -> Result<(), Errno> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
}

/// Make a bind mount onto itself read-only, with the flags it has (a remount that drops
/// a flag locked by a user namespace fails).
fn remount(fd: &OwnedFd, set: MsFlags, clear: MsFlags) -> Result<(), Errno> {
    let flags = set | kept_flags(fstatvfs(fd).ok(), clear);
    mount(
        None::<&str>,
        fd_path(fd).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
        None::<&str>,
    )
}

/// The per-mount flags a mount has now, less `clear`.
fn kept_flags(stat: Option<nix::sys::statvfs::Statvfs>, clear: MsFlags) -> MsFlags {
    let Some(stat) = stat else {
        return MsFlags::empty();
    };
    let mut flags = MsFlags::empty();
    for (st, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if stat.flags().contains(st) {
            flags |= ms;
        }
    }
    flags - clear
}

/// struct mount_attr of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Make the mount at `fd` and every mount below it read-only: mount_setattr(2), or on
/// kernels before 5.12 a remount of the top one.
fn readonly_recursive(fd: &OwnedFd) -> Result<(), Errno> {
    const MOUNT_ATTR_RDONLY: u64 = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `fd` is an open fd, the path an empty C string (AT_EMPTY_PATH: the fd itself),
    // `attr` a live struct of the size passed; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    match rc {
        0 => Ok(()),
        _ => match Errno::last() {
            Errno::ENOSYS => remount(fd, MsFlags::MS_RDONLY, MsFlags::empty()),
            e => Err(e),
        },
    }
}

/// A device node; where mknod is denied (a user namespace), an empty file with the
/// host's node of the same path bound on it.
fn make_device(root: &Root, device: &Device) -> Result<(), Errno> {
    let (Some(parent), Some(name)) = (device.path.parent(), device.path.file_name()) else {
        return Err(Errno::EINVAL);
    };
    let dir = root.ensure(parent, true)?;
    let dir_fd = Some(dir.as_raw_fd());
    match unlinkat(dir_fd, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        // Something is mounted there already (a bind of the spec's): leave it.
        Err(Errno::EBUSY) => return Ok(()),
        Err(e) => return Err(e),
    }
    let mode = Mode::from_bits_truncate(device.mode as libc::mode_t);
    match mknodat(
        dir_fd,
        name,
        device.kind,
        mode,
        makedev(device.major, device.minor),
    ) {
        Ok(()) => fchownat(
            dir_fd,
            name,
            Some(Uid::from_raw(device.uid)),
            Some(Gid::from_raw(device.gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ),
        Err(Errno::EPERM) => {
            mknodat(
                dir_fd,
                name,
                SFlag::S_IFREG,
                Mode::from_bits_truncate(0o644),
                0,
            )?;
            let fd = root.open(&device.path)?;
            mount(
                Some(&device.path),
                fd_path(&fd).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        }
        Err(e) => Err(e),
    }
}

/// pivot_root into `target` and drop the old root, as runc does: the old root is stacked
/// on `.` by pivot_root(".", "."), made a slave so that its unmount reaches nothing
/// outside, and detached.
fn pivot(target: &Path, attached: Option<&OwnedFd>) -> Result<(), InitError> {
    let old_root = nix::fcntl::open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| InitError::step("opening the old root", e))?;
    // SAFETY: `open` just returned this fd and nothing else owns it.
    let old_root = unsafe { OwnedFd::from_raw_fd(old_root) };
    match attached {
        // The attached rootfs's own fd: its path may not be searchable from here.
        Some(fd) => nix::unistd::fchdir(fd.as_raw_fd()),
        None => chdir(target),
    }
    .map_err(|e| InitError::step(format_args!("chdir {}", target.display()), e))?;
    pivot_root(".", ".").map_err(|e| InitError::step("pivot_root", e))?;
    // As runc: what "." is after pivot_root is not promised; step onto the old root by
    // its fd, so that making it a slave cannot touch the new root's mounts (a
    // bidirectional bind would stop being the host's peer).
    nix::unistd::fchdir(old_root.as_raw_fd())
        .map_err(|e| InitError::step("fchdir to the old root", e))?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| InitError::step("making the old root a slave", e))?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| InitError::step("unmounting the old root", e))?;
    chdir("/").map_err(|e| InitError::step("chdir /", e))
}

/// `linux.readonlyPaths`: bind onto itself, read-only. A missing path is skipped.
fn readonly_path(path: &Path) -> Result<(), InitError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let failed = |e| InitError::step(format_args!("making {} read-only", path.display()), e);
    mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(failed)?;
    let flags = MsFlags::MS_RDONLY | kept_flags(statvfs(path).ok(), MsFlags::empty());
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
        None::<&str>,
    )
    .map_err(failed)
}

/// `linux.maskedPaths`: /dev/null over a file, an empty read-only tmpfs over a dir. A
/// missing path is skipped.
fn mask_path(path: &Path) -> Result<(), InitError> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let masked = if meta.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    masked.map_err(|e| InitError::step(format_args!("masking {}", path.display()), e))
}

/// The rootfs, for resolving the container's paths inside it.
struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// The root of `mount`, a detached mount now attached on `path`.
    fn mounted(mount: &OwnedFd, path: &Path) -> Result<Self, InitError> {
        let fd = nix::fcntl::openat(
            Some(mount.as_raw_fd()),
            ".",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| InitError::step(format_args!("opening {}", path.display()), e))?;
        Ok(Root {
            // SAFETY: `openat` just returned this fd and nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    fn at(path: &Path) -> Result<Self, InitError> {
        let fd = open_path(path)
            .map_err(|e| InitError::step(format_args!("opening {}", path.display()), e))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// An O_PATH fd on `path` (absolute, as the container sees it), every symlink on the
    /// way resolved as if the rootfs were `/`.
    fn open(&self, path: &Path) -> Result<OwnedFd, Errno> {
        let relative = path.strip_prefix("/").unwrap_or(path);
        let relative = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match openat2(self.fd.as_raw_fd(), relative, how) {
            // SAFETY: openat2 just returned this fd; nothing else owns it.
            Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(Errno::ENOSYS) => open_path(&walk(&self.path, path)?),
            Err(e) => Err(e),
        }
    }

    /// [`open`](Self::open), making what is missing first: dirs, and for `dir == false`
    /// an empty file at the end.
    fn ensure(&self, path: &Path, dir: bool) -> Result<OwnedFd, Errno> {
        match self.open(path) {
            Err(Errno::ENOENT) => {}
            other => return other,
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Errno::ENOENT);
        };
        let parent = self.ensure(parent, true)?;
        let made = if dir {
            nix::sys::stat::mkdirat(
                Some(parent.as_raw_fd()),
                name,
                Mode::from_bits_truncate(0o755),
            )
        } else {
            mknodat(
                Some(parent.as_raw_fd()),
                name,
                SFlag::S_IFREG,
                Mode::from_bits_truncate(0o644),
                0,
            )
        };
        match made {
            // EEXIST: a dangling symlink; opening it again fails, naming the path.
            Ok(()) | Err(Errno::EEXIST) => self.open(path),
            Err(e) => Err(e),
        }
    }
}

/// An O_PATH fd on a host path (symlinks followed).
fn open_path(path: &Path) -> Result<OwnedFd, Errno> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Where `path` (absolute, as the container sees it) is on the host, every symlink on
/// the way resolved inside `root`: for kernels without openat2.
fn walk(root: &Path, path: &Path) -> Result<PathBuf, Errno> {
    let mut done = PathBuf::new();
    let mut todo: Vec<OsString> = parts(path);
    todo.reverse();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&part);
        match std::fs::read_link(root.join(&next)) {
            Ok(target) => {
                links += 1;
                if links > 40 {
                    return Err(Errno::ELOOP);
                }
                if target.is_absolute() {
                    done = PathBuf::new();
                }
                todo.extend(parts(&target).into_iter().rev());
            }
            Err(_) => done = next,
        }
    }
    Ok(root.join(done))
}

/// The names and `..`s of a path, without `/` and `.`.
fn parts(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// An absolute path without `.`, `..` or doubled slashes (`..` at `/` stays at `/`).
fn clean(path: &Path) -> PathBuf {
    let mut clean = PathBuf::from("/");
    for part in parts(path) {
        if part == ".." {
            clean.pop();
        } else {
            clean.push(part);
        }
    }
    clean
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Whether the spec gives the container a UTS namespace other than the host's (the
/// shim's): a new one, or a path to another.
fn own_uts(spec: &Spec) -> bool {
    let list = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    let Some(uts) = list
        .into_iter()
        .flatten()
        .find(|ns| ns.typ() == LinuxNamespaceType::Uts)
    else {
        return false;
    };
    let Some(path) = uts.path() else {
        return true;
    };
    let inode = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    inode(path) != inode(Path::new("/proc/self/ns/uts"))
}

/// The overlay's options, paths relative to `base` when it is not empty.
fn overlay_options(o: &RootfsMount, base: &Path) -> String {
    let show = |p: &Path, list: bool| {
        let p = if base.as_os_str().is_empty() {
            p
        } else {
            p.strip_prefix(base).unwrap_or(p)
        };
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        escape(p.as_os_str(), list)
    };
    let lower: Vec<String> = o.lower.iter().map(|p| show(p, true)).collect();
    let mut data = format!("lowerdir={}", lower.join(":"));
    if !o.upper.as_os_str().is_empty() {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            show(&o.upper, false),
            show(&o.work, false)
        ));
    }
    data
}

/// A path in overlay options: `\`, `,` (and `:` in the lowerdir list) escaped.
fn escape(path: &OsStr, list: bool) -> String {
    let mut out = String::new();
    for c in String::from_utf8_lossy(path.as_bytes()).chars() {
        if c == '\\' || c == ',' || (list && c == ':') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The deepest dir that holds all of `dirs`.
fn common_parent(dirs: &[&Path]) -> PathBuf {
    let mut common = dirs.first().map(|d| d.to_path_buf()).unwrap_or_default();
    for dir in dirs {
        while !dir.starts_with(&common) {
            if !common.pop() {
                break;
            }
        }
    }
    common
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |n| n as usize)
}

/// A mount's options, split as runc does: per-mount flags to set or clear, propagation
/// changes, bind, and the rest as the filesystem's data.
#[derive(Debug, Clone)]
struct Options {
    set: MsFlags,
    clear: MsFlags,
    propagation: Vec<MsFlags>,
    data: Vec<String>,
    bind: bool,
    recursive: bool,
    /// Read-only, every mount below too.
    rro: bool,
}

impl Options {
    fn parse(options: &[String]) -> Self {
        let mut o = Options {
            set: MsFlags::empty(),
            clear: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
            bind: false,
            recursive: false,
            rro: false,
        };
        for option in options {
            if let Some((flag, set)) = flag_option(option) {
                if set {
                    o.set.insert(flag);
                    o.clear.remove(flag);
                } else {
                    o.clear.insert(flag);
                    o.set.remove(flag);
                }
                continue;
            }
            let propagation = match option.as_str() {
                "private" => MsFlags::MS_PRIVATE,
                "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                "shared" => MsFlags::MS_SHARED,
                "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
                "slave" => MsFlags::MS_SLAVE,
                "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
                "unbindable" => MsFlags::MS_UNBINDABLE,
                "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
                "bind" => {
                    o.bind = true;
                    continue;
                }
                "rbind" => {
                    o.bind = true;
                    o.recursive = true;
                    continue;
                }
                "rro" => {
                    o.rro = true;
                    continue;
                }
                // Marks a bind the shim idmaps (super::idmap); nothing for mount(2).
                "idmap" | "ridmap" => continue,
                "defaults" | "remount" => continue,
                _ => {
                    o.data.push(option.clone());
                    continue;
                }
            };
            o.propagation.push(propagation);
        }
        o
    }
}

/// A per-mount flag option: the flag, and whether it sets (`ro`) or clears (`rw`) it.
fn flag_option(option: &str) -> Option<(MsFlags, bool)> {
    Some(match option {
        "ro" => (MsFlags::MS_RDONLY, true),
        "rw" => (MsFlags::MS_RDONLY, false),
        "nosuid" => (MsFlags::MS_NOSUID, true),
        "suid" => (MsFlags::MS_NOSUID, false),
        "nodev" => (MsFlags::MS_NODEV, true),
        "dev" => (MsFlags::MS_NODEV, false),
        "noexec" => (MsFlags::MS_NOEXEC, true),
        "exec" => (MsFlags::MS_NOEXEC, false),
        "sync" => (MsFlags::MS_SYNCHRONOUS, true),
        "async" => (MsFlags::MS_SYNCHRONOUS, false),
        "dirsync" => (MsFlags::MS_DIRSYNC, true),
        "mand" => (MsFlags::MS_MANDLOCK, true),
        "nomand" => (MsFlags::MS_MANDLOCK, false),
        "noatime" => (MsFlags::MS_NOATIME, true),
        "atime" => (MsFlags::MS_NOATIME, false),
        "nodiratime" => (MsFlags::MS_NODIRATIME, true),
        "diratime" => (MsFlags::MS_NODIRATIME, false),
        "relatime" => (MsFlags::MS_RELATIME, true),
        "norelatime" => (MsFlags::MS_RELATIME, false),
        "strictatime" => (MsFlags::MS_STRICTATIME, true),
        "nostrictatime" => (MsFlags::MS_STRICTATIME, false),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean(Path::new("/a/./b/../c//d")), Path::new("/a/c/d"));
        assert_eq!(clean(Path::new("/../../etc")), Path::new("/etc"));
        assert_eq!(clean(Path::new("/")), Path::new("/"));
    }

    #[test]
    fn options_split() {
        let o = Options::parse(&[
            "rbind".into(),
            "ro".into(),
            "nosuid".into(),
            "rslave".into(),
            "mode=755".into(),
        ]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.set, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(o.data, vec!["mode=755".to_string()]);
    }

    #[test]
    fn overlay_option_string() {
        let o = RootfsMount {
            lower: vec!["/l/a:b".into(), "/l/c".into()],
            upper: "/l/u".into(),
            work: "/l/w".into(),
            readonly: false,
        };
        assert_eq!(
            overlay_options(&o, Path::new("")),
            "lowerdir=/l/a\\:b:/l/c,upperdir=/l/u,workdir=/l/w"
        );
        assert_eq!(
            common_parent(&[Path::new("/l/a"), Path::new("/l/c")]),
            Path::new("/l")
        );
        assert_eq!(
            overlay_options(&o, Path::new("/l")),
            "lowerdir=a\\:b:c,upperdir=u,workdir=w"
        );
    }

    #[test]
    fn walk_stays_inside() {
        let dir = std::env::temp_dir().join(format!("corral-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("real")).expect("mkdir");
        std::os::unix::fs::symlink("/real", dir.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../../..", dir.join("up")).expect("symlink");
        assert_eq!(walk(&dir, Path::new("/abs/x")), Ok(dir.join("real/x")));
        assert_eq!(walk(&dir, Path::new("/up/etc")), Ok(dir.join("etc")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
