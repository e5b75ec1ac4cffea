//! corral-bench: drives any CRI endpoint and times each call on the client side, so corrald
//! and containerd are measured by the same client, with the same requests, in the same run.
//!
//! Modes:
//! - `pull`: cold pulls (RemoveImage, then a timed PullImage);
//! - `sandbox`: RunPodSandbox, then StopPodSandbox + RemovePodSandbox, each timed;
//! - `lifecycle`: a pod with one container through its whole life, every call timed, then
//!   ListPodSandbox / ListContainers with N pods and containers present;
//! - `concurrency`: P pods with a container each, started all at once; the wall time;
//! - `memory`: K pods running, the RSS and PSS of every process the runtime started per pod;
//! - `cleanup`: removes every pod and cgroup any run of the bench left behind.
//!
//! Every pod is labelled `corral-bench=<run id>` and gets a cgroup parent under
//! `--cgroup-root`; whatever a mode made is removed when it ends, failed or not.

mod calls;
mod cgroups;
mod concurrency;
mod latency;
mod memory;
mod report;
mod stats;
mod streaming;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use calls::Bench;

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
    /// The cgroup under which every pod gets its own cgroup parent.
    #[arg(long, default_value = "/corral-bench")]
    cgroup_root: String,
    /// Where pods' log directories go (made and removed by the bench); a new directory
    /// under the temp dir when not given.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Give every pod its own user namespace (`hostUsers: false`), container root mapped
    /// to this host id (65536 ids), to compare with pods without one.
    #[arg(long)]
    userns_host_id: Option<u32>,
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
    /// Every call of a pod's life, timed: cold PullImage, RunPodSandbox, CreateContainer,
    /// StartContainer, ContainerStatus, ExecSync, StopContainer, RemoveContainer,
    /// StopPodSandbox, RemovePodSandbox; then the list calls with N pods present.
    Lifecycle {
        /// The container's image; it must have `sleep` and `true`.
        #[arg(long)]
        image: String,
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// Untimed iterations first.
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// StopContainer's timeout in seconds.
        #[arg(long, default_value_t = 0)]
        stop_timeout: i64,
        /// Pods, each with a running container, present while the list calls are timed
        /// (default: as many as --runs).
        #[arg(long)]
        list_objects: Option<usize>,
        /// Timed calls of each list.
        #[arg(long, default_value_t = 50)]
        list_calls: usize,
    },
    /// P pods with one container each, all started at once: the wall time until all run.
    Concurrency {
        #[arg(long)]
        image: String,
        /// Rounds, one per count, each with that many pods.
        #[arg(long, value_delimiter = ',', default_values_t = [10, 50])]
        pods: Vec<usize>,
        #[arg(long, default_value_t = 0)]
        stop_timeout: i64,
    },
    /// Per-pod memory of the processes the runtime starts, with K pods running.
    Memory {
        #[arg(long, default_value_t = 50)]
        pods: usize,
        /// One container of this image per pod; pods only when not given.
        #[arg(long)]
        image: Option<String>,
        /// The daemon's pid, to report its own RSS before and after.
        #[arg(long)]
        daemon_pid: Option<i32>,
    },
    /// Exec round trips through the streaming server (`true`, over SPDY: the Exec call, the
    /// upgrade, the exit status) and port-forward throughput into a pod.
    Streaming {
        /// The image; it must have `/bin/busybox` with `nc` and `true`.
        #[arg(long)]
        image: String,
        #[arg(long, default_value_t = 200)]
        runs: usize,
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        /// MiB echoed through the forwarded port per run (3 runs after a warm-up).
        #[arg(long, default_value_t = 64)]
        mib: usize,
    },
    /// Removes every pod labelled `corral-bench` (any run), then the cgroups under
    /// --cgroup-root.
    Cleanup,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cri = calls::connect(&cli.endpoint).await?;
    let json = cli.json.as_deref();
    if let Mode::Cleanup = cli.mode {
        let mut cri = cri;
        let n = calls::cleanup_all(&mut cri, &cli.cgroup_root).await?;
        println!("{}: removed {n} pods of corral-bench", cli.name);
        return Ok(());
    }

    let run_id = format!("r{}", std::process::id());
    let (log_dir, made_log_dir) = match &cli.log_dir {
        Some(d) => (d.clone(), calls::make_dir(d)?),
        None => {
            let d = std::env::temp_dir().join(format!("corral-bench-logs-{run_id}"));
            let made = calls::make_dir(&d)?;
            (d, made)
        }
    };
    let mut b = Bench {
        cri,
        name: cli.name.clone(),
        run_id,
        cgroup_root: cli.cgroup_root.clone(),
        log_dir: log_dir.clone(),
        userns_host_id: cli.userns_host_id,
    };

    let outcome = run_mode(&mut b, cli.mode, json).await;
    // Whatever the mode left, failed or not.
    let cleaned = b.cleanup_run().await;
    if made_log_dir {
        let _ = std::fs::remove_dir_all(&log_dir);
    }
    match (outcome, cleaned) {
        (Err(e), Ok(n)) if n > 0 => Err(e.context(format!("(cleanup removed {n} pods)"))),
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(e.context("cleanup")),
        (Ok(()), Ok(_)) => Ok(()),
    }
}

async fn run_mode(b: &mut Bench, mode: Mode, json: Option<&std::path::Path>) -> anyhow::Result<()> {
    match mode {
        Mode::Pull {
            images,
            runs,
            warmup,
        } => {
            let mut results = Vec::new();
            for image in &images {
                results.push(latency::pull(b, image, runs, warmup).await?);
            }
            report::latencies(&results);
            report::write_json(json, &results)
        }
        Mode::Sandbox { runs, warmup } => {
            let results = latency::sandbox(b, runs, warmup).await?;
            report::latencies(&results);
            report::write_json(json, &results)
        }
        Mode::Lifecycle {
            image,
            runs,
            warmup,
            stop_timeout,
            list_objects,
            list_calls,
        } => {
            let o = latency::LifecycleOptions {
                image,
                runs,
                warmup,
                stop_timeout,
                list_objects: list_objects.unwrap_or(runs),
                list_calls,
            };
            let results = latency::lifecycle(b, &o).await?;
            report::latencies(&results);
            report::write_json(json, &results)
        }
        Mode::Concurrency {
            image,
            pods,
            stop_timeout,
        } => {
            let results = concurrency::run(b, &image, &pods, stop_timeout).await?;
            report::concurrency(&results);
            report::write_json(json, &results)
        }
        Mode::Memory {
            pods,
            image,
            daemon_pid,
        } => {
            let m = memory::run(b, pods, image.as_deref(), daemon_pid)
                .await
                .context("memory")?;
            report::memory(&m);
            report::write_json(json, &m)
        }
        Mode::Streaming {
            image,
            runs,
            warmup,
            mib,
        } => {
            let r = streaming::run(b, &image, runs, warmup, mib)
                .await
                .context("streaming")?;
            report::latencies(std::slice::from_ref(&r.exec));
            println!(
                "{}: port-forward {} MiB echoed: {:.0} MiB/s each way",
                b.name, r.port_forward_mib, r.port_forward_mib_s
            );
            report::write_json(json, &r)
        }
        Mode::Cleanup => Ok(()),
    }
}
