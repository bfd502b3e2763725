//! Corrections: a picture and the label a person says is right, stored
//! where `catdog finetune --data` reads a class folder, as
//! `<destination>/<label>/<sha256>.<ext>`, with a JSON [`Sidecar`] beside
//! it (`<sha256>.json`: what the model answered, which model, when). The
//! name is the picture's digest, so the same picture corrected to the same
//! label twice is stored once; both writes only create, so the first
//! correction's sidecar is the one kept.
//!
//! - [`destination`]: `CATDOG_FEEDBACK` (`s3://bucket/prefix/` or a folder);
//! - [`sidecar`]: the correction's names and its JSON record;
//! - [`folder`] and [`bucket`]: the two places a correction is written.

pub(crate) mod bucket;
pub(crate) mod destination;
pub(crate) mod folder;
pub(crate) mod sidecar;

use bytes::Bytes;
use futures_util::future::BoxFuture;

pub use destination::{Destination, Overlap};
pub(crate) use sidecar::Correction;

use crate::error::ApiError;

/// Where a correction went: its key under the destination
/// (`<label>/<sha256>.<ext>`) and whether it is new (`false`: the same
/// picture had already been given that label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) key: String,
    pub(crate) new: bool,
}

/// Writes corrections: a folder or S3.
pub(crate) trait FeedbackSink: Send + Sync {
    /// Stores the picture and its sidecar, creating only.
    fn store(&self, correction: Correction) -> BoxFuture<'_, Result<Stored, ApiError>>;
}

/// The sink a destination names.
pub(crate) fn sink(
    destination: &Destination,
    fetch: &crate::model::source::FetchOptions,
) -> std::sync::Arc<dyn FeedbackSink> {
    match destination {
        Destination::Folder(dir) => std::sync::Arc::new(folder::FolderSink::new(dir.clone())),
        Destination::S3 { bucket, prefix } => std::sync::Arc::new(bucket::BucketSink::new(
            bucket.clone(),
            prefix.clone(),
            fetch.clone(),
        )),
    }
}

/// The two files of a correction, as written: the picture, then its sidecar.
pub(crate) fn files(correction: &Correction) -> [(String, Bytes, &'static str); 2] {
    [
        (
            correction.picture_key(),
            correction.picture.clone(),
            correction.content_type(),
        ),
        (
            correction.sidecar_key(),
            Bytes::from(correction.sidecar_json()),
            "application/json",
        ),
    ]
}
