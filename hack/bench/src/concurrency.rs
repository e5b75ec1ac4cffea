//! `concurrency`: P pods, each with one container, started all at once from the client
//! (RunPodSandbox + CreateContainer + StartContainer per pod, every pod concurrently over
//! one connection, as kubelet's pod workers do); the wall time until all are running, then
//! the same for tearing them all down.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::calls::{self, Bench, PodRef};
use crate::stats::{summarize, Summary};

#[derive(Debug, Serialize)]
pub struct ConcurrencyResult {
    pub runtime: String,
    pub pods: usize,
    /// From the first request to the last StartContainer answer.
    pub start_wall_ms: f64,
    /// Each pod's RunPodSandbox + CreateContainer + StartContainer, end to end.
    pub per_pod: Summary,
    /// StopContainer + RemoveContainer + StopPodSandbox + RemovePodSandbox of every pod,
    /// concurrently: from the first request to the last answer.
    pub teardown_wall_ms: f64,
}

pub async fn run(
    b: &mut Bench,
    image: &str,
    pods: &[usize],
    stop_timeout: i64,
) -> anyhow::Result<Vec<ConcurrencyResult>> {
    calls::pull(&mut b.cri, image).await?;
    // One pod first, untimed: whatever a runtime does once (a sandbox image to pull) is
    // done before the clock starts.
    warm_up(b, image, stop_timeout).await?;
    let mut results = Vec::new();
    for (round, &p) in pods.iter().enumerate() {
        results.push(round_of(b, image, p, round, stop_timeout).await?);
    }
    Ok(results)
}

async fn warm_up(b: &mut Bench, image: &str, stop_timeout: i64) -> anyhow::Result<()> {
    let pod = PodRef { tag: "cw", i: 0 };
    let (pod_id, config) = b.run_pod(&pod).await?;
    let cc = b.container_config(image);
    let ctr = calls::create_container(&mut b.cri, &pod_id, &config, &cc).await?;
    calls::start_container(&mut b.cri, &ctr).await?;
    calls::stop_container(&mut b.cri, &ctr, stop_timeout).await?;
    calls::stop_pod(&mut b.cri, &pod_id).await?;
    calls::remove_pod(&mut b.cri, &pod_id).await?;
    b.forget_pod(&pod)
}

const TAGS: [&str; 8] = ["c0-", "c1-", "c2-", "c3-", "c4-", "c5-", "c6-", "c7-"];

async fn round_of(
    b: &mut Bench,
    image: &str,
    pods: usize,
    round: usize,
    stop_timeout: i64,
) -> anyhow::Result<ConcurrencyResult> {
    let tag = TAGS[round % TAGS.len()];
    let refs: Vec<PodRef> = (0..pods).map(|i| PodRef { tag, i }).collect();
    // Log directories first, as kubelet makes them before it calls the runtime.
    for pod in &refs {
        std::fs::create_dir_all(&b.pod_config(pod).log_directory)?;
    }
    let cc = b.container_config(image);
    let start = Instant::now();
    let mut set = JoinSet::new();
    for pod in &refs {
        let mut cri = b.cri.clone();
        let config = b.pod_config(pod);
        let cc = cc.clone();
        set.spawn(async move {
            let t = Instant::now();
            let pod_id = calls::run_pod(&mut cri, &config).await?;
            let ctr = calls::create_container(&mut cri, &pod_id, &config, &cc)
                .await
                .map_err(|e| e.context(format!("in pod {pod_id}")))?;
            calls::start_container(&mut cri, &ctr).await?;
            Ok::<_, anyhow::Error>((pod_id, ctr, t.elapsed(), Instant::now()))
        });
    }
    let mut started = Vec::new();
    let mut per_pod = Vec::new();
    let mut last = start;
    let mut errors = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok((pod_id, ctr, d, done))) => {
                started.push((pod_id, ctr));
                per_pod.push(d);
                last = last.max(done);
            }
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    let start_wall = last.duration_since(start);
    if !errors.is_empty() {
        anyhow::bail!(
            "{} of {pods} pods failed to start; first: {}",
            errors.len(),
            errors[0]
        );
    }
    let running = calls::list_containers(&mut b.cri)
        .await?
        .iter()
        .filter(|c| {
            c.state == proto::ContainerState::ContainerRunning as i32
                && started.iter().any(|(_, id)| *id == c.id)
        })
        .count();
    if running != pods {
        anyhow::bail!("{running} of {pods} containers running after StartContainer");
    }

    let teardown_wall = teardown(b, started, stop_timeout).await?;
    for pod in &refs {
        b.forget_pod(pod)?;
    }
    Ok(ConcurrencyResult {
        runtime: b.name.clone(),
        pods,
        start_wall_ms: ms(start_wall),
        per_pod: summarize(
            &b.name,
            "Run+Create+Start",
            &format!("{pods} at once"),
            per_pod,
        ),
        teardown_wall_ms: ms(teardown_wall),
    })
}

async fn teardown(
    b: &mut Bench,
    started: Vec<(String, String)>,
    stop_timeout: i64,
) -> anyhow::Result<Duration> {
    let n = started.len();
    let start = Instant::now();
    let mut set = JoinSet::new();
    for (pod_id, ctr) in started {
        let mut cri = b.cri.clone();
        set.spawn(async move {
            calls::stop_container(&mut cri, &ctr, stop_timeout).await?;
            calls::remove_container(&mut cri, &ctr).await?;
            calls::stop_pod(&mut cri, &pod_id).await?;
            calls::remove_pod(&mut cri, &pod_id).await?;
            Ok::<_, anyhow::Error>(Instant::now())
        });
    }
    let mut last = start;
    let mut errors = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(done)) => last = last.max(done),
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!(
            "{} of {n} pods failed to tear down; first: {}",
            errors.len(),
            errors[0]
        );
    }
    Ok(last.duration_since(start))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
