//! Response bodies of the data service, streamed from files in bounded chunks.
//!
//! Two ways to produce a chunk, both of which keep the runtime thread off the disk:
//! - large chunks (big objects, big ranges) on a connection that can send from files are
//!   placeholders for `sendfile` (see [`super::zerocopy`]): the socket takes the bytes straight
//!   from the page cache, with no copy through this process. `mincore` tells whether the pages
//!   are resident; if not, they are read in on the blocking pool before the chunk is handed on,
//!   so `sendfile` does not wait for the disk on a runtime thread;
//! - other chunks are copied with `preadv2(RWF_NOWAIT)`, which succeeds only when the data is
//!   already in the page cache; when the kernel would wait for the disk, the read moves to the
//!   blocking pool.
//!
//! Nothing here ever reads object bytes through a memory mapping, so an object file truncated
//! behind the server's back cannot raise `SIGBUS`: a short read or a short `sendfile` fails the
//! response instead.
//!
//! At most one or two chunks per response are in memory or mapped at a time, so a 2 GiB object
//! streams in constant memory.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

use super::zerocopy::Slots;

/// Largest chunk copied from a file at once.
pub const CHUNK: usize = 512 * 1024;
/// Chunks of at least this many bytes are sent with `sendfile` instead of a copy (below it,
/// setting up the placeholder mapping costs about what the copy saves).
pub const MAP_MIN: u64 = 256 * 1024;
/// Largest `sendfile` chunk.
pub const MAP_CHUNK: u64 = 4 * 1024 * 1024;

/// The body of every data-service response.
#[derive(Debug)]
pub enum DataBody {
    Empty,
    Full(Option<Bytes>),
    File(FileBody),
}

impl DataBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        if b.is_empty() {
            DataBody::Empty
        } else {
            DataBody::Full(Some(b))
        }
    }
}

impl Body for DataBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            DataBody::Empty => Poll::Ready(None),
            DataBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            DataBody::File(f) => Pin::new(f).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            DataBody::Empty => true,
            DataBody::Full(b) => b.is_none(),
            DataBody::File(f) => f.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            DataBody::Empty => SizeHint::with_exact(0),
            DataBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            DataBody::File(f) => SizeHint::with_exact(f.remaining),
        }
    }
}

/// `len` bytes of a file from `offset`.
#[derive(Debug)]
pub struct FileBody {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
    nowait_supported: bool,
    /// The connection's placeholder registry, when it sends with `sendfile`.
    zero_copy: Option<Arc<Slots>>,
    sent: Arc<AtomicU64>,
}

impl FileBody {
    /// `sent` is bumped by the number of bytes handed to the connection. `zero_copy`: the
    /// connection's [`Slots`] when it is a [`super::zerocopy::ZeroCopyStream`].
    pub fn new(
        file: File,
        offset: u64,
        len: u64,
        sent: Arc<AtomicU64>,
        zero_copy: Option<Arc<Slots>>,
    ) -> Self {
        FileBody {
            file: Arc::new(file),
            offset,
            remaining: len,
            pending: None,
            nowait_supported: true,
            zero_copy,
            sent,
        }
    }

    fn chunk_len(&self) -> usize {
        self.remaining.min(CHUNK as u64) as usize
    }

