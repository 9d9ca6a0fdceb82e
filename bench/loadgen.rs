//! Load generator and ceilings for bench/data.sh (run on demand, not in CI).
//!
//!   data-loadgen load --target ADDR --op put|get|range --size N --concurrency C --seconds S
//!                     [--server-pid PID] [--static]
//!       drives `/DataFile` over raw keep-alive HTTP/1.1 (one connection per worker) and
//!       prints one JSON line: requests/s, MiB/s, p50/p99 latency, server CPU per request
//!       (utime+stime of PID from /proc, all threads).
//!   data-loadgen static-server --size N
//!       the loopback ceiling: hyper answering every GET with N bytes from memory;
//!       prints "READY <port>".
//!   data-loadgen disk --dir D --size N --concurrency C --seconds S [--rename]
//!       the disk ceiling: create + write + fsync of N-byte files in 3511 sub-directories of D,
//!       C threads; one JSON line. The files are left in D (bench/data.sh decides when deleting
//!       them is harmless). With --rename, each file is created in D itself, then renamed into
//!       its sub-directory, which is fsynced (the minimum our durable PUT protocol needs).

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn need<T: std::str::FromStr>(args: &[String], name: &str) -> T {
    arg(args, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("missing or bad {name}"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.first().map(String::as_str) {
        Some("load") => rt.block_on(load(&args)),
        Some("static-server") => rt.block_on(static_server(need(&args, "--size"))),
        Some("disk") => disk(&args),
        _ => {
            eprintln!("usage: data-loadgen load|static-server|disk ... (see bench/loadgen.rs)");
            std::process::exit(2);
        }
    }
}

/// CPU time (user + system) of a process, in seconds, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("server /proc stat");
    // Fields after the ")" that closes the command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf is always safe to call.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf[..filled]` not consumed yet (start at `pos`).
    pos: usize,
    filled: usize,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: vec![0; 256 * 1024],
            pos: 0,
            filled: 0,
        }
    }

    async fn fill(&mut self) {
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = 0;
        } else if self.pos > 0 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        let n = self
            .stream
            .read(&mut self.buf[self.filled..])
            .await
            .expect("read");
        assert!(n > 0, "server closed the connection");
        self.filled += n;
    }

    /// Sends a request and reads the whole response; returns (status, Location, body length).
    async fn call(&mut self, head: &[u8], body: Option<&Bytes>) -> (u16, Option<String>, u64) {
        self.stream.write_all(head).await.expect("write head");
        if let Some(b) = body {
            self.stream.write_all(b).await.expect("write body");
        }
        let header_end = loop {
            if let Some(i) = find(&self.buf[self.pos..self.filled], b"\r\n\r\n") {
                break self.pos + i + 4;
            }
            self.fill().await;
        };
        let head = std::str::from_utf8(&self.buf[self.pos..header_end])
            .unwrap()
            .to_string();
        self.pos = header_end;
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut content_length = None;
        let mut chunked = false;
        let mut location = None;
        for line in head.lines().skip(1) {
            if let Some((k, v)) = line.split_once(':') {
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    content_length = Some(v.parse::<u64>().unwrap());
                } else if k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked") {
                    chunked = true;
                } else if k.eq_ignore_ascii_case("location") {
                    location = Some(v.to_string());
                }
            }
        }
        let mut total = 0;
        if let Some(len) = content_length {
            self.skip(len).await;
            total = len;
        } else if chunked {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf[self.pos..self.filled], b"\r\n") {
                        break self.pos + i;
                    }
                    self.fill().await;
                };
                let size_text = std::str::from_utf8(&self.buf[self.pos..line_end]).unwrap();
                let size =
                    u64::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
                self.pos = line_end + 2;
                self.skip(size + 2).await;
                total += size;
                if size == 0 {
                    break;
                }
            }
        }
        (status, location, total)
    }

    /// Discards `n` body bytes. Bytes already buffered are dropped; the rest are discarded in
    /// the kernel with `recv(MSG_TRUNC)` (TCP drops them without copying), so the load
    /// generator's core does not become the bottleneck of large GETs.
    async fn skip(&mut self, mut n: u64) {
        let buffered = n.min((self.filled - self.pos) as u64);
        self.pos += buffered as usize;
        n -= buffered;
        while n > 0 {
            let want = n.min(64 << 20) as usize;
            let fd = self.stream.as_raw_fd();
            let got = self
                .stream
                .async_io(tokio::io::Interest::READABLE, || {
                    // SAFETY: MSG_TRUNC on TCP discards data; no buffer is written.
                    let r = unsafe {
                        libc::recv(
                            fd,
                            std::ptr::null_mut(),
                            want,
                            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                        )
                    };
                    if r < 0 {
                        Err(std::io::Error::last_os_error())
                    } else {
                        Ok(r as u64)
                    }
                })
                .await
                .expect("recv");
            assert!(got > 0, "server closed the connection mid-body");
            n -= got;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn put_head(size: usize) -> Vec<u8> {
    format!(
        "PUT /DataFile/ HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\n\
         X-Scal-Request-Uids: bench\r\nContent-Length: {size}\r\n\r\n"
    )
    .into_bytes()
}

async fn load(args: &[String]) {
    let target: SocketAddr = need(args, "--target");
    let op = arg(args, "--op").expect("--op").to_string();
    let size: usize = need(args, "--size");
    let concurrency: usize = need(args, "--concurrency");
    let seconds: f64 = need(args, "--seconds");
    let server_pid: Option<u32> = arg(args, "--server-pid").map(|p| p.parse().unwrap());

    let payload = Bytes::from(
        (0..size)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    // GETs read objects stored first, one per worker.
    let mut keys = Vec::new();
    if args.iter().any(|a| a == "--static") {
        // The loopback ceiling answers any path.
        keys.push("/static".to_string());
    } else if op != "put" {
        let mut c = Client::connect(target).await;
        for _ in 0..concurrency.max(4) {
            let (status, location, _) = c.call(&put_head(size), Some(&payload)).await;
            assert_eq!(status, 201, "prefill PUT failed");
            keys.push(location.unwrap());
        }
    }
    let keys = Arc::new(keys);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let cpu_before = server_pid.map(cpu_seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (keys, stop, errors, bytes, payload, op) = (
            keys.clone(),
            stop.clone(),
            errors.clone(),
            bytes.clone(),
            payload.clone(),
            op.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(target).await;
            let mut lat = Vec::new();
            let mut i = w;
            let (lo, hi) = (size / 4, size * 3 / 4 - 1);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let (status, moved) = match op.as_str() {
                    "put" => {
                        let (s, _, _) = c.call(&put_head(size), Some(&payload)).await;
                        (s, size as u64)
                    }
                    "get" | "range" => {
                        let key = &keys[i % keys.len()];
                        i += 1;
                        let range = if op == "range" {
                            format!("Range: bytes={lo}-{hi}\r\n")
                        } else {
                            String::new()
                        };
                        let head = format!(
                            "GET {key} HTTP/1.1\r\nHost: bench\r\nX-Scal-Request-Uids: bench\r\n{range}\r\n"
                        );
                        let (s, _, n) = c.call(head.as_bytes(), None).await;
                        (s, n)
                    }
                    other => panic!("unknown op {other}"),
                };
                lat.push(t.elapsed().as_micros() as u64);
                if !(200..300).contains(&status) {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                bytes.fetch_add(moved, Ordering::Relaxed);
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (server_pid, cpu_before) {
        (Some(pid), Some(before)) => Some(cpu_seconds(pid) - before),
        _ => None,
    };
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    let n = lat.len() as f64;
    let doc = serde_json::json!({
        "op": op, "size": size, "concurrency": concurrency,
        "requests": lat.len(), "errors": errors.load(Ordering::Relaxed),
        "rps": n / elapsed,
        "mib_s": bytes.load(Ordering::Relaxed) as f64 / elapsed / 1048576.0,
        "p50_ms": pct(0.50) as f64 / 1000.0, "p99_ms": pct(0.99) as f64 / 1000.0,
        "cpu_us_per_req": cpu.map(|c| c * 1e6 / n),
    });
    println!("{doc}");
}

async fn static_server(size: usize) {
    let body = Bytes::from(vec![b'x'; size]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("READY {}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |_req| {
                        let body = body.clone();
                        async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(body))) }
                    }),
                )
                .await;
        });
    }
}

