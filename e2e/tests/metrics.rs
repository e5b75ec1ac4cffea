//! corrald's Prometheus endpoint end to end: a real daemon with `metrics_address` set,
//! scraped over plain TCP, the exposition parsed strictly, and the counters checked against
//! the exact calls the test made. Also: off by default, and a busy address stops start-up.
//!
//! The exposition is OpenMetrics text: a counter family `corral_grpc_requests` is declared by
//! `# TYPE corral_grpc_requests counter` and sampled as `corral_grpc_requests_total`, and the
//! text ends with `# EOF`. gRPC codes are labelled as grpc-go spells them (`OK`, `NotFound`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::client::Cri;
use e2e::daemon::Daemon;
use e2e::images::{Compression, Image, ImageConfig, Layer, MediaTypes};
use e2e::registry::{skip_reason, Registry, RegistryOptions};
use e2e::skip::have_root;
use tonic::Code;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A loopback port nobody listens on right now: bind port 0, note it, let it go.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn network(n: u8) -> String {
    format!("[network]\nbridge = \"crtm{n}\"\nsubnet = \"10.216.{n}.0/24\"\n")
}

/// A daemon serving metrics on a free loopback port, with bridge `crtm<n>`.
async fn daemon_with_metrics(n: u8, extra: &str) -> Result<(Daemon, SocketAddr)> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let d = Daemon::start(&format!(
        "metrics_address = \"{addr}\"\n{extra}\n{}",
        network(n)
    ))
    .await?;
    Ok((d, addr))
}

/// One HTTP/1.1 exchange: (status code, headers lower-cased, body).
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, HashMap<String, String>, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).context("response is not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .context(format!("status line {status_line:?}"))?
        .parse()?;
    let mut headers = HashMap::new();
    for l in lines {
        let (k, v) = l.split_once(':').context(format!("header {l:?}"))?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    if let Some(len) = headers.get("content-length") {
        ensure!(
            len.parse::<usize>()? == body.len(),
            "Content-Length {len} but {} bytes",
            body.len()
        );
    }
    Ok((code, headers, body.to_string()))
}

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Exposition {
    /// Family name → type.
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &Sample> {
        let name = name.to_string();
        self.samples.iter().filter(move |s| s.name == name)
    }
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{k="v",...}` with OpenMetrics escapes; returns the labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').context("expected {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').context("label without =")?;
        let key = &rest[..eq];
        ensure!(valid_name(key), "bad label name {key:?}");
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .context("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, '\\')) => value.push('\\'),
                    other => bail!("bad escape {other:?}"),
                },
                Some((_, c)) => value.push(c),
                None => bail!("unterminated label value"),
            }
        };
        ensure!(
            labels.insert(key.to_string(), value).is_none(),
            "label {key} twice"
        );
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn parse_value(v: &str) -> Result<f64> {
    Ok(match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => v.parse().with_context(|| format!("value {v:?}"))?,
    })
}

/// A strict reader of the text format: every family has `# HELP` and `# TYPE` before its
/// first sample, every sample is `name{labels} value` or `name value` and belongs to a
/// declared family by a suffix its type allows, and the text ends with `# EOF`.
fn parse(text: &str) -> Result<Exposition> {
    let mut exp = Exposition::default();
    let mut helped = HashSet::new();
    let mut eof = false;
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        ensure!(!eof, "{}: text after # EOF", at());
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (kind, name) = (parts.next(), parts.next());
            let rest = parts.next().unwrap_or("");
            let name = name.with_context(at)?;
            ensure!(valid_name(name), "{}: bad name", at());
            match kind {
                Some("HELP") => {
                    ensure!(helped.insert(name.to_string()), "{}: HELP twice", at());
                }
                Some("TYPE") => {
                    ensure!(helped.contains(name), "{}: TYPE before HELP", at());
                    ensure!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "summary",
                            "info",
                            "stateset",
                            "unknown"
                        ]
                        .contains(&rest),
                        "{}: unknown type",
                        at()
                    );
                    ensure!(
                        exp.types.insert(name.into(), rest.into()).is_none(),
                        "{}: TYPE twice",
                        at()
                    );
                }
                Some("UNIT") => {
                    ensure!(exp.types.contains_key(name), "{}: UNIT before TYPE", at());
                    ensure!(name.ends_with(&format!("_{rest}")), "{}: unit suffix", at());
                }
                _ => bail!("{}: unknown comment", at()),
            }
            continue;
        }
        ensure!(!line.starts_with('#'), "{}: malformed comment", at());
        let name_end = line.find(['{', ' ']).with_context(at)?;
        let name = &line[..name_end];
        ensure!(valid_name(name), "{}: bad metric name", at());
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).with_context(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let value = rest.strip_prefix(' ').with_context(at)?;
        ensure!(!value.contains(' '), "{}: timestamps not expected", at());
        let value = parse_value(value).with_context(at)?;
        // Which declared family the sample belongs to, and is that suffix allowed for it?
        let family = [
            "", "_total", "_created", "_bucket", "_sum", "_count", "_info",
        ]
        .iter()
        .find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            let t = exp.types.get(base)?;
            let ok = match t.as_str() {
                "counter" => ["_total", "_created"].contains(suffix),
                "gauge" | "unknown" => suffix.is_empty(),
                "histogram" => ["_bucket", "_sum", "_count", "_created"].contains(suffix),
                "summary" => ["", "_sum", "_count", "_created"].contains(suffix),
                "info" => *suffix == "_info",
                _ => suffix.is_empty(),
            };
            ok.then_some(base)
        });
        ensure!(
            family.is_some(),
            "{}: no # HELP/# TYPE declared before it",
            at()
        );
        exp.samples.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    ensure!(eof, "no # EOF at the end");
    Ok(exp)
}

