//! The AWS SDK's clients as catdog builds them: the one S3 client
//! ([`s3`]), the one retry policy and who retries what ([`retry`]), and how
//! any SDK error is told to a person.

pub(crate) mod retry;
pub(crate) mod s3;

pub(crate) use retry::{RetryPolicy, SdkRetries};
pub use s3::{s3_client, S3Options};

use crate::messages::with_causes;

/// "Code: message" for service errors (NoSuchKey, AccessDenied, …), the
/// cause chain for transport errors — without dumping the raw response. For
/// any AWS SDK client's errors (S3's, Lambda's: the SDKs share these types).
pub(crate) fn sdk_error_message<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        _ => with_causes(e),
    }
}
