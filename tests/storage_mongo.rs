//! The storage conformance suite against the MongoDB backend (the SecantusDB stand-in, or the
//! MongoDB at MONGODB_URI), plus MongoDB-specific checks: the layout as MongoDB sees it
//! (collections, `_id`s, `v`/`doc`), collection-name mapping edge cases, raw scans merged across
//! sublevel collections in global byte order, and the standalone journal's roll-forward.

#[path = "common/mongod.rs"]
mod mongod;

use std::ops::Bound;
use std::sync::Arc;

use mongodb::bson::{doc, Document};
use zenkoctl::server::storage::conformance::Opener;
use zenkoctl::server::storage::mongo::{layout, MongoConfig, MongoStore};
use zenkoctl::server::storage::{collect, Op, Scan, Store, StoreFuture};

struct MongoOpener(mongod::TestDb, bool);

impl MongoOpener {
    fn new() -> Self {
        MongoOpener(mongod::TestDb::new("conformance"), false)
    }

    /// One write command per collection in each transaction: the path for MongoDB before 8.0
    /// (no `bulkWrite`), which the stand-in would not take on its own.
    fn per_collection_writes() -> Self {
        MongoOpener(mongod::TestDb::new("conformance_pcw"), true)
    }
}

impl Opener for MongoOpener {
    fn open(&self) -> StoreFuture<'_, Arc<dyn Store>> {
        Box::pin(async move {
            let mut c = MongoConfig::new(&self.0.mongo.uri, &self.0.name);
            c.per_collection_writes = self.1;
            let s: Arc<dyn Store> = Arc::new(MongoStore::open(c).await?);
            Ok(s)
        })
    }
}

zenkoctl::storage_conformance_tests!(MongoOpener::new());

mod per_collection_writes {
    use super::*;
    zenkoctl::storage_conformance_tests!(MongoOpener::per_collection_writes());
}

fn put(k: &[u8], v: &[u8]) -> Op {
    Op::Put {
        key: k.to_vec(),
        value: v.to_vec(),
    }
}

async fn open(db: &mongod::TestDb) -> MongoStore {
    MongoStore::open(MongoConfig::new(&db.mongo.uri, &db.name))
        .await
        .expect("open the mongodb store")
}

async fn driver(db: &mongod::TestDb) -> mongodb::Database {
    mongodb::Client::with_uri_str(&db.mongo.uri)
        .await
        .expect("driver")
        .database(&db.name)
}

/// What MongoDB holds: one collection per sublevel, `_id` = the key, `v` = the bytes, `doc` =
/// the JSON object; keys outside sublevels in `root`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_as_mongodb_sees_it() {
    let t = mongod::TestDb::new("layout");
    let s = open(&t).await;
    let meta = br#"{"content-length":42,"tags":{"a":"b"},"x-amz-meta-s":"caf\u00e9"}"#;
    s.write(vec![
        put(b"!photos!cat.jpg", meta),
        put(b"!photos!raw", b"\x00\x01not json"),
        put(
            b"!..recordLogs#s3-recordlog!0000000000000001",
            b"{\"type\":\"put\"}",
        ),
        put(b"!users..bucket!owner..|..photos", b"{}"),
        put(b"!!rootsub", b"r"),
        put(b"outside", b"o"),
        put(b"!dollar$doc!k", br#"{"$where":"x"}"#),
    ])
    .await
    .expect("write");
    let db = driver(&t).await;
    let mut names = db.list_collection_names().await.expect("list");
    names.sort();
    for want in [
        "s.photos",
        "s.%2E%2ErecordLogs%23s3-recordlog",
        "s.users%2E%2Ebucket",
        "s.~",
        "s.dollar%24doc",
        layout::ROOT,
        layout::REGISTRY,
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let photos = db.collection::<Document>("s.photos");
    let d = photos
        .find_one(doc! {"_id": "cat.jpg"})
        .await
        .unwrap()
        .expect("cat.jpg by _id");
    assert_eq!(d.get_binary_generic("v").unwrap(), &meta.to_vec());
    // Object metadata is queryable as a document.
    let q = photos
        .find_one(doc! {"doc.content-length": {"$gt": 40}, "doc.tags.a": "b"})
        .await
        .unwrap()
        .expect("query on doc fields");
    assert_eq!(q.get_str("_id").unwrap(), "cat.jpg");
    assert_eq!(
        q.get_document("doc")
            .unwrap()
            .get_str("x-amz-meta-s")
            .unwrap(),
        "café"
    );
    let raw = photos.find_one(doc! {"_id": "raw"}).await.unwrap().unwrap();
    assert!(raw.get("doc").is_none(), "non-JSON values have no doc");
    let dollar = db
        .collection::<Document>("s.dollar%24doc")
        .find_one(doc! {"_id": "k"})
        .await
        .unwrap()
        .unwrap();
    assert!(
        dollar.get("doc").is_none(),
        "$-prefixed fields are not turned into a doc"
    );
    let root = db
        .collection::<Document>(layout::ROOT)
        .find_one(doc! {"_id": "outside"})
        .await
        .unwrap()
        .expect("root key");
    assert_eq!(root.get_binary_generic("v").unwrap(), &b"o".to_vec());
    // Reads come back byte for byte through the store.
    assert_eq!(
        s.get(b"!photos!raw").await.unwrap().as_deref(),
        Some(&b"\x00\x01not json"[..])
    );
    assert_eq!(
        s.get(b"!..recordLogs#s3-recordlog!0000000000000001")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"{\"type\":\"put\"}"[..])
    );
}

