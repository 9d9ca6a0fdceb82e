//! Measures the candidate embedded engines for the metadata service on the workloads the
//! service puts on them, every commit durable (fsync/fdatasync before the commit returns):
//!
//! * `commit1`: one put per durable commit (a lone CloudServer put);
//! * `commit16`: 16 puts per durable commit (what group commit turns 16 concurrent puts into);
//! * `get`: random point reads over 100k keys;
//! * `scan1k fwd/rev`: 1,000-key range scans forward and in reverse;
//! * plus the raw fdatasync rate of the disk, the ceiling for durable commits.
//!
//! Keys look like level-sublevel raw keys (`!bucket!obj-000123`) and values like object
//! metadata JSON (~400 bytes). Usage: `cargo run --release -- [DIR]` (see bench/storage-engines.sh).

use std::io::Write;
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, TableDefinition};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const N_KEYS: usize = 100_000;
const COMMITS: usize = 1_000;
const GETS: usize = 200_000;
const SCANS: usize = 500;

fn key(i: usize) -> Vec<u8> {
    format!("!bucket-bench!obj-{i:08}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("{{\"owner-display-name\":\"bench\",\"content-length\":{i},\"content-md5\":\"d41d8cd98f00b204e9800998ecf8427e\",\"x-amz-storage-class\":\"STANDARD\",\"location\":[{{\"key\":\"{i:040}\",\"size\":{i},\"start\":0,\"dataStoreName\":\"us-east-1\",\"dataStoreType\":\"file\"}}]");
    while v.len() < 400 {
        v.push_str(",\"pad\":0");
    }
    v.push('}');
    v.into_bytes()
}

/// Cheap deterministic pseudo-random sequence (xorshift) so both engines read the same keys.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 as usize
    }
}

trait Engine {
    fn name(&self) -> &'static str;
    /// Durable commit of `ops` puts.
    fn commit(&self, kvs: &[(Vec<u8>, Vec<u8>)]);
    /// Non-durable bulk load (setup only).
    fn load(&self, kvs: &[(Vec<u8>, Vec<u8>)]);
    fn get(&self, k: &[u8]) -> Option<usize>;
    fn scan(&self, from: &[u8], n: usize, reverse: bool) -> usize;
}

