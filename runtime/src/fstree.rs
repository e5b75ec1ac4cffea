//! Walks over directory trees that hostile input made: image snapshots (a layer's tree) and
//! container writable layers (whatever the container wrote). The kernel lets a tree be far
//! deeper than PATH_MAX (4096 bytes) and than any sane recursion, so nothing here builds a
//! path below the root or recurses: every step is an `*at` call relative to an open
//! directory fd, with `O_NOFOLLOW`, over an explicit stack.
//!
//! Open fds are bounded ([`MAX_OPEN_DIRS`] per walk): a frame deeper than that window gives up
//! its fd, and gets it back, once the walk climbs to it again, from `openat(child, "..")`,
//! checked against the (dev, inode) recorded when the frame was first opened. If that check
//! fails (the tree was moved while we walked) the frame is reopened by name from the root,
//! each step checked the same way; if that fails too, the walk stops with an error rather
//! than act on a directory it did not mean.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstat, fstatat, FchmodatFlags, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Directory fds one walk keeps open at most (besides the root's).
const MAX_OPEN_DIRS: usize = 32;

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

type Id = (libc::dev_t, libc::ino_t);

fn id_of(stat: &FileStat) -> Id {
    (stat.st_dev, stat.st_ino)
}

fn is_dir(stat: &FileStat) -> bool {
    stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits()
}

fn open_dir_at(parent: RawFd, name: &OsStr) -> nix::Result<Dir> {
    Dir::openat(Some(parent), name, DIR_FLAGS, Mode::empty())
}

/// One directory on the walk's stack.
struct Frame {
    /// Its name in its parent (empty for the root).
    name: OsString,
    id: Id,
    /// Open while the frame is within the window of the deepest [`MAX_OPEN_DIRS`].
    dir: Option<Dir>,
    /// Subdirectories still to visit.
    pending: Vec<OsString>,
}

/// What a walk does with what it finds.
trait Visitor {
    /// A non-directory entry `name` of the directory open as `dir`.
    fn leaf(&mut self, dir: RawFd, name: &OsStr, stat: &FileStat) -> io::Result<()>;
    /// A subdirectory, before it is entered. `false`: do not enter it.
    fn subdir(&mut self, stat: &FileStat) -> bool;
    /// A directory whose whole subtree has been visited; `parent` holds it as `name`.
    fn done(&mut self, parent: RawFd, name: &OsStr) -> io::Result<()>;
    /// A directory could not be opened: make it openable and return `true` to try again.
    fn unopenable(&mut self, _parent: RawFd, _name: &OsStr, _errno: Errno) -> bool {
        false
    }
    /// An error inside the tree (not at its root): `Ok` to skip that entry or subtree.
    fn error(&mut self, err: io::Error) -> io::Result<()> {
        Err(err)
    }
}

fn at(err: impl Into<io::Error>, what: &str, name: &OsStr) -> io::Error {
    let err = err.into();
    // The name alone: the full path may be longer than anything worth printing.
    io::Error::new(
        err.kind(),
        format!("{what} {:?}: {err}", truncated(name.as_bytes())),
    )
}

/// At most 64 bytes of a name, for messages.
pub(crate) fn truncated(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    if text.len() <= 64 {
        return text.into_owned();
    }
    let cut = (0..=64)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…", &text[..cut])
}