/// Sublevel names MongoDB would refuse, names that escape to the same text if done naively, and
/// names too long for a namespace: all distinct collections, all read back, scans in byte order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_name_edge_cases() {
    let t = mongod::TestDb::new("names");
    let s = open(&t).await;
    let long_a = "a".repeat(300) + "1";
    let long_b = "a".repeat(300) + "2";
    let subs: Vec<String> = vec![
        "".into(),
        "~".into(),
        "%7E".into(),
        "a.b".into(),
        "a%2Eb".into(),
        "..".into(),
        "system.profile".into(),
        "$cmd".into(),
        "nul\0inside".into(),
        "é😀".into(),
        "a b".into(),
        "a".into(),
        "a#b".into(),
        long_a.clone(),
        long_b.clone(),
        "é".repeat(100),
    ];
    let mut ops = Vec::new();
    for sub in &subs {
        let mut k = layout::prefix_of(sub);
        k.extend_from_slice(b"key");
        ops.push(put(&k, sub.as_bytes()));
    }
    s.write(ops).await.expect("write");
    let mut colls: Vec<String> = subs.iter().map(|s| layout::collection_name(s)).collect();
    colls.sort();
    colls.dedup();
    assert_eq!(colls.len(), subs.len(), "two sublevels share a collection");
    let db = driver(&t).await;
    let names = db.list_collection_names().await.expect("list");
    for c in &colls {
        assert!(names.contains(c), "{c} missing from {names:?}");
    }
    // Every sublevel reads back its own value, in a new store too (the registry persists).
    drop(s);
    let s = open(&t).await;
    for sub in &subs {
        let mut k = layout::prefix_of(sub);
        k.extend_from_slice(b"key");
        assert_eq!(
            s.get(&k).await.expect("get").as_deref(),
            Some(sub.as_bytes()),
            "sublevel {sub:?}"
        );
    }
    // A raw scan over every collection comes out in global byte order ("a b" < "a" here,
    // because ' ' < '!').
    let all = collect(&s, Scan::all()).await.expect("scan");
    let keys: Vec<Vec<u8>> = all.iter().map(|(k, _)| k.clone()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), subs.len());
    let mut rev = Scan::all();
    rev.reverse = true;
    rev.limit = Some(5);
    let got: Vec<Vec<u8>> = collect(&s, rev)
        .await
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut want = sorted.clone();
    want.reverse();
    want.truncate(5);
    assert_eq!(got, want);
}

/// Keys of several sublevels, the root, and non-UTF-8 "strays" inside a sublevel's interval,
/// checked against a byte-ordered model on bounded raw scans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_scans_merge_collections_in_byte_order() {
    let t = mongod::TestDb::new("merge");
    let s = open(&t).await;
    let mut model = std::collections::BTreeMap::new();
    let mut ops = Vec::new();
    let keys: Vec<Vec<u8>> = vec![
        b"!".to_vec(),
        b"!a".to_vec(),
        b"!a!".to_vec(),
        b"!a!x".to_vec(),
        b"!a!y".to_vec(),
        b"!a!\xff".to_vec(),
        b"!a \x01!z".to_vec(),
        b"!a b!z".to_vec(),
        b"!ab!1".to_vec(),
        b"!b!1".to_vec(),
        b"!b!\xc3".to_vec(),
        b"!b!\xc3(".to_vec(),
        "!b!é".as_bytes().to_vec(),
        b"!b\x80".to_vec(),
        b"\"".to_vec(),
        b"zzz".to_vec(),
        b"\0".to_vec(),
    ];
    for k in &keys {
        model.insert(k.clone(), k.clone());
        ops.push(put(k, k));
    }
    s.write(ops).await.expect("write");
    let all: Vec<Vec<u8>> = model.keys().cloned().collect();
    for lo in 0..=all.len() {
        for hi in lo..=all.len() {
            for reverse in [false, true] {
                let lower = match lo {
                    0 => Bound::Unbounded,
                    i => Bound::Excluded(all[i - 1].clone()),
                };
                let upper = match hi {
                    h if h == all.len() => Bound::Unbounded,
                    h => Bound::Included(all[h].clone()),
                };
                if (lo + hi) % 3 != 0 {
                    continue; // a third of the combinations keeps the test short
                }
                let scan = Scan {
                    lower: lower.clone(),
                    upper: upper.clone(),
                    reverse,
                    limit: None,
                };
                let mut want: Vec<Vec<u8>> = if scan.is_empty_range() {
                    Vec::new()
                } else {
                    model
                        .range::<Vec<u8>, _>((lower, upper))
                        .map(|(k, _)| k.clone())
                        .collect()
                };
                if reverse {
                    want.reverse();
                }
                let got: Vec<Vec<u8>> = collect(&s, scan.clone())
                    .await
                    .expect("scan")
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                assert_eq!(got, want, "{scan:?}");
            }
        }
    }
    // A sublevel listing with the service's default bounds sees its strays too.
    let scan = Scan {
        lower: Bound::Included(b"!b!\0".to_vec()),
        upper: Bound::Included("!b!\u{FFFF}".as_bytes().to_vec()),
        reverse: false,
        limit: None,
    };
    let got: Vec<Vec<u8>> = collect(&s, scan)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        got,
        vec![
            b"!b!1".to_vec(),
            b"!b!\xc3".to_vec(),
            b"!b!\xc3(".to_vec(),
            "!b!é".as_bytes().to_vec()
        ]
    );
}