struct Redb(redb::Database);
impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb 4.6"
    }
    fn commit(&self, kvs: &[(Vec<u8>, Vec<u8>)]) {
        let tx = self.0.begin_write().unwrap();
        {
            let mut t = tx.open_table(TABLE).unwrap();
            for (k, v) in kvs {
                t.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn load(&self, kvs: &[(Vec<u8>, Vec<u8>)]) {
        let mut tx = self.0.begin_write().unwrap();
        tx.set_durability(redb::Durability::None).unwrap();
        {
            let mut t = tx.open_table(TABLE).unwrap();
            for (k, v) in kvs {
                t.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn get(&self, k: &[u8]) -> Option<usize> {
        let tx = self.0.begin_read().unwrap();
        let t = tx.open_table(TABLE).unwrap();
        t.get(k).unwrap().map(|v| v.value().len())
    }
    fn scan(&self, from: &[u8], n: usize, reverse: bool) -> usize {
        let tx = self.0.begin_read().unwrap();
        let t = tx.open_table(TABLE).unwrap();
        let mut total = 0;
        if reverse {
            for e in t.range::<&[u8]>(..=from).unwrap().rev().take(n) {
                let (k, v) = e.unwrap();
                total += k.value().len() + v.value().len();
            }
        } else {
            for e in t.range::<&[u8]>(from..).unwrap().take(n) {
                let (k, v) = e.unwrap();
                total += k.value().len() + v.value().len();
            }
        }
        total
    }
}

struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}
impl Engine for Fjall {
    fn name(&self) -> &'static str {
        "fjall 3.1"
    }
    fn commit(&self, kvs: &[(Vec<u8>, Vec<u8>)]) {
        let mut b = self.db.batch();
        for (k, v) in kvs {
            b.insert(&self.ks, k.clone(), v.clone());
        }
        b.commit().unwrap();
        self.db.persist(fjall::PersistMode::SyncData).unwrap();
    }
    fn load(&self, kvs: &[(Vec<u8>, Vec<u8>)]) {
        let mut b = self.db.batch();
        for (k, v) in kvs {
            b.insert(&self.ks, k.clone(), v.clone());
        }
        b.commit().unwrap();
    }
    fn get(&self, k: &[u8]) -> Option<usize> {
        self.ks.get(k).unwrap().map(|v| v.len())
    }
    fn scan(&self, from: &[u8], n: usize, reverse: bool) -> usize {
        let mut total = 0;
        if reverse {
            for g in self.ks.range(..=from).rev().take(n) {
                let (k, v) = g.into_inner().unwrap();
                total += k.len() + v.len();
            }
        } else {
            for g in self.ks.range(from..).take(n) {
                let (k, v) = g.into_inner().unwrap();
                total += k.len() + v.len();
            }
        }
        total
    }
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:>10.0}", n as f64 / d.as_secs_f64())
}

fn run(e: &dyn Engine) -> Vec<String> {
    let all: Vec<_> = (0..N_KEYS).map(|i| (key(i), value(i))).collect();
    let t = Instant::now();
    for chunk in all.chunks(10_000) {
        e.load(chunk);
    }
    let load = t.elapsed();

    let t = Instant::now();
    for i in 0..COMMITS {
        e.commit(&[(key(N_KEYS + i), value(i))]);
    }
    let c1 = t.elapsed();

    let t = Instant::now();
    for i in 0..COMMITS / 4 {
        let batch: Vec<_> = (0..16)
            .map(|j| (key(2 * N_KEYS + i * 16 + j), value(j)))
            .collect();
        e.commit(&batch);
    }
    let c16 = t.elapsed();

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let t = Instant::now();
    let mut found = 0;
    for _ in 0..GETS {
        if e.get(&key(rng.next() % N_KEYS)).is_some() {
            found += 1;
        }
    }
    let gets = t.elapsed();
    assert_eq!(found, GETS);

    let t = Instant::now();
    for _ in 0..SCANS {
        let start = rng.next() % (N_KEYS - 1000);
        assert!(e.scan(&key(start), 1000, false) > 0);
    }
    let fwd = t.elapsed();
    let t = Instant::now();
    for _ in 0..SCANS {
        let start = 1000 + rng.next() % (N_KEYS - 1000);
        assert!(e.scan(&key(start), 1000, true) > 0);
    }
    let rev = t.elapsed();

    vec![
        e.name().to_string(),
        format!("{:>8.2}s", load.as_secs_f64()),
        rate(COMMITS, c1),
        rate(COMMITS / 4 * 16, c16),
        rate(GETS, gets),
        rate(SCANS, fwd),
        rate(SCANS, rev),
    ]
}

fn fdatasync_rate(dir: &std::path::Path) -> f64 {
    let mut f = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    let t = Instant::now();
    let n = 500;
    for _ in 0..n {
        f.write_all(&[0u8; 512]).unwrap();
        f.sync_data().unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let base = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base).unwrap();
    println!(
        "disk fdatasync rate ({}): {:.0}/s (ceiling for 1-op durable commits)",
        base.display(),
        fdatasync_rate(dir.path())
    );
    let mut rows = vec![vec![
        "engine".to_string(),
        "load 100k".into(),
        "commit1 op/s".into(),
        "commit16 op/s".into(),
        "get/s".into(),
        "scan1k fwd/s".into(),
        "scan1k rev/s".into(),
    ]];

    let redb_db = redb::Database::create(dir.path().join("redb.db")).unwrap();
    rows.push(run(&Redb(redb_db)));

    let db = fjall::Database::builder(dir.path().join("fjall"))
        .manual_journal_persist(true)
        .open()
        .unwrap();
    let ks = db
        .keyspace("kv", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    rows.push(run(&Fjall { db, ks }));

    for r in rows {
        println!(
            "{:<10} {:>10} {:>13} {:>14} {:>10} {:>13} {:>13}",
            r[0], r[1], r[2], r[3], r[4], r[5], r[6]
        );
    }
}
