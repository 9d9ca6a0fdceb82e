//! Shared by the tests/data_*.rs files: start the real `zenkoctl serve --only data` binary on a
//! real directory, talk raw HTTP/1.1 to it (so hostile request targets reach the server
//! unchanged), and read its memory use from /proc (tests/common/process.rs).
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../common/process.rs"]
mod process;
pub use process::*;

/// A running data server; killed (by pid) when dropped, also when a test fails.
pub type Server = ChildServer;

impl ChildServer {
    /// Starts `zenkoctl serve --only data` on a free loopback port, and waits until it listens.
    pub fn start(data_path: &Path) -> Server {
        Self::start_with_env(data_path, &[])
    }

    pub fn start_with_env(data_path: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zenkoctl"));
        cmd.args(["--output", "json", "serve", "--only", "data"])
            .args(["--data-addr", "127.0.0.1:0", "--data-path"])
            .arg(data_path)
            .args(["--drain-timeout", "20"])
            .envs(env.iter().copied());
        ChildServer::spawn(cmd, data_path, "zenkoctl", |line| {
            let doc: serde_json::Value =
                serde_json::from_str(line).expect("readiness line is JSON");
            assert_eq!(doc["event"], "listening", "{line}");
            assert_eq!(doc["service"], "data", "{line}");
            doc["addr"].as_str().unwrap().parse().unwrap()
        })
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `errorType` of an Arsenal error body.
    pub fn error_type(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {:?}", self.text()));
        v["errorType"].as_str().unwrap_or_default().to_string()
    }

    /// The key from a 201's `Location: /DataFile/<key>`.
    pub fn key(&self) -> String {
        assert_eq!(
            self.status,
            201,
            "PUT failed: {} {}",
            self.status,
            self.text()
        );
        let loc = self.header("location").expect("Location header");
        let key = loc.strip_prefix("/DataFile/").expect("Location prefix");
        assert!(
            key.len() == 40
                && key
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "key {key:?}"
        );
        key.to_string()
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        Self::try_connect(addr).expect("connect to the data server")
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream),
        })
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    /// Writes a request head; `headers` are sent as given (no Content-Length is added).
    pub fn send_head(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<()> {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.stream().write_all(head.as_bytes())
    }

    /// A whole request; a body gets its Content-Length.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<Resp> {
        let len;
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(b) = body {
            len = b.len().to_string();
            all.push(("Content-Length", &len));
        }
        self.send_head(method, target, &all)?;
        if let Some(b) = body {
            self.stream().write_all(b)?;
        }
        self.read_response(method == "HEAD")
    }

    /// Reads a response head (skipping 1xx), leaving the body unread.
    pub fn read_head(&mut self) -> io::Result<(u16, Vec<(String, String)>)> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            let status: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad status line {line:?}"),
                    )
                })?;
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                self.reader.read_line(&mut h)?;
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap_or((h, ""));
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            if (100..200).contains(&status) {
                continue;
            }
            return Ok((status, headers));
        }
    }

    pub fn read_response(&mut self, head_request: bool) -> io::Result<Resp> {
        let (status, headers) = self.read_head()?;
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 {
            return Ok(resp);
        }
        if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().unwrap();
            resp.body.resize(len, 0);
            self.reader.read_exact(&mut resp.body)?;
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size)?;
                let size =
                    usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                resp.body.extend_from_slice(&chunk[..size]);
            }
        } else {
            self.reader.read_to_end(&mut resp.body)?;
        }
        Ok(resp)
    }

    pub fn reader(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.reader
    }
}

/// A one-shot request on a new connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    Conn::connect(addr)
        .request(method, target, headers, body)
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}

pub fn put(addr: SocketAddr, body: &[u8]) -> String {
    request(addr, "PUT", "/DataFile/", &[], Some(body)).key()
}

pub fn get(addr: SocketAddr, key: &str, range: Option<&str>) -> Resp {
    let target = format!("/DataFile/{key}");
    match range {
        Some(r) => request(addr, "GET", &target, &[("Range", r)], None),
        None => request(addr, "GET", &target, &[], None),
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so large payloads can be checked without
/// keeping them.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Self {
        Pattern(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        Pattern::new(seed).fill(&mut v);
        v
    }
}

/// Files under the hash directories of a data directory (objects), as (key, path).
pub fn objects_on_disk(data: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(data).unwrap() {
        let dir = dir.unwrap();
        let name = dir.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || !dir.file_type().unwrap().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let f = f.unwrap();
            out.push((f.file_name().to_string_lossy().into_owned(), f.path()));
        }
    }
    out
}

/// Files in the server's temporary upload directory.
pub fn temp_files(data: &Path) -> usize {
    std::fs::read_dir(data.join(".zenkoctl-tmp")).map_or(0, |d| d.count())
}

/// Polls `cond` until true or the timeout.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}
