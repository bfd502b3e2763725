//! The handlers. Every host (Lambda, `catdog serve`, the notebook's tunnel)
//! serves exactly these, through [`super::router`].

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;

use super::error::ApiError;
use super::input::read_images;
use crate::batcher::{BatchError, Batcher};
use crate::decode::decode_rgb;
use crate::model::output::{Prediction, Scores};
use crate::model::Classifier;
use crate::state::{AppState, ModelSlot};

/// Timings of one classification request, in milliseconds; also logged.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct Timings {
    pub read: f64,
    pub decode: f64,
    pub preprocess: f64,
    pub inference: f64,
    /// Waiting for the inference thread (behind other batches).
    pub queue: f64,
    pub total: f64,
    #[serde(skip)]
    pub images: usize,
    /// Pictures in the micro-batch this request ran in (its own included).
    #[serde(rename = "batch_images")]
    pub batch: usize,
}

/// Which model answered (in answers and in `/health`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ModelRef<'a> {
    uri: &'a str,
    /// `null` for a moment after start while a local file's digest is computed.
    sha256: Option<&'a str>,
    /// `labels` or `imagenet`.
    kind: &'a str,
}

impl<'a> ModelRef<'a> {
    fn of(model: &'a Classifier) -> Self {
        ModelRef {
            uri: &model.info().uri,
            sha256: model.sha256(),
            kind: model.info().kind,
        }
    }
}

#[derive(Serialize)]
struct Single<'a> {
    #[serde(flatten)]
    prediction: &'a Prediction,
    model: ModelRef<'a>,
    timings_ms: Timings,
}

#[derive(Serialize)]
struct Batch<'a> {
    predictions: &'a [Prediction],
    model: ModelRef<'a>,
    timings_ms: Timings,
}

fn ready_model(state: &AppState) -> Result<(Arc<Classifier>, Batcher), ApiError> {
    match state.ready_model() {
        Ok(ready) => Ok(ready),
        Err(ModelSlot::Ready(_)) => Err(ApiError::unavailable("the model is being installed")),
        Err(ModelSlot::Loading) => Err(ApiError::unavailable(
            "the model is still loading; retry in a few seconds",
        )),
        Err(ModelSlot::Retrying(reason)) => Err(ApiError {
            retry_after: Some(5),
            ..ApiError::unavailable(format!(
                "the model could not be fetched yet ({reason}); the server keeps trying"
            ))
        }),
        Err(ModelSlot::Failed(reason)) => Err(ApiError::unavailable(format!(
            "the model failed to load: {reason}"
        ))),
    }
}

/// Reads, decodes and classifies the pictures of a request.
async fn classify_request(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Arc<Classifier>, Vec<Prediction>, Timings), ApiError> {
    let started = Instant::now();
    let (model, batcher) = ready_model(state)?;
    let images: Vec<Bytes> = read_images(headers, body, &state.limits).await?;
    let read = started.elapsed().as_secs_f64() * 1e3;
    let limits = state.limits.decode;
    let count = images.len();
    // Decoding is CPU-bound: keep it off the async workers.
    let (pictures, decode) = tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        let pictures = images
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                decode_rgb(bytes, limits).map_err(|e| ApiError::from_decode(e, i, count))
            })
            .collect::<Result<Vec<_>, _>>();
        (pictures, t0.elapsed().as_secs_f64() * 1e3)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "decoding task failed");
        ApiError::internal("decoding failed; see the server log")
    })?;
    let answer = batcher.classify(pictures?).await.map_err(|e| match e {
        BatchError::Busy(_) => ApiError::overloaded(e.to_string()),
        e => {
            tracing::error!(error = %e, "inference failed");
            ApiError::internal("inference failed; see the server log")
        }
    })?;
    let timings = Timings {
        read,
        decode,
        preprocess: answer.timings.preprocess,
        inference: answer.timings.inference,
        queue: answer.queued_ms,
        total: started.elapsed().as_secs_f64() * 1e3,
        images: count,
        batch: answer.batch_pictures,
    };
    Ok((model, answer.predictions, timings))
}

fn with_timings(mut res: Response, timings: Timings) -> Response {
    res.extensions_mut().insert(timings);
    res
}

