//! Container resources end to end: limits set at create and changed live by
//! UpdateContainerResources, read back from the container's cgroup files on the host, from
//! inside the container, and from ContainerStatus; kubelet's hugepage limits on a host that
//! may lack hugetlb; bad updates refused naming the field; ListContainers' image_id.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use e2e::client::{spec, Cri};
use e2e::daemon::Daemon;
use e2e::harness::BusyboxEnv;
use e2e::registry::Registry;
use tonic::Code;

const MIB: i64 = 1 << 20;

struct Env {
    // Field order is drop order: pods go (daemon) before the registry.
    _daemon: Daemon,
    cri: Cri,
    _reg: Registry,
    image: String,
    image_id: String,
}

/// A registry with busybox, and a corrald on its own bridge `crtr<n>`.
async fn setup(test: &str, n: u8) -> Result<Option<Env>> {
    let network = format!("bridge = \"crtr{n}\"\nsubnet = \"10.222.{n}.0/24\"");
    Ok(BusyboxEnv::start(test, &network).await?.map(|e| Env {
        _daemon: e.daemon,
        cri: e.cri,
        _reg: e.registry,
        image: e.image,
        image_id: e.image_id,
    }))
}

fn pod_config(name: &str) -> proto::PodSandboxConfig {
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        linux: Some(proto::LinuxPodSandboxConfig {
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

/// What kubelet sends: a limit for every huge page size it knows of, 0 when the pod asked
/// for none (whether or not this host has a hugetlb controller).
fn kubelet_hugepages() -> Vec<proto::HugepageLimit> {
    ["2MB", "1GB"]
        .iter()
        .map(|s| proto::HugepageLimit {
            page_size: s.to_string(),
            limit: 0,
        })
        .collect()
}

/// The host's cgroup layout, as the test reads it: v2 at /sys/fs/cgroup, or v1
/// hierarchies (each controller's mount point).
enum Host {
    V2,
    V1,
}

impl Host {
    fn detect() -> Host {
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            Host::V2
        } else {
            Host::V1
        }
    }

    /// The mount point of v1 `controller`'s hierarchy, from /proc/self/mounts.
    fn v1_mount(controller: &str) -> Option<PathBuf> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&"cgroup")
                && f.get(3)
                    .is_some_and(|o| o.split(',').any(|x| x == controller)))
            .then(|| PathBuf::from(f[1]))
        })
    }

    /// The host path of `file` of `controller` for the cgroup `cg`.
    fn file(&self, cg: &str, controller: &str, file: &str) -> Option<PathBuf> {
        let rel = cg.trim_start_matches('/');
        match self {
            Host::V2 => Some(Path::new("/sys/fs/cgroup").join(rel).join(file)),
            Host::V1 => Host::v1_mount(controller).map(|m| m.join(rel).join(file)),
        }
    }

    fn read(&self, cg: &str, controller: &str, file: &str) -> Result<String> {
        let path = self
            .file(cg, controller, file)
            .with_context(|| format!("no {controller} hierarchy"))?;
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_string())
    }

    /// A shell line, run inside the container, that prints `file` of the container's own
    /// cgroup: found through /proc/self/cgroup on v1 (the host's hierarchies are bound
    /// read-only at /sys/fs/cgroup), the cgroup namespace's root on v2.
    fn inside(&self, controller: &str, file: &str) -> String {
        match self {
            Host::V2 => format!("cat /sys/fs/cgroup/{file}"),
            Host::V1 => format!(
                "l=$(grep -E '^[0-9]+:([^:]*,)?{controller}(,[^:]*)?:' /proc/self/cgroup); \
                 c=${{l#*:}}; cat /sys/fs/cgroup/${{c%%:*}}${{c#*:}}/{file}"
            ),
        }
    }
}

