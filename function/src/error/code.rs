//! The error vocabulary: every code an answer can carry, with its status and
//! its `Retry-After`, declared once. It is a wire type (the `code` of every
//! error body and its schema's `enum`), so it sits below the wire types and
//! imports nothing of `http`.

use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// Declares [`ErrorCode`] from one table, so that the wire name, the
/// status and the list of every code cannot disagree.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal, $status:ident;)*) => {
        /// A stable, machine-readable error code (docs/api.md: Errors and limits).
        ///
        /// The wire names are the variants' in snake_case (serde and the
        /// schema both read `rename_all`); `as_str` spells them out, and a
        /// test checks that the three agree.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub(crate) enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in the order of its declaration.
            pub(crate) const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code on the wire (`snake_case`).
            pub(crate) const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }

            /// The status every answer with this code has.
            pub(crate) const fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)*
                }
            }
        }
    };
}

error_codes! {
    /// No bytes.
    EmptyBody = "empty_body", BAD_REQUEST;
    /// The body could not be read off the connection.
    InvalidBody = "invalid_body", BAD_REQUEST;
    /// Not JSON, or JSON of the wrong shape or types.
    InvalidJson = "invalid_json", BAD_REQUEST;
    /// A picture's base64 (or `data:` URL) is malformed.
    InvalidBase64 = "invalid_base64", BAD_REQUEST;
    /// A malformed multipart body.
    InvalidMultipart = "invalid_multipart", BAD_REQUEST;
    /// The request holds no picture.
    NoImage = "no_image", BAD_REQUEST;
    /// Not a picture, truncated or corrupt.
    InvalidImage = "invalid_image", BAD_REQUEST;
    /// A v2 inference request catdog cannot take.
    InvalidInferenceRequest = "invalid_inference_request", BAD_REQUEST;
    /// A path parameter that cannot be read (not valid UTF-8 once
    /// percent-decoded, …).
    InvalidPath = "invalid_path", BAD_REQUEST;
    /// A query parameter the route does not know, or a value it cannot read.
    InvalidQuery = "invalid_query", BAD_REQUEST;
    /// `POST /feedback` naming a label the model does not have.
    UnknownLabel = "unknown_label", BAD_REQUEST;
    /// An `/uploads/{id}` that is not one `POST /uploads` gives.
    InvalidUploadId = "invalid_upload_id", BAD_REQUEST;
    /// The API key is missing or wrong.
    Unauthorized = "unauthorized", UNAUTHORIZED;
    /// `/predict {"s3": …}` naming a bucket that is not on the allow-list,
    /// or a key with `.` or `..` segments.
    S3NotAllowed = "s3_not_allowed", FORBIDDEN;
    /// No such route.
    NotFound = "not_found", NOT_FOUND;
    /// A v2 route naming another model.
    UnknownModel = "unknown_model", NOT_FOUND;
    /// A v2 route naming another version.
    UnknownVersion = "unknown_version", NOT_FOUND;
    /// `/uploads` on a server with no uploads bucket (`CATDOG_UPLOADS`).
    UploadsOff = "uploads_off", NOT_FOUND;
    /// `POST /feedback` on a server with no feedback destination (`CATDOG_FEEDBACK`).
    FeedbackOff = "feedback_off", NOT_FOUND;
    /// The S3 object does not exist (not uploaded yet, or deleted).
    NoSuchKey = "no_such_key", NOT_FOUND;
    /// The route does not take that method.
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED;
    /// The body did not arrive in time (no bytes for the body timeout, or
    /// not all of it within the request timeout).
    RequestTimeout = "request_timeout", REQUEST_TIMEOUT;
    /// A keyless server bound to loopback asked for another host by name
    /// (DNS rebinding).
    MisdirectedRequest = "misdirected_request", MISDIRECTED_REQUEST;
    /// The body is over the limit.
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE;
    /// The request line and headers are over 64 KiB.
    RequestHeadTooLarge = "request_head_too_large", REQUEST_HEADER_FIELDS_TOO_LARGE;
    /// A Content-Type (or Content-Encoding) that is not accepted.
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    /// A known picture format that is not supported (TIFF, …).
    UnsupportedImageFormat = "unsupported_image_format", UNSUPPORTED_MEDIA_TYPE;
    /// A picture over the pixel limit.
    ImageTooLarge = "image_too_large", UNPROCESSABLE_ENTITY;
    /// A picture whose decoding needs more memory than the whole memory
    /// budget (`CATDOG_MEMORY_BUDGET`, or the function's memory on Lambda).
    ImageOverMemoryBudget = "image_over_memory_budget", PAYLOAD_TOO_LARGE;
    /// More pictures than the batch limit.
    TooManyImages = "too_many_images", UNPROCESSABLE_ENTITY;
    /// Inference failed (details in the log only).
    Internal = "internal", INTERNAL_SERVER_ERROR;
    /// S3 refused catdog's own request (its role lacks a permission, …).
    S3Error = "s3_error", BAD_GATEWAY;
    /// The model is loading, failed, or not fetched yet.
    ModelUnavailable = "model_unavailable", SERVICE_UNAVAILABLE;
    /// More requests wait for the model than the queue holds, or a picture
    /// waited too long for the memory budget.
    Overloaded = "overloaded", SERVICE_UNAVAILABLE;
    /// S3 is throttling, failing or out of reach; it may pass.
    S3Unavailable = "s3_unavailable", SERVICE_UNAVAILABLE;
    /// The work would not finish before the request's deadline (Lambda's
    /// invoke deadline less a margin, or the request timeout).
    DeadlineExceeded = "deadline_exceeded", SERVICE_UNAVAILABLE;
}

impl ErrorCode {
    /// The `Retry-After` (seconds) that every answer with this code carries.
    /// `model_unavailable` carries one only when its cause will pass by
    /// itself, which `Unready` (in `pipeline::model`) knows, not the code.
    pub(crate) const fn retry_after(self) -> Option<u32> {
        match self {
            ErrorCode::Overloaded | ErrorCode::S3Unavailable | ErrorCode::DeadlineExceeded => {
                Some(1)
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
