//! Shared by the tests/metadata_*.rs files: start the real `zenkoctl serve --only metadata`
//! binary and Arsenal's reference MetadataFileServer, and talk raw Engine.IO 4 / socket.io 5
//! long-polling (so malformed and non-acking clients can be played). The Node check scripts run
//! through tests/common/arsenal.rs.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../common/process.rs"]
mod process;
pub use process::*;

/// A running metadata server (ours or the reference); killed by pid when dropped.
pub type Server = ChildServer;

impl ChildServer {
    /// `zenkoctl serve --only metadata` on a free loopback port, metadata under `path`.
    pub fn ours(path: &Path) -> Server {
        Server::ours_with(path, &[])
    }

    /// [`Server::ours`] with extra `serve` arguments (e.g. the mongodb backend's).
    pub fn ours_with(path: &Path, extra: &[&str]) -> Server {
        Server::ours_with_env(path, extra, &[])
    }

    /// [`Server::ours_with`] with extra environment variables (e.g. a crash point).
    pub fn ours_with_env(path: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zenkoctl"));
        cmd.args(["--output", "json", "serve", "--only", "metadata"])
            .args(["--metadata-addr", "127.0.0.1:0", "--metadata-path"])
            .arg(path)
            .args(extra)
            .envs(env.iter().copied());
        ChildServer::spawn(cmd, path, "zenkoctl", |line| {
            let doc: Value = serde_json::from_str(line).expect("readiness line is JSON");
            assert_eq!(doc["service"], "metadata", "{line}");
            doc["addr"].as_str().unwrap().parse().unwrap()
        })
    }

    /// Arsenal's own MetadataFileServer (tests/arsenal/ref-mdserver.js) over LevelDB.
    pub fn reference(path: &Path) -> Server {
        let mut cmd = Command::new("node");
        cmd.arg(arsenal_dir().join("ref-mdserver.js"))
            .arg("--path")
            .arg(path)
            .args(["--port", "0"]);
        ChildServer::spawn(cmd, path, "reference", |line| {
            let port: u16 = line
                .strip_prefix("READY ")
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("ref-mdserver.js said {line:?}"));
            SocketAddr::from(([127, 0, 0, 1], port))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// A raw Engine.IO 4 long-polling client, one HTTP/1.1 request per connection.

/// An Engine.IO session over long-polling. A background thread keeps one GET pending at all
/// times (as a real client does: aborting a poll would make the next one overlap it, which
/// servers answer with 400), answers pings, and queues the packets it receives.
pub struct Polling {
    pub addr: SocketAddr,
    pub sid: String,
    pub handshake: Value,
    rx: std::sync::Mutex<std::sync::mpsc::Receiver<String>>,
    pending: std::sync::Mutex<std::collections::VecDeque<String>>,
    pub closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// One HTTP exchange; returns (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut rest = &raw[split..];
    let body = if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let n =
                usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap_or("0").trim(), 16)
                    .unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest = &rest[eol + 2 + n + 2..];
        }
        out
    } else {
        rest.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

impl Polling {
    pub fn open(addr: SocketAddr) -> Polling {
        let (status, body) = http(
            addr,
            "GET",
            "/socket.io/?EIO=4&transport=polling&t=a",
            b"",
            Duration::from_secs(5),
        )
        .expect("handshake");
        assert_eq!(status, 200, "handshake: {body}");
        let json = body
            .strip_prefix('0')
            .unwrap_or_else(|| panic!("handshake body {body:?}"));
        let handshake: Value = serde_json::from_str(json).expect("handshake JSON");
        let sid = handshake["sid"].as_str().unwrap().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (closed, stop, sid) = (closed.clone(), stop.clone(), sid.clone());
            std::thread::spawn(move || {
                use std::sync::atomic::Ordering::SeqCst;
                let target = format!("/socket.io/?EIO=4&transport=polling&t=c&sid={sid}");
                while !stop.load(SeqCst) {
                    match http(addr, "GET", &target, b"", Duration::from_secs(60)) {
                        Ok((200, body)) => {
                            for p in body.split('\x1e') {
                                match p {
                                    "2" => {
                                        let _ = http(
                                            addr,
                                            "POST",
                                            &target,
                                            b"3",
                                            Duration::from_secs(5),
                                        );
                                    }
                                    "1" => {
                                        closed.store(true, SeqCst);
                                        return;
                                    }
                                    "6" | "" => {}
                                    other => {
                                        if tx.send(other.to_string()).is_err() {
                                            return;
                                        }
                                    }
                                }
                            }
                        }
                        _ => {
                            closed.store(true, SeqCst);
                            return;
                        }
                    }
                }
            });
        }
        Polling {
            addr,
            sid,
            handshake,
            rx: std::sync::Mutex::new(rx),
            pending: std::sync::Mutex::new(std::collections::VecDeque::new()),
            closed,
            stop,
        }
    }

    fn target(&self) -> String {
        format!("/socket.io/?EIO=4&transport=polling&t=b&sid={}", self.sid)
    }

    /// POST Engine.IO packets (joined with \x1e). Returns the HTTP status and body.
    pub fn post(&self, packets: &[&str]) -> (u16, String) {
        http(
            self.addr,
            "POST",
            &self.target(),
            packets.join("\x1e").as_bytes(),
            Duration::from_secs(10),
        )
        .expect("POST")
    }

    /// The next Engine.IO packet received (pings excluded), waiting up to `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<String> {
        if let Some(p) = self.pending.lock().unwrap().pop_front() {
            return Some(p);
        }
        self.rx.lock().unwrap().recv_timeout(timeout).ok()
    }

