//! A server process a test starts (`zenkoctl serve`, Arsenal's reference servers): readiness is
//! its first stdout line, stderr goes to a file beside its data (shown when it fails to start),
//! and it is killed by pid when dropped, also when the test fails. Shared by
//! tests/data_support and tests/metadata_support.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The constructors are in the support module of each service (`Server::start` for data,
/// `Server::ours` / `Server::reference` for metadata).
pub struct ChildServer {
    pub child: Child,
    pub addr: SocketAddr,
    /// The server's data (or metadata) directory.
    pub path: PathBuf,
    /// "zenkoctl" or "reference", for messages.
    pub who: &'static str,
    stderr_path: PathBuf,
}

impl ChildServer {
    /// Spawns `cmd` with stdout piped and stderr in a file next to `path`, and reads its
    /// address from the first line it prints (its readiness report) with `addr_of`. Panics
    /// with its stderr if it exits first.
    pub fn spawn(
        mut cmd: Command,
        path: &Path,
        who: &'static str,
        addr_of: impl FnOnce(&str) -> SocketAddr,
    ) -> ChildServer {
        let stderr_path = path.with_extension(format!("stderr-{}", unique()));
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr log");
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut process = ChildServer {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            path: path.to_path_buf(),
            who,
            stderr_path,
        };
        match lines.next() {
            Some(Ok(line)) => {
                // Keep draining stdout so the server never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines {});
                process.addr = addr_of(&line);
                process
            }
            other => panic!(
                "{program} did not report readiness ({other:?}); stderr:\n{}",
                process.stderr()
            ),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Waits for the process to exit; returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.exit_within(timeout)
            .unwrap_or_else(|| panic!("server {} did not exit within {timeout:?}", self.pid()))
    }

    /// The process's exit status if it exits within `timeout`, `None` if it is still running.
    pub fn exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn rss(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:") * 1024
    }

    /// Peak resident set size (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:") * 1024
    }

    /// Cumulated user+system CPU seconds (from /proc/PID/stat).
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        ticks / 100.0
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} missing from /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// tests/arsenal with its node_modules; fails (never skips) when scripts/deps/arsenal.sh has
/// not been run.
pub fn arsenal_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/arsenal");
    assert!(
        dir.join("node_modules/@scality/arsenal/package.json")
            .is_file(),
        "the Arsenal Node harness is not installed: run scripts/deps/arsenal.sh (needs node >= 20 and npm)"
    );
    dir
}
