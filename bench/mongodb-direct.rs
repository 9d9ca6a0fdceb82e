//! The metadata bench's workloads issued directly with the MongoDB driver (no zenkoctl service in
//! between), as the baseline for the service's overhead: put = one `replace_one` upsert of the
//! document our backend stores (`{_id, v, doc}`) with write concern majority+journal, get = one
//! `find_one` by `_id`, list1000 = one `find` on an `_id` range with sort and limit 1000, read to
//! the end. Sequential and with 16 concurrent callers; prints one JSON line per workload like
//! bench/metadata-bench.js. Run by bench/metadata-mongodb.sh.
//!
//! A second put baseline (label `driver-txn`) issues exactly the writes the service issues for a
//! put: the object and its record-log entry (the metadata protocol's `..recordLogs#s3-recordlog`
//! sublevel, §4.7 of the protocol notes) in one transaction with majority+journal, as one
//! `bulkWrite` on MongoDB 8.0+ and one `replace_one` per collection before. The service against
//! it is the cost of the RPC layer alone; against the single `replace_one`, also the cost of
//! the protocol's atomic record log.
//!
//!   mongodb-direct-bench URI DATABASE [SCALE]

use std::sync::Arc;
use std::time::Instant;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, spec::BinarySubtype, Binary, Document};
use mongodb::options::{ReplaceOneModel, WriteConcern, WriteModel};
use mongodb::{Client, Collection};

fn value() -> Vec<u8> {
    serde_json::json!({
        "owner-display-name": "bench", "owner-id": "a".repeat(64), "content-length": 1024,
        "content-md5": "d41d8cd98f00b204e9800998ecf8427e", "x-amz-storage-class": "STANDARD",
        "location": [{"key": "b".repeat(40), "size": 1024, "start": 0,
                      "dataStoreName": "us-east-1", "dataStoreType": "file"}],
        "last-modified": "2026-11-25T00:00:00.000Z", "x-amz-meta-bench": "x".repeat(120),
    })
    .to_string()
    .into_bytes()
}

fn document(id: &str, v: &[u8]) -> Document {
    let json: serde_json::Value = serde_json::from_slice(v).expect("json");
    doc! {
        "_id": id,
        "v": Binary { subtype: BinarySubtype::Generic, bytes: v.to_vec() },
        "doc": mongodb::bson::to_document(&json).expect("bson"),
    }
}

/// CPU time (user + system) of this process so far: the driver's own cost per operation, to set
/// beside the service's.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// The writes the service issues for one put: the object and its record-log entry in one
/// transaction (majority + journal), as one `bulkWrite` when the server has it (8.0+).
#[derive(Clone)]
struct TxnPut {
    client: Client,
    objects: Collection<Document>,
    log: Collection<Document>,
    log_seq: Arc<std::sync::atomic::AtomicU64>,
    bulk: bool,
    value: Arc<Vec<u8>>,
}

impl TxnPut {
    async fn put(&self, id: String) {
        let seq = self
            .log_seq
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let seq = format!("{seq:016}");
        let record = serde_json::json!({
            "timestamp": "2026-11-25T00:00:00.000Z", "db": "bench",
            "entries": [{"type": "put", "key": &id, "value": String::from_utf8_lossy(&self.value)}],
        })
        .to_string()
        .into_bytes();
        let (obj, rec) = (document(&id, &self.value), document(&seq, &record));
        let mut s = self.client.start_session().await.expect("session");
        let mut wc = WriteConcern::majority();
        wc.journal = Some(true);
        s.start_transaction().write_concern(wc).await.expect("txn");
        if self.bulk {
            let model = |c: &Collection<Document>, id: &str, d: Document| -> WriteModel {
                ReplaceOneModel::builder()
                    .namespace(c.namespace())
                    .filter(doc! {"_id": id})
                    .replacement(d)
                    .upsert(true)
                    .build()
                    .into()
            };
            let models = vec![model(&self.objects, &id, obj), model(&self.log, &seq, rec)];
            self.client
                .bulk_write(models)
                .session(&mut s)
                .await
                .expect("put");
        } else {
            let q = doc! {"_id": &id};
            let a = self.objects.replace_one(q, obj).upsert(true);
            a.session(&mut s).await.expect("put");
            let q = doc! {"_id": &seq};
            let a = self.log.replace_one(q, rec).upsert(true);
            a.session(&mut s).await.expect("put");
        }
        s.commit_transaction().await.expect("commit");
    }
}

