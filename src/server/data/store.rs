//! The data store: objects as files in Arsenal's `DataFileStore` layout.
//!
//! An object with key `k` lives at `<root>/<stringHash(k) % 3511>/<k>` (protocol spec §6.3), so
//! a directory written by Arsenal's reference data server is served as is, and the other way
//! round. Keys are generated here (20 random bytes, 40 lowercase hex characters) and a request
//! key that is not of that exact form never reaches the filesystem (see [`Key::parse`]).
//!
//! Durability: an upload is written to a temporary file under `<root>/.zenkoctl-tmp/`, fsynced,
//! renamed into place without replacing anything (`RENAME_NOREPLACE`), and the destination
//! directory is fsynced before the key is handed out. A crash at any point leaves either no
//! object or the complete object; leftover temporary files are removed at the next start.
//!
//! Uploads are written with `O_DIRECT` from an aligned staging buffer (reused between uploads)
//! where the filesystem allows it: the data goes to the device without first being copied into
//! the page cache, which the fsync would flush anyway. That copy is most of the CPU an upload
//! costs with buffered writes. The unaligned tail goes through the page cache, and the fsync before the rename
//! covers both. Filesystems without `O_DIRECT` (or with stricter alignment) fall back to
//! buffered writes transparently.
//!
//! Every method here does blocking system calls: the HTTP layer calls them from
//! `spawn_blocking` where they may wait on the disk (fsync, unlink, large writes).

use std::alloc::{self, Layout};
use std::ffi::CString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// Number of hash sub-directories. Fixed by Arsenal's on-disk format: it must never change for
/// existing data.
pub const FOLDER_HASH: u32 = 3511;
/// Length of a key: 20 random bytes in lowercase hex.
pub const KEY_LEN: usize = 40;
/// Where uploads are written before they are renamed into place. Arsenal ignores it.
pub const TEMP_DIR: &str = ".zenkoctl-tmp";
/// Alignment of `O_DIRECT` buffers, file offsets and lengths (the usual 4 KiB block).
const DIRECT_ALIGN: usize = 4096;
/// Size of the `O_DIRECT` staging buffer of one upload (a multiple of [`DIRECT_ALIGN`]).
pub const DIRECT_BUF: usize = 1024 * 1024;

/// Arsenal's `stringHash` (the `string-hash` npm module): djb2 with XOR, over UTF-16 code units
/// from last to first, 32-bit.
pub fn string_hash(key: &str) -> u32 {
    let units: Vec<u16> = key.encode_utf16().collect();
    units
        .iter()
        .rev()
        .fold(5381u32, |h, &c| h.wrapping_mul(33) ^ u32::from(c))
}

/// The hash sub-directory of a key: `stringHash(key) % 3511`.
pub fn folder_of(key: &str) -> u32 {
    string_hash(key) % FOLDER_HASH
}

/// A validated object key: exactly 40 lowercase hex characters. Nothing else is ever turned
/// into a path, so `..`, slashes, NUL bytes or overlong names cannot escape the data directory.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// `None` unless `s` is exactly 40 characters of `[0-9a-f]`.
    pub fn parse(s: &str) -> Option<Key> {
        let bytes = s.as_bytes();
        if bytes.len() != KEY_LEN
            || !bytes
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        {
            return None;
        }
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(bytes);
        Some(Key(key))
    }

    /// A new random key from the kernel's CSPRNG (like Arsenal's 20 random bytes).
    pub fn random() -> io::Result<Key> {
        let mut raw = [0u8; KEY_LEN / 2];
        fill_random(&mut raw)?;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut key = [0u8; KEY_LEN];
        for (i, b) in raw.iter().enumerate() {
            key[2 * i] = HEX[usize::from(b >> 4)];
            key[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        Ok(Key(key))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).expect("keys are ASCII")
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.as_str())
    }
}

fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        filled += n as usize;
    }
    Ok(())
}

