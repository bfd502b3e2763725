//! `catdog upload`: put a model into S3 with a multipart upload whose every
//! part carries its SHA-256 (S3 verifies them on receipt), and print the
//! `MODEL_URI` / `MODEL_SHA256` to deploy with.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::model::source::{self, ModelUri};

/// Part size: S3 needs ≥ 5 MiB for all but the last part; 16 MiB keeps a
/// 528 MB VGG16 at 33 parts.
pub(crate) const PART_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the destination must be s3://bucket/key (got {0})")]
    NotS3(String),
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error("upload to {uri} failed: {message}")]
    S3 { uri: String, message: String },
}

/// Where the model went and its digest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    pub uri: String,
    pub sha256: String,
    pub bytes: u64,
    pub parts: usize,
}

/// Why S3 requests would not be signed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoCredentials {
    #[error("no AWS credentials provider is configured")]
    NoProvider,
    #[error(
        "no AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or a role): {0}"
    )]
    Refused(String),
    #[error("no AWS credentials within {:.0} s (none in the environment or profiles, and no role answered)", .0.as_secs_f64())]
    Timeout(std::time::Duration),
}

/// Whether S3 requests would be signed: the SDK's credential chain
/// (variables, profile, container or instance role) gives credentials
/// within `timeout`. `Err` says why not, to skip an upload clearly.
pub(crate) async fn credentials(timeout: std::time::Duration) -> Result<(), NoCredentials> {
    use aws_sdk_s3::config::ProvideCredentials;
    // The chain the S3 client is built from (crate::aws::s3_client).
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let Some(provider) = shared.credentials_provider() else {
        return Err(NoCredentials::NoProvider);
    };
    match tokio::time::timeout(timeout, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(NoCredentials::Refused(e.to_string())),
        Err(_) => Err(NoCredentials::Timeout(timeout)),
    }
}

/// Uploads `file` to `to` (`s3://bucket/key`).
pub(crate) async fn upload(
    file: &std::path::Path,
    to: &str,
    opts: &source::FetchOptions,
) -> Result<Published, PublishError> {
    let (bucket, key) = match to.parse::<ModelUri>()? {
        ModelUri::S3 { bucket, key } => (bucket, key),
        _ => return Err(PublishError::NotS3(to.to_string())),
    };
    let uri = format!("s3://{bucket}/{key}");
    let model = source::local_file(file)?;
    let bytes = model.view().map_err(|error| source::SourceError::File {
        path: file.to_path_buf(),
        error,
    })?;
    let sha256 = source::sha256_hex(&bytes);
    let client = crate::aws::s3_client(&opts.s3, crate::aws::SdkRetries::ThisPolicy).await;
    let err = |message: String| PublishError::S3 {
        uri: uri.clone(),
        message,
    };
    let created = client
        .create_multipart_upload()
        .bucket(&bucket)
        .key(&key)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .metadata("sha256", &sha256)
        .content_type("application/octet-stream")
        .send()
        .await
        .map_err(|e| err(crate::aws::sdk_error_message(&e)))?;
    let upload_id = created.upload_id().unwrap_or_default().to_string();
    let bar = indicatif::ProgressBar::new(bytes.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "uploading {bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut parts = Vec::new();
    let result: Result<(), PublishError> = async {
        for (i, chunk) in bytes.chunks(PART_BYTES).enumerate() {
            let number = i as i32 + 1;
            let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(chunk));
            let r = client
                .upload_part()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&upload_id)
                .part_number(number)
                .checksum_sha256(&digest)
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    err(format!(
                        "part {number}: {}",
                        crate::aws::sdk_error_message(&e)
                    ))
                })?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(r.e_tag().map(str::to_string))
                    .checksum_sha256(digest)
                    .build(),
            );
            bar.inc(chunk.len() as u64);
        }
        client
            .complete_multipart_upload()
            .bucket(&bucket)
            .key(&key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts.clone()))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| err(crate::aws::sdk_error_message(&e)))?;
        Ok(())
    }
    .await;
    bar.finish_and_clear();
    if let Err(e) = result {
        // Don't leave billed, invisible parts behind.
        let _ = client
            .abort_multipart_upload()
            .bucket(&bucket)
            .key(&key)
            .upload_id(&upload_id)
            .send()
            .await;
        return Err(e);
    }
    Ok(Published {
        uri,
        sha256,
        bytes: bytes.len() as u64,
        parts: parts.len(),
    })
}
