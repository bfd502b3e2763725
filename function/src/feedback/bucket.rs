//! Corrections in S3 (`CATDOG_FEEDBACK=s3://bucket/prefix/`): two PUTs
//! that only create (`If-None-Match: *`), so the role needs `s3:PutObject`
//! under the prefix and nothing else.

use futures_util::future::BoxFuture;

use super::{files, Correction, FeedbackSink, Stored};
use crate::error::ApiError;
use crate::model::source::FetchOptions;
use crate::objects::store::ObjectStore;
use crate::objects::ObjectRef;

pub(crate) struct BucketSink {
    bucket: String,
    prefix: String,
    /// Made at the first correction.
    store: ObjectStore,
}

impl BucketSink {
    pub(crate) fn new(bucket: String, prefix: String, fetch: FetchOptions) -> Self {
        Self {
            bucket,
            prefix,
            store: ObjectStore::lazy(fetch.s3),
        }
    }
}

impl FeedbackSink for BucketSink {
    fn store(&self, correction: Correction) -> BoxFuture<'_, Result<Stored, ApiError>> {
        Box::pin(async move {
            let store = &self.store;
            let at = |key: &str| ObjectRef::new(&self.bucket, format!("{}{key}", self.prefix));
            let [(key, picture, picture_type), (sidecar_key, sidecar, sidecar_type)] =
                files(&correction);
            let new = store.create(&at(&key), picture, picture_type).await?;
            // Also when the picture was there: a sidecar lost between the two
            // writes is written by the next correction.
            store
                .create(&at(&sidecar_key), sidecar, sidecar_type)
                .await?;
            Ok(Stored { key, new })
        })
    }
}
