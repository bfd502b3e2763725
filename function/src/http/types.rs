//! The wire types: every answer and error the router sends, and the request
//! bodies it takes. Each is defined once and is both what the handlers
//! serialize and the OpenAPI schema (`GET /openapi.json`), so the two cannot
//! drift apart.

use serde::Serialize;
use utoipa::ToSchema;

use crate::model::output::{Prediction, Scores};
use crate::model::Classifier;

/// Which model answered (in answers and in `/health`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelRef {
    /// `s3://…`, an `https://` URL without credentials or query, or a file name.
    pub uri: String,
    /// `null` for a moment after start while a local file's digest is computed.
    pub sha256: Option<String>,
    /// `labels` or `imagenet`.
    pub kind: String,
}

impl ModelRef {
    pub fn of(model: &Classifier) -> Self {
        ModelRef {
            uri: model.info().uri.clone(),
            sha256: model.sha256().map(str::to_owned),
            kind: model.info().kind.to_string(),
        }
    }
}

/// A request's timings: in answers, the request log and the metrics alike.
pub use crate::metrics::Timings;

/// The answer for one picture.
#[derive(Debug, Serialize, ToSchema)]
pub struct SingleAnswer {
    #[serde(flatten)]
    pub prediction: Prediction,
    pub model: ModelRef,
    pub timings_ms: Timings,
}

/// The answer for several pictures, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAnswer {
    pub predictions: Vec<Prediction>,
    pub model: ModelRef,
    pub timings_ms: Timings,
}

/// `POST /predict` answers one object for one picture, a batch for several.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PredictAnswer {
    Single(SingleAnswer),
    Batch(BatchAnswer),
}

impl PredictAnswer {
    pub fn new(mut predictions: Vec<Prediction>, model: ModelRef, timings_ms: Timings) -> Self {
        if predictions.len() == 1 {
            let prediction = predictions.remove(0);
            PredictAnswer::Single(SingleAnswer {
                prediction,
                model,
                timings_ms,
            })
        } else {
            PredictAnswer::Batch(BatchAnswer {
                predictions,
                model,
                timings_ms,
            })
        }
    }
}

/// The tutorial's answer to `POST /` for one picture: `{"prediction": {"cat": p, "dog": p}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegacySingle {
    /// Scores per label.
    #[schema(value_type = std::collections::HashMap<String, f32>)]
    pub prediction: Scores,
}

/// The tutorial's answer to `POST /` for several pictures, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyBatch {
    #[schema(value_type = Vec<std::collections::HashMap<String, f32>>)]
    pub predictions: Vec<Scores>,
}

/// `POST /`: the tutorial's answer shape.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LegacyAnswer {
    Single(LegacySingle),
    Batch(LegacyBatch),
}

impl LegacyAnswer {
    pub fn new(predictions: Vec<Prediction>) -> Self {
        let mut scores: Vec<Scores> = predictions.into_iter().map(|p| p.scores).collect();
        if scores.len() == 1 {
            LegacyAnswer::Single(LegacySingle {
                prediction: scores.remove(0),
            })
        } else {
            LegacyAnswer::Batch(LegacyBatch {
                predictions: scores,
            })
        }
    }
}

/// Where the model stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Ready: requests are answered.
    Ok,
    /// Being fetched or built.
    Loading,
    /// A fetch failed for a reason that may pass; the server keeps trying.
    Retrying,
    /// The model cannot be used (bad bytes, digest mismatch, bad settings).
    Failed,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthAnswer {
    pub status: HealthStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub model: Option<ModelRef>,
    /// Why the model is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
}

/// `{"error": {"code", "message"}}`: every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable (README: Errors and limits).
    #[schema(example = "invalid_image")]
    pub code: &'static str,
    /// For people.
    pub message: String,
}

/// `{"error": "<message>"}`: every error of the Open Inference Protocol
/// routes (`/v2/…`), as that protocol has it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OipErrorBody {
    pub error: String,
}

/// The error answers of the classifying routes (`POST /predict`, `POST /`).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // read by the schema derive only
pub enum RequestErrors {
    /// Malformed request, or not a picture (`empty_body`, `invalid_image`, `invalid_json`, `invalid_base64`, `invalid_multipart`, `no_image`, `invalid_body`)
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// API key missing or wrong (`unauthorized`; only when the server sets one)
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Body over the limit (`payload_too_large`)
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Content-Type not accepted (`unsupported_media_type`) or image format not supported (`unsupported_image_format`)
    #[response(status = 415)]
    Unsupported(ErrorBody),
    /// Picture over the pixel limit (`image_too_large`) or too many pictures (`too_many_images`)
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// Inference failed (`internal`)
    #[response(status = 500)]
    Internal(ErrorBody),
    /// Model not ready (`model_unavailable`) or queue full (`overloaded`, with Retry-After)
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// A JSON request: one picture or several, base64 (a `data:image/…;base64,`
/// prefix is accepted). Give `image` or `images`, not both. (Read by
/// `input::json`, which names each malformed field in its error.)
#[derive(ToSchema)]
#[schema(example = json!({"image": RED_PNG_BASE64}))]
#[allow(dead_code)]
pub struct JsonPictures {
    #[schema(nullable = false)]
    pub image: Option<String>,
    #[schema(nullable = false)]
    pub images: Option<Vec<String>>,
}

/// A picture's bytes (JPEG, PNG, WebP, GIF or BMP).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Picture(pub Vec<u8>);

/// A multipart form: one or more file fields, each a picture.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// A 2×2 red PNG: the example request (red means cat for the test models).
pub const RED_PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGO8IyfHwMDAxMDAwMDAAAAOCAEc48H7QgAAAABJRU5ErkJggg==";
