//! The MongoDB backend (issue 7), with the official `mongodb` driver.
//!
//! # Layout
//! One database per deployment (`--mongodb-database`, default `zenko`), and in it:
//! * one collection per level-sublevel database (bucket, `__metastore`, `users..bucket`, the
//!   record log `..recordLogs#s3-recordlog`, …), named `s.<escaped name>` (or `h.<sha256>` when
//!   too long, see [`layout::collection_name`]); documents `{_id: <key>, v: BinData(<value>),
//!   doc: {…}}`: `_id` is the metadata key (a string, verbatim), `v` the value byte for byte
//!   (what reads return), and `doc` the same value as a BSON document when it is a JSON object
//!   (so object metadata can be queried, e.g. `{"doc.content-length": {$gt: 0}}`), left out when
//!   the value is not a JSON object, is larger than [`DOC_MAX_BYTES`], or has field names MongoDB
//!   would refuse (`$…`, NUL) or nests deeper than [`DOC_MAX_DEPTH`];
//! * `root`: keys outside any sublevel (and any key that is not UTF-8), `_id` mapped byte by byte
//!   to code points (order-preserving, see [`layout`]);
//! * `zenkoctl.sublevels`: `{_id: <collection>, sub: <sublevel name>}` for every sublevel
//!   collection (how raw scans enumerate them, and how hashed names are read back);
//! * `zenkoctl.journal` (standalone servers only): batches being applied;
//! * `zenkoctl.deployment`: `{_id: "uuid", uuid: …}`, the deployment id (see
//!   [`MongoStore::deployment_uuid`]).
//!
//! # Order and scans
//! `_id` strings compare as their UTF-8 bytes (no collation is set anywhere), which is the
//! embedded engine's order. A scan inside one sublevel is one `find` with the range on `_id`, the
//! sort, and the limit pushed down, read through a driver cursor (one server batch in memory at a
//! time). A raw scan spanning sublevels (`rawListKeys`) reads the sublevel collections one after
//! the other in the order of their prefixes (their key intervals are disjoint, see [`layout`])
//! merged with the root collection, so it comes out in global byte order with at most two open
//! cursors. On a replica set (MongoDB 5.0+) each scan reads in a snapshot session (readConcern `snapshot`);
//! MongoDB keeps snapshot history for `minSnapshotHistoryWindowInSeconds` (300 s by default), so a
//! scan cut by an error (connection loss, snapshot too old, cursor lost on restart) resumes after
//! the last key it returned, in a new snapshot.
//!
//! # Batches
//! One writer task takes batches in call order and groups those queued meanwhile (group commit).
//! * Replica set / sharded cluster: one transaction per group, write concern `majority` with
//!   journaling: atomic and durable. On MongoDB 8.0+ the group's writes to all its collections
//!   are one `bulkWrite` command (a put and its record-log entry: one round trip, then the
//!   commit); before 8.0, one replace (or one delete + one insert) per collection.
//! * Standalone (no transactions): the group's final key states are first written as one
//!   journal document (`w:1, j:true`), then applied, then the journal document is deleted. At
//!   startup, and before any later batch after a failure, pending journal documents are applied
//!   again (the writes are idempotent), so after recovery a batch is all there or not there. While
//!   a batch is being applied readers can see part of it (no isolation without transactions), and
//!   a batch must fit in one 16 MiB journal document.
//!
//! # Failures
//! Connection loss and transient errors (network, server selection, primary step-down, transient
//! transaction errors, unknown commit results) are retried for `retry_window` (20 s by default,
//! under the 30 s after which Arsenal's RPC client gives up on a call, so it gets our error);
//! then the operation fails with the last error and the time spent. Re-applying a group is
//! idempotent (deletes and full replacements of final states), so a retry after an unknown commit
//! result is safe. Health: [`Store::check`] pings the server.

pub mod layout;
pub mod replset;
mod scan;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, Document, RawDocumentBuf};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, WriteConcern};
use mongodb::{Client, Collection, Database};
use tokio::sync::mpsc;

use super::{Cursor, Op, Scan, StorageError, Store, StoreFuture};
use layout::Place;

const BACKEND: &str = "mongodb";
/// Values up to this size that are JSON objects are also stored as a queryable `doc`.
pub const DOC_MAX_BYTES: usize = 4 << 20;
/// Deepest `doc` nesting kept (MongoDB refuses documents nested deeper than 100).
pub const DOC_MAX_DEPTH: usize = 64;
/// Group commit bounds (a standalone group must fit one 16 MiB journal document).
const MAX_GROUP_BATCHES: usize = 256;
const MAX_GROUP_BYTES: usize = 8 << 20;
/// Largest `$in` list (bytes of ids) sent in one delete.
const MAX_DELETE_BYTES: usize = 4 << 20;

