//! Stats and metrics end to end: what kubelet's summary API reads. Busy containers show
//! their CPU, memory, writes and processes; traffic sent to a pod shows in its network
//! counters; the list calls filter; every metric returned has its descriptor.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e::client::{spec, Cri};
use e2e::daemon::Daemon;
use e2e::images::{Image, ImageConfig};
use e2e::registry::{skip_reason, Registry, RegistryOptions};
use e2e::skip::have_root;
use tonic::Code;

const MIB: u64 = 1 << 20;

struct Env {
    // Field order is drop order: pods go (daemon) before the registry.
    _daemon: Daemon,
    cri: Cri,
    _reg: Registry,
    image: String,
}

/// A registry with busybox, and a corrald on its own bridge `crts<n>`.
async fn setup(test: &str, n: u8) -> Result<Option<Env>> {
    if !have_root(test) {
        return Ok(None);
    }
    if let Some(why) = skip_reason(&RegistryOptions::default()) {
        eprintln!("skipping {test}: {why}");
        return Ok(None);
    }
    let reg = Registry::start(RegistryOptions::default()).await?;
    Image::busybox(ImageConfig::default())?
        .push(&reg, "e2e/busybox", &["latest"])
        .await?;
    let daemon = Daemon::start(&format!(
        "[network]\nbridge = \"crts{n}\"\nsubnet = \"10.215.{n}.0/24\"\n"
    ))
    .await?;
    let mut cri = daemon.client().await?;
    let image = format!("{}/e2e/busybox:latest", reg.host());
    cri.pull(&image, None).await?;
    Ok(Some(Env {
        _daemon: daemon,
        cri,
        _reg: reg,
        image,
    }))
}

