//! Idmapped mounts for a container in the pod's user namespace, made by the shim (host
//! root) before it forks, and attached by the container's init (root of the user
//! namespace only) with move_mount(2).
//!
//! Why here: `mount_setattr(MOUNT_ATTR_IDMAP)` needs CAP_SYS_ADMIN over the superblock's
//! owner (the host's user namespace for ext4, xfs, tmpfs...), which the init gives up when
//! it joins the pod's user namespace; and the init's mount namespace must be owned by the
//! pod's user namespace (for /proc, /sys, mqueue and devpts), so it is made after that join.
//! Detached mounts bridge the two: made here, attached there.
//!
//! - **The rootfs**: overlayfs cannot itself be idmapped (mount_setattr answers EINVAL on
//!   this kernel), but its layers can. Each lower layer is an idmapped clone (disk id 0 is
//!   the pod's root), the upper and work dirs are plain, and the overlay is made with
//!   fsopen/fsconfig(`lowerdir+`, `upperdir`, `workdir` by fd)/fsmount by the host's root,
//!   so that overlayfs keeps its trusted.* xattrs and whiteouts (its mounter needs the host's
//!   capabilities for those). The upper dir, fresh and the container's own, is chowned to
//!   the pod's root on the host: what the container writes there is stored under its
//!   host ids (the image is never chowned).
//! - **Bind mounts** marked `idmap`/`ridmap` (all of them, for such a pod): an idmapped
//!   clone of the source, recursive for `ridmap` and `rbind`. A filesystem that cannot be
//!   idmapped fails the create, naming the mount.
//! - **Overlay mounts** (image volumes): as the rootfs, read-only, without an upper dir.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::InitError;
use crate::shim::protocol::RootfsMount;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_FD: libc::c_uint = 5;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// struct mount_attr of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// The detached mounts of one container.
#[derive(Debug)]
pub struct Idmapped {
    /// The rootfs: the overlay, or one idmapped layer read-only.
    pub rootfs: OwnedFd,
    /// By the index of the spec's mount.
    mounts: Vec<(usize, OwnedFd)>,
}

impl Idmapped {
    /// The detached mounts for `spec`, when it joins a user namespace; None otherwise.
    pub fn prepare(
        spec: &Spec,
        target: &Path,
        overlay: &RootfsMount,
    ) -> Result<Option<Idmapped>, InitError> {
        let Some(userns_path) = user_namespace(spec) else {
            return Ok(None);
        };
        let userns = File::open(&userns_path).map_err(|e| {
            InitError::step(
                format_args!("opening the user namespace {}", userns_path.display()),
                e,
            )
        })?;
        let userns = OwnedFd::from(userns);
        let (uid, gid) = root_on_host(spec)?;
        // The init, root of the user namespace only, may not write in the bundle.
        std::fs::create_dir_all(target)
            .map_err(|e| InitError::step(format_args!("creating {}", target.display()), e))?;
        let rootfs = rootfs(overlay, &userns, uid, gid)?;
        let mut mounts = Vec::new();
        for (index, m) in spec.mounts().iter().flatten().enumerate() {
            let options = m.options().as_deref().unwrap_or_default();
            let has = |o: &str| options.iter().any(|x| x == o);
            let typ = m.typ().as_deref().unwrap_or("");
            let field = || format!("mounts[{index}].source");
            if has("idmap") || has("ridmap") {
                let source = m.source().as_deref().ok_or_else(|| {
                    InitError::invalid(field(), "an idmapped bind needs a source")
                })?;
                let recursive = has("ridmap") || has("rbind");
                let fd = idmapped_clone(source, &userns, recursive, 0)
                    .map_err(|e| refused(&field(), source, e))?;
                mounts.push((index, fd));
            } else if typ == "overlay" {
                let lower: Vec<PathBuf> = options
                    .iter()
                    .find_map(|o| o.strip_prefix("lowerdir="))
                    .map(|l| l.split(':').map(PathBuf::from).collect())
                    .unwrap_or_default();
                let field = format!("mounts[{index}].options");
                let fd = overlay_mount(&lower, None, &userns).map_err(|e| {
                    InitError::step(format_args!("{field}: an idmapped overlay"), e)
                })?;
                mounts.push((index, fd));
            }
        }
        Ok(Some(Idmapped { rootfs, mounts }))
    }

    /// Every fd the init must keep until it has attached them.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut out = vec![self.rootfs.as_raw_fd()];
        out.extend(self.mounts.iter().map(|(_, fd)| fd.as_raw_fd()));
        out
    }

    /// The detached mount for the spec's mount `index`, if it has one.
    pub fn mount(&self, index: usize) -> Option<&OwnedFd> {
        self.mounts
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, fd)| fd)
    }
}

/// The path of the user namespace the spec joins.
fn user_namespace(spec: &Spec) -> Option<PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|ns| ns.typ() == LinuxNamespaceType::User)?
        .path()
        .clone()
}