/// Walks the tree below `root` (an open directory whose id is `root_id`), depth first.
fn walk(root: Dir, root_id: Id, visitor: &mut dyn Visitor) -> io::Result<()> {
    let mut root = root;
    // Leaves are visited as a directory is read; subdirectories are remembered by name, so
    // no directory stream stays open across a descent.
    let pending = read_dir_entries(&mut root, visitor)?;
    let root_fd = root.as_raw_fd();
    // Frame 0 is the root, whose fd (`root`) is held apart and never given up.
    let mut stack = vec![Frame {
        name: OsString::new(),
        id: root_id,
        dir: None,
        pending,
    }];
    loop {
        let at_root = stack.len() == 1;
        let Some(top) = stack.last_mut() else {
            return Ok(());
        };
        let top_fd = match &top.dir {
            Some(dir) => dir.as_raw_fd(),
            None if at_root => root_fd,
            None => return Err(io::Error::other("walk lost an open directory")),
        };
        if let Some(name) = top.pending.pop() {
            let opened = match open_dir_at(top_fd, &name) {
                Err(errno) if visitor.unopenable(top_fd, &name, errno) => {
                    open_dir_at(top_fd, &name)
                }
                other => other,
            };
            let mut dir = match opened {
                Ok(dir) => dir,
                // Gone, or replaced by a non-directory, since it was listed.
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                Err(errno) => {
                    visitor.error(at(errno, "opening", &name))?;
                    continue;
                }
            };
            let stat = match fstat(dir.as_raw_fd()) {
                Ok(stat) => stat,
                Err(errno) => {
                    visitor.error(at(errno, "stat", &name))?;
                    continue;
                }
            };
            if !visitor.subdir(&stat) {
                continue;
            }
            let pending = match read_dir_entries(&mut dir, visitor) {
                Ok(pending) => pending,
                Err(e) => {
                    visitor.error(at(e, "reading", &name))?;
                    continue;
                }
            };
            stack.push(Frame {
                name,
                id: id_of(&stat),
                dir: Some(dir),
                pending,
            });
            // Keep the window: the frame just below it gives its fd up.
            let n = stack.len();
            if n > MAX_OPEN_DIRS + 1 {
                stack[n - 1 - MAX_OPEN_DIRS].dir = None;
            }
            continue;
        }
        // Every child of `top` is done: leave it, back in its parent.
        let Some(done) = stack.pop() else {
            return Ok(());
        };
        let parent_is_root = stack.len() == 1;
        let Some(parent) = stack.last() else {
            // The root itself: the caller decides what becomes of it.
            return Ok(());
        };
        let parent_fd = match &parent.dir {
            Some(dir) => dir.as_raw_fd(),
            None if parent_is_root => root_fd,
            None => {
                let Some(child) = &done.dir else {
                    return Err(io::Error::other("walk lost an open directory"));
                };
                let reopened = match reopen_parent(child.as_raw_fd(), parent.id) {
                    Some(dir) => Some(dir),
                    None => reopen_by_names(root_fd, &stack),
                };
                let Some(dir) = reopened else {
                    return Err(io::Error::other(
                        "the tree was moved while it was walked; walk abandoned",
                    ));
                };
                let fd = dir.as_raw_fd();
                if let Some(parent) = stack.last_mut() {
                    parent.dir = Some(dir);
                }
                fd
            }
        };
        drop(done.dir);
        if let Err(e) = visitor.done(parent_fd, &done.name) {
            visitor.error(at(e, "finishing", &done.name))?;
        }
    }
}

/// Visits the non-directories of `dir` and returns the names of its subdirectories.
fn read_dir_entries(dir: &mut Dir, visitor: &mut dyn Visitor) -> io::Result<Vec<OsString>> {
    let fd = dir.as_raw_fd();
    let mut subdirs = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(io::Error::from)?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        let stat = match fstatat(Some(fd), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => continue,
            Err(errno) => {
                visitor.error(at(errno, "stat", name))?;
                continue;
            }
        };
        if is_dir(&stat) {
            subdirs.push(name.to_owned());
        } else if let Err(e) = visitor.leaf(fd, name, &stat) {
            visitor.error(at(e, "visiting", name))?;
        }
    }
    Ok(subdirs)
}

/// `openat(child, "..")`, accepted only if it is the directory we left (`want`).
fn reopen_parent(child: RawFd, want: Id) -> Option<Dir> {
    let dir = Dir::openat(Some(child), "..", DIR_FLAGS, Mode::empty()).ok()?;
    let stat = fstat(dir.as_raw_fd()).ok()?;
    (id_of(&stat) == want).then_some(dir)
}

