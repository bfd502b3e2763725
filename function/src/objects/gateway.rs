//! The HTTP API's way into S3 ([`crate::http::state::StoredPictures`]):
//! presigned PUTs into the uploads bucket, an upload's answer through the
//! same worker as S3 events, and pictures by reference from the buckets on
//! the allow-list. The S3 client is made at first use, so a server that
//! never needs it never looks for credentials.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;

use super::location::{has_dot_segments, ObjectRef};
use super::results::ResultsConfig;
use super::store::ObjectStore;
use super::worker::{ObjectWorker, Outcome};
use crate::http::code::ErrorCode;
use crate::http::error::ApiError;
use crate::http::state::{AppState, StoredPictures};
use crate::http::types::{UploadRequest, UploadTicket, UPLOAD_TYPES};
use crate::model::retry::SdkRetries;
use crate::model::source::{s3_client, FetchOptions};

/// How long a presigned upload URL stays valid: 64 MiB (the object
/// limit) at 2 Mbit/s, short enough that a leaked URL soon expires (and it
/// takes one PUT only).
pub const UPLOAD_URL_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// Where uploads go, which buckets may be read, and the client for both.
pub struct S3Gateway {
    /// The uploads' bucket and key prefix (`CATDOG_UPLOADS`).
    uploads: Option<(String, String)>,
    /// Buckets `/predict {"s3": …}` may read besides the uploads'.
    allowed: Vec<String>,
    results: ResultsConfig,
    fetch: FetchOptions,
    store: OnceCell<ObjectStore>,
}

impl S3Gateway {
    /// `None` when there is neither an uploads bucket nor an allowed one:
    /// the routes then answer `uploads_off` and `s3_not_allowed`.
    pub fn new(
        uploads: Option<(String, String)>,
        allowed: Vec<String>,
        results: ResultsConfig,
        fetch: FetchOptions,
    ) -> Option<Self> {
        (uploads.is_some() || !allowed.is_empty()).then(|| Self {
            uploads,
            allowed,
            results,
            fetch,
            store: OnceCell::new(),
        })
    }

    async fn store(&self) -> &ObjectStore {
        self.store
            .get_or_init(|| async {
                ObjectStore::new(s3_client(&self.fetch, SdkRetries::ThisPolicy).await)
            })
            .await
    }

    fn uploads(&self) -> Result<(&str, &str), ApiError> {
        self.uploads
            .as_ref()
            .map(|(b, p)| (b.as_str(), p.as_str()))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::UploadsOff,
                    "this server has no uploads bucket: start it with CATDOG_UPLOADS=s3://bucket/prefix/",
                )
            })
    }

    /// Whether `/predict {"s3": …}` may read `bucket`.
    pub fn may_read(&self, bucket: &str) -> bool {
        self.allowed.iter().any(|b| b == bucket)
            || self.uploads.as_ref().is_some_and(|(b, _)| b == bucket)
    }
}

/// 128 random bits as 32 hex digits, and the picture type's extension: an
/// upload's id, also the capability to read its answer, so it must not be
/// guessable. The extension keeps uploads in `catdog predict s3://…`'s
/// listing, which takes picture file names only.
fn new_upload_id(content_type: &str) -> Result<String, ApiError> {
    let mut bits = [0u8; 16];
    getrandom::getrandom(&mut bits)
        .map_err(|e| ApiError::internal(format!("no randomness for an upload id: {e}")))?;
    let ext = UPLOAD_TYPES
        .iter()
        .find(|(t, _)| *t == content_type)
        .map_or("", |(_, ext)| ext);
    Ok(format!("{}{ext}", hex::encode(bits)))
}

impl StoredPictures for S3Gateway {
    fn upload(&self, request: UploadRequest) -> BoxFuture<'_, Result<UploadTicket, ApiError>> {
        Box::pin(async move {
            let (bucket, prefix) = self.uploads()?;
            let content_type = request.content_type;
            let id = new_upload_id(&content_type)?;
            let object = ObjectRef::new(bucket, format!("{prefix}{id}"));
            let (url, headers) = self
                .store()
                .await
                .presign_put(
                    &object,
                    request.bytes.into(),
                    &content_type,
                    UPLOAD_URL_LIFETIME,
                )
                .await
                .map_err(ApiError::from)?;
            let mut headers: std::collections::BTreeMap<String, String> =
                headers.into_iter().collect();
            // The signed headers come with the presigned request (type and
            // If-None-Match among them); the length is sent by every client.
            headers
                .entry("content-length".into())
                .or_insert_with(|| request.bytes.to_string());
            Ok(UploadTicket {
                result: format!("/uploads/{id}"),
                id,
                bucket: object.bucket,
                key: object.key,
                url,
                method: "PUT".into(),
                headers,
                expires_in_s: UPLOAD_URL_LIFETIME.as_secs(),
            })
        })
    }

    fn upload_result(
        &self,
        state: AppState,
        id: String,
    ) -> BoxFuture<'_, Result<(String, bool), ApiError>> {
        Box::pin(async move {
            let (bucket, prefix) = self.uploads()?;
            let store = self.store().await.clone();
            let object = ObjectRef::new(bucket, format!("{prefix}{id}"));
            // Which bytes these are (the record must be theirs); also a
            // clean 404 before the picture is uploaded, with no failure
            // record left behind for it.
            let object = store.head(&object).await.map_err(|f| {
                let mut e = ApiError::from(f);
                if e.code == ErrorCode::NoSuchKey {
                    e.message = format!(
                        "nothing uploaded under {id} yet (PUT it to the URL POST /uploads gave)"
                    );
                }
                e
            })?;
            let worker = ObjectWorker::new(store, state, self.results.clone());
            match worker.run(object).await {
                Outcome::Classified { record, reused } => {
                    // As the record is written: scores as f32, not widened.
                    let json = serde_json::to_string(&record)
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                    Ok((json, reused))
                }
                Outcome::Failed { failure, .. } => Err(failure.into()),
                Outcome::Ignored { reason, .. } => Err(ApiError::new(ErrorCode::NoSuchKey, reason)),
            }
        })
    }

    fn fetch(&self, uri: String, max_bytes: usize) -> BoxFuture<'_, Result<Bytes, ApiError>> {
        Box::pin(async move {
            let (bucket, key) = uri
                .strip_prefix("s3://")
                .and_then(|rest| rest.split_once('/'))
                .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidJson,
                        format!("`s3` must be s3://bucket/key, not {uri:?}"),
                    )
                })?;
            if has_dot_segments(key) {
                return Err(ApiError::new(
                    ErrorCode::S3NotAllowed,
                    "`s3` keys with `.` or `..` segments are not read",
                ));
            }
            if !self.may_read(bucket) {
                return Err(ApiError::new(
                    ErrorCode::S3NotAllowed,
                    format!("bucket {bucket:?} is not one this server may read (CATDOG_S3_ALLOW)"),
                ));
            }
            let object = ObjectRef::new(bucket, key);
            let fetched = self
                .store()
                .await
                .get(&object, max_bytes)
                .await
                .map_err(ApiError::from)?;
            Ok(fetched.bytes)
        })
    }
}
