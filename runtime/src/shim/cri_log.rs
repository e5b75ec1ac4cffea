//! The CRI log format, as containerd writes it (kubelet reads and rotates these files):
//!
//! ```text
//! 2024-02-29T12:34:56.500000000Z stdout F a whole line
//! 2024-02-29T12:34:56.500000000Z stderr P the first 16 KiB of a long line
//! 2024-02-29T12:34:56.500000000Z stderr F its end
//! ```
//!
//! One line of output is one log line tagged `F`; a line longer than [`LINE_LIMIT`] is cut
//! into `P` parts of exactly that many bytes and a last `F` part; a trailing `\r` before
//! the `\n` is dropped (tty output ends its lines with `\r\n`); an unterminated line left
//! when the stream ends is written as a `P` part. That is containerd's `redirectLogs`
//! (`internal/cri/io/logger.go`) with its default `max_container_log_line_size`; CRI-O's
//! conmon agrees on everything but its buffer size. The timestamp is taken when the data
//! was read, so every line of one read shares it.
//!
//! Memory: a [`Splitter`] keeps at most one partial line (≤ [`LINE_LIMIT`] bytes) per
//! stream; nothing else is buffered.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};

use super::log;
use super::sys::{openat, openat2};

/// The longest text one log line carries: containerd's default
/// `max_container_log_line_size`, and conmon's buffer.
pub const LINE_LIMIT: usize = 16 * 1024;

/// Which of the process's streams the output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Cuts one stream's output into CRI log lines.
#[derive(Debug)]
pub struct Splitter {
    stream: Stream,
    /// The unterminated end of the output so far, at most [`LINE_LIMIT`] bytes.
    pending: Vec<u8>,
}

impl Splitter {
    pub fn new(stream: Stream) -> Self {
        Splitter {
            stream,
            pending: Vec::new(),
        }
    }

    /// Append the log lines for `data` (read at `timestamp`) to `out`; an unterminated
    /// end stays pending until more data or [`Splitter::finish`].
    pub fn feed(&mut self, data: &[u8], timestamp: &str, out: &mut Vec<u8>) {
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let mut line = &rest[..nl];
            rest = &rest[nl + 1..];
            // `\r\n` ends a line as `\n` does; the `\r` may already be pending.
            match line.strip_suffix(b"\r") {
                Some(stripped) => line = stripped,
                None if line.is_empty() && self.pending.last() == Some(&b'\r') => {
                    self.pending.pop();
                }
                None => {}
            }
            self.spill(line, timestamp, out);
            self.emit(b'F', timestamp, out);
        }
        self.spill(rest, timestamp, out);
        // A partial line keeps no more room than it needs once written out.
        if self.pending.is_empty() && self.pending.capacity() > LINE_LIMIT {
            self.pending = Vec::new();
        }
    }

    /// The stream ended: write what is pending as a `P` line (containerd's choice: the
    /// line never ended).
    pub fn finish(&mut self, timestamp: &str, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            self.emit(b'P', timestamp, out);
        }
        self.pending = Vec::new();
    }

    /// Add `text` to the pending line, writing a `P` part each time it passes the limit;
    /// leaves at most [`LINE_LIMIT`] bytes pending.
    fn spill(&mut self, mut text: &[u8], timestamp: &str, out: &mut Vec<u8>) {
        while self.pending.len() + text.len() > LINE_LIMIT {
            let take = LINE_LIMIT - self.pending.len();
            self.pending.extend_from_slice(&text[..take]);
            text = &text[take..];
            self.emit(b'P', timestamp, out);
        }
        self.pending.extend_from_slice(text);
    }

    /// Write the pending text as one log line tagged `tag`, and clear it.
    fn emit(&mut self, tag: u8, timestamp: &str, out: &mut Vec<u8>) {
        out.reserve(timestamp.len() + self.pending.len() + 12);
        out.extend_from_slice(timestamp.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.stream.name().as_bytes());
        out.extend_from_slice(&[b' ', tag, b' ']);
        out.extend_from_slice(&self.pending);
        out.push(b'\n');
        self.pending.clear();
    }
}

