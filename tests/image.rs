//! `zenkoctl build` / `push` / `healthcheck` against a real engine and real registries: the
//! manager engine of the swarm lab (tests/swarm-lab.sh), Debian's docker-registry, open on
//! 10.99.0.1:5000 and htpasswd-protected on 10.99.0.1:5001.
//!
//! One test drives the whole sequence (the lab is started once and torn down by `Drop`, also
//! when an assertion fails).

mod lab;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use futures_util::StreamExt as _;
use lab::Lab;
use serde_json::Value;

const ZENKOCTL: &str = env!("CARGO_BIN_EXE_zenkoctl");

fn zenkoctl(lab: &Lab, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(ZENKOCTL);
    cmd.env("DOCKER_HOST", lab.manager())
        .env_remove("DOCKER_CONFIG")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run zenkoctl")
}

fn json_ok(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The manifest digest the registry itself serves for `repo:tag` (HEAD, schema 2).
fn registry_digest(registry: &str, repo: &str, tag: &str, user: Option<(&str, &str)>) -> String {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-I",
        "-H",
        "Accept: application/vnd.docker.distribution.manifest.v2+json",
    ]);
    if let Some((u, p)) = user {
        cmd.args(["-u", &format!("{u}:{p}")]);
    }
    let out = cmd
        .arg(format!("http://{registry}/v2/{repo}/manifests/{tag}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "manifest HEAD: {text}");
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("docker-content-digest")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Docker-Content-Digest in {text}"))
}

fn write_config(dir: &Path, json: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), json).unwrap();
    dir.to_path_buf()
}

