//! Latency modes: each CRI call timed on the client side, one at a time.
//!
//! - `pull`: cold pulls (RemoveImage, then a timed PullImage);
//! - `sandbox`: RunPodSandbox, then StopPodSandbox + RemovePodSandbox;
//! - `lifecycle`: the whole flow of a pod with one container, every call timed, then the
//!   list calls with N pods and N containers present.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::calls::{self, Bench, PodRef};
use crate::stats::{summarize, Recorder, Summary};

async fn timed<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<(T, Duration)> {
    let t = Instant::now();
    let v = f.await?;
    Ok((v, t.elapsed()))
}

pub async fn pull(
    b: &mut Bench,
    image: &str,
    runs: usize,
    warmup: usize,
) -> anyhow::Result<Summary> {
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs + warmup {
        calls::remove_image(&mut b.cri, image).await?;
        let ((), d) = timed(calls::pull(&mut b.cri, image)).await?;
        if i >= warmup {
            samples.push(d);
        }
    }
    calls::remove_image(&mut b.cri, image).await?;
    Ok(summarize(&b.name, "PullImage", image, samples))
}

pub async fn sandbox(b: &mut Bench, runs: usize, warmup: usize) -> anyhow::Result<Vec<Summary>> {
    let (mut run_t, mut stop_t) = (Vec::new(), Vec::new());
    for i in 0..runs + warmup {
        let pod = PodRef { tag: "sb", i };
        let config = b.pod_config(&pod);
        std::fs::create_dir_all(&config.log_directory)?;
        let (id, r) = timed(calls::run_pod(&mut b.cri, &config)).await?;
        let (_, s) = timed(async {
            calls::stop_pod(&mut b.cri, &id).await?;
            calls::remove_pod(&mut b.cri, &id).await
        })
        .await?;
        b.forget_pod(&pod)?;
        if i >= warmup {
            run_t.push(r);
            stop_t.push(s);
        }
    }
    Ok(vec![
        summarize(&b.name, "RunPodSandbox", "pod", run_t),
        summarize(&b.name, "Stop+RemovePodSandbox", "pod", stop_t),
    ])
}

pub struct LifecycleOptions {
    pub image: String,
    pub runs: usize,
    pub warmup: usize,
    /// StopContainer's timeout, in seconds (0: kill at once).
    pub stop_timeout: i64,
    /// Pods (each with one running container) present while the list calls are timed.
    pub list_objects: usize,
    pub list_calls: usize,
}

pub async fn lifecycle(b: &mut Bench, o: &LifecycleOptions) -> anyhow::Result<Vec<Summary>> {
    let mut rec = Recorder::default();
    for i in 0..o.runs + o.warmup {
        let mut scratch = Recorder::default();
        let r = if i >= o.warmup {
            &mut rec
        } else {
            &mut scratch
        };
        lifecycle_once(b, o, &PodRef { tag: "lc", i }, r).await?;
    }
    lists(b, o, &mut rec).await?;
    Ok(rec.summaries(&b.name))
}

/// One pod through its whole life; every call timed into `rec`.
async fn lifecycle_once(
    b: &mut Bench,
    o: &LifecycleOptions,
    pod: &PodRef,
    rec: &mut Recorder,
) -> anyhow::Result<()> {
    let image = o.image.as_str();
    calls::remove_image(&mut b.cri, image).await?;
    let ((), d) = timed(calls::pull(&mut b.cri, image)).await?;
    rec.add("PullImage (cold)", image, d);

    let config = b.pod_config(pod);
    std::fs::create_dir_all(&config.log_directory)?;
    let (pod_id, d) = timed(calls::run_pod(&mut b.cri, &config)).await?;
    rec.add("RunPodSandbox", "pod", d);

    let cc = b.container_config(image);
    let (ctr, d) = timed(calls::create_container(&mut b.cri, &pod_id, &config, &cc)).await?;
    rec.add("CreateContainer", "sleep 3600", d);
    let ((), d) = timed(calls::start_container(&mut b.cri, &ctr)).await?;
    rec.add("StartContainer", "sleep 3600", d);
    let (status, d) = timed(calls::container_status(&mut b.cri, &ctr)).await?;
    rec.add("ContainerStatus", "running", d);
    if status.state != proto::ContainerState::ContainerRunning as i32 {
        anyhow::bail!(
            "container {ctr} is in state {} after StartContainer",
            status.state
        );
    }
    let ((), d) = timed(calls::exec_sync(&mut b.cri, &ctr, &["true"])).await?;
    rec.add("ExecSync", "true", d);
    let ((), d) = timed(calls::stop_container(&mut b.cri, &ctr, o.stop_timeout)).await?;
    rec.add("StopContainer", &format!("timeout {}", o.stop_timeout), d);
    let ((), d) = timed(calls::remove_container(&mut b.cri, &ctr)).await?;
    rec.add("RemoveContainer", "exited", d);
    let ((), d) = timed(calls::stop_pod(&mut b.cri, &pod_id)).await?;
    rec.add("StopPodSandbox", "no containers", d);
    let ((), d) = timed(calls::remove_pod(&mut b.cri, &pod_id)).await?;
    rec.add("RemovePodSandbox", "stopped", d);
    b.forget_pod(pod)
}

/// ListPodSandbox, ListContainers and ListContainerStats with `list_objects` pods, each
/// with a running container.
async fn lists(b: &mut Bench, o: &LifecycleOptions, rec: &mut Recorder) -> anyhow::Result<()> {
    if o.list_objects == 0 || o.list_calls == 0 {
        return Ok(());
    }
    calls::pull(&mut b.cri, &o.image).await?;
    let cc = b.container_config(&o.image);
    let mut pods = Vec::new();
    for i in 0..o.list_objects {
        let pod = PodRef { tag: "ls", i };
        let (id, config) = b.run_pod(&pod).await?;
        pods.push((pod, id.clone()));
        let ctr = calls::create_container(&mut b.cri, &id, &config, &cc).await?;
        calls::start_container(&mut b.cri, &ctr).await?;
    }
    let subject_pods = format!("{} pods", o.list_objects);
    let subject_ctrs = format!("{} containers", o.list_objects);
    for _ in 0..o.list_calls {
        let (items, d) = timed(calls::list_pods(&mut b.cri)).await?;
        if items.len() < o.list_objects {
            anyhow::bail!(
                "ListPodSandbox: {} pods, expected {}",
                items.len(),
                o.list_objects
            );
        }
        rec.add("ListPodSandbox", &subject_pods, d);
        let (items, d) = timed(calls::list_containers(&mut b.cri)).await?;
        if items.len() < o.list_objects {
            anyhow::bail!(
                "ListContainers: {} containers, expected {}",
                items.len(),
                o.list_objects
            );
        }
        rec.add("ListContainers", &subject_ctrs, d);
        let (items, d) = timed(calls::list_container_stats(&mut b.cri)).await?;
        if items.len() < o.list_objects {
            anyhow::bail!(
                "ListContainerStats: {} containers, expected {}",
                items.len(),
                o.list_objects
            );
        }
        rec.add("ListContainerStats", &subject_ctrs, d);
    }
    for (pod, id) in pods {
        calls::teardown_pod(&mut b.cri, &id).await?;
        b.forget_pod(&pod)?;
    }
    Ok(())
}