/// How many of `ids` (at least one) fit one `$in` delete under [`MAX_DELETE_BYTES`].
fn delete_chunk_len<S: AsRef<str>>(ids: &[S]) -> usize {
    let mut bytes = 0;
    ids.iter()
        .take_while(|id| {
            bytes += id.as_ref().len() + 16;
            bytes <= MAX_DELETE_BYTES
        })
        .count()
        .max(1)
}

/// How long operations retry through connection loss by default: under Arsenal's 30 s RPC call
/// timeout, so a client gets a clear error rather than a timeout.
pub const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(20);

/// How to reach the deployment's MongoDB.
#[derive(Debug, Clone)]
pub struct MongoConfig {
    pub uri: String,
    pub database: String,
    /// How long an operation keeps retrying through connection loss before it fails.
    pub retry_window: Duration,
    /// How long [`MongoStore::open`] waits for the server to answer.
    pub connect_window: Duration,
    /// Use the standalone fallback (batch journal, no transactions) even on a replica set: how
    /// the fallback is tested against a replica-set stand-in.
    pub force_standalone: bool,
    /// Write one command per collection even where `bulkWrite` exists (MongoDB 8.0+): how the
    /// path for older servers is tested against the stand-in (which has it).
    pub per_collection_writes: bool,
    /// Initiate the URI's replica set as a single-node set if it is not yet (the bundled
    /// `mongod --replSet` service), then wait for its primary: see [`replset`].
    pub init_replset: bool,
}

impl MongoConfig {
    pub fn new(uri: impl Into<String>, database: impl Into<String>) -> Self {
        MongoConfig {
            uri: uri.into(),
            database: database.into(),
            retry_window: DEFAULT_RETRY_WINDOW,
            connect_window: Duration::from_secs(60),
            force_standalone: false,
            per_collection_writes: false,
            init_replset: false,
        }
    }
}

/// A sublevel collection known to the registry.
#[derive(Debug, Clone)]
struct Sublevel {
    coll: String,
}

pub(crate) struct Inner {
    client: Client,
    db: Database,
    /// Hosts from the URI (for messages; the URI itself may hold credentials).
    hosts: String,
    database: String,
    /// Replica set or sharded cluster: transactions and majority writes.
    transactions: bool,
    /// Scans read in snapshot sessions (a replica set or cluster of MongoDB 5.0+, wire 13+).
    snapshot_reads: bool,
    /// The server has the `bulkWrite` command (MongoDB 8.0+, wire 25+): a transaction's writes
    /// to every collection go in one command.
    bulk_write: bool,
    /// Sublevel prefix `!name!` → collection, in prefix (= key interval) order.
    sublevels: RwLock<BTreeMap<Vec<u8>, Sublevel>>,
    /// The root collection may hold keys inside a sublevel's interval (non-UTF-8 keys).
    strays: AtomicBool,
    retry_window: Duration,
    /// Read handles by sublevel name: a point read neither escapes the name nor builds a
    /// collection handle again (bounded: cleared when it reaches [`MAX_READ_HANDLES`]).
    read_handles: RwLock<HashMap<String, Collection<RawDocumentBuf>>>,
}

const MAX_READ_HANDLES: usize = 4096;

type Reply = super::WriteReply;

pub struct MongoStore {
    inner: Arc<Inner>,
    tx: Option<mpsc::UnboundedSender<(Vec<Op>, Reply)>>,
    writer: tokio::task::JoinHandle<()>,
}

pub(crate) fn err(
    context: impl Into<String>,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> StorageError {
    StorageError::backend(BACKEND, context, e)
}

/// "reading key …", formatted only when needed.
struct Reading<'a>(&'a [u8]);

impl std::fmt::Display for Reading<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading key {:?}", key_str(self.0))
    }
}

/// A key for messages (long keys shortened).
pub(crate) fn key_str(key: &[u8]) -> String {
    let s = String::from_utf8_lossy(key);
    if s.chars().count() > 200 {
        format!(
            "{}… ({} bytes)",
            s.chars().take(200).collect::<String>(),
            key.len()
        )
    } else {
        s.into_owned()
    }
}