/// The host uid and gid of the container's root, from `linux.uidMappings`/`gidMappings`.
fn root_on_host(spec: &Spec) -> Result<(u32, u32), InitError> {
    let linux = spec.linux().as_ref();
    let find = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>, field: &str| {
        maps.into_iter()
            .flatten()
            .find(|m| m.container_id() == 0 && m.size() > 0)
            .map(|m| m.host_id())
            .ok_or_else(|| InitError::invalid(field, "no mapping for the container's root"))
    };
    Ok((
        find(
            linux.and_then(|l| l.uid_mappings().as_ref()),
            "linux.uidMappings",
        )?,
        find(
            linux.and_then(|l| l.gid_mappings().as_ref()),
            "linux.gidMappings",
        )?,
    ))
}

/// "mounts[i].source: the filesystem of X cannot be idmapped" for EINVAL, the step else.
fn refused(field: &str, source: &Path, e: Errno) -> InitError {
    match e {
        Errno::EINVAL | Errno::EPERM | Errno::ENOSYS => InitError::invalid(
            field,
            format!(
                "{}: an idmapped mount of its filesystem is refused ({e}), and a pod with \
                 a user namespace needs one",
                source.display()
            ),
        ),
        _ => InitError::step(format_args!("{field} {}", source.display()), e),
    }
}

/// The container's rootfs, detached.
fn rootfs(o: &RootfsMount, userns: &OwnedFd, uid: u32, gid: u32) -> Result<OwnedFd, InitError> {
    let failed = |e| InitError::step("an idmapped rootfs", e);
    if o.upper.as_os_str().is_empty() {
        if let [layer] = o.lower.as_slice() {
            return idmapped_clone(layer, userns, false, MOUNT_ATTR_RDONLY)
                .map_err(|e| refused("rootfs.lower", layer, e));
        }
        return overlay_mount(&o.lower, None, userns).map_err(failed);
    }
    nix::unistd::chown(
        &o.upper,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| InitError::step(format_args!("chown {}", o.upper.display()), e))?;
    overlay_mount(&o.lower, Some((&o.upper, &o.work)), userns).map_err(failed)
}

/// An overlay of idmapped `lower` layers (topmost first) with a plain upper and work dir
/// when given (else read-only), made by this process (the host's root): a detached mount.
fn overlay_mount(
    lower: &[PathBuf],
    upper: Option<(&PathBuf, &PathBuf)>,
    userns: &OwnedFd,
) -> Result<OwnedFd, String> {
    if lower.is_empty() {
        return Err("no lower layer".into());
    }
    // One idmapped clone per parent dir (the snapshots dir, usually): its layers are
    // opened beneath it.
    let mut parents: Vec<(PathBuf, OwnedFd)> = Vec::new();
    let mut layers = Vec::with_capacity(lower.len());
    for layer in lower {
        let (Some(parent), Some(name)) = (layer.parent(), layer.file_name()) else {
            return Err(format!("{}: not a layer dir", layer.display()));
        };
        if !parents.iter().any(|(p, _)| p == parent) {
            let tree = idmapped_clone(parent, userns, false, 0).map_err(|e| {
                format!(
                    "{}: an idmapped mount of its filesystem is refused: {e}",
                    parent.display()
                )
            })?;
            parents.push((parent.to_path_buf(), tree));
        }
        let tree = parents
            .iter()
            .find(|(p, _)| p == parent)
            .map(|(_, fd)| fd)
            .ok_or("lost a layer's parent")?;
        layers.push(
            open_dir_at(tree, name.as_bytes())
                .map_err(|e| format!("opening {}: {e}", layer.display()))?,
        );
    }
    let fs = fsopen("overlay").map_err(|e| format!("fsopen(overlay): {e}"))?;
    for (layer, path) in layers.iter().zip(lower) {
        fsconfig_fd(&fs, "lowerdir+", layer)
            .map_err(|e| format!("lowerdir+ {}: {e}{}", path.display(), fs_log(&fs)))?;
    }
    if let Some((upper, work)) = upper {
        for (key, dir) in [("upperdir", upper), ("workdir", work)] {
            let fd = open_dir(dir).map_err(|e| format!("opening {}: {e}", dir.display()))?;
            fsconfig_fd(&fs, key, &fd)
                .map_err(|e| format!("{key} {}: {e}{}", dir.display(), fs_log(&fs)))?;
        }
    } else {
        fsconfig_flag(&fs, "ro").map_err(|e| format!("ro: {e}{}", fs_log(&fs)))?;
    }
    fsconfig_create(&fs).map_err(|e| format!("creating the overlay: {e}{}", fs_log(&fs)))?;
    let attrs = if upper.is_some() {
        0
    } else {
        MOUNT_ATTR_RDONLY
    };
    fsmount(&fs, attrs).map_err(|e| format!("fsmount: {e}"))
}

/// A detached clone of the mount at `path` (and those below it when `recursive`),
/// idmapped with `userns`, plus `attrs`.
fn idmapped_clone(
    path: &Path,
    userns: &OwnedFd,
    recursive: bool,
    attrs: u64,
) -> Result<OwnedFd, Errno> {
    let path = cstring(path.as_os_str().as_bytes())?;
    let rec = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: a valid C string; the kernel returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec,
        )
    };
    let tree = owned(fd)?;
    set_idmap(&tree, userns, recursive, attrs)?;
    Ok(tree)
}