fn disk(args: &[String]) {
    let dir: std::path::PathBuf = need(args, "--dir");
    let size: usize = need(args, "--size");
    let concurrency: usize = need(args, "--concurrency");
    let seconds: f64 = need(args, "--seconds");
    let rename = args.iter().any(|a| a == "--rename");
    std::fs::create_dir_all(&dir).unwrap();
    // Files land in 3511 sub-directories, as both servers lay out objects; the sub-directories
    // exist before the clock starts, as a data server creates them at startup.
    for d in 0..3511 {
        std::fs::create_dir_all(dir.join(format!("d{d}"))).unwrap();
    }
    std::fs::File::open(&dir).unwrap().sync_all().unwrap();
    // SAFETY: sync(2) has no preconditions; it pushes the folders' metadata out first.
    unsafe { libc::sync() };
    let payload = Arc::new(vec![7u8; size]);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..concurrency)
        .map(|t| {
            let (dir, payload, stop) = (dir.clone(), payload.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let sub = dir.join(format!("d{}", (t as u64 * 7919 + i) % 3511));
                    // With --rename the file is created beside the sub-directories and moved
                    // into one, as a temporary file is.
                    let path = if rename {
                        dir.join(format!("{t}-{i}"))
                    } else {
                        sub.join(format!("{t}-{i}"))
                    };
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .unwrap();
                    f.write_all(&payload).unwrap();
                    f.sync_all().unwrap();
                    drop(f);
                    if rename {
                        std::fs::rename(&path, sub.join(format!("{t}-{i}"))).unwrap();
                        std::fs::File::open(&sub).unwrap().sync_all().unwrap();
                    }
                    lat.push(t0.elapsed().as_micros() as u64);
                    i += 1;
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    let n = lat.len() as f64;
    let doc = serde_json::json!({
        "op": if rename { "disk-rename" } else { "disk" }, "size": size, "concurrency": concurrency, "requests": lat.len(),
        "rps": n / elapsed, "mib_s": n * size as f64 / elapsed / 1048576.0,
        "p50_ms": pct(0.50) as f64 / 1000.0, "p99_ms": pct(0.99) as f64 / 1000.0,
    });
    println!("{doc}");
}