/// The directory of the top frame, opened by name from the root, each step checked.
fn reopen_by_names(root: RawFd, stack: &[Frame]) -> Option<Dir> {
    let mut current: Option<Dir> = None;
    for frame in stack.iter().skip(1) {
        let parent = current.as_ref().map_or(root, |d| d.as_raw_fd());
        let dir = open_dir_at(parent, &frame.name).ok()?;
        let stat = fstat(dir.as_raw_fd()).ok()?;
        if id_of(&stat) != frame.id {
            return None;
        }
        current = Some(dir);
    }
    current
}

/// Disk usage as `du` counts it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Allocated blocks × 512.
    pub bytes: u64,
    pub inodes: u64,
    /// Entries or subtrees that could not be read and are left out of the totals.
    pub skipped: u64,
}

struct Counter {
    dev: libc::dev_t,
    usage: Usage,
    /// Only files with more than one link can be met twice; remember just those.
    linked: HashSet<Id>,
    first_error: Option<io::Error>,
}

impl Counter {
    fn count(&mut self, stat: &FileStat) {
        self.usage.bytes += stat.st_blocks as u64 * 512;
        self.usage.inodes += 1;
    }
}

impl Visitor for Counter {
    fn leaf(&mut self, _dir: RawFd, _name: &OsStr, stat: &FileStat) -> io::Result<()> {
        if stat.st_dev != self.dev {
            return Ok(());
        }
        if stat.st_nlink > 1 && !self.linked.insert(id_of(stat)) {
            return Ok(());
        }
        self.count(stat);
        Ok(())
    }

    fn subdir(&mut self, stat: &FileStat) -> bool {
        // A mount inside the tree is another filesystem's usage.
        if stat.st_dev != self.dev {
            return false;
        }
        self.count(stat);
        true
    }

    fn done(&mut self, _parent: RawFd, _name: &OsStr) -> io::Result<()> {
        Ok(())
    }

    fn error(&mut self, err: io::Error) -> io::Result<()> {
        self.usage.skipped += 1;
        if self.first_error.is_none() {
            self.first_error = Some(err);
        }
        Ok(())
    }
}

/// Bytes and inodes under `root`, root included: symlinks counted, never followed; another
/// filesystem mounted inside not counted; a hard-linked file once. What cannot be read
/// (a subtree that vanished, or refuses us) is skipped, counted in `skipped` and logged once,
/// so one bad subtree never fails the whole measurement. Only an unreadable root is an error.
pub fn disk_usage(root: &Path) -> io::Result<Usage> {
    let stat = nix::sys::stat::lstat(root).map_err(io::Error::from)?;
    let mut counter = Counter {
        dev: stat.st_dev,
        usage: Usage::default(),
        linked: HashSet::new(),
        first_error: None,
    };
    counter.count(&stat);
    if !is_dir(&stat) {
        return Ok(counter.usage);
    }
    let dir = Dir::open(root, DIR_FLAGS, Mode::empty()).map_err(io::Error::from)?;
    let opened = fstat(dir.as_raw_fd()).map_err(io::Error::from)?;
    walk(dir, id_of(&opened), &mut counter)?;
    if let Some(e) = counter.first_error {
        tracing::warn!(root = %root.display(), skipped = counter.usage.skipped, error = %e, "parts of the tree could not be measured; left out of the totals");
    }
    Ok(counter.usage)
}

struct Remover {
    /// Whether a directory we cannot enter may be made enterable (we own the tree).
    chmod: bool,
}

