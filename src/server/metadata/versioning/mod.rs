//! S3 versioning semantics of the metadata service: Arsenal's VersioningRequestProcessor (§5),
//! above the storage trait, so it works the same for every backend.
//!
//! - [`version_id`]: ids in the reference's format (time-reversed ms, sequence, rg, counter);
//! - [`value`]: the text surgery on metadata JSON (versionId splicing, the PHD text);
//! - [`jsjson`]: JSON.parse/JSON.stringify as V8 does them, for master re-serialisation;
//! - [`serial`]: per-key serialisation and the write cache (§5.8);
//! - this module: the request processor (get/put/del), PHD resolution and repair.
//!
//! Key layout v0 (§5.1): `key` is the master, `key\0` the null key, `key\0<vid>` a version.
//!
//! Deliberate differences from the reference, none visible to a client that behaves:
//! - a version-specific put that produces no operation (`isNull: true` on a version older than
//!   a null master) is answered at once; the reference never answers it (the client times out);
//! - a master that is not valid JSON fails a version-specific call with a plain error; the
//!   reference throws inside a callback.
//!
//! Crash points for tests (debug builds only): `ZENKOCTL_CRASH_AT=<point>` makes the process
//! SIGKILL itself at that point. Points: `repair-before-write` (a PHD repair has decided what to
//! write and not enqueued it yet), `delete-phd-after-commit` (a delete of the current version has
//! made the PHD durable and not answered yet).

pub mod jsjson;
pub mod serial;
pub mod value;
pub mod version_id;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use super::errors::MdError;
use super::keys;
use super::service::{BatchOp, MetadataService};
use crate::server::storage::{self, Scan};
use jsjson::Js;
use serial::{cache_key, KeyGuard, KeyLocks, WriteCache};
use value::Version;
use version_id::IdFormat;

/// The reference re-arms a repair of the key this long after deleting its current version.
pub const REPAIR_DELAY: Duration = Duration::from_secs(15);

/// The versioning layer's database: `subLevel.join("::")`, and the path it maps back to (§4.2).
struct Db {
    name: String,
    path: Vec<String>,
}

impl Db {
    fn new(sub_level: &[String]) -> Db {
        let name = sub_level.join("::");
        let path = keys::db_path(&name);
        Db { name, path }
    }
}

fn version_key(key: &str, vid: &str) -> String {
    format!("{key}\0{vid}")
}

/// The JSON string a versioning call answers: `{"versionId":"<vid>"}`, built as the reference's
/// template string (no escaping).
fn vid_reply(vid: &str) -> Value {
    Value::String(format!("{{\"versionId\":\"{vid}\"}}"))
}

/// `options.name` "set": truthy or the empty string (the reference's test for versioning puts).
fn set_or_empty(opts: &Value, name: &str) -> bool {
    match opts.get(name) {
        Some(Value::String(s)) if s.is_empty() => true,
        Some(v) => keys::truthy(v),
        None => false,
    }
}

fn truthy_opt(opts: &Value, name: &str) -> bool {
    opts.get(name).is_some_and(keys::truthy)
}

fn plain(e: value::VersionError) -> MdError {
    MdError::Plain(e.0)
}

/// The value of a put that the VRP edits as text: it must be a string, as in the reference,
/// where `appendVersionId` calls string methods on it.
fn text_value(v: &Value) -> Result<&str, MdError> {
    match v {
        Value::String(s) => Ok(s),
        Value::Null => Err(MdError::Plain(
            "Cannot read properties of null (reading 'length')".into(),
        )),
        _ => Err(MdError::Plain(
            "stringifiedObject.charAt is not a function".into(),
        )),
    }
}

