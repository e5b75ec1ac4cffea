//! Unpacking one OCI image layer into its own overlayfs snapshot (a lowerdir).
//!
//! Each layer lands in an empty directory of its own, never on top of its parents, so OCI
//! whiteouts cannot be applied by deleting files: they become overlayfs whiteouts (a 0:0
//! character device) and opaque markers (`trusted.overlay.opaque=y`) instead, as containerd's
//! overlayfs applier does.
//!
//! Layer tars are hostile. The `tar` crate only parses; every write here is made relative to a
//! directory fd reached from `dest` one component at a time with `O_NOFOLLOW`, so no entry can
//! escape through `..`, an absolute path, a symlinked parent or a hard link pointing outside.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{
    fchmodat, fstatat, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, FileStat, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::{Archive, Entry, EntryType};

use super::limits::{ImageLimits, LimitExceeded};
use super::targuard::TarGuard;
use crate::fstree::truncated;

/// Counts of what was written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry that would write outside the snapshot, or is otherwise hostile. `path` is the entry's path as in the tar.
    #[error("layer entry {path:?} rejected: {reason}")]
    UnsafeEntry { path: String, reason: String },
    #[error("reading layer tar: {0}")]
    Tar(#[source] std::io::Error),
    /// The layer goes past one of `[image]`'s bounds.
    #[error("layer {0}")]
    Limit(#[from] LimitExceeded),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// overlayfs reads its own state from these; a layer must express it only through OCI whiteouts.
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
/// Parents missing from the tar are created the way tar creates them.
const IMPLIED_DIR_MODE: u32 = 0o755;
const COPY_BUF_LEN: usize = 64 * 1024;

/// Unpack an uncompressed layer tar into `dest` (an existing, empty directory), within the
/// default [`ImageLimits`]. On error the caller removes `dest`; this function need not clean up.
pub fn unpack_layer<R: std::io::Read>(
    tar: R,
    dest: &std::path::Path,
) -> Result<UnpackStats, UnpackError> {
    unpack_layer_within(tar, dest, &ImageLimits::default())
}

/// [`unpack_layer`] within `limits`: the depth and length of every entry's path (and link
/// target), the number of entries and the bytes written to files. The bytes of the tar
/// stream itself are bounded by the caller's reader ([`LimitedReader`]).
pub fn unpack_layer_within<R: std::io::Read>(
    tar: R,
    dest: &std::path::Path,
    limits: &ImageLimits,
) -> Result<UnpackStats, UnpackError> {
    let root = Dir::open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error("open", dest.to_path_buf(), e))?;
    let snapshot = Snapshot {
        dest,
        root,
        // Without root the ids in the tar cannot be applied; files keep the caller's.
        chown: nix::unistd::geteuid().is_root(),
        limits,
    };
    let mut progress = Progress {
        dirs: Vec::new(),
        stats: UnpackStats::default(),
        buf: vec![0; COPY_BUF_LEN],
    };
    // The guard refuses long-name and PAX members too large to buffer, before the tar crate
    // reads them whole.
    let mut archive = Archive::new(TarGuard::new(tar, limits.max_path_bytes.into()));
    let mut seen: u64 = 0;
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        // Every member counts, skipped ones too: each costs a header to parse.
        seen += 1;
        if seen > limits.max_layer_entries {
            return Err(LimitExceeded::new(
                "max_layer_entries",
                limits.max_layer_entries,
                format!("more than {} entries", limits.max_layer_entries),
            )
            .into());
        }
        snapshot.entry(&mut entry, &mut progress)?;
    }
    snapshot.finish_dirs(progress.dirs)?;
    Ok(progress.stats)
}

/// Wrap a compressed layer stream in the right decoder. `media_type` is the descriptor's media type
/// (OCI or Docker: ...tar+gzip, ...tar.gzip, ...tar+zstd, ...tar, application/vnd.docker.image.rootfs.diff.tar.gzip, etc.).
/// When the media type says nothing clear, sniff the magic bytes (gzip 1f 8b, zstd 28 b5 2f fd, else plain tar).
pub fn decompress<'a, R: std::io::BufRead + 'a>(
    media_type: &str,
    reader: R,
) -> Result<Box<dyn std::io::Read + 'a>, UnpackError> {
    match compression_from_media_type(media_type)? {
        Some(compression) => wrap(compression, reader),
        None => {
            let mut reader = reader;
            // Read the magic rather than peek with fill_buf: one read may return fewer bytes.
            let mut magic = Vec::with_capacity(ZSTD_MAGIC.len());
            (&mut reader)
                .take(ZSTD_MAGIC.len() as u64)
                .read_to_end(&mut magic)
                .map_err(tar_err)?;
            let compression = sniff(&magic);
            wrap(compression, io::Cursor::new(magic).chain(reader))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Plain,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// `None` when the media type does not name a compression, so the caller sniffs.
fn compression_from_media_type(media_type: &str) -> Result<Option<Compression>, UnpackError> {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence.ends_with("+encrypted") {
        return Err(UnpackError::Tar(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("encrypted layers are not supported ({media_type})"),
        )));
    }
    let compression = if [".tar.gzip", "+gzip", ".tar.gz", "+gz"]
        .iter()
        .any(|s| essence.ends_with(s))
    {
        Some(Compression::Gzip)
    } else if [".tar.zstd", "+zstd"].iter().any(|s| essence.ends_with(s)) {
        Some(Compression::Zstd)
    } else if essence.ends_with(".tar") || essence == "application/x-tar" {
        Some(Compression::Plain)
    } else {
        None
    };
    Ok(compression)
}

fn sniff(magic: &[u8]) -> Compression {
    if magic.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if magic.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::Plain
    }
}

fn wrap<'a, R: BufRead + 'a>(
    compression: Compression,
    reader: R,
) -> Result<Box<dyn Read + 'a>, UnpackError> {
    Ok(match compression {
        Compression::Plain => Box::new(reader),
        // Multi-member: pigz and eStargz layers are several concatenated gzip streams.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(tar_err)?)
        }
    })
}

/// What an entry's base name means under the OCI whiteout rules.
#[derive(Debug, PartialEq, Eq)]
enum Whiteout {
    /// An ordinary name.
    None,
    /// `.wh..wh..opq`: the parent directory hides everything below it in lower layers.
    Opaque,
    /// `.wh.<name>`: `<name>` is deleted from lower layers.
    File(OsString),
    /// Other `.wh..wh.` names: AUFS bookkeeping, meaningless to overlayfs.
    Skip,
    /// `.wh.` naming nothing, `.` or `..`.
    Invalid,
}

fn classify_whiteout(name: &OsStr) -> Whiteout {
    let name = name.as_bytes();
    if name == WHITEOUT_OPAQUE {
        Whiteout::Opaque
    } else if name.starts_with(WHITEOUT_META_PREFIX) {
        Whiteout::Skip
    } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        match hidden {
            b"" | b"." | b".." => Whiteout::Invalid,
            _ => Whiteout::File(OsStr::from_bytes(hidden).to_owned()),
        }
    } else {
        Whiteout::None
    }
}

/// Splits an entry path into the names to walk from the snapshot root.
fn sanitize(path: &Path) -> Result<Vec<OsString>, String> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => names.push(name.to_owned()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
            Component::ParentDir => return Err("path contains \"..\"".into()),
        }
    }
    if names.is_empty() {
        return Err("empty path".into());
    }
    Ok(names)
}