/// A container's CRI log file, opened for appending.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    /// The pod's log directory the file must stay beneath, and the path relative to it;
    /// None (an older corrald's request): the path is opened as given.
    beneath: Option<(PathBuf, PathBuf)>,
    file: File,
    /// The last write failed (and was reported); the next failure is not reported again.
    failing: bool,
}

impl LogFile {
    /// Open (create) the file at `path`, making its missing parent dirs (0755). With
    /// `beneath` (the pod's log directory, which `path` must start with), the file is
    /// opened beneath it, never through a symlink out of it: see [`open_beneath`].
    pub fn open(path: &Path, beneath: Option<&Path>) -> io::Result<LogFile> {
        let beneath = match beneath {
            Some(dir) => {
                // `.`, `//` and a trailing slash (which would follow a symlinked dir) gone.
                let dir: PathBuf = dir.components().collect();
                let rel = path.strip_prefix(&dir).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} is not beneath {}", path.display(), dir.display()),
                    )
                })?;
                Some((dir.clone(), rel.to_path_buf()))
            }
            None => None,
        };
        Ok(LogFile {
            path: path.to_path_buf(),
            file: open_append(path, beneath.as_ref())?,
            beneath,
            failing: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open the path anew (kubelet renamed the old file away) and write there from now
    /// on; on failure the old file stays in use. The directory is checked again: one
    /// replaced by a symlink since the create is refused here.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = open_append(&self.path, self.beneath.as_ref())?;
        self.failing = false;
        Ok(())
    }

    /// Append `bytes`. A failure (disk full, say) loses these lines: it is reported once
    /// on the shim's stderr until a write succeeds again, and never stalls the shim.
    pub fn write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match self.file.write_all(bytes) {
            Ok(()) => self.failing = false,
            Err(e) => {
                if !self.failing {
                    log(format_args!(
                        "writing the log {}: {e}; dropping output until it works again",
                        self.path.display()
                    ));
                }
                self.failing = true;
            }
        }
    }
}

fn open_append(path: &Path, beneath: Option<&(PathBuf, PathBuf)>) -> io::Result<File> {
    if let Some((dir, rel)) = beneath {
        return open_beneath(dir, rel);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

const APPEND: OFlag = OFlag::O_WRONLY
    .union(OFlag::O_APPEND)
    .union(OFlag::O_CREAT)
    .union(OFlag::O_CLOEXEC);
const LOG_MODE: Mode = Mode::from_bits_truncate(0o640);
const DIR_MODE: Mode = Mode::from_bits_truncate(0o755);

/// Open `rel` for appending beneath the log directory `dir`, making missing dirs.
///
/// `dir` itself is made if missing (its parents are the host's layout, where symlinks are
/// the admin's and followed) but must not be a symlink: a pod's log directory that someone
/// replaced by a symlink to `/etc` is refused, at create and at every reopen. Beneath it,
/// openat2 with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS (Linux 5.6+) lets no symlink or
/// `..` lead out; on older kernels a walk opens each component with O_NOFOLLOW (no symlink
/// followed at all). Every step is relative to a descriptor, so a swap between the steps
/// cannot redirect the open.
pub fn open_beneath(dir: &Path, rel: &Path) -> io::Result<File> {
    let dir = open_log_dir(dir)?;
    let opened = match openat2_append(&dir, rel) {
        Err(Errno::ENOENT) => {
            make_parents(&dir, rel)?;
            openat2_append(&dir, rel)
        }
        other => other,
    };
    match opened {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::ENOSYS) => walk_append(&dir, rel),
        Err(e) => Err(e.into()),
    }
}

/// An O_PATH fd on the log directory, which is not a symlink.
fn open_log_dir(dir: &Path) -> io::Result<OwnedFd> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dir)
            .map(OwnedFd::from)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
            open()
        }
        other => other,
    }
}

fn openat2_append(dir: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(APPEND)
        .mode(LOG_MODE)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(dir.as_fd(), rel, how)
}

