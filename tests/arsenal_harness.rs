//! Checks the Arsenal conformance harness itself: every check suite must pass
//! against Arsenal's OWN reference servers (npm @scality/arsenal 8.5.16 with the
//! stand-ins of tests/arsenal/standins), and must be able to fail.
//! Needs `scripts/deps/arsenal.sh` (Node.js 20 + npm ci in tests/arsenal).

#[path = "common/arsenal.rs"]
mod arsenal;

use arsenal::RefMetadataOptions;

#[test]
fn data_checks_pass_against_reference_data_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = arsenal::start_ref_data(&data);
    let run = arsenal::assert_checks_pass("data-checks.js", &server.addr(), &[]);
    assert!(
        run.passed.unwrap() >= 30,
        "data suite shrank: {:?}",
        run.passed
    );
    // The reference lays objects out as <dataPath>/<stringHash(key) % 3511>/<key>;
    // the checks deleted everything they wrote.
    assert!(data.join("0").is_dir() && data.join("3510").is_dir());
    let status = server.stop();
    assert!(
        status.success(),
        "reference data server exit status on SIGTERM: {status}"
    );
}

#[test]
fn metadata_checks_pass_against_reference_metadata_server() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("md");
    // Pre-seed the deployment id the way CloudServer's entrypoint does (echo -n).
    std::fs::create_dir_all(&md).unwrap();
    let uuid = "6d9a0c3e-4c1b-4b8e-9f1a-2b3c4d5e6f70";
    std::fs::write(md.join("uuid"), uuid).unwrap();
    let server = arsenal::start_ref_metadata(&md, &RefMetadataOptions::default());
    let run = arsenal::assert_checks_pass(
        "metadata-checks.js",
        &server.addr(),
        &["--expect-uuid", uuid],
    );
    assert!(
        run.passed.unwrap() >= 25,
        "metadata suite shrank: {:?}",
        run.passed
    );
    assert!(
        md.join("rootDB").is_dir(),
        "reference keeps LevelDB in <path>/rootDB"
    );
    let status = server.stop();
    assert!(
        status.success(),
        "reference metadata server exit status on SIGTERM: {status}"
    );
}

#[test]
fn metadata_checks_pass_without_record_log() {
    let dir = tempfile::tempdir().unwrap();
    let opts = RefMetadataOptions {
        record_log: false,
        ..RefMetadataOptions::default()
    };
    let server = arsenal::start_ref_metadata(&dir.path().join("md"), &opts);
    arsenal::assert_checks_pass(
        "metadata-checks.js",
        &server.addr(),
        &[
            "--record-log",
            "false",
            "--only",
            "openDB,getUUID,record log",
        ],
    );
}

#[test]
fn checks_fail_against_the_wrong_server() {
    // The data checks aimed at the metadata daemon (socket.io's HTTP server) must
    // fail: proves that the suite cannot pass vacuously.
    let dir = tempfile::tempdir().unwrap();
    let md = arsenal::start_ref_metadata(&dir.path().join("md"), &RefMetadataOptions::default());
    // socket.io's HTTP server never answers non-socket.io paths, so requests
    // hang until the per-check timeout: keep it short and the selection small.
    let run = arsenal::run_checks(
        "data-checks.js",
        &md.addr(),
        &[
            "--timeout-ms",
            "1000",
            "--only",
            "diskUsage,put small object,wire: PUT /DataFile/ ->",
        ],
    );
    run.assert_some_failed();
    assert!(run
        .failures()
        .contains(&"put small object returns a 40-hex key"));
    assert_eq!(run.passed, Some(0), "{run:?}");
    assert_eq!(run.failed, Some(run.outcomes.len()), "{run:?}");
    assert!(run.outcomes.len() >= 3, "{run:?}");
}

#[test]
fn same_outcomes_on_two_reference_servers() {
    // What a conformance test does with our server: the same suite against the
    // reference and the candidate in one run, outcomes compared check by check.
    let dir = tempfile::tempdir().unwrap();
    let a = arsenal::start_ref_data(&dir.path().join("a"));
    let b = arsenal::start_ref_data(&dir.path().join("b"));
    let only = ["--only", "get range,wire:"];
    let ra = arsenal::run_checks("data-checks.js", &a.addr(), &only);
    let rb = arsenal::run_checks("data-checks.js", &b.addr(), &only);
    arsenal::assert_same_outcomes(&ra, &rb);
    // Range checks depend on "put small object"; without it they must fail, not skip.
    assert!(
        !ra.failures().is_empty(),
        "dependent checks must fail when their setup is filtered out"
    );
}

#[test]
fn server_guard_stops_the_process_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let server = arsenal::start_ref_data(&dir.path().join("data"));
    let addr = server.addr();
    let pid = server.pid();
    assert!(std::net::TcpStream::connect(&addr).is_ok());
    drop(server);
    // The pid is reaped: signal 0 fails with ESRCH.
    // SAFETY: kill(2) with signal 0 only checks for existence.
    let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    assert!(!alive, "reference server pid {pid} still alive after drop");
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "{addr} still accepts connections"
    );
}
