//! A model as a file: a local path as it is, a remote one (`https://`,
//! `s3://`) written into the download folder and verified before anything
//! is built from it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::digest::{normalize_sha256, verify_sha256};
use super::error::SourceError;
use super::options::FetchOptions;
use super::uri::ModelUri;
use super::{http, s3};
use crate::messages::file_name;
use crate::model::spool::{SpoolError, Spooled, SpooledFile};

/// A fetched model and where it came from.
pub struct FetchedModel {
    /// The model file, which ONNX Runtime reads (and maps) itself.
    pub path: PathBuf,
    /// A downloaded model's file, removed when the model is dropped (ONNX
    /// Runtime's own mapping of the weights outlives the name).
    pub download: Option<SpooledFile>,
    /// Size of the model in bytes.
    pub size: u64,
    /// Where it came from, as shown to users (no secrets, no folders).
    pub(crate) uri: String,
    pub(crate) fetch_ms: f64,
}

impl FetchedModel {
    /// The whole model as bytes, mapped.
    pub(crate) fn view(&self) -> std::io::Result<memmap2::Mmap> {
        map_file(&self.path)
    }

    /// Whether it is held in memory (a memfd, named by its descriptor).
    pub(crate) fn in_memory(&self) -> bool {
        self.path.starts_with(crate::model::spool::MEMORY_PATHS)
    }

    /// The file name weights are found under by external-data references
    /// (the model file's own name, links resolved).
    pub(crate) fn location(&self) -> String {
        std::fs::canonicalize(&self.path)
            .ok()
            .and_then(|r| r.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| file_name(&self.path))
    }
}

/// Maps a model file read-only.
pub fn map_file(path: &Path) -> std::io::Result<memmap2::Mmap> {
    let file = std::fs::File::open(path)?;
    // SAFETY: read-only map. Replacing the file by renaming is safe;
    // truncating it in place while it is used is not (as for any mapped
    // file, including ONNX Runtime's own external data).
    unsafe { memmap2::Mmap::map(&file) }
}

/// Fetches a remote model (`https://`, `s3://`) into a file in
/// `opts.download_dir`, hashing it on the way, and verifies
/// `expected_sha256` if given before returning it with its digest.
pub async fn fetch_remote(
    uri: &ModelUri,
    expected_sha256: Option<&str>,
    opts: &FetchOptions,
) -> Result<(FetchedModel, String), SourceError> {
    let expected = expected_sha256.map(normalize_sha256).transpose()?;
    let started = Instant::now();
    let spooled = match uri {
        ModelUri::File(path) => {
            return Err(SourceError::File {
                path: path.clone(),
                error: std::io::Error::other("a local file is not downloaded"),
            })
        }
        ModelUri::Http(url) => http::fetch(url, &uri.to_string(), opts.spool_at()).await?,
        ModelUri::S3 { bucket, key } => s3::fetch(bucket, key, opts).await?,
    };
    let fetch_ms = started.elapsed().as_secs_f64() * 1e3;
    let Spooled {
        file,
        sha256,
        digest_wait_ms,
    } = spooled;
    let size = std::fs::metadata(file.path())
        .map_err(|e| SourceError::Spool(SpoolError::Write(e)))?
        .len();
    tracing::info!(
        model = %uri, bytes = size, fetch_ms, digest_wait_ms,
        "model downloaded (SHA-256 computed on the way)"
    );
    // Refused before anything is built from it; the file goes with `file`.
    verify_sha256(&uri.to_string(), expected.as_deref(), &sha256)?;
    let model = FetchedModel {
        path: file.path().to_path_buf(),
        download: Some(file),
        size,
        uri: uri.to_string(),
        fetch_ms,
    };
    Ok((model, sha256))
}

/// A local model file, not read: ONNX Runtime reads it.
pub fn local_file(path: &Path) -> Result<FetchedModel, SourceError> {
    let size = std::fs::metadata(path)
        .map_err(|error| SourceError::File {
            path: path.to_path_buf(),
            error,
        })?
        .len();
    Ok(FetchedModel {
        path: path.to_path_buf(),
        download: None,
        size,
        uri: ModelUri::File(path.to_path_buf()).to_string(),
        fetch_ms: 0.0,
    })
}

#[cfg(test)]
// Unit tests make scratch folders in the system's temporary folder; the
// rule that only settings reads the environment is for the running code.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_by_their_file_name_only() {
        let dir = std::env::temp_dir().join(format!("catdog-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.bin");
        std::fs::write(&path, b"model").unwrap();
        let model = local_file(&path).unwrap();
        assert_eq!((model.uri.as_str(), model.size), ("m.bin", 5));
        assert_eq!(&*model.view().unwrap(), b"model");
        let missing = local_file(&dir.join("gone.onnx"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            missing.starts_with("cannot read model file gone.onnx: "),
            "{missing}"
        );
        assert!(!missing.contains(dir.to_str().unwrap()), "{missing}");
        assert_eq!(missing.matches("os error 2").count(), 1, "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
