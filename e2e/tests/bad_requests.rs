//! Bad requests end to end: each request over a limit, with a path that escapes, or with a
//! line break where a file takes one line is refused with InvalidArgument naming the field,
//! and leaves nothing: the pod and container lists, the pod state dirs, the mounts (pinned
//! netns included) and the cgroups are as before. A log directory that is (or becomes) a
//! symlink never gets a log written outside it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use e2e::cgroups::KubeletParent;
use e2e::client::{spec, Cri};
use e2e::daemon::Daemon;
use e2e::images::{Image, ImageConfig};
use e2e::registry::{skip_reason, Registry, RegistryOptions};
use e2e::skip::have_root;
use tonic::Code;

struct Env {
    // Field order is drop order: pods go (daemon) before their cgroup parent and registry.
    daemon: Daemon,
    cri: Cri,
    parent: KubeletParent,
    _reg: Registry,
    image: String,
    logs: tempfile::TempDir,
}

/// A registry with busybox, a corrald on bridge `crtbd<n>`, and a cgroup parent of the
/// test's own (so that other suites' pods never show in its cgroup snapshots).
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
    let parent = KubeletParent::make(&format!("/corral-e2e-bounds-{n}"))?;
    let daemon = Daemon::start(&format!(
        "[network]\nbridge = \"crtbd{n}\"\nsubnet = \"10.225.{n}.0/24\"\n"
    ))
    .await?;
    let mut cri = daemon.client().await?;
    let image = format!("{}/e2e/busybox:latest", reg.host());
    cri.pull(&image, None).await?;
    Ok(Some(Env {
        daemon,
        cri,
        parent,
        _reg: reg,
        image,
        logs: tempfile::Builder::new()
            .prefix("corral-e2e-logs-")
            .tempdir()?,
    }))
}

/// A cgroup parent made by the test in every hierarchy (as kubelet makes its own), removed
/// with everything below it when the test ends, even when it failed.
/// What a request may have made: listed pods and containers, pod and container state
/// dirs, our mounts (the pinned namespaces, shm, rootfs), cgroups below the parent.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    pods: BTreeSet<String>,
    containers: BTreeSet<String>,
    dirs: BTreeSet<PathBuf>,
    mounts: usize,
    cgroups: BTreeSet<PathBuf>,
}

