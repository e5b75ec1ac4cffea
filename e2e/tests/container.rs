//! Containers end to end: a real corrald running busybox images the suite builds itself,
//! checked from the container's own side (what it prints, sees and serves), across
//! restarts, with bad input, and with nothing left behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e::client::{spec, Cri};
use e2e::daemon::Daemon;
use e2e::images::{self, Image, ImageConfig};
use e2e::registry::{skip_reason, Registry, RegistryOptions};
use e2e::skip::have_root;
use tonic::Code;

struct Env {
    // Field order is drop order: pods go (daemon) before the registry.
    daemon: Daemon,
    cri: Cri,
    _reg: Registry,
    /// The pushed busybox image (no entrypoint or cmd), by reference.
    image: String,
    /// The same layer with an app config: user 1000, env, workdir, entrypoint + cmd.
    app_image: String,
    logs: tempfile::TempDir,
}

/// A registry with two busybox images, and a corrald on its own bridge `crtc<n>`.
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
    Image::busybox(app_config())?
        .push(&reg, "e2e/app", &["v1"])
        .await?;
    let daemon = Daemon::start(&format!(
        "[network]\nbridge = \"crtc{n}\"\nsubnet = \"10.213.{n}.0/24\"\n"
    ))
    .await?;
    let mut cri = daemon.client().await?;
    let image = format!("{}/e2e/busybox:latest", reg.host());
    let app_image = format!("{}/e2e/app:v1", reg.host());
    cri.pull(&image, None).await?;
    cri.pull(&app_image, None).await?;
    Ok(Some(Env {
        daemon,
        cri,
        _reg: reg,
        image,
        app_image,
        logs: tempfile::Builder::new()
            .prefix("corral-e2e-logs-")
            .tempdir()?,
    }))
}

/// Each container its own PID namespace (kubelet's default).
fn container_pid() -> proto::NamespaceOption {
    proto::NamespaceOption {
        pid: proto::NamespaceMode::Container as i32,
        ..Default::default()
    }
}

