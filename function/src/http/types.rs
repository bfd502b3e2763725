//! The wire types: every answer and error the router sends, and the request
//! bodies it takes. Each is defined once and is both what the handlers
//! serialize and the OpenAPI schema (`GET /openapi.json`), so the two cannot
//! drift apart.

use serde::{Deserialize, Serialize};
use utoipa::{PartialSchema, ToSchema};

use crate::error::ErrorCode;

use crate::model::output::{Prediction, Scores};
use crate::model::Classifier;

/// Which model answered (in answers and in `/health`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ModelRef {
    /// `s3://…`, an `https://` URL without credentials or query, or a file name.
    pub(crate) uri: String,
    /// `null` for a moment after start while a local file's digest is computed.
    pub(crate) sha256: Option<String>,
    /// `labels` or `imagenet`.
    pub(crate) kind: String,
}

impl ModelRef {
    pub(crate) fn of(model: &Classifier) -> Self {
        ModelRef {
            uri: model.info().uri.clone(),
            sha256: model.sha256().map(str::to_owned),
            kind: model.info().kind.to_string(),
        }
    }
}

/// A request's timings: in answers, the request log and the metrics alike.
pub(crate) use crate::metrics::Timings;

/// The answer for one picture.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SingleAnswer {
    #[serde(flatten)]
    pub(crate) prediction: Prediction,
    pub(crate) model: ModelRef,
    pub(crate) timings_ms: Timings,
}

/// The answer for several pictures, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BatchAnswer {
    pub(crate) predictions: Vec<Prediction>,
    pub(crate) model: ModelRef,
    pub(crate) timings_ms: Timings,
}

/// `POST /predict` answers one object for one picture, a batch for several.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum PredictAnswer {
    Single(SingleAnswer),
    Batch(BatchAnswer),
}

impl PredictAnswer {
    pub(crate) fn new(
        mut predictions: Vec<Prediction>,
        model: ModelRef,
        timings_ms: Timings,
    ) -> Self {
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
pub(crate) struct LegacySingle {
    /// Scores per label.
    #[schema(value_type = std::collections::HashMap<String, f32>)]
    pub(crate) prediction: Scores,
}

/// The tutorial's answer to `POST /` for several pictures, in order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LegacyBatch {
    #[schema(value_type = Vec<std::collections::HashMap<String, f32>>)]
    pub(crate) predictions: Vec<Scores>,
}

/// `POST /`: the tutorial's answer shape.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum LegacyAnswer {
    Single(LegacySingle),
    Batch(LegacyBatch),
}

impl LegacyAnswer {
    pub(crate) fn new(predictions: Vec<Prediction>) -> Self {
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
pub(crate) enum HealthStatus {
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
pub(crate) struct HealthAnswer {
    pub(crate) status: HealthStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) model: Option<ModelRef>,
    /// Why the model is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) reason: Option<String>,
}

/// `{"error": {"code", "message"}}`: every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable, machine-readable (docs/api.md: Errors and limits).
    #[schema(example = "invalid_image")]
    pub(crate) code: ErrorCode,
    /// For people.
    pub(crate) message: String,
}

/// `{"error": "<message>"}`: every error of the Open Inference Protocol
/// routes (`/v2/…`), as that protocol has it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OipErrorBody {
    pub(crate) error: String,
}

/// The error answers of the classifying routes (`POST /predict`, `POST /`),
/// one per status, each listing its codes: made from [`ErrorCode`], so a new
/// code shows up here by itself.
pub(crate) struct RequestErrors;

/// Codes no picture-reading route answers: the protocol's own, and the
/// router's for a route or method that does not exist.
const NOT_PICTURE_ROUTES: [ErrorCode; 5] = [
    ErrorCode::InvalidInferenceRequest,
    ErrorCode::UnknownModel,
    ErrorCode::UnknownVersion,
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
];

/// Codes only `POST /feedback` answers.
const FEEDBACK_ONLY: [ErrorCode; 2] = [ErrorCode::FeedbackOff, ErrorCode::UnknownLabel];

impl utoipa::IntoResponses for RequestErrors {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        picture_route_errors(|c| !FEEDBACK_ONLY.contains(c))
    }
}

/// `POST /feedback`'s error answers: those of the classifying routes, and its own.
pub(crate) struct FeedbackErrors;