fn pod_config(name: &str, cgroup_parent: Option<String>) -> proto::PodSandboxConfig {
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        labels: [("app".to_string(), name.to_string())].into(),
        linux: Some(proto::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.unwrap_or_default(),
            security_context: Some(proto::LinuxSandboxSecurityContext {
                namespace_options: Some(proto::NamespaceOption {
                    pid: proto::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Env {
    async fn run_pod(&mut self, config: &proto::PodSandboxConfig) -> Result<String> {
        Ok(self
            .cri
            .runtime
            .run_pod_sandbox(proto::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id)
    }

    /// Create and start `cmd` as container `name`, with `labels`.
    async fn run(
        &mut self,
        pod: &str,
        pod_config: &proto::PodSandboxConfig,
        name: &str,
        cmd: &[&str],
        labels: &[(&str, &str)],
    ) -> Result<String> {
        let config = proto::ContainerConfig {
            metadata: Some(proto::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(spec(&self.image)),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            linux: Some(proto::LinuxContainerConfig::default()),
            ..Default::default()
        };
        let id = self
            .cri
            .runtime
            .create_container(proto::CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await?
            .into_inner()
            .container_id;
        self.cri
            .runtime
            .start_container(proto::StartContainerRequest {
                container_id: id.clone(),
            })
            .await?;
        Ok(id)
    }

    /// ExecSync that must exit 0.
    async fn sh(&mut self, id: &str, script: &str) -> Result<()> {
        let r = self
            .cri
            .runtime
            .exec_sync(proto::ExecSyncRequest {
                container_id: id.into(),
                cmd: vec!["sh".into(), "-c".into(), script.into()],
                timeout: 10,
            })
            .await?
            .into_inner();
        ensure!(
            r.exit_code == 0,
            "{script:?} exited {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        );
        Ok(())
    }

    async fn container_stats(&mut self, id: &str) -> Result<proto::ContainerStats, tonic::Status> {
        self.cri
            .runtime
            .container_stats(proto::ContainerStatsRequest {
                container_id: id.into(),
            })
            .await?
            .into_inner()
            .stats
            .ok_or_else(|| tonic::Status::internal("no stats"))
    }

    async fn list_container_stats(
        &mut self,
        filter: proto::ContainerStatsFilter,
    ) -> Result<Vec<proto::ContainerStats>> {
        Ok(self
            .cri
            .runtime
            .list_container_stats(proto::ListContainerStatsRequest {
                filter: Some(filter),
            })
            .await?
            .into_inner()
            .stats)
    }

    async fn pod_stats(&mut self, id: &str) -> Result<proto::PodSandboxStats, tonic::Status> {
        self.cri
            .runtime
            .pod_sandbox_stats(proto::PodSandboxStatsRequest {
                pod_sandbox_id: id.into(),
            })
            .await?
            .into_inner()
            .stats
            .ok_or_else(|| tonic::Status::internal("no stats"))
    }

    async fn pod_ip(&mut self, pod: &str) -> Result<String> {
        let status = self
            .cri
            .runtime
            .pod_sandbox_status(proto::PodSandboxStatusRequest {
                pod_sandbox_id: pod.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no status")?;
        Ok(status.network.context("no network")?.ip)
    }

    async fn remove_pod(&mut self, pod: &str) -> Result<()> {
        self.cri
            .runtime
            .stop_pod_sandbox(proto::StopPodSandboxRequest {
                pod_sandbox_id: pod.into(),
            })
            .await?;
        self.cri
            .runtime
            .remove_pod_sandbox(proto::RemovePodSandboxRequest {
                pod_sandbox_id: pod.into(),
            })
            .await?;
        Ok(())
    }
}

fn value(v: &Option<proto::UInt64Value>) -> u64 {
    v.as_ref().map_or(0, |v| v.value)
}

fn cpu_of(s: &proto::ContainerStats) -> (u64, Option<u64>) {
    let cpu = s.cpu.unwrap_or_default();
    (
        value(&cpu.usage_core_nano_seconds),
        cpu.usage_nano_cores.map(|v| v.value),
    )
}

fn working_set(s: &proto::ContainerStats) -> u64 {
    value(&s.memory.as_ref().and_then(|m| m.working_set_bytes))
}

fn layer(s: &proto::ContainerStats) -> (u64, u64) {
    let l = s.writable_layer.clone().unwrap_or_default();
    (value(&l.used_bytes), value(&l.inodes_used))
}

fn ids(stats: &[proto::ContainerStats]) -> Vec<String> {
    let mut ids: Vec<String> = stats
        .iter()
        .filter_map(|s| s.attributes.as_ref().map(|a| a.id.clone()))
        .collect();
    ids.sort();
    ids
}

/// Polls `f` until it says done, up to `limit`.
async fn until<F>(what: &str, limit: Duration, mut f: F) -> Result<()>
where
    F: AsyncFnMut() -> Result<bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if f().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_memory_layer_and_processes() -> Result<()> {
    let Some(mut env) = setup("cpu_memory_layer_and_processes", 1).await? else {
        return Ok(());
    };
    // A pod with its own cgroup, as kubelet makes them.
    let parent = format!("/corral-e2e-stats-{}", std::process::id());
    let pc = pod_config("busy", Some(parent));
    let pod = env.run_pod(&pc).await?;
    let burn = env
        .run(
            &pod,
            &pc,
            "burn",
            &["sh", "-c", "while :; do :; done"],
            &[("role", "burner")],
        )
        .await?;
    // dd fills an 80 MiB buffer from /dev/zero, then blocks writing it to a pipe nobody
    // reads: 80 MiB of anonymous memory held in the container's cgroup.
    let mem = env
        .run(
            &pod,
            &pc,
            "mem",
            &["sh", "-c", "dd if=/dev/zero bs=80M count=1 | sleep 1000"],
            &[],
        )
        .await?;
    let disk = env.run(&pod, &pc, "disk", &["sleep", "1000"], &[]).await?;

    // CPU: the counter grows between two reads, and the second has a rate of a busy loop
    // (a whole core when the machine is idle; at least a tenth of one here).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (first, _) = cpu_of(&env.container_stats(&burn).await?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (second, rate) = cpu_of(&env.container_stats(&burn).await?);
    assert!(second > first, "CPU usage {first} → {second}");
    let rate = rate.context("no usage_nano_cores on the second read")?;
    assert!(rate > 100_000_000, "{rate} nanocores for a busy loop");

    // Memory: the working set holds dd's buffer.
    let mut ws = 0;
    until(
        "64 MiB of working set",
        Duration::from_secs(5),
        async || {
            ws = working_set(&env.container_stats(&mem).await?);
            Ok(ws >= 64 * MIB)
        },
    )
    .await
    .with_context(|| format!("working set {ws}"))?;
    let mem_stats = env.container_stats(&mem).await?;
    let m = mem_stats.memory.context("memory")?;
    assert!(value(&m.usage_bytes) >= value(&m.working_set_bytes));
    assert!(m.timestamp > 0);

    // Writable layer: 10 MB written shows (the measurement may be cached for a second).
    let (bytes0, inodes0) = layer(&env.container_stats(&disk).await?);
    env.sh(&disk, "dd if=/dev/zero of=/big bs=1M count=10 2>/dev/null")
        .await?;
    let mut now = (0, 0);
    until(
        "10 MB in the writable layer",
        Duration::from_secs(5),
        async || {
            now = layer(&env.container_stats(&disk).await?);
            Ok(now.0 >= bytes0 + 10_000_000 && now.1 > inodes0)
        },
    )
    .await
    .with_context(|| format!("layer ({bytes0}, {inodes0}) → {now:?}"))?;
    let fs_id = env.container_stats(&disk).await?.writable_layer;
    assert!(
        fs_id
            .and_then(|l| l.fs_id)
            .is_some_and(|f| !f.mountpoint.is_empty()),
        "writable layer without a mountpoint"
    );

    // The pod: its cgroup holds all three, its containers are listed, eth0 is there.
    let ps = env.pod_stats(&pod).await?;
    let linux = ps.linux.context("linux")?;
    assert_eq!(ps.attributes.map(|a| a.id), Some(pod.clone()));
    assert_eq!(linux.containers.len(), 3);
    let pod_cpu = value(&linux.cpu.and_then(|c| c.usage_core_nano_seconds));
    assert!(pod_cpu >= second, "pod CPU {pod_cpu} < burner's {second}");
    let pod_ws = value(&linux.memory.and_then(|m| m.working_set_bytes));
    assert!(pod_ws >= 64 * MIB, "pod working set {pod_ws}");
    // sleep + sh + dd + sleep + busy sh, at least.
    let procs = value(&linux.process.and_then(|p| p.process_count));
    assert!(procs >= 4, "{procs} processes in the pod");
    let net = linux.network.context("network")?;
    assert_eq!(
        net.default_interface.map(|i| i.name).as_deref(),
        Some("eth0")
    );

    // ListContainerStats: the three running containers, each with its figures.
    let all = env
        .list_container_stats(proto::ContainerStatsFilter::default())
        .await?;
    assert_eq!(all.len(), 3);
    for s in &all {
        assert!(cpu_of(s).0 > 0 && working_set(s) > 0, "{s:?}");
        assert!(layer(s).1 >= 1, "{s:?}");
    }

    // Filters: pod id prefix, label, container id prefix; a pod that isn't there.
    let by_pod = env
        .list_container_stats(proto::ContainerStatsFilter {
            pod_sandbox_id: pod[..12].into(),
            ..Default::default()
        })
        .await?;
    let mut want = vec![burn.clone(), mem.clone(), disk.clone()];
    want.sort();
    assert_eq!(ids(&by_pod), want);
    let by_label = env
        .list_container_stats(proto::ContainerStatsFilter {
            label_selector: [("role".to_string(), "burner".to_string())].into(),
            ..Default::default()
        })
        .await?;
    assert_eq!(ids(&by_label), vec![burn.clone()]);
    assert_eq!(
        by_label[0]
            .attributes
            .as_ref()
            .and_then(|a| a.metadata.as_ref())
            .map(|m| m.name.as_str()),
        Some("burn")
    );
    let by_id = env
        .list_container_stats(proto::ContainerStatsFilter {
            id: disk[..12].into(),
            ..Default::default()
        })
        .await?;
    assert_eq!(ids(&by_id), vec![disk.clone()]);
    let none = env
        .list_container_stats(proto::ContainerStatsFilter {
            pod_sandbox_id: "ffffffffffff".into(),
            ..Default::default()
        })
        .await?;
    assert!(none.is_empty());

    // A pod label selects the pod in ListPodSandboxStats.
    let pods = env
        .cri
        .runtime
        .list_pod_sandbox_stats(proto::ListPodSandboxStatsRequest {
            filter: Some(proto::PodSandboxStatsFilter {
                label_selector: [("app".to_string(), "busy".to_string())].into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .stats;
    assert_eq!(pods.len(), 1);

    // Unknown ids: NotFound.
    let err = env
        .pod_stats("0123456789abcdef")
        .await
        .expect_err("unknown pod");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = env
        .container_stats("0123456789abcdef")
        .await
        .expect_err("unknown container");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    env.remove_pod(&pod).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_and_metrics() -> Result<()> {
    let Some(mut env) = setup("network_and_metrics", 2).await? else {
        return Ok(());
    };
    // No cgroup_parent (crictl's pods): the pod's figures are its containers' sums.
    let pc = pod_config("net", None);
    let pod = env.run_pod(&pc).await?;
    let server = env
        .run(
            &pod,
            &pc,
            "server",
            // nc ends with its one connection; the container must keep running for the
            // container metrics below.
            &["sh", "-c", "while true; do nc -l -p 8080 > /dev/null; done"],
            &[],
        )
        .await?;
    let ip = env.pod_ip(&pod).await?;

    let before = {
        let ps = env.pod_stats(&pod).await?;
        let net = ps.linux.and_then(|l| l.network).context("network")?;
        value(&net.default_interface.context("eth0")?.rx_bytes)
    };
    // Send 1 MB from the host once the server listens.
    let mut stream = None;
    until("the server to listen", Duration::from_secs(5), async || {
        stream = std::net::TcpStream::connect((ip.as_str(), 8080)).ok();
        Ok(stream.is_some())
    })
    .await?;
    let mut stream = stream.context("connected")?;
    stream.write_all(&vec![b'x'; 1 << 20])?;
    drop(stream);
    let mut rx = 0;
    until(
        "1 MB received by the pod",
        Duration::from_secs(5),
        async || {
            let ps = env.pod_stats(&pod).await?;
            let net = ps.linux.and_then(|l| l.network).context("network")?;
            rx = value(&net.default_interface.context("eth0")?.rx_bytes);
            Ok(rx >= before + (1 << 20))
        },
    )
    .await
    .with_context(|| format!("rx_bytes {before} → {rx}"))?;

    // The summed pod still has CPU and memory figures, from its container.
    let ps = env.pod_stats(&pod).await?;
    let linux = ps.linux.context("linux")?;
    assert!(linux
        .memory
        .and_then(|m| m.working_set_bytes)
        .is_some_and(|v| v.value > 0));

    // Metrics: every one returned has its descriptor, with as many labels as keys.
    let descriptors: HashMap<String, Vec<String>> = env
        .cri
        .runtime
        .list_metric_descriptors(proto::ListMetricDescriptorsRequest {})
        .await?
        .into_inner()
        .descriptors
        .into_iter()
        .map(|d| (d.name, d.label_keys))
        .collect();
    assert!(descriptors.contains_key("container_cpu_usage_seconds_total"));
    let metrics = env
        .cri
        .runtime
        .list_pod_sandbox_metrics(proto::ListPodSandboxMetricsRequest {})
        .await?
        .into_inner()
        .pod_metrics;
    let ours = metrics
        .iter()
        .find(|m| m.pod_sandbox_id == pod)
        .context("our pod's metrics")?;
    let all = ours
        .metrics
        .iter()
        .chain(ours.container_metrics.iter().flat_map(|c| &c.metrics));
    let mut seen = 0;
    for m in all {
        let keys = descriptors
            .get(&m.name)
            .with_context(|| format!("no descriptor for {}", m.name))?;
        assert_eq!(keys.len(), m.label_values.len(), "{}", m.name);
        seen += 1;
    }
    assert!(seen > 10, "only {seen} metrics");
    // The pod's eth0 received the megabyte, as container "POD".
    let keys = &descriptors["container_network_receive_bytes_total"];
    let at = |k: &str| keys.iter().position(|x| x == k);
    let (ci, ii) = (
        at("container").context("container")?,
        at("interface").context("interface")?,
    );
    let eth0 = ours
        .metrics
        .iter()
        .find(|m| m.name == "container_network_receive_bytes_total" && m.label_values[ii] == "eth0")
        .context("eth0 receive metric")?;
    assert_eq!(eth0.label_values[ci], "POD");
    assert!(value(&eth0.value) >= 1 << 20);
    assert_eq!(ours.container_metrics.len(), 1);
    assert_eq!(ours.container_metrics[0].container_id, server);

    // A container that has exited still answers ContainerStats; ListContainerStats
    // leaves it out.
    env.cri
        .runtime
        .stop_container(proto::StopContainerRequest {
            container_id: server.clone(),
            timeout: 0,
        })
        .await?;
    let s = env.container_stats(&server).await?;
    assert_eq!(s.attributes.map(|a| a.id), Some(server.clone()));
    let listed = env
        .list_container_stats(proto::ContainerStatsFilter::default())
        .await?;
    assert!(listed.is_empty(), "{listed:?}");

    // A host-network pod reports no network of its own.
    let mut host = pod_config("hostnet", None);
    if let Some(opts) = host
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
    {
        opts.network = proto::NamespaceMode::Node as i32;
    }
    let host_pod = env.run_pod(&host).await?;
    let hs = env.pod_stats(&host_pod).await?;
    assert!(hs.linux.context("linux")?.network.is_none());

    env.remove_pod(&host_pod).await?;
    env.remove_pod(&pod).await?;
    Ok(())
}
