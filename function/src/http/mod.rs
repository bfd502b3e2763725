//! The one axum [`Router`] every host serves: Lambda (`lambda_http::run`),
//! `catdog serve` and the notebook (`axum::serve`), and the ngrok tunnel.

pub mod access;
pub mod error;
pub mod input;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod types;

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::access::Access;
use crate::http::state::AppState;

/// Builds the router over `state`. Its structure says who may call what: the
/// public sub-router (the page, the health check, the API description) and
/// the protected one (classifying and the model's details), which alone
/// carries the API-key check when a key is set. An unknown route or method
/// gets its 404/405 without a key: it tells nothing. CORS sits outside the
/// key check (preflights carry no key); the request log is outermost, so
/// refused requests are logged too.
pub fn router(state: AppState) -> Router {
    let (routes, doc) = api(&state.access).split_for_parts();
    openapi::publish(&doc);
    let mut app = routes
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed);
    if let Some(cors) = state.access.cors_layer() {
        app = app.layer(cors);
    }
    app.layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// The routes and their OpenAPI description, built from the same calls.
fn api(access: &Access) -> OpenApiRouter<AppState> {
    let public = OpenApiRouter::new()
        .routes(routes!(routes::page))
        .routes(routes!(routes::health))
        .routes(routes!(openapi::openapi_json));
    let mut protected = OpenApiRouter::new()
        .routes(routes!(routes::predict))
        .routes(routes!(routes::legacy_predict))
        .routes(routes!(routes::model_info));
    openapi::require_key(protected.get_openapi_mut());
    if let Some(key) = access.api_key.clone() {
        protected = protected.route_layer(middleware::from_fn_with_state(key, access::require_key));
    }
    OpenApiRouter::with_openapi(openapi::base())
        .merge(public)
        .merge(protected)
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
    match res.extensions().get::<types::Timings>() {
        Some(t) => tracing::info!(
            %method, path, status, ms, images = t.images, read_ms = t.read, decode_ms = t.decode,
            preprocess_ms = t.preprocess, inference_ms = t.inference, queue_ms = t.queue,
            batch = t.batch, "request"
        ),
        None => tracing::info!(%method, path, status, ms, error, "request"),
    }
    res
}