fn app_config() -> ImageConfig {
    ImageConfig {
        user: Some("app".into()),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec!["echo from-image-cmd".into()]),
        env: vec![images::DEFAULT_PATH_ENV.into(), "GREETING=hi".into()],
        working_dir: Some("/home/app/work".into()),
        ..Default::default()
    }
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
            hostname: format!("{name}-host"),
            log_directory: self.logs.path().join(name).display().to_string(),
            // What kubelet sends for a pod without shareProcessNamespace.
            linux: Some(proto::LinuxPodSandboxConfig {
                security_context: Some(proto::LinuxSandboxSecurityContext {
                    namespace_options: Some(container_pid()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn run_pod(&mut self, config: proto::PodSandboxConfig) -> Result<String> {
        Ok(self
            .cri
            .runtime
            .run_pod_sandbox(proto::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id)
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
            linux: Some(proto::LinuxContainerConfig {
                security_context: Some(proto::LinuxContainerSecurityContext {
                    namespace_options: Some(container_pid()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn create(
        &mut self,
        pod: &str,
        pod_config: &proto::PodSandboxConfig,
        config: proto::ContainerConfig,
    ) -> Result<String, tonic::Status> {
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

    async fn start(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.cri
            .runtime
            .start_container(proto::StartContainerRequest {
                container_id: id.into(),
            })
            .await?;
        Ok(())
    }

    /// Create and start.
    async fn run(
        &mut self,
        pod: &str,
        pod_config: &proto::PodSandboxConfig,
        config: proto::ContainerConfig,
    ) -> Result<String> {
        let id = self.create(pod, pod_config, config).await?;
        self.start(&id).await?;
        Ok(id)
    }

    async fn status(&mut self, id: &str) -> Result<(proto::ContainerStatus, serde_json::Value)> {
        let r = self
            .cri
            .runtime
            .container_status(proto::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .await?
            .into_inner();
        let info = r
            .info
            .get("info")
            .map(|s| serde_json::from_str(s))
            .transpose()?
            .unwrap_or_default();
        Ok((r.status.context("no status")?, info))
    }

    async fn wait_exited(&mut self, id: &str) -> Result<proto::ContainerStatus> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (s, _) = self.status(id).await?;
            if s.state == proto::ContainerState::ContainerExited as i32 {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("container {id} still {:?} after 15 s", s.state);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn exec(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<proto::ExecSyncResponse, tonic::Status> {
        Ok(self
            .cri
            .runtime
            .exec_sync(proto::ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout,
            })
            .await?
            .into_inner())
    }

    /// ExecSync that must exit 0: its stdout.
    async fn sh(&mut self, id: &str, script: &str) -> Result<String> {
        let r = self.exec(id, &["sh", "-c", script], 10).await?;
        ensure!(
            r.exit_code == 0,
            "{script:?} exited {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        );
        Ok(String::from_utf8(r.stdout)?)
    }

    fn log_file(&self, pod: &str, name: &str) -> PathBuf {
        self.logs.path().join(pod).join(format!("{name}.log"))
    }

    async fn stop_container(&mut self, id: &str, timeout: i64) -> Result<(), tonic::Status> {
        self.cri
            .runtime
            .stop_container(proto::StopContainerRequest {
                container_id: id.into(),
                timeout,
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

    /// Nothing of the daemon's containers is left: bundles, writable layers, records.
    async fn assert_no_containers(&mut self) -> Result<()> {
        let listed = self
            .cri
            .runtime
            .list_containers(proto::ListContainersRequest::default())
            .await?
            .into_inner()
            .containers;
        ensure!(listed.is_empty(), "containers left: {listed:?}");
        for dir in [
            self.daemon.state.join("containers"),
            self.daemon.root.join("containers"),
        ] {
            let left: Vec<_> = std::fs::read_dir(&dir)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            ensure!(left.is_empty(), "left in {}: {left:?}", dir.display());
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        let ours = self.daemon.dir().display().to_string();
        let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(&ours)).collect();
        ensure!(leaked.is_empty(), "mounts left: {leaked:?}");
        Ok(())
    }
}

/// The CRI log lines of a file: (stream, tag, text), timestamps checked.
fn log_lines(path: &Path) -> Result<Vec<(String, String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let (ts, stream, tag) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let rest = parts.next().unwrap_or_default();
            ensure!(
                ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "bad timestamp in {line:?}"
            );
            ensure!(
                matches!(stream, "stdout" | "stderr"),
                "bad stream in {line:?}"
            );
            ensure!(matches!(tag, "P" | "F"), "bad tag in {line:?}");
            Ok((stream.to_string(), tag.to_string(), rest.to_string()))
        })
        .collect()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_exit_codes_and_image_config() -> Result<()> {
    let Some(mut env) = setup("logs_exit_codes_and_image_config", 1).await? else {
        return Ok(());
    };
    let pc = env.pod_config("logs");
    let pod = env.run_pod(pc.clone()).await?;

    // stdout and stderr, exact lines, exit 3.
    let cfg = env.container_config(
        "out",
        &["sh", "-c", "echo hello out; echo hello err >&2; exit 3"],
    );
    let id = env.run(&pod, &pc, cfg).await?;
    let s = env.wait_exited(&id).await?;
    assert_eq!(s.exit_code, 3);
    assert_eq!(s.reason, "Error");
    assert!(s.started_at > 0 && s.finished_at >= s.started_at, "{s:?}");
    let lines = log_lines(&env.log_file("logs", "out"))?;
    let mut got: Vec<_> = lines
        .iter()
        .map(|(s, t, x)| (s.as_str(), t.as_str(), x.as_str()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![("stderr", "F", "hello err"), ("stdout", "F", "hello out")]
    );
    assert!(s.log_path.ends_with("logs/out.log"), "{}", s.log_path);

    // A 100 KB line comes out as partial lines plus a final one that join to it.
    let cfg = env.container_config(
        "long",
        &["sh", "-c", "yes x | head -c 100000 | tr -d '\\n'; echo"],
    );
    let id = env.run(&pod, &pc, cfg).await?;
    let s = env.wait_exited(&id).await?;
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    let lines = log_lines(&env.log_file("logs", "long"))?;
    assert!(lines.len() > 1, "one line for 100 KB");
    let (last, parts) = lines.split_last().context("no lines")?;
    assert_eq!(last.1, "F");
    assert!(parts.iter().all(|l| l.1 == "P" && l.0 == "stdout"));
    let joined: String = lines.iter().map(|l| l.2.as_str()).collect();
    assert_eq!(joined, "x".repeat(50000));

    // The image's entrypoint, cmd, user, env and working dir (made when missing); the
    // request's args replace the cmd, its env adds to the image's and overrides.
    let mut cfg = env.container_config("app", &[]);
    cfg.image = Some(spec(&env.app_image));
    cfg.args = vec!["echo \"$GREETING $EXTRA $(id -u):$(id -g) $(pwd) $HOSTNAME\"".into()];
    cfg.envs = vec![proto::KeyValue {
        key: "EXTRA".into(),
        value: "there".into(),
    }];
    let id = env.run(&pod, &pc, cfg).await?;
    let s = env.wait_exited(&id).await?;
    assert_eq!(s.exit_code, 0, "{s:?}");
    let lines = log_lines(&env.log_file("logs", "app"))?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].2, "hi there 1000:1000 /home/app/work logs-host");
    let image_id = env
        .cri
        .image_status(&env.app_image)
        .await?
        .context("image")?
        .id;
    assert_eq!(s.image_id, image_id);
    assert!(s.image_ref.contains("@sha256:"), "{}", s.image_ref);

    // Without args the image's cmd runs.
    let mut cfg = env.container_config("app-default", &[]);
    cfg.image = Some(spec(&env.app_image));
    let id = env.run(&pod, &pc, cfg).await?;
    env.wait_exited(&id).await?;
    let lines = log_lines(&env.log_file("logs", "app-default"))?;
    assert_eq!(lines[0].2, "from-image-cmd");

    // ListContainers filters.
    let list = |f: proto::ContainerFilter| proto::ListContainersRequest { filter: Some(f) };
    let all = env
        .cri
        .runtime
        .list_containers(list(Default::default()))
        .await?
        .into_inner();
    assert_eq!(all.containers.len(), 4);
    let by_prefix = env
        .cri
        .runtime
        .list_containers(list(proto::ContainerFilter {
            id: id[..12].into(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert_eq!(by_prefix.containers.len(), 1);
    assert_eq!(by_prefix.containers[0].id, id);
    let running = env
        .cri
        .runtime
        .list_containers(list(proto::ContainerFilter {
            state: Some(proto::ContainerStateValue {
                state: proto::ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        }))
        .await?
        .into_inner();
    assert!(running.containers.is_empty());

    env.remove_pod(&pod).await?;
    env.assert_no_containers().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_honours_the_grace_period() -> Result<()> {
    let Some(mut env) = setup("stop_honours_the_grace_period", 2).await? else {
        return Ok(());
    };
    let pc = env.pod_config("stop");
    let pod = env.run_pod(pc.clone()).await?;

    // A script that traps TERM and takes a moment to finish: it gets to.
    let cfg = env.container_config(
        "trap",
        &["sh", "-c", "trap 'sleep 0.3; echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.05; done"],
    );
    let id = env.run(&pod, &pc, cfg).await?;
    let log = env.log_file("stop", "trap");
    wait_for("ready", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("ready"))
    })
    .await?;
    let t = Instant::now();
    env.stop_container(&id, 10).await?;
    let took = t.elapsed();
    let s = env.wait_exited(&id).await?;
    assert_eq!(s.exit_code, 0, "{s:?}");
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    let lines = log_lines(&log)?;
    assert!(lines.iter().any(|l| l.2 == "got TERM"), "{lines:?}");

    // PID 1 ignores SIGTERM without a handler: SIGKILL after the grace period, not before.
    let cfg = env.container_config("sleeper", &["sleep", "1000"]);
    let id = env.run(&pod, &pc, cfg).await?;
    let t = Instant::now();
    env.stop_container(&id, 1).await?;
    let took = t.elapsed();
    let s = env.wait_exited(&id).await?;
    assert_eq!(s.exit_code, 137, "{s:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "stop took {took:?}"
    );

    // Timeout 0 kills at once; stopping again, or an unknown id, is fine.
    let cfg = env.container_config("sleeper2", &["sleep", "1000"]);
    let id = env.run(&pod, &pc, cfg).await?;
    let t = Instant::now();
    env.stop_container(&id, 0).await?;
    assert!(t.elapsed() < Duration::from_millis(900));
    env.stop_container(&id, 0).await?;
    env.stop_container("0123456789abcdef", 0).await?;
    // Remove is idempotent too, and removes a running container.
    let cfg = env.container_config("running", &["sleep", "1000"]);
    let id = env.run(&pod, &pc, cfg).await?;
    for _ in 0..2 {
        env.cri
            .runtime
            .remove_container(proto::RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await?;
    }
    let gone = env.status(&id).await.expect_err("removed");
    assert_eq!(
        gone.downcast_ref::<tonic::Status>().map(|s| s.code()),
        Some(Code::NotFound)
    );
    env.remove_pod(&pod).await?;
    env.assert_no_containers().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_containers_share_network_ipc_and_pid() -> Result<()> {
    let Some(mut env) = setup("pod_containers_share_network_ipc_and_pid", 3).await? else {
        return Ok(());
    };
    let mut pc = env.pod_config("shared");
    if let Some(linux) = pc.linux.as_mut() {
        linux.security_context = Some(proto::LinuxSandboxSecurityContext {
            namespace_options: Some(proto::NamespaceOption {
                pid: proto::NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let pod = env.run_pod(pc.clone()).await?;
    let with_pod_pid = |mut c: proto::ContainerConfig| {
        c.linux = Some(proto::LinuxContainerConfig {
            security_context: Some(proto::LinuxContainerSecurityContext {
                namespace_options: Some(proto::NamespaceOption {
                    pid: proto::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    };
    let server =
        with_pod_pid(env.container_config("server", &["httpd", "-f", "-p", "8080", "-h", "/etc"]));
    let a = env.run(&pod, &pc, server).await?;
    let b = env
        .run(
            &pod,
            &pc,
            with_pod_pid(env.container_config("client", &["sleep", "1000"])),
        )
        .await?;

    // localhost is shared: the client fetches the server's /hostname.
    let mut got = String::new();
    for _ in 0..50 {
        match env
            .sh(&b, "wget -q -O - http://127.0.0.1:8080/hostname")
            .await
        {
            Ok(out) => {
                got = out;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(got.trim(), "shared-host");

    // The pod IP serves it to the host too.
    let (ps, _) = {
        let r = env
            .cri
            .runtime
            .pod_sandbox_status(proto::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await?
            .into_inner();
        (r.status.context("status")?, ())
    };
    let ip = ps.network.context("network")?.ip;
    let mut stream = std::net::TcpStream::connect((ip.as_str(), 8080))?;
    use std::io::{Read, Write};
    stream.write_all(b"GET /hostname HTTP/1.0\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    assert!(
        body.starts_with("HTTP/1.") && body.ends_with("shared-host\n"),
        "{body}"
    );

    // IPC and network namespaces are the pod's, the same for both and not the host's.
    let script = "readlink /proc/self/ns/ipc; readlink /proc/self/ns/net";
    let (ns_a, ns_b) = (env.sh(&a, script).await?, env.sh(&b, script).await?);
    assert_eq!(ns_a, ns_b);
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc")?;
    assert!(!ns_a.contains(&host_ipc.display().to_string()), "{ns_a}");

    // One PID namespace: the pause is PID 1, and each sees the other's process.
    let ps_b = env.sh(&b, "cat /proc/1/comm; ps -o comm").await?;
    let mut lines = ps_b.lines();
    assert_eq!(lines.next(), Some("corral-pause"));
    assert!(ps_b.contains("httpd") && ps_b.contains("sleep"), "{ps_b}");

    env.remove_pod(&pod).await?;

    // Without a shared PID namespace, the container is PID 1 of its own.
    let pc = env.pod_config("own-pid");
    let pod = env.run_pod(pc.clone()).await?;
    let c = env
        .run(&pod, &pc, env.container_config("alone", &["sleep", "1000"]))
        .await?;
    let out = env
        .sh(&c, "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname")
        .await?;
    assert_eq!(out, "sleep 1000 \nown-pid-host\n");
    env.remove_pod(&pod).await?;
    env.assert_no_containers().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_and_reopen_log() -> Result<()> {
    let Some(mut env) = setup("exec_sync_and_reopen_log", 4).await? else {
        return Ok(());
    };
    let pc = env.pod_config("exec");
    let pod = env.run_pod(pc.clone()).await?;
    let mut cfg = env.container_config(
        "ticker",
        &[
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
        ],
    );
    cfg.working_dir = "/tmp/wd".into();
    cfg.envs = vec![proto::KeyValue {
        key: "FOO".into(),
        value: "bar".into(),
    }];
    let id = env.run(&pod, &pc, cfg).await?;

    let r = env
        .exec(&id, &["sh", "-c", "echo $FOO $(pwd); echo oops >&2"], 5)
        .await?;
    assert_eq!(
        (r.exit_code, r.stdout.as_slice(), r.stderr.as_slice()),
        (0, &b"bar /tmp/wd\n"[..], &b"oops\n"[..])
    );
    let r = env.exec(&id, &["sh", "-c", "exit 7"], 5).await?;
    assert_eq!(r.exit_code, 7);
    let r = env.exec(&id, &["no-such-command"], 5).await?;
    assert_eq!(r.exit_code, 127, "{r:?}");

    // A timeout: DeadlineExceeded, and nothing of the exec left in the container's cgroup.
    let t = Instant::now();
    let err = env
        .exec(&id, &["sh", "-c", "sleep 100 & sleep 100"], 1)
        .await
        .expect_err("timed out");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    let (_, info) = env.status(&id).await?;
    let cgroup = info["cgroup"].as_str().context("cgroup")?.to_string();
    let pid = info["pid"].as_i64().context("pid")?;
    // The init is in its cgroup in every hierarchy, cgroup2 included (it is cloned straight
    // into that one).
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    for line in own
        .lines()
        .filter(|l| l.starts_with("0::") || l.contains(":pids:"))
    {
        assert!(line.ends_with(&cgroup), "{line} is not in {cgroup}");
    }
    let procs = std::fs::read_to_string(format!("/sys/fs/cgroup/pids{cgroup}/cgroup.procs"))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup{cgroup}/cgroup.procs")))?;
    let left: Vec<i64> = procs
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|p| *p != pid)
        .collect();
    // The ticker's own `sleep 0.1` may be there; no `sleep 100` may.
    for p in left {
        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        assert_ne!(
            cmd, b"sleep\x00100\x00",
            "exec process {p} survived its timeout"
        );
    }

    // ReopenContainerLog after kubelet-style rotation: new lines land in the new file.
    let log = env.log_file("exec", "ticker");
    wait_for("ticks", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("tick 2"))
    })
    .await?;
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated)?;
    env.cri
        .runtime
        .reopen_container_log(proto::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await?;
    wait_for("a new log file", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 2)
    })
    .await?;
    for (stream, tag, text) in log_lines(&log)? {
        assert_eq!((stream.as_str(), tag.as_str()), ("stdout", "F"));
        assert!(text.starts_with("tick "), "{text}");
    }

    // Not running: FailedPrecondition for exec and reopen.
    env.stop_container(&id, 0).await?;
    let err = env.exec(&id, &["true"], 5).await.expect_err("stopped");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = env
        .cri
        .runtime
        .reopen_container_log(proto::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .expect_err("stopped");
    assert_eq!(err.code(), Code::FailedPrecondition);
    env.remove_pod(&pod).await?;
    env.assert_no_containers().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_survive_a_corrald_crash() -> Result<()> {
    let Some(mut env) = setup("containers_survive_a_corrald_crash", 5).await? else {
        return Ok(());
    };
    let pc = env.pod_config("crash");
    let pod = env.run_pod(pc.clone()).await?;
    let ticker = env
        .run(
            &pod,
            &pc,
            env.container_config(
                "ticker",
                &[
                    "sh",
                    "-c",
                    "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
                ],
            ),
        )
        .await?;
    let short = env
        .run(
            &pod,
            &pc,
            env.container_config("short", &["sh", "-c", "sleep 1; exit 42"]),
        )
        .await?;
    let (_, info) = env.status(&ticker).await?;
    let pid = info["pid"].as_i64().context("pid")?;

    env.daemon.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = env.log_file("crash", "ticker");
    let before = std::fs::read_to_string(&log)?.lines().count();
    env.daemon.restart().await?;
    env.cri = env.daemon.client().await?;

    let (s, info) = env.status(&ticker).await?;
    assert_eq!(s.state, proto::ContainerState::ContainerRunning as i32);
    assert_eq!(info["pid"].as_i64(), Some(pid));
    wait_for("more ticks", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() > before + 2)
    })
    .await?;
    let s = env.wait_exited(&short).await?;
    assert_eq!((s.exit_code, s.reason.as_str()), (42, "Error"));
    assert!(
        s.finished_at - s.started_at >= 900_000_000,
        "finished {} started {}",
        s.finished_at,
        s.started_at
    );
    let out = env.sh(&ticker, "echo still here").await?;
    assert_eq!(out, "still here\n");
    env.remove_pod(&pod).await?;
    env.assert_no_containers().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field_and_leave_nothing() -> Result<()> {
    let Some(mut env) = setup("bad_requests_name_the_field_and_leave_nothing", 6).await? else {
        return Ok(());
    };
    let pc = env.pod_config("bad");
    let pod = env.run_pod(pc.clone()).await?;

    let err = env
        .create("no-such-pod", &pc, env.container_config("x", &["true"]))
        .await
        .expect_err("unknown pod");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let mut cfg = env.container_config("badmount", &["true"]);
    cfg.mounts = vec![proto::Mount {
        container_path: "/data".into(),
        host_path: "/nonexistent/corral-e2e".into(),
        ..Default::default()
    }];
    let err = env.create(&pod, &pc, cfg).await.expect_err("bad mount");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("mounts"), "{}", err.message());

    let mut cfg = env.container_config("baduser", &["true"]);
    if let Some(linux) = cfg.linux.as_mut() {
        linux.security_context = Some(proto::LinuxContainerSecurityContext {
            run_as_username: "nosuchuser".into(),
            ..Default::default()
        });
    }
    let err = env.create(&pod, &pc, cfg).await.expect_err("bad user");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("run_as_username"),
        "{}",
        err.message()
    );

    let err = env
        .create(&pod, &pc, env.container_config("nocmd", &[]))
        .await
        .expect_err("no command");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("command"), "{}", err.message());

    let err = env
        .create(
            &pod,
            &pc,
            env.container_config("missing", &["/no/such/binary"]),
        )
        .await
        .expect_err("missing binary");
    assert!(
        err.message().contains("/no/such/binary"),
        "{}",
        err.message()
    );

    // A host-path mount of a symlink binds its target, read-only when asked.
    let host = tempfile::Builder::new()
        .prefix("corral-e2e-mnt-")
        .tempdir()?;
    std::fs::write(host.path().join("file"), "from the host\n")?;
    std::os::unix::fs::symlink(host.path(), host.path().with_extension("link"))?;
    let mut cfg = env.container_config("mounted", &["sleep", "100"]);
    cfg.mounts = vec![proto::Mount {
        container_path: "/data".into(),
        host_path: host.path().with_extension("link").display().to_string(),
        readonly: true,
        ..Default::default()
    }];
    let id = env.run(&pod, &pc, cfg).await?;
    assert_eq!(env.sh(&id, "cat /data/file").await?, "from the host\n");
    let r = env.exec(&id, &["touch", "/data/new"], 5).await?;
    assert_ne!(r.exit_code, 0, "wrote through a read-only mount");
    std::fs::remove_file(host.path().with_extension("link"))?;

    // Nothing was left by the failed creates: only the one good container exists.
    let listed = env
        .cri
        .runtime
        .list_containers(proto::ListContainersRequest::default())
        .await?
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 1);
    let bundles = std::fs::read_dir(env.daemon.state.join("containers"))?.count();
    assert_eq!(bundles, 1);

    // An image volume: another image's root, read-only; a writable one is refused.
    let app_image = env.app_image.clone();
    let volume = |readonly: bool| proto::Mount {
        container_path: "/vol".into(),
        readonly,
        image: Some(spec(&app_image)),
        ..Default::default()
    };
    let mut cfg = env.container_config("imgvol", &["sleep", "100"]);
    cfg.mounts = vec![volume(true)];
    let id = env.run(&pod, &pc, cfg).await?;
    assert_eq!(
        env.sh(&id, "ls /vol/bin/busybox").await?,
        "/vol/bin/busybox\n"
    );
    let r = env.exec(&id, &["touch", "/vol/new"], 5).await?;
    assert_ne!(r.exit_code, 0, "wrote into an image volume");
    let mut cfg = env.container_config("imgvol-rw", &["sleep", "100"]);
    cfg.mounts = vec![volume(false)];
    let err = env
        .create(&pod, &pc, cfg)
        .await
        .expect_err("writable image volume");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("readonly"), "{}", err.message());

    // A pod that is not ready takes no containers.
    env.cri
        .runtime
        .stop_pod_sandbox(proto::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    let err = env
        .create(&pod, &pc, env.container_config("late", &["true"]))
        .await
        .expect_err("pod stopped");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    env.remove_pod(&pod).await?;
    env.assert_no_containers().await?;
    Ok(())
}
