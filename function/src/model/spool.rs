//! A remote model written straight into a file as its bytes arrive (each S3
//! range at its own offset), so that it then takes the local file's
//! zero-copy load (ONNX Runtime maps the weights) instead of being built from
//! a buffer ONNX Runtime copies. Its SHA-256 is computed while the bytes
//! arrive, by a thread that follows the written prefix through the page
//! cache, so that verification costs little more than the download itself.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::model::source::sha256_of_blocks;

/// A file being filled with a model's bytes, in parts written in any order.
pub(crate) struct Spool {
    file: File,
    path: SpooledFile,
    shared: Arc<Shared>,
    hasher: Option<JoinHandle<Option<String>>>,
}

/// What writers and the hashing thread share.
struct Shared {
    total: u64,
    part: u64,
    /// Bytes written so far at the start of each part (written in order within a part).
    written: Vec<AtomicU64>,
    stop: AtomicBool,
}

/// The spooled file's path; the file is removed when this is dropped (ONNX
/// Runtime keeps its own mapping of the weights, which outlives the name).
/// It holds an exclusive lock on the file while alive, so that a file left
/// by a process that died mid-download (a Lambda init killed at its time
/// limit keeps /tmp for the next try) is known as stale and removed.
#[derive(Debug)]
pub struct SpooledFile(PathBuf, Option<File>);

impl SpooledFile {
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl SpooledFile {
    fn in_memory(path: PathBuf, held: File) -> Self {
        Self(path, Some(held))
    }

    /// Whether it is a name to remove (not a memfd's, not handed over).
    fn removable(&self) -> bool {
        !self.0.as_os_str().is_empty() && !self.0.starts_with(MEMORY_PATHS)
    }
}

impl Drop for SpooledFile {
    fn drop(&mut self) {
        // Empty once handed over by `Spool::finish`.
        if self.removable() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Name prefix and suffix of download files.
const PREFIX: &str = "catdog-model-";
const SUFFIX: &str = ".onnx";

/// Takes `file`'s exclusive lock without waiting; false if someone holds it.
fn try_lock(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open descriptor.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Removes download files in `dir` that no live spool holds (left by a
/// process that died); returns the bytes freed.
fn sweep_stale(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut freed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(PREFIX) && name.ends_with(SUFFIX)) {
            continue;
        }
        let path = entry.path();
        // A lock is per open file: our own live spools refuse it too.
        if let Ok(f) = File::open(&path) {
            if try_lock(&f) {
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                if std::fs::remove_file(&path).is_ok() {
                    freed += size;
                }
            }
        }
    }
    if freed > 0 {
        tracing::info!(bytes = freed, dir = %dir.display(), "removed model downloads left by a process that stopped");
    }
    freed
}

/// A finished spool: the file, its digest, and how long the digest kept the
/// caller waiting after the last byte arrived.
pub(crate) struct Spooled {
    pub(crate) file: SpooledFile,
    pub(crate) sha256: String,
    pub(crate) digest_wait_ms: f64,
}

/// Why a model could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "cannot write the model into {dir}: {error} — it needs {needed} of free space there \
         (on Lambda raise EphemeralStorage in template.yaml; elsewhere set CATDOG_DOWNLOAD_DIR)"
    )]
    Create {
        dir: String,
        needed: String,
        error: std::io::Error,
    },
    #[error("cannot write the downloaded model: {0}")]
    Write(std::io::Error),
    #[error("the downloaded model is incomplete (part {0})")]
    Incomplete(usize),
}

