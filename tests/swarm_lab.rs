//! The two-node test swarm (tests/swarm-lab.sh): it comes up with a manager and a worker in
//! their own network namespaces, `up` is idempotent, the worker pulls the zenkoctl image from
//! the lab registry and runs it, and `down` leaves nothing behind — processes, namespaces,
//! links, the iptables rule, mounts, files — even after an engine was killed.

mod lab;

use std::process::Command;
use std::time::{Duration, Instant};

use lab::Lab;

const ZENKOCTL: &str = env!("CARGO_BIN_EXE_zenkoctl");

fn alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn two_nodes_registry_pull_on_the_worker_and_complete_teardown() {
    let lab = Lab::up(2);
    let again = lab.up_again(2);
    for key in [
        "ZENKOCTL_LAB_MANAGER_PID",
        "ZENKOCTL_LAB_WORKER_PID",
        "ZENKOCTL_LAB_REGISTRY_PID",
    ] {
        assert_eq!(
            again.get(key).map(String::as_str),
            Some(lab.get(key)),
            "a second `up` reuses the running lab"
        );
    }
    let nodes = lab.docker_ok(&[
        "node",
        "ls",
        "--format",
        "{{.Hostname}} {{.Status}} {{.ManagerStatus}}",
    ]);
    let mut nodes: Vec<&str> = nodes.lines().map(str::trim).collect();
    nodes.sort();
    assert_eq!(
        nodes,
        [
            format!("{} Ready Leader", lab.get("ZENKOCTL_LAB_MANAGER_NODE")),
            format!("{} Ready", lab.get("ZENKOCTL_LAB_WORKER_NODE")),
        ]
    );

    // The zenkoctl image, built and pushed to the lab registry, run by the worker as a job.
    let registry = lab.get("ZENKOCTL_LAB_REGISTRY").to_string();
    let tmp = tempfile::tempdir().unwrap();
    let binary = lab::stripped_zenkoctl(tmp.path());
    let image = format!("{registry}/zenkoctl/module:lab-test");
    for args in [
        vec![
            "build",
            "--binary",
            binary.to_str().unwrap(),
            "--image",
            &image,
        ],
        vec![
            "push",
            "--image",
            &image,
            "--docker-config",
            tmp.path().to_str().unwrap(),
        ],
    ] {
        let out = Command::new(ZENKOCTL)
            .env("DOCKER_HOST", lab.manager())
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "zenkoctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The worker has never seen the image: it must pull it from 10.99.0.1:5000.
    let worker_images = Command::new("docker")
        .args([
            "-H",
            lab.get("ZENKOCTL_LAB_WORKER_HOST"),
            "images",
            "-q",
            &image,
        ])
        .output()
        .unwrap();
    assert!(worker_images.stdout.is_empty());
    lab.docker_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "zenkoctl-lab-probe",
        "--mode",
        "replicated-job",
        "--constraint",
        "node.role==worker",
        &image,
        "healthcheck",
        "--url",
        &format!("http://{registry}/v2/"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let state = loop {
        let state = lab.docker_ok(&[
            "service",
            "ps",
            "zenkoctl-lab-probe",
            "--format",
            "{{.Node}} {{.CurrentState}} {{.Error}}",
        ]);
        if state.contains("Complete") || state.contains("Failed") || Instant::now() > deadline {
            break state;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        state.starts_with(&format!("{} Complete", lab.get("ZENKOCTL_LAB_WORKER_NODE"))),
        "the job on the worker: {state}"
    );

    // An engine that dies (the manager, killed) must not keep `down` from cleaning up.
    let dir = lab.get("ZENKOCTL_LAB_DIR").to_string();
    let pids: Vec<String> = [
        "ZENKOCTL_LAB_MANAGER_PID",
        "ZENKOCTL_LAB_WORKER_PID",
        "ZENKOCTL_LAB_REGISTRY_PID",
        "ZENKOCTL_LAB_AUTH_REGISTRY_PID",
    ]
    .iter()
    .map(|k| lab.get(k).to_string())
    .collect();
    let containerds = sh(&format!(
        "grep -l -s -F '{dir}/' /proc/[0-9]*/cmdline | cut -d/ -f3"
    ));
    assert!(
        !containerds.trim().is_empty(),
        "the engines' containerd processes are visible"
    );
    assert!(Command::new("kill")
        .args(["-KILL", &pids[0]])
        .status()
        .unwrap()
        .success());
    drop(lab);

    for pid in pids.iter().chain(
        containerds
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
            .iter(),
    ) {
        assert!(!alive(pid), "pid {pid} survived `down`");
    }
    assert!(!std::path::Path::new(&dir).exists(), "{dir} is left");
    let netns = sh("ip netns list");
    assert!(!netns.contains("zenkoctl-lab"), "{netns}");
    let links = sh("ip -o link show");
    assert!(!links.contains("zkl-"), "{links}");
    let rules = sh("iptables -S FORWARD; iptables -t nat -S POSTROUTING");
    assert!(!rules.contains("zenkoctl-lab"), "{rules}");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&dir), "mounts left under {dir}");
}