impl Visitor for Remover {
    fn leaf(&mut self, dir: RawFd, name: &OsStr, _stat: &FileStat) -> io::Result<()> {
        match unlinkat(Some(dir), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }

    fn subdir(&mut self, _stat: &FileStat) -> bool {
        // Entered even on another device: a mount point is then refused by rmdir (EBUSY)
        // after its contents went, which is what a remove of a tree holding a mount means.
        true
    }

    fn done(&mut self, parent: RawFd, name: &OsStr) -> io::Result<()> {
        match unlinkat(Some(parent), name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }

    fn unopenable(&mut self, parent: RawFd, name: &OsStr, errno: Errno) -> bool {
        // A layer can carry a mode-000 directory; without CAP_DAC_OVERRIDE we must open it up.
        errno == Errno::EACCES
            && self.chmod
            && fchmodat(
                Some(parent),
                name,
                Mode::S_IRWXU,
                FchmodatFlags::NoFollowSymlink,
            )
            .is_ok()
    }
}

/// Removes `path` and everything below it, however deep; a path already gone is success.
/// Slow for a huge tree, but it always gets there (or says what it could not remove).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to remove {}", path.display()),
            ))
        }
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let parent = match Dir::open(parent, DIR_FLAGS, Mode::empty()) {
        Ok(dir) => dir,
        Err(Errno::ENOENT) => return Ok(()),
        Err(errno) => return Err(errno.into()),
    };
    remove_tree_at(parent.as_raw_fd(), name)
}

