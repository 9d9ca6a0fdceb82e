//! Hand-written Engine.IO 4 / socket.io 5 exchanges (spec §1–§3, §7, §8), because Arsenal's JS
//! client tolerates mistakes other clients would not. Where the reference defines the behaviour,
//! the same check runs against Arsenal's MetadataFileServer and ours in the same test.

mod metadata_support;

use std::time::{Duration, Instant};

use metadata_support::{http, parse_event, Polling, Server};
use serde_json::{json, Value};

const MD: &str = "/MDFile/metadata";
const RL: &str = "/MDFile/recordLog";

/// Runs `check` against the reference and ours, concurrently.
fn both(check: fn(&Server)) {
    let dir = tempfile::tempdir().unwrap();
    let reference = Server::reference(&dir.path().join("ref"));
    let ours = Server::ours(&dir.path().join("ours"));
    std::thread::scope(|s| {
        let r = s.spawn(|| check(&reference));
        let o = s.spawn(|| check(&ours));
        if let Err(e) = r.join() {
            std::panic::resume_unwind(e);
        }
        if let Err(e) = o.join() {
            eprintln!("zenkoctl stderr:\n{}", ours.stderr());
            std::panic::resume_unwind(e);
        }
    });
}

fn ours(check: fn(&Server)) {
    let dir = tempfile::tempdir().unwrap();
    let ours = Server::ours(&dir.path().join("ours"));
    check(&ours);
}

fn session(srv: &Server) -> Polling {
    let p = Polling::open(srv.addr);
    p.connect(MD);
    p
}

fn arsenal_error_type(ack: &Value) -> String {
    let e = &ack[0];
    if e["is_arsenal_error"] == json!(true) {
        e["type"].as_str().unwrap_or_default().to_string()
    } else if let Some(obj) = e.as_object() {
        // The reference's unflattened-error quirk: `{"InvalidArgument":true}` (spec §2.4).
        obj.iter()
            .find(|(_, v)| **v == json!(true))
            .map(|(k, _)| k.clone())
            .unwrap_or_default()
    } else {
        String::new()
    }
}

