//! Why an infer request (or a model route) is refused.

use crate::error::ApiError;
use crate::error::ErrorCode;
use crate::http::input::InputError;
use crate::pipeline::Unready;

/// Why an infer request (or a model route) is refused: the protocol's own
/// errors, and those it shares with `/predict` ([`InputError`], [`Unready`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum InferError {
    /// Inputs, outputs, shapes, datatypes or binary framing catdog cannot take.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("unknown model `{asked}`: this server serves `{serves}`")]
    UnknownModel { asked: String, serves: String },
    #[error("model `{name}` has no version `{asked}`; it serves version `{serves}`")]
    UnknownVersion {
        name: String,
        asked: String,
        serves: String,
    },
    #[error("Content-Encoding {0:?} is not accepted: send the request uncompressed")]
    Compressed(String),
    #[error(transparent)]
    Unready(#[from] Unready),
}

impl From<InferError> for ApiError {
    fn from(e: InferError) -> Self {
        let code = match e {
            InferError::Invalid(_) => ErrorCode::InvalidInferenceRequest,
            InferError::Input(e) => return e.into(),
            InferError::Unready(e) => return e.into(),
            InferError::UnknownModel { .. } => ErrorCode::UnknownModel,
            InferError::UnknownVersion { .. } => ErrorCode::UnknownVersion,
            InferError::Compressed(_) => ErrorCode::UnsupportedMediaType,
        };
        ApiError::new(code, e.to_string())
    }
}

pub(super) fn bad(message: impl Into<String>) -> InferError {
    InferError::Invalid(message.into())
}
