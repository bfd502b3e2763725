//! Why a model could not be fetched.

use std::path::PathBuf;

use crate::messages::file_name;
use crate::model::spool::SpoolError;

/// Why a model could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid model URI {0:?}: expected s3://bucket/key, https://host/path or a file path")]
    InvalidUri(String),
    #[error("cannot read model file {}: {error}", file_name(path))]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot download model from {url}: {message}")]
    Http { url: String, message: String },
    #[error("cannot fetch model from {uri}: {message}")]
    S3 { uri: String, message: String },
    #[error("model from {uri} has SHA-256 {actual}, expected {expected}: refusing to use it")]
    Sha256Mismatch {
        uri: String,
        expected: String,
        actual: String,
    },
    #[error("MODEL_SHA256 must be 64 hex digits (got {0:?})")]
    BadSha256(String),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot write the model cache {}: {error}", path.display())]
    Cache {
        path: PathBuf,
        error: std::io::Error,
    },
}