/// The standalone fallback: a batch journaled but only partly applied when the server (or we)
/// stopped is rolled forward when the store opens; normal batches leave no journal behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_journal_rolls_half_applied_batches_forward() {
    use mongodb::bson::{spec::BinarySubtype, Binary, Bson};
    let t = mongod::TestDb::new("journal");
    let standalone = || {
        let mut c = MongoConfig::new(&t.mongo.uri, &t.name);
        c.force_standalone = true;
        c
    };
    let s = MongoStore::open(standalone()).await.expect("open");
    assert!(!s.transactions());
    s.write(vec![put(b"!b!old", b"1"), put(b"!b!keep", b"k")])
        .await
        .expect("write");
    let db = driver(&t).await;
    let journal = db.collection::<Document>(layout::JOURNAL);
    assert_eq!(journal.count_documents(doc! {}).await.unwrap(), 0);
    drop(s);
    // A crash between "journaled" and "applied": the journal holds {put new, del old}, and
    // only the put reached its collection.
    let bin = |b: &[u8]| {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: b.to_vec(),
        })
    };
    journal
        .insert_one(doc! {"_id": 7i64, "ops": [
            {"k": bin(b"!b!new"), "v": bin(b"2")},
            {"k": bin(b"!b!old"), "v": Bson::Null},
            {"k": bin(b"!c!other"), "v": bin(b"3")},
        ]})
        .await
        .unwrap();
    db.collection::<Document>("s.b")
        .insert_one(doc! {"_id": "new", "v": bin(b"2")})
        .await
        .unwrap();
    let s = MongoStore::open(standalone()).await.expect("reopen");
    assert_eq!(
        journal.count_documents(doc! {}).await.unwrap(),
        0,
        "journal cleared"
    );
    assert_eq!(s.get(b"!b!new").await.unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(
        s.get(b"!b!old").await.unwrap(),
        None,
        "the delete was rolled forward"
    );
    assert_eq!(
        s.get(b"!c!other").await.unwrap().as_deref(),
        Some(&b"3"[..])
    );
    assert_eq!(s.get(b"!b!keep").await.unwrap().as_deref(), Some(&b"k"[..]));
    // The rolled-forward sublevel is registered: raw scans see it.
    let keys: Vec<Vec<u8>> = collect(&s, Scan::all())
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        vec![
            b"!b!keep".to_vec(),
            b"!b!new".to_vec(),
            b"!c!other".to_vec()
        ]
    );
    // Later batches go on after the recovered one, with sequence numbers above it.
    s.write(vec![put(b"!b!after", b"4")]).await.expect("write");
    assert_eq!(
        s.get(b"!b!after").await.unwrap().as_deref(),
        Some(&b"4"[..])
    );
    assert_eq!(journal.count_documents(doc! {}).await.unwrap(), 0);
}

