//! Pinned namespaces: hostname and sysctls inside, host untouched, clean release.

mod common;

use std::collections::BTreeMap;
use std::fs::File;

use common::*;
use network::{ErrorKind, NamespaceRequest};
use nix::sched::{setns, CloneFlags};

fn in_ns<T: Send + 'static>(
    file: &std::path::Path,
    kind: CloneFlags,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let ns = File::open(file).expect("open ns");
    std::thread::spawn(move || {
        setns(ns, kind).expect("setns");
        f()
    })
    .join()
    .expect("thread")
}

#[test]
fn hostname_and_sysctls_inside_only() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let pod = dir.path().join("pod");
    let host_port_start =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").expect("read");
    let host_shm = std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").expect("read");
    let host_name = nix::unistd::gethostname().expect("hostname");
    let req = NamespaceRequest {
        net: true,
        ipc: true,
        uts: true,
        hostname: Some("pod-hostname".into()),
        sysctls: BTreeMap::from([
            (
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "0".to_string(),
            ),
            (
                "net.ipv4.ping_group_range".to_string(),
                "0 2147483647".to_string(),
            ),
            ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
        ]),
        userns: None,
    };
    let pinned = network::pin_namespaces(&pod, &req).expect("pin");
    let (net, ipc, uts) = (
        pinned.net.clone().expect("net"),
        pinned.ipc.clone().expect("ipc"),
        pinned.uts.clone().expect("uts"),
    );
    assert_eq!(net, pod.join("net"));

    let inside = in_ns(&uts, CloneFlags::CLONE_NEWUTS, || {
        nix::unistd::gethostname().expect("hostname")
    });
    assert_eq!(inside.to_str(), Some("pod-hostname"));
    let inside = network::run_in_netns(&net, || {
        (
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                .unwrap_or_default(),
            std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default(),
        )
    })
    .expect("enter net");
    assert_eq!(inside.0.trim(), "0");
    assert_eq!(
        inside.1.split_whitespace().collect::<Vec<_>>(),
        ["0", "2147483647"]
    );
    let inside = in_ns(&ipc, CloneFlags::CLONE_NEWIPC, || {
        std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap_or_default()
    });
    assert_eq!(inside.trim(), "1");

    // The host is unchanged.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").expect("read"),
        host_port_start
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").expect("read"),
        host_shm
    );
    assert_eq!(nix::unistd::gethostname().expect("hostname"), host_name);

    // Pinning again on top is refused; release twice is fine and leaves nothing.
    let again = network::pin_namespaces(&pod, &req).expect_err("already pinned");
    assert_eq!(again.kind(), ErrorKind::AlreadyExists);
    assert_eq!(mounts_under(dir.path()).len(), 3);
    network::release_namespaces(&pod).expect("release");
    network::release_namespaces(&pod).expect("release twice");
    assert_eq!(mounts_under(dir.path()), Vec::<String>::new());
    for kind in ["net", "ipc", "uts"] {
        assert!(!pod.join(kind).exists(), "{kind} left");
    }
}

#[test]
fn only_the_asked_kinds_are_pinned() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let pod = dir.path().join("pod");
    let req = NamespaceRequest {
        ipc: true,
        hostname: Some("ignored-without-uts".into()),
        ..Default::default()
    };
    let host_name = nix::unistd::gethostname().expect("hostname");
    let pinned = network::pin_namespaces(&pod, &req).expect("pin");
    assert!(pinned.net.is_none() && pinned.uts.is_none());
    assert!(pinned.ipc.is_some());
    assert!(!pod.join("net").exists());
    assert_eq!(nix::unistd::gethostname().expect("hostname"), host_name);
    network::release_namespaces(&pod).expect("release");
    assert_eq!(mounts_under(dir.path()), Vec::<String>::new());
}

#[test]
fn bad_sysctls_are_rejected_and_nothing_is_left() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let pod = dir.path().join("pod");
    let cases = [
        // Not namespaced.
        ("vm.swappiness", "10", true),
        // A net sysctl for a pod without its own network namespace.
        ("net.ipv4.ip_unprivileged_port_start", "0", false),
        // A value the kernel refuses.
        ("net.ipv4.ip_unprivileged_port_start", "not-a-number", true),
        // No such key in a pod's namespace.
        ("net.ipv4.no_such_knob", "1", true),
    ];
    for (key, value, net) in cases {
        let req = NamespaceRequest {
            net,
            ipc: true,
            uts: true,
            sysctls: BTreeMap::from([(key.to_string(), value.to_string())]),
            ..Default::default()
        };
        let err = network::pin_namespaces(&pod, &req).expect_err(key);
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidArgument {
                field: format!("sysctls[{key}]")
            },
            "{key}: {err}"
        );
        assert_eq!(mounts_under(dir.path()), Vec::<String>::new(), "{key}");
        for kind in ["net", "ipc", "uts"] {
            assert!(!pod.join(kind).exists(), "{key}: {kind} left");
        }
    }
    assert!(network::validate_sysctl("vm.swappiness").is_err());
    assert_eq!(
        network::validate_sysctl("kernel.sem").ok(),
        Some(network::SysctlKind::Ipc)
    );
}

