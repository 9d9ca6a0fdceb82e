//! Range scans over the MongoDB layout: sublevel collections read one after the other in key
//! order, merged with the root collection when it can hold keys in the range (see the module
//! docs of [`super`] and [`super::layout`]).

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::error::Error as MongoError;
use mongodb::{ClientSession, Collection, Cursor as DriverCursor, SessionCursor};

use super::layout::{self, IdRange};
use super::{err, is_retryable, Inner};
use crate::server::storage::{Cursor, Entry, Scan, StorageError, StoreFuture};

/// Documents per server batch (the driver holds one batch per open cursor).
const BATCH: u64 = 500;

pub(super) struct MongoCursor {
    inner: Arc<Inner>,
    /// What is still to be read: bounds move past returned keys when a scan resumes, and
    /// `limit` counts down.
    scan: Scan,
    state: Option<State>,
    done: bool,
    last: Option<Vec<u8>>,
}

struct Segment {
    coll: String,
    prefix: Vec<u8>,
    range: IdRange,
}

// Field order matters: the cursors are dropped before the session they run in.
struct State {
    current: Option<Source>,
    root: Option<Source>,
    segments: VecDeque<Segment>,
    session: Option<ClientSession>,
}

enum Driver {
    Plain(DriverCursor<RawDocumentBuf>),
    Session(SessionCursor<RawDocumentBuf>),
}

struct Source {
    cursor: Driver,
    /// The sublevel prefix prepended to `_id`s; `None` for the root collection.
    prefix: Option<Vec<u8>>,
    head: Option<Entry>,
    exhausted: bool,
}

enum ScanError {
    Mongo(MongoError),
    Data(String),
}

impl From<MongoError> for ScanError {
    fn from(e: MongoError) -> Self {
        ScanError::Mongo(e)
    }
}

fn id_filter(r: &IdRange) -> Document {
    let mut f = Document::new();
    match &r.lower {
        Bound::Included(s) => {
            f.insert("$gte", s.as_str());
        }
        Bound::Excluded(s) => {
            f.insert("$gt", s.as_str());
        }
        Bound::Unbounded => {}
    }
    match &r.upper {
        Bound::Included(s) => {
            f.insert("$lte", s.as_str());
        }
        Bound::Excluded(s) => {
            f.insert("$lt", s.as_str());
        }
        Bound::Unbounded => {}
    }
    if f.is_empty() {
        doc! {}
    } else {
        doc! {"_id": f}
    }
}

