//! Sysctl keys: which namespace a key belongs to, and writing one under /proc/sys.
//!
//! Files under /proc/sys/net and the IPC ones (/proc/sys/kernel/{shm*,msg*,sem},
//! /proc/sys/fs/mqueue) resolve against the namespaces of the task that opens them, so
//! writing them from a thread that has unshared (or setns'd into) the pod's namespaces
//! sets the pod's value and leaves the host's alone.

use std::io::Write;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Which namespace a namespaced sysctl lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysctlKind {
    /// `net.*`: the network namespace.
    Net,
    /// `kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`: the IPC namespace.
    Ipc,
}

/// Check that `key` is a sysctl a pod may set (a namespaced one) and say which namespace
/// it belongs to. Keys use `.` or `/` as separator (`net.ipv4.ip_forward`,
/// `net/ipv4/conf/eth0.100/forwarding`).
pub fn validate_sysctl(key: &str) -> Result<SysctlKind> {
    let field = || format!("sysctls[{key}]");
    let parts = components(key).ok_or_else(|| Error::invalid(field(), "not a sysctl name"))?;
    let kind = match parts.as_slice() {
        ["net", _, ..] => Some(SysctlKind::Net),
        ["kernel", leaf]
            if *leaf == "sem" || leaf.starts_with("shm") || leaf.starts_with("msg") =>
        {
            Some(SysctlKind::Ipc)
        }
        ["fs", "mqueue", _] => Some(SysctlKind::Ipc),
        _ => None,
    };
    kind.ok_or_else(|| {
        Error::invalid(
            field(),
            "not a namespaced sysctl (allowed: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)",
        )
    })
}

/// The path of `key` under /proc/sys.
pub(crate) fn proc_path(key: &str) -> Result<PathBuf> {
    let parts = components(key)
        .ok_or_else(|| Error::invalid(format!("sysctls[{key}]"), "not a sysctl name"))?;
    let mut path = PathBuf::from("/proc/sys");
    path.extend(parts);
    Ok(path)
}

/// Write `value` to the sysctl `key` as seen by the calling thread.
pub(crate) fn write(key: &str, value: &str) -> Result<()> {
    let path = proc_path(key)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::invalid(
                    format!("sysctls[{key}]"),
                    "no such sysctl in this namespace",
                )
            } else {
                Error::Io {
                    context: format!("open {}", path.display()),
                    source: e,
                }
            }
        })?;
    file.write_all(value.as_bytes()).map_err(|e| {
        if e.raw_os_error() == Some(libc::EINVAL) {
            Error::invalid(
                format!("sysctls[{key}]"),
                format!("value {value:?} rejected by the kernel"),
            )
        } else {
            Error::Io {
                context: format!("write {}", path.display()),
                source: e,
            }
        }
    })
}

/// Split a key into path components; None when it is empty or could climb out of /proc/sys.
fn components(key: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = if key.contains('/') {
        key.split('/').collect()
    } else {
        key.split('.').collect()
    };
    let ok = !parts.is_empty()
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\0'));
    ok.then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let cases = [
            ("net.ipv4.ip_forward", Some(SysctlKind::Net)),
            ("net.ipv4.ip_unprivileged_port_start", Some(SysctlKind::Net)),
            ("net/ipv4/conf/eth0.100/forwarding", Some(SysctlKind::Net)),
            ("kernel.shmmax", Some(SysctlKind::Ipc)),
            ("kernel.shm_rmid_forced", Some(SysctlKind::Ipc)),
            ("kernel.msgmax", Some(SysctlKind::Ipc)),
            ("kernel.sem", Some(SysctlKind::Ipc)),
            ("fs.mqueue.msg_max", Some(SysctlKind::Ipc)),
            ("vm.swappiness", None),
            ("kernel.hostname", None),
            ("kernel.semx", None),
            ("net", None),
            ("net..x", None),
            ("net/../vm/swappiness", None),
            ("", None),
        ];
        for (key, want) in cases {
            assert_eq!(validate_sysctl(key).ok(), want, "{key}");
        }
        let err = validate_sysctl("vm.swappiness").expect_err("rejected");
        assert!(err.to_string().contains("vm.swappiness"), "{err}");
    }

    #[test]
    fn paths() {
        assert_eq!(
            proc_path("net.ipv4.ping_group_range").expect("path"),
            PathBuf::from("/proc/sys/net/ipv4/ping_group_range")
        );
        assert_eq!(
            proc_path("net/ipv4/conf/eth0.100/forwarding").expect("path"),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
    }
}
