//! Cargo-test side of the Arsenal conformance harness (tests/arsenal, see its README.md).
//!
//! Include it from a test crate with
//!
//! ```ignore
//! #[path = "common/arsenal.rs"]
//! mod arsenal;
//! ```
//!
//! and then, for example:
//!
//! ```ignore
//! let dir = tempfile::tempdir().unwrap();
//! let reference = arsenal::start_ref_data(&dir.path().join("data"));
//! arsenal::run_checks("data-checks.js", &reference.addr(), &[]).assert_passed();
//! ```
//!
//! Processes are stopped by pid (SIGTERM, then SIGKILL after a grace period) when
//! their guard is dropped, so they are cleaned up even when an assertion panics.
#![allow(dead_code)] // each test crate uses a different subset

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to print `READY <port>` (the reference data
/// server pre-creates 3511 directories first).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for one check script run; each check also has its own timeout.
pub const CHECKS_TIMEOUT: Duration = Duration::from_secs(300);
/// Grace period between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

const INSTALL_HINT: &str = "run scripts/deps/arsenal.sh";

/// `tests/arsenal` of this crate; panics (test failure) when its npm
/// dependencies are not installed.
pub fn harness_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/arsenal");
    let marker = dir.join("node_modules/@scality/arsenal/package.json");
    if !marker.is_file() {
        panic!(
            "Arsenal harness not installed: {} is missing ({INSTALL_HINT})",
            marker.display()
        );
    }
    dir
}

/// The Node.js binary: `$NODE` if set, else `node` from PATH.
pub fn node_binary() -> String {
    std::env::var("NODE").unwrap_or_else(|_| "node".to_string())
}

/// A `node <script> args...` command run from tests/arsenal.
pub fn node_command(script: &str, args: &[&str]) -> Command {
    let dir = harness_dir();
    let mut cmd = Command::new(node_binary());
    cmd.current_dir(&dir).arg(dir.join(script)).args(args);
    cmd
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Stop a child by pid: SIGTERM, wait up to `STOP_GRACE`, then SIGKILL.
fn terminate(child: &mut Child) -> ExitStatus {
    if let Ok(Some(status)) = child.try_wait() {
        return status;
    }
    signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill(); // SIGKILL by pid
    child.wait().expect("wait for killed child")
}

/// A running server process. Dropping it stops the process (by pid).
pub struct ServerProcess {
    name: String,
    child: Option<Child>,
    /// Address to connect to.
    pub host: String,
    /// The port the server reported in its `READY <port>` line.
    pub port: u16,
    stdout: Arc<Mutex<String>>,
    stderr_log: PathBuf,
    _logs: tempfile::TempDir,
}

impl ServerProcess {
    /// `host:port`, the form every check script takes as `--target`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Everything the server wrote on stderr so far (its logs).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Everything after the READY line on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM the server and wait for it (SIGKILL after a grace period).
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        terminate(&mut child)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = terminate(&mut child);
            if thread::panicking() {
                eprintln!(
                    "--- {} (pid {}) stopped with {status}; its stderr:\n{}",
                    self.name,
                    child.id(),
                    self.stderr()
                );
            }
        }
    }
}

/// Spawn `cmd`, which must print a line `READY <port>` on stdout once it
/// accepts connections on `host`, and return its guard. Panics with the
/// process's stderr if it exits or stays silent for `READY_TIMEOUT`.
pub fn spawn_ready(name: &str, host: &str, mut cmd: Command) -> ServerProcess {
    let logs = tempfile::tempdir().expect("temp dir for server logs");
    let stderr_log = logs.path().join("stderr.log");
    let stderr_file = std::fs::File::create(&stderr_log).expect("create server stderr log");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr_file));
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start {name} ({cmd:?}): {e} (is Node.js installed? {INSTALL_HINT})")
    });
    let out = child.stdout.take().expect("piped stdout");
    let stdout = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel::<u16>();
    {
        let stdout = Arc::clone(&stdout);
        // Keeps draining stdout after READY so the pipe never fills up.
        thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line
                    .strip_prefix("READY ")
                    .and_then(|p| p.trim().parse().ok())
                {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(port);
                        continue;
                    }
                }
                let mut s = stdout.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    let port = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(port) => break port,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = terminate(&mut child);
                panic!(
                    "{name} exited ({status}) before printing READY; stderr:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            }
        }
        if Instant::now() > deadline {
            let status = terminate(&mut child);
            panic!(
                "{name} did not print READY within {READY_TIMEOUT:?} (stopped: {status}); stderr:\n{}",
                std::fs::read_to_string(&stderr_log).unwrap_or_default()
            );
        }
    };
    ServerProcess {
        name: name.to_string(),
        child: Some(child),
        host: host.to_string(),
        port,
        stdout,
        stderr_log,
        _logs: logs,
    }
}