#[test]
fn handshake_and_refused_protocol_versions() {
    both(|srv| {
        let p = Polling::open(srv.addr);
        let h = &p.handshake;
        assert_eq!(h["upgrades"], json!(["websocket"]), "{}: {h}", srv.who);
        assert_eq!(h["pingInterval"], json!(25000), "{}", srv.who);
        assert_eq!(h["pingTimeout"], json!(20000), "{}", srv.who);
        assert_eq!(h["maxPayload"], json!(100000000), "{}", srv.who);
        let (status, _) = http(
            srv.addr,
            "GET",
            "/socket.io/?EIO=3&transport=polling",
            b"",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(status, 400, "{}: EIO=3 must be refused", srv.who);
    });
}

#[test]
fn namespaces_share_one_session_and_unknown_ones_are_refused() {
    both(|srv| {
        let p = Polling::open(srv.addr);
        // Both CONNECTs in one \x1e-batched POST body.
        let (status, body) = p.post(&[&format!("40{MD},"), &format!("40{RL},"), "40/MDFile/nope,"]);
        assert_eq!((status, body.as_str()), (200, "ok"), "{}", srv.who);
        let mut m = p.messages(3, Duration::from_secs(5));
        m.sort();
        assert_eq!(m.len(), 3, "{}: {m:?}", srv.who);
        assert!(
            m[0].starts_with(&format!("0{MD},{{\"sid\":")),
            "{}: {m:?}",
            srv.who
        );
        assert!(
            m[1].starts_with(&format!("0{RL},{{\"sid\":")),
            "{}: {m:?}",
            srv.who
        );
        assert_eq!(
            m[2], "4/MDFile/nope,{\"message\":\"Invalid namespace\"}",
            "{}",
            srv.who
        );
        // Calls on both namespaces of the one session, batched in one POST.
        p.post(&[
            &format!("42{MD},0[\"call\",\"getManifest\",{{\"rpcArgs\":[],\"subLevel\":[]}}]"),
            &format!("42{RL},0[\"call\",\"getManifest\",{{\"rpcArgs\":[],\"logName\":\"s3-recordlog\"}}]"),
        ]);
        let md = p.ack(MD, 0);
        let rl = p.ack(RL, 0);
        let names = |v: &Value| -> Vec<String> {
            v[1]["api"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(md[0], Value::Null, "{}", srv.who);
        assert_eq!(md[1]["apiVersion"], "1.0");
        assert_eq!(
            names(&md),
            [
                "createReadStream",
                "rawListKeys",
                "getUUID",
                "put",
                "del",
                "get",
                "getDiskUsage"
            ],
            "{}",
            srv.who
        );
        assert_eq!(
            names(&rl),
            ["createLogRecordOps", "pruneRecords", "readRecords"],
            "{}",
            srv.who
        );
    });
}

#[test]
fn call_acks_errors_and_unknown_methods() {
    both(|srv| {
        let p = session(srv);
        let put = p.call(MD, 1, "put", json!(["k", "{\"a\":1}", {}]), &["wire"]);
        assert_eq!(
            put,
            json!([null, null]),
            "{}: plain put acks [null,null]",
            srv.who
        );
        let get = p.call(MD, 2, "get", json!(["k", {}]), &["wire"]);
        assert_eq!(get, json!([null, "{\"a\":1}"]), "{}", srv.who);
        let missing = p.call(MD, 3, "get", json!(["nope", {}]), &["wire"]);
        assert_eq!(
            missing.as_array().unwrap().len(),
            1,
            "{}: error acks carry one element",
            srv.who
        );
        assert_eq!(missing[0]["is_arsenal_error"], json!(true), "{}", srv.who);
        assert_eq!(missing[0]["type"], "ObjNotFound");
        assert_eq!(missing[0]["code"], 404);
        assert_eq!(missing[0]["description"], "This object does not exist");
        let del = p.call(MD, 4, "del", json!(["never-existed", {}]), &["wire"]);
        assert_eq!(
            del,
            json!([null, null]),
            "{}: deleting a missing key succeeds",
            srv.who
        );
        let unknown = p.call(MD, 5, "noSuchCall", json!([]), &[]);
        assert_eq!(
            arsenal_error_type(&unknown),
            "InvalidArgument",
            "{}: {unknown}",
            srv.who
        );
    });
}

/// socket.io-client sends the calls it buffered as soon as a namespace's CONNECT reply arrives,
/// so the "call" handler must exist before that reply goes out. It once did not (socketioxide
/// spawns the connect handler after replying), and a loaded test run lost such a call.
#[test]
fn a_call_sent_as_soon_as_the_connect_reply_arrives_is_answered() {
    ours(|srv| {
        for round in 0..200 {
            let p = Polling::open(srv.addr);
            let ns = if round % 2 == 0 { MD } else { RL };
            p.connect(ns);
            let (method, env) = if ns == MD {
                (
                    "get",
                    json!({"rpcArgs": ["missing", {}], "subLevel": ["race"]}),
                )
            } else {
                (
                    "pruneRecords",
                    json!({"rpcArgs": [{}], "logName": "s3-recordlog"}),
                )
            };
            let posted = p.post(&[&format!("42{ns},1{}", json!(["call", method, env]))]);
            assert_eq!((posted.0, posted.1.as_str()), (200, "ok"), "round {round}");
            let ack = p.ack_within(ns, 1, Duration::from_secs(5));
            assert!(
                ack.is_some(),
                "round {round}: no ack on {ns} for a call sent right after the connect reply"
            );
        }
    });
}

#[test]
fn record_log_prune_is_not_implemented_and_records_share_the_batch() {
    both(|srv| {
        let p = Polling::open(srv.addr);
        p.connect(MD);
        p.connect(RL);
        let env = json!({"rpcArgs": [{}], "logName": "s3-recordlog"});
        let posted = p.post(&[&format!("42{RL},7{}", json!(["call", "pruneRecords", env]))]);
        assert_eq!((posted.0, posted.1.as_str()), (200, "ok"), "{}", srv.who);
        let ack = p.ack(RL, 7);
        assert_eq!(ack[0]["type"], "NotImplemented", "{}: {ack}", srv.who);
        assert_eq!(ack[0]["code"], 501);
        p.call(MD, 1, "put", json!(["rk", "v", {}]), &["rlbucket"]);
        // The record is in the store right after the ack (same atomic batch).
        let ack = p.call(
            MD,
            2,
            "rawListKeys",
            json!([{"gte": "!..recordLogs#s3-recordlog!", "lt": "!..recordLogs#s3-recordlog\""}]),
            &[],
        );
        let id = ack[1]["$streamId"].as_str().unwrap().to_string();
        let mut keys = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        'outer: while Instant::now() < deadline {
            for m in p.messages(1, Duration::from_secs(5)) {
                if let Some((ack_id, ev)) = parse_event(MD, &m) {
                    if ev[1]["streamId"] != json!(id) {
                        continue;
                    }
                    if let Some(n) = ack_id {
                        p.post(&[&format!("43{MD},{n}[null]")]);
                    }
                    match ev[0].as_str().unwrap() {
                        "stream-data" => {
                            keys.extend(ev[1]["data"].as_array().unwrap().iter().cloned())
                        }
                        "stream-end" => break 'outer,
                        other => panic!("{}: unexpected {other}", srv.who),
                    }
                }
            }
        }
        assert_eq!(
            keys,
            vec![json!("!..recordLogs#s3-recordlog!0000000000000001")],
            "{}",
            srv.who
        );
    });
}

/// Puts `n` keys in sublevel `sub`, pipelined in batched POSTs.
fn fill(p: &Polling, sub: &str, n: usize, first_id: u64) -> u64 {
    let mut id = first_id;
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let pkts: Vec<String> = chunk
            .iter()
            .map(|i| {
                let env = json!({"rpcArgs": [format!("key-{i:05}"), format!("{{\"i\":{i}}}"), {}], "subLevel": [sub]});
                let s = format!("42{MD},{}{}", id + *i as u64, json!(["call", "put", env]));
                s
            })
            .collect();
        let refs: Vec<&str> = pkts.iter().map(String::as_str).collect();
        p.post(&refs);
        for i in chunk {
            p.ack(MD, id + *i as u64);
        }
    }
    id += n as u64;
    id
}

#[test]
fn a_consumer_that_never_acks_gets_four_events_then_an_ack_timeout() {
    both(|srv| {
        let p = session(srv);
        let id = fill(&p, "window", 200, 10);
        let ack = p.call(MD, id, "createReadStream", json!([{}]), &["window"]);
        let sid = ack[1]["$streamId"].as_str().unwrap().to_string();
        assert_eq!(ack[1]["readable"], json!(true));
        assert_eq!(ack[1]["writable"], json!(false));
        let started = Instant::now();
        let mut data_events = 0;
        let mut error = None;
        while started.elapsed() < Duration::from_secs(9) && error.is_none() {
            for m in p.messages(1, Duration::from_millis(500)) {
                let (ack_id, ev) =
                    parse_event(MD, &m).unwrap_or_else(|| panic!("{}: {m}", srv.who));
                assert_eq!(ev[1]["streamId"], json!(sid));
                match ev[0].as_str().unwrap() {
                    "stream-data" => {
                        assert!(ack_id.is_some(), "stream-data requests an ack");
                        data_events += 1;
                    }
                    "stream-error" => {
                        assert!(ack_id.is_none(), "stream-error requests no ack");
                        error = Some((started.elapsed(), ev[1]["error"].clone()));
                    }
                    other => panic!("{}: unexpected {other}", srv.who),
                }
            }
        }
        // Ours keeps exactly the spec's window of 4; the reference lets a 5th event through
        // before its first ack (its pending counter starts after the first write).
        if srv.who == "zenkoctl" {
            assert_eq!(
                data_events, 4,
                "{}: at most 4 unacknowledged stream-data",
                srv.who
            );
        } else {
            assert!(
                (4..=5).contains(&data_events),
                "{}: {data_events} unacked events",
                srv.who
            );
        }
        let (after, err) =
            error.unwrap_or_else(|| panic!("{}: no stream-error after the ack timeout", srv.who));
        assert!(
            after >= Duration::from_millis(4500),
            "{}: timed out after {after:?}",
            srv.who
        );
        assert_eq!(err["code"], "ETIMEDOUT", "{}: {err}", srv.who);
        assert_eq!(err["message"], "Callback function \"anonymous\" timed out.");
        assert_eq!(
            err["info"],
            "stream timeout: did not receive ack after 5000ms"
        );
        // The session still works.
        let uuid = p.call(MD, id + 1, "getUUID", json!([]), &[]);
        assert!(uuid[1].is_string(), "{}: {uuid}", srv.who);
    });
}

#[test]
fn hangup_stops_the_producer_and_unknown_hangups_are_ignored() {
    both(|srv| {
        let p = session(srv);
        let id = fill(&p, "hang", 3000, 10);
        p.post(&[&format!(
            "42{MD},[\"stream-hangup\",{{\"streamId\":\"no-such-stream\"}}]"
        )]);
        let ack = p.call(MD, id, "createReadStream", json!([{}]), &["hang"]);
        let sid = ack[1]["$streamId"].as_str().unwrap().to_string();
        // Ack the first event, then hang up and ack what was already in flight.
        let mut items = 0;
        let mut events = 0;
        let mut hung = false;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            for m in p.messages(1, Duration::from_millis(300)) {
                let (ack_id, ev) = parse_event(MD, &m).unwrap();
                assert_ne!(
                    ev[0], "stream-end",
                    "{}: the stream ended although hung up",
                    srv.who
                );
                if ev[0] == "stream-data" {
                    events += 1;
                    items += ev[1]["data"].as_array().unwrap().len();
                    if !hung {
                        p.post(&[
                            &format!("43{MD},{}[null]", ack_id.unwrap()),
                            &format!("42{MD},[\"stream-hangup\",{{\"streamId\":\"{sid}\"}}]"),
                        ]);
                        hung = true;
                    } else {
                        p.post(&[&format!("43{MD},{}[null]", ack_id.unwrap())]);
                    }
                }
            }
        }
        assert!(hung, "{}: no stream-data at all", srv.who);
        assert!(
            items < 3000,
            "{}: the producer went on after the hangup ({items} items)",
            srv.who
        );
        assert!(
            events <= 1 + 4 + 4,
            "{}: {events} events after a hangup",
            srv.who
        );
        let uuid = p.call(MD, id + 1, "getUUID", json!([]), &[]);
        assert!(uuid[1].is_string(), "{}", srv.who);
    });
}

