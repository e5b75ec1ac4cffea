//! CRI-level fuzzing: thousands of random but well-formed requests (RunPodSandbox,
//! CreateContainer, Start, Stop, Remove, Status, ExecSync) with random names, labels,
//! annotations, mounts, environments, ports, DNS, sysctls, security contexts and resources,
//! against a real corrald, for a bounded time. Whatever it refuses, everything it accepted
//! must then stop and remove, and nothing of it may be left: no pod or container dir, no
//! mount, no cgroup. The seed is printed; `CORRAL_FUZZ_SEED` repeats a run,
//! `CORRAL_FUZZ_SECONDS` changes its length (default 60).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::cgroups::{children, KubeletParent};
use e2e::client::{spec, Cri};
use e2e::daemon::Daemon;
use e2e::images::{Image, ImageConfig};
use e2e::registry::{skip_reason, Registry, RegistryOptions};
use e2e::skip::have_root;
use tonic::Code;

/// Live pods and containers per pod the run keeps at most: enough to exercise shared
/// namespaces and teardown under load, few enough to stay fast on a small CI machine.
const MAX_PODS: usize = 6;
const MAX_CONTAINERS: usize = 4;
const MAX_REQUESTS: usize = 20_000;

/// xorshift64*: no dependency, and the seed repeats a run. `hostile` is drawn per request:
/// a hostile request gets bad values in some of its fields, a friendly one none, so that
/// half the requests have a chance of being accepted and making real pods and containers.
struct Rng(u64, bool);

