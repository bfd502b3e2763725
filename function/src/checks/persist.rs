//! The checks in S3: written by `catdog upload` (pictures first, the
//! answers file last, so the file never names a picture not there yet) and
//! read back by the PreTraffic hook, whose policy allows these keys only.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;

use super::layout::{answers_key, picture_key, Checks, FORMAT};
use super::record::{Recorded, MAX_PICTURE_BYTES};
use super::ChecksError;
use crate::aws::sdk_error_message;
use crate::error::ErrorCode;
use crate::objects::location::ObjectRef;
use crate::objects::store::ObjectStore;
use crate::objects::FailureCode;

/// Writes the recorded pictures and their answers next to the model at
/// `s3://bucket/model_key`, whose digest is `model_sha256`; returns the
/// answers file's URI.
pub(crate) async fn put(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    model_key: &str,
    model_sha256: &str,
    recorded: &[Recorded],
) -> Result<String, ChecksError> {
    let answers = answers_key(model_key);
    let checks = Checks {
        format: FORMAT.into(),
        model_sha256: model_sha256.into(),
        recorded_with: format!(
            "catdog {} on {}",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH
        ),
        pictures: recorded.iter().map(|r| r.expected.clone()).collect(),
    };
    for r in recorded {
        let key = picture_key(&answers, &r.expected.name);
        put_one(
            client,
            bucket,
            &key,
            r.bytes.clone(),
            "application/octet-stream",
        )
        .await?;
    }
    let json = serde_json::to_vec_pretty(&checks).expect("checks serialise");
    put_one(client, bucket, &answers, json, "application/json").await?;
    Ok(format!("s3://{bucket}/{answers}"))
}

async fn put_one(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    content_type: &str,
) -> Result<(), ChecksError> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .map(drop)
        .map_err(|e| ChecksError::Put {
            uri: format!("s3://{bucket}/{key}"),
            message: sdk_error_message(&e),
        })
}

/// The answers file at `s3://bucket/key`, parsed and checked.
pub(crate) async fn get_checks(
    store: &ObjectStore,
    bucket: &str,
    key: &str,
) -> Result<Checks, ChecksError> {
    let object = ObjectRef::new(bucket, key);
    let uri = format!("s3://{bucket}/{key}");
    let fetched = store
        .get(&object, 1 << 20)
        .await
        .map_err(|failure| read_error(&uri, failure))?;
    Checks::parse(&fetched.bytes).map_err(|reason| ChecksError::Invalid { uri, reason })
}

/// A failed read, said as the hook's reader needs it: S3 answers 403, not
/// 404, for a missing key to a role without s3:ListBucket (the hook's).
fn read_error(uri: &str, failure: crate::objects::Failure) -> ChecksError {
    let reason = match failure.code {
        FailureCode::Api(ErrorCode::NoSuchKey) => "no such object".to_string(),
        FailureCode::AccessDenied => {
            "access denied: the object is missing, or this role may not read it".to_string()
        }
        _ => failure.message,
    };
    ChecksError::Read {
        uri: uri.to_string(),
        code: failure.code.to_string(),
        reason,
    }
}

/// Picture `name` of the answers file at `s3://bucket/answers`.
pub(crate) async fn get_picture(
    store: &ObjectStore,
    bucket: &str,
    answers: &str,
    name: &str,
) -> Result<bytes::Bytes, ChecksError> {
    let key = picture_key(answers, name);
    let object = ObjectRef::new(bucket, &key);
    store
        .get(&object, MAX_PICTURE_BYTES)
        .await
        .map(|f| f.bytes)
        .map_err(|failure| read_error(&format!("s3://{bucket}/{key}"), failure))
}