fn wait_health(lab: &Lab, container: &str, want: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = lab.docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", container]);
        if status == want || std::time::Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

#[test]
fn build_run_and_push_the_offline_image() {
    let lab = Lab::up(1);
    let registry = lab.get("ZENKOCTL_LAB_REGISTRY").to_string();
    let auth_registry = lab.get("ZENKOCTL_LAB_AUTH_REGISTRY").to_string();
    let user = lab.get("ZENKOCTL_LAB_AUTH_USER").to_string();
    let password = lab.get("ZENKOCTL_LAB_AUTH_PASSWORD").to_string();
    let tmp = tempfile::tempdir().unwrap();

    // --- build: a stripped copy of this zenkoctl, as a release build would ship it.
    let binary = tmp.path().join("zenkoctl");
    let strip = Command::new("strip")
        .arg("-o")
        .arg(&binary)
        .arg(ZENKOCTL)
        .status()
        .expect("run strip (binutils)");
    assert!(strip.success());
    let binary_size = std::fs::metadata(&binary).unwrap().len() as i64;
    let image = format!("{auth_registry}/zenkoctl/module:test");
    let built = json_ok(
        &zenkoctl(
            &lab,
            &[
                "build",
                "--binary",
                binary.to_str().unwrap(),
                "--image",
                &image,
                "--output",
                "json",
            ],
            &[],
        ),
        "zenkoctl build",
    );
    assert_eq!(built["variant"], "offline");
    let img = &built["image"];
    assert_eq!(img["tag"], image.as_str());
    assert!(img["id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(img["user"], "10001:10001");
    assert_eq!(
        img["entrypoint"],
        serde_json::json!(["/usr/local/bin/zenkoctl"])
    );
    assert_eq!(img["cmd"], serde_json::json!(["serve"]));
    assert_eq!(
        img["healthcheck"],
        serde_json::json!(["CMD", "/usr/local/bin/zenkoctl", "healthcheck"])
    );
    // Size: the binary plus its loader, glibc and libgcc_s, and a few /etc files. The image
    // adds at most 6 MB to the binary (a release zenkoctl keeps the whole under 30 MB).
    let size = img["size"].as_i64().unwrap();
    let overhead = size - binary_size;
    eprintln!("offline image: {size} bytes, binary {binary_size}, runtime overhead {overhead}");
    assert!(
        (0..6_000_000).contains(&overhead),
        "the image is {size} bytes for a {binary_size}-byte binary"
    );
    let files: Vec<&str> = built["details"]["runtime_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(files.iter().any(|f| f.contains("ld-linux")), "{files:?}");
    assert!(files.iter().any(|f| f.contains("libc.so")), "{files:?}");
    // The image's layers hold exactly the rootfs: no base image, no history before it.
    let history = lab.docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        &image,
    ]);
    assert!(
        !history.contains("ADD file:"),
        "a base image slipped in:\n{history}"
    );

    // --- run: the binary starts in the scratch image as the non-root user.
    let version = lab.docker_ok(&["run", "--rm", &image, "--version"]);
    assert!(version.starts_with("zenkoctl "), "{version}");
    // The healthcheck command inside the image: healthy against a 200, not against a 404.
    let ok = lab.docker_ok(&[
        "run",
        "--rm",
        &image,
        "healthcheck",
        "--url",
        &format!("http://{registry}/v2/"),
    ]);
    assert!(ok.contains("healthy"), "{ok}");
    let not_found = lab.docker(&[
        "run",
        "--rm",
        &image,
        "healthcheck",
        "--url",
        &format!("http://{registry}/nope"),
    ]);
    assert_eq!(not_found.status.code(), Some(1), "{not_found:?}");
    assert!(
        String::from_utf8_lossy(&not_found.stderr).contains("404"),
        "{not_found:?}"
    );

    // --- the image's own HEALTHCHECK, as the engine runs it: an image derived from it whose
    // PID 1 is a static busybox httpd serving /_/health on 9991 (the server's data port). The
    // derived image is built from a directory context, which exercises .dockerignore too.
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("www/_")).unwrap();
    std::fs::create_dir_all(ctx.join("ignored-dir")).unwrap();
    std::fs::write(ctx.join("www/_/health"), "ok\n").unwrap();
    std::fs::write(ctx.join("ignored-dir/file"), "x").unwrap();
    std::fs::write(ctx.join("a.secret"), "x").unwrap();
    std::fs::write(ctx.join("keep.secret"), "x").unwrap();
    std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    std::fs::write(
        ctx.join(".dockerignore"),
        "ignored-dir\n*.secret\n!keep.secret\nDockerfile.test\n",
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile.test"),
        format!(
            "FROM {image}\nCOPY . /ctx/\nCOPY busybox /bin/busybox\nCOPY www/ /www/\n\
             ENTRYPOINT [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"9991\", \"-h\", \"/www\"]\nCMD []\n"
        ),
    )
    .unwrap();
    let probe_image = "zenkoctl-test/health:test";
    json_ok(
        &zenkoctl(
            &lab,
            &[
                "build",
                "--source",
                ctx.to_str().unwrap(),
                "--file",
                ctx.join("Dockerfile.test").to_str().unwrap(),
                "--image",
                probe_image,
                "--output",
                "json",
            ],
            &[],
        ),
        "zenkoctl build --source",
    );
    let listed = lab.docker_ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/busybox",
        probe_image,
        "find",
        "/ctx",
    ]);
    let listed: Vec<&str> = listed.lines().collect();
    assert!(listed.contains(&"/ctx/keep.secret"), "{listed:?}");
    assert!(listed.contains(&"/ctx/www/_/health"), "{listed:?}");
    assert!(listed.contains(&"/ctx/.dockerignore"), "{listed:?}");
    for gone in ["/ctx/a.secret", "/ctx/ignored-dir", "/ctx/Dockerfile.test"] {
        assert!(
            !listed.contains(&gone),
            "{gone} should have been left out: {listed:?}"
        );
    }
    // A new named volume on the data directory starts out owned by the image's user (the
    // engine copies the mount point's ownership), so the server can write there.
    let wrote = lab.docker(&[
        "run",
        "--rm",
        "-v",
        "zenkoctl-test-data:/var/lib/zenko/data",
        "--entrypoint",
        "/bin/busybox",
        probe_image,
        "touch",
        "/var/lib/zenko/data/written",
    ]);
    let _ = lab.docker(&["volume", "rm", "zenkoctl-test-data"]);
    assert!(
        wrote.status.success(),
        "the data volume is not writable by the user: {wrote:?}"
    );
    let whoami = lab.docker_ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/busybox",
        probe_image,
        "id",
        "-u",
    ]);
    assert_eq!(whoami, "10001");

    let healthy = "zenkoctl-test-healthy";
    let unhealthy = "zenkoctl-test-unhealthy";
    let _ = lab.docker(&["rm", "-f", healthy, unhealthy]);
    lab.docker_ok(&[
        "run",
        "-d",
        "--name",
        healthy,
        "--health-interval",
        "1s",
        probe_image,
    ]);
    // The same image with the server on another port: nothing on 9991/9990, so unhealthy.
    lab.docker_ok(&[
        "run",
        "-d",
        "--name",
        unhealthy,
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        "--health-start-period",
        "0s",
        probe_image,
        "-p",
        "9992",
    ]);
    let status_ok = wait_health(&lab, healthy, "healthy");
    let status_bad = wait_health(&lab, unhealthy, "unhealthy");
    let log = lab.docker_ok(&["inspect", "-f", "{{json .State.Health.Log}}", unhealthy]);
    let _ = lab.docker(&["rm", "-f", healthy, unhealthy]);
    assert_eq!(status_ok, "healthy");
    assert_eq!(status_bad, "unhealthy", "{log}");
    assert!(log.contains("nothing answers"), "{log}");

    // --- push without credentials to the protected registry: refused, and says what to do.
    let empty_config = write_config(&tmp.path().join("no-creds"), "{}");
    let out = zenkoctl(
        &lab,
        &[
            "push",
            "--image",
            &image,
            "--docker-config",
            empty_config.to_str().unwrap(),
            "--output",
            "json",
        ],
        &[],
    );
    assert!(!out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = doc["error"].as_str().unwrap();
    assert!(err.contains("no basic auth credentials"), "{err}");
    assert!(
        err.contains(&format!("docker login {auth_registry}")),
        "{err}"
    );

    // --- bollard's own header (standard base64) for these credentials: the daemon cannot
    // decode it, pushes anonymously, and the registry refuses. This is the bug the URL-safe
    // header avoids, and these credentials trigger it.
    let creds = bollard::auth::DockerCredentials {
        username: Some(user.clone()),
        password: Some(password.clone()),
        serveraddress: Some(auth_registry.clone()),
        ..Default::default()
    };
    let standard =
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_string(&creds).unwrap());
    assert!(
        standard.contains(['+', '/']),
        "the lab credentials must exercise the bug: {standard}"
    );
    let socket = lab.manager().trim_start_matches("unix://").to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let push_with = |docker: bollard::Docker| {
        let creds = creds.clone();
        let repo = format!("{auth_registry}/zenkoctl/module");
        rt.block_on(async move {
            let options = bollard::query_parameters::PushImageOptionsBuilder::new()
                .tag("test")
                .build();
            let mut stream = docker.push_image(&repo, Some(options), Some(creds));
            let mut result = Ok(());
            while let Some(item) = stream.next().await {
                if let Err(e) = item {
                    result = Err(e.to_string());
                    break;
                }
            }
            result
        })
    };
    let raw =
        bollard::Docker::connect_with_unix(&socket, 120, bollard::API_DEFAULT_VERSION).unwrap();
    let err = push_with(raw.clone()).expect_err("bollard's standard-base64 header must be refused");
    assert!(
        err.contains("no basic auth credentials") || err.contains("unauthorized"),
        "{err}"
    );
    // The same bollard call with the header re-encoded URL-safe goes through.
    let fixed = raw.with_request_modifier(zenkoctl::image::auth::url_safe_registry_headers);
    push_with(fixed).expect("the URL-safe header is accepted");

    // --- zenkoctl push with an `auths` entry: the digest printed is the registry's.
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = write_config(
        &tmp.path().join("auths"),
        &format!(r#"{{"auths": {{"https://{auth_registry}/v1/": {{"auth": "{auth}"}}}}}}"#),
    );
    let pushed = json_ok(
        &zenkoctl(
            &lab,
            &["push", "--image", &image, "--output", "json"],
            &[("DOCKER_CONFIG", config.to_str().unwrap())],
        ),
        "zenkoctl push (auths)",
    );
    let digest = pushed["image"]["digest"].as_str().unwrap().to_string();
    assert_eq!(pushed["authenticated"], true);
    assert_eq!(pushed["image"]["id"], built["image"]["id"]);
    assert_eq!(pushed["image"]["size"], built["image"]["size"]);
    assert_eq!(
        digest,
        registry_digest(
            &auth_registry,
            "zenkoctl/module",
            "test",
            Some((&user, &password))
        )
    );
    assert_eq!(
        pushed["image"]["pinned"],
        format!("{auth_registry}/zenkoctl/module@{digest}")
    );

    // --- what a deploy pins: the registry's digest, asked through the engine with the same
    // credentials (URL-safe), equals the pushed one; without credentials it is refused.
    let image_ref = zenkoctl::image::ImageRef::parse(&image).unwrap();
    let resolved = rt
        .block_on(async {
            let engine = zenkoctl::engine::Engine::connect(Some(lab.manager())).await?;
            zenkoctl::image::resolve_digest(&engine, &image_ref, Some(&config)).await
        })
        .expect("resolve the pushed digest through the engine");
    assert_eq!(resolved.digest, digest);
    assert_eq!(resolved.pinned, format!("{image}@{digest}"));
    assert!(
        resolved.platforms.contains(&"linux/amd64".to_string()),
        "{:?}",
        resolved.platforms
    );
    let anonymous = rt.block_on(async {
        let engine = zenkoctl::engine::Engine::connect(Some(lab.manager())).await?;
        zenkoctl::image::resolve_digest(&engine, &image_ref, Some(&empty_config)).await
    });
    let err = format!(
        "{:#}",
        anonymous.expect_err("the protected registry needs credentials")
    );
    assert!(err.contains("no credentials for"), "{err}");

    // --- through a credential helper (credsStore), as the docker client runs it; human output.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-zenkotest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\n[ \"$server\" = \"{auth_registry}\" ] || \
             {{ echo 'credentials not found in native keychain'; exit 1; }}\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}' \"$server\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = write_config(&tmp.path().join("store"), r#"{"credsStore": "zenkotest"}"#);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    lab.docker_ok(&[
        "tag",
        &image,
        &format!("{auth_registry}/zenkoctl/module:helper"),
    ]);
    let out = zenkoctl(
        &lab,
        &[
            "push",
            "--image",
            &format!("{auth_registry}/zenkoctl/module:helper"),
        ],
        &[("DOCKER_CONFIG", config.to_str().unwrap()), ("PATH", &path)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "push via the credential helper: {stdout}{stderr}"
    );
    assert!(
        stderr.contains("Pushed") || stderr.contains("Layer already exists"),
        "progress: {stderr}"
    );
    let helper_digest = registry_digest(
        &auth_registry,
        "zenkoctl/module",
        "helper",
        Some((&user, &password)),
    );
    assert!(
        stdout.contains(&format!("digest: {helper_digest}")),
        "{stdout}"
    );

    // --- the open registry, anonymously, the image named by the values (`lab` profile).
    lab.docker_ok(&["tag", &image, &format!("{registry}/zenkoctl/module:lab")]);
    let pushed = json_ok(
        &zenkoctl(
            &lab,
            &[
                "push",
                "-p",
                "lab",
                "--set",
                "image.tag=lab",
                "--output",
                "json",
            ],
            &[("DOCKER_CONFIG", empty_config.to_str().unwrap())],
        ),
        "zenkoctl push -p lab",
    );
    assert_eq!(pushed["authenticated"], false);
    assert_eq!(
        pushed["image"]["tag"],
        format!("{registry}/zenkoctl/module:lab")
    );
    assert_eq!(
        pushed["image"]["digest"].as_str().unwrap(),
        registry_digest(&registry, "zenkoctl/module", "lab", None)
    );
}

/// A build that fails inside the 200 stream is reported with the failing step's output.
#[test]
fn build_errors_inside_the_stream_are_reported_with_context() {
    let lab = Lab::up(1);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("Dockerfile"),
        "FROM scratch\nCOPY missing-file /x\n",
    )
    .unwrap();
    let out = zenkoctl(
        &lab,
        &[
            "build",
            "--source",
            tmp.path().to_str().unwrap(),
            "--file",
            tmp.path().join("Dockerfile").to_str().unwrap(),
            "--image",
            "zenkoctl-test/broken:1",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("building zenkoctl-test/broken:1"),
        "{stderr}"
    );
    assert!(stderr.contains("missing-file"), "{stderr}");
    assert!(
        stderr.contains("Step 2/"),
        "the failing step is shown: {stderr}"
    );
    assert!(stderr.contains("Dockerfile"), "which Dockerfile: {stderr}");
}
