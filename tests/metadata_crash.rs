//! Crash safety: SIGKILL the real server while many clients stream writes at it; after a restart
//! every acknowledged write is there, and no batch is half-applied — each put and its record-log
//! entry (written in one batch) are both present or both absent, and the record log is a
//! gap-free sequence that continues where it stopped.

mod metadata_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metadata_support::{consume_stream, Polling, Server};
use serde_json::{json, Value};

const MD: &str = "/MDFile/metadata";

#[test]
fn sigkill_during_writes_loses_nothing_acknowledged_and_applies_no_half_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("md");
    let mut server = Server::ours(&path);
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for t in 0..8 {
        let (acked, stop, addr) = (acked.clone(), stop.clone(), server.addr);
        writers.push(std::thread::spawn(move || {
            let p = Polling::open(addr);
            p.connect(MD);
            let mut next_id = 0u64;
            'run: while !stop.load(Ordering::SeqCst) {
                // A burst of 16 pipelined puts in one POST.
                let burst: Vec<(u64, String, String)> = (0..16)
                    .map(|_| {
                        next_id += 1;
                        let key = format!("t{t}-{next_id:06}");
                        let value = json!({"key": key, "pad": "x".repeat(200)}).to_string();
                        (next_id, key, value)
                    })
                    .collect();
                let pkts: Vec<String> = burst
                    .iter()
                    .map(|(id, k, v)| {
                        let env = json!({"rpcArgs": [k, v, {}], "subLevel": ["crash"]});
                        format!("42{MD},{id}{}", json!(["call", "put", env]))
                    })
                    .collect();
                let refs: Vec<&str> = pkts.iter().map(String::as_str).collect();
                if std::panic::catch_unwind(|| p.post(&refs)).is_err() {
                    break;
                }
                let mut waiting: BTreeMap<u64, (String, String)> =
                    burst.into_iter().map(|(id, k, v)| (id, (k, v))).collect();
                let deadline = Instant::now() + Duration::from_secs(5);
                while !waiting.is_empty() {
                    if Instant::now() > deadline || p.closed.load(Ordering::SeqCst) {
                        break 'run;
                    }
                    for m in p.messages(1, Duration::from_millis(200)) {
                        let Some(rest) = m.strip_prefix(&format!("3{MD},")) else {
                            continue;
                        };
                        let at = rest.find('[').unwrap();
                        let id: u64 = rest[..at].parse().unwrap();
                        let ack: Value = serde_json::from_str(&rest[at..]).unwrap();
                        assert_eq!(ack, json!([null, null]), "put ack");
                        if let Some((k, v)) = waiting.remove(&id) {
                            acked.lock().unwrap().insert(k, v);
                        }
                    }
                }
            }
        }));
    }
    // Let writes flow, then kill the server in the middle of them.
    let started = Instant::now();
    while acked.lock().unwrap().len() < 2000 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    server.kill9();
    let acked_at_kill = acked.lock().unwrap().len();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        let _ = w.join();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked_at_kill >= 1000,
        "too few writes before the kill ({acked_at_kill})"
    );

    let server = Server::ours(&path);
    let p = Polling::open(server.addr);
    p.connect(MD);
    let marker = p.call(MD, 1, "createReadStream", json!([{}]), &["crash"]);
    let mut data = BTreeMap::new();
    consume_stream(&p, MD, &marker[1], |item| {
        data.insert(
            item["key"].as_str().unwrap().to_string(),
            item["value"].as_str().unwrap().to_string(),
        );
    });
    for (k, v) in &acked {
        assert_eq!(
            data.get(k),
            Some(v),
            "acknowledged put {k} lost or altered by the crash"
        );
    }
    let marker = p.call(
        MD,
        2,
        "createReadStream",
        json!([{}]),
        &["..recordLogs", "s3-recordlog"],
    );
    let mut seqs = Vec::new();
    let mut logged = BTreeMap::new();
    consume_stream(&p, MD, &marker[1], |item| {
        seqs.push(item["key"].as_str().unwrap().parse::<u64>().unwrap());
        let rec: Value = serde_json::from_str(item["value"].as_str().unwrap()).unwrap();
        assert_eq!(rec["type"], "put");
        assert_eq!(rec["db"], "crash");
        logged.insert(
            rec["key"].as_str().unwrap().to_string(),
            rec["value"].as_str().unwrap().to_string(),
        );
    });
    assert_eq!(
        logged.keys().collect::<BTreeSet<_>>(),
        data.keys().collect::<BTreeSet<_>>(),
        "a put and its record-log entry were not applied together"
    );
    assert_eq!(logged, data, "record values differ from the stored values");
    let n = seqs.len() as u64;
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "the record log has gaps or duplicates"
    );
    eprintln!(
        "crash test: {} puts acknowledged before SIGKILL, {} present after restart",
        acked.len(),
        data.len()
    );
    // The log continues where it stopped.
    p.call(MD, 3, "put", json!(["after-restart", "v", {}]), &["crash"]);
    let raw = p.call(
        MD,
        4,
        "rawListKeys",
        json!([{"gte": "!..recordLogs#s3-recordlog!", "lt": "!..recordLogs#s3-recordlog\"", "reverse": true, "limit": 1}]),
        &[],
    );
    let mut last = Vec::new();
    consume_stream(&p, MD, &raw[1], |k| last.push(k));
    assert_eq!(
        last,
        vec![json!(format!("!..recordLogs#s3-recordlog!{:016}", n + 1))]
    );
}