/// `.` or `./`: many layers built with `tar -C dir .` carry the root's own metadata.
fn names_root(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| c == Component::CurDir)
}

/// Parses a PAX time (`1700000000.123456789`, possibly negative) into seconds and nanoseconds.
fn parse_pax_time(value: &[u8]) -> Option<(i64, i64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let negative = whole.starts_with('-');
    let mut secs: i64 = whole.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let mut nanos: i64 = digits.parse().ok()?;
    if negative && nanos > 0 {
        secs = secs.checked_sub(1)?;
        nanos = 1_000_000_000 - nanos;
    }
    Some((secs, nanos))
}

/// Ownership, mode, time and xattrs of one entry, from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Meta {
    fn read<R: Read>(entry: &mut Entry<'_, R>, raw: &str) -> Result<Self, UnpackError> {
        let header = entry.header();
        let mode = header.mode().map_err(tar_err)? & 0o7777;
        let mut uid = header.uid().map_err(tar_err)?;
        let mut gid = header.gid().map_err(tar_err)?;
        let mut mtime = (
            i64::try_from(header.mtime().map_err(tar_err)?).unwrap_or(i64::MAX),
            0,
        );
        let mut xattrs = Vec::new();
        if let Some(extensions) = entry.pax_extensions().map_err(tar_err)? {
            for extension in extensions {
                let extension = extension.map_err(tar_err)?;
                let key = extension.key_bytes();
                let value = extension.value_bytes();
                let number = || std::str::from_utf8(value).ok()?.parse::<u64>().ok();
                match key {
                    b"uid" => uid = number().ok_or_else(|| unsafe_entry(raw, "bad PAX uid"))?,
                    b"gid" => gid = number().ok_or_else(|| unsafe_entry(raw, "bad PAX gid"))?,
                    b"mtime" => {
                        mtime = parse_pax_time(value)
                            .ok_or_else(|| unsafe_entry(raw, "bad PAX mtime"))?
                    }
                    _ => {
                        if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                            xattrs.push((OsStr::from_bytes(name).to_owned(), value.to_vec()));
                        }
                    }
                }
            }
        }
        let id = |id: u64, what: &str| {
            u32::try_from(id).map_err(|_| unsafe_entry(raw, format!("{what} {id} out of range")))
        };
        Ok(Meta {
            mode,
            uid: id(uid, "uid")?,
            gid: id(gid, "gid")?,
            mtime: timespec(mtime.0, mtime.1),
            xattrs,
        })
    }
}

fn device(header: &tar::Header) -> Result<libc::dev_t, UnpackError> {
    let major = header.device_major().map_err(tar_err)?.unwrap_or(0);
    let minor = header.device_minor().map_err(tar_err)?.unwrap_or(0);
    Ok(makedev(major.into(), minor.into()))
}

fn timespec(secs: i64, nanos: i64) -> TimeSpec {
    TimeSpec::from(libc::timespec {
        tv_sec: libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::try_from(nanos).unwrap_or(0),
    })
}

/// A directory whose mode and times are applied after the whole layer is written, since
/// writing its children would change its mtime (and a read-only mode could block them).
struct DeferredDir {
    names: Vec<OsString>,
    mode: u32,
    mtime: TimeSpec,
}

impl Progress {
    fn defer_dir(&mut self, names: Vec<OsString>, meta: &Meta) {
        self.dirs.push(DeferredDir {
            names,
            mode: meta.mode,
            mtime: meta.mtime,
        });
    }
}

/// Streams a regular file's contents into a new file `name`; never buffers the whole file.
fn write_file<R: Read>(
    raw: &str,
    entry: &mut Entry<'_, R>,
    parent: &DirFd<'_>,
    name: &OsStr,
    host: &Path,
    buf: &mut [u8],
    (budget, limit): (u64, u64),
) -> Result<u64, UnpackError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(proc_path(parent.fd(), name))
        .map_err(|e| io_error("create", host.to_path_buf(), e))?;
    let expected = entry.size();
    let mut written: u64 = 0;
    loop {
        let n = match entry.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(tar_err(e)),
        };
        // Counted as written, not as the header says: sparse entries expand their holes.
        written += n as u64;
        if written > budget {
            return Err(LimitExceeded::new(
                "max_layer_bytes",
                limit,
                format!(
                    "more than {limit} bytes written to files (at {})",
                    truncated(raw.as_bytes())
                ),
            )
            .into());
        }
        file.write_all(&buf[..n])
            .map_err(|e| io_error("write", host.to_path_buf(), e))?;
    }
    if written != expected {
        return Err(UnpackError::Tar(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("entry {raw:?} ended after {written} of {expected} bytes"),
        )));
    }
    Ok(written)
}

/// A directory fd: the snapshot root, or a directory opened beneath it.
enum DirFd<'a> {
    Root(&'a Dir),
    Sub(Dir),
}

impl DirFd<'_> {
    fn fd(&self) -> RawFd {
        match self {
            DirFd::Root(dir) => dir.as_raw_fd(),
            DirFd::Sub(dir) => dir.as_raw_fd(),
        }
    }
}

/// Why a walk from the root stopped.
enum WalkError {
    Symlink,
    NotDir,
    Missing,
    Io {
        op: &'static str,
        depth: usize,
        errno: Errno,
    },
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

fn open_dir(parent: RawFd, name: &OsStr) -> nix::Result<Dir> {
    Dir::openat(Some(parent), name, DIR_FLAGS, Mode::empty())
}

/// A path naming `name` inside the directory open as `dir`. The kernel resolves the
/// `/proc/self/fd` link to that very directory, never by re-walking its path, so this is as
/// safe as an `*at` call. It is used where nix 0.29 has no `*at` form returning an owned fd
/// (opening a file to write) or none at all (xattrs).
fn proc_path(dir: RawFd, name: &OsStr) -> PathBuf {
    let mut path = PathBuf::from(format!("/proc/self/fd/{dir}"));
    path.push(name);
    path
}

fn stat_at(dir: RawFd, name: &OsStr) -> nix::Result<FileStat> {
    fstatat(Some(dir), name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

fn file_type(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// A read error of the tar stream; a bound the stream reader enforces comes back as itself.
pub(crate) fn tar_err(e: io::Error) -> UnpackError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<LimitExceeded>())
    {
        Some(limit) => UnpackError::Limit(limit.clone()),
        None => UnpackError::Tar(e),
    }
}

/// Counts the bytes read through it against the layer's bound and the image's shared one,
/// failing the read that goes past either: decompressed bytes are counted as they come,
/// whatever the tar headers claim, so a gzip bomb stops at the bound.
pub struct LimitedReader<'a, R> {
    inner: R,
    read: u64,
    max: u64,
    image: Option<&'a ImageBudget>,
}

/// Decompressed bytes left to one pull, shared by its concurrent layer unpacks.
#[derive(Debug)]
pub struct ImageBudget {
    used: std::sync::atomic::AtomicU64,
    max: u64,
}

impl ImageBudget {
    pub fn new(max: u64) -> Self {
        ImageBudget {
            used: std::sync::atomic::AtomicU64::new(0),
            max,
        }
    }
}

impl<'a, R> LimitedReader<'a, R> {
    pub fn new(inner: R, max: u64, image: Option<&'a ImageBudget>) -> Self {
        LimitedReader {
            inner,
            read: 0,
            max,
            image,
        }
    }
}

impl<R: Read> Read for LimitedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.max {
            return Err(io::Error::other(LimitExceeded::new(
                "max_layer_bytes",
                self.max,
                format!("more than {} bytes once decompressed", self.max),
            )));
        }
        if let Some(image) = self.image {
            let used = image
                .used
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed)
                + n as u64;
            if used > image.max {
                return Err(io::Error::other(LimitExceeded::new(
                    "max_image_bytes",
                    image.max,
                    format!(
                        "the image's layers hold more than {} bytes once decompressed",
                        image.max
                    ),
                )));
            }
        }
        Ok(n)
    }
}

