//! The container's seccomp profile, as `linux.seccomp` of its OCI spec: our built-in
//! RuntimeDefault, a Localhost profile read from the node, or none (Unconfined, unset,
//! privileged). The shim compiles and loads it (`shim::init::seccomp`).
//!
//! RuntimeDefault has the effect of containerd's default profile (itself moby's): refuse
//! with EPERM every syscall not listed; allow the ones every program uses; allow the ones
//! a capability guards when the container's bounding set holds that capability; allow
//! clone only without namespace flags and clone3 not at all (ENOSYS, so that glibc falls
//! back to clone, whose flags a filter can read) unless CAP_SYS_ADMIN; allow socket for
//! every address family but AF_ALG and AF_VSOCK; allow only the harmless personalities.
//! The lists hold the names of every architecture's variants (chown32, _llseek); the
//! compiler skips the names its architecture lacks, as runc does.

use oci_spec::runtime::{
    Arch, Capability, LinuxCapabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
};

use super::config::SecurityConfig;
use crate::error::{Error, Result};

/// The CRI field every seccomp error names.
pub const FIELD: &str = "config.linux.security_context.seccomp";

/// The largest Localhost profile we read (moby's default profile is 20 KiB).
pub const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// Syscalls every container may make.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    // Files and directories.
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range",
    "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64",
    "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown",
    "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "flock", "fstat", "fstat64",
    "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futimesat",
    "getcwd", "getdents", "getdents64", "lchown", "lchown32", "link", "linkat", "_llseek",
    "lseek", "lstat", "lstat64", "mkdir", "mkdirat", "mknod", "mknodat", "name_to_handle_at",
    "newfstatat", "open", "openat", "openat2", "pread64", "preadv", "preadv2", "pwrite64",
    "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "rename",
    "renameat", "renameat2", "rmdir", "sendfile", "sendfile64", "splice", "stat", "stat64",
    "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs",
    "tee", "truncate", "truncate64", "umask", "unlink", "unlinkat", "utime", "utimensat",
    "utimensat_time64", "utimes", "vmsplice", "write", "writev",
    // Extended attributes.
    "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "getxattrat",
    "lgetxattr", "listxattr", "listxattrat", "llistxattr", "lremovexattr", "lsetxattr",
    "removexattr", "removexattrat", "setxattr", "setxattrat",
    // Waiting for descriptors, events and timers.
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "_newselect", "poll", "ppoll",
    "ppoll_time64", "pselect6", "pselect6_time64", "select", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64",
    // Asynchronous I/O.
    "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "io_setup", "io_submit", "ioctl", "ioprio_get", "ioprio_set",
    // Memory.
    "brk", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret",
    "mincore", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mremap", "mseal",
    "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect",
    "remap_file_pages", "cachestat",
    // Processes, threads, identity and limits.
    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "getcpu", "getegid",
    "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
    "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getresgid", "getresgid32",
    "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid",
    "get_thread_area", "gettid", "getuid", "getuid32", "kill", "pidfd_open",
    "pidfd_send_signal", "prctl", "prlimit64", "process_mrelease", "restart_syscall", "rseq",
    "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "setfsgid", "setfsgid32", "setfsuid",
    "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setpgid", "setpriority",
    "setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32",
    "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid", "set_thread_area",
    "set_tid_address", "setuid", "setuid32", "tgkill", "tkill", "ugetrlimit", "vfork", "wait4",
    "waitid", "waitpid", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr",
    "uretprobe",
    // Futexes.
    "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake",
    // Signals.
    "alarm", "pause", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
    "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "sigaltstack", "sigprocmask", "sigreturn",
    // Clocks and timers.
    "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime",
    "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "adjtimex", "getitimer",
    "gettimeofday", "nanosleep", "setitimer", "time", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
    "times",
    // Sockets (socket itself below, by address family).
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
    "listen", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg",
    "sendmsg", "sendto", "setsockopt", "shutdown", "socketcall", "socketpair",
    // System V and POSIX IPC.
    "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd",
    "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt",
    "shmget",
    // Pipes and the rest.
    "pipe", "pipe2", "getrandom", "sysinfo", "uname", "listmount", "statmount",
    // Safe since Linux 4.8 (ptrace can no longer bypass seccomp).
    "process_vm_readv", "process_vm_writev", "ptrace",
];

