//! The one error shape every route answers with:
//! `{"error": {"code": "...", "message": "..."}}` and a fitting status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::decode::DecodeError;
use crate::http::types::{ErrorBody, ErrorDetail, OipErrorBody};

/// An error answer. `code` is stable and machine-readable; `message` is for
/// people. It rides on its response as an extension, so the request log can
/// name it and the Open Inference Protocol routes can re-shape it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (overload answers).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 503 with `Retry-After`: more work arrived than the server holds.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is over the limit of {limit} bytes"),
        )
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_unavailable",
            message,
        )
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// A decoding error for the picture at `index` of `count`.
    pub fn from_decode(e: DecodeError, index: usize, count: usize) -> Self {
        let (status, code) = match e {
            DecodeError::Empty
            | DecodeError::UnknownFormat
            | DecodeError::Corrupt(_)
            | DecodeError::ZeroSized { .. } => (StatusCode::BAD_REQUEST, "invalid_image"),
            DecodeError::UnsupportedFormat(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_image_format",
            ),
            DecodeError::TooLarge { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "image_too_large"),
        };
        let message = if count > 1 {
            format!("image {}: {e}", index + 1)
        } else {
            e.to_string()
        };
        Self::new(status, code, message)
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
        let mut res = (self.status, Json(body)).into_response();
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
