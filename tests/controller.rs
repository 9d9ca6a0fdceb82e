//! The Swarm controller against a real engine: a dockerd of this test's own, a single-node
//! swarm, images built FROM scratch (a static busybox) in the test. The steps share the engine,
//! so they run in order inside one test.
//!
//! Prerequisites: scripts/deps/docker.sh.

#[path = "common/dockerd.rs"]
mod dockerd;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use dockerd::Dockerd;
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

fn zenkoctl(engine: &Dockerd, args: &[&str]) -> Run {
    let out = engine.zenkoctl().args(args).output().expect("run zenkoctl");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "zenkoctl panicked: {}",
        run.stderr
    );
    run
}

fn expect(run: &Run, code: i32, what: &str) {
    assert_eq!(
        run.code, code,
        "{what}: expected exit {code}, got {}\nstdout: {}\nstderr: {}",
        run.code, run.stdout, run.stderr
    );
}

/// The stock module profile on this engine: the stand-in image, DNS round robin and host-mode
/// ports (this kernel has no IPVS), ports away from anything else on the machine.
const MODULE: &[&str] = &[
    "-p",
    "module",
    "--set",
    "image.tag=test",
    "--set",
    "network.endpoint_mode=dnsrr",
    "--set",
    "network.publish_mode=host",
    "--set",
    "module.metadata_port=29990",
    "--set",
    "module.data_port=29991",
    "--stable",
    "1",
    "--timeout",
    "90",
];

/// A file's content as the running task of `service` sees it (its container on this engine).
fn read_in_task(engine: &Dockerd, service: &str, path: &str) -> String {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let container = engine.docker(&["ps", "-q", "--filter", &filter]);
    engine.docker(&["exec", container.trim(), "/bin/busybox", "cat", path])
}

