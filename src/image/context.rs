//! Build contexts: the tar stream the Engine's `/build` endpoint reads.
//!
//! A context is a list of entries — files and symlinks found under a directory (after
//! `.dockerignore`), plus generated ones (a Dockerfile, an `/etc/passwd`) — that is written as
//! a tar archive while it is being sent: a blocking thread writes the archive into a channel of
//! chunks that becomes the request body, so a context of any size costs a few chunks of
//! memory. File contents are read at that moment; a file that cannot be read fails the build
//! with its path.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::Stream;

use super::dockerignore::Dockerignore;

/// Size of the chunks the tar stream is cut into.
const CHUNK: usize = 64 * 1024;
/// Chunks buffered between the tar writer and the request body.
const CHUNKS_IN_FLIGHT: usize = 16;

/// Where an entry's content comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on this machine (read, following symlinks, when the archive is written).
    File(PathBuf),
    /// Generated content.
    Bytes(Vec<u8>),
    /// A directory (an empty one, or to carry its mode).
    Dir,
    /// A symbolic link to this target (archived as a link, as the docker CLI does).
    Symlink(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// The path in the archive: relative, `/`-separated.
    pub path: String,
    pub source: Source,
    /// Permission bits (and setuid/setgid/sticky).
    pub mode: u32,
    /// Modification time, seconds since the epoch (the build cache looks at it).
    pub mtime: u64,
}

/// The entries of a build context, in archive order.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    entries: Vec<Entry>,
}

impl BuildContext {
    pub fn new() -> BuildContext {
        BuildContext::default()
    }

    /// The files, directories and symlinks under `dir` that `.dockerignore` keeps, in a stable
    /// (sorted) order. Sockets, fifos and devices are skipped, as the docker CLI does.
    pub fn from_dir(dir: &Path, ignore: &Dockerignore) -> anyhow::Result<BuildContext> {
        let mut context = BuildContext::new();
        walk(dir, "", ignore, &mut context.entries)
            .with_context(|| format!("cannot read the build context {}", dir.display()))?;
        Ok(context)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Adds (or replaces) an entry.
    pub fn add(&mut self, path: &str, source: Source, mode: u32) {
        self.entries.retain(|e| e.path != path);
        let mtime = match &source {
            Source::File(p) => mtime_of(&std::fs::metadata(p).ok()),
            _ => 0,
        };
        self.entries.push(Entry {
            path: path.to_string(),
            source,
            mode,
            mtime,
        });
    }

    /// Writes the whole archive; returns its size in bytes.
    pub fn write_to(&self, writer: impl Write) -> anyhow::Result<u64> {
        let mut counter = Counting {
            inner: writer,
            n: 0,
        };
        {
            let mut tar = tar::Builder::new(&mut counter);
            tar.mode(tar::HeaderMode::Deterministic);
            for entry in &self.entries {
                append(&mut tar, entry)
                    .with_context(|| format!("cannot add {} to the build context", entry.path))?;
            }
            tar.finish()
                .context("cannot finish the build context archive")?;
        }
        Ok(counter.n)
    }

    /// Starts writing the archive on a blocking thread and returns it as a stream of chunks
    /// (for `bollard::body_stream`) and the writer's outcome: its size, or why it stopped
    /// (an unreadable file), which explains a truncated stream the daemon then complains about.
    pub fn into_stream(
        self,
    ) -> (
        impl Stream<Item = Bytes> + Send + 'static,
        tokio::task::JoinHandle<anyhow::Result<u64>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
        let writer = tokio::task::spawn_blocking(move || {
            let mut out = ChannelWriter {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            let size = self.write_to(&mut out)?;
            out.flush()
                .context("the build request stopped reading the context")?;
            Ok(size)
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        (stream, writer)
    }
}

fn walk(dir: &Path, prefix: &str, ignore: &Dockerignore, out: &mut Vec<Entry>) -> io::Result<()> {
    let mut children: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let name = child.file_name();
        let Some(name) = name.to_str() else {
            tracing::warn!(path = %child.path().display(), "skipped: the name is not UTF-8");
            continue;
        };
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::symlink_metadata(child.path())?;
        let excluded = ignore.excludes(&path);
        let kind = meta.file_type();
        if kind.is_dir() {
            // An excluded directory is skipped whole unless a `!` pattern may re-include
            // something below it.
            if excluded && !ignore.has_exclusions() {
                continue;
            }
            if !excluded {
                out.push(entry(&path, Source::Dir, &meta));
            }
            walk(&child.path(), &path, ignore, out)?;
        } else if excluded {
            continue;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(child.path())?;
            out.push(entry(&path, Source::Symlink(target), &meta));
        } else if kind.is_file() {
            out.push(entry(&path, Source::File(child.path()), &meta));
        } else {
            tracing::warn!(%path, "skipped: not a file, directory or symlink");
        }
    }
    Ok(())
}

fn entry(path: &str, source: Source, meta: &std::fs::Metadata) -> Entry {
    use std::os::unix::fs::PermissionsExt as _;
    Entry {
        path: path.to_string(),
        source,
        mode: meta.permissions().mode() & 0o7777,
        mtime: mtime_of(&Some(meta.clone())),
    }
}

fn mtime_of(meta: &Option<std::fs::Metadata>) -> u64 {
    meta.as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn append<W: Write>(tar: &mut tar::Builder<W>, entry: &Entry) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(entry.mode);
    header.set_mtime(entry.mtime);
    header.set_uid(0);
    header.set_gid(0);
    match &entry.source {
        Source::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            tar.append_data(&mut header, format!("{}/", entry.path), io::empty())?;
        }
        Source::Symlink(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, &entry.path, target)?;
        }
        Source::Bytes(bytes) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(bytes.len() as u64);
            tar.append_data(&mut header, &entry.path, bytes.as_slice())?;
        }
        Source::File(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let size = file
                .metadata()
                .with_context(|| format!("cannot stat {}", path.display()))?
                .len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(size);
            // The size is in the header already: a file that changes while it is read would
            // corrupt the archive, so read exactly that many bytes or fail.
            let mut reader = Exact {
                inner: file,
                left: size,
                path,
            };
            tar.append_data(&mut header, &entry.path, &mut reader)?;
            if reader.left != 0 {
                anyhow::bail!("{} shrank while it was read", path.display());
            }
        }
    }
    Ok(())
}

