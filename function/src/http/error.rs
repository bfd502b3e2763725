//! The one error shape every route answers with:
//! `{"error": {"code": "...", "message": "..."}}` and a fitting status.
//!
//! The codes are one vocabulary, [`ErrorCode`]: each code has its status
//! and its `Retry-After` there and nowhere else, and is the OpenAPI
//! schema's `enum` for `code`. Each layer keeps its own error type
//! ([`DecodeError`], [`BatchError`], the request readers' [`InputError`],
//! the Open Inference Protocol's `InferError`, the model's [`Unready`]),
//! and a `From` conversion turns it into an [`ApiError`], choosing its code
//! once (as text-embeddings-inference's `From<TextEmbeddingsError> for
//! ErrorResponse` does). The README's table is checked against the enum by
//! the test at the end of this file.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::batcher::BatchError;
use crate::decode::DecodeError;
use crate::http::code::ErrorCode;
use crate::http::input::InputError;
use crate::http::types::{ErrorBody, ErrorDetail, OipErrorBody};
use crate::memory::BudgetError;

/// An error answer. `code` is stable and machine-readable; `message` is for
/// people. It rides on its response as an extension, so the request log can
/// name it and the Open Inference Protocol routes can re-shape it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u32>,
}

/// The longest message an error answer carries: whatever a request made
/// it say (field names, paths), the answer stays small.
pub const MAX_MESSAGE_CHARS: usize = 1024;

impl ApiError {
    /// An answer with `code`'s status and `Retry-After`; the message is
    /// cut to [`MAX_MESSAGE_CHARS`].
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: bounded(message.into()),
            retry_after: code.retry_after(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// 500: what failed goes to the log, not to the client.
    pub fn internal(message: impl Into<String>) -> Self {
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

/// Why there is no model to answer with (a 503). The cause decides the
/// `Retry-After`: a fetch being retried or a digest being computed will
/// pass; a load that failed will not by itself.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unready {
    #[error("the model is still loading; retry in a few seconds")]
    Loading,
    #[error("the model could not be fetched yet ({0}); the server keeps trying")]
    Retrying(String),
    #[error("the model failed to load: {0}")]
    Failed(String),
    #[error("the model's version (its SHA-256) is still being computed; retry in a moment")]
    VersionPending,
}

/// Seconds a client is told to wait while the server retries a fetch.
pub const RETRY_AFTER_S: u32 = 5;

impl From<Unready> for ApiError {
    fn from(e: Unready) -> Self {
        let retry_after = match e {
            Unready::Retrying(_) => Some(RETRY_AFTER_S),
            Unready::VersionPending => Some(1),
            Unready::Loading | Unready::Failed(_) => None,
        };
        Self {
            retry_after,
            ..Self::new(ErrorCode::ModelUnavailable, e.to_string())
        }
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
pub struct PictureError<E = DecodeError> {
    /// 0-based place in the request.
    pub index: usize,
    /// Pictures in the request (a lone picture is not numbered).
    pub count: usize,
    pub source: E,
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

/// axum's refusal of a small JSON body (`POST /uploads`).
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as R;
        let code = match &e {
            R::MissingJsonContentType(_) => ErrorCode::UnsupportedMediaType,
            R::BytesRejection(_) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                ErrorCode::PayloadTooLarge
            }
            R::BytesRejection(_) => ErrorCode::InvalidBody,
            _ => ErrorCode::InvalidJson,
        };
        Self::new(code, e.body_text())
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        Self::new(ErrorCode::from(&e), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
        };
        let mut res = (self.status(), Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        res.extensions_mut().insert(self);
        res
    }
}

/// An error answer in the Open Inference Protocol's shape, `{"error":
/// "<message>"}` (what tritonclient and the kserve SDK read), keeping its
/// status and headers (`Retry-After`, `WWW-Authenticate`, CORS). Answers
/// that are not errors pass unchanged.
pub fn in_oip_shape(res: Response) -> Response {
    let Some(error) = res.extensions().get::<ApiError>().cloned() else {
        return res;
    };
    let (mut parts, _) = res.into_parts();
    let body = serde_json::to_vec(&OipErrorBody {
        error: error.message,
    })
    .unwrap_or_default();
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's "Errors and limits" table, as (codes, statuses, Retry-After) rows.
    fn readme_table() -> Vec<(Vec<String>, Vec<u16>, Option<u32>)> {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("\n### Errors and limits\n")
            .nth(1)
            .expect("README has a section \"Errors and limits\"");
        let backticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        section
            .lines()
            .skip_while(|l| !l.starts_with("| status | code |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let (status, codes) = (cells[1], cells[2]);
                let statuses = status
                    .split(|c: char| !c.is_ascii_digit())
                    .filter(|n| n.len() == 3)
                    .map(|n| n.parse().unwrap())
                    .collect();
                let retry_after = backticked(status).iter().find_map(|h| {
                    h.strip_prefix("Retry-After: ")
                        .map(|s| s.parse().expect("a number of seconds"))
                });
                (backticked(codes), statuses, retry_after)
            })
            .collect()
    }

    #[test]
    fn the_readme_lists_every_code_with_its_status_and_no_other() {
        let table = readme_table();
        assert!(table.len() > 10, "the table was not found: {table:?}");
        let mut listed = Vec::new();
        for (codes, statuses, retry_after) in &table {
            assert!(
                statuses.len() == 1 || statuses.len() == codes.len(),
                "row {codes:?}: give one status, or one per code ({statuses:?})"
            );
            for (i, name) in codes.iter().enumerate() {
                let code = ErrorCode::ALL
                    .iter()
                    .find(|c| c.as_str() == name)
                    .unwrap_or_else(|| panic!("README lists `{name}`, which ErrorCode lacks"));
                let status = statuses[if statuses.len() == 1 { 0 } else { i }];
                assert_eq!(code.status().as_u16(), status, "`{name}`'s status");
                assert_eq!(code.retry_after(), *retry_after, "`{name}`'s Retry-After");
                listed.push(*code);
            }
        }
        for code in ErrorCode::ALL {
            assert!(
                listed.contains(code),
                "`{code}` is not in the README's table (section Errors and limits)"
            );
        }
    }

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