impl Env {
    fn pod_config(&self, name: &str) -> proto::PodSandboxConfig {
        proto::PodSandboxConfig {
            metadata: Some(proto::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "e2e".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.logs.path().join(name).display().to_string(),
            linux: Some(proto::LinuxPodSandboxConfig {
                cgroup_parent: self.parent.0.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container_config(&self, name: &str, cmd: &[&str]) -> proto::ContainerConfig {
        proto::ContainerConfig {
            metadata: Some(proto::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(spec(&self.image)),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            ..Default::default()
        }
    }

    async fn run_pod(&mut self, config: &proto::PodSandboxConfig) -> Result<String, tonic::Status> {
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
        pc: &proto::PodSandboxConfig,
        config: proto::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        Ok(self
            .cri
            .runtime
            .create_container(proto::CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config),
                sandbox_config: Some(pc.clone()),
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

    async fn snapshot(&mut self) -> Result<Snapshot> {
        let pods = self
            .cri
            .runtime
            .list_pod_sandbox(proto::ListPodSandboxRequest::default())
            .await?
            .into_inner()
            .items
            .into_iter()
            .map(|p| p.id)
            .collect();
        let containers = self
            .cri
            .runtime
            .list_containers(proto::ListContainersRequest::default())
            .await?
            .into_inner()
            .containers
            .into_iter()
            .map(|c| c.id)
            .collect();
        let mut dirs = BTreeSet::new();
        for dir in [
            self.daemon.state.join("pods"),
            self.daemon.state.join("containers"),
            self.daemon.root.join("containers"),
        ] {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                dirs.insert(e.path());
            }
        }
        let ours = self.daemon.dir().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?
            .lines()
            .filter(|l| l.contains(&ours))
            .count();
        Ok(Snapshot {
            pods,
            containers,
            dirs,
            mounts,
            cgroups: e2e::cgroups::descendants(&self.parent.0),
        })
    }
}

/// `r` is InvalidArgument naming `field` (and, when given, the limit).
fn refused<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, tonic::Status>,
    field: &str,
    limit: Option<usize>,
) -> Result<()> {
    let e = match r {
        Ok(v) => bail!("{what}: accepted ({v:?})"),
        Err(e) => e,
    };
    ensure!(
        e.code() == Code::InvalidArgument,
        "{what}: {:?} {}",
        e.code(),
        e.message()
    );
    ensure!(
        e.message().contains(field),
        "{what}: {:?} does not name {field}",
        e.message()
    );
    if let Some(limit) = limit {
        ensure!(
            e.message().contains(&format!("limit of {limit}")),
            "{what}: {:?} does not name the limit {limit}",
            e.message()
        );
    }
    ensure!(e.message().len() < 1000, "{what}: the value is echoed back");
    Ok(())
}

fn kv(key: &str, value: String) -> proto::KeyValue {
    proto::KeyValue {
        key: key.into(),
        value,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_leave_nothing() -> Result<()> {
    let Some(mut env) = setup("bad_requests_are_refused_and_leave_nothing", 1).await? else {
        return Ok(());
    };

    // Pods.
    type PodEdit = Box<dyn Fn(&mut proto::PodSandboxConfig)>;
    let pod_cases: Vec<(&str, &str, Option<usize>, PodEdit)> = vec![
        (
            "a log_directory with ..",
            "config.log_directory",
            None,
            Box::new(|c| c.log_directory = format!("{}/../../etc", c.log_directory)),
        ),
        (
            "a relative log_directory",
            "config.log_directory",
            None,
            Box::new(|c| c.log_directory = "var/log/pods/x".into()),
        ),
        (
            "1,000 DNS search domains",
            "config.dns_config.searches",
            Some(32),
            Box::new(|c| {
                c.dns_config = Some(proto::DnsConfig {
                    searches: (0..1000).map(|i| format!("d{i}.example")).collect(),
                    ..Default::default()
                })
            }),
        ),
        (
            "2,100 characters of DNS search domains",
            "config.dns_config.searches",
            Some(2048),
            Box::new(|c| {
                c.dns_config = Some(proto::DnsConfig {
                    searches: vec!["a".repeat(100); 21],
                    ..Default::default()
                })
            }),
        ),
        (
            "a nameserver line injected",
            "config.dns_config.servers[0]",
            None,
            Box::new(|c| {
                c.dns_config = Some(proto::DnsConfig {
                    servers: vec!["10.0.0.1\nnameserver 6.6.6.6".into()],
                    ..Default::default()
                })
            }),
        ),
        (
            "four nameservers",
            "config.dns_config.servers",
            Some(3),
            Box::new(|c| {
                c.dns_config = Some(proto::DnsConfig {
                    servers: vec!["10.0.0.1".into(); 4],
                    ..Default::default()
                })
            }),
        ),
        (
            "a 10 MiB pod name",
            "config.metadata.name",
            Some(253),
            Box::new(|c| {
                if let Some(m) = c.metadata.as_mut() {
                    m.name = "n".repeat(10 << 20);
                }
            }),
        ),
        (
            "a hostname with a newline",
            "config.hostname",
            None,
            Box::new(|c| c.hostname = "x\n6.6.6.6 evil".into()),
        ),
        (
            "a 65-character hostname",
            "config.hostname",
            Some(64),
            Box::new(|c| c.hostname = "h".repeat(65)),
        ),
        (
            "a 254-byte label value",
            "config.labels",
            Some(253),
            Box::new(|c| {
                c.labels.insert("app".into(), "v".repeat(254));
            }),
        ),
        (
            "257 KiB of annotations",
            "config.annotations",
            Some(256 << 10),
            Box::new(|c| {
                c.annotations.insert("big".into(), "v".repeat(257 << 10));
            }),
        ),
        (
            "1,025 port mappings",
            "config.port_mappings",
            Some(1024),
            Box::new(|c| {
                c.port_mappings = vec![
                    proto::PortMapping {
                        container_port: 80,
                        ..Default::default()
                    };
                    1025
                ]
            }),
        ),
    ];
    let before = env.snapshot().await?;
    for (what, field, limit, edit) in &pod_cases {
        let mut pc = env.pod_config("badpod");
        edit(&mut pc);
        let r = env.run_pod(&pc).await;
        refused(what, r, field, *limit)?;
        let after = env.snapshot().await?;
        ensure!(
            after == before,
            "{what} left something:\n{before:?}\n{after:?}"
        );
    }

    // Containers, in a good pod.
    let pc = env.pod_config("good");
    let pod = env.run_pod(&pc).await?;
    let sleeper = env
        .create(
            &pod,
            &pc,
            env.container_config("sleeper", &["sleep", "100"]),
        )
        .await?;
    env.start(&sleeper).await?;
    let mount = |host: &str| proto::Mount {
        container_path: "/host".into(),
        host_path: host.into(),
        ..Default::default()
    };
    type CtrEdit = Box<dyn Fn(&mut proto::ContainerConfig)>;
    let ctr_cases: Vec<(&str, &str, Option<usize>, CtrEdit)> = vec![
        (
            "a mount through /proc/self/root",
            "config.mounts[0].host_path",
            None,
            Box::new(move |c| c.mounts = vec![mount("/proc/self/root/etc")]),
        ),
        (
            "a mount of /proc/1/root",
            "config.mounts[0].host_path",
            None,
            Box::new(move |c| c.mounts = vec![mount("/proc/1/root")]),
        ),
        (
            "a mount of /proc/thread-self/cwd",
            "config.mounts[0].host_path",
            None,
            Box::new(move |c| c.mounts = vec![mount("/proc/thread-self/cwd")]),
        ),
        (
            "a container path with ..",
            "config.mounts[0].container_path",
            None,
            Box::new(|c| {
                c.mounts = vec![proto::Mount {
                    container_path: "/data/../../etc".into(),
                    host_path: "/tmp".into(),
                    ..Default::default()
                }]
            }),
        ),
        (
            "1,025 mounts",
            "config.mounts",
            Some(1024),
            Box::new(move |c| c.mounts = vec![mount("/tmp"); 1025]),
        ),
        (
            "a 1 MiB environment variable",
            "config.envs[0]",
            Some(128 << 10),
            Box::new(|c| c.envs = vec![kv("BIG", "x".repeat(1 << 20))]),
        ),
        (
            "1.1 MiB of environment",
            "config.envs",
            Some(1 << 20),
            Box::new(|c| {
                c.envs = (0..11)
                    .map(|i| kv(&format!("V{i}"), "x".repeat(100 << 10)))
                    .collect()
            }),
        ),
        (
            "an environment key with '='",
            "config.envs[0].key",
            None,
            Box::new(|c| c.envs = vec![kv("A=B", "c".into())]),
        ),
        (
            "an argument with NUL",
            "config.args[0]",
            None,
            Box::new(|c| c.args = vec!["a\0b".into()]),
        ),
        (
            "a log_path with ..",
            "config.log_path",
            None,
            Box::new(|c| c.log_path = "../../escaped.log".into()),
        ),
        (
            "an absolute log_path",
            "config.log_path",
            None,
            Box::new(|c| c.log_path = "/tmp/escaped.log".into()),
        ),
        (
            "65 added capabilities",
            "config.linux.security_context.capabilities.add_capabilities",
            Some(64),
            Box::new(|c| {
                c.linux = Some(proto::LinuxContainerConfig {
                    resources: None,
                    security_context: Some(proto::LinuxContainerSecurityContext {
                        capabilities: Some(proto::Capability {
                            add_capabilities: vec!["CHOWN".into(); 65],
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                })
            }),
        ),
    ];
    let before = env.snapshot().await?;
    for (what, field, limit, edit) in &ctr_cases {
        let mut cfg = env.container_config("bad", &["true"]);
        edit(&mut cfg);
        let r = env.create(&pod, &pc, cfg).await;
        refused(what, r, field, *limit)?;
        let after = env.snapshot().await?;
        ensure!(
            after == before,
            "{what} left something:\n{before:?}\n{after:?}"
        );
    }
    ensure!(
        !env.logs.path().join("escaped.log").exists() && !Path::new("/tmp/escaped.log").exists(),
        "a log was written outside the log directory"
    );

    // ExecSync: each argument under MAX_ARG_STRLEN, all of them bounded.
    let exec = |cmd: Vec<String>| proto::ExecSyncRequest {
        container_id: sleeper.clone(),
        cmd,
        timeout: 5,
    };
    let r = env
        .cri
        .runtime
        .exec_sync(exec(vec!["echo".into(), "x".repeat(128 << 10)]))
        .await;
    refused("a 128 KiB exec argument", r, "cmd[1]", Some(128 << 10))?;
    let r = env
        .cri
        .runtime
        .exec_sync(exec(vec!["x".repeat(64 << 10); 17]))
        .await;
    refused("1.06 MiB of exec arguments", r, "cmd", Some(1 << 20))?;
    // At both limits it runs: seven strings of MAX_ARG_STRLEN (with their NULs) and one
    // that brings the whole to exactly 1 MiB.
    let mut cmd: Vec<String> = vec!["sh".into(), "-c".into(), "echo $# ${#0}".into()];
    let fixed: usize = cmd.iter().map(|s| s.len() + 1).sum();
    cmd.extend(vec!["y".repeat((128 << 10) - 1); 7]);
    cmd.push("z".repeat((1 << 20) - fixed - 7 * (128 << 10) - 1));
    let r = env.cri.runtime.exec_sync(exec(cmd)).await?.into_inner();
    ensure!(
        r.exit_code == 0 && r.stdout == format!("7 {}\n", (128 << 10) - 1).into_bytes(),
        "exec at the limits: {r:?}"
    );

    // Everything made is removable, and nothing is left.
    env.remove_pod(&pod).await?;
    let after = env.snapshot().await?;
    ensure!(
        after.pods.is_empty()
            && after.containers.is_empty()
            && after.dirs.is_empty()
            && after.mounts == 0,
        "left after removal: {after:?}"
    );
    Ok(())
}

async fn wait_for<F: Fn() -> bool>(what: &str, f: F) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn empty(dir: &Path) -> Result<()> {
    let left: Vec<_> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .collect();
    ensure!(
        left.is_empty(),
        "written outside the log directory: {left:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_log_directory_never_gets_a_log_outside() -> Result<()> {
    let Some(mut env) = setup("a_symlinked_log_directory_never_gets_a_log_outside", 2).await?
    else {
        return Ok(());
    };
    let outside = tempfile::Builder::new()
        .prefix("corral-e2e-outside-")
        .tempdir()?;

    // A log directory that is a symlink to elsewhere before the create: refused, naming
    // the log path, and nothing written there.
    let pc = env.pod_config("linked");
    std::os::unix::fs::symlink(outside.path(), &pc.log_directory)?;
    let pod = env.run_pod(&pc).await?;
    let before = env.snapshot().await?;
    let r = env
        .create(&pod, &pc, env.container_config("c", &["echo", "hi"]))
        .await;
    refused("a symlinked log directory", r, "config.log_path", None)?;
    ensure!(
        env.snapshot().await? == before,
        "the refused create left something"
    );
    empty(outside.path())?;

    // A symlink beneath a real log directory, out of it.
    std::fs::remove_file(&pc.log_directory)?;
    std::fs::create_dir(&pc.log_directory)?;
    std::os::unix::fs::symlink(outside.path(), Path::new(&pc.log_directory).join("sub"))?;
    let mut cfg = env.container_config("c", &["echo", "hi"]);
    cfg.log_path = "sub/c.log".into();
    let r = env.create(&pod, &pc, cfg).await;
    refused(
        "a symlink beneath the log directory",
        r,
        "config.log_path",
        None,
    )?;
    empty(outside.path())?;

    // Swapped in after the create: ReopenContainerLog refuses it and the log stays where
    // it was.
    let id = env
        .create(
            &pod,
            &pc,
            env.container_config(
                "ticker",
                &[
                    "sh",
                    "-c",
                    "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done",
                ],
            ),
        )
        .await?;
    env.start(&id).await?;
    let log = Path::new(&pc.log_directory).join("ticker.log");
    wait_for("ticks", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("tick 2"))
    })
    .await?;
    let moved = env.logs.path().join("linked.moved");
    std::fs::rename(&pc.log_directory, &moved)?;
    std::os::unix::fs::symlink(outside.path(), &pc.log_directory)?;
    let r = env
        .cri
        .runtime
        .reopen_container_log(proto::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await;
    match r {
        Ok(_) => bail!("ReopenContainerLog followed the symlinked log directory"),
        Err(e) => ensure!(
            e.code() == Code::FailedPrecondition,
            "reopen: {:?} {}",
            e.code(),
            e.message()
        ),
    }
    let grown = std::fs::metadata(moved.join("ticker.log"))?.len();
    wait_for("the old log to grow", || {
        std::fs::metadata(moved.join("ticker.log")).is_ok_and(|m| m.len() > grown)
    })
    .await?;
    empty(outside.path())?;

    std::fs::remove_file(&pc.log_directory)?;
    env.remove_pod(&pod).await?;
    empty(outside.path())?;
    let after = env.snapshot().await?;
    ensure!(
        after.pods.is_empty() && after.containers.is_empty() && after.mounts == 0,
        "left after removal: {after:?}"
    );
    Ok(())
}