/// The (dev, inode) of a namespace file, or of the namespace an fd is on.
fn ns_id(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// The user namespace that owns the namespace pinned at `path` (ioctl NS_GET_USERNS).
fn owner_of(path: &std::path::Path) -> (u64, u64) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    let ns = File::open(path).expect("open ns");
    // SAFETY: an open nsfs fd; the ioctl takes no argument and returns a new fd.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS) };
    assert!(fd >= 0, "NS_GET_USERNS on {}", path.display());
    // SAFETY: the kernel just returned this fd.
    let owner = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ns_id(&owner.metadata().expect("stat owner"))
}

fn nsenter(args: &[&str]) -> String {
    let out = std::process::Command::new("nsenter")
        .args(args)
        .output()
        .expect("nsenter");
    assert!(out.status.success(), "nsenter {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn user_namespace_owns_the_pod_namespaces() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let pod = dir.path().join("pod");
    let map = network::IdMapping {
        container_id: 0,
        host_id: 300_000,
        length: 65_536,
    };
    let req = NamespaceRequest {
        net: true,
        ipc: true,
        uts: true,
        hostname: Some("userns-pod".into()),
        sysctls: BTreeMap::from([(
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "0".to_string(),
        )]),
        userns: Some(network::UserNamespace {
            uids: vec![map],
            gids: vec![map],
        }),
    };
    let pinned = network::pin_namespaces(&pod, &req).expect("pin");
    let user = pinned.user.clone().expect("user");
    let user_id = ns_id(&std::fs::metadata(&user).expect("stat user"));
    let host_user = ns_id(&std::fs::metadata("/proc/self/ns/user").expect("stat"));
    assert_ne!(user_id, host_user, "a user namespace of its own");
    for ns in [&pinned.net, &pinned.ipc, &pinned.uts] {
        let ns = ns.clone().expect("pinned");
        assert_eq!(
            owner_of(&ns),
            user_id,
            "{} is not owned by the pod's",
            ns.display()
        );
    }
    let user_arg = format!("--user={}", user.display());
    let uts_arg = format!("--uts={}", pinned.uts.clone().expect("uts").display());
    let net_arg = format!("--net={}", pinned.net.clone().expect("net").display());
    assert_eq!(
        nsenter(&[&user_arg, "cat", "/proc/self/uid_map"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "300000", "65536"]
    );
    assert_eq!(
        nsenter(&[&user_arg, "cat", "/proc/self/gid_map"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "300000", "65536"]
    );
    // setgroups stays allowed: the container sets its supplementary groups.
    assert_eq!(
        nsenter(&[&user_arg, "cat", "/proc/self/setgroups"]),
        "allow"
    );
    assert_eq!(nsenter(&[&user_arg, &uts_arg, "hostname"]), "userns-pod");
    assert_eq!(
        nsenter(&[
            &user_arg,
            &net_arg,
            "cat",
            "/proc/sys/net/ipv4/ip_unprivileged_port_start"
        ]),
        "0"
    );
    // The holder is gone: only the pins keep the namespaces.
    assert_eq!(mounts_under(dir.path()).len(), 4);
    network::release_namespaces(&pod).expect("release");
    assert_eq!(mounts_under(dir.path()), Vec::<String>::new());
    for kind in ["user", "net", "ipc", "uts"] {
        assert!(!pod.join(kind).exists(), "{kind} left");
    }
}

#[test]
fn user_namespace_needs_all_three_and_a_valid_map() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let pod = dir.path().join("pod");
    let map = network::IdMapping {
        container_id: 0,
        host_id: 300_000,
        length: 65_536,
    };
    let userns = network::UserNamespace {
        uids: vec![map],
        gids: vec![map],
    };
    let req = NamespaceRequest {
        net: true,
        ipc: false,
        uts: true,
        userns: Some(userns.clone()),
        ..Default::default()
    };
    let err = network::pin_namespaces(&pod, &req).expect_err("host IPC with a userns");
    assert!(
        matches!(err.kind(), ErrorKind::InvalidArgument { .. }),
        "{err}"
    );
    // Two overlapping lines: the kernel refuses the map, named as the request's field.
    let req = NamespaceRequest {
        net: true,
        ipc: true,
        uts: true,
        userns: Some(network::UserNamespace {
            uids: vec![map, map],
            gids: vec![map],
        }),
        ..Default::default()
    };
    let err = network::pin_namespaces(&pod, &req).expect_err("overlapping maps");
    assert!(
        matches!(&err.kind(), ErrorKind::InvalidArgument { field } if field.contains("uid")),
        "{err}"
    );
    assert_eq!(mounts_under(dir.path()), Vec::<String>::new());
}