/// mount_setattr(MOUNT_ATTR_IDMAP | `attrs`) on the detached mount `tree`.
fn set_idmap(tree: &OwnedFd, userns: &OwnedFd, recursive: bool, attrs: u64) -> Result<(), Errno> {
    let rec = if recursive { AT_RECURSIVE } else { 0 };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: `tree` is an open fd, the path an empty C string (AT_EMPTY_PATH), `attr` a
    // live struct of the size passed; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | rec,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(Errno::last()),
    }
}

/// Attach the detached mount `mount` on the path `target` is open on (O_PATH).
pub fn attach(mount: &OwnedFd, target: &OwnedFd) -> Result<(), Errno> {
    // SAFETY: two open fds and empty C strings (the *_EMPTY_PATH flags: the fds themselves).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(Errno::last()),
    }
}

fn cstring(bytes: &[u8]) -> Result<CString, Errno> {
    CString::new(bytes).map_err(|_| Errno::EINVAL)
}

fn owned(fd: libc::c_long) -> Result<OwnedFd, Errno> {
    match fd {
        -1 => Err(Errno::last()),
        // SAFETY: the kernel just returned this fd and nothing else owns it.
        fd => Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    let path = cstring(path.as_os_str().as_bytes())?;
    // SAFETY: a valid C string.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    owned(fd as libc::c_long)
}

fn open_dir_at(dir: &OwnedFd, name: &[u8]) -> Result<OwnedFd, Errno> {
    let name = cstring(name)?;
    // SAFETY: an open dir fd and a valid C string; O_NOFOLLOW: a layer is a real dir.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    owned(fd as libc::c_long)
}

fn fsopen(fs: &str) -> Result<OwnedFd, Errno> {
    let fs = cstring(fs.as_bytes())?;
    // SAFETY: a valid C string.
    owned(unsafe { libc::syscall(libc::SYS_fsopen, fs.as_ptr(), FSOPEN_CLOEXEC) })
}

fn fsconfig(fs: &OwnedFd, cmd: libc::c_uint, key: Option<&str>, aux: RawFd) -> Result<(), Errno> {
    let key = key.map(|k| cstring(k.as_bytes())).transpose()?;
    let key_ptr = key.as_ref().map_or(std::ptr::null(), |k| k.as_ptr());
    // SAFETY: an fs context fd, a C string or null, no value pointer, an fd or 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            key_ptr,
            std::ptr::null::<libc::c_char>(),
            aux,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(Errno::last()),
    }
}

fn fsconfig_fd(fs: &OwnedFd, key: &str, fd: &OwnedFd) -> Result<(), Errno> {
    fsconfig(fs, FSCONFIG_SET_FD, Some(key), fd.as_raw_fd())
}

fn fsconfig_flag(fs: &OwnedFd, key: &str) -> Result<(), Errno> {
    fsconfig(fs, FSCONFIG_SET_FLAG, Some(key), 0)
}

fn fsconfig_create(fs: &OwnedFd) -> Result<(), Errno> {
    fsconfig(fs, FSCONFIG_CMD_CREATE, None, 0)
}

fn fsmount(fs: &OwnedFd, attrs: u64) -> Result<OwnedFd, Errno> {
    // SAFETY: an fs context fd on which the superblock was created.
    owned(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
}

/// What the filesystem said about a failed fsconfig (its message log), as ": msg; msg".
fn fs_log(fs: &OwnedFd) -> String {
    let mut out = String::new();
    let mut buf = [0u8; 512];
    // A few messages at most; the fd is blocking only while the log has some.
    for _ in 0..8 {
        // SAFETY: reading into a live buffer of the length passed.
        let n = unsafe { libc::read(fs.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.push_str("; ");
        out.push_str(&String::from_utf8_lossy(&buf[..n as usize]));
    }
    out
}

/// What [`super::probe_user_namespaces`] checks, in `dir` (holding empty `lower`,
/// `upper` and `work` dirs).
pub fn probe(dir: &Path, state_dir: &Path, userns: &OwnedFd) -> Result<(), String> {
    for fs in [dir, state_dir] {
        idmapped_clone(fs, userns, false, 0)
            .map_err(|e| format!("idmapped mount of {}: {e}", fs.display()))?;
    }
    // The pod's shm is a tmpfs (idmappable since Linux 6.3): a detached one, never seen.
    let tmpfs = fsopen("tmpfs").map_err(|e| format!("fsopen(tmpfs): {e}"))?;
    fsconfig_create(&tmpfs).map_err(|e| format!("tmpfs: {e}"))?;
    let tmpfs = fsmount(&tmpfs, 0).map_err(|e| format!("fsmount(tmpfs): {e}"))?;
    set_idmap(&tmpfs, userns, false, 0).map_err(|e| format!("idmapped tmpfs: {e}"))?;
    let upper = dir.join("upper");
    let work = dir.join("work");
    overlay_mount(&[dir.join("lower")], Some((&upper, &work)), userns)
        .map(|_| ())
        .map_err(|e| format!("overlay over idmapped layers: {e}"))
}