    fn produced(&mut self, chunk: Bytes) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if chunk.is_empty() {
            // The file is shorter than it was when we answered: objects are immutable, so this
            // means it was replaced or truncated behind our back. Fail the stream rather than
            // send a body shorter than the announced Content-Length.
            self.remaining = 0;
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "object file shrank while being read",
            ))));
        }
        let n = chunk.len() as u64;
        self.offset += n;
        self.remaining -= n;
        self.sent.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(handle) = this.pending.as_mut() {
            let result = match Pin::new(handle).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r,
            };
            this.pending = None;
            return match result {
                Ok(Ok(chunk)) => this.produced(chunk),
                Ok(Err(e)) => Poll::Ready(Some(Err(e))),
                Err(join) => Poll::Ready(Some(Err(io::Error::other(join)))),
            };
        }
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        if this.remaining >= MAP_MIN {
            if let Some(slots) = this.zero_copy.clone() {
                let len = this.remaining.min(MAP_CHUNK) as usize;
                match Placeholder::new(&this.file, this.offset, len, slots) {
                    Ok(p)
                        if resident(&this.file, this.offset, len)
                            .unwrap_or_else(|| p.map.resident()) =>
                    {
                        return this.produced(Bytes::from_owner(p))
                    }
                    Ok(p) => {
                        let file = this.file.clone();
                        let offset = this.offset;
                        this.pending = Some(tokio::task::spawn_blocking(move || {
                            read_in(&file, offset, len)?;
                            Ok(Bytes::from_owner(p))
                        }));
                        return Pin::new(this).poll_frame(cx);
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Poll::Ready(Some(Err(e)))
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "mmap unavailable; copying file chunks instead");
                        this.zero_copy = None;
                    }
                }
            }
        }
        let len = this.chunk_len();
        if this.nowait_supported {
            match read_nowait(&this.file, this.offset, len) {
                Ok(Some(chunk)) => return this.produced(chunk),
                Ok(None) => {}
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    this.nowait_supported = false
                }
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
        let file = this.file.clone();
        let offset = this.offset;
        this.pending = Some(tokio::task::spawn_blocking(move || {
            read_blocking(&file, offset, len)
        }));
        // Poll it once so the waker is registered.
        Pin::new(this).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A read-only shared mapping of `len` bytes of a file at `offset`. Only its address range is
/// used (see [`Placeholder`]): its pages are never touched.
struct Mapping {
    base: *mut libc::c_void,
    map_len: usize,
    delta: usize,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value until it is dropped.
unsafe impl Send for Mapping {}
// SAFETY: only shared reads of immutable memory.
unsafe impl Sync for Mapping {}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

impl Mapping {
    fn new(file: &File, offset: u64, len: usize) -> io::Result<Mapping> {
        let size = file.metadata()?.len();
        if size < offset + len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "object file shrank while being read",
            ));
        }
        let delta = (offset % page_size() as u64) as usize;
        let map_len = delta + len;
        // SAFETY: a fresh read-only shared mapping of a range that exists in the file.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                (offset - delta as u64) as libc::off_t,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            base,
            map_len,
            delta,
            len,
        })
    }

    /// Whether every page is in the page cache (so touching them will not wait for the disk).
    fn resident(&self) -> bool {
        let pages = self.map_len.div_ceil(page_size());
        let mut vec = vec![0u8; pages];
        // SAFETY: `base..base+map_len` is our mapping and `vec` has one byte per page.
        let rc = unsafe { libc::mincore(self.base, self.map_len, vec.as_mut_ptr()) };
        rc == 0 && vec.iter().all(|v| v & 1 == 1)
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the mapping covers `delta + len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.base.cast::<u8>().add(self.delta), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped; no slice of it outlives `self`
        // (Bytes::from_owner keeps `self` alive as long as any view exists).
        unsafe { libc::munmap(self.base, self.map_len) };
    }
}

/// A chunk sent with `sendfile`: a mapping of the same bytes, registered with the connection
/// for as long as hyper holds the chunk (see [`super::zerocopy`]).
struct Placeholder {
    map: Mapping,
    slots: Arc<Slots>,
}

impl Placeholder {
    fn new(file: &Arc<File>, offset: u64, len: usize, slots: Arc<Slots>) -> io::Result<Self> {
        let map = Mapping::new(file, offset, len)?;
        let start = map.as_ref().as_ptr() as usize;
        slots.register(start, len, file.clone(), offset);
        Ok(Placeholder { map, slots })
    }
}

impl AsRef<[u8]> for Placeholder {
    fn as_ref(&self) -> &[u8] {
        self.map.as_ref()
    }
}

impl Drop for Placeholder {
    fn drop(&mut self) {
        // Before the mapping goes: its address may be reused by the next mapping.
        self.slots.unregister(self.map.as_ref().as_ptr() as usize);
    }
}

/// Whether cachestat(2) may be used (Linux 6.5+, and not refused by a seccomp filter).
static CACHESTAT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether `len` bytes of a file from `offset` are all in the page cache, by `cachestat(2)`,
/// which counts cached pages from the page cache directly instead of looking each page of a
/// fresh mapping up like `mincore` (measured: `mincore` was a tenth of the CPU of an 8 MiB GET).
/// `None` when the call is unavailable (kernels before 6.5, seccomp filters).
fn resident(file: &File, offset: u64, len: usize) -> Option<bool> {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    /// The syscall number of cachestat in the generic table, which x86_64 and aarch64 share.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    const SYS_CACHESTAT: libc::c_long = 451;
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return None;
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        if !CACHESTAT.load(Ordering::Relaxed) {
            return None;
        }
        let page = page_size() as u64;
        let first = offset / page * page;
        let range = Range {
            off: first,
            len: offset + len as u64 - first,
        };
        let mut stat = Stat::default();
        // SAFETY: the pointers refer to live, correctly laid out structs; flags must be 0.
        let rc = unsafe {
            libc::syscall(
                SYS_CACHESTAT,
                file.as_raw_fd(),
                &range as *const Range,
                &mut stat as *mut Stat,
                0u32,
            )
        };
        if rc != 0 {
            CACHESTAT.store(false, Ordering::Relaxed);
            return None;
        }
        Some(stat.nr_cache >= range.len.div_ceil(page))
    }
}

/// Brings `len` bytes of a file from `offset` into the page cache (blocking: waits for the
/// disk), by reading them into a scratch buffer.
fn read_in(file: &File, offset: u64, len: usize) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut scratch = vec![0u8; len.min(CHUNK)];
    let mut done = 0;
    while done < len {
        let want = (len - done).min(scratch.len());
        match file.read_at(&mut scratch[..want], offset + done as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "object file shrank while being read",
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads from the page cache only: `Ok(None)` when that would need to wait for the disk.
fn read_nowait(file: &File, offset: u64, len: usize) -> io::Result<Option<Bytes>> {
    let mut buf = BytesMut::with_capacity(len);
    loop {
        let iov = libc::iovec {
            iov_base: buf.spare_capacity_mut().as_mut_ptr().cast(),
            iov_len: len,
        };
        // SAFETY: the iovec points at `len` bytes of spare capacity owned by `buf`.
        let n = unsafe {
            libc::preadv2(
                file.as_raw_fd(),
                &iov,
                1,
                offset as libc::off_t,
                libc::RWF_NOWAIT,
            )
        };
        if n >= 0 {
            // SAFETY: the kernel initialised the first n bytes.
            unsafe { buf.set_len(n as usize) };
            return Ok(Some(buf.freeze()));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            _ => return Err(err),
        }
    }
}

fn read_blocking(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}
