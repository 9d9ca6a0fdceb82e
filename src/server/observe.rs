//! Observability shared by the bundled services: health checks, Prometheus metrics and
//! request-id logging helpers.
//!
//! Every service registers a [`ServiceMetrics`] in one [`Observability`] and a [`HealthCheck`];
//! each service's HTTP listener then answers [`HEALTH_PATH`] and [`METRICS_PATH`] through
//! [`Observability::answer`], so one probe on any port sees the whole process. [`probe`] is the
//! client side of the health endpoint, for a `serve --check` in images that have no curl.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

/// Readiness: 200 when every registered check passes, else 503 with the reasons.
pub const HEALTH_PATH: &str = "/_/health";
/// Prometheus text exposition.
pub const METRICS_PATH: &str = "/_/metrics";

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A readiness check of one service (for example "the data directory is writable").
pub trait HealthCheck: Send + Sync {
    /// Which service this is about, for the report.
    fn service(&self) -> &str;
    /// `Err(reason)` when the service cannot do its job right now.
    fn check(&self) -> Result<(), String>;
}

/// The process-wide registry of metrics and health checks.
#[derive(Default)]
pub struct Observability {
    services: Mutex<Vec<Arc<ServiceMetrics>>>,
    checks: Mutex<Vec<Arc<dyn HealthCheck>>>,
}

impl std::fmt::Debug for Observability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observability").finish_non_exhaustive()
    }
}