#[test]
fn malformed_packets_do_not_take_the_server_down() {
    both(|srv| {
        for garbage in [
            format!("42{MD},5[not json"),
            format!("42{MD},5{{\"an\":\"object\"}}"),
            "4garbage".to_string(),
            "9".to_string(),
            format!("452-{MD},6[\"call\",{{\"_placeholder\":true,\"num\":0}}]"),
            format!("4{MD}"),
            "".to_string(),
        ] {
            let p = session(srv);
            let (status, _) = p.post(&[&garbage]);
            assert!(
                status == 200 || status == 400,
                "{}: {garbage:?} -> HTTP {status}",
                srv.who
            );
            // Whatever happened to that session, a new one works.
            let q = session(srv);
            let uuid = q.call(MD, 1, "getUUID", json!([]), &[]);
            assert!(
                uuid[1].is_string(),
                "{}: after {garbage:?}: {uuid}",
                srv.who
            );
        }
    });
}

#[test]
fn wrong_argument_types_get_an_error_ack() {
    // The reference throws inside its handlers for several of these (and the caller then waits
    // for its 30 s timeout); ours answers every call, so this runs against ours only.
    ours(|srv| {
        let p = session(srv);
        let cases: Vec<(String, &str)> = vec![
            (format!("42{MD},1[\"call\",42]"), "InvalidArgument"),
            (format!("42{MD},2[\"call\"]"), "InvalidArgument"),
            (format!("42{MD},3[\"call\",\"get\",\"not an envelope\"]"), "InvalidArgument"),
            (format!("42{MD},4[\"call\",\"get\",{{\"rpcArgs\":\"x\",\"subLevel\":[]}}]"), "InvalidArgument"),
            (format!("42{MD},5[\"call\",\"get\",{{\"rpcArgs\":[{{\"a\":1}},{{}}],\"subLevel\":[]}}]"), "InvalidArgument"),
            (format!("42{MD},6[\"call\",\"get\",{{\"rpcArgs\":[\"k\",{{}}],\"subLevel\":[1,2]}}]"), "InvalidArgument"),
            (format!("42{MD},7[\"call\",\"put\",{{\"rpcArgs\":[null,\"v\",{{}}],\"subLevel\":[]}}]"), "InvalidArgument"),
            (format!("42{MD},8[\"call\",\"put\",{{\"rpcArgs\":[\"k\",\"v\",\"opts\"],\"subLevel\":[]}}]"), "InvalidArgument"),
            (format!("42{MD},9[\"call\",\"createReadStream\",{{\"rpcArgs\":[\"x\"],\"subLevel\":[]}}]"), "InvalidArgument"),
            (format!("42{MD},10[\"call\",\"get\",{{\"rpcArgs\":[\"missing\"]}}]"), "ObjNotFound"),
        ];
        for (i, (pkt, want)) in cases.iter().enumerate() {
            p.post(&[pkt]);
            let ack = p.ack(MD, i as u64 + 1);
            assert_eq!(arsenal_error_type(&ack), *want, "{pkt}: {ack}");
        }
        // A number key is JavaScript-coerced like the reference does.
        assert_eq!(
            p.call(MD, 20, "put", json!([42, "v", {}]), &["types"]),
            json!([null, null])
        );
        assert_eq!(
            p.call(MD, 21, "get", json!(["42", null]), &["types"]),
            json!([null, "v"])
        );
        // Non-string values are stored as String(value).
        p.call(MD, 22, "put", json!(["obj", {"a": 1}, {}]), &["types"]);
        assert_eq!(
            p.call(MD, 23, "get", json!(["obj"]), &["types"]),
            json!([null, "[object Object]"])
        );
    });
}

