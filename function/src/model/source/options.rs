//! How remote models are fetched: S3's parallelism and timeouts, where
//! downloads are written, and the retry policy.

use std::path::PathBuf;
use std::time::Duration;

use crate::model::retry::RetryPolicy;

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
    /// How long to wait for bytes that do not come.
    pub s3_read_timeout: Duration,
    /// A custom endpoint (MinIO, moto, …), addressed path-style.
    pub s3_endpoint: Option<String>,
    /// Where remote models are written (`/tmp` on Lambda).
    pub download_dir: PathBuf,
    /// Resumes of an S3 range cut mid-body, and an upload's retries (see
    /// `model/retry.rs` for who retries what).
    pub retry: RetryPolicy,
}

impl FetchOptions {
    /// The defaults, with downloads written into `download_dir`.
    pub fn new(download_dir: PathBuf) -> Self {
        Self {
            s3_concurrency: S3_CONCURRENCY,
            s3_read_timeout: Duration::from_secs(30),
            s3_endpoint: None,
            download_dir,
            retry: RetryPolicy::default(),
        }
    }
}
