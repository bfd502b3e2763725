//! The Open Inference Protocol (v2 REST), as KServe, Triton, Seldon MLServer
//! and TorchServe speak it, on the same router as `/predict`: standard
//! clients (tritonclient, the kserve SDK) and gateways work against catdog.
//!
//! The model is one, named by its metadata (default `catdog`), its version
//! the first digits of its SHA-256. It takes one input: encoded pictures as
//! BYTES (`image`), or its own FP32 input tensor for clients that preprocess
//! themselves; it answers `probabilities` (FP32 `[n, classes]`, `/predict`'s
//! `scores`) and `label` (BYTES `[n]`). Errors are the protocol's
//! `{"error": "..."}` (the router re-shapes them for every `/v2` path), and
//! `/predict`'s limits apply.

mod binary;
mod data;
pub(crate) mod error;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod types;

pub(crate) use error::InferError;

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::ApiError;
use crate::http::input::read_body;
use crate::http::path::PathParams;
use crate::http::state::AppState;
use crate::http::types::{OipErrorBody, OipKeyRequired, OipNoSuchModel};
use crate::http::v2::types::{
    InferRequest, InferResponse, ModelMetadata, Readiness, ServerLive, ServerMetadata,
};
use crate::pipeline::{self, Unready};
use crate::pipeline::{ModelState, Ready};

/// The protocol extensions catdog speaks.
pub(crate) const EXTENSIONS: [&str; 2] = ["binary_tensor_data", "classification"];

/// Whether `path` is one of the protocol's (its errors then take its shape).
pub(crate) fn is_v2_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// The model `name` (and `version`, if given) names, or why not.
fn find(state: &AppState, name: &str, version: Option<&str>) -> Result<Ready, InferError> {
    let ready = state.ready_model()?;
    let model = &ready.classifier;
    if name != model.name() {
        return Err(InferError::UnknownModel {
            asked: name.to_string(),
            serves: model.name().to_string(),
        });
    }
    if let Some(asked) = version {
        match model.version() {
            None => return Err(Unready::VersionPending.into()),
            Some(v) if asked == v || Some(asked) == model.sha256() => {}
            Some(v) => {
                return Err(InferError::UnknownVersion {
                    name: name.to_string(),
                    asked: asked.to_string(),
                    serves: v.to_string(),
                })
            }
        }
    }
    Ok(ready)
}

/// `GET /v2`: who answers, and which protocol extensions it speaks.
#[utoipa::path(get, path = "/v2", tag = "v2",
    responses((status = 200, description = "Server metadata", body = ServerMetadata)))]
pub(crate) async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "catdog".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
    })
}

/// `GET /v2/health/live`: the server answers.
#[utoipa::path(get, path = "/v2/health/live", tag = "v2",
    responses((status = 200, description = "Live", body = ServerLive)))]
pub(crate) async fn server_live() -> Json<ServerLive> {
    Json(ServerLive { live: true })
}

fn readiness(ready: bool) -> Response {
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready })).into_response()
}

/// `GET /v2/health/ready`: 200 once the model is loaded, 503 before (as `/health`).
#[utoipa::path(get, path = "/v2/health/ready", tag = "v2",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "The model is loading, retrying a fetch, or failed (`GET /health` says why)", body = Readiness),
    ))]
pub(crate) async fn server_ready(State(state): State<AppState>) -> Response {
    readiness(matches!(state.model(), ModelState::Ready(_)))
}

/// `GET /v2/models/{name}/ready`.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "v2",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 400, description = "A name that cannot be read (not UTF-8)", body = OipErrorBody),
        (status = 503, description = "Not loaded (yet)", body = Readiness),
        OipNoSuchModel,
    ))]
pub(crate) async fn model_ready(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Response, ApiError> {
    match find(&state, &name, None) {
        Ok(_) => Ok(readiness(true)),
        Err(InferError::Unready(_)) => Ok(readiness(false)),
        Err(e) => Err(e.into()),
    }
}

fn metadata(ready: &Ready) -> ModelMetadata {
    let model = &ready.classifier;
    let (inputs, outputs) = request::signature(model);
    ModelMetadata {
        name: model.name().to_string(),
        versions: model.version().map(str::to_owned).into_iter().collect(),
        platform: "onnxruntime_onnx".into(),
        inputs,
        outputs,
    }
}

/// `GET /v2/models/{name}`: its versions, inputs and outputs.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "v2",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "Model metadata", body = ModelMetadata),
        (status = 400, description = "A name or version that cannot be read (not UTF-8)", body = OipErrorBody),
        (status = 503, description = "Model not ready", body = OipErrorBody),
        OipKeyRequired, OipNoSuchModel,
    ))]
