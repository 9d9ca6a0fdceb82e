//! The metadata service over the MongoDB backend (`serve --metadata-backend mongodb`):
//! - the Arsenal interop suites (tests/arsenal/metadata-checks.js and
//!   metadata-listing-checks.js), run in one go against Arsenal's reference server (which proves
//!   the checks) and ours on MongoDB (the stand-in, or MONGODB_URI);
//! - the MongoDB server stops and restarts under a stream of puts: the service reconnects, every
//!   acknowledged put is there, and the health endpoint reports the outage meanwhile (always on a
//!   stand-in started for the test, since a test cannot restart a real MongoDB).

#[path = "common/arsenal.rs"]
mod arsenal;
mod metadata_support;
#[path = "common/mongod.rs"]
mod mongod;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metadata_support::{http, Polling, Server};
use serde_json::{json, Value};

fn ours_on(path: &std::path::Path, uri: &str, db: &str) -> Server {
    Server::ours_with(
        path,
        &[
            "--metadata-backend",
            "mongodb",
            "--mongodb-uri",
            uri,
            "--mongodb-database",
            db,
        ],
    )
}

/// The message of a failed check in a run's stdout (`FAIL <name> (<ms> ms): <message>`).
fn failure_message<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("FAIL {name} (")))
        .and_then(|l| l.split_once(" ms): "))
        .map_or("", |(_, m)| m)
}

fn compare(script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = mongod::TestDb::new(script);
    let reference = arsenal::start_ref_metadata(
        &dir.path().join("ref"),
        &arsenal::RefMetadataOptions::default(),
    );
    let ours = ours_on(&dir.path().join("ours"), &db.mongo.uri, &db.name);
    // Against the reference first: that proves the checks.
    let on_ref = arsenal::assert_checks_pass(script, &reference.addr(), &[]);
    let on_ours = arsenal::run_checks(script, &ours.addr.to_string(), &[]);
    let names = |run: &arsenal::CheckRun| {
        run.outcomes
            .iter()
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&on_ours),
        names(&on_ref),
        "{script}: not the same checks ran on both servers"
    );
    let failed: Vec<String> = on_ours
        .failures()
        .into_iter()
        .map(|name| format!("{name:?}: {}", failure_message(&on_ours.stdout, name)))
        .collect();
    assert!(
        failed.is_empty(),
        "{script}: checks fail against zenkoctl on MongoDB: {failed:#?}\n{}\nserver stderr:\n{}",
        on_ours.stdout,
        ours.stderr()
    );
}

#[test]
fn metadata_checks_pass_on_mongodb() {
    compare("metadata-checks.js");
}

#[test]
fn listing_checks_pass_on_mongodb() {
    compare("metadata-listing-checks.js");
}

fn health(addr: std::net::SocketAddr) -> (u16, String) {
    http(addr, "GET", "/_/health", b"", Duration::from_secs(20)).unwrap_or((0, String::new()))
}