    /// Up to `want` socket.io packets (Engine.IO `4` messages, prefix stripped), waiting at most
    /// `timeout` in all.
    pub fn messages(&self, want: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(p) => {
                    if let Some(m) = p.strip_prefix('4') {
                        got.push(m.to_string());
                    }
                }
                None => break,
            }
        }
        got
    }

    pub fn connect(&self, ns: &str) {
        let (status, body) = self.post(&[&format!("40{ns},")]);
        assert_eq!((status, body.as_str()), (200, "ok"));
        let m = self.messages(1, Duration::from_secs(5));
        assert!(
            m.len() == 1 && m[0].starts_with(&format!("0{ns},{{\"sid\":")),
            "connect {ns}: {m:?}"
        );
    }

    /// Sends `call` with ack id `id` and returns the ack's JSON array.
    pub fn call(&self, ns: &str, id: u64, method: &str, rpc_args: Value, sub: &[&str]) -> Value {
        let env = serde_json::json!({"rpcArgs": rpc_args, "subLevel": sub});
        let pkt = format!("42{ns},{id}{}", serde_json::json!(["call", method, env]));
        self.post(&[&pkt]);
        self.ack(ns, id)
    }

    /// Waits for the ack `id` on `ns`; other packets stay queued, in order.
    pub fn ack(&self, ns: &str, id: u64) -> Value {
        self.ack_within(ns, id, Duration::from_secs(30))
            .unwrap_or_else(|| {
                panic!(
                    "no ack {id} on {ns} within 30 s (session {} closed: {}; {} other packets queued)",
                    self.sid,
                    self.closed.load(std::sync::atomic::Ordering::SeqCst),
                    self.pending.lock().unwrap().len()
                )
            })
    }

    /// The ack of call `id` on `ns`, if it comes within `timeout`; other packets stay queued.
    pub fn ack_within(&self, ns: &str, id: u64, timeout: Duration) -> Option<Value> {
        let prefix = format!("43{ns},{id}");
        let deadline = Instant::now() + timeout;
        let mut others = Vec::new();
        let mut found = None;
        while Instant::now() < deadline {
            match self.next(deadline.saturating_duration_since(Instant::now())) {
                Some(p) => match p.strip_prefix(&prefix) {
                    Some(rest) if rest.starts_with('[') => {
                        found = Some(serde_json::from_str(rest).expect("ack JSON"));
                        break;
                    }
                    _ => others.push(p),
                },
                None => break,
            }
        }
        let mut pending = self.pending.lock().unwrap();
        for p in others.into_iter().rev() {
            pending.push_front(p);
        }
        found
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Close the session so the poller thread's pending GET returns.
        let _ = http(
            self.addr,
            "POST",
            &self.target(),
            b"1",
            Duration::from_secs(2),
        );
    }
}

/// Parses a socket.io EVENT packet `2<ns>,<id>[...]` → (ack id, JSON array).
pub fn parse_event(ns: &str, m: &str) -> Option<(Option<u64>, Value)> {
    let rest = m.strip_prefix(&format!("2{ns},"))?;
    let json_at = rest.find('[')?;
    let id = rest[..json_at].parse().ok();
    Some((id, serde_json::from_str(&rest[json_at..]).ok()?))
}

/// Consumes the stream announced by `marker` (a call's result), acking every event at once as
/// Arsenal's client does, and calls `each` with every item in order. Returns the item count.
pub fn consume_stream(p: &Polling, ns: &str, marker: &Value, mut each: impl FnMut(Value)) -> usize {
    let sid = marker["$streamId"]
        .as_str()
        .expect("a stream marker")
        .to_string();
    let mut n = 0;
    let mut idle = Instant::now();
    loop {
        assert!(
            idle.elapsed() < Duration::from_secs(30),
            "stream {sid} stalled after {n} items"
        );
        let Some(m) = p.messages(1, Duration::from_secs(1)).pop() else {
            continue;
        };
        idle = Instant::now();
        let Some((ack_id, ev)) = parse_event(ns, &m) else {
            continue;
        };
        if ev[1]["streamId"] != Value::String(sid.clone()) {
            continue;
        }
        if let Some(id) = ack_id {
            p.post(&[&format!("43{ns},{id}[null]")]);
        }
        match ev[0].as_str().unwrap() {
            "stream-data" => {
                for item in ev[1]["data"].as_array().expect("data array") {
                    each(item.clone());
                    n += 1;
                }
            }
            "stream-end" => {
                p.post(&[&format!(
                    "42{ns},[\"stream-hangup\",{{\"streamId\":\"{sid}\"}}]"
                )]);
                return n;
            }
            other => panic!("stream {sid}: {other} {}", ev[1]),
        }
    }
}
