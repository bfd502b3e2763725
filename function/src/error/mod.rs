//! The service's one vocabulary of failures, whatever the host: an
//! [`ApiError`] is a stable [`ErrorCode`] (with its status and
//! `Retry-After`, there and nowhere else) and a message for people. HTTP
//! answers carry it (`http::error`), S3 objects record it (`objects`).
//!
//! Each layer keeps its own error type ([`DecodeError`], [`BatchError`],
//! [`BudgetError`], the request readers' and the Open Inference Protocol's,
//! the model's `Unready`), and a `From` conversion turns it into an
//! [`ApiError`], choosing its code once (as text-embeddings-inference's
//! `From<TextEmbeddingsError> for ErrorResponse` does).

mod code;

pub(crate) use code::ErrorCode;

use axum::http::StatusCode;

use crate::batcher::BatchError;
use crate::decode::DecodeError;
use crate::memory::BudgetError;

/// An error answer. `code` is stable and machine-readable; `message` is for
/// people. It rides on its response as an extension, so the request log can
/// name it and the Open Inference Protocol routes can re-shape it.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    /// Seconds for a `Retry-After` header.
    pub(crate) retry_after: Option<u32>,
}

/// The longest message an error answer carries: whatever a request made
/// it say (field names, paths), the answer stays small.
pub(crate) const MAX_MESSAGE_CHARS: usize = 1024;

impl ApiError {
    /// An answer with `code`'s status and `Retry-After`; the message is
    /// cut to [`MAX_MESSAGE_CHARS`].
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: bounded(message.into()),
            retry_after: code.retry_after(),
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// 500: what failed goes to the log, not to the client.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

/// `message`, or its first [`MAX_MESSAGE_CHARS`] characters and `…`.
fn bounded(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    }
}

impl From<&DecodeError> for ErrorCode {
    fn from(e: &DecodeError) -> Self {
        match e {
            DecodeError::Empty
            | DecodeError::UnknownFormat
            | DecodeError::Corrupt(_)
            | DecodeError::ZeroSized { .. } => ErrorCode::InvalidImage,
            DecodeError::UnsupportedFormat(_) => ErrorCode::UnsupportedImageFormat,
            DecodeError::TooLarge { .. } => ErrorCode::ImageTooLarge,
        }
    }
}

/// A picture of a request that could not be decoded, or not admitted to
/// the memory budget: which one, and why.
#[derive(Debug)]
pub(crate) struct PictureError<E = DecodeError> {
    /// 0-based place in the request.
    pub(crate) index: usize,
    /// Pictures in the request (a lone picture is not numbered).
    pub(crate) count: usize,
    pub(crate) source: E,
}

impl<E: std::fmt::Display> std::fmt::Display for PictureError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.count > 1 {
            write!(f, "image {}: ", self.index + 1)?;
        }
        write!(f, "{}", self.source)
    }
}

impl<E: std::error::Error + 'static> std::error::Error for PictureError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<PictureError> for ApiError {
    fn from(e: PictureError) -> Self {
        Self::new(ErrorCode::from(&e.source), e.to_string())
    }
}

impl From<PictureError<BudgetError>> for ApiError {
    fn from(e: PictureError<BudgetError>) -> Self {
        match e.source {
            BudgetError::Never { .. } => Self::new(ErrorCode::ImageOverMemoryBudget, e.to_string()),
            // Busy is the server's state, not the picture's.
            BudgetError::Busy { .. } => Self::new(ErrorCode::Overloaded, e.source.to_string()),
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Busy(_) => Self::new(ErrorCode::Overloaded, e.to_string()),
            e => {
                tracing::error!(error = %e, "inference failed");
                Self::internal("inference failed; see the server log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Unready, RETRY_AFTER_S};

    #[test]
    fn messages_are_bounded_whatever_the_request_made_them_say() {
        let long = "é".repeat(100_000);
        let e = ApiError::new(ErrorCode::InvalidMultipart, long);
        assert_eq!(e.message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(e.message.ends_with('…'));
        let short = ApiError::new(ErrorCode::NotFound, "no such route");
        assert_eq!(short.message, "no such route");
    }

    #[test]
    fn codes_serialize_as_their_names() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
    }

    #[test]
    fn the_schema_s_enum_is_the_codes() {
        let schema = serde_json::to_value(<ErrorCode as utoipa::PartialSchema>::schema()).unwrap();
        let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(schema["enum"], serde_json::json!(names), "{schema}");
    }

    #[test]
    fn decode_errors_name_the_picture_only_in_a_batch() {
        let one = ApiError::from(PictureError {
            index: 0,
            count: 1,
            source: DecodeError::UnknownFormat,
        });
        assert_eq!(one.code, ErrorCode::InvalidImage);
        assert!(!one.message.starts_with("image"), "{}", one.message);
        let third = ApiError::from(PictureError {
            index: 2,
            count: 3,
            source: DecodeError::UnsupportedFormat("TIFF".into()),
        });
        assert_eq!(third.code, ErrorCode::UnsupportedImageFormat);
        assert_eq!(third.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(third.message.starts_with("image 3: "), "{}", third.message);
    }

    #[test]
    fn model_unavailable_says_when_to_retry_by_its_cause() {
        assert_eq!(ApiError::from(Unready::Loading).retry_after, None);
        assert_eq!(
            ApiError::from(Unready::Retrying("x".into())).retry_after,
            Some(RETRY_AFTER_S)
        );
        let busy = ApiError::from(BatchError::Busy(3));
        assert_eq!(
            (busy.code, busy.retry_after),
            (ErrorCode::Overloaded, Some(1))
        );
    }
}
