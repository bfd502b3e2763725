//! The hook's AWS clients, built as the S3 client is (`model/source/s3.rs`):
//! the standard environment (credential chain, `AWS_REGION`, and the SDK's
//! own endpoint variables, `AWS_ENDPOINT_URL_LAMBDA` /
//! `AWS_ENDPOINT_URL_CODEDEPLOY` / `AWS_ENDPOINT_URL`), bounded waits, and
//! the settings' retry policy applied by the SDK (no loop of catdog's
//! around these calls).

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;

use crate::aws::{RetryPolicy, SdkRetries};

/// How long an invoke may take to answer: the classifier's 30 s Timeout
/// (template.yaml), after a cold start's init (up to 10 s, then retried
/// within the invoke), with room to spare.
const INVOKE_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The SDK's shared configuration, loaded once for both clients.
pub(crate) async fn shared() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// Invokes the version under check.
pub(crate) fn lambda(
    shared: &aws_config::SdkConfig,
    retry: &RetryPolicy,
) -> aws_sdk_lambda::Client {
    let conf = aws_sdk_lambda::config::Builder::from(shared)
        .timeout_config(timeouts(INVOKE_READ_TIMEOUT))
        .retry_config(retry.sdk_config(SdkRetries::ThisPolicy))
        .build();
    aws_sdk_lambda::Client::from_conf(conf)
}

/// Reports the hook's outcome.
pub(crate) fn codedeploy(
    shared: &aws_config::SdkConfig,
    retry: &RetryPolicy,
) -> aws_sdk_codedeploy::Client {
    let conf = aws_sdk_codedeploy::config::Builder::from(shared)
        .timeout_config(timeouts(Duration::from_secs(30)))
        .retry_config(retry.sdk_config(SdkRetries::ThisPolicy))
        .build();
    aws_sdk_codedeploy::Client::from_conf(conf)
}

fn timeouts(read: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(read)
        .build()
}