/// A response to a health or metrics request, to be wrapped in the service's own body type.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Observability {
    pub fn new() -> Arc<Self> {
        Arc::new(Observability::default())
    }

    /// Registers (or returns the already registered) metrics of a service.
    pub fn service(&self, name: &'static str) -> Arc<ServiceMetrics> {
        let mut services = self.services.lock().expect("metrics lock");
        if let Some(s) = services.iter().find(|s| s.name == name) {
            return s.clone();
        }
        let s = Arc::new(ServiceMetrics::new(name));
        services.push(s.clone());
        s
    }

    pub fn add_check(&self, check: Arc<dyn HealthCheck>) {
        self.checks.lock().expect("health lock").push(check);
    }

    /// Runs every check: `Ok` when all pass, else the failures as `service: reason`.
    pub fn health(&self) -> Result<(), Vec<String>> {
        let checks = self.checks.lock().expect("health lock").clone();
        let failures: Vec<String> = checks
            .iter()
            .filter_map(|c| c.check().err().map(|r| format!("{}: {r}", c.service())))
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures)
        }
    }

    /// Answers `GET /_/health` and `GET /_/metrics`; `None` for any other path, which the
    /// service then handles itself.
    pub fn answer(&self, path: &str) -> Option<Answer> {
        match path {
            HEALTH_PATH => Some(match self.health() {
                Ok(()) => Answer {
                    status: StatusCode::OK,
                    content_type: "application/json",
                    body: Bytes::from_static(b"{\"status\":\"ok\"}\n"),
                },
                Err(failures) => {
                    for f in &failures {
                        tracing::warn!(failure = %f, "health check failed");
                    }
                    let doc = serde_json::json!({"status": "unavailable", "failures": failures});
                    Answer {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        content_type: "application/json",
                        body: Bytes::from(format!("{doc}\n")),
                    }
                }
            }),
            METRICS_PATH => Some(Answer {
                status: StatusCode::OK,
                content_type: "text/plain; version=0.0.4",
                body: Bytes::from(self.render()),
            }),
            _ => None,
        }
    }

    /// The Prometheus text exposition of every service's metrics.
    pub fn render(&self) -> String {
        let services = self.services.lock().expect("metrics lock").clone();
        let mut out = String::new();
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(
                out,
                "# HELP zenkoctl_{name} {help}\n# TYPE zenkoctl_{name} {kind}"
            );
        };
        header(
            &mut out,
            "requests_total",
            "counter",
            "Requests answered, by service, operation and status code.",
        );
        for s in &services {
            for (op, series) in s.snapshot() {
                for (code, n) in &series.codes {
                    let _ = writeln!(
                        out,
                        "zenkoctl_requests_total{{service=\"{}\",op=\"{op}\",code=\"{code}\"}} {n}",
                        s.name
                    );
                }
            }
        }
        header(&mut out, "request_errors_total", "counter", "Failed requests: client (4xx), server (5xx), aborted (connection lost before the answer).");
        for s in &services {
            for (op, series) in s.snapshot() {
                for (kind, n) in [
                    ("client", series.client_errors),
                    ("server", series.server_errors),
                    ("aborted", series.aborted),
                ] {
                    let _ = writeln!(out, "zenkoctl_request_errors_total{{service=\"{}\",op=\"{op}\",kind=\"{kind}\"}} {n}", s.name);
                }
            }
        }
        header(
            &mut out,
            "bytes_total",
            "counter",
            "Payload bytes received (in) and sent (out).",
        );
        for s in &services {
            for (op, series) in s.snapshot() {
                for (dir, n) in [("in", series.bytes_in), ("out", series.bytes_out)] {
                    let _ = writeln!(out, "zenkoctl_bytes_total{{service=\"{}\",op=\"{op}\",direction=\"{dir}\"}} {n}", s.name);
                }
            }
        }
        header(
            &mut out,
            "request_duration_seconds",
            "histogram",
            "Time from request to response headers (for uploads: to the durable acknowledgement).",
        );
        for s in &services {
            for (op, series) in s.snapshot() {
                let labels = format!("service=\"{}\",op=\"{op}\"", s.name);
                let mut cumulative = 0;
                for (bound, n) in BUCKETS.iter().zip(series.buckets.iter()) {
                    cumulative += n;
                    let _ = writeln!(out, "zenkoctl_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
                }
                let _ = writeln!(
                    out,
                    "zenkoctl_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    series.count
                );
                let _ = writeln!(
                    out,
                    "zenkoctl_request_duration_seconds_sum{{{labels}}} {}",
                    series.seconds_sum
                );
                let _ = writeln!(
                    out,
                    "zenkoctl_request_duration_seconds_count{{{labels}}} {}",
                    series.count
                );
            }
        }
        header(
            &mut out,
            "requests_in_flight",
            "gauge",
            "Requests being handled.",
        );
        for s in &services {
            let _ = writeln!(
                out,
                "zenkoctl_requests_in_flight{{service=\"{}\"}} {}",
                s.name,
                s.in_flight.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// Counters of one operation of one service.
#[derive(Debug, Clone, Default)]
struct OpSeries {
    codes: BTreeMap<u16, u64>,
    client_errors: u64,
    server_errors: u64,
    aborted: u64,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    seconds_sum: f64,
    bytes_in: u64,
    bytes_out: u64,
}

#[derive(Debug, Default)]
struct OpCounters {
    series: OpSeries,
    /// Byte counters updated while bodies stream, outside the lock.
    bytes_in: Arc<AtomicU64>,
    bytes_out: Arc<AtomicU64>,
}

/// Metrics of one service.
#[derive(Debug)]
pub struct ServiceMetrics {
    name: &'static str,
    ops: Mutex<BTreeMap<&'static str, OpCounters>>,
    in_flight: AtomicI64,
}

impl ServiceMetrics {
    fn new(name: &'static str) -> Self {
        ServiceMetrics {
            name,
            ops: Mutex::new(BTreeMap::new()),
            in_flight: AtomicI64::new(0),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Starts timing a request. Call [`RequestTimer::finish`] with the status; a timer dropped
    /// without it (the connection went away, the task was cancelled) counts as aborted.
    pub fn start(self: &Arc<Self>, op: &'static str) -> RequestTimer {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        RequestTimer {
            metrics: self.clone(),
            op,
            started: Instant::now(),
            finished: false,
        }
    }

    /// A counter of payload bytes for `op`, to be bumped while a body streams.
    pub fn bytes_counter(&self, op: &'static str, direction: Direction) -> Arc<AtomicU64> {
        let mut ops = self.ops.lock().expect("metrics lock");
        let c = ops.entry(op).or_default();
        match direction {
            Direction::In => c.bytes_in.clone(),
            Direction::Out => c.bytes_out.clone(),
        }
    }

    fn record(&self, op: &'static str, status: Option<u16>, elapsed: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let mut ops = self.ops.lock().expect("metrics lock");
        let s = &mut ops.entry(op).or_default().series;
        match status {
            Some(code) => {
                *s.codes.entry(code).or_default() += 1;
                if (400..500).contains(&code) {
                    s.client_errors += 1;
                } else if code >= 500 {
                    s.server_errors += 1;
                }
                s.count += 1;
                s.seconds_sum += secs;
                if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
                    s.buckets[i] += 1;
                }
            }
            None => s.aborted += 1,
        }
    }

    fn snapshot(&self) -> Vec<(&'static str, OpSeries)> {
        let ops = self.ops.lock().expect("metrics lock");
        ops.iter()
            .map(|(op, c)| {
                let mut s = c.series.clone();
                s.bytes_in = c.bytes_in.load(Ordering::Relaxed);
                s.bytes_out = c.bytes_out.load(Ordering::Relaxed);
                (*op, s)
            })
            .collect()
    }
}

/// Direction of payload bytes.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    In,
    Out,
}

/// Times one request; see [`ServiceMetrics::start`].
#[derive(Debug)]
pub struct RequestTimer {
    metrics: Arc<ServiceMetrics>,
    op: &'static str,
    started: Instant,
    finished: bool,
}

impl RequestTimer {
    /// Records the request as answered with `status`.
    pub fn finish(mut self, status: StatusCode) {
        self.finished = true;
        self.metrics
            .record(self.op, Some(status.as_u16()), self.started.elapsed());
    }

    /// Renames the operation once routing knows it.
    pub fn set_op(&mut self, op: &'static str) {
        self.op = op;
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        if !self.finished {
            self.metrics.record(self.op, None, self.started.elapsed());
        }
    }
}

/// The request ids a client sent in `X-Scal-Request-Uids` (werelogs' serialized uids), made
/// safe to log: at most 256 characters, control characters dropped. Empty when absent.
pub fn request_uids(headers: &HeaderMap) -> String {
    headers
        .get("x-scal-request-uids")
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .filter(|c| !c.is_control())
                .take(256)
                .collect()
        })
        .unwrap_or_default()
}

