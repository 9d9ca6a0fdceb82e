//! The metadata API (§4) over a [`Store`], independent of the wire: what `/MDFile/metadata` and
//! `/MDFile/recordLog` calls do.
//!
//! Layering: [`MetadataService::batch`] is the storage primitive the reference calls
//! `metadataAPI.batch(db, ops)` (§5.8): it adds the record-log entries to the same atomic batch
//! and waits until the batch is durable ([`MetadataService::start_batch`] splits "enqueued" from
//! "durable"). `get`/`put`/`del` go through the versioning layer
//! ([`super::versioning::Versioning`]) as in the reference's VersioningRequestProcessor.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::errors::MdError;
use super::keys::{self, ItemShape};
use super::versioning::Versioning;
use crate::server::storage::{Cursor, Entry, Op, Scan, Store};

/// The record-log sublevel's first path element (§4.5).
pub const RECORD_LOGS: &str = "..recordLogs";

/// One operation of a [`MetadataService::batch`] on one sublevel.
#[derive(Debug, Clone)]
pub enum BatchOp {
    Put { key: String, value: String },
    Del { key: String },
}

pub struct MetadataService {
    store: Arc<dyn Store>,
    path: PathBuf,
    uuid: String,
    record_log: Option<RecordLogWriter>,
    versioning: Versioning,
}

struct RecordLogWriter {
    name: String,
    prefix: Vec<u8>,
    /// The last sequence number handed out. Held across "number the records + enqueue the batch"
    /// so the store commits batches in sequence order (the store applies batches in call order).
    last_seq: Mutex<u64>,
}

/// A lazy stream of JSON items, read from a store cursor in bounded batches.
pub struct ItemStream {
    cursor: Box<dyn Cursor>,
    map: Box<dyn Fn(Entry) -> Option<Value> + Send + Sync>,
    done: bool,
}

impl ItemStream {
    /// Up to `max` next items; empty when the stream is exhausted.
    pub async fn next_items(&mut self, max: usize) -> Result<Vec<Value>, MdError> {
        if self.done {
            return Ok(Vec::new());
        }
        loop {
            let batch = self.cursor.next_batch(max).await?;
            if batch.is_empty() {
                self.done = true;
                return Ok(Vec::new());
            }
            let items: Vec<Value> = batch.into_iter().filter_map(&self.map).collect();
            if !items.is_empty() {
                return Ok(items);
            }
        }
    }

    fn empty(cursor: Box<dyn Cursor>) -> Self {
        ItemStream {
            cursor,
            map: Box::new(|_| None),
            done: true,
        }
    }
}

fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[derive(Serialize)]
struct LogRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    db: Option<&'a str>,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    timestamp: &'a str,
}

fn key_arg(key: &Value, call: &str) -> Result<String, MdError> {
    match key {
        Value::String(s) => Ok(s.clone()),
        Value::Number(_) | Value::Bool(_) => Ok(keys::js_string(key)),
        other => Err(MdError::InvalidArgument(format!(
            "{call}: the key must be a string, got {other}"
        ))),
    }
}

fn options_arg<'a>(opts: &'a Value, call: &str) -> Result<&'a Value, MdError> {
    match opts {
        Value::Null | Value::Object(_) => Ok(opts),
        other => Err(MdError::InvalidArgument(format!(
            "{call}: options must be an object, got {other}"
        ))),
    }
}

impl MetadataService {
    /// Open the service over `store`, with its deployment files under `path`, answering `uuid`
    /// as the deployment id (see [`load_or_create_uuid`] and the MongoDB backend's
    /// `deployment_uuid`). `record_log`: the record log name, if enabled.
    pub async fn open(
        store: Arc<dyn Store>,
        path: &Path,
        uuid: String,
        record_log: Option<String>,
    ) -> Result<Self, MdError> {
        let record_log = match record_log {
            None => None,
            Some(name) => {
                let prefix = keys::sublevel_prefix(&[RECORD_LOGS.to_string(), name.clone()]);
                // On first use, continue from the highest existing sequence (§4.7).
                let last = last_seq(&*store, &prefix).await?;
                Some(RecordLogWriter {
                    name,
                    prefix,
                    last_seq: Mutex::new(last),
                })
            }
        };
        Ok(MetadataService {
            store,
            path: path.to_path_buf(),
            uuid,
            record_log,
            versioning: Versioning::new("RG001"),
        })
    }

