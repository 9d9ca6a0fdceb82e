//! Response bodies of the data service, streamed from files in bounded chunks.
//!
//! Two ways to produce a chunk, both of which keep the runtime thread off the disk:
//! - small chunks are copied with `preadv2(RWF_NOWAIT)`, which succeeds only when the data is
//!   already in the page cache; when the kernel would wait for the disk, the read moves to the
//!   blocking pool;
//! - large chunks (big objects, big ranges) are memory mappings of the page cache: the socket
//!   write then copies straight from the cache, which saves one full copy of every byte (the
//!   difference between CPU-bound and not at 8 MiB). `mincore` tells whether the pages are
//!   resident; if not, they are faulted in on the blocking pool before the chunk is handed on.
//!   Objects are immutable (written once, renamed into place, never modified), so a mapping
//!   cannot see a file shrink under it unless something outside the server truncates object
//!   files; the size is checked again before each mapping to narrow even that.
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

/// Largest chunk copied from a file at once.
pub const CHUNK: usize = 512 * 1024;
/// Chunks of at least this many bytes are sent from a mapping instead of a copy.
pub const MAP_MIN: u64 = 1024 * 1024;
/// Largest mapped chunk.
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
    map_supported: bool,
    sent: Arc<AtomicU64>,
}

impl FileBody {
    /// `sent` is bumped by the number of bytes handed to the connection.
    pub fn new(file: File, offset: u64, len: u64, sent: Arc<AtomicU64>) -> Self {
        FileBody {
            file: Arc::new(file),
            offset,
            remaining: len,
            pending: None,
            nowait_supported: true,
            map_supported: true,
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
        if this.map_supported && this.remaining >= MAP_MIN {
            let len = this.remaining.min(MAP_CHUNK) as usize;
            match Mapping::new(&this.file, this.offset, len) {
                Ok(map) if map.resident() => return this.produced(Bytes::from_owner(map)),
                Ok(map) => {
                    this.pending = Some(tokio::task::spawn_blocking(move || {
                        map.populate();
                        Ok(Bytes::from_owner(map))
                    }));
                    return Pin::new(this).poll_frame(cx);
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Some(Err(e)))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "mmap unavailable; copying file chunks instead");
                    this.map_supported = false;
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

/// A read-only shared mapping of `len` bytes of a file at `offset`.
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

    /// Faults every page in (blocking: may read from the disk).
    fn populate(&self) {
        // SAFETY: advice on our own mapping.
        let rc = unsafe { libc::madvise(self.base, self.map_len, libc::MADV_POPULATE_READ) };
        if rc != 0 {
            // Kernels before 5.14: touch one byte per page.
            let step = page_size();
            for i in (0..self.map_len).step_by(step) {
                // SAFETY: inside the mapping.
                unsafe { std::ptr::read_volatile(self.base.cast::<u8>().add(i)) };
            }
        }
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
