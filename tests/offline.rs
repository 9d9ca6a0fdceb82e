//! What needs no engine: an unreachable engine is a clear error with exit 4 (never a panic),
//! and the application probes against a tiny HTTP responder this test controls.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use zenkoctl::engine::probe::{probe_data, probe_metadata, ProbeState};

fn zenkoctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zenkoctl"))
        .args(args)
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run zenkoctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn an_unreachable_engine_is_a_clear_error() {
    let missing = tempfile::tempdir().unwrap();
    let socket = format!("unix://{}/docker.sock", missing.path().display());
    let tcp = format!("tcp://127.0.0.1:{}", closed_port());
    for host in [socket.as_str(), tcp.as_str()] {
        for cmd in [
            &["node", "ls"][..],
            &["status"],
            &["teardown"],
            &["deploy"],
            &["plan"],
        ] {
            let mut args = vec!["--host", host];
            args.extend_from_slice(cmd);
            let (code, out, err) = zenkoctl(&args);
            assert_eq!(code, 4, "{args:?}: exit {code}\n{out}\n{err}");
            assert!(
                err.contains("cannot reach the Docker engine at"),
                "{args:?}: {err}"
            );
            assert!(err.contains(host), "{args:?} names the host: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
        // JSON mode: one document with the error and the exit code.
        let (code, out, _) = zenkoctl(&["--host", host, "--output", "json", "status"]);
        assert_eq!(code, 4);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["exit"], "unreachable");
        assert_eq!(doc["exit_code"], 4);
    }
    // DOCKER_HOST is honoured like --host.
    let out = Command::new(env!("CARGO_BIN_EXE_zenkoctl"))
        .args(["node", "ls"])
        .env("DOCKER_HOST", &tcp)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&tcp));
}

/// Serves `count` connections: each gets `answer(path)` as a raw HTTP response.
fn responder(
    count: usize,
    answer: fn(&str) -> String,
) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut paths = Vec::new();
        for _ in 0..count {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = req
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            s.write_all(answer(&path).as_bytes()).unwrap();
            paths.push(path);
        }
        paths
    });
    (port, handle)
}

fn http(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn probes_against_a_responder() {
    // Data: 200 is ok.
    let (port, h) = responder(1, |_| http("200 OK", "{}"));
    let r = probe_data("127.0.0.1", port).await;
    assert_eq!(r.state, ProbeState::Ok, "{r:?}");
    assert_eq!(h.join().unwrap(), vec!["/_/health"]);

    // A server without the route: unknown, not failed.
    let (port, h) = responder(1, |_| http("404 Not Found", ""));
    let r = probe_data("127.0.0.1", port).await;
    assert_eq!(r.state, ProbeState::Unknown, "{r:?}");
    assert!(r.detail.contains("no /_/health route"), "{}", r.detail);
    h.join().unwrap();

    // A server error: failed.
    let (port, h) = responder(1, |_| http("503 Service Unavailable", "store not open"));
    let r = probe_data("127.0.0.1", port).await;
    assert_eq!(r.state, ProbeState::Failed, "{r:?}");
    assert!(r.detail.contains("store not open"), "{}", r.detail);
    h.join().unwrap();

    // Nothing listening: failed.
    let r = probe_data("127.0.0.1", closed_port()).await;
    assert_eq!(r.state, ProbeState::Failed, "{r:?}");

    // Not HTTP at all: failed, with what it said.
    let (port, h) = responder(1, |_| "SSH-2.0-nope\r\n".to_string());
    let r = probe_data("127.0.0.1", port).await;
    assert_eq!(r.state, ProbeState::Failed, "{r:?}");
    assert!(r.detail.contains("not an HTTP answer"), "{}", r.detail);
    h.join().unwrap();

    // Metadata: no health route, but a socket.io server (Engine.IO v4 handshake).
    let (port, h) = responder(2, |path| {
        if path.starts_with("/socket.io/?EIO=4") {
            http("200 OK", "0{\"sid\":\"abc\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}")
        } else {
            http("404 Not Found", "")
        }
    });
    let r = probe_metadata("127.0.0.1", port).await;
    assert_eq!(r.state, ProbeState::Ok, "{r:?}");
    assert_eq!(
        h.join().unwrap(),
        vec!["/_/health", "/socket.io/?EIO=4&transport=polling"]
    );

    // Metadata: neither route: unknown.
    let (port, h) = responder(2, |_| http("404 Not Found", ""));
    let r = probe_metadata("127.0.0.1", port).await;
    assert_eq!(r.state, ProbeState::Unknown, "{r:?}");
    h.join().unwrap();

    // Metadata: a health route.
    let (port, h) = responder(1, |_| http("200 OK", "ok"));
    let r = probe_metadata("127.0.0.1", port).await;
    assert_eq!(r.state, ProbeState::Ok, "{r:?}");
    h.join().unwrap();
}
