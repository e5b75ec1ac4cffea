//! corrald's own Prometheus metrics and the small HTTP server that exposes them
//! (`metrics_address`; off by default).
//!
//! Counters and histograms live in one process-wide registry that the RPC wrapper
//! ([`crate::instrument::unary`]) and PullImage update whether or not the endpoint is on: an
//! update is a few atomic operations. Gauges that describe the node (pods, containers, shims)
//! and the process are computed at scrape time instead, so they can never drift.
//!
//! The exposition is OpenMetrics text 1.0 (`prometheus-client`'s encoder), served as
//! `application/openmetrics-text; version=1.0.0`, which Prometheus scrapes natively. In that
//! format a counter's `# TYPE` line names the family without `_total`
//! (`# TYPE corral_grpc_requests counter`) while its sample is `corral_grpc_requests_total`, and
//! the text ends with `# EOF`.
//!
//! The gRPC `code` label spells codes as grpc-go and go-grpc-prometheus do: `OK`, then the
//! CamelCase names (`NotFound`, `InvalidArgument`, `DeadlineExceeded`, ...).

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use runtime::container::ContainerState;
use runtime::sandbox::SandboxState;
use cri_server::streaming::http;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::service::CriService;

/// The OpenMetrics text content type `prometheus_client::encoding::text` produces.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the RPC latency buckets, in seconds: from a cached list (~100 µs) to a
/// slow pull or a stop that waits out its grace period.
const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A scrape needs one short request line and a few headers; anything longer is not a scraper.
const MAX_REQUEST_HEAD: usize = 8 << 10;
/// How long a client may take to send its request head. A client that connects and says
/// nothing holds one connection slot for at most this long.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the backlog, so a flood of idle connections costs
/// a bounded number of tasks and buffers.
const MAX_CONNECTIONS: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The metrics updated as things happen.
pub struct Metrics {
    registry: Registry,
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_duration: HistogramFamily<MethodLabels>,
    pulls: Family<ResultLabels, Counter>,
    pull_bytes: Counter,
}

impl Metrics {
    fn new() -> Metrics {
        let grpc_requests = Family::<GrpcLabels, Counter>::default();
        let grpc_duration: HistogramFamily<MethodLabels> =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        let pulls = Family::<ResultLabels, Counter>::default();
        let pull_bytes = Counter::default();
        let mut registry = Registry::default();
        registry.register(
            "corral_grpc_requests",
            "CRI requests handled, by method and gRPC status code",
            grpc_requests.clone(),
        );
        registry.register_with_unit(
            "corral_grpc_request_duration",
            "Time to handle a CRI request, by method",
            Unit::Seconds,
            grpc_duration.clone(),
        );
        registry.register(
            "corral_image_pulls",
            "PullImage calls that reached the image store, by result (ok or error)",
            pulls.clone(),
        );
        registry.register_with_unit(
            "corral_image_pull",
            "Registry size (config plus compressed layers) of images pulled that were not already stored",
            Unit::Bytes,
            pull_bytes.clone(),
        );
        Metrics {
            registry,
            grpc_requests,
            grpc_duration,
            pulls,
            pull_bytes,
        }
    }

    fn record_grpc(&self, method: &'static str, code: Code, elapsed: Duration) {
        self.grpc_requests
            .get_or_create(&GrpcLabels {
                method,
                code: code_name(code),
            })
            .inc();
        self.grpc_duration
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }

    fn record_pull(&self, ok: bool, bytes: u64) {
        let result = if ok { "ok" } else { "error" };
        self.pulls.get_or_create(&ResultLabels { result }).inc();
        self.pull_bytes.inc_by(bytes);
    }
}

/// Process-wide: the RPC wrapper has no handle to pass around, and one daemon is one process.
static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Count one finished RPC.
pub fn record_grpc(method: &'static str, code: Code, elapsed: Duration) {
    METRICS.record_grpc(method, code, elapsed);
}

/// Count one pull; `bytes` is what it brought in (0 for a failure or an image already stored).
pub fn record_pull(ok: bool, bytes: u64) {
    METRICS.record_pull(ok, bytes);
}