/// The expected (controller, file, value) triples for the cpu and memory limits.
fn expected(
    host: &Host,
    shares: i64,
    quota: i64,
    memory: i64,
) -> Vec<(&'static str, &'static str, String)> {
    match host {
        Host::V1 => vec![
            ("cpu", "cpu.shares", shares.to_string()),
            ("cpu", "cpu.cfs_quota_us", quota.to_string()),
            ("cpu", "cpu.cfs_period_us", "100000".into()),
            ("memory", "memory.limit_in_bytes", memory.to_string()),
        ],
        Host::V2 => vec![
            // runc's shares → weight conversion.
            (
                "cpu",
                "cpu.weight",
                (1 + ((shares - 2) * 9999) / 262_142).to_string(),
            ),
            ("cpu", "cpu.max", format!("{quota} 100000")),
            ("memory", "memory.max", memory.to_string()),
        ],
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

    async fn create(
        &mut self,
        pod: &str,
        pod_config: &proto::PodSandboxConfig,
        name: &str,
        resources: proto::LinuxContainerResources,
    ) -> Result<String, tonic::Status> {
        let config = proto::ContainerConfig {
            metadata: Some(proto::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(spec(&self.image)),
            command: vec!["sleep".into(), "1000".into()],
            linux: Some(proto::LinuxContainerConfig {
                resources: Some(resources),
                security_context: Some(proto::LinuxContainerSecurityContext {
                    namespace_options: Some(proto::NamespaceOption {
                        pid: proto::NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        Ok(self
            .cri
            .runtime
            .create_container(proto::CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            })
            .await?
            .into_inner()
            .container_id)
    }

    async fn start(&mut self, id: &str) -> Result<()> {
        self.cri
            .runtime
            .start_container(proto::StartContainerRequest {
                container_id: id.into(),
            })
            .await?;
        Ok(())
    }

    async fn update(
        &mut self,
        id: &str,
        linux: Option<proto::LinuxContainerResources>,
    ) -> Result<(), tonic::Status> {
        self.cri
            .runtime
            .update_container_resources(proto::UpdateContainerResourcesRequest {
                container_id: id.into(),
                linux,
                windows: None,
                annotations: Default::default(),
            })
            .await?;
        Ok(())
    }

    /// The status, and the container's cgroup (from the verbose info).
    async fn status(&mut self, id: &str) -> Result<(proto::ContainerStatus, String)> {
        let resp = self
            .cri
            .runtime
            .container_status(proto::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .await?
            .into_inner();
        let info: serde_json::Value =
            serde_json::from_str(resp.info.get("info").context("no verbose info")?)?;
        let cgroup = info["cgroup"]
            .as_str()
            .context("no cgroup in the verbose info")?
            .to_string();
        Ok((resp.status.context("no status")?, cgroup))
    }

    async fn resources(&mut self, id: &str) -> Result<proto::LinuxContainerResources> {
        let (status, _) = self.status(id).await?;
        status
            .resources
            .and_then(|r| r.linux)
            .context("no linux resources in ContainerStatus")
    }

    /// ExecSync `sh -c script`; its stdout, trimmed; it must exit 0.
    async fn sh(&mut self, id: &str, script: &str) -> Result<String> {
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
        Ok(String::from_utf8_lossy(&r.stdout).trim().to_string())
    }

    /// Host files and the container's own view agree on each value.
    async fn check_limits(
        &mut self,
        host: &Host,
        id: &str,
        cg: &str,
        want: &[(&str, &str, String)],
    ) -> Result<()> {
        for (controller, file, value) in want {
            let on_host = host.read(cg, controller, file)?;
            ensure!(
                on_host == *value,
                "host {file}: {on_host:?}, want {value:?}"
            );
            let inside = self.sh(id, &host.inside(controller, file)).await?;
            ensure!(
                inside == *value,
                "inside {file}: {inside:?}, want {value:?}"
            );
        }
        Ok(())
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

/// The error's code and the field it names (`invalid <field>: …`).
fn refused(r: Result<(), tonic::Status>) -> Result<(Code, String)> {
    match r {
        Ok(()) => bail!("the update was accepted"),
        Err(s) => {
            let field = s
                .message()
                .strip_prefix("invalid ")
                .and_then(|m| m.split(':').next())
                .unwrap_or_default()
                .to_string();
            Ok((s.code(), field))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_update_of_a_running_container() -> Result<()> {
    let Some(mut env) = setup("live_update_of_a_running_container", 1).await? else {
        return Ok(());
    };
    let pc = pod_config("limits");
    let pod = env.run_pod(&pc).await?;
    let result = live_update(&mut env, &pod, &pc).await;
    // Stops and removes the containers too; the daemon's drop does it if this fails.
    env.remove_pod(&pod).await?;
    result
}

async fn live_update(env: &mut Env, pod: &str, pc: &proto::PodSandboxConfig) -> Result<()> {
    let host = Host::detect();
    let two_cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
    let created = proto::LinuxContainerResources {
        cpu_shares: 512,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        memory_limit_in_bytes: 64 * MIB,
        memory_swap_limit_in_bytes: 64 * MIB,
        cpuset_cpus: "0".into(),
        hugepage_limits: kubelet_hugepages(),
        oom_score_adj: 100,
        ..Default::default()
    };
    // kubelet-style hugepage limits start on this host, hugetlb or not.
    let id = env.create(pod, pc, "sleeper", created.clone()).await?;
    env.start(&id).await?;
    let (status, cg) = env.status(&id).await?;
    ensure!(status.state == proto::ContainerState::ContainerRunning as i32);
    env.check_limits(&host, &id, &cg, &expected(&host, 512, 50_000, 64 * MIB))
        .await?;
    ensure!(env.sh(&id, "cat /proc/1/oom_score_adj").await? == "100");
    ensure!(
        env.resources(&id).await? == created,
        "status at create: {:?}",
        env.resources(&id).await?
    );

    // Raise everything (on v1 memsw must go first, or the kernel refuses).
    let cpus = if two_cpus { "0-1" } else { "0" };
    env.update(
        &id,
        Some(proto::LinuxContainerResources {
            cpu_shares: 1024,
            cpu_period: 100_000,
            cpu_quota: 20_000,
            memory_limit_in_bytes: 128 * MIB,
            memory_swap_limit_in_bytes: 128 * MIB,
            cpuset_cpus: cpus.into(),
            oom_score_adj: 200,
            ..Default::default()
        }),
    )
    .await?;
    env.check_limits(&host, &id, &cg, &expected(&host, 1024, 20_000, 128 * MIB))
        .await?;
    if let Some(memsw) = host.file(&cg, "memory", "memory.memsw.limit_in_bytes") {
        if memsw.exists() {
            ensure!(
                host.read(&cg, "memory", "memory.memsw.limit_in_bytes")? == (128 * MIB).to_string()
            );
        }
    }
    if host
        .file(&cg, "cpuset", "cpuset.cpus")
        .is_some_and(|f| f.exists())
    {
        ensure!(host.read(&cg, "cpuset", "cpuset.cpus")? == cpus);
        let inside = env.sh(&id, "grep Cpus_allowed_list /proc/1/status").await?;
        ensure!(inside.ends_with(cpus), "{inside}");
    }
    ensure!(env.sh(&id, "cat /proc/1/oom_score_adj").await? == "200");
    let want = proto::LinuxContainerResources {
        cpu_shares: 1024,
        cpu_quota: 20_000,
        memory_limit_in_bytes: 128 * MIB,
        memory_swap_limit_in_bytes: 128 * MIB,
        cpuset_cpus: cpus.into(),
        oom_score_adj: 200,
        ..created.clone()
    };
    let got = env.resources(&id).await?;
    ensure!(got == want, "status after update: {got:?}");

    // Lower memory, and change only the shares: the rest keeps its value.
    env.update(
        &id,
        Some(proto::LinuxContainerResources {
            cpu_shares: 256,
            memory_limit_in_bytes: 96 * MIB,
            memory_swap_limit_in_bytes: 96 * MIB,
            ..Default::default()
        }),
    )
    .await?;
    env.check_limits(&host, &id, &cg, &expected(&host, 256, 20_000, 96 * MIB))
        .await?;
    let got = env.resources(&id).await?;
    ensure!(
        got.cpu_shares == 256 && got.cpu_quota == 20_000 && got.oom_score_adj == 200,
        "{got:?}"
    );

    // Bad values: refused naming the field, and nothing changes.
    let bad = |r: proto::LinuxContainerResources| Some(r);
    let cases = [
        (
            bad(proto::LinuxContainerResources {
                cpu_quota: 500,
                ..Default::default()
            }),
            "linux.cpu_quota",
        ),
        (
            bad(proto::LinuxContainerResources {
                cpu_period: 5_000_000,
                ..Default::default()
            }),
            "linux.cpu_period",
        ),
        (
            bad(proto::LinuxContainerResources {
                cpu_shares: -5,
                ..Default::default()
            }),
            "linux.cpu_shares",
        ),
        (
            bad(proto::LinuxContainerResources {
                cpuset_cpus: "0-1\nx".into(),
                ..Default::default()
            }),
            "linux.cpuset_cpus",
        ),
        (
            // Well-formed, but no host has CPU 1023: the kernel's refusal names the field.
            bad(proto::LinuxContainerResources {
                cpuset_cpus: "1023".into(),
                ..Default::default()
            }),
            "linux.cpuset_cpus",
        ),
        (
            bad(proto::LinuxContainerResources {
                memory_limit_in_bytes: 256 * MIB,
                memory_swap_limit_in_bytes: 128 * MIB,
                ..Default::default()
            }),
            "linux.memory_swap_limit_in_bytes",
        ),
        (
            bad(proto::LinuxContainerResources {
                oom_score_adj: 5000,
                ..Default::default()
            }),
            "linux.oom_score_adj",
        ),
        (
            bad(proto::LinuxContainerResources {
                cpu_shares: 2048,
                hugepage_limits: vec![proto::HugepageLimit {
                    page_size: "../x".into(),
                    limit: 0,
                }],
                ..Default::default()
            }),
            "linux.hugepage_limits",
        ),
        (None, "linux"),
    ];
    for (linux, field) in cases {
        let (code, got) = refused(env.update(&id, linux.clone()).await)?;
        ensure!(
            code == Code::InvalidArgument && got == field,
            "{linux:?}: {code:?} naming {got:?}, want {field}"
        );
    }
    // A unified key on a v1 host: refused, naming the field.
    if matches!(host, Host::V1) {
        let (code, got) = refused(
            env.update(
                &id,
                Some(proto::LinuxContainerResources {
                    unified: [("memory.high".to_string(), "50M".to_string())].into(),
                    ..Default::default()
                }),
            )
            .await,
        )?;
        ensure!(
            code == Code::InvalidArgument && got == "linux.unified",
            "{code:?} {got}"
        );
    }
    env.check_limits(&host, &id, &cg, &expected(&host, 256, 20_000, 96 * MIB))
        .await
        .context("after the refused updates")?;

    // Unknown container: NotFound.
    let unknown = env.update(&"f".repeat(64), bad(created.clone())).await;
    ensure!(
        matches!(&unknown, Err(s) if s.code() == Code::NotFound),
        "{unknown:?}"
    );

    // A created (not yet started) container is updated too: its init waits in the cgroup.
    // It asks for a huge page size no x86 or arm64 host has (64KB on x86): skipped.
    let mut hugepages = kubelet_hugepages();
    hugepages.push(proto::HugepageLimit {
        page_size: "64KB".into(),
        limit: 0,
    });
    let waiting = env
        .create(
            pod,
            pc,
            "waiting",
            proto::LinuxContainerResources {
                cpu_shares: 512,
                hugepage_limits: hugepages,
                ..Default::default()
            },
        )
        .await?;
    let (_, waiting_cg) = env.status(&waiting).await?;
    // Where this host has hugetlb, the kubelet-style 0 landed.
    for file in ["hugetlb.2MB.max", "hugetlb.2MB.limit_in_bytes"] {
        let path = match host {
            Host::V2 => host.file(&waiting_cg, "hugetlb", file),
            Host::V1 => Host::v1_mount("hugetlb")
                .or_else(|| Some(PathBuf::from("/sys/fs/cgroup/unified")))
                .map(|m| m.join(waiting_cg.trim_start_matches('/')).join(file)),
        };
        if let Some(path) = path.filter(|p| p.exists()) {
            let v = std::fs::read_to_string(&path)?;
            ensure!(v.trim() == "0", "{}: {v}", path.display());
            eprintln!("hugetlb limit 0 in {}", path.display());
        }
    }
    env.update(
        &waiting,
        Some(proto::LinuxContainerResources {
            cpu_shares: 300,
            ..Default::default()
        }),
    )
    .await?;
    let (file, want) = match host {
        Host::V1 => ("cpu.shares", "300".to_string()),
        Host::V2 => ("cpu.weight", (1 + ((300 - 2) * 9999) / 262_142).to_string()),
    };
    ensure!(host.read(&waiting_cg, "cpu", file)? == want);
    ensure!(env.resources(&waiting).await?.cpu_shares == 300);

    // ListContainers: image_id is the pulled image's id.
    let listed = env
        .cri
        .runtime
        .list_containers(proto::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers;
    ensure!(listed.len() == 2, "{listed:?}");
    for c in &listed {
        ensure!(
            c.image_id == env.image_id,
            "{} image_id {:?}, pulled {:?}",
            c.id,
            c.image_id,
            env.image_id
        );
    }
    let (status, _) = env.status(&id).await?;
    ensure!(status.image_id == env.image_id);

    // An exited container: FailedPrecondition.
    env.cri
        .runtime
        .stop_container(proto::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await?;
    let stopped = env
        .update(
            &id,
            Some(proto::LinuxContainerResources {
                cpu_shares: 100,
                ..Default::default()
            }),
        )
        .await;
    ensure!(
        matches!(&stopped, Err(s) if s.code() == Code::FailedPrecondition),
        "{stopped:?}"
    );
    Ok(())
}