async fn scrape(addr: SocketAddr) -> Result<Exposition> {
    let (code, headers, body) =
        tokio::task::spawn_blocking(move || http_get(addr, "/metrics")).await??;
    ensure!(code == 200, "GET /metrics: {code}\n{body}");
    ensure!(
        headers.get("content-type").map(String::as_str) == Some(OPENMETRICS),
        "content type {:?}",
        headers.get("content-type")
    );
    parse(&body).with_context(|| format!("parsing:\n{body}"))
}

/// Every `corral_grpc_requests_total` series as (method, code) → count.
fn grpc_counts(e: &Exposition) -> BTreeMap<(String, String), f64> {
    e.all("corral_grpc_requests_total")
        .map(|s| {
            (
                (
                    s.labels.get("method").cloned().unwrap_or_default(),
                    s.labels.get("code").cloned().unwrap_or_default(),
                ),
                s.value,
            )
        })
        .collect()
}

/// A histogram series is whole: buckets rise with `le` and end at `+Inf` == `_count`, and
/// `_sum` is there.
fn check_histogram(e: &Exposition, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut buckets: Vec<(f64, f64)> = e
        .all(&format!("{name}_bucket"))
        .filter(|s| {
            let mut l = s.labels.clone();
            l.remove("le");
            l == want
        })
        .map(|s| -> Result<(f64, f64)> {
            Ok((
                parse_value(s.labels.get("le").context("bucket without le")?)?,
                s.value,
            ))
        })
        .collect::<Result<_>>()?;
    ensure!(buckets.len() >= 2, "{name}{labels:?}: buckets {buckets:?}");
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    ensure!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "{name}{labels:?}: buckets not cumulative {buckets:?}"
    );
    let (last_le, inf) = *buckets.last().context("no buckets")?;
    ensure!(last_le == f64::INFINITY, "{name}{labels:?}: no +Inf bucket");
    let count = e
        .get(&format!("{name}_count"), labels)
        .context(format!("{name}_count{labels:?}"))?;
    let sum = e
        .get(&format!("{name}_sum"), labels)
        .context(format!("{name}_sum{labels:?}"))?;
    ensure!(
        inf == count,
        "{name}{labels:?}: +Inf {inf} != count {count}"
    );
    ensure!(sum >= 0.0, "{name}{labels:?}: sum {sum}");
    ensure!(
        count == 0.0 || sum <= count * 10.0,
        "{name}{labels:?}: sum {sum} for {count} quick calls"
    );
    Ok(count)
}

/// The streaming server's port, from the daemon's start-up line (it always listens: exec,
/// attach and port-forward need it).
fn streaming_port(daemon: &Daemon) -> Result<u16> {
    let log = daemon.log_tail(500);
    let line = log
        .lines()
        .find(|l| l.contains("serving exec, attach and port-forward"))
        .context("no streaming server line in the log")?;
    let addr = line
        .split("address=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .context("no address in the streaming server line")?;
    let port = addr.rsplit(':').next().unwrap_or("");
    port.parse()
        .with_context(|| format!("streaming address {addr:?}"))
}

/// TCP sockets in LISTEN that `pid` holds, but for the streaming server's.
fn listeners_but_streaming(daemon: &Daemon, pid: u32) -> Result<Vec<String>> {
    let streaming = format!(":{:04X}", streaming_port(daemon)?);
    Ok(tcp_listeners(pid)?
        .into_iter()
        .filter(|l| !l.ends_with(&streaming))
        .collect())
}

/// TCP sockets in LISTEN that `pid` holds (its fds matched against /proc/<pid>/net/tcp{,6}),
/// as local `hex_ip:hex_port` strings.
fn tcp_listeners(pid: u32) -> Result<Vec<String>> {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(fd?.path()) else {
            continue; // closed meanwhile
        };
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.to_string());
        }
    }
    let mut found = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue; // no IPv6
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                found.push(f[1].to_string());
            }
        }
    }
    Ok(found)
}

