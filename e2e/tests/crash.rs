//! Crash consistency: corrald is killed (`kill -9`) at random instants while pods and
//! containers churn, and started again at once. Afterwards every pod is removable, and
//! nothing of the runs that were cut short is left: no cgroup below the callers' parents, no
//! pod or container dir, no mount.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::cgroups::{children, KubeletParent};
use e2e::client::{spec, Cri};
use e2e::harness::BusyboxEnv;

/// Crashes per run, and the cgroup parents (kubelet-style, made by the test) the pods share.
const CRASHES: usize = 16;
const PARENTS: usize = 3;

/// A small xorshift generator: random kill instants without another dependency; the seed
/// is printed so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn pod_config(n: usize, parent: &str) -> proto::PodSandboxConfig {
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: format!("churn{n}"),
            uid: format!("uid-churn{n}"),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: format!("churn{n}"),
        port_mappings: vec![proto::PortMapping {
            protocol: proto::Protocol::Tcp as i32,
            container_port: 80,
            host_port: 0,
            host_ip: String::new(),
        }],
        linux: Some(proto::LinuxPodSandboxConfig {
            cgroup_parent: parent.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One pod's whole life; any step may fail once corrald is killed under it.
async fn churn_one(cri: &mut Cri, image: &str, n: usize, parent: &str) -> Result<()> {
    let config = pod_config(n, parent);
    let pod = cri
        .runtime
        .run_pod_sandbox(proto::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let ctr = cri
        .runtime
        .create_container(proto::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(proto::ContainerConfig {
                metadata: Some(proto::ContainerMetadata {
                    name: "c".into(),
                    attempt: 0,
                }),
                image: Some(spec(image)),
                command: vec!["sleep".into(), "3600".into()],
                ..Default::default()
            }),
            sandbox_config: Some(config),
        })
        .await?
        .into_inner()
        .container_id;
    cri.runtime
        .start_container(proto::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await?;
    cri.runtime
        .stop_pod_sandbox(proto::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    cri.runtime
        .remove_pod_sandbox(proto::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await?;
    Ok(())
}

/// Stop and remove every pod the daemon lists; each must succeed.
async fn remove_everything(cri: &mut Cri) -> Result<usize> {
    let pods = cri
        .runtime
        .list_pod_sandbox(proto::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    for p in &pods {
        cri.runtime
            .stop_pod_sandbox(proto::StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
            .with_context(|| format!("stopping pod {}", p.id))?;
        cri.runtime
            .remove_pod_sandbox(proto::RemovePodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
            .with_context(|| format!("removing pod {}", p.id))?;
    }
    Ok(pods.len())
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn kill_9_at_any_instant_leaves_every_pod_removable_and_nothing_behind() -> Result<()> {
    let test = "kill_9_at_any_instant";
    let Some(BusyboxEnv {
        mut daemon,
        registry: _registry,
        image,
        ..
    }) = BusyboxEnv::start(test, "bridge = \"crtcr1\"\nsubnet = \"10.227.1.0/24\"").await?
    else {
        return Ok(());
    };

    let top = format!("/corral-e2e-crash-{}", std::process::id());
    let parents: Vec<String> = (0..PARENTS).map(|i| format!("{top}/pod{i}")).collect();
    let _guards = parents
        .iter()
        .map(|p| KubeletParent::make(p))
        .collect::<std::io::Result<Vec<_>>>()?;

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        | 1;
    eprintln!("{test}: seed {seed}");
    let mut rng = Rng(seed);
    let mut n = 0;
    let mut completed = 0;
    for crash in 0..CRASHES {
        // Two clients churning, so the kill lands inside different calls at once.
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let mut cri = daemon.client().await?;
            let (image, parents, start) = (image.clone(), parents.clone(), n);
            n += 1000;
            tasks.push(tokio::spawn(async move {
                let mut done = 0;
                for k in start.. {
                    if let Err(e) = churn_one(&mut cri, &image, k, &parents[k % PARENTS]).await {
                        eprintln!("churn {k} cut short: {e:#}");
                        break;
                    }
                    done += 1;
                }
                done
            }));
        }
        tokio::time::sleep(Duration::from_millis(5 + rng.below(400))).await;
        let restarted = Instant::now();
        daemon.crash_restart().await?;
        for t in tasks {
            completed += t.await.unwrap_or(0);
        }
        eprintln!("{test}: crash {crash}: back in {:?}", restarted.elapsed());
        // Every pod the crash left is removable now, whatever state it was caught in.
        remove_everything(&mut daemon.client().await?).await?;
    }
    eprintln!("{test}: {CRASHES} crashes, {completed} pod lifecycles completed");

    // Orphans of cut-short creates are released in the background at start-up.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let cgroups: Vec<String> = parents.iter().flat_map(|p| children(p)).collect();
        let pods = entries(&daemon.state.join("pods"));
        let bundles = entries(&daemon.state.join("containers"));
        let layers = entries(&daemon.root.join("containers"));
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
        let ours = daemon.dir().display().to_string();
        let leaked_mounts: Vec<&str> = mounts.lines().filter(|l| l.contains(&ours)).collect();
        let clean = cgroups.is_empty()
            && pods.is_empty()
            && bundles.is_empty()
            && layers.is_empty()
            && leaked_mounts.is_empty();
        if clean {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "left after {CRASHES} crashes (seed {seed}): cgroups {cgroups:?}, pod dirs {pods:?}, \
             bundles {bundles:?}, layers {layers:?}, mounts {leaked_mounts:?}\n{}",
            daemon.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
