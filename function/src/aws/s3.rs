//! The S3 client every part of catdog uses (models, objects, checks, the
//! PreTraffic hook), built one way from the standard AWS environment.

use std::time::Duration;

use super::retry::{RetryPolicy, SdkRetries};

/// How S3 is reached: its endpoint, how long to wait for bytes, and the
/// retry policy its calls follow.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// How long to wait for bytes that do not come.
    pub read_timeout: Duration,
    /// A custom endpoint (MinIO, moto, …), addressed path-style.
    pub endpoint: Option<String>,
    /// Resumes of an S3 range cut mid-body, and an upload's retries (see
    /// [`super::retry`] for who retries what).
    pub retry: RetryPolicy,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            read_timeout: Duration::from_secs(30),
            endpoint: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// An S3 client from the standard AWS environment (credential chain,
/// `AWS_REGION`, `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`), retrying by
/// itself only as `retries` says. With a custom endpoint (MinIO, moto, …)
/// path-style addressing is used, as those expect.
pub async fn s3_client(opts: &S3Options, retries: SdkRetries) -> aws_sdk_s3::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        .timeout_config(
            // A stalled server must not hang start-up for ever; a slow but
            // moving download of a large model is fine (no total deadline).
            // `read_timeout` bounds the wait for bytes that do not come.
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(5))
                .read_timeout(opts.read_timeout)
                .build(),
        )
        .retry_config(opts.retry.sdk_config(retries));
    let endpoint = opts
        .endpoint
        .clone()
        .or_else(|| shared.endpoint_url().map(str::to_string));
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}