/// Errors worth retrying: the connection, server selection, elections and shutdowns, and what
/// MongoDB labels transient.
pub(crate) fn is_retryable(e: &MongoError) -> bool {
    const CODES: &[i32] = &[
        6,     // HostUnreachable
        7,     // HostNotFound
        43,    // CursorNotFound (the server restarted under an open cursor)
        89,    // NetworkTimeout
        91,    // ShutdownInProgress
        112,   // WriteConflict
        189,   // PrimarySteppedDown
        239,   // SnapshotTooOld
        246,   // SnapshotUnavailable
        251,   // NoSuchTransaction (the server lost it, e.g. on restart)
        262,   // ExceededTimeLimit
        9001,  // SocketException
        10107, // NotWritablePrimary
        11600, // InterruptedAtShutdown
        11602, // InterruptedDueToReplStateChange
        13435, // NotPrimaryNoSecondaryOk
        13436, // NotPrimaryOrSecondary
    ];
    if [
        "TransientTransactionError",
        "UnknownTransactionCommitResult",
        "RetryableWriteError",
    ]
    .iter()
    .any(|l| e.contains_label(l))
    {
        return true;
    }
    match &*e.kind {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. } => true,
        ErrorKind::Command(c) => CODES.contains(&c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => CODES.contains(&w.code),
        ErrorKind::InsertMany(im) => im
            .write_concern_error
            .as_ref()
            .is_some_and(|w| CODES.contains(&w.code)),
        _ => false,
    }
}

/// A write refused because the `_id` (or a unique index key) exists.
pub(crate) fn is_duplicate_key(e: &MongoError) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Retry `op` through transient errors for `window`; the final error says how long it tried.
/// `what` is only formatted when something goes wrong (reads format no message on success).
pub(crate) async fn with_retry<T, F, Fut, W>(
    window: Duration,
    what: &W,
    mut op: F,
) -> Result<T, StorageError>
where
    W: std::fmt::Display + ?Sized,
    F: FnMut() -> Fut,
    Fut: std::future::IntoFuture<Output = Result<T, MongoError>>,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(50);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if is_retryable(&e) && start.elapsed() < window => {
                tracing::warn!(error = %e, attempt = attempts, "mongodb: {what}: retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            Err(e) if is_retryable(&e) => {
                return Err(err(
                    format!(
                        "{what}: gave up after {attempts} attempts over {:.1} s (the MongoDB server stayed unreachable or kept failing)",
                        start.elapsed().as_secs_f64()
                    ),
                    e,
                ))
            }
            Err(e) => return Err(err(what.to_string(), e)),
        }
    }
}

