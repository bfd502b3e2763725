//! The one axum [`Router`] every host serves: Lambda (`lambda_http::run`),
//! `catdog serve` (`axum::serve`) and the notebook's tunnel.

pub mod access;
pub mod error;
pub mod input;
pub mod openapi;
pub mod routes;

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

/// Builds the router over `state`.
/// Access control (API key, CORS) comes from `state.access`; the request log
/// is the outermost layer, so refused requests are logged too.
pub fn router(state: AppState) -> Router {
    let mut app = Router::new()
        .route("/", get(routes::page).post(routes::legacy_predict))
        .route("/predict", post(routes::predict))
        .route("/health", get(routes::health))
        .route("/model", get(routes::model_info))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed);
    if let Some(key) = state.access.api_key.clone() {
        // On matched routes only: an unknown route or method still gets its
        // 404/405 (which tell nothing), as the OpenAPI document says.
        app = app.route_layer(middleware::from_fn_with_state(key, access::require_key));
    }
    // Outside the key check: preflight requests carry no key.
    if let Some(cors) = state.access.cors_layer() {
        app = app.layer(cors);
    }
    app.layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// One structured log line per request, with its timings. Only the path is
/// logged (no query string, no headers), so tokens never reach the logs.
async fn log_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let res = next.run(req).await;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let status = res.status().as_u16();
    let error = res
        .extensions()
        .get::<error::ErrorCode>()
        .map(|c| c.0)
        .unwrap_or("");
    match res.extensions().get::<routes::Timings>() {
        Some(t) => tracing::info!(
            %method, path, status, ms, images = t.images, read_ms = t.read, decode_ms = t.decode,
            preprocess_ms = t.preprocess, inference_ms = t.inference, queue_ms = t.queue,
            batch = t.batch, "request"
        ),
        None => tracing::info!(%method, path, status, ms, error, "request"),
    }
    res
}