impl Spool {
    /// A new file of `total` bytes in `dir`, filled in parts of `part` bytes
    /// (the last may be shorter). The space is reserved up front, so a full
    /// disk is found before anything is downloaded.
    pub(crate) fn create(at: SpoolAt<'_>, total: u64, part: u64) -> Result<Spool, SpoolError> {
        let needed = format!("{:.0} MB", total as f64 / 1e6);
        let create_err = |error| SpoolError::Create {
            dir: at.to_string(),
            needed: needed.clone(),
            error,
        };
        let (file, path) = new_file(at, &needed)?;
        reserve(&file, total).map_err(create_err)?;
        let part = part.max(1);
        let parts = total.div_ceil(part).max(1) as usize;
        let shared = Arc::new(Shared {
            total,
            part,
            written: (0..parts).map(|_| AtomicU64::new(0)).collect(),
            stop: AtomicBool::new(false),
        });
        let reader = file.try_clone().map_err(create_err)?;
        let hasher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("catdog-digest".into())
                .spawn(move || hash_as_written(&reader, &shared))
                .map_err(create_err)?
        };
        Ok(Spool {
            file,
            path,
            shared,
            hasher: Some(hasher),
        })
    }

    /// How many parts there are.
    pub(crate) fn parts(&self) -> usize {
        self.shared.written.len()
    }

    /// Part `i`'s offset and length.
    #[cfg(test)]
    pub(crate) fn part_range(&self, i: usize) -> (u64, u64) {
        self.shared.range(i)
    }

    /// The writer of part `i`: bytes go to the file at their offset, in order.
    pub(crate) fn writer(&self, i: usize) -> PartWriter<'_> {
        let (start, len) = self.shared.range(i);
        PartWriter {
            spool: self,
            part: i,
            start,
            len,
        }
    }

    /// Waits for the digest of the whole (every part written) and hands the file over.
    pub(crate) fn finish(mut self) -> Result<Spooled, SpoolError> {
        for i in 0..self.parts() {
            if self.shared.written[i].load(Ordering::Acquire) != self.shared.range(i).1 {
                return Err(SpoolError::Incomplete(i));
            }
        }
        let waited = Instant::now();
        let hasher = self.hasher.take().expect("finished once");
        hasher.thread().unpark();
        let sha256 =
            hasher.join().ok().flatten().ok_or_else(|| {
                SpoolError::Write(std::io::Error::other("the digest thread failed"))
            })?;
        let digest_wait_ms = waited.elapsed().as_secs_f64() * 1e3;
        // `self` is dropped below; take the path (and its lock) out so the file stays.
        let file = SpooledFile(std::mem::take(&mut self.path.0), self.path.1.take());
        Ok(Spooled {
            file,
            sha256,
            digest_wait_ms,
        })
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // An abandoned spool (a failed download): stop the digest thread; the
        // file goes with `self.path` (unless `finish` took it).
        self.shared.stop.store(true, Ordering::Release);
        if let Some(h) = self.hasher.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Shared {
    fn range(&self, i: usize) -> (u64, u64) {
        let start = i as u64 * self.part;
        (start, self.part.min(self.total.saturating_sub(start)))
    }
}

/// Writes one part's bytes in order (a resumed range continues where it stopped).
pub(crate) struct PartWriter<'a> {
    spool: &'a Spool,
    part: usize,
    start: u64,
    len: u64,
}

impl PartWriter<'_> {
    /// This part's offset in the file.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// Bytes of this part written so far.
    pub(crate) fn written(&self) -> u64 {
        self.spool.shared.written[self.part].load(Ordering::Acquire)
    }

    /// This part's length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `chunk`; refuses more bytes than the part holds.
    pub(crate) fn write(&self, chunk: &[u8]) -> Result<(), SpoolError> {
        let done = self.written();
        if done + chunk.len() as u64 > self.len {
            return Err(SpoolError::Write(std::io::Error::other(format!(
                "the server sent more than the {} bytes asked for",
                self.len
            ))));
        }
        // A write into the page cache: microseconds per chunk, fine on an async worker.
        self.spool
            .file
            .write_all_at(chunk, self.start + done)
            .map_err(SpoolError::Write)?;
        self.spool.shared.written[self.part].store(done + chunk.len() as u64, Ordering::Release);
        if let Some(h) = &self.spool.hasher {
            h.thread().unpark();
        }
        Ok(())
    }
}

/// Hashes the file in order as its parts fill, reading back through the page
/// cache (no copy of the model is held in memory). `None` if stopped or failed.
fn hash_as_written(file: &File, shared: &Shared) -> Option<String> {
    let (mut part, mut hashed) = (0usize, 0u64);
    sha256_of_blocks(4 << 20, |buf| loop {
        if part == shared.written.len() {
            return Ok(0); // every part hashed
        }
        let (start, len) = shared.range(part);
        if hashed == len {
            (part, hashed) = (part + 1, 0);
            continue;
        }
        if shared.stop.load(Ordering::Acquire) {
            return Err(std::io::Error::other("stopped"));
        }
        let ready = shared.written[part].load(Ordering::Acquire);
        if ready == hashed {
            // Woken by each write; the timeout only bounds a missed wake-up.
            std::thread::park_timeout(std::time::Duration::from_millis(50));
            continue;
        }
        let n = (ready - hashed).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], start + hashed)?;
        hashed += n as u64;
        return Ok(n);
    })
    .ok()
}

/// A new, empty download file in `dir` (for a stream of unknown length),
/// removed when its guard is dropped.
pub(crate) fn create_file(at: SpoolAt<'_>) -> Result<(File, SpooledFile), SpoolError> {
    new_file(at, "the model's size")
}

/// Where a model held in memory is named: its descriptor's path.
pub(crate) const MEMORY_PATHS: &str = "/proc/self/fd";

/// Where a download is written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SpoolAt<'a> {
    /// A file in this folder (`/tmp` on Lambda).
    Dir(&'a Path),
    /// Anonymous memory (a memfd, which ONNX Runtime opens by its
    /// `/proc/self/fd` path): for SnapStart, whose /tmp holds 512 MB at
    /// most, and whose snapshot holds memory anyway.
    Memory,
}

impl std::fmt::Display for SpoolAt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoolAt::Dir(dir) => write!(f, "{}", dir.display()),
            SpoolAt::Memory => f.write_str("memory"),
        }
    }
}