#[test]
fn mongodb_restart_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut mongo = mongod::StandIn::start();
    let (port, mdir) = (mongo.port, mongo.dir.clone());
    let server = ours_on(&dir.path().join("md"), &mongo.uri(), "restart");
    assert_eq!(health(server.addr).0, 200, "healthy before the restart");

    // A writer puts keys one after the other (each waits for its ack) until told to stop.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, failed, stop, addr) =
            (acked.clone(), failed.clone(), stop.clone(), server.addr);
        std::thread::spawn(move || {
            let p = Polling::open(addr);
            p.connect("/MDFile/metadata");
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let (k, v) = (format!("obj-{i:05}"), format!("{{\"n\":{i}}}"));
                let ack = p.call(
                    "/MDFile/metadata",
                    i + 1,
                    "put",
                    json!([k, v, {}]),
                    &["bkt"],
                );
                if ack == json!([null, null]) {
                    acked.lock().unwrap().push((k, v));
                } else {
                    failed.lock().unwrap().push(format!("{k}: {ack}"));
                }
                i += 1;
            }
        })
    };
    let wait_for = |n: usize| {
        let t = Instant::now();
        while acked.lock().unwrap().len() < n {
            assert!(t.elapsed() < Duration::from_secs(60), "puts stalled");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(30);
    // A stop (SIGTERM), not kill -9: the stand-in loses committed transactions on SIGKILL
    // (measured: plain j:true inserts survive, transactional ones do not), which mongod does not;
    // crash durability of MongoDB itself is only checked against a real MongoDB.
    let outage = Instant::now();
    mongo.stop();
    let before = acked.lock().unwrap().len();
    let (status, body) = health(server.addr);
    assert_eq!(status, 503, "health during the outage: {body}");
    assert!(body.contains("mongodb"), "health names the backend: {body}");
    std::thread::sleep(Duration::from_secs(1));
    let mut mongo = mongod::StandIn::start_at(&mdir, port);
    let outage = outage.elapsed();
    // The service reconnects on its own: puts resume and health is back.
    wait_for(before + 30);
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    let t = Instant::now();
    while health(server.addr).0 != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "health did not recover"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let failed = failed.lock().unwrap().clone();
    // Puts in flight wait for MongoDB for the retry window (20 s); on a loaded machine the
    // stand-in can take longer than that to come back, and then a put may fail (clearly).
    if outage < Duration::from_secs(15) {
        assert!(
            failed.is_empty(),
            "puts failed although the outage ({outage:?}) was shorter than the retry window: {failed:?}"
        );
    } else {
        eprintln!(
            "outage of {outage:?}: {} put(s) failed with an error",
            failed.len()
        );
    }
    // Every acknowledged put is there, through the service and after a restart of it.
    let acked = acked.lock().unwrap().clone();
    drop(server);
    let server = ours_on(&dir.path().join("md"), &mongo.uri(), "restart");
    let p = Polling::open(server.addr);
    p.connect("/MDFile/metadata");
    let mut missing = Vec::new();
    for (i, (k, v)) in acked.iter().enumerate() {
        let ack = p.call(
            "/MDFile/metadata",
            i as u64 + 1,
            "get",
            json!([k, {}]),
            &["bkt"],
        );
        if ack != json!([null, Value::String(v.clone())]) {
            missing.push((i, k.clone(), ack));
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged puts lost ({} acknowledged, {before} before the kill): {missing:?}",
        acked.len()
    );
    drop(p);
    drop(server);
    mongo.stop();
}

/// On the mongodb backend the deployment id lives in MongoDB: two servers on the same database
/// (two nodes, or one rescheduled elsewhere with an empty metadata dir) answer the same
/// `getUUID`, and it stays across restarts. A dir that already holds a `uuid` file (a deployment
/// from before the id moved into MongoDB) seeds it when MongoDB has none yet.
#[test]
fn deployment_uuid_is_shared_by_servers_on_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = mongod::TestDb::new("uuid");
    let uuid_of = |server: &Server| {
        let p = Polling::open(server.addr);
        p.connect("/MDFile/metadata");
        let ack = p.call("/MDFile/metadata", 1, "getUUID", json!([]), &[]);
        ack[1]
            .as_str()
            .unwrap_or_else(|| panic!("getUUID: {ack}"))
            .to_string()
    };
    let seeded = dir.path().join("node-a");
    std::fs::create_dir_all(&seeded).unwrap();
    std::fs::write(seeded.join("uuid"), "0f4e1c2a-9d3b-4c5e-8f70-112233445566").unwrap();
    let a = ours_on(&seeded, &db.mongo.uri, &db.name);
    let b = ours_on(&dir.path().join("node-b"), &db.mongo.uri, &db.name);
    let (ua, ub) = (uuid_of(&a), uuid_of(&b));
    assert_eq!(ua, "0f4e1c2a-9d3b-4c5e-8f70-112233445566");
    assert_eq!(ub, ua, "both servers answer the deployment's id");
    assert!(
        !dir.path().join("node-b/uuid").exists(),
        "no node-local id file with the mongodb backend"
    );
    drop(a);
    drop(b);
    let c = ours_on(&dir.path().join("node-c"), &db.mongo.uri, &db.name);
    assert_eq!(uuid_of(&c), ua, "a restart on another node keeps it");

    // A fresh database gets a fresh random id.
    let other = mongod::TestDb {
        mongo: db.mongo.clone(),
        name: mongod::unique_db("uuid2"),
    };
    let d = ours_on(&dir.path().join("node-d"), &other.mongo.uri, &other.name);
    let ud = uuid_of(&d);
    assert_ne!(ud, ua);
    assert_eq!((ud.len(), &ud[14..15]), (36, "4"), "a UUIDv4: {ud}");
}
