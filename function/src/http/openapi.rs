//! The OpenAPI document of the router, generated from the handlers'
//! `#[utoipa::path]` annotations and the answer types, served at
//! `GET /openapi.json` (and checked against the live server by schemathesis
//! in tests/openapi.rs).
//!
//! The envelope types below describe JSON the handlers build with
//! borrowed data; they exist for the schema only.

#![allow(dead_code)] // fields are read by the schema derive, not by code

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::routes;
use crate::model::output::{Prediction, TopClass};
use crate::model::{ContractSource, ModelInfo, OutputInfo, TensorInfo};

/// `{"error": {"code", "message"}}`: every error answer.
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable (README: Errors and limits).
    #[schema(example = "invalid_image")]
    pub code: String,
    /// For people.
    pub message: String,
}

/// The error answers of the classifying routes (`POST /predict`, `POST /`).
#[derive(utoipa::IntoResponses)]
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

/// The answer for one picture.
#[derive(ToSchema, serde::Serialize)]
pub struct SingleAnswer {
    pub label: String,
    pub confidence: f32,
    #[schema(value_type = std::collections::HashMap<String, f32>)]
    pub scores: (),
    #[schema(nullable = false)]
    pub imagenet_top5: Option<Vec<TopClass>>,
    pub model: routes::ModelRef<'static>,
    pub timings_ms: routes::Timings,
}

/// The answer for several pictures, in request order.
#[derive(ToSchema, serde::Serialize)]
pub struct BatchAnswer {
    pub predictions: Vec<Prediction>,
    pub model: routes::ModelRef<'static>,
    pub timings_ms: routes::Timings,
}

/// `POST /predict` answers one object for one picture, a batch for several.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
pub enum PredictAnswer {
    Single(SingleAnswer),
    Batch(BatchAnswer),
}

/// A JSON request: one picture or several, base64 (a `data:image/…;base64,`
/// prefix is accepted). Give `image` or `images`, not both.
#[derive(ToSchema)]
#[schema(example = json!({"image": RED_PNG_BASE64}))]
pub struct JsonPictures {
    #[schema(nullable = false)]
    pub image: Option<String>,
    #[schema(nullable = false)]
    pub images: Option<Vec<String>>,
}

/// A picture's bytes (JPEG, PNG, WebP, GIF or BMP).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Picture(pub Vec<u8>);

/// A 2×2 red PNG: the example request (red means cat for the test models).
pub const RED_PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGO8IyfHwMDAxMDAwMDAAAAOCAEc48H7QgAAAABJRU5ErkJggg==";

/// A multipart form: one or more file fields, each a picture.
#[derive(ToSchema)]
pub struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// `GET /health`.
#[derive(ToSchema)]
pub struct HealthBody {
    /// `ok`, `loading`, `retrying` (a fetch failed; the server keeps trying) or `failed`.
    pub status: String,
    #[schema(nullable = false)]
    pub model: Option<routes::ModelRef<'static>>,
    /// Why the model is not ready.
    #[schema(nullable = false)]
    pub reason: Option<String>,
}

/// The tutorial's answer to `POST /`: `{"prediction": {"cat": p, "dog": p}}`.
#[derive(ToSchema)]
pub struct LegacyAnswer {
    /// One picture: scores per label.
    #[schema(value_type = Option<std::collections::HashMap<String, f32>>, nullable = false)]
    pub prediction: Option<()>,
    /// Several pictures: scores per label for each, in order.
    #[schema(value_type = Option<Vec<std::collections::HashMap<String, f32>>>, nullable = false)]
    pub predictions: Option<()>,
}

/// Declares the API key schemes (used only when the server sets one).
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "catdog",
        description = "Cat or dog? An ONNX image classifier. The same API on AWS Lambda, `catdog serve` and the notebook's tunnel. \
                       With an API key set (CATDOG_API_KEY), every route but `/`, `/health` and `/openapi.json` needs \
                       `Authorization: Bearer KEY` or `X-API-Key: KEY`, and answers 401 otherwise."
    ),
    paths(routes::predict, routes::legacy_predict, routes::health, routes::model_info, routes::page, openapi_json),
    components(schemas(
        ErrorBody, ErrorDetail, Picture, routes::ModelRef, SingleAnswer, BatchAnswer, PredictAnswer, JsonPictures, UploadForm,
        HealthBody, LegacyAnswer, Prediction, TopClass, ModelInfo, TensorInfo, OutputInfo, ContractSource,
        routes::Timings
    )),
    modifiers(&Security)
)]
pub struct ApiDoc;

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
});

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

/// The document as a value (tests, the CLI).
pub fn document() -> serde_json::Value {
    serde_json::from_str(&DOCUMENT).unwrap_or_default()
}
