//! Corrections in a local folder (`catdog serve`, the notebook).

use std::io::Write;
use std::path::PathBuf;

use futures_util::future::BoxFuture;

use super::{files, Correction, FeedbackSink, Stored};
use crate::error::ApiError;

#[derive(Clone)]
pub(crate) struct FolderSink {
    root: PathBuf,
}

impl FolderSink {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Creates `key` with `bytes`; `false` when it was already there.
    fn create(&self, key: &str, bytes: &[u8]) -> std::io::Result<bool> {
        let path = self.root.join(key);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Written beside, then linked into place: a reader (or a crash)
        // never sees half a picture, and the link only creates.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let partial = path.with_extension(format!("partial-{}-{n}", std::process::id()));
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        let linked = std::fs::hard_link(&partial, &path);
        let _ = std::fs::remove_file(&partial);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl FeedbackSink for FolderSink {
    fn store(&self, correction: Correction) -> BoxFuture<'_, Result<Stored, ApiError>> {
        let sink = self.clone();
        // Files, synced: off the async workers.
        let written = tokio::task::spawn_blocking(move || {
            let [(key, picture, _), (sidecar_key, sidecar, _)] = files(&correction);
            let new = sink.create(&key, &picture)?;
            // Also when the picture was there: a sidecar lost to a crash
            // between the two writes is written by the next correction.
            sink.create(&sidecar_key, &sidecar)?;
            Ok::<_, std::io::Error>(Stored { key, new })
        });
        Box::pin(async move {
            written
                .await
                .map_err(|e| ApiError::internal(format!("the correction's writer failed: {e}")))?
                .map_err(|e| {
                    tracing::error!(error = %e, "storing a correction in the feedback folder");
                    ApiError::internal("the correction could not be stored (see the server's log)")
                })
        })
    }
}