/// A new download file (in a folder, created if needed, after removing
/// stale ones; or in memory).
fn new_file(at: SpoolAt<'_>, needed: &str) -> Result<(File, SpooledFile), SpoolError> {
    let create_err = |error| SpoolError::Create {
        dir: at.to_string(),
        needed: needed.to_string(),
        error,
    };
    match at {
        SpoolAt::Dir(dir) => {
            std::fs::create_dir_all(dir).map_err(create_err)?;
            sweep_stale(dir);
            create_unique(dir).map_err(create_err)
        }
        SpoolAt::Memory => create_in_memory().map_err(create_err),
    }
}

/// A memfd and its `/proc/self/fd` path, held open by the guard (which
/// has nothing to remove: the memory goes with the last descriptor or map).
fn create_in_memory() -> std::io::Result<(File, SpooledFile)> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: a plain syscall; the descriptor it returns is owned by the File.
    let fd = unsafe { libc::memfd_create(c"catdog-model".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    let held = file.try_clone()?;
    let path = Path::new(MEMORY_PATHS).join(held.as_raw_fd().to_string());
    Ok((file, SpooledFile::in_memory(path, held)))
}

/// A new file in `dir` that no one else has (O_EXCL), readable and writable,
/// with its guard holding the file's lock.
fn create_unique(dir: &Path) -> std::io::Result<(File, SpooledFile)> {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = dir.join(format!(
            "{PREFIX}{}-{}-{nanos:x}{SUFFIX}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => {
                // A new file: nobody else can hold its lock yet. The guard
                // keeps its own descriptor, so the lock lives as long as it.
                let held = f.try_clone()?;
                try_lock(&held);
                return Ok((f, SpooledFile(path, Some(held))));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reserves `len` bytes of disk for the file, so that a full disk fails now.
fn reserve(file: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Ok(());
    }
    // SAFETY: a plain syscall on an open descriptor we own.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    match rc {
        0 => Ok(()),
        // File systems without fallocate: size the file; a full disk then shows at write.
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(len),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
// Unit tests make scratch folders in the system's temporary folder; the
// rule that only settings reads the environment is for the running code.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    #[test]
    fn parts_written_in_any_order_give_the_file_and_its_digest() {
        let dir = std::env::temp_dir().join(format!("catdog-spool-test-{}", std::process::id()));
        let bytes = data(10 * 1024 + 7);
        let spool = Spool::create(SpoolAt::Dir(&dir), bytes.len() as u64, 1024).unwrap();
        assert_eq!(spool.parts(), 11);
        // Last part first, each in two writes: the digest still follows file order.
        for i in (0..spool.parts()).rev() {
            let (start, len) = spool.part_range(i);
            let part = &bytes[start as usize..(start + len) as usize];
            let w = spool.writer(i);
            let (a, b) = part.split_at(part.len() / 3);
            w.write(a).unwrap();
            w.write(b).unwrap();
            assert!(w.write(&[0]).is_err(), "no byte beyond the part");
        }
        let done = spool.finish().unwrap();
        assert_eq!(std::fs::read(done.file.path()).unwrap(), bytes);
        assert_eq!(done.sha256, crate::model::source::sha256_hex(&bytes));
        let path = done.file.path().to_path_buf();
        drop(done);
        assert!(!path.exists(), "the file goes with its guard");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unfinished_or_abandoned_spool_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("catdog-spool-test2-{}", std::process::id()));
        let spool = Spool::create(SpoolAt::Dir(&dir), 3000, 1000).unwrap();
        spool.writer(0).write(&[1; 1000]).unwrap();
        assert!(matches!(spool.finish(), Err(SpoolError::Incomplete(1))));
        let spool = Spool::create(SpoolAt::Dir(&dir), 3000, 1000).unwrap();
        spool.writer(2).write(&[1; 10]).unwrap();
        drop(spool);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "no file left behind"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn downloads_left_by_a_stopped_process_are_removed_and_live_ones_kept() {
        let dir = std::env::temp_dir().join(format!("catdog-spool-test3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // As a killed process leaves it: nobody holds its lock.
        let stale = dir.join("catdog-model-99999-0-0.onnx");
        std::fs::write(&stale, [0u8; 4096]).unwrap();
        let other = dir.join("notes.txt");
        std::fs::write(&other, "kept").unwrap();
        let live = Spool::create(SpoolAt::Dir(&dir), 10, 10).unwrap();
        assert!(!stale.exists(), "the stale download is removed");
        assert!(other.exists(), "other files are not touched");
        live.writer(0).write(&[7; 10]).unwrap();
        let done = live.finish().unwrap();
        // A second download while the first is still in use keeps the first.
        let (_file, second) = create_file(SpoolAt::Dir(&dir)).unwrap();
        assert!(done.file.path().exists(), "a live download is kept");
        drop(done);
        drop(second);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "only notes.txt is left"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_disk_too_small_is_refused_before_downloading_with_what_to_change() {
        // /dev/full-like: a folder that cannot be created.
        let e = Spool::create(SpoolAt::Dir(Path::new("/proc/catdog-no")), 1 << 20, 1024)
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("EphemeralStorage") && msg.contains("CATDOG_DOWNLOAD_DIR"),
            "{msg}"
        );
    }
}