/// Kill the process here when a test asked for it (`ZENKOCTL_CRASH_AT`, debug builds only).
pub fn crash_point(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("ZENKOCTL_CRASH_AT").is_ok_and(|v| v == name) {
        eprintln!("zenkoctl: crash point {name} reached (ZENKOCTL_CRASH_AT): SIGKILL");
        // SAFETY: kill(2) on our own pid.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The latest version found by listing, to become the master.
#[derive(Clone)]
struct Next {
    value: String,
    from_null_key: bool,
}

pub struct Versioning {
    rg: String,
    format: IdFormat,
    locks: KeyLocks,
    cache: WriteCache,
    /// Delayed repairs by cache key: (generation, task).
    timers: Mutex<HashMap<String, (u64, tokio::task::AbortHandle)>>,
    timer_gen: AtomicU64,
    /// PHD listings in progress by cache key, with the gets waiting for their answer:
    /// concurrent gets of one PHD master share one listing (and one repair), as in the reference.
    listings: Mutex<HashMap<String, Vec<oneshot::Sender<Shared>>>>,
}

/// A listing's answer as handed to the gets that waited for it.
type Shared = Result<Option<String>, MdError>;

fn clone_err(e: &MdError) -> MdError {
    match e {
        MdError::ObjNotFound(c) => MdError::ObjNotFound(c.clone()),
        MdError::InvalidArgument(c) => MdError::InvalidArgument(c.clone()),
        MdError::NotImplemented(c) => MdError::NotImplemented(c.clone()),
        MdError::Internal(c) => MdError::Internal(c.clone()),
        MdError::Plain(c) => MdError::Plain(c.clone()),
    }
}

/// Removes a listing's entry and answers its waiters, also when the leading get is dropped
/// (its waiters then see a closed channel and list by themselves).
struct ListingLeader<'a> {
    vrp: &'a Versioning,
    ck: String,
    answer: Option<Shared>,
}

impl Drop for ListingLeader<'_> {
    fn drop(&mut self) {
        let waiters = self
            .vrp
            .listings
            .lock()
            .expect("PHD listings")
            .remove(&self.ck)
            .unwrap_or_default();
        if let Some(answer) = self.answer.take() {
            for w in waiters {
                let _ = w.send(match &answer {
                    Ok(v) => Ok(v.clone()),
                    Err(e) => Err(clone_err(e)),
                });
            }
        }
    }
}

impl Versioning {
    pub fn new(replication_group_id: &str) -> Self {
        Versioning {
            rg: replication_group_id.to_string(),
            format: IdFormat::from_env(),
            locks: KeyLocks::default(),
            cache: WriteCache::default(),
            timers: Mutex::new(HashMap::new()),
            timer_gen: AtomicU64::new(0),
            listings: Mutex::new(HashMap::new()),
        }
    }

    pub fn replication_group_id(&self) -> &str {
        &self.rg
    }

    fn new_vid(&self) -> String {
        version_id::generate(&self.rg, self.format)
    }

    // --- storage primitives (§5.8) ---------------------------------------------------------

    /// Committed state of one key (what `get` answers from).
    async fn read(
        &self,
        svc: &MetadataService,
        db: &Db,
        key: &str,
    ) -> Result<Option<String>, MdError> {
        let raw = keys::raw_key(&db.path, key);
        Ok(svc.store().get(&raw).await?.map(utf8))
    }

    /// The master as read-modify-write operations see it: a pending write first (the lock of
    /// `key` must be held).
    async fn read_master(
        &self,
        svc: &MetadataService,
        db: &Db,
        key: &str,
    ) -> Result<Option<String>, MdError> {
        match self.cache.get(&db.name, key) {
            Some(pending) => Ok(pending),
            None => self.read(svc, db, key).await,
        }
    }

    /// Enqueue `ops` under the key's lock, release it, wait until durable.
    async fn commit(
        &self,
        svc: &MetadataService,
        db: &Db,
        ops: Vec<BatchOp>,
        guard: KeyGuard<'_>,
    ) -> Result<(), MdError> {
        if ops.is_empty() {
            return Ok(());
        }
        let pending = self.cache.write(&db.name, &ops);
        let enqueued = svc.start_batch(&db.path, ops).await;
        drop(guard);
        let result = match enqueued {
            Ok(durable) => durable.await,
            Err(e) => Err(e),
        };
        drop(pending);
        result
    }

