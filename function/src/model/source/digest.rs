//! SHA-256 digests of models: the form a user gives one in, the check that
//! refuses a model, and the one way bytes are hashed as they pass, whether
//! written (a download) or read back (a file, or a download's file
//! following its writers).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::error::SourceError;

/// Refuses a model whose digest is not the `expected` one (already normalised).
pub(crate) fn verify_sha256(
    uri: &str,
    expected: Option<&str>,
    actual: &str,
) -> Result<(), SourceError> {
    match expected {
        Some(expected) if expected != actual => Err(SourceError::Sha256Mismatch {
            uri: uri.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks a user-given digest's form, lowercasing it.
pub(crate) fn normalize_sha256(s: &str) -> Result<String, SourceError> {
    let t = s.trim().to_ascii_lowercase();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t)
    } else {
        Err(SourceError::BadSha256(s.into()))
    }
}

/// A writer that hashes what passes through it: every path that hashes a
/// model's bytes goes through this one type.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The inner writer, flushed, and the lowercase hex digest of all that was written.
    pub(crate) fn finish(mut self) -> std::io::Result<(W, String)> {
        self.inner.flush()?;
        Ok((self.inner, hex::encode(self.hasher.finalize())))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Hash only what the inner writer took, so the digest is of the file.
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 (hex) of the bytes `fill` reads into the buffer it is given, a
/// block at a time, until it reads none: a file read back in order.
pub(crate) fn sha256_of_blocks(
    block: usize,
    mut fill: impl FnMut(&mut [u8]) -> std::io::Result<usize>,
) -> std::io::Result<String> {
    let mut buf = vec![0u8; block];
    let mut out = HashingWriter::new(std::io::sink());
    loop {
        let n = fill(&mut buf)?;
        if n == 0 {
            return Ok(out.finish()?.1);
        }
        out.write_all(&buf[..n])?;
    }
}

/// SHA-256 (hex) of a local file, streamed; run it while the session builds.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<String> {
    hash_file_when(path, || true, Duration::ZERO)
}

/// SHA-256 (hex) of a local file in 1 MiB steps (under a millisecond each),
/// each taken only when `may_run()` says so, checked every `pause`.
pub(crate) fn hash_file_when(
    path: &Path,
    may_run: impl Fn() -> bool,
    pause: Duration,
) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    sha256_of_blocks(1 << 20, |buf| {
        while !may_run() {
            std::thread::sleep(pause);
        }
        f.read(buf)
    })
}

#[cfg(test)]
// Unit tests make scratch folders in the system's temporary folder; the
// rule that only settings reads the environment is for the running code.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_checked_for_form() {
        assert!(normalize_sha256(&"A".repeat(64)).is_ok());
        assert!(normalize_sha256("abc").is_err());
    }

    #[test]
    fn a_digest_that_differs_is_refused() {
        assert!(verify_sha256("m", Some(&sha256_hex(b"model")), &sha256_hex(b"model")).is_ok());
        assert!(verify_sha256("m", None, &sha256_hex(b"model")).is_ok());
        assert!(matches!(
            verify_sha256("m", Some(&"0".repeat(64)), &sha256_hex(b"model")),
            Err(SourceError::Sha256Mismatch { .. })
        ));
    }

    #[test]
    fn written_read_and_whole_digests_agree() {
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = HashingWriter::new(Vec::new());
        for chunk in bytes.chunks(70_001) {
            w.write_all(chunk).unwrap();
        }
        let (written, sha) = w.finish().unwrap();
        assert_eq!(
            (written == bytes, sha.as_str()),
            (true, sha256_hex(&bytes).as_str())
        );

        let path = std::env::temp_dir().join(format!("catdog-digest-{}", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(hash_file(&path).unwrap(), sha256_hex(&bytes));
        std::fs::remove_file(&path).unwrap();
    }
}
