//! The swarm lab (tests/swarm-lab.sh) from cargo tests: `Lab::up` starts it (or reuses a
//! running one) and `Drop` tears it down completely — also when the test panics.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

pub struct Lab {
    pub env: HashMap<String, String>,
    // Tests of one binary run in parallel; the lab is one per machine: they take turns.
    _turn: MutexGuard<'static, ()>,
}

static TURN: Mutex<()> = Mutex::new(());

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/swarm-lab.sh")
}

/// Fails (never skips) when a prerequisite is missing, naming the script that installs it.
pub fn require_prerequisites() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    assert!(
        root,
        "the swarm lab needs root (network namespaces, dockerd)"
    );
    for cmd in [
        "dockerd",
        "docker",
        "ip",
        "iptables",
        "nsenter",
        "unshare",
        "docker-registry",
        "htpasswd",
        "curl",
        "busybox",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {cmd}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(found, "{cmd} is missing: run scripts/deps/swarm-lab.sh");
    }
}

/// A stripped copy of the zenkoctl under test in `dir`: what the offline image packs (the
/// debug build with its symbols would be several times the image size target).
pub fn stripped_zenkoctl(dir: &Path) -> PathBuf {
    let binary = dir.join("zenkoctl");
    let status = Command::new("strip")
        .arg("-o")
        .arg(&binary)
        .arg(env!("CARGO_BIN_EXE_zenkoctl"))
        .status()
        .expect("run strip (binutils)");
    assert!(status.success(), "strip of the zenkoctl binary failed");
    binary
}

impl Lab {
    /// Starts the lab with `nodes` engines (1: a manager only; 2: manager and worker).
    pub fn up(nodes: u8) -> Lab {
        require_prerequisites();
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let out = Command::new("bash")
            .arg(script())
            .args(["up", "--nodes", &nodes.to_string()])
            .output()
            .expect("run tests/swarm-lab.sh");
        if !out.status.success() {
            // Leave nothing behind, then fail with the script's explanation.
            let _ = Command::new("bash").arg(script()).arg("down").output();
            panic!(
                "tests/swarm-lab.sh up failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        Lab { env, _turn: turn }
    }

    /// Runs `up` again on the running lab (it must reuse it) and returns what it printed.
    pub fn up_again(&self, nodes: u8) -> HashMap<String, String> {
        let out = Command::new("bash")
            .arg(script())
            .args(["up", "--nodes", &nodes.to_string()])
            .output()
            .expect("run tests/swarm-lab.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_env(&out.stdout)
    }

    pub fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("tests/swarm-lab.sh up did not print {key}"))
    }

    pub fn manager(&self) -> &str {
        self.get("ZENKOCTL_LAB_MANAGER_HOST")
    }

    /// `docker -H <manager> args...`
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(self.manager())
            .args(args)
            .output()
            .expect("run the docker client")
    }

    /// `docker ...` that must succeed; returns its trimmed stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn parse_env(stdout: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = Command::new("bash").arg(script()).arg("down").output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "tests/swarm-lab.sh down failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("cannot run tests/swarm-lab.sh down: {e}"),
        }
    }
}