    /// Version ids carry this replication group id (default `RG001`, like the reference).
    pub fn with_replication_group_id(mut self, rg: &str) -> Self {
        self.versioning = Versioning::new(rg);
        self
    }

    pub fn versioning(&self) -> &Versioning {
        &self.versioning
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn record_log_name(&self) -> Option<&str> {
        self.record_log.as_ref().map(|r| r.name.as_str())
    }

    /// The storage primitive under every write: apply `ops` to sublevel `path` atomically and
    /// durably, with one record-log entry per op in the same batch when the log is enabled.
    pub async fn batch(&self, path: &[String], ops: Vec<BatchOp>) -> Result<(), MdError> {
        self.start_batch(path, ops).await?.await
    }

    /// [`Self::batch`] in two steps: the returned future resolves once the batch has its place
    /// in the store's commit order (so a later `start_batch` commits after it); awaiting the
    /// future it yields waits until the batch is durable.
    pub async fn start_batch(
        &self,
        path: &[String],
        ops: Vec<BatchOp>,
    ) -> Result<impl std::future::Future<Output = Result<(), MdError>> + Send + 'static, MdError>
    {
        let mut raw = Vec::with_capacity(ops.len() * 2);
        for op in &ops {
            raw.push(match op {
                BatchOp::Put { key, value } => Op::Put {
                    key: keys::raw_key(path, key),
                    value: value.clone().into_bytes(),
                },
                BatchOp::Del { key } => Op::Del {
                    key: keys::raw_key(path, key),
                },
            });
        }
        let pending = match &self.record_log {
            None => self.store.write(raw),
            Some(log) => {
                let timestamp = iso_now();
                let db = path.first().map(String::as_str);
                let mut seq = log.last_seq.lock().await;
                for op in &ops {
                    *seq += 1;
                    let (kind, key, value) = match op {
                        BatchOp::Put { key, value } => ("put", key, Some(value.as_str())),
                        BatchOp::Del { key } => ("del", key, None),
                    };
                    let record = LogRecord {
                        kind,
                        db,
                        key,
                        value,
                        timestamp: &timestamp,
                    };
                    let mut k = log.prefix.clone();
                    k.extend_from_slice(format!("{:016}", *seq).as_bytes());
                    raw.push(Op::Put {
                        key: k,
                        value: serde_json::to_vec(&record).map_err(|e| {
                            MdError::Internal(format!("encoding a log record: {e}"))
                        })?,
                    });
                }
                // Enqueued under the lock: batches commit in sequence order. A failed batch
                // leaves a gap, as in the reference.
                self.store.write(raw)
            }
        };
        let (n, sublevel) = (ops.len(), path.join("#"));
        Ok(async move {
            pending.await.map_err(|e| {
                MdError::Internal(format!("writing {n} op(s) to sublevel {sublevel:?}: {e}"))
            })
        })
    }

    /// `get(key, options)`: through the versioning layer (version-specific reads, PHD masters
    /// resolved and repaired, §5.4).
    pub async fn get(
        self: &Arc<Self>,
        path: &[String],
        key: &Value,
        opts: &Value,
    ) -> Result<Value, MdError> {
        let key = key_arg(key, "get")?;
        let opts = options_arg(opts, "get")?;
        self.versioning.get(self, path, &key, opts).await
    }

    /// `put(key, value, options)`: a plain put (result `null`; non-string values are stored as
    /// JavaScript's `String(value)`, like the reference) or a versioning put (§5.5).
    pub async fn put(
        &self,
        path: &[String],
        key: &Value,
        value: &Value,
        opts: &Value,
    ) -> Result<Value, MdError> {
        let key = key_arg(key, "put")?;
        let opts = options_arg(opts, "put")?;
        self.versioning.put(self, path, &key, value, opts).await
    }

    /// `del(key, options)`: deleting a missing key succeeds; version-specific deletes per §5.6.
    pub async fn del(
        self: &Arc<Self>,
        path: &[String],
        key: &Value,
        opts: &Value,
    ) -> Result<Value, MdError> {
        let key = key_arg(key, "del")?;
        let opts = options_arg(opts, "del")?;
        self.versioning.del(self, path, &key, opts).await
    }

    /// `createReadStream(options)` on a sublevel (§4.4).
    pub async fn create_read_stream(
        &self,
        path: &[String],
        opts: Option<&Value>,
    ) -> Result<ItemStream, MdError> {
        let prefix = keys::sublevel_prefix(path);
        let ro = keys::read_options(opts, Some(&prefix))?;
        let cursor = self.store.scan(ro.scan).await?;
        if ro.shape == ItemShape::Nothing {
            return Ok(ItemStream::empty(cursor));
        }
        let plen = prefix.len();
        let shape = ro.shape;
        Ok(ItemStream {
            cursor,
            map: Box::new(move |(k, v)| {
                let key = utf8(k.get(plen..).unwrap_or_default().to_vec());
                Some(match shape {
                    ItemShape::KeyValue => json!({"key": key, "value": utf8(v)}),
                    ItemShape::Keys => Value::String(key),
                    ItemShape::Values | ItemShape::Nothing => Value::String(utf8(v)),
                })
            }),
            done: false,
        })
    }

    /// `rawListKeys(options)`: raw keys of the whole store, options on raw keys, no default
    /// bounds (§4.3).
    pub async fn raw_list_keys(&self, opts: Option<&Value>) -> Result<ItemStream, MdError> {
        let ro = keys::read_options(opts, None)?;
        let cursor = self.store.scan(ro.scan).await?;
        Ok(ItemStream {
            cursor,
            map: Box::new(|(k, _)| Some(Value::String(utf8(k)))),
            done: false,
        })
    }

    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// `getDiskUsage()`: statfs of the metadata path (§4.3).
    pub fn disk_usage(&self) -> Result<Value, MdError> {
        disk_usage(&self.path)
    }

    /// `readRecords(params)` on log `log_name` (§4.7): `{info:{start,end}}` and the stream.
    pub async fn read_records(
        &self,
        log_name: &str,
        params: &Value,
    ) -> Result<(Value, ItemStream), MdError> {
        let params = options_arg(params, "readRecords")?;
        let num = |name: &str| params.get(name).and_then(Value::as_f64).map(|f| f as i64);
        let prefix = keys::sublevel_prefix(&[RECORD_LOGS.to_string(), log_name.to_string()]);
        let seq_key = |seq: i64| {
            let mut k = prefix.clone();
            k.extend_from_slice(format!("{:016}", seq.max(0)).as_bytes());
            k
        };
        let mut end = last_seq(&*self.store, &prefix).await? as i64;
        // endSeq <= 0 reports end 0 but leaves the scan unbounded (the reference formats
        // sequence 0 as "no bound").
        let mut unbounded_end = false;
        if let Some(e) = num("endSeq") {
            if e <= 0 {
                end = 0;
                unbounded_end = true;
            } else {
                end = end.min(e);
            }
        }
        let start_seq = num("startSeq").unwrap_or(0);
        let limit = num("limit").filter(|l| *l > 0);
        let upper = if unbounded_end {
            std::ops::Bound::Excluded(inc_prefix(&prefix))
        } else {
            std::ops::Bound::Included(seq_key(end))
        };
        let lower = std::ops::Bound::Included(seq_key(start_seq));
        let first = crate::server::storage::collect(
            &*self.store,
            Scan {
                lower: lower.clone(),
                upper: upper.clone(),
                reverse: false,
                limit: Some(1),
            },
        )
        .await?;
        let start = first.first().and_then(|(k, _)| {
            std::str::from_utf8(&k[prefix.len()..])
                .ok()?
                .parse::<i64>()
                .ok()
        });
        let Some(start) = start else {
            let cursor = self
                .store
                .scan(Scan {
                    limit: Some(0),
                    ..Scan::all()
                })
                .await?;
            return Ok((
                json!({"info": {"start": null, "end": null}}),
                ItemStream::empty(cursor),
            ));
        };
        if let Some(l) = limit {
            if start + l <= end {
                end = start + l - 1;
            }
        }
        let upper = if unbounded_end {
            upper
        } else {
            std::ops::Bound::Included(seq_key(end))
        };
        let cursor = self
            .store
            .scan(Scan {
                lower: std::ops::Bound::Included(seq_key(start)),
                upper,
                reverse: false,
                limit: limit.map(|l| l as u64),
            })
            .await?;
        Ok((
            json!({"info": {"start": start, "end": end}}),
            ItemStream {
                cursor,
                map: Box::new(|(_, v)| Some(record_item(&v))),
                done: false,
            },
        ))
    }
}

/// A stored log record as a `readRecords` item: `{timestamp, db, entries:[{type,key,value}]}`.
fn record_item(v: &[u8]) -> Value {
    let rec: Value = serde_json::from_slice(v).unwrap_or(Value::Null);
    let mut entry = serde_json::Map::new();
    for f in ["type", "key", "value"] {
        if let Some(x) = rec.get(f) {
            entry.insert(f.into(), x.clone());
        }
    }
    let mut item = serde_json::Map::new();
    item.insert(
        "timestamp".into(),
        rec.get("timestamp").cloned().unwrap_or(Value::Null),
    );
    if let Some(db) = rec.get("db") {
        item.insert("db".into(), db.clone());
    }
    item.insert("entries".into(), Value::Array(vec![Value::Object(entry)]));
    Value::Object(item)
}

/// An exclusive upper bound for every key starting with `prefix`: the prefix with its last byte
/// incremented (sublevel prefixes end with `!`, so this never overflows).
fn inc_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut p = prefix.to_vec();
    if let Some(last) = p.last_mut() {
        *last += 1;
    }
    p
}