async fn measure<F, Fut>(label: &str, name: &str, total: usize, concurrency: usize, op: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, op) = (next.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    return lat;
                }
                let s = Instant::now();
                op(i).await;
                lat.push(s.elapsed().as_secs_f64() * 1e3);
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("task"));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{}",
        serde_json::json!({
            "label": label, "name": name, "concurrency": concurrency, "ops": total,
            "ops_per_s": total as f64 / secs, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "cpu_us_per_op": cpu * 1e6 / total as f64,
        })
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (uri, dbname) = (&args[1], &args[2]);
    let scale: f64 = args.get(3).map_or(1.0, |s| s.parse().expect("scale"));
    let n = |x: f64| ((x * scale).round() as usize).max(1);
    let client = Client::with_uri_str(uri).await.expect("connect");
    let db = client.database(dbname);
    let mut wc = WriteConcern::majority();
    wc.journal = Some(true);
    let coll: Collection<Document> = db.collection_with_options(
        "direct",
        mongodb::options::CollectionOptions::builder()
            .write_concern(wc)
            .build(),
    );
    let list: Collection<Document> = db.collection("direct-list");
    let v = Arc::new(value());
    let docs: Vec<Document> = (0..1000)
        .map(|i| document(&format!("dir/obj-{i:06}"), &v))
        .chain(["a", "e", "z"].iter().map(|k| document(k, &v)))
        .collect();
    list.insert_many(docs).await.expect("seed the listing");

    let put = |prefix: &'static str| {
        let (coll, v) = (coll.clone(), v.clone());
        move |i: usize| {
            let (coll, v) = (coll.clone(), v.clone());
            async move {
                let id = format!("{prefix}-{i}");
                coll.replace_one(doc! {"_id": &id}, document(&id, &v))
                    .upsert(true)
                    .await
                    .expect("put");
            }
        }
    };
    let get = |prefix: &'static str, modulo: usize| {
        let coll = coll.clone();
        move |i: usize| {
            let coll = coll.clone();
            async move {
                let id = format!("{prefix}-{}", i % modulo);
                let d = coll
                    .find_one(doc! {"_id": id})
                    .projection(doc! {"v": 1})
                    .await
                    .expect("get");
                assert!(d.is_some(), "get: missing key");
            }
        }
    };
    let list_once = {
        let list = list.clone();
        move |_: usize| {
            let list = list.clone();
            async move {
                let items: Vec<Document> = list
                    .find(doc! {"_id": {"$gte": "dir/", "$lt": "dir0"}})
                    .sort(doc! {"_id": 1})
                    .limit(1000)
                    .projection(doc! {"v": 1})
                    .await
                    .expect("list")
                    .try_collect()
                    .await
                    .expect("list");
                assert_eq!(items.len(), 1000);
            }
        }
    };
    // The service's put: object + record-log entry, atomically (see the module comment).
    let hello = db.run_command(doc! {"hello": 1}).await.expect("hello");
    let txn = TxnPut {
        client: client.clone(),
        objects: db.collection("s.bench"),
        log: db.collection("s.%2E%2ErecordLogs%23s3-recordlog"),
        log_seq: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        bulk: hello.get_i32("maxWireVersion").unwrap_or(0) >= 25,
        value: v.clone(),
    };
    let put_txn = |prefix: &'static str| {
        let txn = txn.clone();
        move |i: usize| {
            let txn = txn.clone();
            async move { txn.put(format!("{prefix}-{i}")).await }
        }
    };
    measure("driver", "put", n(1000.0), 1, put("seq")).await;
    measure("driver", "put", n(4000.0), 16, put("c16")).await;
    measure("driver-txn", "put", n(1000.0), 1, put_txn("seq")).await;
    measure("driver-txn", "put", n(4000.0), 16, put_txn("c16")).await;
    measure("driver", "get", n(5000.0), 1, get("seq", n(1000.0))).await;
    measure("driver", "get", n(20000.0), 16, get("c16", n(4000.0))).await;
    measure("driver", "list1000", n(100.0), 1, list_once.clone()).await;
    measure("driver", "list1000", n(200.0), 16, list_once).await;
    db.drop().await.expect("drop the bench database");
}