impl Rng {
    /// True `percent` of the time, in hostile requests only.
    fn bad(&mut self, percent: usize) -> bool {
        self.1 && self.chance(percent)
    }
    /// One of `good`, or (in a hostile request, a quarter of the time) one of `bad`.
    fn either<'a, T: ?Sized>(&mut self, good: &[&'a T], bad: &[&'a T]) -> &'a T {
        if self.bad(25) {
            self.pick(bad)
        } else {
            self.pick(good)
        }
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// A name: mostly valid DNS labels, sometimes what Kubernetes would never send.
fn name(rng: &mut Rng, n: usize) -> String {
    if !rng.bad(20) {
        return format!("n{n}-{}", rng.below(1000));
    }
    match rng.below(3) {
        0 => String::new(),
        1 => "x".repeat(rng.range(60, 300) as usize),
        _ => rng
            .pick(&[
                "a/b",
                "..",
                "UPPER",
                "dots.in.name",
                "sp ace",
                "é",
                "-lead",
                "tab\t",
                "nul\0",
            ])
            .to_string(),
    }
}

fn map(rng: &mut Rng, big: bool) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for i in 0..rng.below(5) {
        let key = match rng.below(8) {
            _ if !rng.bad(25) => format!("example.com/key{i}"),
            0 => String::new(),
            1 => format!("example.com/{}", "k".repeat(rng.range(1, 80) as usize)),
            2 => "bad key!".into(),
            _ => format!("{}/x", "d".repeat(260)),
        };
        let value = if big && rng.bad(10) {
            "v".repeat(rng.range(1 << 10, 300 << 10) as usize)
        } else {
            name(rng, i)
        };
        m.insert(key, value);
    }
    m
}

fn resources(rng: &mut Rng) -> Option<proto::LinuxContainerResources> {
    if rng.chance(40) {
        return None;
    }
    Some(proto::LinuxContainerResources {
        cpu_period: *rng.either(&[&0, &100_000, &10_000], &[&-1, &1, &2_000_000]),
        cpu_quota: *rng.either(&[&0, &50_000, &-1], &[&1, &i64::MAX]),
        cpu_shares: *rng.either(&[&0, &2, &1024, &262_144], &[&-5, &i64::MAX]),
        memory_limit_in_bytes: *rng.either(&[&0, &(64 << 20), &(1 << 30)], &[&4096, &-1]),
        oom_score_adj: if rng.bad(20) {
            rng.range(-5000, 5000)
        } else {
            rng.range(-1000, 1000)
        },
        cpuset_cpus: rng.either(&["", "0"], &["0-999", "x"]).to_string(),
        cpuset_mems: rng.either(&["", "0"], &["7", "-"]).to_string(),
        ..Default::default()
    })
}

fn namespace_options(rng: &mut Rng) -> proto::NamespaceOption {
    proto::NamespaceOption {
        // Mostly a pod network (NODE would share the host's, which is fine too, sometimes).
        network: *rng.either(&[&0, &0, &0, &0, &0, &0, &2], &[&1, &3, &9]),
        pid: *rng.either(&[&0, &1, &2], &[&3, &-1]),
        ipc: *rng.either(&[&0, &2], &[&1, &5]),
        ..Default::default()
    }
}

struct Fuzz {
    rng: Rng,
    cri: Cri,
    image: String,
    tmp: tempfile::TempDir,
    parent: String,
    /// Accepted pods (id → the config they were run with) and their containers.
    pods: BTreeMap<String, proto::PodSandboxConfig>,
    containers: BTreeMap<String, String>,
    /// (method, code) → count, printed at the end.
    codes: BTreeMap<(&'static str, String), usize>,
    /// A few InvalidArgument and Internal messages, to read in the output.
    samples: Vec<String>,
    n: usize,
}

impl Fuzz {
    fn record<T>(&mut self, method: &'static str, r: &Result<T, tonic::Status>) {
        let code = match r {
            Ok(_) => "Ok".to_string(),
            Err(s) => format!("{:?}", s.code()),
        };
        if let Err(s) = r {
            if matches!(s.code(), Code::Internal | Code::Unknown) && self.samples.len() < 40 {
                self.samples
                    .push(format!("{method}: {:?}: {}", s.code(), s.message()));
            }
        }
        *self.codes.entry((method, code)).or_default() += 1;
    }

    fn pod_config(&mut self) -> proto::PodSandboxConfig {
        let n = self.n;
        let rng = &mut self.rng;
        let logs = self.tmp.path().join("logs").join(format!("pod{n}"));
        proto::PodSandboxConfig {
            metadata: if !rng.bad(5) {
                Some(proto::PodSandboxMetadata {
                    name: name(rng, n),
                    uid: format!("uid-{n}"),
                    namespace: name(rng, n),
                    attempt: rng.range(0, 3) as u32,
                })
            } else {
                None
            },
            hostname: name(rng, n),
            log_directory: match rng.below(3) {
                _ if !rng.bad(20) => logs.display().to_string(),
                0 => String::new(),
                1 => "relative/logs".into(),
                _ => format!("{}/../../escape", logs.display()),
            },
            dns_config: rng.chance(50).then(|| proto::DnsConfig {
                servers: (0..rng.below(4))
                    .map(|_| {
                        rng.either(&["10.96.0.10", "8.8.8.8", "::1"], &["nonsense"])
                            .to_string()
                    })
                    .collect(),
                searches: (0..*rng.either(&[&0usize, &2, &6], &[&40, &1000]))
                    .map(|i| format!("s{i}.svc.cluster.local"))
                    .collect(),
                options: (0..rng.below(3))
                    .map(|_| {
                        rng.either(&["ndots:5", "timeout:1"], &["bogus", "\n"])
                            .to_string()
                    })
                    .collect(),
            }),
            port_mappings: (0..rng.below(3))
                .map(|_| proto::PortMapping {
                    protocol: *rng.either(&[&0, &1, &2], &[&3, &-1]),
                    container_port: *rng.either(&[&80, &8080], &[&0, &-1, &70_000]),
                    host_port: if rng.chance(70) {
                        0
                    } else if rng.bad(30) {
                        70_000
                    } else {
                        rng.range(20_000, 60_000) as i32
                    },
                    host_ip: rng
                        .either(&["", "", "127.0.0.1"], &["bad", "::g"])
                        .to_string(),
                })
                .collect(),
            labels: map(rng, false),
            annotations: map(rng, true),
            linux: Some(proto::LinuxPodSandboxConfig {
                cgroup_parent: self.parent.clone(),
                sysctls: (0..rng.below(3))
                    .map(|_| {
                        let (k, v) = *rng.either(
                            &[
                                &("net.ipv4.ip_unprivileged_port_start", "0"),
                                &("net.core.somaxconn", "1024"),
                                &("kernel.shm_rmid_forced", "1"),
                                &("kernel.msgmax", "8192"),
                                &("net.ipv4.ping_group_range", "0 2147483647"),
                            ],
                            &[
                                &("net.ipv4.no_such_thing", "1"),
                                &("../../../proc/sys/x", "1"),
                                &("vm.swappiness", "1"),
                            ],
                        );
                        (k.to_string(), v.to_string())
                    })
                    .collect(),
                security_context: Some(proto::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespace_options(rng)),
                    ..Default::default()
                }),
                resources: resources(rng),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container_config(&mut self) -> proto::ContainerConfig {
        let n = self.n;
        let tmp = self.tmp.path().to_path_buf();
        let image = self.image.clone();
        let rng = &mut self.rng;
        let mounts = (0..rng.below(4))
            .map(|i| {
                let host = tmp.join(format!("mnt{}", rng.below(4)));
                let _ = std::fs::create_dir_all(&host);
                proto::Mount {
                    container_path: rng
                        .either(
                            &["/data", "/mnt/x"],
                            &["relative", "/proc/x", "/tmp/../etc", ""],
                        )
                        .to_string()
                        + &i.to_string(),
                    host_path: match rng.below(3) {
                        _ if !rng.bad(30) => host.display().to_string(),
                        0 => "/proc/self/root/tmp".into(),
                        1 => tmp.join("missing").display().to_string(),
                        _ => "relative/path".into(),
                    },
                    readonly: rng.chance(50),
                    propagation: *rng.either(&[&0, &1, &2], &[&3, &-4]),
                    ..Default::default()
                }
            })
            .collect();
        let envs = (0..rng.below(5))
            .map(|i| proto::KeyValue {
                key: match rng.below(2) {
                    _ if !rng.bad(20) => format!("VAR{i}"),
                    0 => String::new(),
                    _ => "A=B".into(),
                },
                value: if rng.bad(5) {
                    "e".repeat(rng.range(100 << 10, 1 << 20) as usize)
                } else {
                    name(rng, i)
                },
            })
            .collect();
        let command: &[&str] = match rng.below(5) {
            0 | 1 => &["sleep", "3600"],
            2 => &["true"],
            3 => &["sh", "-c", "echo hi; echo err >&2; exit 3"],
            _ => &["/nonexistent"],
        };
        proto::ContainerConfig {
            metadata: (!rng.bad(5)).then(|| proto::ContainerMetadata {
                name: name(rng, n),
                attempt: rng.range(0, 2) as u32,
            }),
            image: Some(spec(if !rng.bad(5) {
                &image
            } else {
                "localhost:1/not/pulled:x"
            })),
            command: command.iter().map(|s| s.to_string()).collect(),
            working_dir: rng
                .either(&["", "/", "/tmp"], &["relative", "/nonexistent"])
                .to_string(),
            envs,
            mounts,
            labels: map(rng, false),
            annotations: map(rng, true),
            log_path: rng
                .either(
                    &["", "c.log", "c.log", "dir/c.log"],
                    &["../escape.log", "/abs.log"],
                )
                .to_string(),
            linux: Some(proto::LinuxContainerConfig {
                resources: resources(rng),
                security_context: Some(proto::LinuxContainerSecurityContext {
                    capabilities: rng.chance(40).then(|| proto::Capability {
                        add_capabilities: (0..rng.below(3))
                            .map(|_| {
                                rng.either(&["NET_ADMIN", "CAP_SYS_TIME", "ALL"], &["BOGUS", ""])
                                    .to_string()
                            })
                            .collect(),
                        drop_capabilities: (0..rng.below(2))
                            .map(|_| rng.either(&["ALL", "CHOWN"], &["NOPE"]).to_string())
                            .collect(),
                        ..Default::default()
                    }),
                    privileged: rng.chance(5),
                    namespace_options: Some(namespace_options(rng)),
                    run_as_user: rng.chance(40).then(|| proto::Int64Value {
                        value: *rng.either(&[&0, &1000, &65534], &[&-1, &(1 << 40)]),
                    }),
                    run_as_group: rng.chance(20).then(|| proto::Int64Value {
                        value: *rng.either(&[&0, &1000], &[&-7]),
                    }),
                    run_as_username: rng
                        .either(&["", "", "", "root"], &["ghost", "nobody"])
                        .to_string(),
                    readonly_rootfs: rng.chance(30),
                    supplemental_groups: (0..rng.below(3))
                        .map(|_| {
                            if rng.bad(30) {
                                -1
                            } else {
                                rng.range(0, 70_000)
                            }
                        })
                        .collect(),
                    no_new_privs: rng.chance(50),
                    masked_paths: (0..rng.below(2))
                        .map(|_| {
                            rng.either(&["/proc/kcore"], &["relative", "/proc/../etc"])
                                .to_string()
                        })
                        .collect(),
                    readonly_paths: (0..rng.below(2))
                        .map(|_| rng.pick(&["/proc/sys", "/nonexistent"]).to_string())
                        .collect(),
                    seccomp: rng.chance(50).then(|| proto::SecurityProfile {
                        profile_type: *rng.either(&[&0, &1], &[&2, &7]),
                        localhost_ref: rng
                            .either(&[""], &["/nonexistent/profile.json"])
                            .to_string(),
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    fn any_pod(&mut self) -> String {
        if self.pods.is_empty() || self.rng.chance(2) {
            return format!("no-such-pod-{}", self.rng.below(100));
        }
        let i = self.rng.below(self.pods.len());
        self.pods.keys().nth(i).cloned().unwrap_or_default()
    }

    fn any_container(&mut self) -> String {
        if self.containers.is_empty() || self.rng.chance(2) {
            return format!("no-such-container-{}", self.rng.below(100));
        }
        let i = self.rng.below(self.containers.len());
        self.containers.keys().nth(i).cloned().unwrap_or_default()
    }

    /// One random request.
    async fn step(&mut self) {
        self.n += 1;
        self.rng.1 = self.rng.chance(50);
        match self.rng.below(100) {
            0..=11 => {
                if self.pods.len() >= MAX_PODS {
                    return self.remove_pod().await;
                }
                let config = self.pod_config();
                let r = self
                    .cri
                    .runtime
                    .run_pod_sandbox(proto::RunPodSandboxRequest {
                        config: Some(config.clone()),
                        runtime_handler: if self.rng.bad(3) {
                            "nope".into()
                        } else {
                            String::new()
                        },
                    })
                    .await;
                self.record("RunPodSandbox", &r);
                if let Ok(r) = r {
                    self.pods.insert(r.into_inner().pod_sandbox_id, config);
                }
            }
            12..=31 => {
                let pod = self.any_pod();
                if self.containers.values().filter(|p| **p == pod).count() >= MAX_CONTAINERS {
                    return;
                }
                let config = self.container_config();
                let sandbox_config = self.pods.get(&pod).cloned();
                let r = self
                    .cri
                    .runtime
                    .create_container(proto::CreateContainerRequest {
                        pod_sandbox_id: pod.clone(),
                        config: Some(config),
                        sandbox_config,
                    })
                    .await;
                self.record("CreateContainer", &r);
                if let Ok(r) = r {
                    self.containers.insert(r.into_inner().container_id, pod);
                }
            }
            32..=46 => {
                let id = self.any_container();
                let r = self
                    .cri
                    .runtime
                    .start_container(proto::StartContainerRequest { container_id: id })
                    .await;
                self.record("StartContainer", &r);
            }
            47..=54 => {
                let id = self.any_container();
                let r = self
                    .cri
                    .runtime
                    .stop_container(proto::StopContainerRequest {
                        container_id: id,
                        timeout: self.rng.range(-1, 1),
                    })
                    .await;
                self.record("StopContainer", &r);
            }
            55..=60 => {
                let id = self.any_container();
                let r = self
                    .cri
                    .runtime
                    .remove_container(proto::RemoveContainerRequest {
                        container_id: id.clone(),
                    })
                    .await;
                self.record("RemoveContainer", &r);
                if r.is_ok() {
                    self.containers.remove(&id);
                }
            }
            61..=72 => {
                let id = self.any_container();
                let r = self
                    .cri
                    .runtime
                    .container_status(proto::ContainerStatusRequest {
                        container_id: id,
                        verbose: self.rng.chance(50),
                    })
                    .await;
                self.record("ContainerStatus", &r);
            }
            73..=82 => {
                let id = self.any_pod();
                let r = self
                    .cri
                    .runtime
                    .pod_sandbox_status(proto::PodSandboxStatusRequest {
                        pod_sandbox_id: id,
                        verbose: self.rng.chance(50),
                    })
                    .await;
                self.record("PodSandboxStatus", &r);
            }
            83..=92 => {
                let id = self.any_container();
                let cmd: &[&str] = match self.rng.below(4) {
                    0 => &["true"],
                    1 => &["sh", "-c", "echo out; echo err >&2; exit 7"],
                    2 => &["/nonexistent"],
                    _ => &[],
                };
                let r = self
                    .cri
                    .runtime
                    .exec_sync(proto::ExecSyncRequest {
                        container_id: id,
                        cmd: cmd.iter().map(|s| s.to_string()).collect(),
                        timeout: self.rng.range(0, 2),
                    })
                    .await;
                self.record("ExecSync", &r);
            }
            93..=95 => {
                let id = self.any_pod();
                let r = self
                    .cri
                    .runtime
                    .stop_pod_sandbox(proto::StopPodSandboxRequest { pod_sandbox_id: id })
                    .await;
                self.record("StopPodSandbox", &r);
            }
            _ => self.remove_pod().await,
        }
    }

    async fn remove_pod(&mut self) {
        let id = self.any_pod();
        let r = self
            .cri
            .runtime
            .remove_pod_sandbox(proto::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await;
        self.record("RemovePodSandbox", &r);
        if r.is_ok() {
            self.pods.remove(&id);
            self.containers.retain(|_, pod| *pod != id);
        }
    }

    /// Stop and remove everything accepted: each call must succeed.
    async fn remove_everything(&mut self) -> Result<()> {
        for (id, pod) in std::mem::take(&mut self.containers) {
            self.cri
                .runtime
                .stop_container(proto::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 0,
                })
                .await
                .with_context(|| format!("stopping container {id} of pod {pod}"))?;
            self.cri
                .runtime
                .remove_container(proto::RemoveContainerRequest {
                    container_id: id.clone(),
                })
                .await
                .with_context(|| format!("removing container {id} of pod {pod}"))?;
        }
        for id in std::mem::take(&mut self.pods).into_keys() {
            self.cri
                .runtime
                .stop_pod_sandbox(proto::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await
                .with_context(|| format!("stopping pod {id}"))?;
            self.cri
                .runtime
                .remove_pod_sandbox(proto::RemovePodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await
                .with_context(|| format!("removing pod {id}"))?;
        }
        Ok(())
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_leave_everything_removable() -> Result<()> {
    let test = "random_requests_leave_everything_removable";
    if !have_root(test) {
        return Ok(());
    }
    if let Some(why) = skip_reason(&RegistryOptions::default()) {
        eprintln!("skipping {test}: {why}");
        return Ok(());
    }
    let seed = std::env::var("CORRAL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let seconds: u64 = std::env::var("CORRAL_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    eprintln!("{test}: seed {seed} (CORRAL_FUZZ_SEED={seed} repeats it), {seconds} s");

    let reg = Registry::start(RegistryOptions::default()).await?;
    Image::busybox(ImageConfig::default())?
        .push(&reg, "e2e/busybox", &["latest"])
        .await?;
    let n = 1;
    let daemon = Daemon::start(&format!(
        "[network]\nbridge = \"crtfz{n}\"\nsubnet = \"10.228.{n}.0/24\"\n"
    ))
    .await?;
    let parent = KubeletParent::make(&format!("/corral-e2e-fuzz-{}/pods", std::process::id()))?;
    let mut cri = daemon.client().await?;
    let image = format!("{}/e2e/busybox:latest", reg.host());
    cri.pull(&image, None).await?;
    let mut fuzz = Fuzz {
        rng: Rng(seed, false),
        cri,
        image,
        tmp: tempfile::Builder::new()
            .prefix("corral-e2e-fuzz-")
            .tempdir()?,
        parent: parent.0.clone(),
        pods: BTreeMap::new(),
        containers: BTreeMap::new(),
        codes: BTreeMap::new(),
        samples: Vec::new(),
        n: 0,
    };

    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) && fuzz.n < MAX_REQUESTS {
        // A request that hangs is a bug too: no CRI call here may take a minute.
        tokio::time::timeout(Duration::from_secs(60), fuzz.step())
            .await
            .with_context(|| format!("request {} hung (seed {seed})", fuzz.n))?;
    }
    let sent = fuzz.n;
    for ((method, code), count) in &fuzz.codes {
        eprintln!("{test}: {method:>18} {code:<18} {count}");
    }
    for s in &fuzz.samples {
        eprintln!("{test}: sample: {s}");
    }
    eprintln!(
        "{test}: {sent} requests in {:?}; {} pods and {} containers accepted and still there",
        started.elapsed(),
        fuzz.pods.len(),
        fuzz.containers.len()
    );
    let accepted = fuzz.codes.iter().filter(|((_, c), _)| c == "Ok").count();
    ensure!(
        accepted > 0 && sent >= 100,
        "the run tested almost nothing (seed {seed})"
    );

    let removal = fuzz.remove_everything().await;
    let removal =
        removal.map_err(|e| anyhow::anyhow!("{e:#} (seed {seed})\n{}", daemon.log_tail(40)));
    // The daemon survived all of it and lists nothing.
    let left = fuzz
        .cri
        .runtime
        .list_pod_sandbox(proto::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    let left_containers = fuzz
        .cri
        .runtime
        .list_containers(proto::ListContainersRequest::default())
        .await?
        .into_inner()
        .containers;
    removal?;
    ensure!(
        left.is_empty(),
        "pods listed after removal (seed {seed}): {left:?}"
    );
    ensure!(
        left_containers.is_empty(),
        "containers listed after removal (seed {seed}): {left_containers:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let cgroups = children(&parent.0);
        let pods = entries(&daemon.state.join("pods"));
        let bundles = entries(&daemon.state.join("containers"));
        let layers = entries(&daemon.root.join("containers"));
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        let ours = daemon.dir().display().to_string();
        let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(&ours)).collect();
        if cgroups.is_empty()
            && pods.is_empty()
            && bundles.is_empty()
            && layers.is_empty()
            && leaked.is_empty()
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "left (seed {seed}): cgroups {cgroups:?}, pod dirs {pods:?}, bundles {bundles:?}, \
             layers {layers:?}, mounts {leaked:?}\n{}",
            daemon.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(fuzz);
    drop(daemon);
    drop(parent);
    Ok(())
}
