//! The handlers. Every host (Lambda, `catdog serve`, the notebook and its
//! tunnel) serves exactly these, through the router of `http/mod.rs`. Each returns a
//! wire type of [`crate::http::types`] or an [`ApiError`].

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use bytes::Bytes;

use crate::error::ApiError;
use crate::error::ErrorCode;
use crate::http::access::{has_key, LocalCaller};
use crate::http::input::{read_images, OtherTypes, Pictures};
use crate::http::query::PredictQuery;
use crate::http::state::AppState;
use crate::http::types::{
    ErrorBody, HealthAnswer, HealthStatus, JsonPictures, KeyRequired, LegacyAnswer, ModelRef,
    Picture, PredictAnswer, RequestErrors, Timings, UploadForm,
};
use crate::http::uploads::check_upload_id;
use crate::model::output::Prediction;
use crate::objects::uploads_off;
use crate::pipeline::{self, Payload, RETRY_AFTER_S};
use crate::pipeline::{ModelState, Ready};

/// The pictures of a request, in order: from its body, or fetched from S3
/// when it names one (`{"s3": …}`, `{"upload": …}`).
pub(crate) async fn request_pictures(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    other: OtherTypes,
) -> Result<Vec<Bytes>, ApiError> {
    let max = state.limits.max_object_bytes;
    let stored = state.stored_pictures.as_ref();
    match read_images(headers, body, &state.limits, other).await? {
        Pictures::Bytes(images) => Ok(images),
        Pictures::Stored(uri) => {
            let Some(stored) = stored else {
                let message = format!(
                    "{uri}: this server reads no bucket (CATDOG_S3_ALLOW names those it may)"
                );
                return Err(ApiError::new(ErrorCode::S3NotAllowed, message));
            };
            Ok(vec![stored.fetch(uri, max).await?])
        }
        Pictures::Uploaded(id) => {
            let stored = stored.ok_or_else(uploads_off)?;
            check_upload_id(&id)?;
            Ok(vec![stored.fetch_upload(id, max).await?])
        }
    }
}

/// Reads, decodes and classifies the pictures of a request.
async fn classify_request(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    other: OtherTypes,
    explain: bool,
) -> Result<(Ready, Vec<Prediction>, Timings), ApiError> {
    let started = Instant::now();
    let ready = state.ready_model()?;
    let images = request_pictures(state, headers, body, other).await?;
    let read = started.elapsed().as_secs_f64() * 1e3;
    let (predictions, timings) = pipeline::run(
        &ready,
        Payload::Encoded(images),
        &state.limits,
        explain,
        started,
        read,
    )
    .await?;
    Ok((ready, predictions, timings))
}

/// An answer, carrying its timings for the request log and the metrics.
pub(crate) fn with_timings(body: impl IntoResponse, timings: Timings) -> Response {
    let mut res = body.into_response();
    res.extensions_mut().insert(timings);
    res
}

/// A classifying route: the request body every one of them accepts, the
/// error answers they share, and the 200 answer that is theirs alone.
macro_rules! classify_route {
    ($path:literal, $answer:ty, $described:literal, $handler:item) => {
        classify_route!($path, (), $answer, $described, $handler);
    };
    ($path:literal, ($($params:ty)?), $answer:ty, $described:literal, $handler:item) => {
        #[utoipa::path(post, path = $path, tag = "classify", params($($params)?),
            request_body(description = "The picture(s): a raw image body, a multipart form with one or more files, or JSON with base64", content(
                (Picture = "image/jpeg"), (Picture = "image/png"), (Picture = "image/webp"),
                (Picture = "image/gif"), (Picture = "image/bmp"), (Picture = "application/octet-stream"),
                (UploadForm = "multipart/form-data"),
                (JsonPictures = "application/json"))),
            responses((status = 200, description = $described, body = $answer), RequestErrors))]
        $handler
    };
}