fn unsafe_entry(path: &str, reason: impl Into<String>) -> UnpackError {
    UnpackError::UnsafeEntry {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn io_error(op: &'static str, path: PathBuf, source: impl Into<io::Error>) -> UnpackError {
    UnpackError::Io {
        op,
        path,
        source: source.into(),
    }
}

/// The snapshot being written; every write goes through a directory fd walked from `root`.
struct Snapshot<'d> {
    dest: &'d Path,
    root: Dir,
    chown: bool,
    limits: &'d ImageLimits,
}

/// What the unpack has done so far.
struct Progress {
    dirs: Vec<DeferredDir>,
    stats: UnpackStats,
    buf: Vec<u8>,
}

impl Snapshot<'_> {
    fn host_path(&self, names: &[OsString]) -> PathBuf {
        let mut path = self.dest.to_path_buf();
        path.extend(names);
        path
    }

    /// An entry's path and link target within `max_path_bytes`, checked before either is
    /// copied anywhere.
    fn check_lengths<R: Read>(&self, entry: &Entry<'_, R>) -> Result<(), UnpackError> {
        let max = u64::from(self.limits.max_path_bytes);
        let path = entry.path_bytes();
        if path.len() as u64 > max {
            return Err(LimitExceeded::new(
                "max_path_bytes",
                max,
                format!(
                    "entry {:?} has a path of {} bytes",
                    truncated(&path),
                    path.len()
                ),
            )
            .into());
        }
        if let Some(target) = entry.link_name_bytes() {
            if target.len() as u64 > max {
                return Err(LimitExceeded::new(
                    "max_path_bytes",
                    max,
                    format!(
                        "entry {:?} links to a target of {} bytes",
                        truncated(&path),
                        target.len()
                    ),
                )
                .into());
            }
        }
        Ok(())
    }

    /// Refuses a path more than `max_depth` names deep: each entry is reached by walking
    /// its parents from the root, and the tree must stay walkable by every tool.
    fn check_depth(&self, raw: &str, names: &[OsString]) -> Result<(), UnpackError> {
        let max = self.limits.max_depth;
        if names.len() as u64 > u64::from(max) {
            return Err(LimitExceeded::new(
                "max_depth",
                u64::from(max),
                format!(
                    "entry {:?} is {} directories deep",
                    truncated(raw.as_bytes()),
                    names.len()
                ),
            )
            .into());
        }
        Ok(())
    }

    /// Opens the directory `names` below the root without following any symlink, creating
    /// missing ones when `create` is set.
    fn walk(&self, names: &[OsString], create: bool) -> Result<DirFd<'_>, WalkError> {
        let mut current = DirFd::Root(&self.root);
        for (depth, name) in names.iter().enumerate() {
            let parent = current.fd();
            let opened = match open_dir(parent, name) {
                Err(Errno::ENOENT) if create => {
                    match mkdirat(
                        Some(parent),
                        name.as_os_str(),
                        Mode::from_bits_truncate(IMPLIED_DIR_MODE),
                    ) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(errno) => {
                            return Err(WalkError::Io {
                                op: "mkdir",
                                depth,
                                errno,
                            })
                        }
                    }
                    open_dir(parent, name)
                }
                other => other,
            };
            let next = match opened {
                Ok(dir) => dir,
                Err(Errno::ENOENT) => return Err(WalkError::Missing),
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    return Err(match stat_at(parent, name) {
                        Ok(stat) if file_type(&stat) == SFlag::S_IFLNK => WalkError::Symlink,
                        _ => WalkError::NotDir,
                    })
                }
                Err(errno) => {
                    return Err(WalkError::Io {
                        op: "open",
                        depth,
                        errno,
                    })
                }
            };
            current = DirFd::Sub(next);
        }
        Ok(current)
    }

    /// `walk` for an entry, turning a refusal into `UnsafeEntry`.
    fn walk_for(
        &self,
        raw: &str,
        names: &[OsString],
        create: bool,
        what: &str,
    ) -> Result<DirFd<'_>, UnpackError> {
        self.walk(names, create).map_err(|e| match e {
            WalkError::Symlink => unsafe_entry(raw, format!("{what}path traverses a symlink")),
            WalkError::NotDir => unsafe_entry(raw, format!("{what}path traverses a non-directory")),
            WalkError::Missing => {
                unsafe_entry(raw, format!("{what}path does not exist in this layer"))
            }
            WalkError::Io { op, depth, errno } => {
                io_error(op, self.host_path(&names[..=depth]), errno)
            }
        })
    }

    fn entry<R: Read>(
        &self,
        entry: &mut Entry<'_, R>,
        progress: &mut Progress,
    ) -> Result<(), UnpackError> {
        self.check_lengths(entry)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            tracing::debug!(path = %raw, "ignoring PAX global header");
            return Ok(());
        }
        let meta = Meta::read(entry, &raw)?;
        let path = entry.path().map_err(tar_err)?.into_owned();

        if names_root(&path) {
            if kind != EntryType::Directory {
                return Err(unsafe_entry(
                    &raw,
                    "names the layer root but is not a directory",
                ));
            }
            let root = DirFd::Root(&self.root);
            self.apply_owner_and_xattrs(&root, OsStr::new("."), self.dest, &meta)?;
            progress.defer_dir(Vec::new(), &meta);
            progress.stats.entries += 1;
            return Ok(());
        }

        let names = sanitize(&path).map_err(|reason| unsafe_entry(&raw, reason))?;
        self.check_depth(&raw, &names)?;
        let Some((name, parents)) = names.split_last() else {
            return Err(unsafe_entry(&raw, "empty path"));
        };
        // Everything under an AUFS metadata directory (`.wh..wh.plnk/...`) is bookkeeping too.
        if parents
            .iter()
            .any(|n| n.as_bytes().starts_with(WHITEOUT_META_PREFIX))
        {
            tracing::debug!(path = %raw, "skipping AUFS metadata entry");
            return Ok(());
        }
        match classify_whiteout(name) {
            Whiteout::None => {}
            Whiteout::Opaque => {
                self.opaque(&raw, parents)?;
                progress.stats.entries += 1;
                return Ok(());
            }
            Whiteout::File(hidden) => {
                if self.whiteout(&raw, parents, &hidden)? {
                    progress.stats.entries += 1;
                }
                return Ok(());
            }
            Whiteout::Skip => {
                tracing::debug!(path = %raw, "skipping AUFS metadata entry");
                return Ok(());
            }
            Whiteout::Invalid => return Err(unsafe_entry(&raw, "invalid whiteout name")),
        }

        let parent = self.walk_for(&raw, parents, true, "")?;
        let host = self.host_path(&names);
        match kind {
            EntryType::Directory => {
                if !self.clear_slot(&raw, &parent, name, true, &host)? {
                    // Owner-only until finish_dirs, so a read-only mode cannot block children.
                    mkdirat(Some(parent.fd()), name.as_os_str(), Mode::S_IRWXU)
                        .map_err(|e| io_error("mkdir", host.clone(), e))?;
                }
                self.apply_owner_and_xattrs(&parent, name, &host, &meta)?;
                progress.defer_dir(names.clone(), &meta);
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear_slot(&raw, &parent, name, false, &host)?;
                let limit = self.limits.max_layer_bytes;
                let budget = limit.saturating_sub(progress.stats.bytes);
                let written = write_file(
                    &raw,
                    entry,
                    &parent,
                    name,
                    &host,
                    &mut progress.buf,
                    (budget, limit),
                )?;
                self.apply_meta(&parent, name, &host, &meta, true)?;
                progress.stats.bytes += written;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(tar_err)?
                    .ok_or_else(|| unsafe_entry(&raw, "symlink without a target"))?
                    .into_owned();
                self.clear_slot(&raw, &parent, name, false, &host)?;
                // The target is only text here; it is resolved inside the container later.
                symlinkat(target.as_path(), Some(parent.fd()), name.as_os_str())
                    .map_err(|e| io_error("symlink", host.clone(), e))?;
                self.apply_meta(&parent, name, &host, &meta, false)?;
            }
            EntryType::Link => self.hard_link(&raw, entry, &parent, &names, &host)?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (file_kind, dev) = match kind {
                    EntryType::Char => (SFlag::S_IFCHR, device(entry.header())?),
                    EntryType::Block => (SFlag::S_IFBLK, device(entry.header())?),
                    _ => (SFlag::S_IFIFO, 0),
                };
                self.clear_slot(&raw, &parent, name, false, &host)?;
                mknodat(
                    Some(parent.fd()),
                    name.as_os_str(),
                    file_kind,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                    dev,
                )
                .map_err(|e| io_error("mknod", host.clone(), e))?;
                self.apply_meta(&parent, name, &host, &meta, true)?;
            }
            other => {
                return Err(unsafe_entry(
                    &raw,
                    format!("unsupported entry type {:?}", other.as_byte() as char),
                ))
            }
        }
        progress.stats.entries += 1;
        Ok(())
    }

    /// Makes room for a new entry named `name`. Returns whether a directory is already there
    /// and was kept (only when `keep_dir`).
    fn clear_slot(
        &self,
        raw: &str,
        parent: &DirFd<'_>,
        name: &OsStr,
        keep_dir: bool,
        host: &Path,
    ) -> Result<bool, UnpackError> {
        let stat = match stat_at(parent.fd(), name) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(io_error("stat", host.to_path_buf(), e)),
        };
        if file_type(&stat) != SFlag::S_IFDIR {
            unlinkat(Some(parent.fd()), name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| io_error("unlink", host.to_path_buf(), e))?;
            return Ok(false);
        }
        if keep_dir {
            return Ok(true);
        }
        // Like tar, only an empty directory gives way to a non-directory.
        match unlinkat(Some(parent.fd()), name, UnlinkatFlags::RemoveDir) {
            Ok(()) => Ok(false),
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => Err(unsafe_entry(
                raw,
                "would replace a non-empty directory written earlier in this layer",
            )),
            Err(e) => Err(io_error("rmdir", host.to_path_buf(), e)),
        }
    }

    fn hard_link<R: Read>(
        &self,
        raw: &str,
        entry: &Entry<'_, R>,
        parent: &DirFd<'_>,
        names: &[OsString],
        host: &Path,
    ) -> Result<(), UnpackError> {
        let target = entry
            .link_name()
            .map_err(tar_err)?
            .ok_or_else(|| unsafe_entry(raw, "hard link without a target"))?;
        let target_names = sanitize(&target)
            .map_err(|reason| unsafe_entry(raw, format!("hard link target: {reason}")))?;
        self.check_depth(raw, &target_names)?;
        if target_names == names {
            return Ok(());
        }
        let Some((target_name, target_parents)) = target_names.split_last() else {
            return Err(unsafe_entry(raw, "hard link target: empty path"));
        };
        let target_parent = self.walk_for(raw, target_parents, false, "hard link target: ")?;
        match stat_at(target_parent.fd(), target_name) {
            Ok(stat) if file_type(&stat) == SFlag::S_IFDIR => {
                return Err(unsafe_entry(raw, "hard link target is a directory"))
            }
            Ok(_) => {}
            Err(Errno::ENOENT) => {
                return Err(unsafe_entry(
                    raw,
                    "hard link target does not exist in this layer",
                ))
            }
            Err(e) => return Err(io_error("stat", self.host_path(&target_names), e)),
        }
        let Some(name) = names.last() else {
            return Err(unsafe_entry(raw, "empty path"));
        };
        self.clear_slot(raw, parent, name, false, host)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        linkat(
            Some(target_parent.fd()),
            target_name.as_os_str(),
            Some(parent.fd()),
            name.as_os_str(),
            AtFlags::empty(),
        )
        .map_err(|e| io_error("link", host.to_path_buf(), e))?;
        // The new name shares the target's inode, and with it the target's metadata.
        Ok(())
    }

    fn opaque(&self, raw: &str, dir_names: &[OsString]) -> Result<(), UnpackError> {
        let dir = self.walk_for(raw, dir_names, true, "")?;
        xattr::set(proc_path(dir.fd(), OsStr::new(".")), OPAQUE_XATTR, b"y")
            .map_err(|e| io_error("set opaque xattr on", self.host_path(dir_names), e))
    }

    /// Returns whether a whiteout was written.
    fn whiteout(
        &self,
        raw: &str,
        dir_names: &[OsString],
        hidden: &OsStr,
    ) -> Result<bool, UnpackError> {
        let dir = self.walk_for(raw, dir_names, true, "")?;
        let mut names = dir_names.to_vec();
        names.push(hidden.to_owned());
        let host = self.host_path(&names);
        match stat_at(dir.fd(), hidden) {
            // A whiteout only hides lower layers; an entry of this layer stays (OCI image spec).
            Ok(_) => {
                tracing::debug!(path = %raw, "whiteout for a name this layer also writes; ignored");
                return Ok(false);
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(io_error("stat", host, e)),
        }
        mknodat(
            Some(dir.fd()),
            hidden,
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .map_err(|e| io_error("mknod whiteout", host.clone(), e))?;
        if self.chown {
            // A setgid parent would otherwise hand its group to the whiteout.
            fchownat(
                Some(dir.fd()),
                hidden,
                Some(Uid::from_raw(0)),
                Some(Gid::from_raw(0)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_error("chown", host, e))?;
        }
        Ok(true)
    }

    /// Owner first, since chown clears setuid/setgid bits and `security.capability`.
    fn apply_owner_and_xattrs(
        &self,
        parent: &DirFd<'_>,
        name: &OsStr,
        host: &Path,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        if self.chown {
            fchownat(
                Some(parent.fd()),
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_error("chown", host.to_path_buf(), e))?;
        }
        for (key, value) in &meta.xattrs {
            if key.as_bytes().starts_with(OVERLAY_XATTR_PREFIX) {
                tracing::debug!(path = %host.display(), xattr = ?key, "dropping overlayfs xattr from layer");
                continue;
            }
            // lsetxattr: the final name is never followed.
            if let Err(e) = xattr::set(proc_path(parent.fd(), name), key, value) {
                let privileged = [b"security.".as_slice(), b"trusted."]
                    .iter()
                    .any(|p| key.as_bytes().starts_with(p));
                let refused = matches!(
                    e.raw_os_error(),
                    Some(libc::EPERM | libc::EOPNOTSUPP | libc::EACCES)
                );
                if privileged && refused {
                    tracing::debug!(path = %host.display(), xattr = ?key, error = %e, "xattr not permitted here; skipped");
                    continue;
                }
                return Err(io_error(
                    "setxattr",
                    host.to_path_buf(),
                    io::Error::new(e.kind(), format!("{}: {e}", key.to_string_lossy())),
                ));
            }
        }
        Ok(())
    }

    /// Metadata for a non-directory. `chmod` is false for symlinks, whose mode Linux ignores.
    fn apply_meta(
        &self,
        parent: &DirFd<'_>,
        name: &OsStr,
        host: &Path,
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), UnpackError> {
        self.apply_owner_and_xattrs(parent, name, host, meta)?;
        if chmod {
            // Following is safe: `name` was created by this unpack as a non-symlink, and
            // Linux fchmodat cannot refuse to follow without a /proc fallback.
            fchmodat(
                Some(parent.fd()),
                name,
                Mode::from_bits_truncate(meta.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| io_error("chmod", host.to_path_buf(), e))?;
        }
        utimensat(
            Some(parent.fd()),
            name,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| io_error("set times on", host.to_path_buf(), e))
    }

    /// Applies directory modes and times once every child is written.
    fn finish_dirs(&self, mut dirs: Vec<DeferredDir>) -> Result<(), UnpackError> {
        // Deepest first; the stable sort keeps a later entry for the same directory last.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.names.len()));
        for dir in &dirs {
            let host = self.host_path(&dir.names);
            let (parent, name) = match dir.names.split_last() {
                None => (DirFd::Root(&self.root), OsStr::new(".")),
                Some((name, parents)) => match self.walk(parents, false) {
                    Ok(parent) => (parent, name.as_os_str()),
                    // A later entry replaced a parent; this directory is gone.
                    Err(WalkError::Symlink | WalkError::NotDir | WalkError::Missing) => continue,
                    Err(WalkError::Io { op, depth, errno }) => {
                        return Err(io_error(op, self.host_path(&dir.names[..=depth]), errno))
                    }
                },
            };
            match stat_at(parent.fd(), name) {
                Ok(stat) if file_type(&stat) == SFlag::S_IFDIR => {}
                Ok(_) | Err(Errno::ENOENT) => continue,
                Err(e) => return Err(io_error("stat", host, e)),
            }
            fchmodat(
                Some(parent.fd()),
                name,
                Mode::from_bits_truncate(dir.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| io_error("chmod", host.clone(), e))?;
            utimensat(
                Some(parent.fd()),
                name,
                &dir.mtime,
                &dir.mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| io_error("set times on", host, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use tar::{Builder, Header};

    fn needs_root() -> bool {
        if nix::unistd::geteuid().is_root() {
            return false;
        }
        eprintln!("skipping: needs root");
        true
    }

    /// A tar under construction, written to memory.
    struct TarBuf(Builder<Vec<u8>>);

    impl TarBuf {
        fn new() -> Self {
            TarBuf(Builder::new(Vec::new()))
        }

        fn header(kind: EntryType, mode: u32, size: u64) -> Header {
            let mut header = Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(size);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1_600_000_000);
            header
        }

        fn add(&mut self, mut header: Header, path: &str, data: &[u8]) -> &mut Self {
            if let Err(e) = self.0.append_data(&mut header, path, data) {
                panic!("appending {path}: {e}");
            }
            self
        }

        fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
            self.add(Self::header(EntryType::Directory, mode, 0), path, b"")
        }

        fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Self {
            let header = Self::header(EntryType::Regular, mode, data.len() as u64);
            self.add(header, path, data)
        }

        fn link(&mut self, kind: EntryType, path: &str, target: &str) -> &mut Self {
            let mut header = Self::header(kind, 0o777, 0);
            if let Err(e) = header.set_link_name(target) {
                panic!("link name {target}: {e}");
            }
            self.add(header, path, b"")
        }

        /// PAX records that apply to the next entry.
        fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
            let mut data = Vec::new();
            for (key, value) in records {
                // The length counts itself, so grow it until the digits fit.
                let body = key.len() + value.len() + 3;
                let mut len = body + 1;
                while body + len.to_string().len() != len {
                    len += 1;
                }
                data.extend_from_slice(format!("{len} {key}=").as_bytes());
                data.extend_from_slice(value);
                data.push(b'\n');
            }
            let header = Self::header(EntryType::XHeader, 0o644, data.len() as u64);
            self.add(header, "PaxHeaders/next", &data)
        }

        /// An entry with a name `tar::Builder` refuses to write.
        fn raw(
            &mut self,
            kind: EntryType,
            name: &[u8],
            link: Option<&[u8]>,
            data: &[u8],
        ) -> &mut Self {
            let mode = if kind == EntryType::Directory {
                0o755
            } else {
                0o644
            };
            let mut header = Self::header(kind, mode, data.len() as u64);
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            if let Some(link) = link {
                header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            }
            header.set_cksum();
            if let Err(e) = self.0.append(&header, data) {
                panic!("appending raw entry: {e}");
            }
            self
        }

        fn bytes(&mut self) -> Vec<u8> {
            if let Err(e) = self.0.finish() {
                panic!("finishing tar: {e}");
            }
            self.0.get_ref().clone()
        }
    }

    fn tempdir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    fn lstat(path: &Path) -> fs::Metadata {
        match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) => panic!("lstat {}: {e}", path.display()),
        }
    }

    /// Every path below `root`, relative to it.
    fn tree(root: &Path) -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) => panic!("read_dir {}: {e}", dir.display()),
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if lstat(&path).is_dir() {
                    stack.push(path.clone());
                }
                if let Ok(rel) = path.strip_prefix(root) {
                    out.insert(rel.to_path_buf());
                }
            }
        }
        out
    }

    fn names(path: &str) -> Vec<OsString> {
        path.split('/').map(OsString::from).collect()
    }

    #[test]
    fn sanitize_table() {
        let cases: &[(&str, Result<&[&str], &str>)] = &[
            ("a/b", Ok(&["a", "b"])),
            ("./a", Ok(&["a"])),
            ("a/./b/", Ok(&["a", "b"])),
            ("a//b", Ok(&["a", "b"])),
            ("/etc/x", Err("absolute path")),
            ("a/../../x", Err("path contains \"..\"")),
            ("..", Err("path contains \"..\"")),
            ("a/..", Err("path contains \"..\"")),
            ("", Err("empty path")),
            (".", Err("empty path")),
            ("...", Ok(&["..."])),
            (".wh...", Ok(&[".wh..."])),
        ];
        for (input, want) in cases {
            let got = sanitize(Path::new(input));
            let want = want
                .map(|names| names.iter().map(OsString::from).collect::<Vec<_>>())
                .map_err(str::to_owned);
            assert_eq!(got, want, "sanitize({input:?})");
        }
    }

    #[test]
    fn classify_whiteout_table() {
        let cases = [
            ("file", Whiteout::None),
            (".hidden", Whiteout::None),
            (".wh", Whiteout::None),
            (".wh.gone", Whiteout::File("gone".into())),
            (".wh..bashrc", Whiteout::File(".bashrc".into())),
            (".wh....", Whiteout::File("...".into())),
            (".wh..wh..opq", Whiteout::Opaque),
            (".wh..wh.plnk", Whiteout::Skip),
            (".wh..wh.aufs", Whiteout::Skip),
            (".wh.", Whiteout::Invalid),
            (".wh..", Whiteout::Invalid),
            (".wh...", Whiteout::Invalid),
        ];
        for (name, want) in cases {
            assert_eq!(classify_whiteout(OsStr::new(name)), want, "{name:?}");
        }
    }

    #[test]
    fn names_root_table() {
        for (path, want) in [
            (".", true),
            ("./", true),
            ("./.", true),
            ("", false),
            ("a", false),
            ("/", false),
        ] {
            assert_eq!(names_root(Path::new(path)), want, "{path:?}");
        }
    }

    #[test]
    fn parse_pax_time_table() {
        let cases: &[(&str, Option<(i64, i64)>)] = &[
            ("1700000000", Some((1_700_000_000, 0))),
            ("1700000000.5", Some((1_700_000_000, 500_000_000))),
            (
                "1700000000.123456789123",
                Some((1_700_000_000, 123_456_789)),
            ),
            ("-1.5", Some((-2, 500_000_000))),
            ("abc", None),
            ("1.x", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_pax_time(input.as_bytes()), *want, "{input:?}");
        }
    }

    #[test]
    fn compression_from_media_type_table() {
        let cases = [
            (
                "application/vnd.oci.image.layer.v1.tar",
                Some(Compression::Plain),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Some(Compression::Zstd),
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar",
                Some(Compression::Plain),
            ),
            (
                "Application/VND.OCI.image.layer.v1.tar+gzip; x=y",
                Some(Compression::Gzip),
            ),
            ("application/x-tar", Some(Compression::Plain)),
            ("application/octet-stream", None),
            ("", None),
        ];
        for (media_type, want) in cases {
            match compression_from_media_type(media_type) {
                Ok(got) => assert_eq!(got, want, "{media_type:?}"),
                Err(e) => panic!("{media_type:?}: {e}"),
            }
        }
        assert!(compression_from_media_type(
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
        )
        .is_err());
    }

    fn decompressed(media_type: &str, data: &[u8]) -> Vec<u8> {
        let mut reader = match decompress(media_type, data) {
            Ok(reader) => reader,
            Err(e) => panic!("decompress {media_type}: {e}"),
        };
        let mut out = Vec::new();
        if let Err(e) = reader.read_to_end(&mut out) {
            panic!("reading {media_type}: {e}");
        }
        out
    }

    #[test]
    fn decompress_by_media_type_and_magic() {
        let plain = TarBuf::new().file("hello", 0o644, b"hello, layer").bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let gzip = match gz.write_all(&plain).and_then(|()| gz.finish()) {
            Ok(gzip) => gzip,
            Err(e) => panic!("gzip: {e}"),
        };
        let zst = match zstd::encode_all(plain.as_slice(), 3) {
            Ok(zst) => zst,
            Err(e) => panic!("zstd: {e}"),
        };
        let cases: [(&str, &[u8]); 8] = [
            ("application/vnd.oci.image.layer.v1.tar+gzip", &gzip),
            ("application/vnd.docker.image.rootfs.diff.tar.gzip", &gzip),
            ("application/vnd.oci.image.layer.v1.tar+zstd", &zst),
            ("application/vnd.oci.image.layer.v1.tar", &plain),
            ("application/octet-stream", &gzip),
            ("application/octet-stream", &zst),
            ("application/octet-stream", &plain),
            ("", &plain),
        ];
        for (media_type, data) in cases {
            assert_eq!(decompressed(media_type, data), plain, "{media_type}");
        }
        // Shorter than any magic: passed through untouched.
        assert_eq!(decompressed("application/octet-stream", b"ab"), b"ab");
        assert_eq!(decompressed("application/octet-stream", b""), b"");
    }

    /// What one tar entry of the tree test holds, and so what must be on disk.
    enum Kind {
        Dir,
        File(&'static [u8]),
        Symlink(&'static str),
        HardLink(&'static str),
        Fifo,
    }

    struct Item {
        path: &'static str,
        kind: Kind,
        mode: u32,
        owner: u64,
        mtime: u64,
        xattr: Option<(&'static str, &'static [u8])>,
    }

    const fn item(path: &'static str, kind: Kind, mode: u32) -> Item {
        Item {
            path,
            kind,
            mode,
            owner: 0,
            mtime: 1_600_000_000,
            xattr: None,
        }
    }

    fn tree_items() -> Vec<Item> {
        vec![
            // Written before its children, whose writes would move its mtime.
            Item {
                mtime: 1_500_000_000,
                ..item("bin", Kind::Dir, 0o755)
            },
            item("bin/tool", Kind::File(b"#!/bin/sh\necho hi\n"), 0o755),
            item("bin/su", Kind::File(b"setuid payload"), 0o4755),
            item("bin/sgid", Kind::File(b"setgid payload"), 0o2711),
            item("bin/sh", Kind::Symlink("tool"), 0o777),
            item("bin/abs", Kind::Symlink("/etc/shadow"), 0o777),
            item("bin/tool2", Kind::HardLink("bin/tool"), 0o755),
            Item {
                owner: 1000,
                ..item("home/user", Kind::Dir, 0o750)
            },
            Item {
                owner: 1000,
                mtime: 1_234_567_890,
                xattr: Some(("user.foo", b"bar")),
                ..item("home/user/notes", Kind::File(b"private"), 0o600)
            },
            item("run/fifo", Kind::Fifo, 0o644),
            item("tmp", Kind::Dir, 0o1777),
            item("empty", Kind::File(b""), 0o444),
        ]
    }

    fn tree_tar(items: &[Item]) -> Vec<u8> {
        let mut tar = TarBuf::new();
        for it in items {
            if let Some((key, value)) = it.xattr {
                tar.pax(&[(&format!("SCHILY.xattr.{key}"), value)]);
            }
            let (kind, data, link): (_, &[u8], _) = match &it.kind {
                Kind::Dir => (EntryType::Directory, b"", None),
                Kind::File(data) => (EntryType::Regular, data, None),
                Kind::Symlink(target) => (EntryType::Symlink, b"", Some(*target)),
                Kind::HardLink(target) => (EntryType::Link, b"", Some(*target)),
                Kind::Fifo => (EntryType::Fifo, b"", None),
            };
            let mut header = TarBuf::header(kind, it.mode, data.len() as u64);
            header.set_uid(it.owner);
            header.set_gid(it.owner);
            header.set_mtime(it.mtime);
            if let Some(target) = link {
                if let Err(e) = header.set_link_name(target) {
                    panic!("{target}: {e}");
                }
            }
            tar.add(header, it.path, data);
        }
        tar.bytes()
    }

    #[test]
    fn unpacks_tree_as_the_tar_holds_it() {
        let tmp = tempdir();
        let dest = tmp.path().join("snapshot");
        if let Err(e) = fs::create_dir(&dest) {
            panic!("mkdir: {e}");
        }
        let items = tree_items();
        let stats = match unpack_layer(tree_tar(&items).as_slice(), &dest) {
            Ok(stats) => stats,
            Err(e) => panic!("unpack: {e}"),
        };
        let file_bytes: usize = items
            .iter()
            .map(|it| match it.kind {
                Kind::File(data) => data.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(
            stats,
            UnpackStats {
                entries: items.len() as u64,
                bytes: file_bytes as u64
            }
        );

        // Before any read below moves an atime.
        for it in &items {
            let meta = lstat(&dest.join(it.path));
            assert_eq!(meta.atime(), it.mtime as i64, "{} atime", it.path);
        }
        let root = nix::unistd::geteuid().is_root();
        for it in &items {
            let path = dest.join(it.path);
            let meta = lstat(&path);
            let ft = meta.file_type();
            match &it.kind {
                Kind::Dir => assert!(ft.is_dir(), "{} is a dir", it.path),
                Kind::File(data) => {
                    assert!(ft.is_file(), "{} is a file", it.path);
                    assert_eq!(
                        fs::read(&path).ok().as_deref(),
                        Some(*data),
                        "{} content",
                        it.path
                    );
                }
                Kind::Symlink(target) => {
                    assert!(ft.is_symlink(), "{} is a symlink", it.path);
                    assert_eq!(
                        fs::read_link(&path).ok(),
                        Some(PathBuf::from(target)),
                        "{}",
                        it.path
                    );
                }
                Kind::HardLink(target) => {
                    let target = lstat(&dest.join(target));
                    assert_eq!(
                        (meta.dev(), meta.ino()),
                        (target.dev(), target.ino()),
                        "{}",
                        it.path
                    );
                    assert_eq!(meta.nlink(), 2, "{}", it.path);
                }
                Kind::Fifo => assert!(ft.is_fifo(), "{} is a fifo", it.path),
            }
            if !ft.is_symlink() {
                assert_eq!(meta.mode() & 0o7777, it.mode, "{} mode", it.path);
            }
            assert_eq!(meta.mtime(), it.mtime as i64, "{} mtime", it.path);
            if root {
                assert_eq!(
                    (meta.uid(), meta.gid()),
                    (it.owner as u32, it.owner as u32),
                    "{} owner",
                    it.path
                );
            }
            if let Some((key, value)) = it.xattr {
                assert_eq!(
                    xattr::get(&path, key).ok().flatten().as_deref(),
                    Some(value),
                    "{} xattr",
                    it.path
                );
            }
        }

        // Nothing else: only the items and the parents the tar implied.
        let mut want: BTreeSet<PathBuf> = items.iter().map(|it| PathBuf::from(it.path)).collect();
        want.insert(PathBuf::from("home"));
        want.insert(PathBuf::from("run"));
        assert_eq!(tree(&dest), want);
        assert!(lstat(&dest.join("run")).is_dir());
    }

    #[test]
    fn root_entry_and_pax_overrides() {
        let tmp = tempdir();
        let mut tar = TarBuf::new();
        tar.raw(EntryType::Directory, b"./", None, b"");
        tar.pax(&[
            ("mtime", b"1700000000.25"),
            ("path", b"long/".repeat(40).as_slice()),
        ]);
        tar.file("ignored-name", 0o640, b"x");
        let stats = match unpack_layer(tar.bytes().as_slice(), tmp.path()) {
            Ok(stats) => stats,
            Err(e) => panic!("unpack: {e}"),
        };
        assert_eq!(stats.entries, 2);
        let root = lstat(tmp.path());
        assert_eq!(root.mode() & 0o7777, 0o755);
        assert_eq!(root.mtime(), 1_600_000_000);
        let long = tmp.path().join("long/".repeat(40).trim_end_matches('/'));
        let meta = lstat(&long);
        assert_eq!(fs::read(&long).ok().as_deref(), Some(b"x".as_slice()));
        assert_eq!(
            (meta.mtime(), meta.mtime_nsec()),
            (1_700_000_000, 250_000_000)
        );
    }

    #[test]
    fn later_entries_replace_earlier_non_directories() {
        let tmp = tempdir();
        let outside = tmp.path().join("outside");
        let dest = tmp.path().join("dest");
        for dir in [&outside, &dest] {
            if let Err(e) = fs::create_dir(dir) {
                panic!("mkdir: {e}");
            }
        }
        let target = outside.join("target");
        let mut tar = TarBuf::new();
        tar.file("a", 0o644, b"one")
            .file("a", 0o600, b"two")
            .link(EntryType::Symlink, "s", &target.to_string_lossy())
            // Must replace the symlink, not write through it.
            .file("s", 0o644, b"not outside")
            .dir("d", 0o755)
            .file("d/child", 0o644, b"c")
            // An existing directory stays; its metadata is updated.
            .dir("d", 0o700);
        if let Err(e) = unpack_layer(tar.bytes().as_slice(), &dest) {
            panic!("unpack: {e}");
        }
        assert_eq!(
            fs::read(dest.join("a")).ok().as_deref(),
            Some(b"two".as_slice())
        );
        assert_eq!(lstat(&dest.join("a")).mode() & 0o7777, 0o600);
        assert!(lstat(&dest.join("s")).is_file());
        assert!(!target.exists());
        assert_eq!(lstat(&dest.join("d")).mode() & 0o7777, 0o700);
        assert!(dest.join("d/child").exists());
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        if needs_root() {
            return;
        }
        let tmp = tempdir();
        let mut tar = TarBuf::new();
        tar.dir("d", 0o755)
            .file("d/.wh..wh..opq", 0o644, b"")
            .file("d/keep", 0o644, b"kept")
            .file(".wh.gone", 0o644, b"")
            .file("missing/parent/.wh.old", 0o644, b"")
            .file("e/.wh..wh..opq", 0o644, b"")
            .dir(".wh..wh.plnk", 0o700)
            .file(".wh..wh.plnk/123.456", 0o644, b"aufs")
            // A whiteout hides lower layers only; this layer's own file stays.
            .file("same", 0o644, b"mine")
            .file(".wh.same", 0o644, b"");
        let stats = match unpack_layer(tar.bytes().as_slice(), tmp.path()) {
            Ok(stats) => stats,
            Err(e) => panic!("unpack: {e}"),
        };
        assert_eq!(stats.entries, 7);
        for path in ["gone", "missing/parent/old"] {
            let meta = lstat(&tmp.path().join(path));
            assert!(meta.file_type().is_char_device(), "{path} is a char device");
            assert_eq!(meta.rdev(), 0, "{path} is 0:0");
            assert_eq!((meta.uid(), meta.gid()), (0, 0), "{path} owner");
        }
        for dir in ["d", "e"] {
            let opaque = xattr::get(tmp.path().join(dir), OPAQUE_XATTR)
                .ok()
                .flatten();
            assert_eq!(opaque.as_deref(), Some(b"y".as_slice()), "{dir} opaque");
        }
        assert!(lstat(&tmp.path().join("same")).is_file());
        let leftovers: Vec<_> = tree(tmp.path())
            .into_iter()
            .filter(|p| {
                p.components()
                    .any(|c| c.as_os_str().as_bytes().starts_with(WHITEOUT_PREFIX))
            })
            .collect();
        assert!(leftovers.is_empty(), "left over: {leftovers:?}");
    }

    #[test]
    fn devices_are_created() {
        if needs_root() {
            return;
        }
        let tmp = tempdir();
        let mut tar = TarBuf::new();
        let mut null = TarBuf::header(EntryType::Char, 0o666, 0);
        null.set_device_major(1).ok();
        null.set_device_minor(3).ok();
        tar.add(null, "dev/null", b"");
        let mut loop0 = TarBuf::header(EntryType::Block, 0o660, 0);
        loop0.set_device_major(7).ok();
        loop0.set_device_minor(0).ok();
        tar.add(loop0, "dev/loop0", b"");
        if let Err(e) = unpack_layer(tar.bytes().as_slice(), tmp.path()) {
            panic!("unpack: {e}");
        }
        let null = lstat(&tmp.path().join("dev/null"));
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), makedev(1, 3));
        assert_eq!(null.mode() & 0o7777, 0o666);
        let loop0 = lstat(&tmp.path().join("dev/loop0"));
        assert!(loop0.file_type().is_block_device());
        assert_eq!(loop0.rdev(), makedev(7, 0));
    }

    #[test]
    fn hostile_entries_are_rejected() {
        struct Case {
            name: &'static str,
            build: fn(&mut TarBuf, &Path),
        }
        let cases = [
            Case {
                name: "parent escape",
                build: |t, _| {
                    t.raw(EntryType::Regular, b"../evil", None, b"pwned");
                },
            },
            Case {
                name: "nested parent escape",
                build: |t, _| {
                    t.raw(EntryType::Regular, b"a/../../evil", None, b"pwned");
                },
            },
            Case {
                name: "absolute",
                build: |t, _| {
                    t.raw(EntryType::Regular, b"/abs/evil", None, b"pwned");
                },
            },
            Case {
                name: "symlinked parent",
                build: |t, outside| {
                    t.link(EntryType::Symlink, "link", &outside.to_string_lossy());
                    t.file("link/pwned", 0o644, b"pwned");
                },
            },
            Case {
                name: "symlinked grandparent",
                build: |t, outside| {
                    t.link(EntryType::Symlink, "link", &outside.to_string_lossy());
                    t.dir("link/sub", 0o755);
                },
            },
            Case {
                name: "relative symlinked parent",
                build: |t, _| {
                    t.link(EntryType::Symlink, "up", "../outside");
                    t.link(EntryType::Symlink, "up/evil", "x");
                },
            },
            Case {
                name: "hard link to an absolute path",
                build: |t, _| {
                    t.link(EntryType::Link, "shadow", "/etc/shadow");
                },
            },
            Case {
                name: "hard link out through ..",
                build: |t, _| {
                    t.link(EntryType::Link, "secret", "../outside/secret");
                },
            },
            Case {
                name: "hard link through a symlink",
                build: |t, outside| {
                    t.link(EntryType::Symlink, "link", &outside.to_string_lossy());
                    t.link(EntryType::Link, "secret", "link/secret");
                },
            },
            Case {
                name: "hard link to a missing file",
                build: |t, _| {
                    t.link(EntryType::Link, "x", "nowhere");
                },
            },
            Case {
                name: "hard link to a directory",
                build: |t, _| {
                    t.dir("d", 0o755);
                    t.link(EntryType::Link, "x", "d");
                },
            },
            Case {
                name: "whiteout of ..",
                build: |t, _| {
                    t.raw(EntryType::Regular, b"a/.wh..", None, b"");
                },
            },
            Case {
                name: "opaque marker under a symlink",
                build: |t, outside| {
                    t.link(EntryType::Symlink, "link", &outside.to_string_lossy());
                    t.file("link/.wh..wh..opq", 0o644, b"");
                },
            },
            Case {
                name: "whiteout under a symlink",
                build: |t, outside| {
                    t.link(EntryType::Symlink, "link", &outside.to_string_lossy());
                    t.file("link/.wh.secret", 0o644, b"");
                },
            },
            Case {
                name: "file under a file",
                build: |t, _| {
                    t.file("f", 0o644, b"");
                    t.file("f/x", 0o644, b"");
                },
            },
        ];
        for case in cases {
            let tmp = tempdir();
            let outside = tmp.path().join("outside");
            let dest = tmp.path().join("dest");
            for dir in [&outside, &dest] {
                if let Err(e) = fs::create_dir(dir) {
                    panic!("mkdir: {e}");
                }
            }
            if let Err(e) = fs::write(outside.join("secret"), b"secret") {
                panic!("write: {e}");
            }
            let outside_dest = |root: &Path| -> BTreeSet<PathBuf> {
                tree(root)
                    .into_iter()
                    .filter(|p| !p.starts_with("dest"))
                    .collect()
            };
            let before = outside_dest(tmp.path());
            let mut tar = TarBuf::new();
            (case.build)(&mut tar, &outside);
            match unpack_layer(tar.bytes().as_slice(), &dest) {
                Err(UnpackError::UnsafeEntry { path, reason }) => {
                    eprintln!("{}: {path:?} rejected: {reason}", case.name)
                }
                other => panic!("{}: want UnsafeEntry, got {other:?}", case.name),
            }
            let after = outside_dest(tmp.path());
            assert_eq!(after, before, "{}: wrote outside dest", case.name);
            assert_eq!(lstat(&outside.join("secret")).nlink(), 1, "{}", case.name);
            assert_eq!(
                fs::read(outside.join("secret")).ok().as_deref(),
                Some(b"secret".as_slice())
            );
            assert!(!Path::new("/abs/evil").exists());
        }
    }

    #[test]
    fn truncated_tar_is_an_error() {
        let tmp = tempdir();
        let mut tar = TarBuf::new().file("big", 0o644, &[7u8; 4096]).bytes();
        tar.truncate(512 + 1000);
        match unpack_layer(tar.as_slice(), tmp.path()) {
            Err(UnpackError::Tar(_)) => {}
            other => panic!("want Tar error, got {other:?}"),
        }
    }

    #[test]
    fn walk_refuses_symlinks_and_creates_parents() {
        let limits = ImageLimits::default();
        let tmp = tempdir();
        if let Err(e) = std::os::unix::fs::symlink("/", tmp.path().join("link")) {
            panic!("symlink: {e}");
        }
        let snapshot = match Dir::open(tmp.path(), DIR_FLAGS, Mode::empty()) {
            Ok(root) => Snapshot {
                dest: tmp.path(),
                root,
                chown: false,
                limits: &limits,
            },
            Err(e) => panic!("open: {e}"),
        };
        assert!(matches!(
            snapshot.walk(&names("link/etc"), true),
            Err(WalkError::Symlink)
        ));
        assert!(matches!(
            snapshot.walk(&names("a/b"), false),
            Err(WalkError::Missing)
        ));
        assert!(snapshot.walk(&names("a/b"), true).is_ok());
        assert!(lstat(&tmp.path().join("a/b")).is_dir());
    }
}