/// A filesystem failure, with the operation that failed (Arsenal reports
/// `filesystem error: <op>() returned <CODE>`).
#[derive(Debug)]
pub struct FsError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl FsError {
    fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        FsError {
            op,
            path: path.into(),
            source,
        }
    }

    /// The errno name (`ENOSPC`, `EIO`, ...) as Node reports it in `err.code`.
    pub fn code(&self) -> String {
        errno_name(&self.source)
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}() on {} failed: {}",
            self.op,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The symbolic name of an errno, for error messages compatible with Node's `err.code`.
pub fn errno_name(err: &io::Error) -> String {
    let name = match err.raw_os_error() {
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EEXIST) => "EEXIST",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EPERM) => "EPERM",
        Some(libc::EROFS) => "EROFS",
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::EDQUOT) => "EDQUOT",
        Some(libc::EIO) => "EIO",
        Some(libc::EMFILE) => "EMFILE",
        Some(libc::ENFILE) => "ENFILE",
        Some(libc::ENOTDIR) => "ENOTDIR",
        Some(libc::EISDIR) => "EISDIR",
        Some(libc::ENAMETOOLONG) => "ENAMETOOLONG",
        Some(libc::EFBIG) => "EFBIG",
        Some(n) => return format!("E{n}"),
        None => return format!("{:?}", err.kind()),
    };
    name.to_string()
}

/// Result of a lookup that may not find the object.
#[derive(Debug)]
pub enum LookupError {
    NotFound,
    Fs(FsError),
}

/// `statfs` of the data directory, in bytes (Arsenal's `getDiskUsage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub available: u64,
    pub free: u64,
    pub total: u64,
}

/// Staging buffers kept for reuse at most (so at most this many MiB stay allocated when idle).
const POOLED_BUFS: usize = 16;

/// Reused `O_DIRECT` staging buffers. A fresh 1 MiB allocation per upload is a fresh mapping
/// that every upload page-faults in and unmaps again (about a tenth of a 64 KiB PUT's CPU).
#[derive(Debug, Default)]
struct BufPool(std::sync::Mutex<Vec<AlignedBuf>>);

impl BufPool {
    fn take(&self) -> AlignedBuf {
        let pooled = self.0.lock().map(|mut p| p.pop()).unwrap_or(None);
        pooled.unwrap_or_else(AlignedBuf::new)
    }

    fn give(&self, buf: AlignedBuf) {
        if let Ok(mut p) = self.0.lock() {
            if p.len() < POOLED_BUFS {
                p.push(buf.cleared());
            }
        }
    }
}

/// The data directory.
#[derive(Debug)]
pub struct DataStore {
    root: PathBuf,
    temp: PathBuf,
    direct_io: bool,
    pool: std::sync::Arc<BufPool>,
}

impl DataStore {
    /// Opens (creating if needed) a data directory: checks it is readable and writable,
    /// pre-creates the 3511 hash directories like Arsenal does, and removes temporary files
    /// left by a previous run (uploads that were never acknowledged).
    pub fn open(root: impl Into<PathBuf>) -> Result<DataStore, FsError> {
        let root: PathBuf = root.into();
        fs::create_dir_all(&root).map_err(|e| FsError::new("mkdir", &root, e))?;
        access_rw(&root)?;
        let mut created = false;
        for i in 0..FOLDER_HASH {
            let dir = root.join(i.to_string());
            match fs::create_dir(&dir) {
                Ok(()) => created = true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(FsError::new("mkdir", dir, e)),
            }
        }
        let temp = root.join(TEMP_DIR);
        match fs::create_dir(&temp) {
            Ok(()) => created = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(FsError::new("mkdir", temp, e)),
        }
        if created {
            fsync_dir(&root)?;
        }
        let store = DataStore {
            root,
            temp,
            direct_io: true,
            pool: Default::default(),
        };
        let removed = store.clean_temp()?;
        if removed > 0 {
            tracing::info!(
                removed,
                dir = %store.temp.display(),
                "removed unacknowledged uploads left by a previous run"
            );
        }
        Ok(store)
    }