struct Exact<'a, R> {
    inner: R,
    left: u64,
    path: &'a Path,
}

impl<R: io::Read> io::Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was read", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Cuts what is written into chunks and hands them to the request body.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(chunk).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the engine stopped reading the context",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(archive: &[u8]) -> Vec<(String, tar::EntryType, u32)> {
        let mut out = Vec::new();
        let mut reader = tar::Archive::new(archive);
        for e in reader.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            out.push((
                e.path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string(),
                h.entry_type(),
                h.mode().unwrap(),
            ));
        }
        out
    }

    #[test]
    fn dir_walk_applies_dockerignore_and_keeps_links_and_modes() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("target/debug")).unwrap();
        std::fs::write(root.join("target/debug/big"), b"x").unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/main.rs"), b"fn main() {}").unwrap();
        std::fs::write(root.join("run.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o750))
            .unwrap();
        std::fs::write(root.join("notes.log"), b"x").unwrap();
        std::os::unix::fs::symlink("src/main.rs", root.join("link")).unwrap();
        std::fs::write(root.join(".dockerignore"), "target\n*.log\n").unwrap();

        let ignore = Dockerignore::load(root).unwrap();
        let mut ctx = BuildContext::from_dir(root, &ignore).unwrap();
        ctx.add(
            "Dockerfile",
            Source::Bytes(b"FROM scratch\n".to_vec()),
            0o644,
        );
        let mut archive = Vec::new();
        let size = ctx.write_to(&mut archive).unwrap();
        assert_eq!(size, archive.len() as u64);
        let got = names(&archive);
        let paths: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                ".dockerignore",
                "link",
                "run.sh",
                "src",
                "src/main.rs",
                "Dockerfile"
            ]
        );
        assert_eq!(got[1].1, tar::EntryType::Symlink);
        assert_eq!(got[2].2, 0o750);
        assert_eq!(got[3].1, tar::EntryType::Directory);
    }

    #[tokio::test]
    async fn stream_matches_the_archive_and_reports_unreadable_files() {
        use futures_util::StreamExt as _;
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![7u8; 3 * CHUNK + 17]).unwrap();
        let mut ctx = BuildContext::new();
        ctx.add("big", Source::File(big.clone()), 0o644);
        let mut expected = Vec::new();
        ctx.write_to(&mut expected).unwrap();

        let (stream, writer) = ctx.clone().into_stream();
        let chunks: Vec<Bytes> = stream.collect().await;
        assert!(chunks.len() > 1, "the archive is streamed in chunks");
        assert_eq!(chunks.concat(), expected);
        assert_eq!(writer.await.unwrap().unwrap(), expected.len() as u64);

        ctx.add("gone", Source::File(dir.path().join("missing")), 0o644);
        let (stream, writer) = ctx.into_stream();
        let _: Vec<Bytes> = stream.collect().await;
        let err = writer.await.unwrap().unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }
}