/// Per architecture, allowed too.
const ALLOWED_X86_64: &[&str] = &["arch_prctl", "modify_ldt"];
#[rustfmt::skip]
const ALLOWED_AARCH64: &[&str] = &[
    "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
    "set_tls",
];

/// Allowed when the container's bounding set holds the capability.
#[rustfmt::skip]
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (Capability::SysAdmin, &[
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
        "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
        "umount2", "unshare",
    ]),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (Capability::SysModule, &["delete_module", "init_module", "finit_module"]),
    (Capability::SysPacct, &["acct"]),
    (Capability::SysPtrace, &[
        "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
        "ptrace",
    ]),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (Capability::SysTime, &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    (Capability::SysTtyConfig, &["vhangup"]),
    (Capability::SysNice, &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// CLONE_NEWNS | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWCGROUP.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Personalities a program may switch to: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE (with
/// either), and the query 0xffffffff.
const PERSONALITIES: &[u64] = &[0x0, 0x0008, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// AF_ALG and AF_VSOCK: socket(2) refuses these two families (and allows 39 between).
const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;

/// The profile for a container with `caps`, per its security context: None is no filter.
pub fn profile(sec: &SecurityConfig, caps: &LinuxCapabilities) -> Result<Option<LinuxSeccomp>> {
    // containerd: a privileged container is never filtered, whatever it asks for.
    if sec.privileged {
        return Ok(None);
    }
    match sec.seccomp.as_str() {
        // CRI: unset is the runtime's choice, which is unconfined (as containerd's
        // default `unset_seccomp_profile`); kubelet sends RuntimeDefault when it wants it.
        "" | "unconfined" => Ok(None),
        "runtime/default" | "docker/default" => runtime_default(caps).map(Some),
        other => match other.strip_prefix("localhost/") {
            Some(path) => localhost(path).map(Some),
            None => Err(Error::invalid(
                FIELD,
                format!("unknown seccomp profile {other:?}"),
            )),
        },
    }
}

/// Our RuntimeDefault for a container whose bounding set is `caps.bounding`.
pub fn runtime_default(caps: &LinuxCapabilities) -> Result<LinuxSeccomp> {
    let bounding = caps.bounding().clone().unwrap_or_default();
    let arch_allowed = if cfg!(target_arch = "aarch64") {
        ALLOWED_AARCH64
    } else {
        ALLOWED_X86_64
    };
    let mut allowed: Vec<&str> = ALLOWED.iter().chain(arch_allowed).copied().collect();
    for (cap, names) in BY_CAPABILITY {
        if bounding.contains(cap) {
            allowed.extend(names.iter().copied());
        }
    }
    allowed.sort_unstable();
    allowed.dedup();

    let mut syscalls = vec![syscall(
        &allowed,
        LinuxSeccompAction::ScmpActAllow,
        None,
        vec![],
    )];
    let single = |name, op, value, two| -> Result<LinuxSyscall> {
        Ok(syscall(
            &[name],
            LinuxSeccompAction::ScmpActAllow,
            None,
            vec![arg(0, op, value, two)?],
        ))
    };
    // One rule per range: AF_ALG and AF_VSOCK match none, so the default refuses them.
    syscalls.push(single(
        "socket",
        LinuxSeccompOperator::ScmpCmpLt,
        AF_ALG,
        None,
    )?);
    syscalls.push(single(
        "socket",
        LinuxSeccompOperator::ScmpCmpEq,
        AF_ALG + 1,
        None,
    )?);
    syscalls.push(single(
        "socket",
        LinuxSeccompOperator::ScmpCmpGt,
        AF_VSOCK,
        None,
    )?);
    for persona in PERSONALITIES {
        syscalls.push(single(
            "personality",
            LinuxSeccompOperator::ScmpCmpEq,
            *persona,
            None,
        )?);
    }
    if !bounding.contains(&Capability::SysAdmin) {
        syscalls.push(single(
            "clone",
            LinuxSeccompOperator::ScmpCmpMaskedEq,
            CLONE_NAMESPACE_FLAGS,
            Some(0),
        )?);
        syscalls.push(syscall(
            &["clone3"],
            LinuxSeccompAction::ScmpActErrno,
            Some(libc::ENOSYS as u32),
            vec![],
        ));
    }

    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(None)
        .set_architectures(Some(architectures()))
        .set_flags(None)
        .set_listener_path(None)
        .set_listener_metadata(None)
        .set_syscalls(Some(syscalls));
    Ok(profile)
}

/// What containerd lists for the profile; informative only (the shim filters the native
/// architecture and gives the others the default action).
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchArm, Arch::ScmpArchAarch64]
    } else {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    }
}