    /// `[key, key+"\x01")`, at most `limit` entries, in order.
    async fn list_object(
        &self,
        svc: &MetadataService,
        db: &Db,
        key: &str,
        limit: u64,
    ) -> Result<Vec<(String, String)>, MdError> {
        let prefix_len = keys::sublevel_prefix(&db.path).len();
        let scan = Scan {
            lower: std::ops::Bound::Included(keys::raw_key(&db.path, key)),
            upper: std::ops::Bound::Excluded(keys::raw_key(&db.path, &format!("{key}\x01"))),
            reverse: false,
            limit: Some(limit),
        };
        Ok(storage::collect(&**svc.store(), scan)
            .await?
            .into_iter()
            .map(|(k, v)| (utf8(k[prefix_len.min(k.len())..].to_vec()), utf8(v)))
            .collect())
    }

    // --- get (§5.4) --------------------------------------------------------------------------

    pub async fn get(
        &self,
        svc: &Arc<MetadataService>,
        sub_level: &[String],
        key: &str,
        opts: &Value,
    ) -> Result<Value, MdError> {
        let db = Db::new(sub_level);
        let not_found = |what: &str| {
            MdError::ObjNotFound(format!("get: no {what} of key {key:?} in {:?}", db.name))
        };
        if let Some(v) = opts.get("versionId").filter(|v| keys::truthy(v)) {
            let vid = if v.as_str() == Some("null") {
                String::new()
            } else {
                keys::js_string(v)
            };
            return match self.read(svc, &db, &version_key(key, &vid)).await? {
                Some(value) => Ok(Value::String(value)),
                None => Err(not_found(&format!("version {vid:?}"))),
            };
        }
        match self.read(svc, &db, key).await? {
            None => Err(not_found("master")),
            Some(v) if !value::is_phd(&v) => Ok(Value::String(v)),
            Some(_) => match self.get_by_listing(svc, &db, key).await? {
                Some(v) => Ok(Value::String(v)),
                None => Err(not_found("version (the master is a placeholder)")),
            },
        }
    }