#[tokio::test]
async fn counts_exactly_the_calls_made() -> Result<()> {
    if !have_root("counts_exactly_the_calls_made") {
        return Ok(());
    }
    let (daemon, addr) = daemon_with_metrics(1, "").await?;
    let mut cri: Cri = daemon.client().await?;
    ensure!(
        daemon.log_tail(200).contains("serving Prometheus metrics"),
        "no start-up line:\n{}",
        daemon.log_tail(50)
    );
    let pid = daemon.pid().context("pid")?;
    let listeners = listeners_but_streaming(&daemon, pid)?;
    ensure!(
        listeners.len() == 1 && listeners[0].ends_with(&format!(":{:04X}", addr.port())),
        "listeners {listeners:?}, want only :{}",
        addr.port()
    );

    // The harness called Version to see the daemon up; count from here on.
    let before = scrape(addr).await?;
    let b = grpc_counts(&before);

    for _ in 0..3 {
        cri.runtime
            .version(proto::VersionRequest::default())
            .await?;
    }
    let pods = cri
        .runtime
        .list_pod_sandbox(proto::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items;
    ensure!(pods.is_empty(), "pods {pods:?}");
    // CRI answers ImageStatus of an unknown image with OK and no image, not NotFound.
    let img = cri.image_status("docker.io/library/absent:v1").await?;
    ensure!(img.is_none(), "{img:?}");
    let err = cri
        .runtime
        .pod_sandbox_status(proto::PodSandboxStatusRequest {
            pod_sandbox_id: "0123456789abcdef".into(),
            verbose: false,
        })
        .await
        .err()
        .context("status of a missing pod succeeded")?;
    ensure!(err.code() == Code::NotFound, "{err:?}");

    let after = scrape(addr).await?;
    let a = grpc_counts(&after);
    let mut delta: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (k, v) in &a {
        let d = v - b.get(k).copied().unwrap_or(0.0);
        if d != 0.0 {
            delta.insert(k.clone(), d);
        }
    }
    let want: BTreeMap<(String, String), f64> = [
        (("Version", "OK"), 3.0),
        (("ListPodSandbox", "OK"), 1.0),
        (("ImageStatus", "OK"), 1.0),
        (("PodSandboxStatus", "NotFound"), 1.0),
    ]
    .into_iter()
    .map(|((m, c), v)| ((m.to_string(), c.to_string()), v))
    .collect();
    ensure!(delta == want, "counted {delta:?}, made {want:?}");
    ensure!(
        after.get(
            "corral_grpc_requests_total",
            &[("method", "Version"), ("code", "OK")]
        ) == Some(
            b.get(&("Version".into(), "OK".into()))
                .copied()
                .unwrap_or(0.0)
                + 3.0
        ),
        "Version"
    );
    ensure!(
        after.get(
            "corral_grpc_requests_total",
            &[("method", "ListPodSandbox"), ("code", "OK")]
        ) == Some(1.0),
        "ListPodSandbox"
    );

    // The histogram agrees with the counters, method by method.
    ensure!(
        after
            .types
            .get("corral_grpc_request_duration_seconds")
            .map(String::as_str)
            == Some("histogram")
    );
    for method in [
        "Version",
        "ListPodSandbox",
        "ImageStatus",
        "PodSandboxStatus",
    ] {
        let count = check_histogram(
            &after,
            "corral_grpc_request_duration_seconds",
            &[("method", method)],
        )?;
        let counted: f64 = a
            .iter()
            .filter(|((m, _), _)| m == method)
            .map(|(_, v)| v)
            .sum();
        ensure!(
            count == counted,
            "{method}: histogram {count}, counter {counted}"
        );
    }

    // Scrape-time gauges.
    ensure!(after.types.get("corral_pods").map(String::as_str) == Some("gauge"));
    ensure!(after.get("corral_pods", &[("state", "ready")]) == Some(0.0));
    ensure!(after.get("corral_pods", &[("state", "notready")]) == Some(0.0));
    for state in ["created", "running", "exited", "unknown"] {
        ensure!(
            after.get("corral_containers", &[("state", state)]) == Some(0.0),
            "containers {state}"
        );
    }
    ensure!(after.get("corral_shims", &[]) == Some(0.0));
    let rss = after
        .get("corral_process_resident_memory_bytes", &[])
        .context("rss")?;
    ensure!(rss > 1e6 && rss < 1e10, "rss {rss}");
    let start = after
        .get("corral_process_start_time_seconds", &[])
        .context("start time")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    ensure!(
        start <= now && start > now - 600.0,
        "start {start}, now {now}"
    );
    ensure!(after.get("corral_image_pull_bytes_total", &[]) == Some(0.0));

    // Only /metrics.
    let (code, _, _) = tokio::task::spawn_blocking(move || http_get(addr, "/")).await??;
    ensure!(code == 404, "GET /: {code}");
    Ok(())
}

#[tokio::test]
async fn pulls_count_results_and_new_bytes() -> Result<()> {
    let test = "pulls_count_results_and_new_bytes";
    if !have_root(test) {
        return Ok(());
    }
    if let Some(why) = skip_reason(&RegistryOptions::default()) {
        eprintln!("skipping {test}: {why}");
        return Ok(());
    }
    let reg = Registry::start(RegistryOptions::default()).await?;
    let image = Image {
        layers: vec![Layer::builder()
            .file("hello", "corral metrics e2e\n".repeat(100), 0o644)
            .build(Compression::Gzip)],
        config: ImageConfig::default(),
        media_types: MediaTypes::Oci,
    };
    image.push(&reg, "metrics/one", &["v1"]).await?;
    let mirror = format!(
        "[registry.mirrors.\"docker.io\"]\nendpoints = [\"{}\"]\n",
        reg.url()
    );
    let (daemon, addr) = daemon_with_metrics(2, &mirror).await?;
    let mut cri = daemon.client().await?;

    cri.pull("docker.io/metrics/one:v1", None).await?;
    let size = cri
        .image_status("docker.io/metrics/one:v1")
        .await?
        .context("pulled image not there")?
        .size;
    ensure!(size > 0);
    let m = scrape(addr).await?;
    ensure!(m.get("corral_image_pulls_total", &[("result", "ok")]) == Some(1.0));
    ensure!(
        m.get("corral_image_pull_bytes_total", &[]) == Some(size as f64),
        "bytes {:?}, image size {size}",
        m.get("corral_image_pull_bytes_total", &[])
    );

    // Already stored: a pull, but no new bytes.
    cri.pull("docker.io/metrics/one:v1", None).await?;
    let missing = cri.pull("docker.io/metrics/absent:v1", None).await;
    ensure!(missing.is_err(), "pulled an image that is not there");
    let m = scrape(addr).await?;
    ensure!(m.get("corral_image_pulls_total", &[("result", "ok")]) == Some(2.0));
    ensure!(m.get("corral_image_pulls_total", &[("result", "error")]) == Some(1.0));
    ensure!(m.get("corral_image_pull_bytes_total", &[]) == Some(size as f64));
    ensure!(
        m.get(
            "corral_grpc_requests_total",
            &[("method", "PullImage"), ("code", "OK")]
        ) == Some(2.0)
    );
    drop(daemon);
    drop(reg);
    Ok(())
}

#[tokio::test]
async fn off_unless_configured() -> Result<()> {
    if !have_root("off_unless_configured") {
        return Ok(());
    }
    let daemon = Daemon::start(&network(4)).await?;
    let pid = daemon.pid().context("pid")?;
    let listeners = listeners_but_streaming(&daemon, pid)?;
    ensure!(listeners.is_empty(), "corrald listens on {listeners:?}");
    ensure!(
        !daemon.log_tail(500).contains("Prometheus"),
        "log mentions metrics:\n{}",
        daemon.log_tail(50)
    );
    Ok(())
}

#[tokio::test]
async fn a_busy_metrics_address_stops_startup() -> Result<()> {
    if !have_root("a_busy_metrics_address_stops_startup") {
        return Ok(());
    }
    let taken = TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?;
    let result = Daemon::start(&format!("metrics_address = \"{addr}\"\n{}", network(3))).await;
    let Err(err) = result else {
        bail!("corrald started on a metrics address already in use");
    };
    let msg = format!("{err:#}");
    ensure!(
        msg.contains("metrics_address") && msg.contains(&addr.to_string()),
        "error does not name the address: {msg}"
    );
    drop(taken);
    Ok(())
}