#[test]
fn versioned_requests_ack_json_strings() {
    // The wire shapes of versioning acks (spec §7 #4, #13): a JSON *string*, never an object;
    // a non-string versioned value is a plain `{"message"}` error. Versioning semantics are
    // checked in depth by tests/metadata_versioning.rs.
    both(|srv| {
        let p = session(srv);
        let vid = "98204437834720999999RG001  22";
        let ack = p.call(
            MD,
            1,
            "put",
            json!(["v", "{\"a\":1}", {"versioning": true}]),
            &["ver"],
        );
        let text = ack[1]
            .as_str()
            .unwrap_or_else(|| panic!("{}: {ack}", srv.who));
        let new_vid = serde_json::from_str::<Value>(text).unwrap()["versionId"].clone();
        assert_eq!(text, format!("{{\"versionId\":{new_vid}}}"), "{}", srv.who);
        let cases = [
            (
                "put",
                json!(["v", "{\"a\":2}", {"versionId": "null"}]),
                json!("{\"versionId\":\"null\"}"),
            ),
            (
                "put",
                json!(["v", "{\"a\":3}", {"versionId": vid}]),
                json!(format!("{{\"versionId\":\"{vid}\"}}")),
            ),
            (
                "del",
                json!(["v", {"versionId": vid}]),
                json!(format!("{{\"versionId\":\"{vid}\"}}")),
            ),
            (
                "get",
                json!(["v", {"versionId": "null"}]),
                json!("{\"a\":2}"),
            ),
            // Falsy versioning options are plain requests, as in the reference.
            (
                "put",
                json!(["w", "x", {"versioning": false, "versionId": null}]),
                Value::Null,
            ),
            ("del", json!(["w", {"versionId": ""}]), Value::Null),
        ];
        for (i, (method, args, want)) in cases.iter().enumerate() {
            let ack = p.call(MD, i as u64 + 2, method, args.clone(), &["ver"]);
            assert_eq!(ack, json!([null, want]), "{}: {method} {args}", srv.who);
        }
        let ack = p.call(
            MD,
            20,
            "put",
            json!(["o", {"a": 1}, {"versioning": true}]),
            &["ver"],
        );
        assert_eq!(
            ack,
            json!([{"message": "stringifiedObject.charAt is not a function"}]),
            "{}",
            srv.who
        );
    });
}