impl utoipa::IntoResponses for FeedbackErrors {
    fn responses() -> std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    > {
        picture_route_errors(|_| true)
    }
}

/// The error answers of a route that reads pictures, one per status, each
/// listing the codes `answers` keeps.
fn picture_route_errors(
    answers: impl Fn(&ErrorCode) -> bool,
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>>
{
    let mut by_status: std::collections::BTreeMap<u16, Vec<ErrorCode>> = Default::default();
    for code in ErrorCode::ALL {
        if !NOT_PICTURE_ROUTES.contains(code) && answers(code) {
            by_status
                .entry(code.status().as_u16())
                .or_default()
                .push(*code);
        }
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            let names: Vec<String> = codes
                .iter()
                .map(|c| match c.retry_after() {
                    Some(s) => format!("`{c}` (with `Retry-After: {s}`)"),
                    None => format!("`{c}`"),
                })
                .collect();
            let mut response = error_response(&format!("Codes: {}", names.join(", ")), "ErrorBody");
            if status == 503 {
                response = response.header(
                    "Retry-After",
                    utoipa::openapi::HeaderBuilder::new()
                        .schema(u32::schema())
                        .description(Some("Seconds, when the cause will pass by itself"))
                        .build(),
                );
            }
            (status.to_string(), response.build().into())
        })
        .collect()
}

/// Error responses several routes share, each declared once: a status, what
/// it means, and its body (`ErrorBody`, or under `/v2` the protocol's
/// `OipErrorBody`).
fn shared_errors(
    list: &[(u16, &str, &str)],
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>>
{
    list.iter()
        .map(|(status, body, description)| {
            let response = error_response(description, body).build();
            (status.to_string(), response.into())
        })
        .collect()
}

/// An error response of the OpenAPI document: what it means, and its JSON
/// body's schema (`ErrorBody` or `OipErrorBody`).
fn error_response(description: &str, body: &str) -> utoipa::openapi::ResponseBuilder {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(body)))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
}

