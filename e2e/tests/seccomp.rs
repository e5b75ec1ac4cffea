//! seccomp and AppArmor end to end: what a busybox container sees of its filter
//! (`Seccomp:` in /proc/self/status) and which syscalls it is refused, per profile:
//! RuntimeDefault, Unconfined, unset, privileged, a Localhost file, a bad Localhost path;
//! ExecSync under the same filter; AppArmor on a node without it.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e::client::{spec, Cri};
use e2e::daemon::Daemon;
use e2e::harness::BusyboxEnv;
use e2e::registry::Registry;
use proto::security_profile::ProfileType;
use tonic::Code;

struct Env {
    // Field order is drop order: pods go (daemon) before the registry.
    daemon: Daemon,
    cri: Cri,
    _reg: Registry,
    image: String,
    logs: tempfile::TempDir,
    /// Pods made, removed at the end even when a check fails.
    pods: Vec<String>,
}

/// A registry with busybox, and a corrald on its own bridge `crtsc<n>`.
async fn setup(test: &str, n: u8) -> Result<Option<Env>> {
    let network = format!("bridge = \"crtsc{n}\"\nsubnet = \"10.220.{n}.0/24\"");
    let Some(e) = BusyboxEnv::start(test, &network).await? else {
        return Ok(None);
    };
    Ok(Some(Env {
        daemon: e.daemon,
        cri: e.cri,
        _reg: e.registry,
        image: e.image,
        logs: tempfile::Builder::new()
            .prefix("corral-e2e-logs-")
            .tempdir()?,
        pods: Vec::new(),
    }))
}

fn profile(typ: ProfileType, localhost_ref: &str) -> Option<proto::SecurityProfile> {
    Some(proto::SecurityProfile {
        profile_type: typ as i32,
        localhost_ref: localhost_ref.into(),
    })
}

fn own_pid_ns() -> Option<proto::NamespaceOption> {
    Some(proto::NamespaceOption {
        pid: proto::NamespaceMode::Container as i32,
        ..Default::default()
    })
}

