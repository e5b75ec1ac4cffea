//! cgroup v2: loading the device filter with `bpf(2)` and attaching it to a cgroup.
//!
//! The only `unsafe` of the cgroups module: the `bpf` syscall and the `#[repr(C)]` prefixes
//! of `union bpf_attr` it reads. Each attr is passed with its own size; the kernel treats
//! the fields past it as zero.
//!
//! Attaching uses `BPF_F_ALLOW_MULTI` (what systemd and runc use, so neither refuses the
//! other), the new program first and then every program that was there before is
//! detached: a cgroup is never without a filter while one is being replaced, and only
//! ours remains.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::program::{encode, program};
use super::DeviceState;
use crate::cgroups::{CgroupError, Result};

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Kernel ≥ 4.15 reads a name; shown by `bpftool prog`.
const PROG_NAME: &[u8] = b"corral_devices";
/// The license the program declares (runc's).
const LICENSE: &str = "Apache";
/// How much of the verifier's log an error carries.
const LOG_SIZE: usize = 64 * 1024;
const LOG_TAIL: usize = 2048;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `bpf(cmd, attr, sizeof attr)`; the result (an fd or 0) or errno.
fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    let size = u32::try_from(size_of::<T>()).map_err(|_| io::Error::other("bpf attr size"))?;
    // SAFETY: `attr` is a live, initialised #[repr(C)] prefix of `union bpf_attr` for
    // `cmd`, of `size` bytes; pointers inside it (insns, license, log, ids) point at
    // buffers that outlive the call and are as long as the counts beside them say.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn to_fd(rc: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(rc).map_err(|_| io::Error::other("bpf returned no fd"))?;
    // SAFETY: the kernel just returned this new descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: &impl AsRawFd) -> u32 {
    // Descriptors are never negative.
    fd.as_raw_fd() as u32
}

struct Errors<'a>(&'a Path);

impl Errors<'_> {
    fn bpf(&self, op: &'static str) -> impl FnOnce(io::Error) -> CgroupError {
        let path = self.0.to_path_buf();
        move |source| CgroupError::Bpf {
            op,
            path,
            source,
            log: String::new(),
        }
    }
}

/// Loads the program; on a verifier refusal, loads it again with a log to say why.
fn load(state: &DeviceState, dir: &Path) -> Result<OwnedFd> {
    let insns = program(state);
    let code = encode(&insns);
    let license = CString::new(LICENSE).map_err(|e| CgroupError::Bpf {
        op: "license",
        path: dir.to_path_buf(),
        source: io::Error::other(e),
        log: String::new(),
    })?;
    let mut name = [0u8; 16];
    name[..PROG_NAME.len()].copy_from_slice(PROG_NAME);
    let attr = |log: Option<&mut Vec<u8>>| {
        let mut a = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: insns.len() as u32,
            insns: code.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            ..Default::default()
        };
        if let Some(buf) = log {
            a.log_level = 1;
            a.log_size = buf.len() as u32;
            a.log_buf = buf.as_mut_ptr() as u64;
        }
        a
    };
    match sys_bpf(BPF_PROG_LOAD, &mut attr(None)) {
        Ok(rc) => to_fd(rc).map_err(Errors(dir).bpf("BPF_PROG_LOAD")),
        Err(source) => {
            let mut buf = vec![0u8; LOG_SIZE];
            let _ = sys_bpf(BPF_PROG_LOAD, &mut attr(Some(&mut buf)));
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            let text = String::from_utf8_lossy(&buf[..end]);
            let tail = &text[floor_char_boundary(&text, text.len().saturating_sub(LOG_TAIL))..];
            Err(CgroupError::Bpf {
                op: "BPF_PROG_LOAD",
                path: dir.to_path_buf(),
                source,
                log: if tail.trim().is_empty() {
                    String::new()
                } else {
                    format!(" (verifier: {})", tail.trim())
                },
            })
        }
    }
}

/// The largest char boundary of `s` at or below `i` (`str::floor_char_boundary` is newer
/// than our minimum Rust).
fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn open_dir(dir: &Path) -> Result<OwnedFd> {
    let f = std::fs::File::open(dir).map_err(CgroupError::io("open", dir))?;
    Ok(OwnedFd::from(f))
}

/// The ids of the device programs attached to the cgroup at `dir` (not its ancestors).
pub fn attached(dir: &Path) -> Result<Vec<u32>> {
    let cg = open_dir(dir)?;
    query(&cg, dir)
}

fn query(cg: &OwnedFd, dir: &Path) -> Result<Vec<u32>> {
    let err = Errors(dir);
    let mut attr = QueryAttr {
        target_fd: fd_u32(cg),
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_QUERY, &mut attr).map_err(err.bpf("BPF_PROG_QUERY"))?;
    if attr.prog_cnt == 0 {
        return Ok(Vec::new());
    }
    // Room for a few more, in case one is attached in between.
    let mut ids = vec![0u32; attr.prog_cnt as usize + 8];
    let mut attr = QueryAttr {
        target_fd: fd_u32(cg),
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_QUERY, &mut attr).map_err(Errors(dir).bpf("BPF_PROG_QUERY"))?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

fn detach(cg: &OwnedFd, id: u32, dir: &Path) -> Result<()> {
    let mut get = GetFdByIdAttr {
        prog_id: id,
        ..Default::default()
    };
    let prog = match sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
        Ok(rc) => to_fd(rc).map_err(Errors(dir).bpf("BPF_PROG_GET_FD_BY_ID"))?,
        // Gone meanwhile: nothing to detach.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(Errors(dir).bpf("BPF_PROG_GET_FD_BY_ID")(e)),
    };
    let mut attr = AttachAttr {
        target_fd: fd_u32(cg),
        attach_bpf_fd: fd_u32(&prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    match sys_bpf(BPF_PROG_DETACH, &mut attr) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(Errors(dir).bpf("BPF_PROG_DETACH")(e)),
    }
}

/// Makes the program for `state` the only device program of the cgroup at `dir`; an
/// allow-all state needs none, and just has the old ones detached.
pub(super) fn apply(dir: &Path, state: &DeviceState) -> Result<()> {
    let cg = open_dir(dir)?;
    let old = query(&cg, dir)?;
    if !state.allows_all() {
        let prog = load(state, dir)?;
        let mut attr = AttachAttr {
            target_fd: fd_u32(&cg),
            attach_bpf_fd: fd_u32(&prog),
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: BPF_F_ALLOW_MULTI,
        };
        sys_bpf(BPF_PROG_ATTACH, &mut attr).map_err(Errors(dir).bpf("BPF_PROG_ATTACH"))?;
        // The attachment holds the program; our descriptor can go.
    }
    for id in old {
        detach(&cg, id, dir)?;
    }
    tracing::debug!(cgroup = %dir.display(), exceptions = state.exceptions.len(),
        default_allow = state.default_allow, "device filter attached");
    Ok(())
}