/// Removes `name` (a tree or a single entry) from the directory open as `parent`.
pub fn remove_tree_at(parent: RawFd, name: &OsStr) -> io::Result<()> {
    let stat = match fstatat(Some(parent), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::ENOENT) => return Ok(()),
        Err(errno) => return Err(errno.into()),
    };
    let mut remover = Remover {
        chmod: !nix::unistd::geteuid().is_root(),
    };
    if !is_dir(&stat) {
        return remover.leaf(parent, name, &stat);
    }
    let dir = match open_dir_at(parent, name) {
        Err(errno) if remover.unopenable(parent, name, errno) => open_dir_at(parent, name),
        other => other,
    };
    let dir = match dir {
        Ok(dir) => dir,
        Err(Errno::ENOENT) => return Ok(()),
        Err(errno) => return Err(errno.into()),
    };
    let opened = fstat(dir.as_raw_fd()).map_err(io::Error::from)?;
    walk(dir, id_of(&opened), &mut remover)?;
    remover.done(parent, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::mkdirat;

    /// A chain `d/d/d/...` `depth` directories deep below `root`, each holding a file, made
    /// with `mkdirat` (no path could name the bottom).
    fn deep_tree(root: &Path, depth: usize) -> io::Result<()> {
        let mut current = Dir::open(root, DIR_FLAGS, Mode::empty())?;
        for i in 0..depth {
            mkdirat(Some(current.as_raw_fd()), "d", Mode::S_IRWXU)?;
            let file = format!("f{i}");
            let fd = nix::fcntl::openat(
                Some(current.as_raw_fd()),
                file.as_str(),
                OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::S_IRUSR | Mode::S_IWUSR,
            )?;
            nix::unistd::close(fd)?;
            current = open_dir_at(current.as_raw_fd(), OsStr::new("d"))?;
        }
        Ok(())
    }

    /// Our fds that point into `dir` (other tests run in parallel threads: count only ours).
    fn open_fds_in(dir: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| target.starts_with(dir))
                .count()
        })
    }

    #[test]
    fn measures_and_removes_a_tree_far_deeper_than_path_max() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("deep");
        std::fs::create_dir(&root)?;
        let depth = 10_000;
        deep_tree(&root, depth)?;
        // The bottom cannot be named by a path, which is what broke the old walkers.
        let long = root.join("d/".repeat(depth));
        assert!(std::fs::metadata(&long).is_err());

        let usage = disk_usage(&root)?;
        // The root, `depth` directories and `depth` files.
        assert_eq!(usage.inodes, 1 + 2 * depth as u64);
        assert_eq!(usage.skipped, 0);
        assert!(usage.bytes >= 4096 * depth as u64, "{usage:?}");
        assert_eq!(open_fds_in(tmp.path()), 0, "the walk leaked fds");

        remove_tree(&root)?;
        assert!(!root.exists());
        assert_eq!(open_fds_in(tmp.path()), 0, "the removal leaked fds");
        // Idempotent.
        remove_tree(&root)?;
        Ok(())
    }

    #[test]
    fn open_fds_stay_bounded_during_a_deep_walk() -> io::Result<()> {
        struct Peak<'a>(usize, &'a Path);
        impl Visitor for Peak<'_> {
            fn leaf(&mut self, _: RawFd, _: &OsStr, _: &FileStat) -> io::Result<()> {
                self.0 = self.0.max(open_fds_in(self.1));
                Ok(())
            }
            fn subdir(&mut self, _: &FileStat) -> bool {
                true
            }
            fn done(&mut self, _: RawFd, _: &OsStr) -> io::Result<()> {
                Ok(())
            }
        }
        let tmp = tempfile::tempdir()?;
        deep_tree(tmp.path(), 500)?;
        let dir = Dir::open(tmp.path(), DIR_FLAGS, Mode::empty())?;
        let id = id_of(&fstat(dir.as_raw_fd())?);
        let mut peak = Peak(0, tmp.path());
        walk(dir, id, &mut peak)?;
        // The window, the root, and the one being read.
        assert!(peak.0 >= 10, "the walk went deep: {}", peak.0);
        assert!(
            peak.0 <= MAX_OPEN_DIRS + 2,
            "{} fds open at the peak",
            peak.0
        );
        Ok(())
    }

    #[test]
    fn counts_like_du_and_never_follows_links() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("upper");
        std::fs::create_dir_all(root.join("a/b"))?;
        std::fs::write(root.join("a/b/big"), vec![1u8; 1 << 20])?;
        std::fs::write(root.join("small"), b"x")?;
        std::fs::hard_link(root.join("small"), root.join("a/small-again"))?;
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside)?;
        std::fs::write(outside.join("huge"), vec![1u8; 4 << 20])?;
        std::os::unix::fs::symlink(&outside, root.join("link"))?;
        let usage = disk_usage(&root)?;
        // upper, a, a/b, big, small (once), link.
        assert_eq!(usage.inodes, 6);
        assert!(usage.bytes >= 1 << 20 && usage.bytes < 4 << 20, "{usage:?}");

        // Removing through the symlink never touches what it points at.
        remove_tree(&root)?;
        assert!(!root.exists());
        assert!(outside.join("huge").exists());
        Ok(())
    }

    #[test]
    fn removes_read_only_and_mode_000_directories() -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("layer");
        std::fs::create_dir_all(root.join("ro/locked"))?;
        std::fs::write(root.join("ro/locked/f"), b"x")?;
        std::fs::set_permissions(
            root.join("ro/locked"),
            std::fs::Permissions::from_mode(0o000),
        )?;
        std::fs::set_permissions(root.join("ro"), std::fs::Permissions::from_mode(0o555))?;
        remove_tree(&root)?;
        assert!(!root.exists());
        Ok(())
    }

    #[test]
    fn a_single_file_and_a_missing_path() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x")?;
        assert_eq!(disk_usage(&file)?.inodes, 1);
        remove_tree(&file)?;
        assert!(!file.exists());
        remove_tree(&tmp.path().join("missing/below"))?;
        assert!(disk_usage(&tmp.path().join("missing")).is_err());
        Ok(())
    }

    #[test]
    fn long_names_are_shortened_in_messages() {
        let name = "é".repeat(100);
        let short = truncated(name.as_bytes());
        assert!(short.len() <= 64 + "…".len(), "{short}");
        assert!(short.ends_with('…'));
        assert_eq!(truncated(b"abc"), "abc");
    }
}
