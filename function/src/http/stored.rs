//! Pictures in S3, as the HTTP API reaches them: `POST /uploads` (a
//! presigned PUT past the invoke limit), `GET /uploads/{id}` (its answer)
//! and `/predict {"s3": …}` (a picture by reference, from allowed buckets).
//! The S3 side lives in `objects`, which builds on this router's pipeline,
//! so the router reaches it through this trait: the imports go one way.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::http::types::{UploadRequest, UploadTicket};

/// What the router asks of S3 (`objects::gateway` answers).
pub trait StoredPictures: Send + Sync {
    /// A presigned PUT into the uploads bucket (`uploads_off` without one).
    fn upload(&self, request: UploadRequest) -> BoxFuture<'_, Result<UploadTicket, ApiError>>;

    /// An upload's record (written by its S3 event, or now when the event
    /// has not come yet: the same worker, so the event then finds it
    /// current), as JSON, and whether it was there already.
    fn upload_result(
        &self,
        state: AppState,
        id: String,
    ) -> BoxFuture<'_, Result<(String, bool), ApiError>>;

    /// A picture's bytes by reference (`s3://bucket/key`), if its bucket is
    /// on the allow-list; `s3_not_allowed` otherwise.
    fn fetch(&self, uri: String, max_bytes: usize) -> BoxFuture<'_, Result<Bytes, ApiError>>;
}

/// The hosts' handle on it.
pub type Stored = Arc<dyn StoredPictures>;