    /// Whether uploads may use `O_DIRECT` (on by default; off writes through the page cache).
    pub fn with_direct_io(mut self, on: bool) -> Self {
        self.direct_io = on;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn temp_dir(&self) -> &Path {
        &self.temp
    }

    /// `<root>/<stringHash(key) % 3511>/<key>`.
    pub fn object_path(&self, key: &Key) -> PathBuf {
        let mut p = self.folder_path(key);
        p.push(key.as_str());
        p
    }

    fn folder_path(&self, key: &Key) -> PathBuf {
        self.root.join(folder_of(key.as_str()).to_string())
    }

    /// Removes every file in the temporary directory; returns how many.
    pub fn clean_temp(&self) -> Result<usize, FsError> {
        let mut removed = 0;
        let entries =
            fs::read_dir(&self.temp).map_err(|e| FsError::new("scandir", &self.temp, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| FsError::new("scandir", &self.temp, e))?;
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(FsError::new("unlink", path, e)),
            }
        }
        Ok(removed)
    }

    /// Starts an upload: an exclusive temporary file, written through a staging buffer with
    /// `O_DIRECT` where possible (see [`Upload::write`]).
    pub fn begin_upload(&self) -> Result<Upload, FsError> {
        loop {
            let name = format!(
                "{}.part",
                Key::random().map_err(|e| FsError::new("getrandom", &self.temp, e))?
            );
            let path = self.temp.join(name);
            let file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(FsError::new("open", path, e)),
            };
            return Ok(Upload {
                file,
                temp_path: path,
                root: self.root.clone(),
                done: false,
                direct_mode: false,
                offset: 0,
                staging: self.direct_io.then(|| self.pool.take()),
                pool: self.pool.clone(),
            });
        }
    }

    /// Opens an object for reading, with its size.
    pub fn open_object(&self, key: &Key) -> Result<(File, u64), LookupError> {
        let path = self.object_path(key);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LookupError::NotFound),
            Err(e) => return Err(LookupError::Fs(FsError::new("open", path, e))),
        };
        let meta = file
            .metadata()
            .map_err(|e| LookupError::Fs(FsError::new("stat", &path, e)))?;
        if !meta.is_file() {
            return Err(LookupError::NotFound);
        }
        Ok((file, meta.len()))
    }

    /// Deletes an object durably: unlink, then fsync of its directory.
    pub fn delete(&self, key: &Key) -> Result<(), LookupError> {
        let path = self.object_path(key);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LookupError::NotFound),
            Err(e) => return Err(LookupError::Fs(FsError::new("unlink", path, e))),
        }
        fsync_dir(&self.folder_path(key)).map_err(LookupError::Fs)
    }

    /// `statfs` of the data directory.
    pub fn disk_usage(&self) -> Result<DiskUsage, FsError> {
        let c = cstring(&self.root)?;
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statfs struct.
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            return Err(FsError::new(
                "statfs",
                &self.root,
                io::Error::last_os_error(),
            ));
        }
        let bsize = st.f_bsize as u64;
        Ok(DiskUsage {
            available: st.f_bavail as u64 * bsize,
            free: st.f_bfree as u64 * bsize,
            total: st.f_blocks as u64 * bsize,
        })
    }

    /// Health: the directory is writable right now (a file can be created and removed in it).
    pub fn check_writable(&self) -> Result<(), FsError> {
        let upload = self.begin_upload()?;
        drop(upload);
        Ok(())
    }
}

/// An upload in progress: a temporary file that becomes an object only through
/// [`Upload::commit`]. Dropping it (error, client gone, shutdown) removes the temporary file.
#[derive(Debug)]
pub struct Upload {
    file: File,
    temp_path: PathBuf,
    root: PathBuf,
    done: bool,
    /// The file descriptor has `O_DIRECT`.
    direct_mode: bool,
    /// Bytes written to the file so far (through `write_all`).
    offset: u64,
    /// Staging buffer for `O_DIRECT` writes; `None` when writing through the page cache.
    staging: Option<AlignedBuf>,
    pool: std::sync::Arc<BufPool>,
}

