//! The S3 calls of object classification, each error sorted once into
//! permanent (the object is gone, not readable, too big) or transient
//! (throttled, S3's own failures, the network), as event sources need.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Tag, Tagging};
use aws_sdk_s3::Client;
use bytes::Bytes;

use super::failure::Failure;
use super::failure::FailureCode;
use super::location::{unquote, ObjectRef};
use super::record::ObjectRecord;
use crate::aws::s3::LazyClient;
use crate::aws::sdk_error_message;
use crate::error::ErrorCode;

/// An object's bytes, and the version and ETag they are.
pub(crate) struct Fetched {
    pub(crate) bytes: Bytes,
    pub(crate) etag: Option<String>,
    pub(crate) version_id: Option<String>,
}

/// The S3 side of object classification.
#[derive(Clone)]
pub(crate) struct ObjectStore {
    client: Source,
}

/// Where an [`ObjectStore`]'s client comes from.
#[derive(Clone)]
enum Source {
    /// Made by the caller, for the store's life (a command).
    Fixed(Client),
    /// Made at first use, and again after a SnapStart restore (a server).
    Lazy(std::sync::Arc<LazyClient>),
}

impl ObjectStore {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client: Source::Fixed(client),
        }
    }

    /// A store whose client is made at its first call: a server that never
    /// calls S3 never looks for credentials.
    pub(crate) fn lazy(s3: crate::aws::S3Options) -> Self {
        Self {
            client: Source::Lazy(LazyClient::new(s3, crate::aws::SdkRetries::ThisPolicy)),
        }
    }

    async fn client(&self) -> Client {
        match &self.client {
            Source::Fixed(client) => client.clone(),
            Source::Lazy(lazy) => lazy.get().await,
        }
    }

    /// The object's bytes (its version, when named), refused before they
    /// are read when over `max_bytes` (`CATDOG_MAX_OBJECT_BYTES`).
    pub(crate) async fn get(
        &self,
        object: &ObjectRef,
        max_bytes: usize,
    ) -> Result<Fetched, Failure> {
        let out = self
            .client()
            .await
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .send()
            .await
            .map_err(|e| sorted(e, "reading", object))?;
        let declared = out.content_length().unwrap_or(0).max(0) as u64;
        if declared > max_bytes as u64 {
            return Err(too_large(declared, max_bytes));
        }
        let etag = out.e_tag().map(|e| unquote(e).to_string());
        let version_id = out.version_id().map(str::to_string);
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| {
                Failure::transient(
                    FailureCode::S3Error,
                    format!("reading {object}: the body was cut: {e}"),
                )
            })?
            .into_bytes();
        if bytes.len() > max_bytes {
            return Err(too_large(bytes.len() as u64, max_bytes));
        }
        Ok(Fetched {
            bytes,
            etag,
            version_id,
        })
    }

    /// A presigned PUT of exactly `bytes` bytes of `content_type` to
    /// `object`, valid for `expires`, that only creates: its URL and the
    /// headers the PUT must carry. Size, type and `If-None-Match: *` are
    /// signed, so S3 refuses another size or type, and refuses (412) a
    /// second PUT to the key: one ticket, one picture, one inference.
    pub(crate) async fn presign_put(
        &self,
        object: &ObjectRef,
        bytes: u64,
        content_type: &str,
        expires: std::time::Duration,
    ) -> Result<(String, Vec<(String, String)>), Failure> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires)
            .map_err(|e| Failure::permanent(FailureCode::S3Error, format!("presigning: {e}")))?;
        let request = self
            .client()
            .await
            .put_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .content_type(content_type)
            .content_length(bytes as i64)
            .if_none_match("*")
            .presigned(config)
            .await
            .map_err(|e| sorted(e, "presigning a PUT to", object))?;
        let headers = request
            .headers()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        Ok((request.uri().to_string(), headers))
    }

    /// The object's current ETag (and version), by a HEAD: for callers that
    /// were not told which bytes they are about (Batch Operations tasks).
    pub(crate) async fn head(&self, object: &ObjectRef) -> Result<ObjectRef, Failure> {
        let out = self
            .client()
            .await
            .head_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .send()
            .await
            .map_err(|e| sorted(e, "reading", object))?;
        Ok(object
            .clone()
            .with_etag(out.e_tag().map(str::to_string))
            .with_version(
                out.version_id()
                    .map(str::to_string)
                    .or(object.version_id.clone()),
            ))
    }

    /// The record at `bucket`/`key`, if there is one that parses (an
    /// unreadable record is as good as none: it is written again).
    pub(crate) async fn get_record(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectRecord>, Failure> {
        let at = ObjectRef::new(bucket, key);
        match self
            .client()
            .await
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| {
                        Failure::transient(FailureCode::S3Error, format!("reading {at}: {e}"))
                    })?
                    .into_bytes();
                Ok(serde_json::from_slice(&bytes).ok())
            }
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(sorted(e, "reading the record", &at)),
        }
    }

    pub(crate) async fn put_record(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
    ) -> Result<(), Failure> {
        let body = serde_json::to_vec_pretty(record).expect("a record serializes");
        self.client()
            .await
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| sorted(e, "writing the record", &ObjectRef::new(bucket, key)))?;
        Ok(())
    }

    /// Creates `object` with `bytes` unless it exists (`If-None-Match: *`):
    /// `false` when it was there already (412). Two such PUTs racing on one
    /// key get 409 (`ConditionalRequestConflict`) and S3 asks for a retry,
    /// which then finds the winner's object.
    pub(crate) async fn create(
        &self,
        object: &ObjectRef,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<bool, Failure> {
        let mut conflicts = 0;
        loop {
            let put = self
                .client()
                .await
                .put_object()
                .bucket(&object.bucket)
                .key(&object.key)
                .content_type(content_type)
                .if_none_match("*")
                .body(ByteStream::from(bytes.clone()))
                .send()
                .await;
            match put {
                Ok(_) => return Ok(true),
                Err(e) if status_of(&e) == Some(412) => return Ok(false),
                Err(e) if status_of(&e) == Some(409) && conflicts < 2 => conflicts += 1,
                Err(e) => return Err(sorted(e, "writing", object)),
            }
        }
    }

    /// The object's tags.
    pub(crate) async fn tags(&self, object: &ObjectRef) -> Result<Vec<(String, String)>, Failure> {
        let out = self
            .client()
            .await
            .get_object_tagging()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .send()
            .await
            .map_err(|e| sorted(e, "reading the tags of", object))?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect())
    }

    /// Replaces the object's tags with `tags` (already merged).
    pub(crate) async fn put_tags(
        &self,
        object: &ObjectRef,
        tags: &[(String, String)],
    ) -> Result<(), Failure> {
        let set = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::permanent(FailureCode::TagLimit, e.to_string()))?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(set))
            .build()
            .map_err(|e| Failure::permanent(FailureCode::TagLimit, e.to_string()))?;
        self.client()
            .await
            .put_object_tagging()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone())
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| sorted(e, "tagging", object))?;
        Ok(())
    }

    /// One page of keys under `prefix` (`continuation` from the last page):
    /// the objects and the token for the next page, if any.
    pub(crate) async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<(Vec<ObjectRef>, Option<String>), Failure> {
        let (objects, next) = self.list_page_sized(bucket, prefix, continuation).await?;
        Ok((objects.into_iter().map(|(o, _)| o).collect(), next))
    }

    /// [`ObjectStore::list_page`], with each object's size.
    pub(crate) async fn list_page_sized(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<(Vec<(ObjectRef, Option<i64>)>, Option<String>), Failure> {
        let out = self
            .client()
            .await
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(continuation)
            .send()
            .await
            .map_err(|e| sorted(e, "listing", &ObjectRef::new(bucket, prefix)))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                let key = o.key()?;
                let object = ObjectRef::new(bucket, key).with_etag(o.e_tag().map(str::to_string));
                Some((object, o.size()))
            })
            .collect();
        let next = out
            .is_truncated()
            .unwrap_or(false)
            .then(|| out.next_continuation_token().map(str::to_string))
            .flatten();
        Ok((objects, next))
    }
}