impl Env {
    fn pod_config(&self, name: &str, privileged: bool) -> proto::PodSandboxConfig {
        proto::PodSandboxConfig {
            metadata: Some(proto::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "e2e".into(),
                attempt: 0,
            }),
            hostname: format!("{name}-host"),
            log_directory: self.logs.path().join(name).display().to_string(),
            linux: Some(proto::LinuxPodSandboxConfig {
                security_context: Some(proto::LinuxSandboxSecurityContext {
                    namespace_options: own_pid_ns(),
                    privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn run_pod(&mut self, config: &proto::PodSandboxConfig) -> Result<String> {
        let id = self
            .cri
            .runtime
            .run_pod_sandbox(proto::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        self.pods.push(id.clone());
        Ok(id)
    }

    /// A container running `script` in sh, with this security context.
    fn container(
        &self,
        name: &str,
        script: &str,
        sc: proto::LinuxContainerSecurityContext,
    ) -> proto::ContainerConfig {
        proto::ContainerConfig {
            metadata: Some(proto::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(spec(&self.image)),
            command: vec!["sh".into(), "-c".into(), script.into()],
            log_path: format!("{name}.log"),
            linux: Some(proto::LinuxContainerConfig {
                security_context: Some(proto::LinuxContainerSecurityContext {
                    namespace_options: own_pid_ns(),
                    ..sc
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

    async fn run(
        &mut self,
        pod: &str,
        pod_config: &proto::PodSandboxConfig,
        config: proto::ContainerConfig,
    ) -> Result<String> {
        let id = self.create(pod, pod_config, config).await?;
        self.cri
            .runtime
            .start_container(proto::StartContainerRequest {
                container_id: id.clone(),
            })
            .await?;
        Ok(id)
    }

    async fn exec(&mut self, id: &str, cmd: &[&str]) -> Result<proto::ExecSyncResponse> {
        Ok(self
            .cri
            .runtime
            .exec_sync(proto::ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 10,
            })
            .await?
            .into_inner())
    }

    /// The `Seccomp:` value an ExecSync in the container sees.
    async fn exec_seccomp(&mut self, id: &str) -> Result<String> {
        let r = self
            .exec(id, &["grep", "^Seccomp:", "/proc/self/status"])
            .await?;
        ensure!(r.exit_code == 0, "grep exited {}", r.exit_code);
        Ok(String::from_utf8(r.stdout)?
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string())
    }

    /// The container's log once it holds `marker`: its text, without the CRI prefixes.
    async fn log_until(
        &self,
        pod: &proto::PodSandboxConfig,
        name: &str,
        marker: &str,
    ) -> Result<String> {
        let path = pod.log_directory.clone() + &format!("/{name}.log");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<String> = text
                .lines()
                .map(|l| l.splitn(4, ' ').nth(3).unwrap_or_default().to_string())
                .collect();
            let joined = lines.join("\n");
            if joined.contains(marker) {
                return Ok(joined);
            }
            if Instant::now() > deadline {
                bail!("{name}'s log has no {marker:?} after 15 s: {joined:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn list_containers(&mut self) -> Result<Vec<proto::Container>> {
        Ok(self
            .cri
            .runtime
            .list_containers(proto::ListContainersRequest::default())
            .await?
            .into_inner()
            .containers)
    }

    /// Stop and remove every pod made (their containers go with them).
    async fn cleanup(&mut self) -> Result<()> {
        for pod in std::mem::take(&mut self.pods) {
            self.cri
                .runtime
                .stop_pod_sandbox(proto::StopPodSandboxRequest {
                    pod_sandbox_id: pod.clone(),
                })
                .await?;
            self.cri
                .runtime
                .remove_pod_sandbox(proto::RemovePodSandboxRequest {
                    pod_sandbox_id: pod,
                })
                .await?;
        }
        let left = self.list_containers().await?;
        ensure!(left.is_empty(), "containers left: {left:?}");
        Ok(())
    }
}

/// Run `body`, then clean up whatever it left, reporting the first failure.
async fn with_cleanup<F>(env: &mut Env, body: F) -> Result<()>
where
    F: for<'a> FnOnce(&'a mut Env) -> futures::future::BoxFuture<'a, Result<()>>,
{
    let outcome = body(env).await;
    let cleaned = env.cleanup().await;
    if outcome.is_err() {
        eprintln!("corrald log:\n{}", env.daemon.log_tail(40));
    }
    outcome.and(cleaned)
}

/// What the init prints: its filter mode, then whether it may make a user namespace.
const PROBE: &str = "grep ^Seccomp: /proc/self/status; \
    if unshare -U true 2>/dev/null; then echo unshare=ok; else echo unshare=refused; fi; \
    grep ^NoNewPrivs: /proc/self/status; echo probed; exec sleep 3600";

/// Whether this node enforces AppArmor (what corrald checks too).
fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.starts_with('Y'))
}

fn field<'a>(log: &'a str, key: &str) -> &'a str {
    log.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_modes_per_profile() -> Result<()> {
    let Some(mut env) = setup("filter_modes_per_profile", 1).await? else {
        return Ok(());
    };
    with_cleanup(&mut env, move |env: &mut Env| {
        Box::pin(async move {
            let pc = env.pod_config("modes", false);
            let pod = env.run_pod(&pc).await?;
            // (name, profile, no_new_privs, Seccomp:, unshare)
            let cases = [
                (
                    "default",
                    profile(ProfileType::RuntimeDefault, ""),
                    false,
                    "2",
                    "refused",
                ),
                (
                    "default-nnp",
                    profile(ProfileType::RuntimeDefault, ""),
                    true,
                    "2",
                    "refused",
                ),
                (
                    "unconfined",
                    profile(ProfileType::Unconfined, ""),
                    false,
                    "0",
                    "ok",
                ),
                ("unset", None, false, "0", "ok"),
            ];
            for (name, seccomp, no_new_privs, mode, unshare) in cases {
                let sc = proto::LinuxContainerSecurityContext {
                    seccomp,
                    no_new_privs,
                    ..Default::default()
                };
                let cfg = env.container(name, PROBE, sc);
                let id = env.run(&pod, &pc, cfg).await?;
                let log = env.log_until(&pc, name, "probed").await?;
                assert_eq!(field(&log, "Seccomp:"), mode, "{name}: {log}");
                assert_eq!(field(&log, "unshare="), unshare, "{name}: {log}");
                let nnp = if no_new_privs { "1" } else { "0" };
                assert_eq!(field(&log, "NoNewPrivs:"), nnp, "{name}: {log}");
                // ExecSync runs under the same filter.
                assert_eq!(env.exec_seccomp(&id).await?, mode, "{name}: exec");
                let r = env.exec(&id, &["sh", "-c", "unshare -U true"]).await?;
                assert_eq!(
                    r.exit_code == 0,
                    unshare == "ok",
                    "{name}: exec unshare {r:?}"
                );
            }

            // Privileged: never filtered, even when RuntimeDefault is asked for.
            let ppc = env.pod_config("privileged", true);
            let ppod = env.run_pod(&ppc).await?;
            let sc = proto::LinuxContainerSecurityContext {
                seccomp: profile(ProfileType::RuntimeDefault, ""),
                privileged: true,
                ..Default::default()
            };
            let cfg = env.container("priv", PROBE, sc);
            let id = env.run(&ppod, &ppc, cfg).await?;
            let log = env.log_until(&ppc, "priv", "probed").await?;
            assert_eq!(field(&log, "Seccomp:"), "0", "{log}");
            assert_eq!(env.exec_seccomp(&id).await?, "0");
            Ok(())
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_profiles_and_apparmor() -> Result<()> {
    let Some(mut env) = setup("localhost_profiles_and_apparmor", 2).await? else {
        return Ok(());
    };
    let dir = tempfile::Builder::new()
        .prefix("corral-e2e-seccomp-")
        .tempdir()?;
    let blocks_sethostname = dir.path().join("no-sethostname.json");
    std::fs::write(
        &blocks_sethostname,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
            "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )?;
    let blocks = blocks_sethostname.display().to_string();
    let missing = dir.path().join("missing.json").display().to_string();
    with_cleanup(&mut env, move |env: &mut Env| {
        Box::pin(async move {
            let pc = env.pod_config("localhost", false);
            let pod = env.run_pod(&pc).await?;
            // CAP_SYS_ADMIN, so that only the filter can refuse sethostname; setting the
            // pod's hostname to what it is changes nothing.
            let admin = || proto::Capability {
                add_capabilities: vec!["SYS_ADMIN".into()],
                ..Default::default()
            };
            let script = "if hostname \"$(hostname)\"; then echo sethostname=ok; \
                          else echo sethostname=refused; fi; echo probed; exec sleep 3600";
            for (name, seccomp, want) in [
                (
                    "blocked",
                    profile(ProfileType::Localhost, &blocks),
                    "refused",
                ),
                ("control", profile(ProfileType::Unconfined, ""), "ok"),
            ] {
                let sc = proto::LinuxContainerSecurityContext {
                    seccomp,
                    capabilities: Some(admin()),
                    ..Default::default()
                };
                let cfg = env.container(name, script, sc);
                let id = env.run(&pod, &pc, cfg).await?;
                let log = env.log_until(&pc, name, "probed").await?;
                assert_eq!(field(&log, "sethostname="), want, "{name}: {log}");
                let r = env
                    .exec(&id, &["sh", "-c", "hostname \"$(hostname)\""])
                    .await?;
                if want == "refused" {
                    assert_ne!(r.exit_code, 0, "{r:?}");
                    let stderr = String::from_utf8_lossy(&r.stderr);
                    assert!(stderr.contains("Operation not permitted"), "{stderr}");
                    assert_eq!(env.exec_seccomp(&id).await?, "2");
                    // Everything else works.
                    let r = env
                        .exec(&id, &["sh", "-c", "ls / >/dev/null && echo fine"])
                        .await?;
                    assert_eq!((r.exit_code, r.stdout.as_slice()), (0, &b"fine\n"[..]));
                } else {
                    assert_eq!(r.exit_code, 0, "{r:?}");
                }
            }

            // A missing profile: InvalidArgument naming the field and the path; no
            // container made. The same through the deprecated path field.
            let before = env.list_containers().await?.len();
            #[allow(deprecated)]
            let attempts = [
                proto::LinuxContainerSecurityContext {
                    seccomp: profile(ProfileType::Localhost, &missing),
                    ..Default::default()
                },
                proto::LinuxContainerSecurityContext {
                    seccomp_profile_path: format!("localhost/{missing}"),
                    ..Default::default()
                },
            ];
            for sc in attempts {
                let cfg = env.container("missing", "true", sc);
                let err = env
                    .create(&pod, &pc, cfg)
                    .await
                    .expect_err("missing profile");
                assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
                let message = err.message();
                assert!(
                    message.contains("config.linux.security_context.seccomp")
                        && message.contains(&missing),
                    "{message}"
                );
            }
            assert_eq!(env.list_containers().await?.len(), before);

            // This node has no AppArmor: a Localhost profile is refused, RuntimeDefault
            // runs as if unconfined; Status says so.
            if !apparmor_enabled() {
                let sc = proto::LinuxContainerSecurityContext {
                    apparmor: profile(ProfileType::Localhost, "k8s-nginx"),
                    ..Default::default()
                };
                let err = env
                    .create(&pod, &pc, env.container("aa", "true", sc))
                    .await
                    .expect_err("apparmor");
                assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
                assert!(
                    err.message()
                        .contains("config.linux.security_context.apparmor")
                        && err.message().contains("apparmor is not supported"),
                    "{}",
                    err.message()
                );
                let sc = proto::LinuxContainerSecurityContext {
                    apparmor: profile(ProfileType::RuntimeDefault, ""),
                    ..Default::default()
                };
                let cfg = env.container("aa-default", "echo probed; exec sleep 3600", sc);
                env.run(&pod, &pc, cfg).await?;
                env.log_until(&pc, "aa-default", "probed").await?;
                let status = env
                    .cri
                    .runtime
                    .status(proto::StatusRequest { verbose: true })
                    .await?
                    .into_inner();
                let info: serde_json::Value =
                    serde_json::from_str(status.info.get("apparmor").context("no apparmor")?)?;
                assert_eq!(info["enabled"], false, "{info}");
            }
            assert_eq!(env.list_containers().await?.len(), before + 1);
            Ok(())
        })
    })
    .await
}