#[test]
fn health_and_metrics() {
    ours(|srv| {
        let (status, body) =
            http(srv.addr, "GET", "/_/health", b"", Duration::from_secs(5)).unwrap();
        assert_eq!(status, 200, "{body}");
        let p = session(srv);
        p.call(MD, 1, "get", json!(["nope", {}]), &["m"]);
        let (status, body) =
            http(srv.addr, "GET", "/_/metrics", b"", Duration::from_secs(5)).unwrap();
        assert_eq!(status, 200);
        assert!(
            body.contains(
                "zenkoctl_requests_total{service=\"metadata\",op=\"get\",code=\"404\"} 1"
            ),
            "{body}"
        );
        assert!(body.contains("zenko_metadata_sockets 1"), "{body}");
    });
}

#[test]
fn hundreds_of_pipelined_calls_in_one_body_are_all_answered() {
    both(|srv| {
        let p = session(srv);
        p.call(MD, 1, "put", json!(["k", "v", {}]), &["pipe"]);
        let pkts: Vec<String> = (0..600)
            .map(|i| {
                let env = json!({"rpcArgs": ["k", {}], "subLevel": ["pipe"]});
                format!("42{MD},{}{}", 100 + i, json!(["call", "get", env]))
            })
            .collect();
        let refs: Vec<&str> = pkts.iter().map(String::as_str).collect();
        p.post(&refs);
        let mut seen = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.len() < 600 && Instant::now() < deadline {
            for m in p.messages(1, Duration::from_millis(500)) {
                if let Some(rest) = m.strip_prefix(&format!("3{MD},")) {
                    let at = rest.find('[').unwrap();
                    let ack: Value = serde_json::from_str(&rest[at..]).unwrap();
                    assert_eq!(ack, json!([null, "v"]), "{}", srv.who);
                    seen.insert(rest[..at].parse::<u64>().unwrap());
                }
            }
        }
        assert_eq!(
            seen.len(),
            600,
            "{}: only {} of 600 pipelined calls answered",
            srv.who,
            seen.len()
        );
    });
}

#[test]
fn the_deployment_uuid_is_persisted_and_a_preseeded_one_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("md");
    let first = {
        let srv = Server::ours(&path);
        let p = session(&srv);
        p.call(MD, 1, "getUUID", json!([]), &[])[1].clone()
    };
    let file = std::fs::read_to_string(path.join("uuid")).unwrap();
    assert_eq!(
        json!(file),
        first,
        "getUUID returns <path>/uuid, without a newline"
    );
    let srv = Server::ours(&path);
    let p = session(&srv);
    assert_eq!(
        p.call(MD, 1, "getUUID", json!([]), &[])[1],
        first,
        "stable across restarts"
    );
    // CloudServer's entrypoint pre-seeds the file from INITIAL_INSTANCE_ID (`echo -n`).
    let seeded = dir.path().join("seeded");
    std::fs::create_dir_all(&seeded).unwrap();
    std::fs::write(seeded.join("uuid"), "ecd4b901-d9e6-4b46-b1f6-ad893344df21").unwrap();
    let srv = Server::ours(&seeded);
    let p = session(&srv);
    assert_eq!(
        p.call(MD, 1, "getUUID", json!([]), &[]),
        json!([null, "ecd4b901-d9e6-4b46-b1f6-ad893344df21"])
    );
}