impl Upload {
    /// Appends buffers to the file through the staging buffer, written with `O_DIRECT` each time
    /// it fills and at commit. `O_DIRECT` saves copying every byte into the page cache and the
    /// writeback the fsync would start; measured for 64 KiB files with 16 writers (create,
    /// write, fsync), it costs a third less system CPU per file than a buffered write, for
    /// about the same rate (the sync dominates).
    pub fn write(&mut self, bufs: &[Bytes]) -> Result<(), FsError> {
        if self.staging.is_none() {
            return self.write_vectored(bufs);
        }
        for b in bufs {
            let mut data = &b[..];
            while !data.is_empty() {
                let staging = self.staging.as_mut().expect("staging buffer");
                data = staging.fill_from(data);
                if staging.is_full() {
                    if !self.direct_mode && self.offset == 0 {
                        self.enter_direct_mode();
                    }
                    let staging = self.staging.take().expect("staging buffer");
                    let written = self.write_all(staging.filled());
                    self.staging = Some(staging.cleared());
                    written?;
                }
            }
        }
        Ok(())
    }

    fn write_vectored(&mut self, bufs: &[Bytes]) -> Result<(), FsError> {
        let mut slices: Vec<IoSlice<'_>> = bufs
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| IoSlice::new(b))
            .collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match self.file.write_vectored(slices) {
                Ok(0) => {
                    return Err(FsError::new(
                        "write",
                        &self.temp_path,
                        io::Error::from(io::ErrorKind::WriteZero),
                    ))
                }
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FsError::new("write", &self.temp_path, e)),
            }
        }
        Ok(())
    }

    /// Writes all of `data`; an `O_DIRECT` write the filesystem refuses (alignment) is retried
    /// through the page cache.
    fn write_all(&mut self, mut data: &[u8]) -> Result<(), FsError> {
        while !data.is_empty() {
            match self.file.write(data) {
                Ok(0) => {
                    return Err(FsError::new(
                        "write",
                        &self.temp_path,
                        io::Error::from(io::ErrorKind::WriteZero),
                    ))
                }
                Ok(n) => {
                    data = &data[n..];
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && self.direct_mode => {
                    self.leave_direct_mode()?
                }
                Err(e) => return Err(FsError::new("write", &self.temp_path, e)),
            }
        }
        Ok(())
    }

    /// Sets `O_DIRECT` on the descriptor, if the filesystem takes it.
    fn enter_direct_mode(&mut self) {
        let fd = self.file.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        if flags >= 0 && unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) } == 0 {
            self.direct_mode = true;
        }
    }

    /// Clears `O_DIRECT` on the descriptor: later writes go through the page cache.
    fn leave_direct_mode(&mut self) -> Result<(), FsError> {
        let fd = self.file.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        // SAFETY: as above.
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
            return Err(FsError::new(
                "fcntl",
                &self.temp_path,
                io::Error::last_os_error(),
            ));
        }
        self.direct_mode = false;
        Ok(())
    }

    fn write_staged(&mut self, staging: &AlignedBuf) -> Result<(), FsError> {
        let data = staging.filled();
        let aligned = data.len() / DIRECT_ALIGN * DIRECT_ALIGN;
        if aligned > 0 && !self.direct_mode && self.offset == 0 {
            self.enter_direct_mode();
        }
        self.write_all(&data[..aligned])?;
        if aligned < data.len() {
            if self.direct_mode {
                self.leave_direct_mode()?;
            }
            self.write_all(&data[aligned..])?;
        }
        Ok(())
    }

    /// Makes the upload a durable object and returns its key: fsync the file, rename it to a
    /// fresh key without replacing anything, fsync the destination directory.
    pub fn commit(mut self) -> Result<Key, FsError> {
        if let Some(staging) = self.staging.take() {
            // The aligned part goes direct; the tail through the page cache.
            let written = self.write_staged(&staging);
            self.pool.give(staging);
            written?;
        }
        self.file
            .sync_all()
            .map_err(|e| FsError::new("fsync", &self.temp_path, e))?;
        let from = cstring(&self.temp_path)?;
        loop {
            let key = Key::random().map_err(|e| FsError::new("getrandom", &self.root, e))?;
            let dir = self.root.join(folder_of(key.as_str()).to_string());
            let dest = dir.join(key.as_str());
            let to = cstring(&dest)?;
            // SAFETY: both paths are valid NUL-terminated strings.
            let rc = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    from.as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    libc::RENAME_NOREPLACE,
                )
            };
            if rc != 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EEXIST) {
                    // A 160-bit collision: draw another key rather than replace an object.
                    continue;
                }
                return Err(FsError::new("rename", dest, err));
            }
            self.done = true;
            fsync_dir(&dir)?;
            return Ok(key);
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(staging) = self.staging.take() {
            self.pool.give(staging);
        }
        if !self.done {
            if let Err(e) = fs::remove_file(&self.temp_path) {
                tracing::warn!(path = %self.temp_path.display(), error = %e,
                    "could not remove an abandoned upload; it is removed at the next start");
            }
        }
    }
}

