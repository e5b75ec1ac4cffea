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
