//! A MongoDB for tests.
//!
//! * `MONGODB_URI` set: that server (a real MongoDB); every test works in its own database
//!   (`zk_<pid>_<n>_<name>`), dropped when the test's [`TestDb`] is dropped.
//! * Otherwise the SecantusDB stand-in installed by scripts/deps/mongodb.sh
//!   (`.tools/secantus/bin/secantusd-py`), started on a free port with a fresh data dir and
//!   shared by the tests of one test binary; it is stopped by pid (SIGTERM, then SIGKILL) when the
//!   last test using it is done, and also if the test process dies (PR_SET_PDEATHSIG on the
//!   thread that owns it).
//!
//! Include with `#[path = "common/mongod.rs"] mod mongod;`.
#![allow(dead_code)] // each test crate uses a different subset

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long the stand-in may take to accept connections (measured: 2–4 s).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub fn standin_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/secantus/bin/secantusd-py");
    assert!(
        bin.exists(),
        "the MongoDB stand-in is not installed: run scripts/deps/mongodb.sh \
         (or set MONGODB_URI to a real MongoDB)"
    );
    bin
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One stand-in server process, owned by a keeper thread (so PR_SET_PDEATHSIG fires only when
/// the whole test process goes away, not when the test thread that started it finishes).
pub struct StandIn {
    pub port: u16,
    pub dir: PathBuf,
    /// Removed on drop when we created it.
    owned_dir: Option<tempfile::TempDir>,
    keeper: Option<(mpsc::Sender<Stop>, std::thread::JoinHandle<()>)>,
    pid: i32,
}

enum Stop {
    Term,
    Kill,
}

impl StandIn {
    /// A new server on a free port with a fresh data dir.
    pub fn start() -> StandIn {
        StandIn::start_fresh(&[])
    }

    /// A new standalone server (`--standalone`: no replica-set advertisement, and
    /// `replSetGetStatus` answers NoReplicationEnabled, as a mongod without `--replSet`).
    pub fn start_standalone() -> StandIn {
        StandIn::start_fresh(&["--standalone"])
    }

    fn start_fresh(extra: &[&str]) -> StandIn {
        let tmp = tempfile::Builder::new()
            .prefix("zk-mongod-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = StandIn::start_at_with(&dir, free_port(), extra);
        s.owned_dir = Some(tmp);
        s
    }

    /// A server on `port` with data in `dir` (an existing dir is reopened: a restart).
    pub fn start_at(dir: &Path, port: u16) -> StandIn {
        StandIn::start_at_with(dir, port, &[])
    }

    fn start_at_with(dir: &Path, port: u16, extra: &[&str]) -> StandIn {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let bin = standin_bin();
        std::fs::create_dir_all(dir).expect("create the stand-in's dir");
        let log = dir.join(format!("secantus-{port}.log"));
        let (pid_tx, pid_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<Stop>();
        let data = dir.join("data");
        let keeper = std::thread::spawn(move || {
            let logf = std::fs::File::create(&log).expect("create the stand-in log");
            let mut cmd = Command::new(bin);
            cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--storage-path")
                .arg(&data)
                .args(["--log-level", "WARNING"])
                .args(&extra)
                .stdin(Stdio::null())
                .stdout(logf.try_clone().expect("log"))
                .stderr(logf);
            // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            let mut child: Child = cmd.spawn().expect("spawn secantusd-py");
            let _ = pid_tx.send(child.id() as i32);
            let how = stop_rx.recv().unwrap_or(Stop::Term);
            stop_child(&mut child, how);
        });
        let pid = pid_rx.recv().expect("the stand-in's pid");
        let s = StandIn {
            port,
            dir: dir.to_path_buf(),
            owned_dir: None,
            keeper: Some((stop_tx, keeper)),
            pid,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            // SAFETY: kill(pid, 0) only checks that our child is still alive.
            let alive = unsafe { libc::kill(self.pid, 0) } == 0;
            assert!(
                alive && start.elapsed() < READY_TIMEOUT,
                "the MongoDB stand-in on port {} did not start; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("secantus-{}.log", self.port)))
            .unwrap_or_default()
    }

    pub fn uri(&self) -> String {
        // Retryable writes off: the stand-in slows to a crawl with them (swarm-lab.md); the
        // backend retries on its own.
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true&retryWrites=false",
            self.port
        )
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Stop the server (SIGTERM, SIGKILL after 10 s) and wait for it.
    pub fn stop(&mut self) {
        self.stop_with(Stop::Term);
    }

    /// SIGKILL the server and wait for it.
    pub fn kill9(&mut self) {
        self.stop_with(Stop::Kill);
    }

    fn stop_with(&mut self, how: Stop) {
        if let Some((tx, keeper)) = self.keeper.take() {
            let _ = tx.send(how);
            let _ = keeper.join();
        }
    }
}

fn stop_child(child: &mut Child, how: Stop) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let pid = child.id() as i32;
    if let Stop::Term = how {
        // SAFETY: signals our own child by pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where the tests' MongoDB is.
#[derive(Clone)]
pub struct Mongo {
    pub uri: String,
    /// Keeps the shared stand-in running (None with MONGODB_URI).
    pub standin: Option<Arc<StandIn>>,
}

static SHARED: Mutex<Weak<StandIn>> = Mutex::new(Weak::new());

/// MONGODB_URI when set, else the test binary's shared stand-in (started on first use).
pub fn mongo() -> Mongo {
    if let Ok(uri) = std::env::var("MONGODB_URI") {
        if !uri.is_empty() {
            return Mongo { uri, standin: None };
        }
    }
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    let s = match shared.upgrade() {
        Some(s) => s,
        None => {
            let s = Arc::new(StandIn::start());
            *shared = Arc::downgrade(&s);
            s
        }
    };
    Mongo {
        uri: s.uri(),
        standin: Some(s),
    }
}

/// A database name unique to this test (MongoDB: at most 63 bytes, no `.`).
pub fn unique_db(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut n = format!(
        "zk_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    n.truncate(63);
    n
}

/// A test's own database on the tests' MongoDB; dropped afterwards on a real MongoDB (the
/// stand-in's data dir goes away with it).
pub struct TestDb {
    pub mongo: Mongo,
    pub name: String,
}

impl TestDb {
    pub fn new(test: &str) -> TestDb {
        TestDb {
            mongo: mongo(),
            name: unique_db(test),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.mongo.standin.is_some() {
            return;
        }
        let (uri, name) = (self.mongo.uri.clone(), self.name.clone());
        // Drop is synchronous and may run inside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(c) = mongodb::Client::with_uri_str(&uri).await {
                    let _ = c.database(&name).drop().await;
                }
            });
        })
        .join();
    }
}
