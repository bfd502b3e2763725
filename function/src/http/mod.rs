//! The one axum [`Router`] every host serves: Lambda (`lambda_http::run`),
//! `catdog serve` and the notebook (`axum::serve`), and the ngrok tunnel.

pub mod access;
pub(crate) mod deadline;
pub(crate) mod error;
pub(crate) mod feedback;
pub(crate) mod head_limit;
pub mod input;
pub(crate) mod keep_alive;
pub(crate) mod openapi;
pub(crate) mod path;
pub(crate) mod query;
pub(crate) mod routes;
pub mod state;
pub(crate) mod types;
pub(crate) mod uploads;
pub(crate) mod v2;

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::access::Access;
use crate::http::state::AppState;
use crate::metrics;

/// Builds the router over `state`. Its structure says who may call what: the
/// public sub-router (the page, the health check, the API description) and
/// the protected one (classifying and the model's details), which alone
/// carries the API-key check when a key is set. An unknown route or method
/// gets its 404/405 without a key: it tells nothing. Errors under `/v2`,
/// whichever layer made them, are re-shaped into the Open Inference
/// Protocol's; the limit on the request's head comes first of all their
/// checks, so it is answered in the route's shape too. CORS sits outside the key check (preflights carry no key);
/// the request log and the metrics are outermost, so refused requests are
/// logged and counted too; inside them, an early answer's unread body is
/// drained so the connection stays usable (`keep_alive`).
pub fn router(state: AppState) -> Router {
    let (routes, doc) = api(&state.access).split_for_parts();
    openapi::publish(&doc);
    let mut app = routes
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(middleware::from_fn(head_limit::limit_head))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            deadline::deadline,
        ))
        .layer(middleware::from_fn(oip_errors));
    if let Some(cors) = state.access.cors_layer() {
        app = app.layer(cors);
    }
    app.layer(middleware::from_fn(keep_alive::keep_alive))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The routes and their OpenAPI description, built from the same calls.
fn api(access: &Access) -> OpenApiRouter<AppState> {
    let public = OpenApiRouter::new()
        .routes(routes!(routes::page))
        .routes(routes!(routes::health))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(v2::server_metadata))
        .routes(routes!(v2::server_live))
        .routes(routes!(v2::server_ready))
        .routes(routes!(v2::model_ready));
    let mut protected = OpenApiRouter::new()
        .routes(routes!(routes::predict))
        .routes(routes!(routes::legacy_predict))
        .routes(routes!(feedback::feedback))
        .routes(routes!(uploads::create_upload))
        .routes(routes!(uploads::upload_result))
        .routes(routes!(routes::model_info))
        .routes(routes!(routes::metrics))
        .routes(routes!(v2::model_metadata))
        .routes(routes!(v2::model_version_metadata))
        .routes(routes!(v2::infer))
        .routes(routes!(v2::infer_version));
    openapi::require_key(protected.get_openapi_mut());
    if let Some(key) = access.api_key.clone() {
        protected = protected.route_layer(middleware::from_fn_with_state(key, access::require_key));
    }
    OpenApiRouter::with_openapi(openapi::base())
        .merge(public)
        .merge(protected)
}

/// Errors under `/v2` (handlers', the key check's, unknown routes') in the
/// Open Inference Protocol's shape.
async fn oip_errors(req: Request, next: Next) -> Response {
    let v2 = v2::is_v2_path(req.uri().path());
    let res = next.run(req).await;
    if v2 {
        error::in_oip_shape(res)
    } else {
        res
    }
}

/// One structured log line per request, with its timings, and the same
/// figures into the metrics (and, on Lambda, an EMF line). The log and the
/// metrics name the route's template (`/uploads/{id}`), never the path, the
/// query string or a header: an upload's id is the capability to read its
/// answer, and keys and tokens never reach the logs.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let in_flight = state.metrics.start_request();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(metrics::UNMATCHED_ROUTE.to_string(), |m| {
            m.as_str().to_string()
        });
    let res = next.run(req).await;
    drop(in_flight);
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let status = res.status().as_u16();
    let error = res
        .extensions()
        .get::<crate::error::ApiError>()
        .map_or("", |e| e.code.as_str());
    let timings = res.extensions().get::<types::Timings>().copied();
    match timings {
        Some(t) => tracing::info!(
            %method, route, status, ms, images = t.images, read_ms = t.read, decode_ms = t.decode,
            preprocess_ms = t.preprocess, inference_ms = t.inference, queue_ms = t.queue,
            batch = t.batch, "request"
        ),
        None => tracing::info!(%method, route, status, ms, error, "request"),
    }
    let observed = metrics::Observed {
        route: &route,
        method: metrics::method_label(method.as_str()),
        status,
        total_ms: ms,
        stages: timings,
    };
    state.metrics.observe(&observed);
    if state.emf {
        metrics::emf::emit_request(&observed, state.model_labels().as_ref());
    }
    res
}
