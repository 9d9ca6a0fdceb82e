//! Response bodies of the data service, streamed from files in bounded chunks.
//!
//! A file chunk is first read with `preadv2(RWF_NOWAIT)`, which succeeds only when the data is
//! already in the page cache and so never blocks the runtime thread; when the kernel would have
//! to wait for the disk, the read moves to the blocking pool. At most one chunk per response is
//! in memory on our side, so a 2 GiB object streams in constant memory.

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

/// Largest chunk read from a file at once.
pub const CHUNK: usize = 512 * 1024;

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