/// The `code` label: grpc-go's `codes.Code.String()` spelling.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The node as a scrape sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeState {
    pub pods_ready: i64,
    pub pods_notready: i64,
    pub containers_created: i64,
    pub containers_running: i64,
    pub containers_exited: i64,
    pub containers_unknown: i64,
    /// Pods whose corral-shim is alive.
    pub shims: i64,
}

impl NodeState {
    /// Read the stores: blocking (database reads, /proc), so call it off the async workers.
    pub fn of(service: &CriService) -> runtime::Result<NodeState> {
        let mut s = NodeState::default();
        for pod in service.sandboxes().list()? {
            match pod.state {
                SandboxState::Ready => s.pods_ready += 1,
                SandboxState::NotReady => s.pods_notready += 1,
            }
            if runtime::shim_client::is_alive(&pod.dir) {
                s.shims += 1;
            }
        }
        for c in service.containers().list()? {
            match c.state {
                ContainerState::Created => s.containers_created += 1,
                ContainerState::Running => s.containers_running += 1,
                ContainerState::Exited => s.containers_exited += 1,
                ContainerState::Unknown => s.containers_unknown += 1,
            }
        }
        Ok(s)
    }
}

/// Where a scrape gets the node's state; an error leaves those gauges out of that scrape.
pub type StateSource = Arc<dyn Fn() -> anyhow::Result<NodeState> + Send + Sync>;

/// The process's resident set: `/proc/self/statm`'s second field, in pages.
fn resident_memory_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then(|| pages * page)
}

/// When this process started, in Unix seconds: its start in clock ticks after boot
/// (`/proc/self/stat` field 22) plus the boot time (`btime` in `/proc/stat`).
fn process_start_time_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may contain spaces; field 3 follows
    // the last ')'.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let ticks: f64 = after_comm.split_whitespace().nth(22 - 3)?.parse().ok()?;
    let btime: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| btime + ticks / hz as f64)
}

/// The start time never changes: read it once.
static START_TIME: LazyLock<Option<f64>> = LazyLock::new(process_start_time_seconds);

/// The whole exposition: the event metrics of `metrics`, then the scrape-time gauges.
fn render(metrics: &Metrics, node: Option<&NodeState>) -> Result<String, std::fmt::Error> {
    use prometheus_client::encoding::text::{encode_eof, encode_registry};

    let mut scrape = Registry::default();
    if let Some(node) = node {
        let pods = Family::<StateLabels, Gauge>::default();
        for (state, n) in [("ready", node.pods_ready), ("notready", node.pods_notready)] {
            pods.get_or_create(&StateLabels { state }).set(n);
        }
        scrape.register("corral_pods", "Pod sandboxes, by state", pods);
        let containers = Family::<StateLabels, Gauge>::default();
        for (state, n) in [
            ("created", node.containers_created),
            ("running", node.containers_running),
            ("exited", node.containers_exited),
            ("unknown", node.containers_unknown),
        ] {
            containers.get_or_create(&StateLabels { state }).set(n);
        }
        scrape.register("corral_containers", "Containers, by state", containers);
        let shims = Gauge::<i64>::default();
        shims.set(node.shims);
        scrape.register("corral_shims", "Live corral-shim processes", shims);
    }
    if let Some(rss) = resident_memory_bytes() {
        let g = Gauge::<i64>::default();
        g.set(rss);
        scrape.register_with_unit(
            "corral_process_resident_memory",
            "Resident memory of corrald",
            Unit::Bytes,
            g,
        );
    }
    if let Some(start) = *START_TIME {
        let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        g.set(start);
        scrape.register_with_unit(
            "corral_process_start_time",
            "Start time of corrald since the Unix epoch",
            Unit::Seconds,
            g,
        );
    }
    let mut out = String::with_capacity(8 << 10);
    encode_registry(&mut out, &metrics.registry)?;
    encode_registry(&mut out, &scrape)?;
    encode_eof(&mut out)?;
    Ok(out)
}