async fn last_seq(store: &dyn Store, prefix: &[u8]) -> Result<u64, MdError> {
    let last = crate::server::storage::collect(
        store,
        Scan {
            lower: std::ops::Bound::Included(prefix.to_vec()),
            upper: std::ops::Bound::Excluded(inc_prefix(prefix)),
            reverse: true,
            limit: Some(1),
        },
    )
    .await?;
    Ok(last
        .first()
        .and_then(|(k, _)| std::str::from_utf8(&k[prefix.len()..]).ok()?.parse().ok())
        .unwrap_or(0))
}

/// The deployment id of the embedded backend: `<path>/uuid`, read, or created with a random
/// UUIDv4 (no trailing newline) durably on first start, like the reference.
pub fn load_or_create_uuid(dir: &Path) -> Result<String, MdError> {
    if let Some(id) = read_uuid_file(dir)? {
        return Ok(id);
    }
    let file = dir.join("uuid");
    let id = uuid_v4();
    let io = |e: std::io::Error| {
        MdError::Internal(format!(
            "creating the deployment id {}: {e}",
            file.display()
        ))
    };
    let tmp = dir.join("uuid.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(id.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &file).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(id)
}

/// `<path>/uuid` if it exists (a MongoDB deployment started before its id moved into MongoDB
/// keeps the id it had).
pub fn read_uuid_file(dir: &Path) -> Result<Option<String>, MdError> {
    let file = dir.join("uuid");
    match std::fs::read_to_string(&file) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MdError::Internal(format!(
            "reading the deployment id {}: {e}",
            file.display()
        ))),
    }
}

pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn disk_usage(path: &Path) -> Result<Value, MdError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| MdError::Internal(format!("statfs {}: {e}", path.display())))?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(MdError::Internal(format!(
            "statfs {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )));
    }
    let bsize = st.f_bsize as u64;
    Ok(json!({
        "available": st.f_bavail as u64 * bsize,
        "free": st.f_bfree as u64 * bsize,
        "total": st.f_blocks as u64 * bsize,
    }))
}

/// Now as ISO-8601 UTC with milliseconds, like JavaScript's `Date.prototype.toISOString`.
pub fn iso_now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    iso_from_millis(ms)
}

pub fn iso_from_millis(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso_from_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso_from_millis(1_795_734_929_251),
            "2026-11-26T23:15:29.251Z"
        );
        assert_eq!(iso_from_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn uuids() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
