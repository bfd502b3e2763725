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

/// What went wrong with one object: the HTTP API's code for the same
/// problem, or one of S3's and the events' own. On the wire (records,
/// logs) it is its snake_case name, as an [`ErrorCode`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureCode {
    /// The pipeline's refusal (`invalid_image`, `image_too_large`, …), a
    /// missing object (`no_such_key`) or an internal failure.
    Api(ErrorCode),
    /// S3 refused the function's role.
    AccessDenied,
    /// S3 asked to slow down.
    Throttled,
    /// S3 answered with another error.
    S3Error,
    /// S3 did not answer: a timeout, a refused or cut connection.
    S3Unreachable,
    /// The event's key is not a valid key (bad URL-encoding, …).
    InvalidKey,
    /// The event is not one catdog can read.
    InvalidEvent,
    /// The object is outside `CATDOG_UPLOADS`.
    OutOfScope,
    /// The object's tags would pass S3's limits.
    TagLimit,
}

impl FailureCode {
    const OWN: [(FailureCode, &'static str); 8] = [
        (FailureCode::AccessDenied, "access_denied"),
        (FailureCode::Throttled, "throttled"),
        (FailureCode::S3Error, "s3_error"),
        (FailureCode::S3Unreachable, "s3_unreachable"),
        (FailureCode::InvalidKey, "invalid_key"),
        (FailureCode::InvalidEvent, "invalid_event"),
        (FailureCode::OutOfScope, "out_of_scope"),
        (FailureCode::TagLimit, "tag_limit"),
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FailureCode::Api(code) => code.as_str(),
            own => Self::OWN
                .iter()
                .find(|(c, _)| *c == own)
                .map_or("internal", |(_, name)| name),
        }
    }

    /// The code named `name`: objects' own first (`s3_error` is S3's
    /// refusal here, not the gateway's answer), then the API's.
    fn parse(name: &str) -> Option<Self> {
        Self::OWN
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(c, _)| *c)
            .or_else(|| {
                ErrorCode::ALL
                    .iter()
                    .find(|c| c.as_str() == name)
                    .map(|c| FailureCode::Api(*c))
            })
    }
}

impl From<ErrorCode> for FailureCode {
    fn from(code: ErrorCode) -> Self {
        FailureCode::Api(code)
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for FailureCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for FailureCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FailureCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown failure code `{name}`")))
    }
}

/// One object's failure: a stable code, the reason, and its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Failure {
    /// The HTTP API's code for the same problem (`invalid_image`,
    /// `image_too_large`, `no_such_key`, …) or an S3 or event one:
    /// `access_denied`, `throttled`, `s3_error`, `s3_unreachable`,
    /// `invalid_key`, `invalid_event`, `out_of_scope`, `tag_limit`.
    #[schema(value_type = String)]
    pub(crate) code: FailureCode,
    pub(crate) message: String,
    pub(crate) kind: FailureKind,
}

impl Failure {
    pub(crate) fn permanent(code: impl Into<FailureCode>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            kind: FailureKind::Permanent,
        }
    }

    pub(crate) fn transient(code: impl Into<FailureCode>, message: impl Into<String>) -> Self {
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
        if let FailureCode::Api(code) = f.code {
            return ApiError::new(code, f.message);
        }
        let error = super::location::redact_upload_ids(&f.message);
        tracing::warn!(code = %f.code, error, "S3 refused a request");
        // S3's own error (a 5xx, a body cut short) stays the gateway's 502,
        // as it always was; only its words stay in the log.
        if f.is_transient() && f.code != FailureCode::S3Error {
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
            code: FailureCode::Api(e.code),
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
            http(Failure::permanent(ErrorCode::InvalidImage, "x")).code,
            ErrorCode::InvalidImage
        );
        assert_eq!(
            http(Failure::permanent(ErrorCode::NoSuchKey, "x")).code,
            ErrorCode::NoSuchKey
        );
        let denied = http(Failure::permanent(
            FailureCode::AccessDenied,
            "AccessDenied: User: arn:aws:sts::123456789012:assumed-role/catdog is not authorized",
        ));
        assert_eq!(denied.code, ErrorCode::S3Error);
        assert!(
            !denied.message.contains("arn:") && !denied.message.contains("AccessDenied"),
            "{}",
            denied.message
        );
        assert_eq!(
            http(Failure::transient(FailureCode::Throttled, "x")).code,
            ErrorCode::S3Unavailable
        );
        assert_eq!(
            http(Failure::transient(FailureCode::S3Unreachable, "x")).code,
            ErrorCode::S3Unavailable
        );
        assert_eq!(ErrorCode::S3Unavailable.retry_after(), Some(1));
    }
}
