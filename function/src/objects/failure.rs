//! Why one object was not classified, and whether trying again may help:
//! a picture that is not one stays so (permanent); a throttled or failing
//! S3, or a model still loading, may pass (transient). Event sources retry
//! only the transient ones (`batchItemFailures`, `TemporaryFailure`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::error::ErrorCode;

/// Whether the same work may succeed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FailureKind {
    Permanent,
    Transient,
}

/// One object's failure: a stable code, the reason, and its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Failure {
    /// The HTTP API's code for the same problem (`invalid_image`,
    /// `image_too_large`, …) or an S3 one: `no_such_key`, `access_denied`,
    /// `throttled`, `s3_error`, `invalid_key`, `tag_limit`, `not_a_file`.
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) kind: FailureKind,
}

impl Failure {
    pub(crate) fn permanent(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            kind: FailureKind::Permanent,
        }
    }

    pub(crate) fn transient(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            kind: FailureKind::Transient,
        }
    }

    pub(crate) fn is_transient(&self) -> bool {
        self.kind == FailureKind::Transient
    }
}

/// An object's failure as an HTTP answer: the API's own code where the
/// failure carries one (`invalid_image`, …), `no_such_key` for a missing
/// object, else S3's failure as a gateway's (`s3_unavailable` when it may
/// pass, `s3_error` when it will not).
///
/// S3's own words (an AccessDenied names the role's ARN, the bucket
/// policy's conditions) go to the log, never to the client: a gateway
/// error says only what kind of failure it was.
impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        if let Some(code) = ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == f.code)
        {
            return ApiError::new(code, f.message);
        }
        let error = super::location::redact_upload_ids(&f.message);
        tracing::warn!(code = %f.code, error, "S3 refused a request");
        if f.is_transient() {
            ApiError::new(
                ErrorCode::S3Unavailable,
                "S3 is throttling or out of reach; try again",
            )
        } else {
            ApiError::new(
                ErrorCode::S3Error,
                "S3 refused this server's request (the server log says why)",
            )
        }
    }
}

/// The HTTP pipeline's refusal of a picture, as an object's failure: the
/// same code; a client error is the picture's for good, a server error
/// (model loading, overloaded, inference failed) may pass.
impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        let kind = if e.code.status().is_client_error() {
            FailureKind::Permanent
        } else {
            FailureKind::Transient
        };
        Self {
            code: e.code.as_str().into(),
            message: e.message,
            kind,
        }
    }
}

impl From<ErrorCode> for Failure {
    fn from(code: ErrorCode) -> Self {
        ApiError::new(code, code.as_str()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_picture_is_permanent_and_a_busy_model_transient() {
        let bad = Failure::from(ApiError::new(ErrorCode::InvalidImage, "not a picture"));
        assert_eq!(bad.kind, FailureKind::Permanent);
        assert_eq!(bad.code, "invalid_image");
        assert!(Failure::from(ErrorCode::Overloaded).is_transient());
        assert!(Failure::from(ErrorCode::ModelUnavailable).is_transient());
        assert!(!Failure::from(ErrorCode::ImageTooLarge).is_transient());
    }

    #[test]
    fn an_objects_failure_answers_http_with_the_apis_code_or_s3s() {
        let http = |f: Failure| ApiError::from(f);
        assert_eq!(
            http(Failure::permanent("invalid_image", "x")).code,
            ErrorCode::InvalidImage
        );
        assert_eq!(
            http(Failure::permanent("no_such_key", "x")).code,
            ErrorCode::NoSuchKey
        );
        let denied = http(Failure::permanent(
            "access_denied",
            "AccessDenied: User: arn:aws:sts::123456789012:assumed-role/catdog is not authorized",
        ));
        assert_eq!(denied.code, ErrorCode::S3Error);
        assert!(
            !denied.message.contains("arn:") && !denied.message.contains("AccessDenied"),
            "{}",
            denied.message
        );
        assert_eq!(
            http(Failure::transient("throttled", "x")).code,
            ErrorCode::S3Unavailable
        );
        assert_eq!(
            http(Failure::transient("s3_unreachable", "x")).code,
            ErrorCode::S3Unavailable
        );
        assert_eq!(ErrorCode::S3Unavailable.retry_after(), Some(1));
    }
}
