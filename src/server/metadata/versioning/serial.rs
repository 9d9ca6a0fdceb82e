//! Per-key serialisation and the write cache: what the reference's WriteCache and
//! WriteGatheringManager guarantee (§5.8), done the Rust way.
//!
//! Every versioning-layer write to an object key (plain, new version, version-specific, delete,
//! repair) runs as: take the key's lock → read the master (pending writes first) → build the ops
//! → note them in the write cache → enqueue the batch in the store → release the lock → wait
//! until the batch is durable → drop the cache entries. The store commits batches in enqueue
//! order, so per key the writes land in lock order, and the cache lets the next holder of the
//! lock see values that are enqueued but not yet durable. The lock is held only until the batch
//! is enqueued, not across the sync, so concurrent writes to one key still share group commits.
//! Version keys (`key\0vid`) are only ever written by operations on their object key, so the
//! object key's lock covers them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::server::metadata::service::BatchOp;

/// `db + "\0\0" + key`, like the reference's cache keys.
pub fn cache_key(db: &str, key: &str) -> String {
    format!("{db}\0\0{key}")
}

#[derive(Default)]
pub struct KeyLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

/// Held while a write to one key is being prepared and enqueued.
pub struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    pub async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let m = self
            .0
            .lock()
            .expect("key locks")
            .entry(key.to_string())
            .or_default()
            .clone();
        KeyGuard {
            locks: self,
            key: key.to_string(),
            guard: Some(m.lock_owned().await),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().expect("key locks").len()
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        // Forget the key's mutex when nobody holds or waits for it (waiters hold a clone).
        let mut map = self.locks.0.lock().expect("key locks");
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// Values of enqueued, not yet durable writes: `Some(value)` for a put, `None` for a delete.
#[derive(Default)]
pub struct WriteCache {
    entries: Mutex<HashMap<String, (u64, Option<String>)>>,
    counter: AtomicU64,
}

impl WriteCache {
    /// The pending value of `db`/`key`, if a write of it is in flight.
    pub fn get(&self, db: &str, key: &str) -> Option<Option<String>> {
        self.entries
            .lock()
            .expect("write cache")
            .get(&cache_key(db, key))
            .map(|(_, v)| v.clone())
    }

    /// Note `ops` as pending; the returned guard drops them when the write is over (committed,
    /// failed, or abandoned), unless a later write replaced them.
    pub fn write<'a>(&'a self, db: &str, ops: &[BatchOp]) -> Pending<'a> {
        let sig = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.entries.lock().expect("write cache");
        let mut keys = Vec::with_capacity(ops.len());
        for op in ops {
            let (key, value) = match op {
                BatchOp::Put { key, value } => (key, Some(value.clone())),
                BatchOp::Del { key } => (key, None),
            };
            let ck = cache_key(db, key);
            entries.insert(ck.clone(), (sig, value));
            keys.push(ck);
        }
        Pending {
            cache: self,
            keys,
            sig,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().expect("write cache").len()
    }
}

pub struct Pending<'a> {
    cache: &'a WriteCache,
    keys: Vec<String>,
    sig: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let mut entries = self.cache.entries.lock().expect("write cache");
        for k in &self.keys {
            if entries.get(k).is_some_and(|(sig, _)| *sig == self.sig) {
                entries.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn locks_serialise_and_are_forgotten() {
        let locks = Arc::new(KeyLocks::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let g = locks.lock("k").await;
        let (l2, o2) = (locks.clone(), order.clone());
        let t = tokio::spawn(async move {
            let _g = l2.lock("k").await;
            o2.lock().unwrap().push(2);
        });
        tokio::task::yield_now().await;
        order.lock().unwrap().push(1);
        drop(g);
        t.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec![1, 2]);
        assert_eq!(locks.len(), 0);
    }

    #[test]
    fn cache_keeps_the_latest_writer() {
        let c = WriteCache::default();
        let put = |v: &str| BatchOp::Put {
            key: "k".into(),
            value: v.into(),
        };
        let first = c.write("db", &[put("1")]);
        let second = c.write("db", &[put("2")]);
        drop(first);
        assert_eq!(c.get("db", "k"), Some(Some("2".into())));
        drop(second);
        assert_eq!(c.get("db", "k"), None);
        let del = c.write("db", &[BatchOp::Del { key: "k".into() }]);
        assert_eq!(c.get("db", "k"), Some(None));
        drop(del);
        assert_eq!(c.len(), 0);
    }
}