/// Client side of [`HEALTH_PATH`]: `Ok` when the server at `addr` answers 200 within
/// `timeout`. Plain blocking std networking, so a `--check` needs no runtime.
pub fn probe(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("health probe: cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {HEALTH_PATH} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .with_context(|| format!("health probe: cannot send to {addr}"))?;
    let mut response = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut response)
        .with_context(|| format!("health probe: no answer from {addr}"))?;
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
        anyhow::bail!("health probe: {addr} is not ready ({status_line}): {body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Result<(), String>);
    impl HealthCheck for Fixed {
        fn service(&self) -> &str {
            "test"
        }
        fn check(&self) -> Result<(), String> {
            self.0.clone()
        }
    }

    #[test]
    fn metrics_render_counts_and_histogram() {
        let obs = Observability::new();
        let m = obs.service("data");
        m.start("get").finish(StatusCode::OK);
        m.start("get").finish(StatusCode::NOT_FOUND);
        m.start("put").finish(StatusCode::INTERNAL_SERVER_ERROR);
        drop(m.start("put"));
        m.bytes_counter("get", Direction::Out)
            .fetch_add(42, Ordering::Relaxed);
        let text = obs.render();
        assert!(
            text.contains("zenkoctl_requests_total{service=\"data\",op=\"get\",code=\"200\"} 1")
        );
        assert!(
            text.contains("zenkoctl_requests_total{service=\"data\",op=\"get\",code=\"404\"} 1")
        );
        assert!(text.contains(
            "zenkoctl_request_errors_total{service=\"data\",op=\"get\",kind=\"client\"} 1"
        ));
        assert!(text.contains(
            "zenkoctl_request_errors_total{service=\"data\",op=\"put\",kind=\"server\"} 1"
        ));
        assert!(text.contains(
            "zenkoctl_request_errors_total{service=\"data\",op=\"put\",kind=\"aborted\"} 1"
        ));
        assert!(
            text.contains("zenkoctl_bytes_total{service=\"data\",op=\"get\",direction=\"out\"} 42")
        );
        assert!(text.contains(
            "zenkoctl_request_duration_seconds_bucket{service=\"data\",op=\"get\",le=\"+Inf\"} 2"
        ));
        assert!(
            text.contains("zenkoctl_request_duration_seconds_count{service=\"data\",op=\"put\"} 1")
        );
        assert!(text.contains("zenkoctl_requests_in_flight{service=\"data\"} 0"));
        // Same name, same series.
        assert!(Arc::ptr_eq(&obs.service("data"), &m));
    }

    #[test]
    fn health_reports_failures() {
        let obs = Observability::new();
        assert_eq!(obs.answer(HEALTH_PATH).unwrap().status, StatusCode::OK);
        obs.add_check(Arc::new(Fixed(Ok(()))));
        assert_eq!(obs.answer(HEALTH_PATH).unwrap().status, StatusCode::OK);
        obs.add_check(Arc::new(Fixed(Err("disk gone".into()))));
        let a = obs.answer(HEALTH_PATH).unwrap();
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(String::from_utf8_lossy(&a.body).contains("test: disk gone"));
        assert!(obs.answer("/DataFile").is_none());
    }

    #[test]
    fn request_uids_are_sanitized() {
        let mut h = HeaderMap::new();
        assert_eq!(request_uids(&h), "");
        h.insert("x-scal-request-uids", "abc:def".parse().unwrap());
        assert_eq!(request_uids(&h), "abc:def");
        h.insert("x-scal-request-uids", "x".repeat(1000).parse().unwrap());
        assert_eq!(request_uids(&h).len(), 256);
    }
}