/// Arsenal's own data daemon (RESTServer + DataFileStore) on 127.0.0.1 and a
/// free port, storing objects under `data_path` (created if missing).
pub fn start_ref_data(data_path: &Path) -> ServerProcess {
    let data = data_path.to_str().expect("utf-8 data path");
    spawn_ready(
        "reference data server",
        "127.0.0.1",
        node_command(
            "ref-dataserver.js",
            &[
                "--dataPath",
                data,
                "--port",
                "0",
                "--bindAddress",
                "127.0.0.1",
            ],
        ),
    )
}

/// Options of the reference metadata daemon; the defaults are CloudServer's
/// shipped config (record log on, `s3-recordlog`, RG001).
#[derive(Debug, Clone)]
pub struct RefMetadataOptions {
    pub record_log: bool,
    pub record_log_name: String,
    pub replication_group_id: String,
}

impl Default for RefMetadataOptions {
    fn default() -> Self {
        Self {
            record_log: true,
            record_log_name: "s3-recordlog".to_string(),
            replication_group_id: "RG001".to_string(),
        }
    }
}

/// Arsenal's own metadata daemon (MetadataFileServer) on 127.0.0.1 and a free
/// port, with its LevelDB and uuid file under `md_path` (created if missing).
pub fn start_ref_metadata(md_path: &Path, opts: &RefMetadataOptions) -> ServerProcess {
    let path = md_path.to_str().expect("utf-8 metadata path");
    let record_log = if opts.record_log { "true" } else { "false" };
    spawn_ready(
        "reference metadata server",
        "127.0.0.1",
        node_command(
            "ref-mdserver.js",
            &[
                "--path",
                path,
                "--port",
                "0",
                "--bindAddress",
                "127.0.0.1",
                "--recordLog",
                record_log,
                "--recordLogName",
                &opts.record_log_name,
                "--replicationGroupId",
                &opts.replication_group_id,
            ],
        ),
    )
}

