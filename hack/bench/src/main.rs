//! corral-bench: drives any CRI endpoint and times each call on the client side, so corrald
//! and containerd are measured by the same client, with the same requests, in the same run.
//!
//! Implemented so far: `pull` (cold pulls: RemoveImage, then a timed PullImage). The other
//! modes of the benchmark issue (sandboxes, containers, concurrency, memory) come with the
//! capabilities they measure.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hyper_util::rt::TokioIo;
use proto::client::ImageServiceClient;
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
