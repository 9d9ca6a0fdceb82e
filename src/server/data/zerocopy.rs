//! Zero-copy GET bodies: file chunks go from the page cache to the socket with `sendfile(2)`
//! while hyper still frames the response.
//!
//! hyper only writes byte slices, so a file chunk travels through it as a placeholder: a
//! [`Bytes`] over a read-only mapping of exactly that part of the file, registered in the
//! connection's [`Slots`]. The connection's I/O object ([`ZeroCopyStream`]) recognises a slice
//! that lies inside a registered placeholder by its address and sends the same bytes from the
//! file with `sendfile` instead of copying them out of memory. With hyper's queueing write
//! strategy (forced with `http1::Builder::writev(true)`), body buffers are handed to the I/O
//! object as they are and never read by hyper, so the mapping is never touched: no page faults,
//! no copy, and no `SIGBUS` if an operator truncates an object file while it is being sent (the
//! `sendfile` then comes up short and the connection is failed, as the response can no longer
//! match its `Content-Length`). The mapping is only an address range with the right content;
//! were something ever to read it, it would still read the file's own bytes.
//!
//! Measured on the bench (bench/data.sh, 8 MiB GETs, server on one core): the copy out of the
//! mapping into socket buffers and the page faults of the mapping were about half of the
//! server's CPU per request.

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A registered placeholder: `len` bytes at address `start` stand for the file's bytes from
/// `offset`.
#[derive(Debug, Clone)]
struct Slot {
    start: usize,
    len: usize,
    file: Arc<File>,
    offset: u64,
}

/// The placeholders of one connection's queued response chunks.
#[derive(Debug, Default)]
pub struct Slots(Mutex<Vec<Slot>>);

impl Slots {
    pub fn new() -> Arc<Slots> {
        Arc::new(Slots::default())
    }

    pub(crate) fn register(&self, start: usize, len: usize, file: Arc<File>, offset: u64) {
        self.0.lock().expect("slots").push(Slot {
            start,
            len,
            file,
            offset,
        });
    }

    pub(crate) fn unregister(&self, start: usize) {
        self.0.lock().expect("slots").retain(|s| s.start != start);
    }

    /// The file bytes a slice stands for: (file, offset, length), if it is a placeholder.
    fn lookup(&self, buf: &[u8]) -> Option<(Arc<File>, u64, usize)> {
        let addr = buf.as_ptr() as usize;
        let slots = self.0.lock().expect("slots");
        slots
            .iter()
            .find(|s| addr >= s.start && addr < s.start + s.len)
            .map(|s| {
                let skip = addr - s.start;
                let len = buf.len().min(s.len - skip);
                (s.file.clone(), s.offset + skip as u64, len)
            })
    }

    fn is_empty(&self) -> bool {
        self.0.lock().expect("slots").is_empty()
    }
}

/// A TCP connection that sends registered placeholders with `sendfile`.
pub struct ZeroCopyStream {
    inner: TcpStream,
    slots: Arc<Slots>,
}

impl ZeroCopyStream {
    pub fn new(inner: TcpStream, slots: Arc<Slots>) -> Self {
        ZeroCopyStream { inner, slots }
    }

    fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        file: &File,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.inner.poll_write_ready(cx))?;
            let sent = self.inner.try_io(Interest::WRITABLE, || {
                let mut off = offset as libc::off_t;
                // SAFETY: both descriptors are open for the duration of the call; `off` is a
                // valid out-parameter.
                let n = unsafe {
                    libc::sendfile(self.inner.as_raw_fd(), file.as_raw_fd(), &mut off, len)
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match sent {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "object file shrank while being sent",
                    )))
                }
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for ZeroCopyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.slots.is_empty() {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        // Plain slices up to the first placeholder go out with writev; a placeholder at the
        // front goes out with sendfile. One system call per poll, like a plain writev.
        let mut plain = 0;
        for b in bufs {
            if b.is_empty() {
                plain += 1;
                continue;
            }
            if let Some((file, offset, len)) = this.slots.lookup(b) {
                if plain == 0 {
                    return this.poll_sendfile(cx, &file, offset, len);
                }
                break;
            }
            plain += 1;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, &bufs[..plain])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