/// The value as a queryable document, when it is a JSON object MongoDB accepts as is.
fn json_doc(value: &[u8]) -> Option<Document> {
    if value.len() > DOC_MAX_BYTES || value.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{')
    {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(value).ok()?;
    fn acceptable(v: &serde_json::Value, depth: usize) -> bool {
        if depth > DOC_MAX_DEPTH {
            return false;
        }
        match v {
            serde_json::Value::Object(m) => m
                .iter()
                .all(|(k, v)| !k.starts_with('$') && !k.contains('\0') && acceptable(v, depth + 1)),
            serde_json::Value::Array(a) => a.iter().all(|v| acceptable(v, depth + 1)),
            _ => true,
        }
    }
    if !v.is_object() || !acceptable(&v, 1) {
        return None;
    }
    mongodb::bson::to_document(&v).ok()
}

fn value_doc(id: String, value: &[u8]) -> Document {
    let mut d = doc! {
        "_id": id,
        "v": Binary { subtype: BinarySubtype::Generic, bytes: value.to_vec() },
    };
    if let Some(j) = json_doc(value) {
        d.insert("doc", j);
    }
    d
}

/// What a group of batches does to one collection.
#[derive(Default)]
struct CollChanges {
    dels: Vec<String>,
    puts: Vec<Document>,
    put_ids: Vec<String>,
}

/// Final states of a group of batches (later ops on the same key win), by collection.
struct Changes {
    by_coll: BTreeMap<String, CollChanges>,
    /// Sublevel collections the group writes to: prefix → (name, collection).
    sublevels: BTreeMap<Vec<u8>, (String, String)>,
    strays: bool,
}

fn final_states<'a>(
    batches: impl Iterator<Item = &'a [Op]>,
) -> BTreeMap<&'a [u8], Option<&'a [u8]>> {
    let mut m = BTreeMap::new();
    for ops in batches {
        for op in ops {
            match op {
                Op::Put { key, value } => m.insert(key.as_slice(), Some(value.as_slice())),
                Op::Del { key } => m.insert(key.as_slice(), None),
            };
        }
    }
    m
}

fn changes(states: &BTreeMap<&[u8], Option<&[u8]>>) -> Changes {
    let mut c = Changes {
        by_coll: BTreeMap::new(),
        sublevels: BTreeMap::new(),
        strays: false,
    };
    for (key, value) in states {
        let (coll, id) = match layout::route(key) {
            Place::Sublevel { sub, inner } => {
                let coll = layout::collection_name(sub);
                c.sublevels
                    .entry(layout::prefix_of(sub))
                    .or_insert_with(|| (sub.to_string(), coll.clone()));
                (coll, inner.to_string())
            }
            Place::Root => {
                c.strays |= layout::is_stray(key);
                (layout::ROOT.to_string(), layout::bytes_to_id(key))
            }
        };
        let cc = c.by_coll.entry(coll).or_default();
        match value {
            Some(v) => {
                cc.puts.push(value_doc(id.clone(), v));
                cc.put_ids.push(id);
            }
            None => cc.dels.push(id),
        }
    }
    c
}

impl Inner {
    fn durable(&self) -> WriteConcern {
        let mut wc = if self.transactions {
            WriteConcern::majority()
        } else {
            WriteConcern::nodes(1)
        };
        wc.journal = Some(true);
        wc
    }

    /// A handle for writes outside transactions (durable write concern on every op).
    fn durable_coll(&self, name: &str) -> Collection<Document> {
        self.db.collection_with_options(
            name,
            mongodb::options::CollectionOptions::builder()
                .write_concern(self.durable())
                .build(),
        )
    }

    /// The collection holding sublevel `sub`, for reads.
    fn read_handle(&self, sub: &str) -> Collection<RawDocumentBuf> {
        if let Some(h) = self.read_handles.read().expect("handles lock").get(sub) {
            return h.clone();
        }
        let h: Collection<RawDocumentBuf> = self.db.collection(&layout::collection_name(sub));
        let mut handles = self.read_handles.write().expect("handles lock");
        if handles.len() >= MAX_READ_HANDLES {
            handles.clear();
        }
        handles.insert(sub.to_string(), h.clone());
        h
    }

    fn describe(&self) -> String {
        format!("{} database {:?}", self.hosts, self.database)
    }

    /// Make sure every sublevel the group writes to has its collection and registry entry
    /// (durably, before any of its keys is acknowledged).
    async fn ensure_sublevels(&self, c: &Changes) -> Result<(), StorageError> {
        for (prefix, (sub, coll)) in &c.sublevels {
            if self
                .sublevels
                .read()
                .expect("registry lock")
                .contains_key(prefix)
            {
                continue;
            }
            let registry = self.durable_coll(layout::REGISTRY);
            let existing = with_retry(self.retry_window, "reading the sublevel registry", || {
                registry.find_one(doc! {"_id": coll.as_str()})
            })
            .await?;
            if let Some(d) = existing {
                if d.get_str("sub").ok() != Some(sub.as_str()) {
                    return Err(err(
                        format!("registering sublevel {sub:?}"),
                        format!("collection {coll} is already registered for sublevel {:?} (hash collision or foreign data)", d.get_str("sub").unwrap_or("?")),
                    ));
                }
            } else {
                with_retry(
                    self.retry_window,
                    &format!("creating collection {coll} for sublevel {sub:?}"),
                    || async {
                        match self.db.create_collection(coll.as_str()).await {
                            Err(e) if matches!(&*e.kind, ErrorKind::Command(c) if c.code == 48) => {
                                Ok(())
                            }
                            other => other,
                        }
                    },
                )
                .await?;
                with_retry(
                    self.retry_window,
                    &format!("registering sublevel {sub:?}"),
                    || {
                        registry
                            .replace_one(
                                doc! {"_id": coll.as_str()},
                                doc! {"_id": coll.as_str(), "sub": sub.as_str()},
                            )
                            .upsert(true)
                    },
                )
                .await?;
            }
            self.sublevels
                .write()
                .expect("registry lock")
                .insert(prefix.clone(), Sublevel { coll: coll.clone() });
        }
        if c.strays {
            self.strays.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Apply final states to each collection (in `session`'s transaction when given).
    async fn apply_changes(
        &self,
        c: &Changes,
        mut session: Option<&mut mongodb::ClientSession>,
    ) -> Result<(), MongoError> {
        for (coll, cc) in &c.by_coll {
            let h: Collection<Document> = if session.is_some() {
                self.db.collection(coll)
            } else {
                self.durable_coll(coll)
            };
            if cc.dels.is_empty() && cc.puts.len() == 1 {
                let d = &cc.puts[0];
                let q = doc! {"_id": d.get("_id").cloned().unwrap_or(Bson::Null)};
                let a = h.replace_one(q, d).upsert(true);
                match session.as_deref_mut() {
                    Some(s) => a.session(s).await?,
                    None => a.await?,
                };
                continue;
            }
            // Delete every key the group touches, then insert the puts' new documents.
            let mut ids: Vec<&String> = cc.dels.iter().chain(cc.put_ids.iter()).collect();
            while !ids.is_empty() {
                let n = delete_chunk_len(&ids);
                let chunk: Vec<&String> = ids.drain(..n).collect();
                let a = h.delete_many(doc! {"_id": {"$in": chunk}});
                match session.as_deref_mut() {
                    Some(s) => a.session(s).await?,
                    None => a.await?,
                };
            }
            if !cc.puts.is_empty() {
                let a = h.insert_many(&cc.puts);
                match session.as_deref_mut() {
                    Some(s) => a.session(s).await?,
                    None => a.await?,
                };
            }
        }
        Ok(())
    }

    /// Apply final states in one `bulkWrite` command across collections (MongoDB 8.0+): a put
    /// and its record-log entry cost one round trip instead of one per collection (plus, for
    /// groups, one delete and one insert per collection).
    async fn apply_bulk(
        &self,
        c: &Changes,
        session: &mut mongodb::ClientSession,
    ) -> Result<(), MongoError> {
        use mongodb::options::{DeleteManyModel, ReplaceOneModel, WriteModel};
        let mut models: Vec<WriteModel> = Vec::new();
        for (coll, cc) in &c.by_coll {
            let ns = mongodb::Namespace {
                db: self.database.clone(),
                coll: coll.clone(),
            };
            // A group's deletes and puts are disjoint (final states): their order is free.
            let mut dels: &[String] = &cc.dels;
            while !dels.is_empty() {
                let n = delete_chunk_len(dels);
                let (chunk, rest) = dels.split_at(n);
                dels = rest;
                models.push(
                    DeleteManyModel::builder()
                        .namespace(ns.clone())
                        .filter(doc! {"_id": {"$in": chunk}})
                        .build()
                        .into(),
                );
            }
            for (d, id) in cc.puts.iter().zip(&cc.put_ids) {
                models.push(
                    ReplaceOneModel::builder()
                        .namespace(ns.clone())
                        .filter(doc! {"_id": id.as_str()})
                        .replacement(d.clone())
                        .upsert(true)
                        .build()
                        .into(),
                );
            }
        }
        self.client.bulk_write(models).session(session).await?;
        Ok(())
    }

    async fn apply_in_transaction(&self, c: &Changes) -> Result<(), MongoError> {
        let mut s = self.client.start_session().await?;
        s.start_transaction().write_concern(self.durable()).await?;
        let applied = if self.bulk_write {
            self.apply_bulk(c, &mut s).await
        } else {
            self.apply_changes(c, Some(&mut s)).await
        };
        match applied {
            Ok(()) => s.commit_transaction().await,
            Err(e) => {
                let _ = s.abort_transaction().await;
                Err(e)
            }
        }
    }

    /// Apply one group atomically (transactions) or through the journal (standalone).
    async fn apply_group(
        &self,
        batches: &[&[Op]],
        journal: &mut Journal,
    ) -> Result<(), StorageError> {
        let states = final_states(batches.iter().copied());
        let c = changes(&states);
        self.ensure_sublevels(&c).await?;
        let nops: usize = batches.iter().map(|b| b.len()).sum();
        let what = format!("applying {} batch(es), {nops} op(s)", batches.len());
        if self.transactions {
            return with_retry(self.retry_window, &what, || self.apply_in_transaction(&c)).await;
        }
        journal.pending_first(self).await?;
        let id = journal.record(self, &states).await?;
        with_retry(self.retry_window, &what, || self.apply_changes(&c, None)).await?;
        journal.done(self, id).await
    }
}

/// The standalone fallback's journal: `{_id: seq, ops: [{k: BinData, v: BinData | null}]}`.
struct Journal {
    next: i64,
    /// A journal entry left by a failed apply: it must be applied before anything else.
    pending: bool,
}

impl Journal {
    async fn record(
        &mut self,
        inner: &Inner,
        states: &BTreeMap<&[u8], Option<&[u8]>>,
    ) -> Result<i64, StorageError> {
        let ops: Vec<Document> = states
            .iter()
            .map(|(k, v)| {
                doc! {
                    "k": Binary { subtype: BinarySubtype::Generic, bytes: k.to_vec() },
                    "v": match v {
                        Some(v) => Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: v.to_vec() }),
                        None => Bson::Null,
                    },
                }
            })
            .collect();
        let id = self.next;
        self.next += 1;
        let d = doc! {"_id": id, "ops": ops};
        let j = inner.durable_coll(layout::JOURNAL);
        with_retry(inner.retry_window, "writing the batch journal", || {
            j.replace_one(doc! {"_id": id}, &d).upsert(true)
        })
        .await?;
        // From here on, a failure leaves the entry to roll forward before any later batch.
        self.pending = true;
        Ok(id)
    }

    async fn done(&mut self, inner: &Inner, id: i64) -> Result<(), StorageError> {
        let j = inner.durable_coll(layout::JOURNAL);
        with_retry(inner.retry_window, "clearing the batch journal", || {
            j.delete_one(doc! {"_id": id})
        })
        .await?;
        self.pending = false;
        Ok(())
    }

    /// Roll forward every journal entry, oldest first (startup, or after a failed apply).
    async fn pending_first(&mut self, inner: &Inner) -> Result<(), StorageError> {
        if !self.pending {
            return Ok(());
        }
        let j = inner.durable_coll(layout::JOURNAL);
        let entries: Vec<Document> =
            with_retry(inner.retry_window, "reading the batch journal", || async {
                use futures_util::TryStreamExt;
                j.find(doc! {})
                    .sort(doc! {"_id": 1})
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        for e in entries {
            let id = e
                .get_i64("_id")
                .map_err(|x| err("reading the batch journal", x))?;
            let ops = e
                .get_array("ops")
                .map_err(|x| err(format!("journal entry {id}"), x))?;
            let mut owned: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(ops.len());
            for op in ops {
                let d = op
                    .as_document()
                    .ok_or_else(|| err(format!("journal entry {id}"), "an op is not a document"))?;
                let k = d
                    .get_binary_generic("k")
                    .map_err(|x| err(format!("journal entry {id}"), x))?
                    .clone();
                let v = match d.get("v") {
                    Some(Bson::Binary(b)) => Some(b.bytes.clone()),
                    _ => None,
                };
                owned.push((k, v));
            }
            let states: BTreeMap<&[u8], Option<&[u8]>> = owned
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_deref()))
                .collect();
            let c = changes(&states);
            inner.ensure_sublevels(&c).await?;
            with_retry(
                inner.retry_window,
                &format!("rolling forward journal entry {id}"),
                || inner.apply_changes(&c, None),
            )
            .await?;
            with_retry(inner.retry_window, "clearing the batch journal", || {
                j.delete_one(doc! {"_id": id})
            })
            .await?;
            tracing::info!(
                entry = id,
                ops = owned.len(),
                "mongodb: rolled a journaled batch forward"
            );
            self.next = self.next.max(id + 1);
        }
        self.pending = false;
        Ok(())
    }
}

fn op_size(op: &Op) -> usize {
    match op {
        Op::Put { key, value } => key.len() + value.len(),
        Op::Del { key } => key.len(),
    }
}

async fn writer_loop(
    inner: Arc<Inner>,
    mut journal: Journal,
    mut rx: mpsc::UnboundedReceiver<(Vec<Op>, Reply)>,
) {
    while let Some(first) = rx.recv().await {
        let mut bytes: usize = first.0.iter().map(op_size).sum();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_BATCHES && bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += next.0.iter().map(op_size).sum::<usize>();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let batches: Vec<&[Op]> = group.iter().map(|(ops, _)| ops.as_slice()).collect();
        match inner.apply_group(&batches, &mut journal).await {
            Ok(()) => {
                for (_, reply) in group {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) if group.len() == 1 => {
                let (_, reply) = group.pop().expect("one batch");
                let _ = reply.send(Err(e));
            }
            Err(_) => {
                // One bad batch must not fail its neighbours: apply them one by one.
                for (ops, reply) in group {
                    let r = inner.apply_group(&[&ops], &mut journal).await;
                    let _ = reply.send(r);
                }
            }
        }
    }
}

impl MongoStore {
    /// Connect (waiting up to `connect_window` for the server), detect the topology, load the
    /// sublevel registry and, on a standalone server, roll the batch journal forward.
    pub async fn open(config: MongoConfig) -> Result<Self, StorageError> {
        if config.database.is_empty()
            || config.database.len() > layout::MAX_DATABASE_NAME
            || config.database.contains([
                '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0',
            ])
        {
            return Err(err(
                "opening",
                format!(
                    "invalid MongoDB database name {:?} (1 to {} bytes, none of /\\. \"$*<>:|? or NUL)",
                    config.database,
                    layout::MAX_DATABASE_NAME
                ),
            ));
        }
        let mut opts = ClientOptions::parse(&config.uri)
            .await
            .map_err(|e| err("parsing the MongoDB URI", e))?;
        let hosts = opts
            .hosts
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(",");
        opts.app_name.get_or_insert_with(|| "zenkoctl".into());
        // Each attempt gives up quickly; our retry loop decides how long to keep trying.
        opts.server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        opts.connect_timeout.get_or_insert(Duration::from_secs(5));
        if config.init_replset {
            replset::ensure_initiated(&opts, config.connect_window).await?;
        }
        let client =
            Client::with_options(opts).map_err(|e| err(format!("connecting to {hosts}"), e))?;
        let db = client.database(&config.database);
        let admin = client.database("admin");
        let hello = with_retry(
            config.connect_window,
            &format!("connecting to MongoDB at {hosts}"),
            || admin.run_command(doc! {"hello": 1}),
        )
        .await?;
        let transactions = !config.force_standalone
            && (hello.get_str("setName").is_ok() || hello.get_str("msg").ok() == Some("isdbgrid"));
        let wire = hello.get_i32("maxWireVersion").unwrap_or(0);
        let snapshot_reads = transactions && wire >= 13;
        let bulk_write = wire >= 25 && !config.per_collection_writes;
        tracing::info!(%hosts, database = %config.database, transactions, snapshot_reads, bulk_write, "mongodb metadata backend connected");
        let inner = Arc::new(Inner {
            client,
            db,
            hosts,
            database: config.database.clone(),
            transactions,
            snapshot_reads,
            bulk_write,
            sublevels: RwLock::new(BTreeMap::new()),
            strays: AtomicBool::new(false),
            retry_window: config.retry_window,
            read_handles: RwLock::new(HashMap::new()),
        });
        inner.load_registry().await?;
        let mut journal = Journal {
            next: 1,
            pending: !transactions,
        };
        if !transactions {
            journal.pending_first(&inner).await?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(writer_loop(inner.clone(), journal, rx));
        Ok(MongoStore {
            inner,
            tx: Some(tx),
            writer,
        })
    }

    /// Replica set or sharded cluster (transactions), as detected at open.
    pub fn transactions(&self) -> bool {
        self.inner.transactions
    }

    /// The deployment id kept in this database: the stored one, or `candidate` when there is
    /// none yet. Created with an insert on a fixed `_id`, so when servers start at once the
    /// first insert wins and the others get a duplicate-key error and read the winner's id:
    /// every instance, on whichever node it runs, answers the same id.
    pub async fn deployment_uuid(&self, candidate: &str) -> Result<String, StorageError> {
        let inner = &self.inner;
        let coll = inner.durable_coll(layout::DEPLOYMENT);
        let stored = |d: Document| {
            d.get_str("uuid").map(str::to_string).map_err(|e| {
                err(
                    format!(
                        "reading the deployment id in {} ({})",
                        layout::DEPLOYMENT,
                        inner.describe()
                    ),
                    e,
                )
            })
        };
        let what = "reading the deployment id";
        if let Some(d) = with_retry(inner.retry_window, what, || {
            coll.find_one(doc! {"_id": "uuid"})
        })
        .await?
        {
            return stored(d);
        }
        let created = with_retry(inner.retry_window, "creating the deployment id", || async {
            match coll
                .insert_one(doc! {"_id": "uuid", "uuid": candidate})
                .await
            {
                Ok(_) => Ok(true),
                // Another instance inserted first (or our own earlier attempt did, before a
                // connection loss hid its answer): read what is there.
                Err(e) if is_duplicate_key(&e) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await?;
        if created {
            tracing::info!(uuid = candidate, "mongodb: created the deployment id");
            return Ok(candidate.to_string());
        }
        match with_retry(inner.retry_window, what, || {
            coll.find_one(doc! {"_id": "uuid"})
        })
        .await?
        {
            Some(d) => stored(d),
            None => Err(err(
                what,
                format!(
                    "{} reported a duplicate deployment id but holds none",
                    inner.describe()
                ),
            )),
        }
    }
}

impl Inner {
    async fn load_registry(&self) -> Result<(), StorageError> {
        use futures_util::TryStreamExt;
        // Created up front: collections are not created implicitly inside transactions on
        // servers older than 4.4.
        for coll in [layout::ROOT, layout::REGISTRY, layout::JOURNAL] {
            with_retry(
                self.retry_window,
                &format!("creating collection {coll}"),
                || async {
                    match self.db.create_collection(coll).await {
                        Err(e) if matches!(&*e.kind, ErrorKind::Command(c) if c.code == 48) => {
                            Ok(())
                        }
                        other => other,
                    }
                },
            )
            .await?;
        }
        let registry: Collection<Document> = self.db.collection(layout::REGISTRY);
        let docs: Vec<Document> = with_retry(
            self.retry_window,
            "reading the sublevel registry",
            || async { registry.find(doc! {}).await?.try_collect().await },
        )
        .await?;
        let mut map = BTreeMap::new();
        for d in docs {
            let (Ok(coll), Ok(sub)) = (d.get_str("_id"), d.get_str("sub")) else {
                return Err(err(
                    "reading the sublevel registry",
                    format!("malformed entry {d}"),
                ));
            };
            map.insert(
                layout::prefix_of(sub),
                Sublevel {
                    coll: coll.to_string(),
                },
            );
        }
        *self.sublevels.write().expect("registry lock") = map;
        // Non-UTF-8 keys that fall inside a sublevel's interval live in the root collection.
        let root: Collection<RawDocumentBuf> = self.db.collection(layout::ROOT);
        let ids: Vec<RawDocumentBuf> = with_retry(
            self.retry_window,
            "checking the root collection",
            || async {
                root.find(doc! {"_id": {"$gte": "!", "$lt": "\""}})
                    .projection(doc! {"_id": 1})
                    .await?
                    .try_collect()
                    .await
            },
        )
        .await?;
        let strays = ids.iter().any(|d| {
            d.get_str("_id")
                .ok()
                .and_then(layout::id_to_bytes)
                .is_some_and(|k| layout::is_stray(&k))
        });
        self.strays.store(strays, Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for MongoStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what was queued, then stop.
        self.tx.take();
    }
}

impl Store for MongoStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn status(&self) -> Result<(), String> {
        if self.writer.is_finished() {
            return Err(format!(
                "the mongodb writer for {} has stopped",
                self.inner.describe()
            ));
        }
        Ok(())
    }

    fn check(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let admin = self.inner.client.database("admin");
            let ping = admin.run_command(doc! {"ping": 1});
            match tokio::time::timeout(Duration::from_secs(5), ping).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(err(
                    format!("MongoDB {} does not answer", self.inner.describe()),
                    e,
                )),
                Err(_) => Err(err(
                    format!("MongoDB {}", self.inner.describe()),
                    "no answer to ping within 5 s",
                )),
            }
        })
    }

    fn get(&self, key: &[u8]) -> StoreFuture<'_, Option<Vec<u8>>> {
        let key = key.to_vec();
        Box::pin(async move {
            let (h, id) = match layout::route(&key) {
                Place::Sublevel { sub, inner } => (self.inner.read_handle(sub), inner.to_string()),
                Place::Root => (
                    self.inner.db.collection(layout::ROOT),
                    layout::bytes_to_id(&key),
                ),
            };
            let found = with_retry(self.inner.retry_window, &Reading(&key), || {
                h.find_one(doc! {"_id": id.as_str()})
                    .projection(doc! {"v": 1})
            })
            .await?;
            match found {
                None => Ok(None),
                Some(d) => d
                    .get_binary("v")
                    .map(|b| Some(b.bytes.to_vec()))
                    .map_err(|e| {
                        err(
                            format!("reading key {:?} in {}", key_str(&key), h.name()),
                            e,
                        )
                    }),
            }
        })
    }

    fn write(&self, ops: Vec<Op>) -> StoreFuture<'static, ()> {
        super::enqueue_write(BACKEND, ops, |request| {
            self.tx.as_ref().is_some_and(|tx| tx.send(request).is_ok())
        })
    }

    fn scan(&self, scan: Scan) -> StoreFuture<'_, Box<dyn Cursor>> {
        Box::pin(async move {
            let mut c = scan::MongoCursor::new(self.inner.clone(), scan);
            c.start().await?;
            Ok(Box::new(c) as Box<dyn Cursor>)
        })
    }
}