/// A free TCP port on 127.0.0.1 (for servers that cannot report their own).
/// Racy by nature: prefer servers that print `READY <port>` for port 0.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Wait until `addr` accepts TCP connections, or panic after `timeout`.
pub fn wait_for_port(addr: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        if Instant::now() > deadline {
            panic!("nothing accepts connections on {addr} after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Result of one check script run.
#[derive(Debug)]
pub struct CheckRun {
    pub script: String,
    pub target: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// From the final `N passed, M failed` line (None if it is missing).
    pub passed: Option<usize>,
    pub failed: Option<usize>,
    /// `(check name, passed)` in run order, from the PASS/FAIL lines.
    pub outcomes: Vec<(String, bool)>,
}

impl CheckRun {
    fn report(&self) -> String {
        format!(
            "node {} --target {} ({}):\n--- stdout ---\n{}--- stderr ---\n{}",
            self.script, self.target, self.status, self.stdout, self.stderr
        )
    }

    /// Panics (showing the whole output) unless the run exited 0 with at least
    /// one check and no failure.
    pub fn assert_passed(&self) -> &Self {
        let ok = self.status.success()
            && self.failed == Some(0)
            && self.passed.is_some_and(|p| p > 0)
            && self.outcomes.iter().all(|(_, ok)| *ok);
        assert!(ok, "Arsenal checks failed: {}", self.report());
        self
    }

    /// Panics unless the run reported at least one failed check (used to prove
    /// that checks can fail).
    pub fn assert_some_failed(&self) -> &Self {
        let failed = !self.status.success() && self.failed.is_some_and(|f| f > 0);
        assert!(failed, "expected failing checks: {}", self.report());
        self
    }

    /// Names of the failed checks.
    pub fn failures(&self) -> Vec<&str> {
        self.outcomes
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// Panics unless both runs have the same checks with the same outcomes (e.g.
/// a server under test against the reference server, in the same test run).
pub fn assert_same_outcomes(reference: &CheckRun, candidate: &CheckRun) {
    let differ: Vec<String> = reference
        .outcomes
        .iter()
        .zip(candidate.outcomes.iter())
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("  {:?} reference={} candidate={}", a.0, a.1, b.1))
        .collect();
    assert!(
        reference.outcomes.len() == candidate.outcomes.len() && differ.is_empty(),
        "check outcomes differ from the reference:\n{}\nreference: {}\ncandidate: {}",
        differ.join("\n"),
        reference.report(),
        candidate.report()
    );
}

fn parse_summary(line: &str) -> Option<(usize, usize)> {
    let (p, rest) = line.trim().split_once(" passed, ")?;
    let f = rest.strip_suffix(" failed")?;
    Some((p.parse().ok()?, f.parse().ok()?))
}

fn parse_outcome(line: &str) -> Option<(String, bool)> {
    let (ok, rest) = if let Some(r) = line.strip_prefix("PASS ") {
        (true, r)
    } else if let Some(r) = line.strip_prefix("FAIL ") {
        (false, r)
    } else {
        return None;
    };
    // "<name> (<ms> ms)" or "<name> (<ms> ms): <message>"
    let end = rest.find(" ms)")?;
    let open = rest[..end].rfind(" (")?;
    Some((rest[..open].to_string(), ok))
}

fn drain<R: Read + Send + 'static>(r: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(r).read_to_string(&mut s);
        s
    })
}

/// Run `node tests/arsenal/<script> --target <target> <extra...>` and collect
/// its output (killing it after `CHECKS_TIMEOUT`). Does not assert anything.
pub fn run_checks(script: &str, target: &str, extra: &[&str]) -> CheckRun {
    let mut args = vec!["--target", target];
    args.extend_from_slice(extra);
    let mut cmd = node_command(script, &args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run node {script}: {e} (is Node.js installed? {INSTALL_HINT})")
    });
    let out = drain(child.stdout.take().expect("piped stdout"));
    let err = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + CHECKS_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for check script") {
            break status;
        }
        if Instant::now() > deadline {
            eprintln!("node {script} still running after {CHECKS_TIMEOUT:?}: stopping it");
            break terminate(&mut child);
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let summary = stdout.lines().rev().find_map(parse_summary);
    CheckRun {
        script: script.to_string(),
        target: target.to_string(),
        status,
        passed: summary.map(|s| s.0),
        failed: summary.map(|s| s.1),
        outcomes: stdout.lines().filter_map(parse_outcome).collect(),
        stdout,
        stderr,
    }
}

/// `run_checks` + `assert_passed`.
pub fn assert_checks_pass(script: &str, target: &str, extra: &[&str]) -> CheckRun {
    let run = run_checks(script, target, extra);
    run.assert_passed();
    run
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn parses_summary_and_outcomes() {
        assert_eq!(parse_summary("37 passed, 0 failed"), Some((37, 0)));
        assert_eq!(parse_summary("PASS x (1 ms)"), None);
        assert_eq!(
            parse_outcome("PASS get range [0,0] (12 ms)"),
            Some(("get range [0,0]".to_string(), true))
        );
        assert_eq!(
            parse_outcome("FAIL a (b) (3 ms): boom (1 ms)"),
            Some(("a (b)".to_string(), false))
        );
    }
}