/// A heap buffer aligned for `O_DIRECT`, of [`DIRECT_BUF`] bytes.
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: plain owned heap memory.
unsafe impl Send for AlignedBuf {}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

impl AlignedBuf {
    fn layout() -> Layout {
        Layout::from_size_align(DIRECT_BUF, DIRECT_ALIGN).expect("valid layout")
    }

    fn new() -> Self {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc(Self::layout()) };
        let ptr = std::ptr::NonNull::new(ptr)
            .unwrap_or_else(|| alloc::handle_alloc_error(Self::layout()));
        AlignedBuf { ptr, len: 0 }
    }

    /// Copies as much of `data` as fits; returns the rest.
    fn fill_from<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        let n = data.len().min(DIRECT_BUF - self.len);
        // SAFETY: `len + n <= DIRECT_BUF`, and `data` cannot overlap our allocation.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(self.len), n) };
        self.len += n;
        &data[n..]
    }

    fn is_full(&self) -> bool {
        self.len == DIRECT_BUF
    }

    fn filled(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written by `fill_from`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn cleared(mut self) -> Self {
        self.len = 0;
        self
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with the same layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout()) };
    }
}

fn cstring(path: &Path) -> Result<CString, FsError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        FsError::new(
            "open",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"),
        )
    })
}

fn access_rw(path: &Path) -> Result<(), FsError> {
    let c = cstring(path)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::W_OK | libc::X_OK) } != 0 {
        return Err(FsError::new("access", path, io::Error::last_os_error()));
    }
    Ok(())
}