/// `POST /predict`: one picture → one answer; several → `{"predictions": [...]}`.
#[utoipa::path(post, path = "/predict", tag = "classify",
    request_body(description = "The picture(s): a raw image body, a multipart form with one or more files, or JSON with base64", content(
        (super::openapi::Picture = "image/jpeg"), (super::openapi::Picture = "image/png"), (super::openapi::Picture = "image/webp"),
        (super::openapi::Picture = "image/gif"), (super::openapi::Picture = "image/bmp"), (super::openapi::Picture = "application/octet-stream"),
        (super::openapi::UploadForm = "multipart/form-data"),
        (super::openapi::JsonPictures = "application/json"))),
    responses(
        (status = 200, description = "The answer (one picture) or the answers in order (several)", body = super::openapi::PredictAnswer),
        super::openapi::RequestErrors,
    ))]
pub async fn predict(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match classify_request(&state, &headers, body).await {
        Ok((model, predictions, timings)) => {
            let model_ref = ModelRef::of(&model);
            let res = if predictions.len() == 1 {
                Json(Single {
                    prediction: &predictions[0],
                    model: model_ref,
                    timings_ms: timings,
                })
                .into_response()
            } else {
                Json(Batch {
                    predictions: &predictions,
                    model: model_ref,
                    timings_ms: timings,
                })
                .into_response()
            };
            with_timings(res, timings)
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /`: the tutorial's endpoint, kept for its front end:
/// `{"image": "<base64>"}` → `{"prediction": {"cat": p, "dog": p}}`.
#[utoipa::path(post, path = "/", tag = "classify",
    request_body(description = "The picture(s): a raw image body, a multipart form with one or more files, or JSON with base64", content(
        (super::openapi::Picture = "image/jpeg"), (super::openapi::Picture = "image/png"), (super::openapi::Picture = "image/webp"),
        (super::openapi::Picture = "image/gif"), (super::openapi::Picture = "image/bmp"), (super::openapi::Picture = "application/octet-stream"),
        (super::openapi::UploadForm = "multipart/form-data"),
        (super::openapi::JsonPictures = "application/json"))),
    responses(
        (status = 200, description = "Scores per label", body = super::openapi::LegacyAnswer),
        super::openapi::RequestErrors,
    ))]
pub async fn legacy_predict(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match classify_request(&state, &headers, body).await {
        Ok((_, predictions, timings)) => {
            let res = if predictions.len() == 1 {
                Json(json!({"prediction": &predictions[0].scores})).into_response()
            } else {
                let all: Vec<&Scores> = predictions.iter().map(|p| &p.scores).collect();
                Json(json!({"predictions": all})).into_response()
            };
            with_timings(res, timings)
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /health`: 200 once the model is loaded, 503 with the reason otherwise.
#[utoipa::path(get, path = "/health", tag = "meta",
    responses(
        (status = 200, description = "Ready", body = super::openapi::HealthBody),
        (status = 503, description = "Loading, retrying a fetch, or failed; `reason` says why", body = super::openapi::HealthBody),
    ))]
pub async fn health(State(state): State<AppState>) -> Response {
    match state.model() {
        ModelSlot::Ready(c) => {
            Json(json!({"status": "ok", "model": ModelRef::of(&c)})).into_response()
        }
        ModelSlot::Loading => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading"})),
        )
            .into_response(),
        ModelSlot::Retrying(reason) => {
            let mut res = (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "retrying", "reason": reason})),
            )
                .into_response();
            res.headers_mut().insert(header::RETRY_AFTER, 5.into());
            res
        }
        ModelSlot::Failed(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "failed", "reason": reason})),
        )
            .into_response(),
    }
}

/// `GET /model`: labels, input shape, preprocessing, source URI, SHA-256, size.
#[utoipa::path(get, path = "/model", tag = "meta",
    responses(
        (status = 200, description = "The model answering", body = crate::model::ModelInfo),
        (status = 401, description = "API key missing or wrong", body = super::openapi::ErrorBody),
        (status = 503, description = "Model not ready", body = super::openapi::ErrorBody),
    ))]
pub async fn model_info(State(state): State<AppState>) -> Response {
    match ready_model(&state) {
        Ok((c, _)) => Json(c.info_now()).into_response(),
        Err(e) => e.into_response(),
    }
}

const PAGE: &str = include_str!("../../assets/index.html");

/// `GET /`: the upload page (no external resources: it works offline).
#[utoipa::path(get, path = "/", tag = "page",
    responses((status = 200, description = "The upload page", content_type = "text/html", body = String)))]
pub async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE)).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see GET / for the page, POST /predict to classify",
    )
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}