fn with(base: &[&str], more: &[&str]) -> Vec<String> {
    base.iter().chain(more).map(|s| s.to_string()).collect()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn inspect(engine: &Dockerd, service: &str) -> Value {
    let text = engine.docker(&["service", "inspect", service]);
    let v: Value = serde_json::from_str(&text).unwrap();
    v[0].clone()
}

fn services(engine: &Dockerd) -> Vec<String> {
    let mut v: Vec<String> = engine
        .docker(&["service", "ls", "--format", "{{.Name}}"])
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// A templates directory holding one docker-stack.yml.j2.
fn templates(dir: &Path, name: &str, text: &str) -> String {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("docker-stack.yml.j2"), text).unwrap();
    d.display().to_string()
}

#[test]
fn controller_against_a_real_engine() {
    let t0 = Instant::now();
    let engine = Dockerd::start();
    eprintln!(
        "dockerd up and swarm initialised in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    engine.build_module_image("zenkoctl/module:test");
    let work = tempfile::tempdir().unwrap();

    nodes(&engine);
    let t = Instant::now();
    deploy_status_redeploy(&engine);
    eprintln!("deploy/status/redeploy: {:.1}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    update_one_service_and_secrets(&engine, work.path());
    eprintln!("update and secrets: {:.1}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    one_zenko_stack(&engine);
    eprintln!("one Zenko stack: {:.1}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    failures_and_rollback(&engine, work.path());
    eprintln!("failures and rollback: {:.1}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    status_codes(&engine, work.path());
    eprintln!("status codes: {:.1}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    tiers(&engine, work.path());
    eprintln!("tiers: {:.1}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    drift_watch_and_compatibility(&engine);
    eprintln!(
        "drift, watch, docker stack rm, preflight: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    teardown_and_immediate_redeploy(&engine);
    eprintln!("teardown and redeploy: {:.1}s", t.elapsed().as_secs_f64());
    eprintln!("total {:.1}s", t0.elapsed().as_secs_f64());
}

fn nodes(engine: &Dockerd) {
    let r = zenkoctl(engine, &["node", "label", "no-such-node"]);
    expect(&r, 2, "label of an unknown node");
    assert!(
        r.stderr.contains("no swarm node is named \"no-such-node\""),
        "{}",
        r.stderr
    );

    let r = zenkoctl(engine, &["--output", "json", "node", "ls"]);
    expect(&r, 0, "node ls");
    let nodes = r.json()["nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["storage"], false);
    let id = nodes[0]["id"].as_str().unwrap().to_string();

    let r = zenkoctl(engine, &["--output", "json", "node", "label"]);
    expect(&r, 0, "label");
    assert_eq!(r.json()["change"]["changed"], true);
    let labels = engine.docker(&["node", "inspect", &id, "--format", "{{json .Spec.Labels}}"]);
    assert!(labels.contains("\"io.zenko.type\":\"storage\""), "{labels}");
    // Idempotent: nothing written the second time.
    let version = engine.docker(&["node", "inspect", &id, "--format", "{{.Version.Index}}"]);
    let r = zenkoctl(engine, &["--output", "json", "node", "label", &id]);
    expect(&r, 0, "label again");
    assert_eq!(r.json()["change"]["changed"], false);
    assert_eq!(
        version,
        engine.docker(&["node", "inspect", &id, "--format", "{{.Version.Index}}"])
    );

    let r = zenkoctl(engine, &["node", "unlabel"]);
    expect(&r, 0, "unlabel");
    assert!(r.stdout.contains("removed io.zenko.type"), "{}", r.stdout);
    let r = zenkoctl(engine, &["--output", "json", "node", "unlabel"]);
    expect(&r, 0, "unlabel again");
    assert_eq!(r.json()["change"]["changed"], false);
    let labels = engine.docker(&["node", "inspect", &id, "--format", "{{json .Spec.Labels}}"]);
    assert!(!labels.contains("io.zenko.type"), "{labels}");
    // Concurrent writers: node updates by hand while zenkoctl labels and unlabels. Every
    // zenkoctl call must succeed (it re-reads and retries on "update out of sequence") and
    // no one's label may be lost (each update merges into the spec it just read).
    std::thread::scope(|scope| {
        let racer = scope.spawn(|| {
            for i in 0..15 {
                // The docker CLI does not retry a conflict itself: retry it here.
                let label = format!("race.{i}=yes");
                let ok = (0..20).any(|_| {
                    engine
                        .docker_raw(&["node", "update", "--label-add", &label, &id])
                        .status
                        .success()
                });
                assert!(ok, "docker node update kept failing");
            }
        });
        for i in 0..8 {
            let cmd = if i % 2 == 0 { "label" } else { "unlabel" };
            let r = zenkoctl(engine, &["node", cmd]);
            expect(&r, 0, &format!("node {cmd} during concurrent updates"));
        }
        racer.join().unwrap();
    });
    let labels = engine.docker(&["node", "inspect", &id, "--format", "{{json .Spec.Labels}}"]);
    for i in 0..15 {
        assert!(
            labels.contains(&format!("\"race.{i}\":\"yes\"")),
            "label race.{i} lost: {labels}"
        );
    }
    assert!(!labels.contains("io.zenko.type"), "{labels}");

    // Role and availability survived the full-spec updates.
    assert_eq!(
        engine
            .docker(&[
                "node",
                "inspect",
                &id,
                "--format",
                "{{.Spec.Role}} {{.Spec.Availability}}"
            ])
            .trim(),
        "manager active"
    );
}

fn deploy_status_redeploy(engine: &Dockerd) {
    // The storage label is gone (previous step): deploy labels the only node itself.
    let r = zenkoctl(
        engine,
        &args(&with(&["--output", "json", "deploy"], MODULE)),
    );
    expect(&r, 0, "deploy of the module profile");
    let doc = r.json();
    assert_eq!(doc["deploy"]["outcome"]["outcome"], "converged", "{doc}");
    assert_eq!(doc["deploy"]["preflight"]["label_changed"], true);
    assert_eq!(doc["deploy"]["services"][0]["service"], "zenko_s3-dmd");
    assert_eq!(doc["deploy"]["services"][0]["action"], "create");
    assert_eq!(doc["deploy"]["networks_created"][0], "zenko_backend");

    // Converted like `docker stack deploy`: labels, aliases, sorted env, update config.
    let svc = inspect(engine, "zenko_s3-dmd");
    let spec = &svc["Spec"];
    assert_eq!(spec["Labels"]["com.docker.stack.namespace"], "zenko");
    assert_eq!(
        spec["Labels"]["com.docker.stack.image"],
        "zenkoctl/module:test"
    );
    assert_eq!(spec["Labels"]["io.zenko.managed-by"], "zenkoctl");
    assert_eq!(
        spec["TaskTemplate"]["ContainerSpec"]["Labels"]["com.docker.stack.namespace"],
        "zenko"
    );
    assert_eq!(spec["TaskTemplate"]["Networks"][0]["Aliases"][0], "s3-dmd");
    assert_eq!(
        spec["TaskTemplate"]["Placement"]["Constraints"][0],
        "node.labels.io.zenko.type == storage"
    );
    assert_eq!(spec["UpdateConfig"]["Parallelism"], 1);
    assert_eq!(spec["UpdateConfig"]["FailureAction"], "rollback");
    assert_eq!(
        spec["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"],
        30_000_000_000u64
    );
    assert_eq!(spec["EndpointSpec"]["Mode"], "dnsrr");
    let mounts = spec["TaskTemplate"]["ContainerSpec"]["Mounts"]
        .as_array()
        .unwrap();
    assert_eq!(mounts[0]["Source"], "zenko_metadata");
    assert_eq!(
        mounts[0]["VolumeOptions"]["Labels"]["com.docker.stack.namespace"],
        "zenko"
    );

    // The docker CLI sees it as a stack.
    let ps = engine.docker(&[
        "stack",
        "ps",
        "zenko",
        "--format",
        "{{.Name}} {{.CurrentState}}",
    ]);
    assert!(ps.contains("zenko_s3-dmd.1 Running"), "{ps}");
    let ls = engine.docker(&["stack", "ls", "--format", "{{.Name}} {{.Services}}"]);
    assert!(ls.contains("zenko 1"), "{ls}");

    // Healthy, with both probes answering through the published ports.
    let r = zenkoctl(engine, &["--output", "json", "status"]);
    expect(&r, 0, "status of a healthy stack");
    let st = r.json();
    assert_eq!(st["health"], "healthy", "{st}");
    assert_eq!(st["services"][0]["running"], 1);
    assert_eq!(st["services"][0]["tasks"][0]["state"], "running");
    let probes = st["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 2, "{st}");
    assert!(probes.iter().all(|p| p["state"] == "ok"), "{st}");
    let human = zenkoctl(engine, &["status"]);
    expect(&human, 0, "status (human)");
    assert!(
        human.stdout.contains("zenko_s3-dmd 1/1 running"),
        "{}",
        human.stdout
    );

    // Redeploy with nothing changed: no update call (version and rollback target untouched).
    let version = svc["Version"]["Index"].clone();
    let r = zenkoctl(
        engine,
        &[
            "--output",
            "json",
            "plan",
            "-p",
            "module",
            "--set",
            "image.tag=test",
            "--set",
            "network.endpoint_mode=dnsrr",
            "--set",
            "network.publish_mode=host",
            "--set",
            "module.metadata_port=29990",
            "--set",
            "module.data_port=29991",
        ],
    );
    expect(&r, 0, "plan");
    assert_eq!(r.json()["changes_nothing"], true, "{}", r.stdout);
    let r = zenkoctl(
        engine,
        &args(&with(&["--output", "json", "deploy"], MODULE)),
    );
    expect(&r, 0, "idempotent redeploy");
    assert_eq!(r.json()["deploy"]["services"][0]["action"], "unchanged");
    let again = inspect(engine, "zenko_s3-dmd");
    assert_eq!(again["Version"]["Index"], version);
    assert!(
        again.get("PreviousSpec").is_none_or(|p| p.is_null()),
        "a no-op must not create a rollback target"
    );
}

fn update_one_service_and_secrets(engine: &Dockerd, work: &Path) {
    let secret = work.join("credentials.txt");
    std::fs::write(&secret, "export SCALITY_ACCESS_KEY_ID=one\n").unwrap();
    let tpl = templates(
        work,
        "two",
        &format!(
            r#"version: "3.8"
services:
  one:
    image: zenkoctl/module:test
    environment:
      ZED: last
      LEVEL: "{{{{ module.log_level }}}}"
      ALPHA: first
    secrets:
      - source: creds
        target: s3-credentials
    networks: [backend]
    deploy:
      endpoint_mode: dnsrr
      labels:
        io.zenko.managed-by: zenkoctl
  two:
    image: zenkoctl/module:test
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
secrets:
  creds:
    file: {}
    labels:
      io.zenko.managed-by: zenkoctl
"#,
            secret.display()
        ),
    );
    let base = [
        "--templates",
        tpl.as_str(),
        "--set",
        "stack=pair",
        "--stable",
        "1",
    ];
    let r = zenkoctl(engine, &args(&with(&["--output", "json", "deploy"], &base)));
    expect(&r, 0, "deploy of a two-service stack");
    let doc = r.json();
    let secret_name = doc["deploy"]["secrets_created"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(secret_name.starts_with("pair_creds."), "{secret_name}");
    // The earlier `zenko` stack was torn down (one Zenko stack at a time).
    assert_eq!(doc["deploy"]["torn_down"][0]["stack"], "zenko", "{doc}");
    assert_eq!(services(engine), vec!["pair_one", "pair_two"]);
    let one = inspect(engine, "pair_one");
    let env = one["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"].clone();
    assert_eq!(
        env,
        serde_json::json!(["ALPHA=first", "LEVEL=info", "ZED=last"])
    );
    // Mounted at its stable target, whatever the hashed name.
    let sref = &one["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"][0];
    assert_eq!(sref["File"]["Name"], "s3-credentials");
    assert_eq!(sref["SecretName"], secret_name.as_str());
    let content = read_in_task(engine, "pair_one", "/run/secrets/s3-credentials");
    assert_eq!(content, "export SCALITY_ACCESS_KEY_ID=one\n");

    // Change what only `one` uses: `one` is updated in place, `two` untouched.
    let debug_deploy = with(
        &[
            "--output",
            "json",
            "deploy",
            "--set",
            "module.log_level=debug",
        ],
        &base,
    );
    let (one_id, one_version) = (one["ID"].clone(), one["Version"]["Index"].as_u64().unwrap());
    let two_version = inspect(engine, "pair_two")["Version"]["Index"].clone();
    let r = zenkoctl(engine, &args(&debug_deploy));
    expect(&r, 0, "update of one service");
    let doc = r.json();
    let actions: Vec<(String, String)> = doc["deploy"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().into(),
                s["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("pair_one".into(), "update".into()),
            ("pair_two".into(), "unchanged".into())
        ]
    );
    let one = inspect(engine, "pair_one");
    assert_eq!(one["ID"], one_id, "updated in place, not recreated");
    assert!(one["Version"]["Index"].as_u64().unwrap() > one_version);
    assert_eq!(
        one["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Env"][1],
        "LEVEL=info"
    );
    assert_eq!(
        one["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"][1],
        "LEVEL=debug"
    );
    assert_eq!(inspect(engine, "pair_two")["Version"]["Index"], two_version);

    // Rotate the secret: a new hashed secret, same target, the old one removed after convergence.
    std::fs::write(&secret, "export SCALITY_ACCESS_KEY_ID=two\n").unwrap();
    let r = zenkoctl(engine, &args(&debug_deploy));
    expect(&r, 0, "secret rotation");
    let doc = r.json();
    let new_name = doc["deploy"]["secrets_created"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_name, secret_name);
    assert_eq!(
        doc["deploy"]["superseded_removed"][0],
        secret_name.as_str(),
        "{doc}"
    );
    let listed = engine.docker(&["secret", "ls", "--format", "{{.Name}}"]);
    assert_eq!(listed.trim(), new_name);
    let content = read_in_task(engine, "pair_one", "/run/secrets/s3-credentials");
    assert_eq!(content, "export SCALITY_ACCESS_KEY_ID=two\n");

    // A secret that Swarm would refuse is refused before anything is created.
    std::fs::write(&secret, vec![b'x'; 600 * 1024]).unwrap();
    let r = zenkoctl(engine, &args(&with(&["deploy"], &base)));
    expect(&r, 2, "oversized secret");
    assert!(r.stderr.contains("secrets.creds.file"), "{}", r.stderr);
}

fn one_zenko_stack(engine: &Dockerd) {
    // `pair` is deployed; deploying the module under another name replaces it.
    let r = zenkoctl(
        engine,
        &args(&with(
            &["--output", "json", "deploy", "--set", "stack=zenko"],
            MODULE,
        )),
    );
    expect(&r, 0, "deploy of a second, differently named Zenko stack");
    let doc = r.json();
    assert_eq!(doc["deploy"]["torn_down"][0]["stack"], "pair", "{doc}");
    assert_eq!(services(engine), vec!["zenko_s3-dmd"]);
    let nets = engine.docker(&[
        "network",
        "ls",
        "--filter",
        "label=com.docker.stack.namespace=pair",
        "-q",
    ]);
    assert!(nets.trim().is_empty(), "pair's networks are gone: {nets}");
    assert!(
        engine.docker(&["secret", "ls", "-q"]).trim().is_empty(),
        "pair's secrets are gone"
    );
}

fn failures_and_rollback(engine: &Dockerd, work: &Path) {
    // A task that cannot start: its command does not exist.
    let tpl = templates(
        work,
        "bad",
        r#"version: "3.8"
services:
  bad:
    image: zenkoctl/module:test
    entrypoint: ["/does-not-exist"]
    deploy:
      labels:
        io.zenko.managed-by: zenkoctl
      restart_policy:
        condition: any
        delay: 100ms
  crash:
    image: zenkoctl/module:test
    entrypoint: ["/bin/busybox", "sh", "-c", "echo starting up; echo cannot open the store >&2; exit 3"]
    deploy:
      labels:
        io.zenko.managed-by: zenkoctl
      restart_policy:
        condition: any
        delay: 100ms
"#,
    );
    let r = zenkoctl(
        engine,
        &[
            "--output",
            "json",
            "deploy",
            "--templates",
            &tpl,
            "--set",
            "stack=broken",
            "--timeout",
            "120",
        ],
    );
    expect(&r, 5, "deploy with a bad command");
    let doc = r.json();
    let failures = doc["deploy"]["outcome"]["failures"]
        .as_array()
        .unwrap()
        .clone();
    let bad = failures
        .iter()
        .find(|f| f["service"] == "broken_bad")
        .expect("broken_bad reported");
    let err = bad["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("/does-not-exist"),
        "the task error names the command: {bad}"
    );
    assert!(bad["node"].as_str().unwrap_or_default().len() > 3, "{bad}");
    let crash = failures
        .iter()
        .find(|f| f["service"] == "broken_crash")
        .expect("broken_crash reported");
    assert_eq!(crash["exit_code"], 3, "{crash}");
    let logs = crash["logs"].to_string();
    assert!(
        logs.contains("cannot open the store"),
        "last log lines: {crash}"
    );

    // Human report, and --rollback removes what this deploy created.
    let r = zenkoctl(
        engine,
        &[
            "deploy",
            "--templates",
            &tpl,
            "--set",
            "stack=broken",
            "--rollback",
            "--timeout",
            "120",
        ],
    );
    expect(&r, 7, "failed deploy with --rollback");
    assert!(r.stdout.contains("service broken_bad:"), "{}", r.stdout);
    assert!(r.stdout.contains("error:"), "{}", r.stdout);
    // The earlier failed deploy's services were updated (unchanged) — nothing to remove but
    // the rollback ran; now a fresh failed deploy after teardown removes its creations.
    expect(
        &zenkoctl(engine, &["teardown"]),
        0,
        "teardown of the broken stack",
    );
    let r = zenkoctl(
        engine,
        &[
            "--output",
            "json",
            "deploy",
            "--templates",
            &tpl,
            "--set",
            "stack=broken",
            "--rollback",
            "--timeout",
            "120",
        ],
    );
    expect(&r, 7, "fresh failed deploy with --rollback");
    let removed = r.json()["deploy"]["rollback"]["removed"].to_string();
    assert!(
        removed.contains("broken_bad") && removed.contains("broken_crash"),
        "{removed}"
    );
    assert!(services(engine).is_empty(), "{:?}", services(engine));

    // A failed update of a healthy service is rolled back to the previous spec.
    engine.build(
        "zenkoctl/module:broken",
        "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\", \"sh\", \"-c\", \"echo broken build; exit 1\"]\n",
        &[],
    );
    let r = zenkoctl(engine, &args(&with(&["deploy"], MODULE)));
    expect(&r, 0, "deploy of the good module");
    let good = inspect(engine, "zenko_s3-dmd");
    let mut bad_args = with(&["--output", "json", "deploy", "--rollback"], MODULE);
    bad_args.iter_mut().for_each(|a| {
        if a == "image.tag=test" {
            *a = "image.tag=broken".into()
        }
    });
    let r = zenkoctl(engine, &args(&bad_args));
    expect(&r, 7, "failed update with --rollback");
    let doc = r.json();
    assert_eq!(
        doc["deploy"]["rollback"]["rolled_back"][0], "zenko_s3-dmd",
        "{doc}"
    );
    let after = inspect(engine, "zenko_s3-dmd");
    assert_eq!(after["ID"], good["ID"]);
    assert_eq!(
        after["Spec"]["Labels"]["com.docker.stack.image"],
        "zenkoctl/module:test"
    );
    let r = zenkoctl(engine, &["--output", "json", "status"]);
    // The rolled-back service is running the good image again (the update state says
    // rollback, which status reports as degraded until the next deploy).
    assert_eq!(r.json()["services"][0]["running"], 1, "{}", r.stdout);
}

fn status_codes(engine: &Dockerd, work: &Path) {
    // Degraded: the metadata server answers, the data server does not.
    let tpl = templates(
        work,
        "half",
        r#"version: "3.8"
services:
  s3-dmd:
    image: zenkoctl/module:test
    command: [serve, --metadata-addr, "0.0.0.0:9990", --data-addr, "0.0.0.0:9991"]
    environment:
      FAKE_NO_DATA: "1"
    ports:
      - {target: 9990, published: 29990, protocol: tcp, mode: host}
      - {target: 9991, published: 29991, protocol: tcp, mode: host}
    deploy:
      endpoint_mode: dnsrr
      labels:
        io.zenko.managed-by: zenkoctl
"#,
    );
    let r = zenkoctl(engine, &["deploy", "--templates", &tpl, "--stable", "0"]);
    expect(&r, 0, "deploy of a half-working module");
    let r = zenkoctl(engine, &["--output", "json", "status"]);
    expect(&r, 10, "status of a degraded stack");
    let doc = r.json();
    assert_eq!(doc["health"], "degraded");
    let probes = doc["probes"].as_array().unwrap();
    assert!(
        probes
            .iter()
            .any(|p| p["target"] == "zenko_s3-dmd metadata" && p["state"] == "ok"),
        "{doc}"
    );
    assert!(
        probes
            .iter()
            .any(|p| p["target"] == "zenko_s3-dmd data" && p["state"] == "failed"),
        "{doc}"
    );

    // Down: nothing running.
    engine.docker(&["service", "scale", "-d", "zenko_s3-dmd=0"]);
    let started = Instant::now();
    loop {
        let r = zenkoctl(engine, &["--output", "json", "status"]);
        if r.code == 11 {
            assert_eq!(r.json()["health"], "down");
            break;
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "never reported down: {}",
            r.stdout
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    expect(&zenkoctl(engine, &["teardown"]), 0, "teardown");
    let r = zenkoctl(engine, &["--output", "json", "status"]);
    expect(&r, 11, "status with no stack");
    assert!(
        r.stdout.contains("no Zenko stack is deployed"),
        "{}",
        r.stdout
    );
}

fn teardown_and_immediate_redeploy(engine: &Dockerd) {
    let r = zenkoctl(engine, &["teardown"]);
    expect(&r, 0, "teardown of nothing");
    assert!(r.stdout.contains("nothing to remove"), "{}", r.stdout);
    for i in 0..3 {
        let r = zenkoctl(engine, &args(&with(&["deploy"], MODULE)));
        expect(&r, 0, &format!("deploy {i}"));
        let r = zenkoctl(engine, &["--output", "json", "teardown", "--volumes"]);
        expect(&r, 0, &format!("teardown {i}"));
        let doc = r.json();
        assert_eq!(doc["removed"][0]["stack"], "zenko");
        // Gone means gone: no service, task, network or volume of the stack is left.
        assert!(services(engine).is_empty());
        let nets = engine.docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.stack.namespace=zenko",
        ]);
        assert!(nets.trim().is_empty(), "{nets}");
        let vols = engine.docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.stack.namespace=zenko",
        ]);
        assert!(vols.trim().is_empty(), "{vols}");
    }
    // Without --volumes the data stays; a later `teardown --volumes` finds and removes it.
    expect(
        &zenkoctl(engine, &args(&with(&["deploy"], MODULE))),
        0,
        "deploy",
    );
    expect(
        &zenkoctl(engine, &["teardown"]),
        0,
        "teardown keeping volumes",
    );
    let vols = engine.docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        "label=com.docker.stack.namespace=zenko",
    ]);
    assert_eq!(vols.lines().count(), 2, "{vols}");
    let r = zenkoctl(engine, &["--output", "json", "teardown", "--volumes"]);
    expect(&r, 0, "teardown --volumes of a removed stack");
    assert_eq!(
        r.json()["removed"][0]["volumes"].as_array().unwrap().len(),
        2,
        "{}",
        r.stdout
    );
    let vols = engine.docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        "label=com.docker.stack.namespace=zenko",
    ]);
    assert!(vols.trim().is_empty(), "{vols}");
}

fn drift_watch_and_compatibility(engine: &Dockerd) {
    let r = zenkoctl(engine, &args(&with(&["deploy"], MODULE)));
    expect(&r, 0, "deploy");

    // A change made by hand is drift: plan shows it, deploy puts the spec back.
    engine.docker(&[
        "service",
        "update",
        "-d",
        "--env-add",
        "DRIFT=1",
        "zenko_s3-dmd",
    ]);
    let plan_args: Vec<String> = with(&["--output", "json", "plan"], &MODULE[..MODULE.len() - 4]);
    let r = zenkoctl(engine, &args(&plan_args));
    expect(&r, 0, "plan after drift");
    let doc = r.json();
    assert_eq!(doc["changes_nothing"], false);
    assert_eq!(doc["plan"]["services"][0]["action"], "update", "{doc}");
    assert!(
        doc["plan"]["services"][0]["fields"]
            .to_string()
            .contains("/TaskTemplate/ContainerSpec/Env"),
        "{doc}"
    );
    let r = zenkoctl(
        engine,
        &args(&with(&["--output", "json", "deploy"], MODULE)),
    );
    expect(&r, 0, "deploy over drift");
    assert_eq!(r.json()["deploy"]["services"][0]["action"], "update");
    let env =
        inspect(engine, "zenko_s3-dmd")["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"].to_string();
    assert!(!env.contains("DRIFT"), "{env}");

    // status --watch: one JSON document per line, until stopped.
    let mut child = Command::new(env!("CARGO_BIN_EXE_zenkoctl"))
        .args([
            "--host",
            &engine.host,
            "--output",
            "json",
            "status",
            "--watch",
            "--interval",
            "1",
        ])
        .env_remove("DOCKER_HOST")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(lines.len() >= 2, "{lines:?}");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["health"], "healthy", "{l}");
    }

    // `docker stack rm` works on our stack; our teardown then finishes the job (waits until
    // the networks are really gone).
    engine.docker(&["stack", "rm", "zenko"]);
    let r = zenkoctl(engine, &["teardown"]);
    expect(&r, 0, "teardown after docker stack rm");
    let nets = engine.docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        "label=com.docker.stack.namespace=zenko",
    ]);
    assert!(nets.trim().is_empty(), "{nets}");

    // Preflight: a drained storage node is refused before anything is created.
    let id = engine.docker(&["node", "ls", "-q"]).trim().to_string();
    engine.docker(&["node", "update", "--availability", "drain", &id]);
    let r = zenkoctl(engine, &args(&with(&["deploy"], MODULE)));
    engine.docker(&["node", "update", "--availability", "active", &id]);
    expect(&r, 5, "deploy to a drained storage node");
    assert!(
        r.stderr.contains("must be ready and active"),
        "{}",
        r.stderr
    );
    assert!(services(engine).is_empty());

    // Preflight: an image that is nowhere.
    let mut missing = with(&["deploy"], MODULE);
    missing.iter_mut().for_each(|a| {
        if a == "image.tag=test" {
            *a = "image.tag=nowhere".into()
        }
    });
    let r = zenkoctl(engine, &args(&missing));
    expect(&r, 5, "deploy of an image that exists nowhere");
    assert!(
        r.stderr
            .contains("zenkoctl/module:nowhere is neither on the engine"),
        "{}",
        r.stderr
    );
    assert!(services(engine).is_empty());
}

/// Services on the storage node converge before the others are even created (Swarm ignores
/// depends_on; the front needs the module to answer).
fn tiers(engine: &Dockerd, work: &Path) {
    let stack = |store_entrypoint: &str| {
        format!(
            r#"version: "3.8"
services:
  front:
    image: zenkoctl/module:test
    deploy:
      labels:
        io.zenko.managed-by: zenkoctl
  store:
    image: zenkoctl/module:test
    entrypoint: {store_entrypoint}
    deploy:
      placement:
        constraints: [node.labels.io.zenko.type == storage]
      restart_policy:
        delay: 100ms
      labels:
        io.zenko.managed-by: zenkoctl
"#
        )
    };
    let good = templates(
        work,
        "tiers-good",
        &stack(r#"["/bin/busybox", "sh", "/serve.sh"]"#),
    );
    let r = zenkoctl(
        engine,
        &[
            "deploy",
            "--templates",
            &good,
            "--set",
            "stack=tiers",
            "--stable",
            "0",
        ],
    );
    expect(&r, 0, "tiered deploy");
    let waited = r
        .stderr
        .find("converge: tiers_store")
        .expect("waits for the storage tier");
    let front = r
        .stderr
        .find("creating service tiers_front")
        .expect("creates the front");
    assert!(
        waited < front,
        "the front is created after the storage tier converged:\n{}",
        r.stderr
    );
    expect(&zenkoctl(engine, &["teardown"]), 0, "teardown");

    let bad = templates(work, "tiers-bad", &stack(r#"["/does-not-exist"]"#));
    let r = zenkoctl(
        engine,
        &[
            "deploy",
            "--templates",
            &bad,
            "--set",
            "stack=tiers",
            "--timeout",
            "60",
        ],
    );
    expect(&r, 5, "tiered deploy whose storage tier fails");
    assert_eq!(
        services(engine),
        vec!["tiers_store"],
        "the front was never created"
    );
    expect(&zenkoctl(engine, &["teardown"]), 0, "teardown");
}
