//! How remote models are fetched: S3's parallelism and timeouts, where
//! downloads are written, and the retry policy.

use std::path::PathBuf;

use crate::aws::S3Options;

/// Default parallel ranged GETs in flight (`CATDOG_S3_CONCURRENCY`; 1 = one
/// plain GET): AWS's guidance is a connection per 85–90 MB/s, so 16 carry a
/// 528 MB model in well under a second where the network allows.
pub const S3_CONCURRENCY: usize = 16;

/// How remote models are fetched. The settings fill it; nothing here reads
/// the process environment.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Parallel ranged GETs in flight (1 = one plain GET).
    pub s3_concurrency: usize,
    /// Where remote models are written (`/tmp` on Lambda).
    pub download_dir: PathBuf,
    /// Hold remote models in memory instead (SnapStart, whose /tmp holds
    /// 512 MB at most).
    pub in_memory: bool,
    /// How S3 is reached.
    pub s3: S3Options,
}

impl FetchOptions {
    /// Where a remote model is written.
    pub(crate) fn spool_at(&self) -> crate::model::spool::SpoolAt<'_> {
        if self.in_memory {
            crate::model::spool::SpoolAt::Memory
        } else {
            crate::model::spool::SpoolAt::Dir(&self.download_dir)
        }
    }

    /// The defaults, with downloads written into `download_dir`.
    pub fn new(download_dir: PathBuf) -> Self {
        Self {
            s3_concurrency: S3_CONCURRENCY,
            download_dir,
            in_memory: false,
            s3: S3Options::default(),
        }
    }
}