/// A scan cut by a MongoDB restart resumes after the last key it returned: every key exactly
/// once, in order. Writes during the outage wait and then succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_and_writes_survive_a_mongodb_restart() {
    let mut m = mongod::StandIn::start();
    let (port, dir) = (m.port, m.dir.clone());
    let s = MongoStore::open(MongoConfig::new(m.uri(), "restart"))
        .await
        .expect("open");
    // More keys than one server batch (500), so the cursor needs getMore after the restart.
    let ops = (0..1200)
        .map(|i| put(format!("!b!k{i:04}").as_bytes(), b"v"))
        .collect();
    s.write(ops).await.expect("write");
    let scan = Scan {
        lower: Bound::Included(b"!b!\0".to_vec()),
        upper: Bound::Included("!b!\u{FFFF}".as_bytes().to_vec()),
        reverse: true,
        limit: Some(1100),
    };
    let mut cursor = s.scan(scan).await.expect("scan");
    let mut got = cursor.next_batch(40).await.expect("first batch");
    m.stop();
    // A write issued while MongoDB is down waits for it.
    let pending = s.write(vec![put(b"!b!during", b"d")]);
    let restart = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(1));
        mongod::StandIn::start_at(&dir, port)
    });
    loop {
        let b = cursor
            .next_batch(40)
            .await
            .expect("batch after the restart");
        if b.is_empty() {
            break;
        }
        got.extend(b);
    }
    let m = restart.join().expect("restart");
    pending.await.expect("the write made during the outage");
    let keys: Vec<String> = got
        .iter()
        .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
        .collect();
    let want: Vec<String> = (100..1200).rev().map(|i| format!("!b!k{i:04}")).collect();
    assert_eq!(keys, want);
    assert_eq!(
        s.get(b"!b!during").await.unwrap().as_deref(),
        Some(&b"d"[..])
    );
    drop(m);
}

/// The deployment id: the first insert wins, every opener (however many start at once, on
/// whichever node) reads the same id, and it stays across reopenings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_uuid_is_created_once_and_shared() {
    let t = mongod::TestDb::new("uuid");
    let stores: Vec<MongoStore> = futures_util::future::join_all((0..4).map(|_| open(&t))).await;
    let candidates: Vec<String> = (0..stores.len())
        .map(|i| format!("candidate-{i}"))
        .collect();
    let ids = futures_util::future::join_all(
        stores
            .iter()
            .zip(&candidates)
            .map(|(s, c)| s.deployment_uuid(c)),
    )
    .await;
    let ids: Vec<String> = ids.into_iter().map(|r| r.expect("deployment id")).collect();
    assert!(
        ids[0].starts_with("candidate-"),
        "one of the candidates won: {ids:?}"
    );
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "every opener reads the winner: {ids:?}"
    );
    drop(stores);
    let again = open(&t).await.deployment_uuid("later").await.unwrap();
    assert_eq!(again, ids[0], "kept across reopenings");
    // As MongoDB holds it.
    let d = driver(&t)
        .await
        .collection::<Document>(layout::DEPLOYMENT)
        .find_one(doc! {"_id": "uuid"})
        .await
        .unwrap()
        .expect("the deployment document");
    assert_eq!(d.get_str("uuid").unwrap(), ids[0]);
}

/// `--mongodb-init-replset` against servers it must not initiate: an initiated replica set is
/// left as is (the stand-in is always one: it cannot start uninitiated, so the initiate path
/// itself is unit-tested on mongod's replies in src/server/storage/mongo/replset.rs); a
/// standalone server and a wrong set name fail with an error saying what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_replset_leaves_an_initiated_set_and_refuses_a_standalone() {
    let m = mongod::StandIn::start();
    let cfg = |uri: String| {
        let mut c = MongoConfig::new(uri, "initrs");
        c.init_replset = true;
        c.connect_window = std::time::Duration::from_secs(15);
        c
    };
    // The stand-in's set is named "secantus".
    let uri = format!(
        "mongodb://127.0.0.1:{}/?replicaSet=secantus&retryWrites=false",
        m.port
    );
    let s = MongoStore::open(cfg(uri))
        .await
        .expect("open with init on an initiated set");
    assert!(s.transactions(), "a replica set: transactions on");
    s.write(vec![put(b"!b!k", b"v")]).await.expect("write");
    drop(s);

    let wrong = format!("mongodb://127.0.0.1:{}/?replicaSet=rs0", m.port);
    let e = MongoStore::open(cfg(wrong))
        .await
        .err()
        .expect("wrong set name refused");
    assert!(
        e.to_string().contains("\"secantus\"") && e.to_string().contains("\"rs0\""),
        "{e}"
    );
    let no_name = format!("mongodb://127.0.0.1:{}/?directConnection=true", m.port);
    let e = MongoStore::open(cfg(no_name))
        .await
        .err()
        .expect("no set name refused");
    assert!(e.to_string().contains("?replicaSet=NAME"), "{e}");

    let standalone = mongod::StandIn::start_standalone();
    let uri = format!("mongodb://127.0.0.1:{}/?replicaSet=rs0", standalone.port);
    let e = MongoStore::open(cfg(uri))
        .await
        .err()
        .expect("standalone refused");
    assert!(e.to_string().contains("without --replSet"), "{e}");
}