pub(crate) async fn model_metadata(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<ModelMetadata>, ApiError> {
    Ok(Json(metadata(&find(&state, &name, None)?)))
}

/// `GET /v2/models/{name}/versions/{version}`.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "v2",
    params(("name" = String, Path, description = "The model's name"),
           ("version" = String, Path, description = "Its version (the SHA-256 prefix, or the whole digest)")),
    responses(
        (status = 200, description = "Model metadata", body = ModelMetadata),
        (status = 400, description = "A name or version that cannot be read (not UTF-8)", body = OipErrorBody),
        (status = 503, description = "Model not ready, or its version not computed yet", body = OipErrorBody),
        OipKeyRequired, OipNoSuchModel,
    ))]
pub(crate) async fn model_version_metadata(
    State(state): State<AppState>,
    PathParams((name, version)): PathParams<(String, String)>,
) -> Result<Json<ModelMetadata>, ApiError> {
    Ok(Json(metadata(&find(&state, &name, Some(&version))?)))
}

async fn infer_with(
    state: AppState,
    name: &str,
    version: Option<&str>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let ready = find(&state, name, version)?;
    if let Some(encoding) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.eq_ignore_ascii_case("identity"))
    {
        return Err(InferError::Compressed(encoding.to_string()).into());
    }
    let bytes = read_body(&headers, body, state.limits.max_body_bytes).await?;
    let read = started.elapsed().as_secs_f64() * 1e3;
    let request = request::parse(&headers, &bytes, &ready.classifier, state.limits.max_batch)?;
    drop(bytes);
    let (predictions, timings) = pipeline::run(
        &ready,
        request.payload,
        &state.limits,
        request.explain,
        started,
        read,
    )
    .await?;
    let res = response::respond(
        &ready.classifier,
        request.id,
        &request.outputs,
        &predictions,
    );
    Ok(crate::http::routes::with_timings(res, timings))
}

/// A classifying route of the protocol: its request body, and its answers.
macro_rules! infer_route {
    ($path:literal, $params:tt, $handler:item) => {
        #[utoipa::path(post, path = $path, tag = "v2",
            params $params,
            request_body(description = "An inference request: JSON, or (binary tensor data extension) JSON of `Inference-Header-Content-Length` bytes followed by each binary input's bytes", content(
                (InferRequest = "application/json"),
                (Vec<u8> = "application/octet-stream"))),
            responses(
                (status = 200, description = "The outputs: JSON, or (binary outputs asked) JSON of `Inference-Header-Content-Length` bytes followed by the binary outputs", content(
                    (InferResponse = "application/json"),
                    (Vec<u8> = "application/octet-stream"))),
                (status = 400, description = "Malformed request, unknown input or output, wrong shape, not a picture, or a path that cannot be read", body = OipErrorBody),
                (status = 413, description = "Body over the limit", body = OipErrorBody),
                (status = 415, description = "Compressed body, or image format not supported", body = OipErrorBody),
                (status = 422, description = "Picture over the pixel limit, or too many pictures", body = OipErrorBody),
                (status = 500, description = "Inference failed", body = OipErrorBody),
                (status = 503, description = "Model not ready, or queue full (Retry-After)", body = OipErrorBody),
                OipKeyRequired, OipNoSuchModel,
            ))]
        $handler
    };
}

infer_route!(
    "/v2/models/{name}/infer",
    (("name" = String, Path, description = "The model's name")),
    /// `POST /v2/models/{name}/infer`.
    pub(crate) async fn infer(
        State(state): State<AppState>,
        PathParams(name): PathParams<String>,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response, ApiError> {
        infer_with(state, &name, None, headers, body).await
    }
);

infer_route!(
    "/v2/models/{name}/versions/{version}/infer",
    (
        ("name" = String, Path, description = "The model's name"),
        (
            "version" = String,
            Path,
            description = "Its version (the SHA-256 prefix, or the whole digest)"
        )
    ),
    /// `POST /v2/models/{name}/versions/{version}/infer`.
    pub(crate) async fn infer_version(
        State(state): State<AppState>,
        PathParams((name, version)): PathParams<(String, String)>,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response, ApiError> {
        infer_with(state, &name, Some(&version), headers, body).await
    }
);