/// When both bounds lie inside one sublevel's interval, its prefix `!name!`.
fn within_one_sublevel(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> Option<Vec<u8>> {
    let (Bound::Included(l) | Bound::Excluded(l)) = lower else {
        return None;
    };
    let (Bound::Included(u) | Bound::Excluded(u)) = upper else {
        return None;
    };
    if l.first() != Some(&b'!') {
        return None;
    }
    let end = l[1..].iter().position(|&b| b == b'!')? + 1;
    let prefix = &l[..=end];
    u.starts_with(prefix).then(|| prefix.to_vec())
}

impl Source {
    /// Load the next in-bounds entry into `head` (or mark the source exhausted).
    async fn fill(
        &mut self,
        session: Option<&mut ClientSession>,
        scan: &Scan,
    ) -> Result<(), ScanError> {
        let mut session = session;
        while self.head.is_none() && !self.exhausted {
            let more = match (&mut self.cursor, session.as_deref_mut()) {
                (Driver::Plain(c), _) => c.advance().await?,
                (Driver::Session(c), Some(s)) => c.advance(s).await?,
                (Driver::Session(_), None) => {
                    return Err(ScanError::Data("a session cursor lost its session".into()))
                }
            };
            if !more {
                self.exhausted = true;
                break;
            }
            let raw = match &self.cursor {
                Driver::Plain(c) => c.current(),
                Driver::Session(c) => c.current(),
            };
            let id = raw
                .get_str("_id")
                .map_err(|e| ScanError::Data(format!("a document without a string _id: {e}")))?;
            let key = match &self.prefix {
                Some(p) => {
                    let mut k = p.clone();
                    k.extend_from_slice(id.as_bytes());
                    k
                }
                None => layout::id_to_bytes(id).ok_or_else(|| {
                    ScanError::Data(format!("root _id {id:?} was not written by zenkoctl"))
                })?,
            };
            let value = raw
                .get_binary("v")
                .map_err(|e| {
                    ScanError::Data(format!(
                        "key {:?}: no binary value: {e}",
                        super::key_str(&key)
                    ))
                })?
                .bytes
                .to_vec();
            // Widened (non-UTF-8) bounds: drop what lies outside the raw bounds.
            let below = !layout::in_bounds(&key, &scan.lower, &Bound::Unbounded);
            let above = !layout::in_bounds(&key, &Bound::Unbounded, &scan.upper);
            match (below, above, scan.reverse) {
                (false, false, _) => self.head = Some((key, value)),
                (true, _, false) | (_, true, true) => {}
                _ => self.exhausted = true,
            }
        }
        Ok(())
    }
}

impl MongoCursor {
    pub(super) fn new(inner: Arc<Inner>, scan: Scan) -> Self {
        let done = scan.is_empty_range() || scan.limit == Some(0);
        MongoCursor {
            inner,
            scan,
            state: None,
            done,
            last: None,
        }
    }

    /// (A free-standing future: it must not borrow the cursor, whose driver cursors are not
    /// `Sync`.)
    async fn open_source(
        inner: &Inner,
        scan: (bool, Option<u64>),
        coll: &str,
        prefix: Option<Vec<u8>>,
        range: &IdRange,
        session: Option<&mut ClientSession>,
    ) -> Result<Source, MongoError> {
        let (reverse, limit) = scan;
        let h: Collection<RawDocumentBuf> = inner.db.collection(coll);
        let dir = if reverse { -1 } else { 1 };
        let mut find = h
            .find(id_filter(range))
            .sort(doc! {"_id": dir})
            .projection(doc! {"v": 1});
        let batch = limit.map_or(BATCH, |l| l.min(BATCH));
        find = find.batch_size(batch as u32);
        if range.exact {
            if let Some(l) = limit {
                find = find.limit(i64::try_from(l).unwrap_or(i64::MAX));
            }
        }
        let cursor = match session {
            Some(s) => Driver::Session(find.session(s).await?),
            None => Driver::Plain(find.await?),
        };
        Ok(Source {
            cursor,
            prefix,
            head: None,
            exhausted: false,
        })
    }

    /// Plan the scan from the registry and open the root cursor when it is needed.
    async fn open(&mut self) -> Result<(), MongoError> {
        let (lower, upper) = (&self.scan.lower, &self.scan.upper);
        let mut segments = VecDeque::new();
        let strays = self.inner.strays.load(Ordering::SeqCst);
        let single = within_one_sublevel(lower, upper);
        {
            let map = self.inner.sublevels.read().expect("registry lock");
            let mut add = |prefix: &Vec<u8>, coll: &str| {
                if let Some(range) = layout::sublevel_range(prefix, lower, upper) {
                    segments.push_back(Segment {
                        coll: coll.to_string(),
                        prefix: prefix.clone(),
                        range,
                    });
                }
            };
            match &single {
                Some(p) => {
                    if let Some(sl) = map.get(p) {
                        add(p, &sl.coll);
                    }
                }
                None => {
                    for (p, sl) in map.iter() {
                        add(p, &sl.coll);
                    }
                }
            }
        }
        if self.scan.reverse {
            segments = segments.into_iter().rev().collect();
        }
        let mut session = if self.inner.snapshot_reads {
            Some(self.inner.client.start_session().snapshot(true).await?)
        } else {
            None
        };
        let root = if single.is_none() || strays {
            let range = layout::root_range(lower, upper);
            Some(
                Self::open_source(
                    &self.inner,
                    (self.scan.reverse, self.scan.limit),
                    layout::ROOT,
                    None,
                    &range,
                    session.as_mut(),
                )
                .await?,
            )
        } else {
            None
        };
        self.state = Some(State {
            current: None,
            root,
            segments,
            session,
        });
        Ok(())
    }

    /// Fill `out` up to `want` entries from the open state.
    async fn fill(&mut self, want: usize, out: &mut Vec<Entry>) -> Result<(), ScanError> {
        while out.len() < want && !self.done {
            if self.state.is_none() {
                self.open().await?;
            }
            // Make sure the current segment has a head, opening the next ones as needed.
            loop {
                let st = self.state.as_mut().expect("open");
                if let Some(cur) = st.current.as_mut() {
                    cur.fill(st.session.as_mut(), &self.scan).await?;
                    if cur.head.is_some() {
                        break;
                    }
                    st.current = None;
                }
                let Some(seg) = st.segments.pop_front() else {
                    break;
                };
                let mut session = st.session.take();
                let opened = Self::open_source(
                    &self.inner,
                    (self.scan.reverse, self.scan.limit),
                    &seg.coll,
                    Some(seg.prefix),
                    &seg.range,
                    session.as_mut(),
                )
                .await;
                let st = self.state.as_mut().expect("open");
                st.session = session;
                st.current = Some(opened?);
            }
            let st = self.state.as_mut().expect("open");
            if let Some(root) = st.root.as_mut() {
                root.fill(st.session.as_mut(), &self.scan).await?;
            }
            let cur_key = st
                .current
                .as_ref()
                .and_then(|s| s.head.as_ref())
                .map(|e| &e.0);
            let root_key = st.root.as_ref().and_then(|s| s.head.as_ref()).map(|e| &e.0);
            let from_root = match (cur_key, root_key) {
                (None, None) => {
                    self.done = true;
                    break;
                }
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(c), Some(r)) => (r < c) != self.scan.reverse,
            };
            let src = if from_root {
                st.root.as_mut()
            } else {
                st.current.as_mut()
            };
            let entry = src.and_then(|s| s.head.take()).expect("a head");
            self.last = Some(entry.0.clone());
            out.push(entry);
            if let Some(l) = self.scan.limit.as_mut() {
                *l -= 1;
                if *l == 0 {
                    self.done = true;
                }
            }
        }
        if self.done {
            self.state = None;
        }
        Ok(())
    }

    /// After an error: continue past the last returned key, in a fresh snapshot.
    fn resume_point(&mut self) {
        self.state = None;
        if let Some(last) = self.last.clone() {
            if self.scan.reverse {
                self.scan.upper = Bound::Excluded(last);
            } else {
                self.scan.lower = Bound::Excluded(last);
            }
        }
        if self.scan.is_empty_range() {
            self.done = true;
        }
    }

    async fn batch(&mut self, max: usize) -> Result<Vec<Entry>, StorageError> {
        let mut out = Vec::new();
        let want = match self.scan.limit {
            Some(l) => max.min(usize::try_from(l).unwrap_or(usize::MAX)),
            None => max,
        };
        let started = Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            match self.fill(want, &mut out).await {
                Ok(()) => return Ok(out),
                Err(ScanError::Data(msg)) => {
                    self.done = true;
                    self.state = None;
                    return Err(err(format!("scanning {}", self.inner.describe()), msg));
                }
                Err(ScanError::Mongo(e))
                    if is_retryable(&e) && started.elapsed() < self.inner.retry_window =>
                {
                    tracing::warn!(error = %e, "mongodb: scan interrupted, resuming after the last key returned");
                    self.resume_point();
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(ScanError::Mongo(e)) => {
                    self.done = true;
                    self.state = None;
                    return Err(err(
                        format!(
                            "scanning {} (after {:.1} s)",
                            self.inner.describe(),
                            started.elapsed().as_secs_f64()
                        ),
                        e,
                    ));
                }
            }
        }
    }

    /// Open now, so the scan's snapshot dates from the `scan` call.
    pub(super) async fn start(&mut self) -> Result<(), StorageError> {
        if self.done {
            return Ok(());
        }
        let started = Instant::now();
        loop {
            match self.open().await {
                Ok(()) => return Ok(()),
                Err(e) if is_retryable(&e) && started.elapsed() < self.inner.retry_window => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    return Err(err(
                        format!("opening a scan on {}", self.inner.describe()),
                        e,
                    ))
                }
            }
        }
    }
}

impl Cursor for MongoCursor {
    fn next_batch(&mut self, max: usize) -> StoreFuture<'_, Vec<Entry>> {
        Box::pin(async move {
            if self.done || max == 0 {
                return Ok(Vec::new());
            }
            self.batch(max).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_sublevel_detection() {
        let inc = |s: &[u8]| Bound::Included(s.to_vec());
        assert_eq!(
            within_one_sublevel(&inc(b"!b!\0"), &inc("!b!\u{FFFF}".as_bytes())),
            Some(b"!b!".to_vec())
        );
        assert_eq!(within_one_sublevel(&inc(b"!b!"), &inc(b"!c!")), None);
        assert_eq!(within_one_sublevel(&inc(b"!b"), &inc(b"!b!")), None);
        assert_eq!(within_one_sublevel(&Bound::Unbounded, &inc(b"!b!")), None);
    }
}