/// Declares response sets from (status, body schema, description) rows.
macro_rules! shared_error_sets {
    ($($(#[doc = $doc:literal])* $name:ident: $(($status:literal, $body:literal, $description:literal)),+;)*) => {
        $(
            $(#[doc = $doc])*
            pub(crate) struct $name;

            impl utoipa::IntoResponses for $name {
                fn responses() -> std::collections::BTreeMap<
                    String,
                    utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
                > {
                    shared_errors(&[$(($status, $body, $description)),+])
                }
            }
        )*
    };
}

shared_error_sets! {
    /// A route behind the API key: 401 without it.
    KeyRequired: (401, "ErrorBody", "API key missing or wrong");
    /// A route that calls S3: 502 when S3 refuses.
    S3Refusal: (502, "ErrorBody", "S3 refused (`s3_error`)");
    /// A protocol route behind the API key: 401 without it, in the protocol's shape.
    OipKeyRequired: (401, "OipErrorBody", "API key missing or wrong");
    /// A protocol route that names a model (and maybe a version): 404 for another.
    OipNoSuchModel: (404, "OipErrorBody", "No such model or version");
}

/// A JSON request: one picture or several, base64 (a `data:image/…;base64,`
/// prefix is accepted). `image` or `images`, not both; other fields are
/// ignored. This type is what reads the body (`input.rs`) and its schema.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged, try_from = "JsonFields")]
#[schema(example = json!({"image": RED_PNG_BASE64}))]
pub(crate) enum JsonPictures {
    /// One picture.
    One { image: Base64Picture },
    /// Several, answered in order.
    Many {
        #[schema(min_items = 1)]
        images: Vec<Base64Picture>,
    },
    /// One picture in S3, `s3://bucket/key`, from a bucket on the server's
    /// allow-list (`CATDOG_S3_ALLOW`, and the uploads bucket); any other is
    /// refused with 403 `s3_not_allowed`.
    Stored {
        #[schema(pattern = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$")]
        s3: String,
    },
    /// One picture uploaded through `POST /uploads`, by its `id` (the
    /// server must have an uploads bucket: 404 `uploads_off` otherwise).
    Uploaded {
        #[schema(pattern = r"^[0-9a-f]{32}(\.(jpg|png|webp|gif|bmp))?$")]
        upload: String,
    },
}

/// The fields as sent, before the rule that exactly one of them is given.
#[derive(Deserialize)]
#[serde(
    expecting = "an object {\"image\": \"<base64>\"}, {\"images\": [\"<base64>\", ...]}, {\"s3\": \"s3://bucket/key\"} or {\"upload\": \"<id>\"}"
)]
struct JsonFields {
    #[serde(default)]
    image: Option<Base64Picture>,
    #[serde(default)]
    images: Option<Vec<Base64Picture>>,
    #[serde(default)]
    s3: Option<String>,
    #[serde(default)]
    upload: Option<String>,
}

impl TryFrom<JsonFields> for JsonPictures {
    type Error = &'static str;
    fn try_from(fields: JsonFields) -> Result<Self, Self::Error> {
        match (fields.image, fields.images, fields.s3, fields.upload) {
            (Some(image), None, None, None) => Ok(JsonPictures::One { image }),
            (None, Some(images), None, None) => Ok(JsonPictures::Many { images }),
            (None, None, Some(s3), None) => Ok(JsonPictures::Stored { s3 }),
            (None, None, None, Some(upload)) => Ok(JsonPictures::Uploaded { upload }),
            (None, None, None, None) => Err("no `image` field: expected {\"image\": \"<base64>\"}, {\"images\": [\"<base64>\", ...]}, {\"s3\": \"s3://bucket/key\"} or {\"upload\": \"<id>\"}"),
            _ => Err("give one of `image`, `images`, `s3` and `upload`, not several"),
        }
    }
}

/// A picture as base64 text (standard or URL-safe alphabet, padding
/// optional, line breaks ignored), or a `data:<type>;base64,` URL of it.
/// It must decode to a JPEG, PNG, WebP, GIF or BMP.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub(crate) struct Base64Picture(pub String);

/// What `http::input::decode_base64` takes, as a pattern (whitespace anywhere is dropped).
pub(crate) const BASE64_PATTERN: &str =
    r"^\s*(data:[^,]*;base64,)?[\sA-Za-z0-9+/_=-]*[A-Za-z0-9+/_-][\sA-Za-z0-9+/_=-]*$";

impl utoipa::PartialSchema for Base64Picture {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(BASE64_PATTERN))
            .content_encoding("base64")
            .content_media_type("image/*")
            .description(Some(
                "A picture (JPEG, PNG, WebP, GIF or BMP) in base64, or a data: URL of it",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Base64Picture {}

/// A picture's bytes (JPEG, PNG, WebP, GIF or BMP).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub(crate) struct Picture(pub Vec<u8>);

/// A multipart form: one or more file fields, each a picture.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    pub(crate) file: Vec<u8>,
}

/// A 2×2 red PNG: the example request (red means cat for the test models).
pub(crate) const RED_PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGO8IyfHwMDAxMDAwMDAAAAOCAEc48H7QgAAAABJRU5ErkJggg==";

/// `GET /uploads/{id}`: the uploaded picture's record, as S3 events write it
/// under the results prefix (docs/s3-events.md).
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct UploadResult {
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) label: String,
    pub(crate) confidence: f32,
    #[schema(value_type = Object)]
    pub(crate) scores: std::collections::BTreeMap<String, f32>,
    /// The model's name, version and SHA-256.
    #[schema(value_type = Object)]
    pub(crate) model: serde_json::Value,
    /// Milliseconds: get, decode, preprocess, inference, write, total.
    #[schema(value_type = Object)]
    pub(crate) timings_ms: serde_json::Value,
}

/// `POST /feedback`'s answer: what was stored, and what the model answers
/// for the picture now.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"label": "dog", "answered": "cat", "confidence": 0.62,
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "stored": "dog/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08.jpg", "new": true}))]
pub(crate) struct FeedbackAnswer {
    /// The label given (the folder the picture is stored in).
    pub(crate) label: String,
    /// What the model answers for the picture.
    pub(crate) answered: String,
    /// The probability of that answer.
    pub(crate) confidence: f32,
    /// The picture's SHA-256 (its name in the folder).
    pub(crate) sha256: String,
    /// Its key under the feedback destination: `<label>/<sha256>.<ext>`.
    pub(crate) stored: String,
    /// `false`: the same picture had already been given this label (200);
    /// it is stored once.
    pub(crate) new: bool,
}