/// fsync of a directory, so that entries created, renamed or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> Result<(), FsError> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| FsError::new("open", dir, e))?;
    f.sync_all().map_err(|e| FsError::new("fsync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_hash_matches_arsenal_vectors() {
        // Test vectors from the protocol spec §6.3, computed with Arsenal's stringHash.
        let cases = [
            ("10ce68ffa0d239716f3642d960ce6192d8cdb563", 1474573068, 2222),
            ("0000000000000000000000000000000000000000", 3054047493, 632),
            ("ffffffffffffffffffffffffffffffffffffffff", 81347589, 1230),
            ("a", 177604, 2054),
        ];
        for (key, hash, dir) in cases {
            assert_eq!(string_hash(key), hash, "hash of {key}");
            assert_eq!(folder_of(key), dir, "directory of {key}");
        }
    }

    #[test]
    fn string_hash_uses_utf16_units() {
        // One astral character is two UTF-16 units; JS charCodeAt sees the surrogates.
        let units = [0xd83du32, 0xde00];
        let expected = units
            .iter()
            .rev()
            .fold(5381u32, |h, &c| h.wrapping_mul(33) ^ c);
        assert_eq!(string_hash("\u{1F600}"), expected);
    }

    #[test]
    fn key_parse_accepts_only_40_lowercase_hex() {
        assert!(Key::parse("10ce68ffa0d239716f3642d960ce6192d8cdb563").is_some());
        for bad in [
            "",
            "10ce68ffa0d239716f3642d960ce6192d8cdb56",
            "10ce68ffa0d239716f3642d960ce6192d8cdb5633",
            "10CE68FFA0D239716F3642D960CE6192D8CDB563",
            "../../../../../../../../../../etc/passwd",
            "10ce68ffa0d239716f3642d960ce6192d8cdb5/3",
            "10ce68ffa0d239716f3642d960ce6192d8cdb5\x003",
            "10ce68ffa0d239716f3642d960ce6192d8cdb5..",
            "g0ce68ffa0d239716f3642d960ce6192d8cdb563",
        ] {
            assert!(Key::parse(bad).is_none(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn random_keys_are_valid_and_distinct() {
        let a = Key::random().unwrap();
        let b = Key::random().unwrap();
        assert!(Key::parse(a.as_str()).is_some());
        assert_ne!(a, b);
    }

    #[test]
    fn upload_commit_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = DataStore::open(dir.path()).unwrap();
        for i in 0..FOLDER_HASH {
            assert!(dir.path().join(i.to_string()).is_dir());
        }
        let mut up = store.begin_upload().unwrap();
        up.write(&[
            Bytes::from_static(b"hello "),
            Bytes::new(),
            Bytes::from_static(b"world"),
        ])
        .unwrap();
        let key = up.commit().unwrap();
        let path = store.object_path(&key);
        assert_eq!(
            path,
            dir.path()
                .join(folder_of(key.as_str()).to_string())
                .join(key.as_str())
        );
        assert_eq!(fs::read(&path).unwrap(), b"hello world");
        let (_, size) = store.open_object(&key).unwrap();
        assert_eq!(size, 11);
        assert_eq!(fs::read_dir(store.temp_dir()).unwrap().count(), 0);
        store.delete(&key).unwrap();
        assert!(matches!(
            store.open_object(&key),
            Err(LookupError::NotFound)
        ));
        assert!(matches!(store.delete(&key), Err(LookupError::NotFound)));
    }

    #[test]
    fn uploads_of_every_alignment_round_trip() {
        // Sizes around the O_DIRECT block and staging-buffer boundaries, fed in uneven pieces.
        let dir = tempfile::tempdir().unwrap();
        for direct in [true, false] {
            alignment_round_trips(DataStore::open(dir.path()).unwrap().with_direct_io(direct));
        }
    }

    fn alignment_round_trips(store: DataStore) {
        let sizes = [
            0,
            1,
            DIRECT_ALIGN - 1,
            DIRECT_ALIGN,
            DIRECT_ALIGN + 1,
            DIRECT_BUF - 1,
            DIRECT_BUF,
            DIRECT_BUF + 1,
            3 * DIRECT_BUF + 5000,
        ];
        for size in sizes {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4096) as u8).collect();
            let mut up = store.begin_upload().unwrap();
            let pieces: Vec<Bytes> = data.chunks(65_537).map(Bytes::copy_from_slice).collect();
            for group in pieces.chunks(5) {
                up.write(group).unwrap();
            }
            let key = up.commit().unwrap();
            let stored = fs::read(store.object_path(&key)).unwrap();
            assert!(stored == data, "size {size} differs");
        }
    }

    #[test]
    fn abandoned_upload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = DataStore::open(dir.path()).unwrap();
        let mut up = store.begin_upload().unwrap();
        up.write(&[Bytes::from_static(b"partial")]).unwrap();
        assert_eq!(fs::read_dir(store.temp_dir()).unwrap().count(), 1);
        drop(up);
        assert_eq!(fs::read_dir(store.temp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn open_removes_leftover_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = DataStore::open(dir.path()).unwrap();
        let up = store.begin_upload().unwrap();
        std::mem::forget(up); // as if the process died mid-upload
        assert_eq!(fs::read_dir(store.temp_dir()).unwrap().count(), 1);
        let store = DataStore::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(store.temp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn disk_usage_is_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let store = DataStore::open(dir.path()).unwrap();
        let du = store.disk_usage().unwrap();
        assert!(du.total > 0 && du.free <= du.total && du.available <= du.free);
    }
}