fn too_large(bytes: u64, max: usize) -> Failure {
    Failure::from(crate::error::ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the object is {bytes} bytes; the limit is {max} (CATDOG_MAX_OBJECT_BYTES)"),
    ))
}

fn status_of<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// An S3 error, sorted: a missing or forbidden object is the object's for
/// good; throttling, S3's 5xx and a network that failed may pass.
fn sorted<E>(
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    doing: &str,
    object: &ObjectRef,
) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = status_of(&e);
    let code = e.code().map(str::to_string);
    let said = sdk_error_message(&e);
    let what = format!("{doing} {object}");
    match (status, code.as_deref()) {
        (Some(404), _) | (_, Some("NoSuchKey" | "NoSuchVersion")) => Failure::permanent(
            ErrorCode::NoSuchKey,
            format!("{what}: the object does not exist (deleted before the event was handled?)"),
        ),
        (Some(403), _) | (_, Some("AccessDenied")) => Failure::permanent(
            FailureCode::AccessDenied,
            format!("{what}: access denied ({said}); the function's role needs the permission"),
        ),
        (Some(429 | 503), _) | (_, Some("SlowDown" | "Throttling" | "RequestLimitExceeded")) => {
            Failure::transient(FailureCode::Throttled, format!("{what}: {said}"))
        }
        (Some(s), _) if s >= 500 => {
            Failure::transient(FailureCode::S3Error, format!("{what}: {said}"))
        }
        (Some(_), _) => Failure::permanent(FailureCode::S3Error, format!("{what}: {said}")),
        // No answer at all: a timeout, a refused or cut connection.
        (None, _) => Failure::transient(FailureCode::S3Unreachable, format!("{what}: {said}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that never connects: presigning is local.
    fn offline_store() -> ObjectStore {
        ObjectStore::new(crate::aws::s3::offline_client())
    }

    #[tokio::test]
    async fn a_ticket_signs_its_size_its_type_and_create_only() {
        let object = ObjectRef::new("uploads", "incoming/0123.png");
        let lifetime = std::time::Duration::from_secs(300);
        let (url, headers) = offline_store()
            .presign_put(&object, 1234, "image/png", lifetime)
            .await
            .unwrap();
        let url = reqwest::Url::parse(&url).unwrap();
        let query: std::collections::HashMap<String, String> =
            url.query_pairs().into_owned().collect();
        let signed: Vec<&str> = query["X-Amz-SignedHeaders"].split(';').collect();
        for header in ["content-length", "content-type", "host", "if-none-match"] {
            assert!(
                signed.contains(&header),
                "{header} is not signed: {signed:?}"
            );
        }
        assert_eq!(query["X-Amz-Expires"], "300");
        let headers: std::collections::HashMap<String, String> = headers.into_iter().collect();
        assert_eq!(headers.get("if-none-match").map(String::as_str), Some("*"));
        assert_eq!(
            headers.get("content-type").map(String::as_str),
            Some("image/png")
        );
    }
}