/// A running metrics endpoint; dropping it (or [`MetricsServer::shutdown`]) stops it and every
/// connection it is serving. Served by the same HTTP stack as the streaming server.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Bind `address` (`host:port`) and serve. A bind failure is the caller's startup error.
    pub async fn start(address: &str, source: StateSource) -> anyhow::Result<MetricsServer> {
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding metrics_address {address:?}"))?;
        let addr = listener
            .local_addr()
            .with_context(|| format!("metrics_address {address:?}"))?;
        let stop = CancellationToken::new();
        let limits = http::Limits {
            connections: MAX_CONNECTIONS,
            head_timeout: READ_TIMEOUT,
            max_head: MAX_REQUEST_HEAD,
        };
        let task = tokio::spawn(http::serve(
            listener,
            move |req| respond(req, source.clone()),
            stop.clone(),
            limits,
        ));
        Ok(MetricsServer { addr, stop, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, close every connection, and wait until the listener is closed.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One scrape per connection (`Connection: close`): a scraper reconnects anyway, and a
/// client holds a connection slot no longer than its request and our answer take.
async fn respond(req: Request<Incoming>, source: StateSource) -> Response<http::Body> {
    let head_only = req.method() == Method::HEAD;
    let mut response = if req.uri().path() != "/metrics" {
        http::text(StatusCode::NOT_FOUND, "not found: try /metrics\n")
    } else if req.method() != Method::GET && !head_only {
        let mut r = http::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        r
    } else {
        scrape(source).await
    };
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn scrape(source: StateSource) -> Response<http::Body> {
    // Database reads and /proc: off the async workers.
    let node = match tokio::task::spawn_blocking(move || source()).await {
        Ok(Ok(node)) => Some(node),
        Ok(Err(e)) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "metrics: reading pods and containers"
            );
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: state task failed");
            None
        }
    };
    match render(&METRICS, node.as_ref()) {
        Ok(body) => {
            let mut r = http::text(StatusCode::OK, body);
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "metrics: encoding failed");
            http::text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn node() -> NodeState {
        NodeState {
            pods_ready: 2,
            pods_notready: 1,
            containers_created: 0,
            containers_running: 3,
            containers_exited: 4,
            containers_unknown: 0,
            shims: 2,
        }
    }

    fn source() -> StateSource {
        Arc::new(|| Ok(node()))
    }

    #[test]
    fn code_labels_follow_grpc_go() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::NotFound), "NotFound");
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        assert_eq!(code_name(Code::DeadlineExceeded), "DeadlineExceeded");
    }

    #[test]
    fn encoding_has_every_family_with_help_and_type() {
        let m = Metrics::new();
        m.record_grpc("Version", Code::Ok, Duration::from_micros(50));
        m.record_grpc("Version", Code::Ok, Duration::from_millis(2));
        m.record_grpc("ImageStatus", Code::NotFound, Duration::from_secs(20));
        m.record_pull(true, 1234);
        m.record_pull(false, 0);
        let text = render(&m, Some(&node())).unwrap();
        for line in [
            "# TYPE corral_grpc_requests counter",
            r#"corral_grpc_requests_total{method="Version",code="OK"} 2"#,
            r#"corral_grpc_requests_total{method="ImageStatus",code="NotFound"} 1"#,
            "# TYPE corral_grpc_request_duration_seconds histogram",
            "# UNIT corral_grpc_request_duration_seconds seconds",
            r#"corral_grpc_request_duration_seconds_count{method="Version"} 2"#,
            r#"corral_grpc_request_duration_seconds_bucket{le="0.0001",method="Version"} 1"#,
            r#"corral_grpc_request_duration_seconds_bucket{le="0.0025",method="Version"} 2"#,
            r#"corral_grpc_request_duration_seconds_bucket{le="10.0",method="ImageStatus"} 0"#,
            r#"corral_grpc_request_duration_seconds_bucket{le="+Inf",method="ImageStatus"} 1"#,
            r#"corral_image_pulls_total{result="ok"} 1"#,
            r#"corral_image_pulls_total{result="error"} 1"#,
            "corral_image_pull_bytes_total 1234",
            r#"corral_pods{state="ready"} 2"#,
            r#"corral_pods{state="notready"} 1"#,
            r#"corral_containers{state="created"} 0"#,
            r#"corral_containers{state="exited"} 4"#,
            "# TYPE corral_shims gauge",
            "corral_shims 2",
            "# TYPE corral_process_resident_memory_bytes gauge",
            "# TYPE corral_process_start_time_seconds gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("corral_process_resident_memory_bytes "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(rss > 1e6, "{rss}");
        let start: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("corral_process_start_time_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start > now - 3600.0 && start <= now + 1.0,
            "{start} vs {now}"
        );
    }

    #[test]
    fn node_gauges_are_left_out_when_the_stores_fail() {
        let text = render(&Metrics::new(), None).unwrap();
        assert!(!text.contains("corral_pods"), "{text}");
        assert!(text.contains("corral_image_pull_bytes_total 0"), "{text}");
    }

    /// Send `request`, read to EOF, split status line and body.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> (String, String, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        // hyper writes header names in lower case.
        (status.to_string(), headers.to_lowercase(), body.to_string())
    }

    #[tokio::test]
    async fn serves_metrics_and_nothing_else() {
        let server = MetricsServer::start("127.0.0.1:0", source()).await.unwrap();
        let addr = server.local_addr();

        let (status, headers, body) =
            exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            headers.contains(&format!("content-type: {}", CONTENT_TYPE.to_lowercase())),
            "{headers}"
        );
        assert!(
            headers.contains(&format!("content-length: {}", body.len())),
            "{headers}"
        );
        assert!(body.contains("corral_pods{state=\"ready\"} 2"), "{body}");

        let (status, headers, body) = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(headers.contains("content-length: "), "{headers}");
        assert_eq!(body, "");

        let (status, _, _) = exchange(addr, b"GET / HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        let (status, _, _) = exchange(addr, b"GET /metricsx HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");
        let (status, headers, _) = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
        assert!(headers.contains("allow: get, head"), "{headers}");
        let (status, _, _) = exchange(addr, b"garbage\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request");

        // A head split across writes, terminator included, still parses.
        let mut s = TcpStream::connect(addr).await.unwrap();
        for part in [&b"GET /metrics HTTP/1.1\r"[..], b"\nHost: x\r\n\r", b"\n"] {
            s.write_all(part).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");

        server.shutdown().await;
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    }

    #[tokio::test]
    async fn oversized_heads_are_refused() {
        let server = MetricsServer::start("127.0.0.1:0", source()).await.unwrap();
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        request.resize(MAX_REQUEST_HEAD + 100, b'a');
        let (status, _, _) = exchange(server.local_addr(), &request).await;
        assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
    }

    #[tokio::test]
    async fn silent_clients_do_not_block_others() {
        let server = MetricsServer::start("127.0.0.1:0", source()).await.unwrap();
        let addr = server.local_addr();
        // Connections that never send a byte, and one that stops half-way through its head.
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut partial = TcpStream::connect(addr).await.unwrap();
        partial.write_all(b"GET /metr").await.unwrap();
        let started = std::time::Instant::now();
        let (status, _, _) = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(started.elapsed() < READ_TIMEOUT, "{:?}", started.elapsed());
        drop(idle);
    }

    #[tokio::test]
    async fn a_busy_port_is_a_named_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = MetricsServer::start(&addr, source()).await.err().unwrap();
        assert!(format!("{err:#}").contains(&addr), "{err:#}");
    }

    #[tokio::test]
    async fn a_failing_state_source_still_serves_the_rest() {
        let failing: StateSource = Arc::new(|| anyhow::bail!("database gone"));
        let server = MetricsServer::start("127.0.0.1:0", failing).await.unwrap();
        let (status, _, body) =
            exchange(server.local_addr(), b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(!body.contains("corral_pods"), "{body}");
        assert!(
            body.contains("corral_process_resident_memory_bytes"),
            "{body}"
        );
    }
}
