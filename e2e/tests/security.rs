//! The security context end to end, read from inside the container: the capability sets in
//! `/proc/self/status`, what `id` prints, which writes the kernel refuses, what is masked;
//! and what ContainerStatus reports and CreateContainer refuses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e::client::{spec, Cri};
use e2e::daemon::Daemon;
use e2e::images::{Compression, Image, ImageConfig, Layer, MediaTypes};
use e2e::registry::{skip_reason, Registry, RegistryOptions};
use e2e::skip::have_root;
use tonic::Code;

/// containerd's default capability set (Docker's): CHOWN DAC_OVERRIDE FOWNER FSETID KILL
/// SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
const DEFAULT_CAPS: u64 = 0xa804_25fb;
const CAP_CHOWN: u64 = 1 << 0;
const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_SYS_TIME: u64 = 1 << 25;

/// The masked and read-only paths kubelet sends for procMount Default.
const KUBELET_MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const KUBELET_READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

struct Env {
    // Field order is drop order: pods go (daemon) before the registry.
    daemon: Daemon,
    cri: Cri,
    _reg: Registry,
    /// Plain busybox, root, no entrypoint.
    image: String,
    /// `<registry>/e2e/groups:<tag>`: busybox with its own passwd and group (below), tags
    /// `app` (User "app"), `named` (User "web:extra"), `numeric` (User "2000:3000").
    groups_repo: String,
    logs: tempfile::TempDir,
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
app:x:1000:1000:app:/home/app:/bin/sh\n\
web:x:2000:2000:web:/home/web:/bin/sh\n";
/// `app` is a member of `extra` (50000) only in the image: policy Merge adds it.
const GROUP: &str = "root:x:0:\n\
app:x:1000:\n\
web:x:2000:\n\
extra:x:50000:app\n";

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
    let etc = Layer::builder()
        .dir("etc", 0o755)
        .file("etc/passwd", PASSWD, 0o644)
        .file("etc/group", GROUP, 0o644)
        .build(Compression::Gzip);
    for (tag, user) in [
        ("app", "app"),
        ("named", "web:extra"),
        ("numeric", "2000:3000"),
    ] {
        Image {
            layers: vec![Layer::busybox(Compression::Gzip)?, etc.clone()],
            config: ImageConfig {
                user: Some(user.into()),
                ..Default::default()
            },
            media_types: MediaTypes::Oci,
        }
        .push(&reg, "e2e/groups", &[tag])
        .await?;
    }
    let daemon = Daemon::start(&format!(
        "[network]\nbridge = \"crtsx{n}\"\nsubnet = \"10.223.{n}.0/24\"\n"
    ))
    .await?;
    let mut cri = daemon.client().await?;
    let image = format!("{}/e2e/busybox:latest", reg.host());
    let groups_repo = format!("{}/e2e/groups", reg.host());
    cri.pull(&image, None).await?;
    for tag in ["app", "named", "numeric"] {
        cri.pull(&format!("{groups_repo}:{tag}"), None).await?;
    }
    Ok(Some(Env {
        daemon,
        cri,
        _reg: reg,
        image,
        groups_repo,
        logs: tempfile::Builder::new()
            .prefix("corral-e2e-logs-")
            .tempdir()?,
    }))
}

fn container_pid() -> proto::NamespaceOption {
    proto::NamespaceOption {
        pid: proto::NamespaceMode::Container as i32,
        ..Default::default()
    }
}

/// What kubelet sends for a container with no securityContext (procMount Default).
fn kubelet_default() -> proto::LinuxContainerSecurityContext {
    proto::LinuxContainerSecurityContext {
        namespace_options: Some(container_pid()),
        masked_paths: KUBELET_MASKED.iter().map(|s| s.to_string()).collect(),
        readonly_paths: KUBELET_READONLY.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn caps(add: &[&str], drop: &[&str]) -> Option<proto::Capability> {
    Some(proto::Capability {
        add_capabilities: add.iter().map(|s| s.to_string()).collect(),
        drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
        add_ambient_capabilities: Vec::new(),
    })
}

/// One field of `/proc/<pid>/status` as text (`CapEff`, `NoNewPrivs`).
fn status_field(status: &str, key: &str) -> Result<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("no {key} in {status:?}"))
}

