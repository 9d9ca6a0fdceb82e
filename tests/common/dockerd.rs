//! A dockerd of the test's own: its own data root, exec root, socket and pid file under a
//! temporary directory, initialised as a single-node Swarm; stopped by pid (and waited for)
//! when dropped, even when the test panics.
//!
//! Prerequisites come from scripts/deps/docker.sh (Debian's docker.io and busybox-static).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dockerd {
    pub dir: tempfile::TempDir,
    child: Child,
    /// `unix:///.../docker.sock`, for `--host`.
    pub host: String,
}

fn require(cmd: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{cmd}` is missing: run scripts/deps/docker.sh (it installs Debian's docker.io and busybox-static)"
    );
}

/// A raw GET on the socket: (status, body).
fn get(socket: &Path, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

impl Dockerd {
    /// `zenkoctl --host <this engine>`, with the environment that would redirect it (another
    /// engine, other templates or profiles, another stack name) removed.
    #[allow(dead_code)]
    pub fn zenkoctl(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zenkoctl"));
        cmd.arg("--host")
            .arg(&self.host)
            .env_remove("DOCKER_HOST")
            .env_remove("ZENKOCTL_TEMPLATES")
            .env_remove("ZENKOCTL_STACKS")
            .env_remove("ZENKO_STACK");
        cmd
    }

    /// Starts the engine, waits until it answers, and runs `swarm init`.
    pub fn start() -> Dockerd {
        require("dockerd");
        require("docker");
        require("busybox");
        // Short path: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("zd")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let d = dir.path();
        let log = std::fs::File::create(d.join("dockerd.log")).expect("log file");
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start dockerd (scripts/deps/docker.sh installs it)");
        let host = format!("unix://{}", d.join("docker.sock").display());
        let mut engine = Dockerd { dir, child, host };
        let socket = engine.socket();
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = get(&socket, "/_ping") {
                break;
            }
            if let Ok(Some(status)) = engine.child.try_wait() {
                panic!("dockerd exited ({status}) at start; log:\n{}", engine.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "dockerd did not answer within 60s; log:\n{}",
                engine.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // Swarm's ports on loopback and away from the defaults, so another engine on this
        // machine (the two-node lab, say) holding 2377/4789 does not collide with this one.
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port")
        };
        let listen = format!("127.0.0.1:{}", free());
        // The VXLAN port must be in 1024-49151: pick a free one in that range.
        let start = 30000 + (std::process::id() % 10000) as u16;
        let data_path = (start..49151)
            .find(|p| std::net::UdpSocket::bind(("0.0.0.0", *p)).is_ok())
            .expect("a free UDP port")
            .to_string();
        engine.docker(&[
            "swarm",
            "init",
            "--advertise-addr",
            &listen,
            "--listen-addr",
            &listen,
            "--data-path-port",
            &data_path,
        ]);
        engine
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// Runs the docker CLI against this engine; panics with its output on failure.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = self.docker_raw(args);
        assert!(
            out.status.success(),
            "docker {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn docker_raw(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(&self.host)
            .args(args)
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_HOST")
            .output()
            .expect("docker CLI")
    }

    /// Builds an image FROM scratch: `files` (name, content, executable) plus the static
    /// busybox at /bin/busybox in the build context.
    pub fn build(&self, tag: &str, dockerfile: &str, files: &[(&str, &str)]) {
        let ctx = tempfile::tempdir().expect("tempdir");
        std::fs::copy("/bin/busybox", ctx.path().join("busybox")).expect("copy busybox");
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
        for (name, content) in files {
            let p = ctx.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        self.docker(&["build", "-q", "-t", tag, ctx.path().to_str().unwrap()]);
    }

    /// The stand-in module image from tests/fixtures/module-image.
    pub fn build_module_image(&self, tag: &str) {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/module-image");
        let read = |f: &str| std::fs::read_to_string(fixture.join(f)).unwrap();
        self.build(
            tag,
            &read("Dockerfile"),
            &[("serve.sh", &read("serve.sh")), ("www/_/health", "ok\n")],
        );
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Stop by pid and wait for the exit: another engine on the same paths must not start
        // before this one is gone.
        let pid = self.child.id() as i32;
        unsafe_kill(pid, 15);
        let started = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if started.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => {
                    unsafe_kill(pid, 9);
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        // Leftover mounts (container rootfs, netns) would make the directory unremovable.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null",
                self.dir.path().display()
            ))
            .status();
    }
}

/// `kill(pid, sig)` through the kill(1) command (no libc dependency in the tests).
fn unsafe_kill(pid: i32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}
