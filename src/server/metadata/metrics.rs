//! Counters of the metadata service, rendered in the Prometheus text format on `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
struct CallStats {
    calls: u64,
    errors: u64,
    seconds: f64,
}

#[derive(Default)]
pub struct Metrics {
    calls: Mutex<BTreeMap<String, CallStats>>,
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
fn method_label(m: &str) -> &str {
    match m {
        "getManifest" | "get" | "put" | "del" | "getUUID" | "getDiskUsage"
        | "createReadStream" | "rawListKeys" | "readRecords" | "pruneRecords"
        | "createLogRecordOps" => m,
        _ => "other",
    }
}

impl Metrics {
    pub fn call_done(&self, method: &str, ok: bool, took: Duration) {
        let mut calls = self.calls.lock().expect("metrics");
        let c = calls.entry(method_label(method).to_string()).or_default();
        c.calls += 1;
        if !ok {
            c.errors += 1;
        }
        c.seconds += took.as_secs_f64();
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
        let _ = writeln!(out, "# TYPE {p}_calls_total counter");
        let calls = self.calls.lock().expect("metrics");
        for (m, c) in calls.iter() {
            let _ = writeln!(out, "{p}_calls_total{{method=\"{m}\"}} {}", c.calls);
        }
        let _ = writeln!(out, "# TYPE {p}_call_errors_total counter");
        for (m, c) in calls.iter() {
            let _ = writeln!(out, "{p}_call_errors_total{{method=\"{m}\"}} {}", c.errors);
        }
        let _ = writeln!(out, "# TYPE {p}_call_seconds_total counter");
        for (m, c) in calls.iter() {
            let _ = writeln!(out, "{p}_call_seconds_total{{method=\"{m}\"}} {}", c.seconds);
        }
        drop(calls);
        for (name, kind, v) in [
            ("sockets", "gauge", &self.sockets),
            ("sockets_total", "counter", &self.sockets_total),
            ("streams_open", "gauge", &self.streams_open),
            ("streams_total", "counter", &self.streams_total),
            ("stream_items_total", "counter", &self.stream_items),
            ("stream_ack_timeouts_total", "counter", &self.stream_timeouts),
        ] {
            let _ = writeln!(out, "# TYPE {p}_{name} {kind}\n{p}_{name} {}", v.load(Relaxed));
        }
        out
    }
}