fn hex_field(status: &str, key: &str) -> Result<u64> {
    let v = status_field(status, key)?;
    u64::from_str_radix(&v, 16).with_context(|| format!("{key}: {v:?}"))
}

/// The mount options (field 6 of mountinfo) of the mount at `point`, the topmost.
fn mount_options(mountinfo: &str, point: &str) -> Option<String> {
    mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(point))
        .and_then(|l| l.split(' ').nth(5))
        .map(str::to_string)
}

impl Env {
    fn pod_config(&self, name: &str, privileged: bool) -> proto::PodSandboxConfig {
        proto::PodSandboxConfig {
            metadata: Some(proto::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "e2e-security".into(),
                attempt: 0,
            }),
            hostname: format!("{name}-host"),
            log_directory: self.logs.path().join(name).display().to_string(),
            linux: Some(proto::LinuxPodSandboxConfig {
                security_context: Some(proto::LinuxSandboxSecurityContext {
                    namespace_options: Some(container_pid()),
                    privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

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

    fn config(
        &self,
        name: &str,
        image: &str,
        script: &str,
        sc: impl Into<Option<proto::LinuxContainerSecurityContext>>,
    ) -> proto::ContainerConfig {
        proto::ContainerConfig {
            metadata: Some(proto::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(spec(image)),
            // One stream, so that the log keeps the order things happened in.
            command: vec!["sh".into(), "-c".into(), format!("exec 2>&1; {script}")],
            log_path: format!("{name}.log"),
            linux: Some(proto::LinuxContainerConfig {
                security_context: sc.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn create(
        &mut self,
        pod: &(String, proto::PodSandboxConfig),
        config: proto::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        Ok(self
            .cri
            .runtime
            .create_container(proto::CreateContainerRequest {
                pod_sandbox_id: pod.0.clone(),
                config: Some(config),
                sandbox_config: Some(pod.1.clone()),
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

    async fn status(&mut self, id: &str) -> Result<proto::ContainerStatus> {
        self.cri
            .runtime
            .container_status(proto::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no status")
    }

    async fn wait_exited(&mut self, id: &str) -> Result<proto::ContainerStatus> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.status(id).await?;
            if s.state == proto::ContainerState::ContainerExited as i32 {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("container {id} still {:?} after 20 s", s.state);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_file(&self, pod: &proto::PodSandboxConfig, name: &str) -> PathBuf {
        PathBuf::from(&pod.log_directory).join(format!("{name}.log"))
    }

    /// The text a container printed (stdout and stderr, in order, CRI framing removed).
    fn output(&self, pod: &proto::PodSandboxConfig, name: &str) -> Result<String> {
        let path = self.log_file(pod, name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut out = String::new();
        for line in text.lines() {
            // <time> <stream> <P|F> <text>
            let mut parts = line.splitn(4, ' ');
            let tag = parts.nth(2).unwrap_or_default();
            out.push_str(parts.next().unwrap_or_default());
            if tag == "F" {
                out.push('\n');
            }
        }
        Ok(out)
    }

    /// Run `script` to its end: (exit code, what it printed).
    async fn run_to_exit(
        &mut self,
        pod: &(String, proto::PodSandboxConfig),
        name: &str,
        image: &str,
        script: &str,
        sc: impl Into<Option<proto::LinuxContainerSecurityContext>>,
    ) -> Result<(i32, String)> {
        let config = self.config(name, image, script, sc);
        let id = self
            .create(pod, config)
            .await
            .with_context(|| format!("creating {name}"))?;
        self.start(&id).await?;
        let s = self.wait_exited(&id).await?;
        Ok((s.exit_code, self.output(&pod.1, name)?))
    }

    /// `/proc/self/status` of a container with this security context.
    async fn proc_status(
        &mut self,
        pod: &(String, proto::PodSandboxConfig),
        name: &str,
        sc: proto::LinuxContainerSecurityContext,
    ) -> Result<String> {
        let image = self.image.clone();
        let (code, out) = self
            .run_to_exit(pod, name, &image, "cat /proc/self/status", sc)
            .await?;
        ensure!(code == 0, "{name}: exit {code}: {out}");
        Ok(out)
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

    /// No container, bundle or writable layer of this daemon is left.
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
        Ok(())
    }
}

fn assert_invalid(r: Result<String, tonic::Status>, field: &str) {
    match r {
        Err(e) => {
            assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
            assert!(
                e.message().contains(field),
                "want {field} named: {}",
                e.message()
            );
        }
        Ok(id) => panic!("created {id}, want InvalidArgument naming {field}"),
    }
}

/// The capability sets the kernel gave the container's process, per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_from_inside() -> Result<()> {
    let Some(mut env) = setup("capabilities_from_inside", 1).await? else {
        return Ok(());
    };
    let host = std::fs::read_to_string("/proc/self/status")?;
    // corrald is our child: it holds what we hold; the container cannot get more.
    let held = hex_field(&host, "CapPrm")?;
    let pc = env.pod_config("caps", false);
    let pod = (env.run_pod(&pc).await?, pc);

    let with_caps = |add: &[&str], drop: &[&str]| proto::LinuxContainerSecurityContext {
        capabilities: caps(add, drop),
        ..kubelet_default()
    };
    // (name, security context, the effective set expected)
    let cases = [
        ("default", kubelet_default(), DEFAULT_CAPS),
        (
            "add",
            with_caps(&["NET_ADMIN", "CAP_SYS_TIME"], &[]),
            DEFAULT_CAPS | CAP_NET_ADMIN | CAP_SYS_TIME,
        ),
        (
            "add-any-case",
            with_caps(&["net_admin", "cap_sys_time"], &[]),
            DEFAULT_CAPS | CAP_NET_ADMIN | CAP_SYS_TIME,
        ),
        (
            "drop",
            with_caps(&[], &["CHOWN"]),
            DEFAULT_CAPS & !CAP_CHOWN,
        ),
        ("drop-all", with_caps(&[], &["ALL"]), 0),
        (
            "drop-all-add-one",
            with_caps(&["NET_ADMIN"], &["ALL"]),
            CAP_NET_ADMIN,
        ),
        ("add-all", with_caps(&["ALL"], &[]), held),
        (
            "add-all-drop-one",
            with_caps(&["ALL"], &["CHOWN"]),
            held & !CAP_CHOWN,
        ),
    ];
    for (name, sc, want) in cases {
        let status = env.proc_status(&pod, name, sc).await?;
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(
                hex_field(&status, set)?,
                want,
                "{name}: {set} {:#x} want {want:#x}",
                hex_field(&status, set)?
            );
        }
        assert_eq!(hex_field(&status, "CapInh")?, 0, "{name}: CapInh");
        assert_eq!(hex_field(&status, "CapAmb")?, 0, "{name}: CapAmb");
    }

    // A non-root user: the bounding set is the same, but execve of a file without file
    // capabilities leaves a non-root process none (the ambient set is empty, as containerd
    // keeps it): the same under runc.
    let status = env
        .proc_status(
            &pod,
            "nonroot",
            proto::LinuxContainerSecurityContext {
                run_as_user: Some(proto::Int64Value { value: 1000 }),
                ..with_caps(&["NET_ADMIN"], &[])
            },
        )
        .await?;
    assert_eq!(hex_field(&status, "CapBnd")?, DEFAULT_CAPS | CAP_NET_ADMIN);
    assert_eq!(hex_field(&status, "CapEff")?, 0);
    assert_eq!(hex_field(&status, "CapPrm")?, 0);

    // The kernel enforces it: chown needs CAP_CHOWN.
    let image = env.image.clone();
    let (code, out) = env
        .run_to_exit(
            &pod,
            "chown-dropped",
            &image,
            "touch /tmp/f && chown 1000 /tmp/f",
            with_caps(&[], &["CHOWN"]),
        )
        .await?;
    assert_ne!(code, 0, "chown without CAP_CHOWN worked: {out}");
    assert!(out.contains("Operation not permitted"), "{out}");

    // Bad requests, nothing created.
    let cfg = env.config("unknown", &image, "true", with_caps(&["CAP_MAGIC"], &[]));
    assert_invalid(
        env.create(&pod, cfg).await,
        "config.linux.security_context.capabilities.add_capabilities",
    );
    let cfg = env.config(
        "privileged-in-plain-pod",
        &image,
        "true",
        proto::LinuxContainerSecurityContext {
            privileged: true,
            ..kubelet_default()
        },
    );
    assert_invalid(
        env.create(&pod, cfg).await,
        "config.linux.security_context.privileged",
    );

    env.remove_pod(&pod.0).await?;
    env.assert_no_containers().await
}

/// Privileged against default: capabilities, masked and read-only paths, /sys and the
/// cgroupfs; and no_new_privs and a read-only root, each from inside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_masks_and_readonly() -> Result<()> {
    let Some(mut env) = setup("privileged_masks_and_readonly", 2).await? else {
        return Ok(());
    };
    let host = std::fs::read_to_string("/proc/self/status")?;
    let held = hex_field(&host, "CapPrm")?;
    let cgroup_v1 = !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let image = env.image.clone();
    // A privileged pod may run containers of both kinds.
    let pc = env.pod_config("priv", true);
    let pod = (env.run_pod(&pc).await?, pc);

    // What each probe prints, one line each.
    let probe = "\
        echo timer_list=$(wc -c < /proc/timer_list); \
        if echo x > /proc/sys/kernel/domainname; then echo procsys=rw; fi; \
        grep -q ' /proc/keys ' /proc/self/mountinfo && echo keys=masked; \
        cat /proc/self/mountinfo";
    let privileged = proto::LinuxContainerSecurityContext {
        privileged: true,
        ..kubelet_default()
    };
    // No security context at all (crictl without one): the runtime's default lists.
    for (name, sc) in [
        ("default", Some(kubelet_default())),
        ("no-context", None),
        ("privileged", Some(privileged.clone())),
    ] {
        let (code, out) = env.run_to_exit(&pod, name, &image, probe, sc).await?;
        assert_eq!(code, 0, "{name}: {out}");
        let timer_list = out
            .lines()
            .find_map(|l| l.strip_prefix("timer_list="))
            .context("no timer_list line")?;
        let mountinfo = out
            .lines()
            .filter(|l| l.split(' ').count() > 6)
            .collect::<Vec<_>>()
            .join("\n");
        let sys = mount_options(&mountinfo, "/sys").context("no /sys")?;
        if name == "privileged" {
            assert_ne!(timer_list, "0", "{name}: /proc/timer_list masked");
            assert!(
                out.contains("procsys=rw"),
                "{name}: /proc/sys read-only: {out}"
            );
            assert!(!out.contains("keys=masked"), "{name}: {out}");
            assert!(sys.starts_with("rw"), "{name}: /sys {sys}");
        } else {
            assert_eq!(timer_list, "0", "{name}: /proc/timer_list not masked");
            assert!(out.contains("Read-only file system"), "{name}: {out}");
            assert!(!out.contains("procsys=rw"), "{name}: {out}");
            assert!(out.contains("keys=masked"), "{name}: {out}");
            assert!(sys.starts_with("ro"), "{name}: /sys {sys}");
        }
    }

    // procMount Unmasked: kubelet sends empty lists, and nothing is masked (as containerd).
    let unmasked = proto::LinuxContainerSecurityContext {
        namespace_options: Some(container_pid()),
        ..Default::default()
    };
    let (code, out) = env
        .run_to_exit(&pod, "unmasked", &image, probe, unmasked)
        .await?;
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("timer_list=0\n"), "{out}");
    assert!(!out.contains("keys=masked"), "{out}");

    // Privileged: every capability we hold.
    let status = env
        .proc_status(&pod, "priv-caps", privileged.clone())
        .await?;
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(hex_field(&status, set)?, held, "privileged {set}");
    }
    assert_eq!(hex_field(&status, "CapInh")?, 0);

    // The cgroupfs: read-only unless privileged.
    let probe = if cgroup_v1 {
        "d=/sys/fs/cgroup/pids/corral-e2e-security-$$; mkdir $d && rmdir $d && echo cg=rw"
    } else {
        "cat /sys/fs/cgroup/cgroup.subtree_control > /sys/fs/cgroup/cgroup.subtree_control \
         && echo cg=rw"
    };
    let (_, out) = env
        .run_to_exit(&pod, "cg-default", &image, probe, kubelet_default())
        .await?;
    assert!(!out.contains("cg=rw"), "default wrote the cgroupfs: {out}");
    assert!(out.contains("Read-only file system"), "{out}");
    let (code, out) = env
        .run_to_exit(&pod, "cg-privileged", &image, probe, privileged.clone())
        .await?;
    assert_eq!((code, out.as_str()), (0, "cg=rw\n"));

    // no_new_privs, as asked, privileged or not.
    for (name, nnp, privileged) in [
        ("nnp", true, false),
        ("no-nnp", false, false),
        ("nnp-privileged", true, true),
    ] {
        let status = env
            .proc_status(
                &pod,
                name,
                proto::LinuxContainerSecurityContext {
                    no_new_privs: nnp,
                    privileged,
                    ..kubelet_default()
                },
            )
            .await?;
        let want = if nnp { "1" } else { "0" };
        assert_eq!(status_field(&status, "NoNewPrivs")?, want, "{name}");
    }

    // A read-only root: writes to / and /tmp fail with EROFS; a mount (/dev/shm) is
    // writable.
    let (code, out) = env
        .run_to_exit(
            &pod,
            "readonly-root",
            &image,
            "touch /tmp/test; touch /x; touch /dev/shm/ok && echo shm=ok",
            proto::LinuxContainerSecurityContext {
                readonly_rootfs: true,
                ..kubelet_default()
            },
        )
        .await?;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "touch: /tmp/test: Read-only file system\n\
         touch: /x: Read-only file system\n\
         shm=ok\n"
    );
    let (code, out) = env
        .run_to_exit(
            &pod,
            "writable-root",
            &image,
            "touch /tmp/test && echo ok",
            kubelet_default(),
        )
        .await?;
    assert_eq!((code, out.as_str()), (0, "ok\n"));

    env.remove_pod(&pod.0).await?;
    env.assert_no_containers().await
}

/// Who the process is: `uid gid | groups` as `id` sees them, per request and image User,
/// and what ContainerStatus.user reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_groups() -> Result<()> {
    let Some(mut env) = setup("users_and_groups", 3).await? else {
        return Ok(());
    };
    let pc = env.pod_config("users", false);
    let pod = (env.run_pod(&pc).await?, pc);
    let app = format!("{}:app", env.groups_repo);
    let named = format!("{}:named", env.groups_repo);
    let numeric = format!("{}:numeric", env.groups_repo);
    let plain = env.image.clone();
    let id_script = "echo $(id -u) $(id -g) \\| $(id -G)";

    let user = |uid: Option<i64>, gid: Option<i64>, name: &str, groups: &[i64]| {
        proto::LinuxContainerSecurityContext {
            run_as_user: uid.map(|value| proto::Int64Value { value }),
            run_as_group: gid.map(|value| proto::Int64Value { value }),
            run_as_username: name.into(),
            supplemental_groups: groups.to_vec(),
            ..kubelet_default()
        }
    };
    // (name, image, security context, `id` output, ContainerStatus.user)
    type Case<'a> = (
        &'a str,
        &'a str,
        proto::LinuxContainerSecurityContext,
        &'a str,
        (i64, i64, &'a [i64]),
    );
    let cases: Vec<Case> = vec![
        ("root", &plain, kubelet_default(), "0 0 | 0", (0, 0, &[0])),
        (
            "uid-only",
            &app,
            user(Some(1000), None, "", &[]),
            "1000 1000 | 1000 50000",
            (1000, 1000, &[1000, 50000]),
        ),
        (
            "uid-and-gid",
            &app,
            user(Some(1000), Some(3000), "", &[]),
            "1000 3000 | 3000 50000",
            (1000, 3000, &[3000, 50000]),
        ),
        (
            "uid-unknown-to-passwd",
            &app,
            user(Some(4242), None, "", &[]),
            "4242 0 | 0",
            (4242, 0, &[0]),
        ),
        (
            "username",
            &app,
            user(None, None, "web", &[]),
            "2000 2000 | 2000",
            (2000, 2000, &[2000]),
        ),
        (
            "username-and-gid",
            &app,
            user(None, Some(5), "app", &[]),
            "1000 5 | 5 50000",
            (1000, 5, &[5, 50000]),
        ),
        (
            "image-user-name",
            &app,
            kubelet_default(),
            "1000 1000 | 1000 50000",
            (1000, 1000, &[1000, 50000]),
        ),
        (
            "image-user-name-group",
            &named,
            kubelet_default(),
            "2000 50000 | 50000",
            (2000, 50000, &[50000]),
        ),
        (
            "image-user-uid-gid",
            &numeric,
            kubelet_default(),
            "2000 3000 | 3000",
            (2000, 3000, &[3000]),
        ),
        (
            "supplemental",
            &plain,
            user(Some(1000), None, "", &[5, 6]),
            // busybox `id -G` prints the gid first.
            "1000 1000 | 1000 5 6",
            (1000, 1000, &[5, 6, 1000]),
        ),
    ];
    for (name, image, sc, want, (uid, gid, groups)) in cases {
        let config = env.config(name, image, id_script, sc);
        let id = env.create(&pod, config).await?;
        env.start(&id).await?;
        let s = env.wait_exited(&id).await?;
        let out = env.output(&pod.1, name)?;
        assert_eq!((s.exit_code, out.trim_end()), (0, want), "{name}");
        let reported = s.user.and_then(|u| u.linux).context("no user")?;
        assert_eq!(
            (
                reported.uid,
                reported.gid,
                reported.supplemental_groups.as_slice()
            ),
            (uid, gid, groups),
            "{name}: ContainerStatus.user"
        );
    }

    // SupplementalGroupsPolicy, as critest checks it: the first process, an exec, and
    // ContainerStatus.user agree; Strict leaves out the image's /etc/group membership.
    for (policy, want, groups) in [
        (
            proto::SupplementalGroupsPolicy::Merge,
            "1000 1234 50000",
            &[1000, 1234, 50000][..],
        ),
        (
            proto::SupplementalGroupsPolicy::Strict,
            "1000 1234",
            &[1000, 1234][..],
        ),
    ] {
        let name = format!("policy-{}", policy.as_str_name().to_lowercase());
        let sc = proto::LinuxContainerSecurityContext {
            supplemental_groups_policy: policy as i32,
            ..user(Some(1000), None, "", &[1234])
        };
        let config = env.config(&name, &app, "id -G; exec sleep 600", sc);
        let id = env.create(&pod, config).await?;
        env.start(&id).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while env.output(&pod.1, &name).unwrap_or_default().is_empty() {
            ensure!(Instant::now() < deadline, "{name}: nothing logged");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(env.output(&pod.1, &name)?.trim_end(), want, "{name}: first");
        let r = env.exec(&id, &["id", "-G"]).await?;
        assert_eq!(
            String::from_utf8_lossy(&r.stdout).trim_end(),
            want,
            "{name}: exec"
        );
        let s = env.status(&id).await?;
        let reported = s.user.and_then(|u| u.linux).context("no user")?;
        assert_eq!(
            (
                reported.uid,
                reported.gid,
                reported.supplemental_groups.as_slice()
            ),
            (1000, 1000, groups),
            "{name}: ContainerStatus.user"
        );
    }

    // Bad requests name the field.
    let cfg = env.config("group-alone", &app, "true", user(None, Some(5), "", &[]));
    assert_invalid(
        env.create(&pod, cfg).await,
        "config.linux.security_context.run_as_group",
    );
    let cfg = env.config(
        "no-such-user",
        &app,
        "true",
        user(None, None, "mallory", &[]),
    );
    assert_invalid(
        env.create(&pod, cfg).await,
        "config.linux.security_context.run_as_username",
    );
    let cfg = env.config(
        "bad-policy",
        &app,
        "true",
        proto::LinuxContainerSecurityContext {
            supplemental_groups_policy: 9,
            ..kubelet_default()
        },
    );
    assert_invalid(
        env.create(&pod, cfg).await,
        "config.linux.security_context.supplemental_groups_policy",
    );

    env.remove_pod(&pod.0).await?;
    env.assert_no_containers().await
}

/// The runtime advertises SupplementalGroupsPolicy (critest skips its specs otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_advertises_supplemental_groups_policy() -> Result<()> {
    if !have_root("status_advertises_supplemental_groups_policy") {
        return Ok(());
    }
    let daemon =
        Daemon::start("[network]\nbridge = \"crtsx4\"\nsubnet = \"10.223.4.0/24\"\n").await?;
    let mut cri = daemon.client().await?;
    let status = cri
        .runtime
        .status(proto::StatusRequest { verbose: false })
        .await?
        .into_inner();
    let features = status.features.context("no features")?;
    assert!(features.supplemental_groups_policy);
    Ok(())
}