fn syscall(
    names: &[&str],
    action: LinuxSeccompAction,
    errno: Option<u32>,
    args: Vec<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect())
        .set_action(action)
        .set_errno_ret(errno)
        .set_args((!args.is_empty()).then_some(args));
    s
}

fn arg(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    two: Option<u64>,
) -> Result<LinuxSeccompArg> {
    let b = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    let b = match two {
        Some(two) => b.value_two(two),
        None => b,
    };
    b.build()
        .map_err(|e| Error::Internal(format!("building a seccomp argument: {e}")))
}

/// A Localhost profile: the OCI seccomp JSON (`linux.seccomp` of a runtime spec) at the
/// absolute `path` on the node, checked by compiling it here so that a profile the shim
/// would refuse fails with this field's name.
pub fn localhost(path: &str) -> Result<LinuxSeccomp> {
    use std::io::Read;
    let bad = |why: String| Error::invalid(FIELD, format!("localhost profile {path:?}: {why}"));
    if !path.starts_with('/') {
        return Err(bad("not an absolute path".into()));
    }
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut text = Vec::new();
    file.take(MAX_PROFILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| bad(e.to_string()))?;
    if text.len() as u64 > MAX_PROFILE_BYTES {
        return Err(bad(format!("larger than {MAX_PROFILE_BYTES} bytes")));
    }
    let profile: LinuxSeccomp = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("not an OCI seccomp profile: {e}")))?;
    crate::shim::init::check_seccomp(&profile).map_err(|e| bad(e.to_string()))?;
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A bounding set of these capabilities.
    pub fn caps(list: &[Capability]) -> LinuxCapabilities {
        let mut c = LinuxCapabilities::default();
        c.set_bounding(Some(list.iter().copied().collect::<HashSet<_>>()));
        c
    }

    fn runtime_default_ok(c: &LinuxCapabilities) -> LinuxSeccomp {
        runtime_default(c).expect("runtime default")
    }

    fn sec(seccomp: &str, privileged: bool) -> SecurityConfig {
        SecurityConfig {
            seccomp: seccomp.to_string(),
            privileged,
            ..Default::default()
        }
    }

    fn invalid(r: Result<Option<LinuxSeccomp>>) -> String {
        match r {
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(field, FIELD);
                reason
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    /// The action for `name` with no argument filter, if a rule gives one.
    fn plain(p: &LinuxSeccomp, name: &str) -> Option<LinuxSeccompAction> {
        p.syscalls()
            .iter()
            .flatten()
            .find(|s| s.args().is_none() && s.names().iter().any(|n| n == name))
            .map(|s| s.action())
    }

    fn filtered<'a>(p: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.args().is_some() && s.names().iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn selection_per_profile_and_privilege() {
        let default = caps(&[Capability::Chown, Capability::NetRaw]);
        for (value, privileged, confined) in [
            ("", false, false),
            ("unconfined", false, false),
            ("runtime/default", false, true),
            ("docker/default", false, true),
            ("runtime/default", true, false),
            // Privileged wins even over a path that does not exist.
            ("localhost//no/such/profile.json", true, false),
        ] {
            let got = profile(&sec(value, privileged), &default);
            assert_eq!(
                got.as_ref().map(Option::is_some).ok(),
                Some(confined),
                "{value:?} privileged={privileged}: {got:?}"
            );
        }
        let e = invalid(profile(&sec("bogus", false), &default));
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn runtime_default_follows_the_capabilities() {
        let plainest = runtime_default_ok(&caps(&[Capability::Chown]));
        assert_eq!(plainest.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(plainest.default_errno_ret(), None);
        for name in [
            "read",
            "write",
            "openat",
            "execve",
            "exit_group",
            "futex",
            "capset",
        ] {
            assert_eq!(
                plain(&plainest, name),
                Some(LinuxSeccompAction::ScmpActAllow),
                "{name}"
            );
        }
        for name in [
            "mount",
            "unshare",
            "setns",
            "sethostname",
            "reboot",
            "bpf",
            "chroot",
            "syslog",
            "clone",
        ] {
            assert_eq!(plain(&plainest, name), None, "{name}");
        }
        // clone only without namespace flags; clone3 is ENOSYS.
        let clone = filtered(&plainest, "clone");
        assert_eq!(clone.len(), 1);
        let args = clone[0].args().as_deref().unwrap_or_default();
        assert_eq!(args.len(), 1);
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(
            (args[0].index(), args[0].value(), args[0].value_two()),
            (0, 0x7E02_0000, Some(0))
        );
        assert_eq!(
            plain(&plainest, "clone3"),
            Some(LinuxSeccompAction::ScmpActErrno)
        );
        let clone3 = plainest
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone3"]);
        assert_eq!(
            clone3.and_then(|s| s.errno_ret()),
            Some(libc::ENOSYS as u32)
        );
        assert_eq!(filtered(&plainest, "socket").len(), 3);
        assert_eq!(
            filtered(&plainest, "personality").len(),
            PERSONALITIES.len()
        );

        let admin = runtime_default_ok(&caps(&[
            Capability::SysAdmin,
            Capability::SysTime,
            Capability::SysChroot,
        ]));
        for name in [
            "mount",
            "unshare",
            "setns",
            "sethostname",
            "clone",
            "clone3",
            "settimeofday",
            "chroot",
        ] {
            assert_eq!(
                plain(&admin, name),
                Some(LinuxSeccompAction::ScmpActAllow),
                "{name}"
            );
        }
        assert!(filtered(&admin, "clone").is_empty());
        assert_eq!(plain(&admin, "reboot"), None);
        let each = [
            (Capability::SysBoot, "reboot"),
            (Capability::SysModule, "finit_module"),
            (Capability::SysPtrace, "kcmp"),
            (Capability::SysRawio, "iopl"),
            (Capability::SysNice, "mbind"),
            (Capability::SysPacct, "acct"),
            (Capability::SysTtyConfig, "vhangup"),
            (Capability::Syslog, "syslog"),
            (Capability::Bpf, "bpf"),
            (Capability::Perfmon, "perf_event_open"),
            (Capability::DacReadSearch, "open_by_handle_at"),
        ];
        for (cap, name) in each {
            assert_eq!(plain(&plainest, name), None, "{name}");
            let p = runtime_default_ok(&caps(&[cap]));
            assert_eq!(
                plain(&p, name),
                Some(LinuxSeccompAction::ScmpActAllow),
                "{cap:?} {name}"
            );
        }
        // The shim accepts it.
        assert!(crate::shim::init::check_seccomp(&plainest).is_ok());
    }

    fn write(dir: &std::path::Path, name: &str, text: &[u8]) -> String {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        format!("localhost/{}", path.display())
    }

    #[test]
    fn localhost_profiles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let none = caps(&[]);
        let ok = write(
            dir.path(),
            "ok.json",
            br#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["sethostname", "not_a_syscall"], "action": "SCMP_ACT_ERRNO"}],
                "comment": "unknown keys are ignored"}"#,
        );
        let p = profile(&sec(&ok, false), &none)
            .expect("valid")
            .expect("some");
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(
            plain(&p, "sethostname"),
            Some(LinuxSeccompAction::ScmpActErrno)
        );

        let path = |v: &str| v.trim_start_matches("localhost/").to_string();
        let missing = format!("localhost/{}/missing.json", dir.path().display());
        let e = invalid(profile(&sec(&missing, false), &none));
        assert!(
            e.contains(&path(&missing)) && e.contains("No such file"),
            "{e}"
        );

        let e = invalid(profile(&sec("localhost/relative.json", false), &none));
        assert!(e.contains("not an absolute path"), "{e}");

        let big = write(
            dir.path(),
            "big.json",
            &vec![b' '; MAX_PROFILE_BYTES as usize + 1],
        );
        let e = invalid(profile(&sec(&big, false), &none));
        assert!(e.contains(&path(&big)) && e.contains("larger than"), "{e}");

        for (name, text, why) in [
            ("junk.json", &b"{not json"[..], "not an OCI seccomp profile"),
            ("action.json", br#"{"defaultAction": "SCMP_ACT_MAYBE"}"#, "not an OCI seccomp profile"),
            ("op.json", br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]}"#, "not an OCI seccomp profile"),
            ("notify.json", br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}"#, "linux.seccomp.syscalls[0].action"),
            ("index.json", br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#, "args[0].index"),
        ] {
            let v = write(dir.path(), name, text);
            let e = invalid(profile(&sec(&v, false), &none));
            assert!(e.contains(&path(&v)) && e.contains(why), "{name}: {e}");
        }
    }
}
