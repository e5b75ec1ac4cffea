//! The streaming server, timed as kubectl uses it: an exec round trip (the Exec call for
//! `true`, the SPDY upgrade, the streams, the exit status on the error stream) and the
//! throughput of a port-forward into the pod (bytes echoed back by a listener in the pod).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use e2e::streaming::{exit_code_of, SpdyClient};
use serde::Serialize;

use crate::calls::{self, Bench, PodRef};
use crate::stats::{summarize, Summary};

const V4: &str = "v4.channel.k8s.io";
/// The echo listener's port in the pod.
const ECHO_PORT: u16 = 9000;

#[derive(Debug, Serialize)]
pub struct StreamingReport {
    pub exec: Summary,
    /// Port-forward: `mib` sent and echoed back, per run; MiB/s each way (median).
    pub port_forward_mib: usize,
    pub port_forward_mib_s: f64,
}

/// One exec of `true` through the streaming server; the time from the Exec call to the
/// exit status.
async fn exec_once(b: &mut Bench, container: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let url = b
        .cri
        .rt
        .exec(proto::ExecRequest {
            container_id: container.into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .url;
    let (_, mut c) = SpdyClient::connect(&url, &[V4]).await?;
    let error = c.open(&[("streamType", "error")]).await?;
    c.finish(error).await?;
    let stdout = c.open(&[("streamType", "stdout")]).await?;
    c.finish(stdout).await?;
    let status = c.read_to_end(error).await?;
    let elapsed = started.elapsed();
    ensure!(
        exit_code_of(&status)? == 0,
        "exec of true: {}",
        String::from_utf8_lossy(&status)
    );
    Ok(elapsed)
}

/// `mib` MiB through a forwarded connection to the pod's echo listener and back.
async fn forward_once(b: &mut Bench, pod: &str, mib: usize) -> anyhow::Result<Duration> {
    let url = b
        .cri
        .rt
        .port_forward(proto::PortForwardRequest {
            pod_sandbox_id: pod.into(),
            port: vec![i32::from(ECHO_PORT)],
        })
        .await?
        .into_inner()
        .url;
    let (_, mut c) = SpdyClient::connect(&url, &["portforward.k8s.io"]).await?;
    let port = ECHO_PORT.to_string();
    let error = c
        .open(&[("streamType", "error"), ("port", &port), ("requestID", "0")])
        .await?;
    c.finish(error).await?;
    let data = c
        .open(&[("streamType", "data"), ("port", &port), ("requestID", "0")])
        .await?;
    let chunk = vec![0x5au8; 1 << 20];
    let started = Instant::now();
    for _ in 0..mib {
        c.send(data, &chunk).await?;
    }
    c.finish(data).await?;
    let echoed = c.read_to_end(data).await?;
    let elapsed = started.elapsed();
    ensure!(
        echoed.len() == mib << 20,
        "echoed {} of {} bytes",
        echoed.len(),
        mib << 20
    );
    Ok(elapsed)
}

pub async fn run(
    b: &mut Bench,
    image: &str,
    runs: usize,
    warmup: usize,
    mib: usize,
) -> anyhow::Result<StreamingReport> {
    calls::pull(&mut b.cri, image).await?;
    let pod_ref = PodRef { tag: "st", i: 0 };
    let (pod, pod_config) = b.run_pod(&pod_ref).await?;
    let sleeper_config = b.container_config(image);
    let sleeper = calls::create_container(&mut b.cri, &pod, &pod_config, &sleeper_config).await?;
    calls::start_container(&mut b.cri, &sleeper).await?;
    let mut echo = b.container_config(image);
    echo.metadata = Some(proto::ContainerMetadata {
        name: "echo".into(),
        attempt: 0,
    });
    echo.log_path = "echo_0.log".into();
    echo.command = [
        "/bin/busybox",
        "nc",
        "-ll",
        "-p",
        "9000",
        "-e",
        "/bin/busybox",
        "cat",
    ]
    .map(String::from)
    .to_vec();
    echo.args = Vec::new();
    let echo = calls::create_container(&mut b.cri, &pod, &pod_config, &echo).await?;
    calls::start_container(&mut b.cri, &echo).await?;

    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs + warmup {
        let d = exec_once(b, &sleeper).await.context("exec round trip")?;
        if i >= warmup {
            samples.push(d);
        }
    }
    let exec = summarize(&b.name, "Exec round trip (SPDY)", "true", samples);

    // The listener may take a moment to bind after the start.
    let mut forwards = Vec::new();
    for attempt in 0..4 {
        match forward_once(b, &pod, mib).await {
            Ok(d) => forwards.push(d),
            Err(e) if attempt == 0 => {
                eprintln!("port-forward warm-up: {e:#}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.context("port-forward")),
        }
    }
    forwards.sort();
    let median = forwards[forwards.len() / 2].as_secs_f64();
    calls::teardown_pod(&mut b.cri, &pod).await?;
    b.forget_pod(&pod_ref)?;
    Ok(StreamingReport {
        exec,
        port_forward_mib: mib,
        port_forward_mib_s: mib as f64 / median,
    })
}
