//! `zenkoctl serve` runs the metadata and data services in one process by default, each with
//! the process-wide health and metrics endpoints; SIGTERM stops both cleanly.

mod metadata_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use metadata_support::{http, Polling};
use serde_json::{json, Value};

#[test]
fn serve_runs_both_services_by_default_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_zenkoctl"))
        .args(["--output", "json", "serve"])
        .args([
            "--metadata-addr",
            "127.0.0.1:0",
            "--data-addr",
            "127.0.0.1:0",
        ])
        .arg("--metadata-path")
        .arg(dir.path().join("md"))
        .arg("--data-path")
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn zenkoctl serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addrs = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let line = lines.next().expect("a readiness line").unwrap();
        let doc: Value = serde_json::from_str(&line).unwrap();
        let addr: SocketAddr = doc["addr"].as_str().unwrap().parse().unwrap();
        addrs.insert(doc["service"].as_str().unwrap().to_string(), addr);
    }
    let (md, data) = (addrs["metadata"], addrs["data"]);
    for addr in [md, data] {
        let (status, body) = http(addr, "GET", "/_/health", b"", Duration::from_secs(5)).unwrap();
        assert_eq!(status, 200, "{addr}: {body}");
    }
    let p = Polling::open(md);
    p.connect("/MDFile/metadata");
    let ack = p.call(
        "/MDFile/metadata",
        1,
        "put",
        json!(["k", "v", {}]),
        &["serve"],
    );
    assert_eq!(ack, json!([null, null]));
    // Metrics of both services on either port.
    let (_, body) = http(data, "GET", "/_/metrics", b"", Duration::from_secs(5)).unwrap();
    assert!(
        body.contains("service=\"metadata\",op=\"put\",code=\"200\"} 1"),
        "{body}"
    );
    drop(p);
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "serve exited with {status}");
}

#[test]
fn mongodb_backend_is_refused_until_built() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_zenkoctl"))
        .args([
            "serve",
            "--only",
            "metadata",
            "--metadata-addr",
            "127.0.0.1:0",
        ])
        .args([
            "--metadata-backend",
            "mongodb",
            "--mongodb-uri",
            "mongodb://127.0.0.1:1",
        ])
        .arg("--metadata-path")
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mongodb metadata backend is not built yet"),
        "{err}"
    );
}