classify_route!(
    "/predict",
    (PredictQuery),
    PredictAnswer,
    "The answer (one picture) or the answers in order (several)",
    /// `POST /predict`: one picture → one answer; several → `{"predictions": [...]}`.
    pub(crate) async fn predict(
        State(state): State<AppState>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response, ApiError> {
        let query = PredictQuery::parse(uri.query())?;
        let (ready, predictions, timings) =
            classify_request(&state, &headers, body, OtherTypes::Refuse, query.explain()).await?;
        let answer = PredictAnswer::new(predictions, ModelRef::of(&ready.classifier), timings);
        Ok(with_timings(Json(answer), timings))
    }
);

classify_route!(
    "/",
    LegacyAnswer,
    "Scores per label",
    /// `POST /`: the tutorial's endpoint, kept for its front end:
    /// `{"image": "<base64>"}` → `{"prediction": {"cat": p, "dog": p}}`.
    pub(crate) async fn legacy_predict(
        State(state): State<AppState>,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response, ApiError> {
        // Any other Content-Type is read as JSON, as the tutorial's backend did.
        let (_, predictions, timings) =
            classify_request(&state, &headers, body, OtherTypes::AsJson, false).await?;
        Ok(with_timings(Json(LegacyAnswer::new(predictions)), timings))
    }
);

/// `GET /health`: 200 once the model is loaded, 503 otherwise. Which
/// model, and why it is not ready (which may name buckets, keys or S3's
/// words), only to a caller with the key or on a keyless loopback server.
#[utoipa::path(get, path = "/health", tag = "meta",
    responses(
        (status = 200, description = "Ready (`model` for a caller with the key)", body = HealthAnswer),
        (status = 503, description = "Loading, retrying a fetch, or failed; `reason` says why to a caller with the key", body = HealthAnswer),
    ))]
pub(crate) async fn health(
    State(state): State<AppState>,
    headers: HeaderMap,
    local: Option<axum::Extension<LocalCaller>>,
) -> Response {
    let (status, model, reason) = match state.model() {
        ModelState::Ready(r) => (HealthStatus::Ok, Some(ModelRef::of(&r.classifier)), None),
        ModelState::Loading => (HealthStatus::Loading, None, None),
        ModelState::Retrying(reason) => (HealthStatus::Retrying, None, Some(reason)),
        ModelState::Failed(reason) => (HealthStatus::Failed, None, Some(reason)),
    };
    let (model, reason) = if local.is_some() || has_key(&state.access, &headers) {
        (model, reason)
    } else {
        (None, None)
    };
    let code = if status == HealthStatus::Ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut res = (
        code,
        Json(HealthAnswer {
            status,
            model,
            reason,
        }),
    )
        .into_response();
    if status == HealthStatus::Retrying {
        res.headers_mut()
            .insert(header::RETRY_AFTER, RETRY_AFTER_S.into());
    }
    res
}

/// `GET /model`: labels, input shape, preprocessing, source, SHA-256, size.
#[utoipa::path(get, path = "/model", tag = "meta",
    responses(
        (status = 200, description = "The model answering", body = crate::model::ModelInfo),
        (status = 503, description = "Model not ready", body = ErrorBody),
        KeyRequired,
    ))]
pub(crate) async fn model_info(
    State(state): State<AppState>,
) -> Result<Json<crate::model::ModelInfo>, ApiError> {
    Ok(Json(state.ready_model()?.classifier.info_now()))
}

/// `GET /metrics`: requests, stage timings, batch sizes, the model, in the
/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
        KeyRequired,
    ))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.set_model(state.model_labels());
    if let ModelState::Ready(ready) = state.model() {
        state
            .metrics
            .set_memory(ready.budget.info().bytes, ready.budget.in_use());
    }
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

const PAGE: &str = include_str!("../../assets/index.html");

/// `GET /`: the upload page (no external resources: it works offline).
#[utoipa::path(get, path = "/", tag = "page",
    responses((status = 200, description = "The upload page", content_type = "text/html", body = String)))]
pub(crate) async fn page(State(state): State<AppState>) -> Response {
    // The page sends a picture over the body limit through /uploads.
    // Its "Wrong? It is a …" buttons only where corrections are stored.
    let page = PAGE
        .replace(
            "__MAX_BODY_BYTES__",
            &state.limits.max_body_bytes.to_string(),
        )
        .replace("__FEEDBACK__", &state.feedback.is_some().to_string());
    ([(header::CACHE_CONTROL, "no-cache")], Html(page)).into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such route; see GET / for the page, POST /predict to classify",
    )
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}
