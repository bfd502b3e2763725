//! Pictures in S3, as the HTTP API reaches them ([`StoredPictures`]):
//! `POST /uploads` (a presigned PUT into the uploads bucket, past the invoke
//! limit), `GET /uploads/{id}` (its answer, through the same worker as S3
//! events) and `/predict {"s3": …}` (a picture by reference, from the
//! buckets on the allow-list). The router holds the trait, so its tests
//! answer without S3; [`S3StoredPictures`] answers with it. Its S3 client
//! is made at first use, so a server that never needs it never looks for
//! credentials.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::location::{has_dot_segments, ObjectRef};
use super::results::ResultsConfig;
use super::store::ObjectStore;
use super::worker::{ObjectWorker, Outcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};
use crate::limits::Limits;
use crate::model::source::FetchOptions;
use crate::pipeline::ModelSlot;

/// What the router asks of S3 ([`S3StoredPictures`] answers; the tests
/// answer without S3).
pub(crate) trait StoredPictures: Send + Sync {
    /// A presigned PUT into the uploads bucket (`uploads_off` without one).
    fn upload(&self, request: UploadRequest) -> BoxFuture<'_, Result<UploadTicket, ApiError>>;

    /// An upload's record (written by its S3 event, or now when the event
    /// has not come yet: the same worker, so the event then finds it
    /// current), as JSON, and whether it was there already.
    fn upload_result(
        &self,
        model: ModelSlot,
        limits: Limits,
        id: String,
    ) -> BoxFuture<'_, Result<(String, bool), ApiError>>;

    /// A picture's bytes by reference (`s3://bucket/key`), if its bucket is
    /// on the allow-list; `s3_not_allowed` otherwise.
    fn fetch(&self, uri: String, max_bytes: usize) -> BoxFuture<'_, Result<Bytes, ApiError>>;

    /// An uploaded picture's bytes by its id (`uploads_off` without an
    /// uploads bucket, `no_such_key` before it is uploaded).
    fn fetch_upload(&self, id: String, max_bytes: usize) -> BoxFuture<'_, Result<Bytes, ApiError>>;
}

/// `POST /uploads`: the picture about to be uploaded.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"bytes": 7340032, "content_type": "image/png"}))]
pub(crate) struct UploadRequest {
    /// Its size in bytes: signed into the URL, so S3 takes exactly that
    /// many (at most `CATDOG_MAX_OBJECT_BYTES`, itself at most 4 GiB).
    #[schema(value_type = i64, format = Int64, minimum = 1, maximum = 4294967295_u64)]
    pub(crate) bytes: u32,
    /// Its type, also signed: one of the formats catdog decodes.
    #[schema(pattern = r"^image/(jpeg|png|webp|gif|bmp)$")]
    pub(crate) content_type: String,
}

/// The picture types an upload may be, each with its id's extension: the
/// formats catdog decodes, and nothing a browser would render as a page.
pub(crate) const UPLOAD_TYPES: [(&str, &str); 5] = [
    ("image/jpeg", ".jpg"),
    ("image/png", ".png"),
    ("image/webp", ".webp"),
    ("image/gif", ".gif"),
    ("image/bmp", ".bmp"),
];
/// `POST /uploads`' answer: where to PUT the picture, and where its answer
/// will be.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UploadTicket {
    /// The upload's id, for `GET /uploads/{id}`.
    pub(crate) id: String,
    pub(crate) bucket: String,
    pub(crate) key: String,
    /// The presigned URL: PUT the picture's bytes there, with `headers`.
    pub(crate) url: String,
    /// Always `PUT`.
    pub(crate) method: String,
    /// Headers the PUT must carry exactly as given (they are signed).
    pub(crate) headers: std::collections::BTreeMap<String, String>,
    /// Seconds the URL stays valid.
    pub(crate) expires_in_s: u64,
    /// Where its answer is read once uploaded: `/uploads/{id}`.
    pub(crate) result: String,
}

/// How long a presigned upload URL stays valid: 64 MiB (the object
/// limit) at 2 Mbit/s, short enough that a leaked URL soon expires (and it
/// takes one PUT only).
pub(crate) const UPLOAD_URL_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// Where uploads go, which buckets may be read, and the client for both.
pub(crate) struct S3StoredPictures {
    /// The uploads' bucket and key prefix (`CATDOG_UPLOADS`).
    uploads: Option<(String, String)>,
    /// Buckets `/predict {"s3": …}` may read besides the uploads'.
    allowed: Vec<String>,
    results: ResultsConfig,
    /// Its client is made at first use.
    store: ObjectStore,
}

impl S3StoredPictures {
    /// `None` when there is neither an uploads bucket nor an allowed one:
    /// the routes then answer `uploads_off` and `s3_not_allowed`.
    pub(crate) fn new(
        uploads: Option<(String, String)>,
        allowed: Vec<String>,
        results: ResultsConfig,
        fetch: FetchOptions,
    ) -> Option<Self> {
        (uploads.is_some() || !allowed.is_empty()).then(|| Self {
            uploads,
            allowed,
            results,
            store: ObjectStore::lazy(fetch.s3),
        })
    }

    fn store(&self) -> &ObjectStore {
        &self.store
    }

    fn uploads(&self) -> Result<(&str, &str), ApiError> {
        self.uploads
            .as_ref()
            .map(|(b, p)| (b.as_str(), p.as_str()))
            .ok_or_else(uploads_off)
    }

    /// Whether `/predict {"s3": …}` may read `bucket`.
    pub(crate) fn may_read(&self, bucket: &str) -> bool {
        self.allowed.iter().any(|b| b == bucket)
            || self.uploads.as_ref().is_some_and(|(b, _)| b == bucket)
    }
}

/// The answer of an uploads route on a server without an uploads bucket.
pub(crate) fn uploads_off() -> ApiError {
    ApiError::new(
        ErrorCode::UploadsOff,
        "this server has no uploads bucket: start it with CATDOG_UPLOADS=s3://bucket/prefix/",
    )
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

impl StoredPictures for S3StoredPictures {
    fn upload(&self, request: UploadRequest) -> BoxFuture<'_, Result<UploadTicket, ApiError>> {
        Box::pin(async move {
            let (bucket, prefix) = self.uploads()?;
            let content_type = request.content_type;
            let id = new_upload_id(&content_type)?;
            let object = ObjectRef::new(bucket, format!("{prefix}{id}"));
            let (url, headers) = self
                .store()
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
        model: ModelSlot,
        limits: Limits,
        id: String,
    ) -> BoxFuture<'_, Result<(String, bool), ApiError>> {
        Box::pin(async move {
            let (bucket, prefix) = self.uploads()?;
            let store = self.store().clone();
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
            let worker = ObjectWorker::new(store, model, limits, self.results.clone());
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

    fn fetch_upload(&self, id: String, max_bytes: usize) -> BoxFuture<'_, Result<Bytes, ApiError>> {
        Box::pin(async move {
            let (bucket, prefix) = self.uploads()?;
            let object = ObjectRef::new(bucket, format!("{prefix}{id}"));
            match self.store().get(&object, max_bytes).await {
                Ok(fetched) => Ok(fetched.bytes),
                Err(f) => {
                    let mut e = ApiError::from(f);
                    if e.code == ErrorCode::NoSuchKey {
                        e.message = format!("nothing uploaded under {id}");
                    }
                    Err(e)
                }
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
                .get(&object, max_bytes)
                .await
                .map_err(ApiError::from)?;
            Ok(fetched.bytes)
        })
    }
}