/// The file's parent dirs beneath `dir`, made where missing, each opened O_NOFOLLOW.
fn make_parents(dir: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    let mut at = dir.try_clone()?;
    let parent = rel.parent().unwrap_or(Path::new(""));
    for c in parent.components() {
        let name = match c {
            Component::Normal(name) => name,
            Component::CurDir => continue,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} leaves the log directory", rel.display()),
                ))
            }
        };
        match mkdirat(Some(at.as_raw_fd()), name, DIR_MODE) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        at = openat(
            at.as_fd(),
            Path::new(name),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
    }
    Ok(at)
}

/// For kernels without openat2: every component opened O_NOFOLLOW from `dir`.
fn walk_append(dir: &OwnedFd, rel: &Path) -> io::Result<File> {
    let parent = make_parents(dir, rel)?;
    let Some(name) = rel.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", rel.display()),
        ));
    };
    let fd = openat(
        parent.as_fd(),
        Path::new(name),
        APPEND | OFlag::O_NOFOLLOW,
        LOG_MODE,
    )?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2024-02-29T12:34:56.500000000Z";

    /// Feed `chunks` then end the stream; the log lines as (stream, tag, text).
    fn lines(stream: Stream, chunks: &[&[u8]], finish: bool) -> Vec<(String, char, Vec<u8>)> {
        let mut s = Splitter::new(stream);
        let mut out = Vec::new();
        for chunk in chunks {
            s.feed(chunk, TS, &mut out);
            assert!(s.pending.len() <= LINE_LIMIT);
        }
        if finish {
            s.finish(TS, &mut out);
        }
        assert_eq!(out.last().copied().unwrap_or(b'\n'), b'\n');
        out.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let text = std::str::from_utf8(&l[..TS.len() + 10]).unwrap();
                let mut parts = text.splitn(3, ' ');
                assert_eq!(parts.next(), Some(TS));
                let name = parts.next().unwrap().to_string();
                let tag_at = TS.len() + 1 + name.len() + 1;
                assert_eq!(l[tag_at + 1], b' ');
                (name, l[tag_at] as char, l[tag_at + 2..].to_vec())
            })
            .collect()
    }

    fn f(text: &str) -> (String, char, Vec<u8>) {
        ("stdout".into(), 'F', text.as_bytes().to_vec())
    }

    #[test]
    fn whole_lines_and_the_exact_format() {
        let mut s = Splitter::new(Stream::Stderr);
        let mut out = Vec::new();
        s.feed(b"err\n\nlast\n", TS, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{TS} stderr F err\n{TS} stderr F \n{TS} stderr F last\n")
        );
        assert_eq!(
            lines(Stream::Stdout, &[b"a", b"b\nc", b"d\n"], false),
            vec![f("ab"), f("cd")]
        );
    }

    #[test]
    fn carriage_returns_before_newlines_are_dropped() {
        assert_eq!(
            lines(
                Stream::Stdout,
                &[b"tty\r\nin\rside\r\n", b"split\r", b"\n"],
                false
            ),
            vec![f("tty"), f("in\rside"), f("split")]
        );
    }

    #[test]
    fn long_lines_become_partials_then_a_full_line() {
        let long: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut data = long.clone();
        data.push(b'\n');
        // Whole, and in odd-sized chunks.
        for chunks in [vec![&data[..]], data.chunks(7001).collect::<Vec<_>>()] {
            let got = lines(Stream::Stdout, &chunks, false);
            assert_eq!(got.len(), 100_000 / LINE_LIMIT + 1);
            let (last, parts) = got.split_last().unwrap();
            assert!(parts
                .iter()
                .all(|(_, tag, text)| *tag == 'P' && text.len() == LINE_LIMIT));
            assert_eq!(last.1, 'F');
            let joined: Vec<u8> = got.iter().flat_map(|l| l.2.clone()).collect();
            assert_eq!(joined, long);
        }
        // Exactly the limit: one F line.
        let exact = vec![b'x'; LINE_LIMIT];
        let got = lines(Stream::Stdout, &[&exact, b"\n"], false);
        assert_eq!(got, vec![("stdout".into(), 'F', exact)]);
    }

    #[test]
    fn an_unterminated_end_is_a_partial_line() {
        assert_eq!(
            lines(Stream::Stderr, &[b"done\nno newline"], true),
            vec![
                ("stderr".into(), 'F', b"done".to_vec()),
                ("stderr".into(), 'P', b"no newline".to_vec())
            ]
        );
        assert!(lines(Stream::Stderr, &[b"done\n"], true).len() == 1);
        assert!(lines(Stream::Stderr, &[b"pending"], false).is_empty());
    }

    #[test]
    fn log_file_appends_reopens_and_survives_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/0.log");
        let mut file = LogFile::open(&path, None).unwrap();
        file.write(b"one\n");
        std::fs::rename(&path, dir.path().join("a/b/0.log.1")).unwrap();
        file.write(b"two\n");
        file.reopen().unwrap();
        file.write(b"three\n");
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&dir.path().join("a/b/0.log.1")), "one\ntwo\n");
        assert_eq!(read(&path), "three\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path) & !0o022, 0o640 & !0o022);
        assert_eq!(mode(&dir.path().join("a")) & 0o700, 0o700);

        let mut full = LogFile::open(Path::new("/dev/full"), None).unwrap();
        full.write(b"lost\n");
        full.write(b"lost again\n");
        assert!(full.failing);
    }

    /// Nothing under `outside` (a dir the log must never reach).
    fn untouched(outside: &Path) {
        let left: Vec<_> = std::fs::read_dir(outside).unwrap().flatten().collect();
        assert!(left.is_empty(), "written outside: {left:?}");
    }

    #[test]
    fn opens_beneath_the_log_directory_making_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pods/ns_pod_uid");
        let path = dir.join("app/0.log");
        // With a trailing slash as a client may send it.
        let given = PathBuf::from(format!("{}/", dir.display()));
        let mut file = LogFile::open(&path, Some(&given)).unwrap();
        file.write(b"one\n");
        std::fs::rename(&path, dir.join("app/0.log.1")).unwrap();
        file.reopen().unwrap();
        file.write(b"two\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert!(LogFile::open(Path::new("/etc/x.log"), Some(&dir)).is_err());

        // The walk (kernels without openat2) makes and opens the same.
        let fd = open_log_dir(&dir).unwrap();
        let mut f = walk_append(&fd, Path::new("other/1.log")).unwrap();
        f.write_all(b"walked\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("other/1.log")).unwrap(),
            "walked\n"
        );
    }

    #[test]
    fn a_symlinked_log_directory_is_refused_at_open_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let dir = tmp.path().join("pod");
        std::os::unix::fs::symlink(&outside, &dir).unwrap();
        assert!(LogFile::open(&dir.join("0.log"), Some(&dir)).is_err());
        untouched(&outside);

        // Swapped in after the open: the reopen fails, the old file stays in use.
        std::fs::remove_file(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("app/0.log");
        let mut file = LogFile::open(&path, Some(&dir)).unwrap();
        std::fs::rename(&dir, tmp.path().join("old")).unwrap();
        std::os::unix::fs::symlink(&outside, &dir).unwrap();
        assert!(file.reopen().is_err());
        file.write(b"still the old file\n");
        untouched(&outside);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("old/app/0.log")).unwrap(),
            "still the old file\n"
        );
    }

    #[test]
    fn symlinks_beneath_never_lead_out() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let dir = tmp.path().join("pod");
        std::fs::create_dir(&dir).unwrap();
        let link = |name: &str, target: &Path| {
            std::os::unix::fs::symlink(target, dir.join(name)).unwrap();
        };
        link("abs", &outside);
        link("rel", Path::new("../outside"));
        link("file.log", &outside.join("file.log"));
        let fd = open_log_dir(&dir).unwrap();
        for rel in ["abs/0.log", "rel/0.log", "abs/new/0.log", "file.log"] {
            assert!(
                LogFile::open(&dir.join(rel), Some(&dir)).is_err(),
                "{rel} opened"
            );
            assert!(walk_append(&fd, Path::new(rel)).is_err(), "{rel} walked");
            untouched(&outside);
        }
    }
}
