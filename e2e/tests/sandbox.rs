//! Pod sandboxes end to end: a real corrald, pods checked from the kernel's side (addresses,
//! namespaces, files, rules), restarts, bad input, and nothing left behind.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use e2e::client::Cri;
use e2e::daemon::Daemon;
use e2e::skip::have_root;
use tonic::Code;

/// A daemon with its own bridge and /24, so tests in parallel don't share addresses.
async fn daemon(test: &str, n: u8) -> Result<Option<(Daemon, Cri)>> {
    if !have_root(test) {
        return Ok(None);
    }
    let d = Daemon::start(&format!(
        "[network]\nbridge = \"crte2e{n}\"\nsubnet = \"10.211.{n}.0/24\"\n"
    ))
    .await?;
    let c = d.client().await?;
    Ok(Some((d, c)))
}

fn pod_config(name: &str) -> proto::PodSandboxConfig {
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: format!("{name}-host"),
        labels: [("app".to_string(), name.to_string())].into(),
        linux: Some(proto::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

async fn run(c: &mut Cri, config: proto::PodSandboxConfig) -> Result<String, tonic::Status> {
    Ok(c.runtime
        .run_pod_sandbox(proto::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id)
}

async fn status(c: &mut Cri, id: &str) -> Result<(proto::PodSandboxStatus, serde_json::Value)> {
    let r = c
        .runtime
        .pod_sandbox_status(proto::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        })
        .await?
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(r.info.get("info").context("info")?)?;
    Ok((r.status.context("status")?, info))
}

async fn stop_remove(c: &mut Cri, id: &str) -> Result<()> {
    c.runtime
        .stop_pod_sandbox(proto::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await?;
    c.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await?;
    Ok(())
}

async fn list(c: &mut Cri, f: proto::PodSandboxFilter) -> Result<Vec<proto::PodSandbox>> {
    Ok(c.runtime
        .list_pod_sandbox(proto::ListPodSandboxRequest { filter: Some(f) })
        .await?
        .into_inner()
        .items)
}

fn netns_of(info: &serde_json::Value) -> PathBuf {
    PathBuf::from(info["namespaces"]["network"].as_str().unwrap_or_default())
}

/// A TCP server inside a pod's netns: the socket keeps its namespace after the thread that
/// made it is gone. Answers each connection with `reply`.
fn serve_in_pod(netns: &Path, port: u16, reply: &'static str) -> Result<()> {
    let listener = network::run_in_netns(netns, move || TcpListener::bind(("0.0.0.0", port)))??;
    std::thread::spawn(move || {
        for s in listener.incoming().flatten().take(16) {
            let mut s = s;
            let _ = s.write_all(reply.as_bytes());
        }
    });
    Ok(())
}

fn fetch(addr: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn sh(args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Links enslaved to a bridge: the host ends of its pods' veths.
fn bridge_ports(bridge: &str) -> Result<String> {
    sh(&["ip", "-o", "link", "show", "master", bridge])
}

/// Waits (a little) for a process to exit; a zombie counts as gone.
async fn gone(pid: i64) -> bool {
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/status")) {
            Err(_) => return true,
            Ok(st)
                if st
                    .lines()
                    .any(|l| l.starts_with("State:") && l.contains("Z")) =>
            {
                return true
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(30)).await,
        }
    }
    false
}

#[tokio::test]
async fn pods_get_addresses_that_reach_each_other() -> Result<()> {
    let Some((mut d, mut c)) = daemon("pods_get_addresses", 1).await? else {
        return Ok(());
    };
    let v = c
        .runtime
        .status(proto::StatusRequest { verbose: false })
        .await?
        .into_inner();
    let conds = v.status.context("status")?.conditions;
    assert!(
        conds.iter().all(|c| c.status),
        "runtime and network ready: {conds:?}"
    );

    let mut a_cfg = pod_config("a");
    a_cfg.dns_config = Some(proto::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["e2e.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    a_cfg.linux.as_mut().context("linux")?.sysctls = HashMap::from([(
        "net.ipv4.ip_unprivileged_port_start".to_string(),
        "0".to_string(),
    )]);
    let a = run(&mut c, a_cfg).await?;
    let b = run(&mut c, pod_config("b")).await?;
    let (sa, ia) = status(&mut c, &a).await?;
    let (sb, ib) = status(&mut c, &b).await?;
    assert_eq!(sa.state, proto::PodSandboxState::SandboxReady as i32);
    let ip_a: Ipv4Addr = sa.network.as_ref().context("net")?.ip.parse()?;
    let ip_b: Ipv4Addr = sb.network.as_ref().context("net")?.ip.parse()?;
    assert_ne!(ip_a, ip_b);
    assert_eq!(ip_a.octets()[..3], [10, 211, 1]);

    // Host → pod, pod → pod, pod → gateway.
    serve_in_pod(&netns_of(&ia), 8080, "from-a")?;
    assert_eq!(fetch(SocketAddr::from((ip_a, 8080)))?, "from-a");
    let from_b = network::run_in_netns(&netns_of(&ib), move || {
        fetch(SocketAddr::from((ip_a, 8080)))
    })??;
    assert_eq!(from_b, "from-a");
    let gw_listener = TcpListener::bind("10.211.1.1:0")?;
    let gw = gw_listener.local_addr()?;
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = gw_listener.accept() {
            let _ = s.write_all(b"gateway");
        }
    });
    let got = network::run_in_netns(&netns_of(&ia), move || fetch(gw))??;
    assert_eq!(got, "gateway");

    // Hostname, resolv.conf and the sysctl, seen from inside the pod's namespaces.
    let uts = ia["namespaces"]["uts"].as_str().context("uts")?.to_string();
    assert_eq!(
        sh(&["nsenter", &format!("--uts={uts}"), "hostname"])?.trim(),
        "a-host"
    );
    let pod_dir = d.state.join("pods").join(&a[..16]);
    assert_eq!(
        std::fs::read_to_string(pod_dir.join("resolv.conf"))?,
        "nameserver 10.96.0.10\nsearch e2e.svc.cluster.local\noptions ndots:5\n"
    );
    assert!(std::fs::read_to_string(pod_dir.join("hosts"))?.contains(&format!("{ip_a}\ta-host")));
    let netns = netns_of(&ia).display().to_string();
    let inside = sh(&[
        "nsenter",
        &format!("--net={netns}"),
        "cat",
        "/proc/sys/net/ipv4/ip_unprivileged_port_start",
    ])?;
    assert_eq!(inside.trim(), "0");
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")?;
    assert_ne!(host.trim(), "0", "the host's value is untouched");

    // ListPodSandbox filters.
    assert_eq!(list(&mut c, Default::default()).await?.len(), 2);
    assert_eq!(
        list(
            &mut c,
            proto::PodSandboxFilter {
                id: a[..8].into(),
                ..Default::default()
            }
        )
        .await?
        .len(),
        1
    );
    let by_label = list(
        &mut c,
        proto::PodSandboxFilter {
            label_selector: [("app".to_string(), "b".to_string())].into(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(by_label.len(), 1);
    assert_eq!(by_label[0].id, b);

    // Same metadata twice → AlreadyExists.
    let err = run(&mut c, pod_config("a")).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    // kill -9 and restart: a ready pod stays ready with the same address and its shim
    // lived on; a stopped pod stays stopped.
    let shim_a = ia["shimPid"].as_i64().context("shim pid")?;
    c.runtime
        .stop_pod_sandbox(proto::StopPodSandboxRequest {
            pod_sandbox_id: b.clone(),
        })
        .await?;
    d.kill9();
    d.restart().await?;
    let mut c = d.client().await?;
    let (sa2, _) = status(&mut c, &a).await?;
    assert_eq!(sa2.state, proto::PodSandboxState::SandboxReady as i32);
    assert_eq!(sa2.network.context("net")?.ip, ip_a.to_string());
    assert!(
        Path::new(&format!("/proc/{shim_a}")).exists(),
        "shim survived corrald"
    );
    assert_eq!(fetch(SocketAddr::from((ip_a, 8080)))?, "from-a");
    let (sb2, _) = status(&mut c, &b).await?;
    assert_eq!(sb2.state, proto::PodSandboxState::SandboxNotready as i32);

    // Stop: not ready, address released; stop again is fine; remove leaves nothing.
    c.runtime
        .stop_pod_sandbox(proto::StopPodSandboxRequest {
            pod_sandbox_id: a.clone(),
        })
        .await?;
    let (sa3, _) = status(&mut c, &a).await?;
    assert_eq!(sa3.state, proto::PodSandboxState::SandboxNotready as i32);
    assert!(gone(shim_a).await, "shim gone after stop");
    stop_remove(&mut c, &a).await?;
    stop_remove(&mut c, &b).await?;
    stop_remove(&mut c, "0123456789abcdef").await?;
    assert!(list(&mut c, Default::default()).await?.is_empty());
    assert_eq!(
        std::fs::read_dir(d.state.join("pods"))?.count(),
        0,
        "no pod state left"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    assert!(
        !mounts.contains(&d.state.display().to_string()),
        "no mount left"
    );
    let err = c
        .runtime
        .pod_sandbox_status(proto::PodSandboxStatusRequest {
            pod_sandbox_id: a.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    Ok(())
}

#[tokio::test]
async fn host_ports_host_network_and_shared_pid() -> Result<()> {
    let Some((d, mut c)) = daemon("host_ports_host_network", 2).await? else {
        return Ok(());
    };
    // hostPort on the loopback reaches a listener in the pod.
    let mut cfg = pod_config("ports");
    cfg.port_mappings = vec![proto::PortMapping {
        protocol: proto::Protocol::Tcp as i32,
        container_port: 80,
        host_port: 18089,
        host_ip: "127.0.0.1".into(),
    }];
    let p = run(&mut c, cfg).await?;
    let (_, info) = status(&mut c, &p).await?;
    serve_in_pod(&netns_of(&info), 80, "via-hostport")?;
    assert_eq!(fetch("127.0.0.1:18089".parse()?)?, "via-hostport");
    stop_remove(&mut c, &p).await?;
    assert!(
        fetch("127.0.0.1:18089".parse()?).is_err(),
        "rule gone with the pod"
    );

    // hostNetwork: no netns of its own, the host's interfaces and address.
    let mut cfg = pod_config("hostnet");
    cfg.linux = Some(proto::LinuxPodSandboxConfig {
        security_context: Some(proto::LinuxSandboxSecurityContext {
            namespace_options: Some(proto::NamespaceOption {
                network: proto::NamespaceMode::Node as i32,
                pid: proto::NamespaceMode::Pod as i32,
                ipc: proto::NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let ports_before = bridge_ports("crte2e2")?;
    let h = run(&mut c, cfg).await?;
    let (s, info) = status(&mut c, &h).await?;
    assert!(
        info["namespaces"]["network"].is_null(),
        "no netns for a hostNetwork pod"
    );
    assert!(
        !s.network.context("net")?.ip.is_empty(),
        "reports the host's address"
    );
    assert_eq!(
        bridge_ports("crte2e2")?,
        ports_before,
        "no veth for a hostNetwork pod"
    );

    // Shared PID namespace: the pause is PID 1 of it.
    let pause = info["pausePid"].as_i64().context("pause pid")?;
    let st = std::fs::read_to_string(format!("/proc/{pause}/status"))?;
    let nspid = st
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .context("NSpid")?;
    assert!(nspid.trim_end().ends_with("\t1"), "{nspid}");
    stop_remove(&mut c, &h).await?;
    assert!(gone(pause).await, "pause gone");
    drop(d);
    Ok(())
}

#[tokio::test]
async fn bad_input_names_the_field_and_creates_nothing() -> Result<()> {
    let Some((d, mut c)) = daemon("bad_input", 3).await? else {
        return Ok(());
    };
    let mut cases: Vec<(&str, proto::PodSandboxConfig)> = Vec::new();

    let mut cfg = pod_config("badns");
    cfg.linux = Some(proto::LinuxPodSandboxConfig {
        security_context: Some(proto::LinuxSandboxSecurityContext {
            namespace_options: Some(proto::NamespaceOption {
                network: 99,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    cases.push(("namespace_options", cfg));

    let mut cfg = pod_config("badsysctl");
    cfg.linux.as_mut().context("linux")?.sysctls =
        [("vm.swappiness".to_string(), "10".to_string())].into();
    cases.push(("sysctls", cfg));

    let mut cfg = pod_config("badport");
    cfg.port_mappings = vec![proto::PortMapping {
        protocol: 0,
        container_port: 80,
        host_port: 70000,
        host_ip: String::new(),
    }];
    cases.push(("port_mappings", cfg));

    let mut cfg = pod_config("badcgroup");
    cfg.linux.as_mut().context("linux")?.cgroup_parent = "/kubepods/../../etc".into();
    cases.push(("cgroup_parent", cfg));

    let mut cfg = pod_config("nometa");
    cfg.metadata = None;
    cases.push(("metadata", cfg));

    for (field, cfg) in cases {
        let err = run(&mut c, cfg).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    let items = c
        .runtime
        .list_pod_sandbox(proto::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    assert!(items.is_empty());
    assert_eq!(std::fs::read_dir(d.state.join("pods"))?.count(), 0);
    assert_eq!(bridge_ports("crte2e3")?.trim(), "", "no veth made");
    Ok(())
}

/// The memory controller's directory for a cgroup path, on v1 (or hybrid) and v2 hosts.
fn memory_cgroup_dir(path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Path::new("/sys/fs/cgroup").join(rel)
    } else {
        Path::new("/sys/fs/cgroup/memory").join(rel)
    }
}

/// Removes the test's parent cgroup from every hierarchy, even when the test failed.
struct CgroupParentGuard(String);

impl Drop for CgroupParentGuard {
    fn drop(&mut self) {
        let rel = self.0.trim_start_matches('/');
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                let dir = e.path().join(rel);
                if dir.is_dir() {
                    if let Ok(children) = std::fs::read_dir(&dir) {
                        for c in children.flatten().filter(|c| c.path().is_dir()) {
                            let _ = std::fs::remove_dir(c.path());
                        }
                    }
                    let _ = std::fs::remove_dir(&dir);
                }
            }
        }
        let top = Path::new("/sys/fs/cgroup").join(rel);
        let _ = std::fs::remove_dir(top);
    }
}

#[tokio::test]
async fn a_parent_corrald_made_gets_the_limits_and_goes_with_the_pod() -> Result<()> {
    let Some((_d, mut c)) = daemon("pod_cgroup", 4).await? else {
        return Ok(());
    };
    let parent = format!("/corral-e2e-{}", std::process::id());
    let _guard = CgroupParentGuard(parent.clone());
    let pod_cgroup = format!("{parent}/pod-e2e");
    let mut cfg = pod_config("cgroup");
    cfg.linux = Some(proto::LinuxPodSandboxConfig {
        cgroup_parent: pod_cgroup.clone(),
        resources: Some(proto::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        security_context: Some(proto::LinuxSandboxSecurityContext {
            namespace_options: Some(proto::NamespaceOption {
                pid: proto::NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = run(&mut c, cfg).await?;
    let (_, info) = status(&mut c, &id).await?;
    let dir = memory_cgroup_dir(&pod_cgroup);
    let limit_file = if dir.join("memory.max").exists() {
        dir.join("memory.max")
    } else {
        dir.join("memory.limit_in_bytes")
    };
    assert_eq!(
        std::fs::read_to_string(&limit_file)?.trim(),
        (64u64 << 20).to_string()
    );
    // The shim and the pause live in the pod's own cgroup below the parent.
    let own = info["cgroup"].as_str().context("cgroup")?.to_string();
    assert_eq!(own, format!("{pod_cgroup}/{id}"));
    let procs = std::fs::read_to_string(memory_cgroup_dir(&own).join("cgroup.procs"))?;
    for who in ["pausePid", "shimPid"] {
        let pid = info[who].as_i64().context("pid")?;
        assert!(
            procs.lines().any(|l| l.trim() == pid.to_string()),
            "{who} {pid} in the pod's cgroup: {procs}"
        );
    }
    stop_remove(&mut c, &id).await?;
    assert!(!memory_cgroup_dir(&own).exists(), "pod's cgroup removed");
    // The parent did not exist before the pod ran: corrald made it, and removed it.
    assert!(!dir.exists(), "a parent corrald made is removed once empty");
    Ok(())
}
