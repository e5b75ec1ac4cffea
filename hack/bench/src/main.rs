//! corral-bench: drives any CRI endpoint and times each call on the client side, so corrald
//! and containerd are measured by the same client, with the same requests, in the same run.
//!
//! Modes so far:
//! - `pull`: cold pulls (RemoveImage, then a timed PullImage);
//! - `sandbox`: RunPodSandbox, then StopPodSandbox + RemovePodSandbox, each timed;
//! - `memory`: K pods running, the RSS and PSS of every process that appeared on the host
//!   with them (whatever the runtime starts per pod: shims, pauses), per pod.
//!
//! Container modes come with the container issue.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hyper_util::rt::TokioIo;
use proto::client::{ImageServiceClient, RuntimeServiceClient};
use serde::Serialize;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Parser)]
#[command(
    name = "corral-bench",
    about = "Time CRI calls against any CRI endpoint"
)]
struct Cli {
    /// CRI endpoint, `unix:///path/to.sock`.
    #[arg(long)]
    endpoint: String,
    /// Label for this endpoint in the output (e.g. corrald, containerd).
    #[arg(long, default_value = "runtime")]
    name: String,
    /// Write results as JSON here as well as the table on stdout.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Cold pulls: each run removes the image, then times PullImage.
    Pull {
        /// Images to pull, each measured separately.
        #[arg(long = "image", required = true)]
        images: Vec<String>,
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
    },
    /// RunPodSandbox and Stop+Remove latency.
    Sandbox {
        #[arg(long, default_value_t = 100)]
        runs: usize,
        #[arg(long, default_value_t = 5)]
        warmup: usize,
    },
    /// Per-pod memory of the processes the runtime starts, with K pods running.
    Memory {
        #[arg(long, default_value_t = 50)]
        pods: usize,
        /// The daemon's pid, to report its own RSS before and after.
        #[arg(long)]
        daemon_pid: Option<i32>,
    },
}