    /// The master is a PHD: answer with the newest version and repair the master (§5.4, §5.7).
    /// Concurrent calls for one key share the first one's listing.
    async fn get_by_listing(
        &self,
        svc: &Arc<MetadataService>,
        db: &Db,
        key: &str,
    ) -> Result<Option<String>, MdError> {
        let ck = cache_key(&db.name, key);
        let waiter = {
            let mut listings = self.listings.lock().expect("PHD listings");
            match listings.get_mut(&ck) {
                Some(waiters) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    listings.insert(ck.clone(), Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = waiter {
            match rx.await {
                Ok(shared) => return shared,
                // The leading get was dropped before answering: list on our own.
                Err(_) => return Box::pin(self.get_by_listing(svc, db, key)).await,
            }
        }
        let mut leader = ListingLeader {
            vrp: self,
            ck,
            answer: None,
        };
        let result = self.list_latest(svc, db, key).await;
        leader.answer = Some(match &result {
            Ok(v) => Ok(v.clone()),
            Err(e) => Err(clone_err(e)),
        });
        drop(leader);
        result
    }

    /// One PHD listing: the newest version, and the repair it calls for (spawned).
    async fn list_latest(
        &self,
        svc: &Arc<MetadataService>,
        db: &Db,
        key: &str,
    ) -> Result<Option<String>, MdError> {
        self.cancel_timer(&cache_key(&db.name, key));
        // Master, then up to two entries: the null key may come first and be older.
        let mut items = self.list_object(svc, db, key, 3).await?.into_iter();
        let Some((_, master)) = items.next() else {
            return Ok(None);
        };
        if !value::is_phd(&master) {
            return Ok(Some(master));
        }
        let mut versions: Vec<(String, String, bool)> = items.map(|(k, v)| (k, v, false)).collect();
        let null_key = version_key(key, "");
        if versions.first().is_some_and(|(k, _, _)| *k == null_key) {
            // Give the null key its real id and move it to its sorted place among the versions.
            let (_, nv, _) = versions.remove(0);
            let real = Version::from(&nv).map_err(plain)?;
            let real_key = jsjson::lossy(
                &[
                    jsjson::units(key),
                    vec![0],
                    jsjson::to_string(real.version_id()),
                ]
                .concat(),
            );
            let pos = versions
                .iter()
                .position(|(k, _, _)| jsjson::units(k) > jsjson::units(&real_key))
                .unwrap_or(versions.len());
            versions.insert(pos, (real_key, nv, true));
        }
        let next = versions
            .into_iter()
            .next()
            .map(|(_, value, from_null_key)| Next {
                value,
                from_null_key,
            });
        let answer = next.as_ref().map(|n| n.value.clone());
        // The reference answers first, then repairs.
        let task = repair(
            svc.clone(),
            db.path.clone(),
            db.name.clone(),
            key.to_string(),
            master,
            next,
        );
        tokio::spawn(task);
        Ok(answer)
    }

    // --- put (§5.5) --------------------------------------------------------------------------

    pub async fn put(
        &self,
        svc: &MetadataService,
        sub_level: &[String],
        key: &str,
        value: &Value,
        opts: &Value,
    ) -> Result<Value, MdError> {
        let db = Db::new(sub_level);
        let version_specific = set_or_empty(opts, "versionId");
        let versioning = set_or_empty(opts, "versioning");
        let guard = self.locks.lock(&cache_key(&db.name, key)).await;
        if version_specific {
            return self
                .put_version_specific(svc, &db, key, value, opts, guard)
                .await;
        }
        if versioning {
            let text = text_value(value)?;
            let vid = self.new_vid();
            let v = value::append_version_id(text, &vid);
            let ops = vec![
                BatchOp::Put {
                    key: key.to_string(),
                    value: v.clone(),
                },
                BatchOp::Put {
                    key: version_key(key, &vid),
                    value: v,
                },
            ];
            self.commit(svc, &db, ops, guard).await?;
            return Ok(vid_reply(&vid));
        }
        // Plain put: non-strings are stored as JavaScript's String(value).
        let ops = vec![BatchOp::Put {
            key: key.to_string(),
            value: keys::js_string(value),
        }];
        self.commit(svc, &db, ops, guard).await?;
        Ok(Value::Null)
    }

    async fn put_version_specific(
        &self,
        svc: &MetadataService,
        db: &Db,
        key: &str,
        value: &Value,
        opts: &Value,
        guard: KeyGuard<'_>,
    ) -> Result<Value, MdError> {
        let version_id = opts.get("versionId").expect("checked by the caller");
        // versionId "" (versioning suspended): a new id for the master only.
        if version_id.as_str() == Some("") {
            let text = text_value(value)?;
            let vid = self.new_vid();
            let mut ops = vec![BatchOp::Put {
                key: key.to_string(),
                value: value::append_version_id(text, &vid),
            }];
            if truthy_opt(opts, "deleteNullKey") {
                ops.push(BatchOp::Del {
                    key: version_key(key, ""),
                });
            }
            self.commit(svc, db, ops, guard).await?;
            return Ok(vid_reply(&vid));
        }
        // versionId "null": store the null version as given.
        if version_id.as_str() == Some("null") {
            let ops = vec![BatchOp::Put {
                key: version_key(key, ""),
                value: keys::js_string(value),
            }];
            self.commit(svc, db, ops, guard).await?;
            return Ok(vid_reply("null"));
        }
        // Any other id: update that version, and the master when it is the latest.
        let v_js = jsjson::from_serde(version_id);
        let v = keys::js_string(version_id);
        let data = self.read_master(svc, db, key).await?;
        let is_null = opts.get("isNull");
        let is_null_true = is_null == Some(&Value::Bool(true));
        let is_null_false = is_null == Some(&Value::Bool(false));
        let is_null_defined = is_null.is_some();
        let request_value = keys::js_string(value);
        let mut ops = Vec::new();
        if !is_null_true {
            ops.push(BatchOp::Put {
                key: version_key(key, &v),
                value: request_value.clone(),
            });
        }
        match data {
            None => ops.push(BatchOp::Put {
                key: key.to_string(),
                value: request_value,
            }),
            Some(data) => {
                let mut master = Version::from(&data).map_err(plain)?;
                let mv: Option<Js> = master.version_id().cloned();
                if mv.is_none() || jsjson::ge(mv.as_ref(), Some(&v_js)) {
                    // The put version is the same as or newer than the master.
                    let mut new_master = request_value.clone();
                    if is_null_defined
                        && master.is_null()
                        && !master.is_null2()
                        && jsjson::truthy(mv.as_ref())
                    {
                        // An old-style null version also kept under key\0<its id>: drop it.
                        ops.push(BatchOp::Del {
                            key: jsjson::lossy(
                                &[jsjson::units(key), vec![0], jsjson::to_string(mv.as_ref())]
                                    .concat(),
                            ),
                        });
                    }
                    if !jsjson::strict_eq(mv.as_ref(), Some(&v_js)) || !is_null_defined {
                        let master_vid: Option<Vec<u16>> =
                            if master.is_null() && jsjson::truthy(mv.as_ref()) {
                                Some(jsjson::to_string(mv.as_ref()))
                            } else if mv.is_none() {
                                // A non-versioned master gets the "infinite" (oldest) id.
                                let inf = version_id::inf_vid(&self.rg);
                                master.set_version_id(&inf).map_err(plain)?;
                                Some(jsjson::units(&inf))
                            } else {
                                None
                            };
                        if is_null_true {
                            if master_vid.is_none() {
                                ops.push(BatchOp::Del {
                                    key: version_key(key, ""),
                                });
                            }
                        } else if let Some(mvid) = master_vid {
                            let k2 = if is_null_false {
                                version_key(key, "")
                            } else {
                                version_key(key, &jsjson::lossy(&mvid))
                            };
                            master.set_null().map_err(plain)?;
                            if is_null_false {
                                master.set_null2().map_err(plain)?;
                            } else if !jsjson::strict_eq(mv.as_ref(), Some(&v_js)) {
                                new_master = value::update_or_append_null_version_id(
                                    text_value(value)?,
                                    &mvid,
                                );
                            }
                            ops.push(BatchOp::Put {
                                key: k2,
                                value: master.serialise(),
                            });
                        }
                    }
                    ops.push(BatchOp::Put {
                        key: key.to_string(),
                        value: new_master,
                    });
                } else if is_null_true && !master.is_null() {
                    // An older version becomes the null version.
                    ops.push(BatchOp::Put {
                        key: version_key(key, ""),
                        value: request_value,
                    });
                    ops.push(BatchOp::Del {
                        key: version_key(key, &v),
                    });
                }
            }
        }
        self.commit(svc, db, ops, guard).await?;
        Ok(vid_reply(&v))
    }

    // --- del (§5.6) --------------------------------------------------------------------------

    pub async fn del(
        &self,
        svc: &Arc<MetadataService>,
        sub_level: &[String],
        key: &str,
        opts: &Value,
    ) -> Result<Value, MdError> {
        let db = Db::new(sub_level);
        let ck = cache_key(&db.name, key);
        let guard = self.locks.lock(&ck).await;
        let Some(version_id) = opts.get("versionId").filter(|v| keys::truthy(v)) else {
            let ops = vec![BatchOp::Del {
                key: key.to_string(),
            }];
            self.commit(svc, &db, ops, guard).await?;
            return Ok(Value::Null);
        };
        if version_id.as_str() == Some("null") {
            let ops = vec![BatchOp::Del {
                key: version_key(key, ""),
            }];
            self.commit(svc, &db, ops, guard).await?;
            return Ok(vid_reply("null"));
        }
        let v = keys::js_string(version_id);
        let data = self.read_master(svc, &db, key).await?;
        let key_vid = if truthy_opt(opts, "isNull") {
            ""
        } else {
            v.as_str()
        };
        let mut ops = vec![BatchOp::Del {
            key: version_key(key, key_vid),
        }];
        let current = match &data {
            Some(d) if value::is_phd(d) => true,
            Some(d) => jsjson::strict_eq(
                Version::from(d).map_err(plain)?.version_id(),
                Some(&jsjson::from_serde(version_id)),
            ),
            None => false,
        };
        if current {
            // The current version goes: the master becomes a placeholder until repaired.
            ops.push(BatchOp::Put {
                key: key.to_string(),
                value: value::phd(&self.new_vid()),
            });
        }
        self.commit(svc, &db, ops, guard).await?;
        if current {
            crash_point("delete-phd-after-commit");
            self.schedule_repair(svc, &db, key);
        }
        Ok(vid_reply(&v))
    }

    // --- delayed repair ----------------------------------------------------------------------

    fn cancel_timer(&self, ck: &str) {
        if let Some((_, task)) = self.timers.lock().expect("repair timers").remove(ck) {
            task.abort();
        }
    }

    /// (Re-)arm the repair of `key` in [`REPAIR_DELAY`]. Timers live in memory: lost on restart,
    /// which is harmless (a get of a PHD master repairs it).
    fn schedule_repair(&self, svc: &Arc<MetadataService>, db: &Db, key: &str) {
        let ck = cache_key(&db.name, key);
        let generation = self.timer_gen.fetch_add(1, Ordering::Relaxed);
        let weak = Arc::downgrade(svc);
        let (path, name, key) = (db.path.clone(), db.name.clone(), key.to_string());
        let ck2 = ck.clone();
        let mut timers = self.timers.lock().expect("repair timers");
        let task = tokio::spawn(async move {
            tokio::time::sleep(REPAIR_DELAY).await;
            let Some(svc) = weak.upgrade() else { return };
            let vrp = svc.versioning();
            {
                let mut timers = vrp.timers.lock().expect("repair timers");
                if timers.get(&ck2).is_some_and(|(g, _)| *g == generation) {
                    timers.remove(&ck2);
                } else {
                    return; // re-armed or cancelled meanwhile
                }
            }
            let db = Db { name, path };
            if let Err(e) = vrp.get_by_listing(&svc, &db, &key).await {
                tracing::warn!(db = db.name, key, error = %e, "versioning: delayed PHD repair failed");
            }
        });
        if let Some((_, old)) = timers.insert(ck, (generation, task.abort_handle())) {
            old.abort();
        }
    }
}

/// Repair a PHD master seen by a listing (§5.7): if the master is still that same PHD, replace
/// it with `next` (or delete it when there is no version left); if it is another PHD, list again.
fn repair(
    svc: Arc<MetadataService>,
    path: Vec<String>,
    name: String,
    key: String,
    phd: String,
    next: Option<Next>,
) -> BoxFuture {
    Box::pin(async move {
        let vrp = svc.versioning();
        let db = Db { name, path };
        let guard = vrp.locks.lock(&cache_key(&db.name, &key)).await;
        let current = match vrp.read_master(&svc, &db, &key).await {
            Ok(Some(v)) => v,
            Ok(None) => return, // the PHD was deleted
            Err(e) => {
                tracing::error!(db = db.name, key, error = %e, "versioning: reading the master to repair it");
                return;
            }
        };
        if !value::is_phd(&current) {
            return; // updated already
        }
        if current == phd {
            let mut ops = Vec::new();
            match next {
                Some(n) => {
                    ops.push(BatchOp::Put {
                        key: key.clone(),
                        value: n.value,
                    });
                    if n.from_null_key {
                        ops.push(BatchOp::Del {
                            key: version_key(&key, ""),
                        });
                    }
                }
                None => ops.push(BatchOp::Del { key: key.clone() }),
            }
            crash_point("repair-before-write");
            if let Err(e) = vrp.commit(&svc, &db, ops, guard).await {
                tracing::error!(db = db.name, key, error = %e, "versioning: writing a PHD repair");
            }
            return;
        }
        // Another PHD was written meanwhile: start over from a fresh listing.
        drop(guard);
        if let Err(e) = vrp.get_by_listing(&svc, &db, &key).await {
            tracing::warn!(db = db.name, key, error = %e, "versioning: PHD repair listing failed");
        }
    })
}

fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
