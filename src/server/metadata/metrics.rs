//! Metrics of the metadata service. Calls are timed through the shared
//! [`ServiceMetrics`](crate::server::observe::ServiceMetrics) (op = method, code = the Arsenal
//! error code or 200); sockets and streams have their own counters, rendered after the shared
//! ones on `GET /_/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use http::StatusCode;

use crate::server::observe::{RequestTimer, ServiceMetrics};

pub struct Metrics {
    calls: Arc<ServiceMetrics>,
    sockets: AtomicU64,
    sockets_total: AtomicU64,
    streams_open: AtomicU64,
    streams_total: AtomicU64,
    stream_items: AtomicU64,
    stream_timeouts: AtomicU64,
}

/// Decrements the open-stream gauge when the producer ends, however it ends.
pub struct OpenStream<'a>(&'a Metrics);

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.streams_open.fetch_sub(1, Relaxed);
    }
}

/// Method names are client-chosen: only known ones get their own series.
fn method_label(m: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "getManifest",
        "get",
        "put",
        "del",
        "getUUID",
        "getDiskUsage",
        "createReadStream",
        "rawListKeys",
        "readRecords",
        "pruneRecords",
        "createLogRecordOps",
    ];
    KNOWN.iter().find(|k| **k == m).copied().unwrap_or("other")
}

impl Metrics {
    pub fn new(calls: Arc<ServiceMetrics>) -> Self {
        Metrics {
            calls,
            sockets: AtomicU64::new(0),
            sockets_total: AtomicU64::new(0),
            streams_open: AtomicU64::new(0),
            streams_total: AtomicU64::new(0),
            stream_items: AtomicU64::new(0),
            stream_timeouts: AtomicU64::new(0),
        }
    }

    pub fn call_started(&self, method: &str) -> RequestTimer {
        self.calls.start(method_label(method))
    }

    /// `code`: 200, or the Arsenal error code the call was answered with.
    pub fn call_done(&self, timer: RequestTimer, code: u16) {
        timer.finish(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    }

    pub fn socket_connected(&self) {
        self.sockets.fetch_add(1, Relaxed);
        self.sockets_total.fetch_add(1, Relaxed);
    }

    pub fn socket_disconnected(&self) {
        self.sockets.fetch_sub(1, Relaxed);
    }

    pub fn stream_opened(&self) -> OpenStream<'_> {
        self.streams_open.fetch_add(1, Relaxed);
        self.streams_total.fetch_add(1, Relaxed);
        OpenStream(self)
    }

    pub fn stream_items(&self, n: usize) {
        self.stream_items.fetch_add(n as u64, Relaxed);
    }

    pub fn stream_timeout(&self) {
        self.stream_timeouts.fetch_add(1, Relaxed);
    }

    pub fn streams_open(&self) -> u64 {
        self.streams_open.load(Relaxed)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let p = "zenko_metadata";
        for (name, kind, v) in [
            ("sockets", "gauge", &self.sockets),
            ("sockets_total", "counter", &self.sockets_total),
            ("streams_open", "gauge", &self.streams_open),
            ("streams_total", "counter", &self.streams_total),
            ("stream_items_total", "counter", &self.stream_items),
            (
                "stream_ack_timeouts_total",
                "counter",
                &self.stream_timeouts,
            ),
        ] {
            let _ = writeln!(
                out,
                "# TYPE {p}_{name} {kind}\n{p}_{name} {}",
                v.load(Relaxed)
            );
        }
        out
    }
}