fn pod_config(i: usize) -> proto::PodSandboxConfig {
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: format!("bench-{i}"),
            uid: format!("bench-uid-{i}-{}", std::process::id()),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: format!("bench-{i}"),
        log_directory: format!("/tmp/corral-bench-logs/{i}"),
        // What kubelet sends for an ordinary pod: its own net/ipc, a PID namespace per
        // container (shareProcessNamespace off).
        linux: Some(proto::LinuxPodSandboxConfig {
            security_context: Some(proto::LinuxSandboxSecurityContext {
                namespace_options: Some(proto::NamespaceOption {
                    network: proto::NamespaceMode::Pod as i32,
                    pid: proto::NamespaceMode::Container as i32,
                    ipc: proto::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn run_pod(rt: &mut RuntimeServiceClient<Channel>, i: usize) -> anyhow::Result<String> {
    Ok(rt
        .run_pod_sandbox(proto::RunPodSandboxRequest {
            config: Some(pod_config(i)),
            runtime_handler: String::new(),
        })
        .await
        .context("RunPodSandbox")?
        .into_inner()
        .pod_sandbox_id)
}

async fn stop_remove(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> anyhow::Result<()> {
    rt.stop_pod_sandbox(proto::StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .context("StopPodSandbox")?;
    rt.remove_pod_sandbox(proto::RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .context("RemovePodSandbox")?;
    Ok(())
}

async fn bench_sandbox(
    rt: &mut RuntimeServiceClient<Channel>,
    name: &str,
    runs: usize,
    warmup: usize,
) -> anyhow::Result<Vec<Summary>> {
    let (mut run_t, mut stop_t) = (Vec::new(), Vec::new());
    for i in 0..runs + warmup {
        let t = Instant::now();
        let id = run_pod(rt, i).await?;
        let r = t.elapsed();
        let t = Instant::now();
        stop_remove(rt, &id).await?;
        if i >= warmup {
            run_t.push(r);
            stop_t.push(t.elapsed());
        }
    }
    Ok(vec![
        summarize(name, "RunPodSandbox", "pod", run_t),
        summarize(name, "Stop+RemovePodSandbox", "pod", stop_t),
    ])
}

/// (RSS, PSS) in KiB of a process, from smaps_rollup.
fn rss_pss(pid: i32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("Rss:")?, field("Pss:")?))
}

/// User-space processes now running (kernel threads have an empty cmdline).
fn user_pids() -> std::collections::BTreeSet<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[derive(Debug, Serialize)]
struct MemoryReport {
    runtime: String,
    pods: usize,
    processes_per_pod: f64,
    rss_kib_per_pod: f64,
    pss_kib_per_pod: f64,
    by_command: std::collections::BTreeMap<String, (usize, u64, u64)>,
    daemon_rss_kib_before: Option<u64>,
    daemon_rss_kib_after: Option<u64>,
}

async fn bench_memory(
    rt: &mut RuntimeServiceClient<Channel>,
    name: &str,
    pods: usize,
    daemon_pid: Option<i32>,
) -> anyhow::Result<MemoryReport> {
    let daemon_before = daemon_pid.and_then(rss_pss).map(|(r, _)| r);
    let before = user_pids();
    let mut ids = Vec::new();
    for i in 0..pods {
        ids.push(run_pod(rt, 10_000 + i).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let me = std::process::id() as i32;
    let appeared: std::collections::BTreeSet<i32> = user_pids()
        .difference(&before)
        .copied()
        .filter(|p| *p != me && Some(*p) != daemon_pid)
        .collect();
    // Per-pod processes are the daemonised ones (parent: init or a subreaper that came with
    // them) and their children; a compiler that happened to start meanwhile has an old parent.
    let new: Vec<i32> = appeared
        .iter()
        .copied()
        .filter(|p| {
            let parent = ppid(*p);
            parent == Some(1) || parent.is_some_and(|pp| appeared.contains(&pp))
        })
        .collect();
    let mut by_command = std::collections::BTreeMap::new();
    let (mut rss, mut pss) = (0u64, 0u64);
    for pid in &new {
        if let Some((r, p)) = rss_pss(*pid) {
            rss += r;
            pss += p;
            let e = by_command.entry(comm(*pid)).or_insert((0usize, 0u64, 0u64));
            e.0 += 1;
            e.1 += r;
            e.2 += p;
        }
    }
    let daemon_after = daemon_pid.and_then(rss_pss).map(|(r, _)| r);
    for id in ids {
        stop_remove(rt, &id).await?;
    }
    Ok(MemoryReport {
        runtime: name.to_string(),
        pods,
        processes_per_pod: new.len() as f64 / pods as f64,
        rss_kib_per_pod: rss as f64 / pods as f64,
        pss_kib_per_pod: pss as f64 / pods as f64,
        by_command,
        daemon_rss_kib_before: daemon_before,
        daemon_rss_kib_after: daemon_after,
    })
}

#[derive(Debug, Serialize)]
struct Summary {
    runtime: String,
    call: String,
    subject: String,
    runs: usize,
    min_ms: f64,
    median_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn summarize(runtime: &str, call: &str, subject: &str, mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pick = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().map_or(0.0, ms)
    };
    Summary {
        runtime: runtime.to_string(),
        call: call.to_string(),
        subject: subject.to_string(),
        runs: samples.len(),
        min_ms: pick(0.0),
        median_ms: pick(0.5),
        p90_ms: pick(0.9),
        p99_ms: pick(0.99),
        max_ms: pick(1.0),
    }
}

async fn connect(endpoint: &str) -> anyhow::Result<Channel> {
    let path = PathBuf::from(
        endpoint
            .strip_prefix("unix://")
            .context("endpoint must be unix:///path")?,
    );
    Ok(Endpoint::try_from("http://[::1]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await?)
}

fn spec(image: &str) -> proto::ImageSpec {
    proto::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

async fn bench_pull(
    images: &mut ImageServiceClient<Channel>,
    name: &str,
    image: &str,
    runs: usize,
    warmup: usize,
) -> anyhow::Result<Summary> {
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs + warmup {
        images
            .remove_image(proto::RemoveImageRequest {
                image: Some(spec(image)),
            })
            .await
            .context("RemoveImage")?;
        let t = Instant::now();
        images
            .pull_image(proto::PullImageRequest {
                image: Some(spec(image)),
                auth: None,
                sandbox_config: None,
            })
            .await
            .with_context(|| format!("PullImage {image}"))?;
        if i >= warmup {
            samples.push(t.elapsed());
        }
    }
    images
        .remove_image(proto::RemoveImageRequest {
            image: Some(spec(image)),
        })
        .await?;
    Ok(summarize(name, "PullImage", image, samples))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let channel = connect(&cli.endpoint).await?;
    let mut results = Vec::new();
    match cli.mode {
        Mode::Pull {
            images,
            runs,
            warmup,
        } => {
            let mut client = ImageServiceClient::new(channel);
            for image in &images {
                results.push(bench_pull(&mut client, &cli.name, image, runs, warmup).await?);
            }
        }
        Mode::Sandbox { runs, warmup } => {
            let mut rt = RuntimeServiceClient::new(channel);
            results.extend(bench_sandbox(&mut rt, &cli.name, runs, warmup).await?);
        }
        Mode::Memory { pods, daemon_pid } => {
            let mut rt = RuntimeServiceClient::new(channel);
            let report = bench_memory(&mut rt, &cli.name, pods, daemon_pid).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let Some(path) = cli.json {
                std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            return Ok(());
        }
    }
    println!(
        "{:<12} {:<12} {:<48} {:>4} {:>9} {:>9} {:>9} {:>9}",
        "runtime", "call", "subject", "n", "min ms", "median", "p90", "max"
    );
    for r in &results {
        println!(
            "{:<12} {:<12} {:<48} {:>4} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            r.runtime, r.call, r.subject, r.runs, r.min_ms, r.median_ms, r.p90_ms, r.max_ms
        );
    }
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s: Vec<Duration> = (1..=10).rev().map(Duration::from_millis).collect();
        let r = summarize("x", "c", "s", s);
        assert_eq!(r.runs, 10);
        assert_eq!(r.min_ms, 1.0);
        assert_eq!(r.max_ms, 10.0);
        assert_eq!(r.median_ms, 6.0);
        assert_eq!(r.p90_ms, 9.0);
    }
}
