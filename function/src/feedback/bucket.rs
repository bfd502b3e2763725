//! Corrections in S3 (`CATDOG_FEEDBACK=s3://bucket/prefix/`): two PUTs
//! that only create (`If-None-Match: *`), so the role needs `s3:PutObject`
//! under the prefix and nothing else.

use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;

use super::{files, Correction, FeedbackSink, Stored};
use crate::aws::{s3_client, SdkRetries};
use crate::error::ApiError;
use crate::model::source::FetchOptions;
use crate::objects::store::ObjectStore;
use crate::objects::ObjectRef;

pub(crate) struct BucketSink {
    bucket: String,
    prefix: String,
    fetch: FetchOptions,
    /// Made at the first correction: a server that never gets one never
    /// looks for credentials.
    store: OnceCell<ObjectStore>,
}

impl BucketSink {
    pub(crate) fn new(bucket: String, prefix: String, fetch: FetchOptions) -> Self {
        Self {
            bucket,
            prefix,
            fetch,
            store: OnceCell::new(),
        }
    }

    async fn store(&self) -> &ObjectStore {
        self.store
            .get_or_init(|| async {
                ObjectStore::new(s3_client(&self.fetch.s3, SdkRetries::ThisPolicy).await)
            })
            .await
    }
}

impl FeedbackSink for BucketSink {
    fn store(&self, correction: Correction) -> BoxFuture<'_, Result<Stored, ApiError>> {
        Box::pin(async move {
            let store = self.store().await;
            let mut new = Vec::new();
            for (key, bytes, content_type) in files(&correction) {
                let object = ObjectRef::new(&self.bucket, format!("{}{key}", self.prefix));
                new.push(store.create(&object, bytes, content_type).await?);
            }
            Ok(Stored {
                key: correction.picture_key(),
                new: new[0],
            })
        })
    }
}
