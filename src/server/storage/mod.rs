//! The storage under the metadata service: one ordered byte-keyed store with atomic, durable
//! batches and lazy range scans in both directions.
//!
//! The metadata service (src/server/metadata) keeps level-sublevel's physical key layout
//! (`!path#path!key`) on top of this trait, so a backend only has to store bytes in byte order.
//! Like Garage's `db` abstraction, the trait is small on purpose: `get`, an atomic ordered
//! `write`, and a `scan` cursor. Backends: [`redb_store::RedbStore`] (embedded, the default) and
//! [`mongo::MongoStore`] (MongoDB, issue 7), both checked by the same [`conformance`] suite.
//!
//! # Engine choice (measured, bench/storage-engines.sh)
//!
//! Candidates: maintained pure-Rust ordered KV engines with atomic batches, durable commits and
//! ordered scans in both directions: **redb 4.6** (copy-on-write B+tree, one file) and
//! **fjall 3.1** (LSM tree with a journal). sled was dropped: its last stable release (0.34.7)
//! dates from 2021 and 1.0 has stayed in alpha since, so it is not maintained enough to hold
//! deployment metadata. Numbers on this project's build machine (2 cores, virtio disk whose
//! fdatasync rate is ~290/s), 100k keys of `!bucket!obj-NNNNNNNN` with ~400-byte JSON values,
//! every commit durable (redb `Durability::Immediate`, fjall `persist(SyncData)`):
//!
//! | engine | 1 put/commit | 16 puts/commit | random get/s | 1k scan fwd/s | 1k scan rev/s |
//! | --- | --- | --- | --- | --- | --- |
//! | redb 4.6 | 216 op/s | 3,962 op/s | 179,733 | 8,313 | 10,466 |
//! | fjall 3.1 | 267 op/s | 2,977 op/s | 108,655 | 2,723 | 529 |
//!
//! Both are bound by the disk's sync rate for single-put commits, so durable put throughput
//! comes from group commit (many requests per sync, done here for every backend). On what the
//! metadata service does most — point reads and 1,000-key listings, including reverse ones —
//! redb is 1.6x to 20x faster, and its MVCC read snapshots give streams a consistent view
//! without blocking writers. **Choice: redb.**

pub mod conformance;
pub mod mongo;
pub mod redb_store;

use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;

/// A future returned by the storage trait (object-safe so the service holds `Arc<dyn Store>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// A key/value pair as stored.
pub type Entry = (Vec<u8>, Vec<u8>);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage backend {backend}: {context}: {source}")]
    Backend {
        backend: &'static str,
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("storage backend {backend} is closed")]
    Closed { backend: &'static str },
}

impl StorageError {
    pub fn backend(
        backend: &'static str,
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StorageError::Backend {
            backend,
            context: context.into(),
            source: source.into(),
        }
    }
}

/// One operation of an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: Vec<u8>, value: Vec<u8> },
    Del { key: Vec<u8> },
}

impl Op {
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Del { key } => key,
        }
    }
}

/// A range scan: bounds on the raw key, direction and an optional item limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub lower: Bound<Vec<u8>>,
    pub upper: Bound<Vec<u8>>,
    pub reverse: bool,
    pub limit: Option<u64>,
}

impl Scan {
    /// Every key, in order.
    pub fn all() -> Self {
        Scan {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
            reverse: false,
            limit: None,
        }
    }

    /// True when no key can satisfy both bounds (so backends need not ask their engine, which
    /// may reject an inverted range).
    pub fn is_empty_range(&self) -> bool {
        use Bound::*;
        match (&self.lower, &self.upper) {
            (Included(l), Included(u)) => l > u,
            (Included(l), Excluded(u))
            | (Excluded(l), Included(u))
            | (Excluded(l), Excluded(u)) => l >= u,
            _ => false,
        }
    }
}

/// A lazy scan in progress. It reads a consistent snapshot taken when the scan was opened.
pub trait Cursor: Send {
    /// Up to `max` next entries; an empty vector means the scan is exhausted.
    fn next_batch(&mut self, max: usize) -> StoreFuture<'_, Vec<Entry>>;
}

/// An ordered, byte-keyed store with atomic durable batches.
///
/// Contract (checked by [`conformance`]):
/// * keys are compared bytewise (memcmp order), empty keys and any bytes allowed;
/// * `write` is atomic (all ops or none) and durable when its future resolves `Ok`;
///   ops apply in order, so a later op on the same key wins;
/// * batches apply in the order `write` was *called* — the call enqueues, the future only
///   waits — which lets the caller number record-log entries in commit order;
/// * `scan` sees a snapshot; bounds, direction and limit are applied by the backend.
pub trait Store: Send + Sync + 'static {
    /// Short backend name for errors, health and metrics ("redb", "mongodb").
    fn backend(&self) -> &'static str;
    fn get(&self, key: &[u8]) -> StoreFuture<'_, Option<Vec<u8>>>;
    fn write(&self, ops: Vec<Op>) -> StoreFuture<'static, ()>;
    fn scan(&self, scan: Scan) -> StoreFuture<'_, Box<dyn Cursor>>;
    /// Synchronous readiness for the process health report (e.g. the writer is running).
    fn status(&self) -> Result<(), String> {
        Ok(())
    }
    /// A cheap end-to-end check for the health endpoint.
    fn check(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { self.get(b"!health-probe").await.map(|_| ()) })
    }
}

/// How a backend's writer answers one batch: `Ok` once the batch is durable.
pub type WriteReply = tokio::sync::oneshot::Sender<Result<(), StorageError>>;

/// The shared shape of [`Store::write`] for backends with a single writer task: `send` enqueues
/// the batch with its reply channel *now* (the ordering contract), and the returned future only
/// waits for the writer's answer. `send` returns false when the writer is gone.
pub fn enqueue_write(
    backend: &'static str,
    ops: Vec<Op>,
    send: impl FnOnce((Vec<Op>, WriteReply)) -> bool,
) -> StoreFuture<'static, ()> {
    let (reply, done) = tokio::sync::oneshot::channel();
    let sent = send((ops, reply));
    Box::pin(async move {
        if !sent {
            return Err(StorageError::Closed { backend });
        }
        done.await.unwrap_or(Err(StorageError::Closed { backend }))
    })
}

/// Collect a whole scan (tests and small internal lookups only).
pub async fn collect(store: &dyn Store, scan: Scan) -> Result<Vec<Entry>, StorageError> {
    let mut cursor = store.scan(scan).await?;
    let mut out = Vec::new();
    loop {
        let batch = cursor.next_batch(1024).await?;
        if batch.is_empty() {
            return Ok(out);
        }
        out.extend(batch);
    }
}
