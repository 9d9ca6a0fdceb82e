//! Teardown followed at once by a redeploy, many times over: the docker CLI's `stack rm`
//! returns before the stack's networks are gone and an immediate `stack deploy` then fails on
//! the leftover network; zenkoctl's teardown waits until everything is gone, so this must
//! never fail. ZENKOCTL_CYCLES sets the count (default 100); the time is measured and printed.
//!
//! Prerequisites: scripts/deps/docker.sh.

#[path = "common/dockerd.rs"]
mod dockerd;

use std::time::Instant;

use dockerd::Dockerd;

fn zenkoctl(engine: &Dockerd, args: &[&str]) -> (i32, String, String) {
    let out = engine.zenkoctl().args(args).output().expect("run zenkoctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn teardown_then_immediate_redeploy_cycles() {
    let cycles: usize = std::env::var("ZENKOCTL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let engine = Dockerd::start();
    // The tiniest stack that still has what breaks an immediate redeploy: an overlay network
    // (with a task attached) and a service. SIGKILL as stop signal: the test measures the
    // controller's waits, not a stop grace period.
    engine.build(
        "zenkoctl/tiny:1",
        "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\", \"sleep\", \"2147483647\"]\n",
        &[],
    );
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("docker-stack.yml.j2"),
        r#"version: "3.8"
services:
  tiny:
    image: zenkoctl/tiny:1
    stop_signal: SIGKILL
    networks: [backend]
    deploy:
      endpoint_mode: dnsrr
      labels:
        io.zenko.managed-by: zenkoctl
networks:
  backend:
    driver: overlay
    labels:
      io.zenko.managed-by: zenkoctl
"#,
    )
    .unwrap();
    let tpl = work.path().display().to_string();
    let deploy = [
        "deploy",
        "--templates",
        tpl.as_str(),
        "--stable",
        "0",
        "--timeout",
        "60",
    ];

    let started = Instant::now();
    let (mut deploy_secs, mut teardown_secs) = (0f64, 0f64);
    for i in 0..cycles {
        let t = Instant::now();
        let (code, out, err) = zenkoctl(&engine, &deploy);
        assert_eq!(code, 0, "cycle {i}: deploy failed\n{out}\n{err}");
        deploy_secs += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (code, out, err) = zenkoctl(&engine, &["teardown"]);
        assert_eq!(code, 0, "cycle {i}: teardown failed\n{out}\n{err}");
        assert!(out.contains("removed stack zenko"), "cycle {i}: {out}");
        teardown_secs += t.elapsed().as_secs_f64();
        // Nothing of the stack may be left when teardown returns.
        let left = engine.docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.stack.namespace=zenko",
        ]);
        assert!(
            left.trim().is_empty(),
            "cycle {i}: network left after teardown: {left}"
        );
    }
    let total = started.elapsed().as_secs_f64();
    eprintln!(
        "{cycles} teardown/redeploy cycles in {total:.1}s: deploy {:.2}s and teardown {:.2}s on average",
        deploy_secs / cycles as f64,
        teardown_secs / cycles as f64
    );
}
