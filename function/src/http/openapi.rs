//! The OpenAPI document of the router, served at `GET /openapi.json` (and
//! checked against the live server by schemathesis in tests/it/openapi.rs).
//!
//! It is generated as the router is built (`http/mod.rs`): each route
//! brings its handler's `#[utoipa::path]`, whose bodies are the wire types of
//! [`crate::http::types`]; the operations of the protected sub-router are
//! marked as needing the API key. This module adds the document's title and
//! the key's security schemes.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::OpenApi as Document;
use utoipa::OpenApi;

use crate::http::access::API_KEY_HEADER;

#[derive(OpenApi)]
#[openapi(info(
    title = "catdog",
    description = "Cat or dog? An ONNX image classifier. The same API on AWS Lambda, `catdog serve` and the notebook's tunnel. \
                   With an API key set (CATDOG_API_KEY), the operations marked with a security requirement need \
                   `Authorization: Bearer KEY` or `X-API-Key: KEY`, and answer 401 otherwise; the others stay public."
))]
struct ApiDoc;

/// The document's frame: title and description, no paths yet.
pub(crate) fn base() -> Document {
    ApiDoc::openapi()
}

/// Marks every operation of `doc` as needing the API key (when the server
/// has one; without a key the requirement is optional, hence the empty one).
pub(crate) fn require_key(doc: &mut Document) {
    let schemes = [
        SecurityRequirement::new("bearer", Vec::<String>::new()),
        SecurityRequirement::new("api_key", Vec::<String>::new()),
        SecurityRequirement::default(),
    ];
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.head,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            op.security = Some(schemes.to_vec());
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(API_KEY_HEADER))),
    );
}

static DOCUMENT: OnceLock<String> = OnceLock::new();

/// Keeps the finished document for `GET /openapi.json` (the first one wins:
/// it does not depend on the server's settings).
pub(crate) fn publish(doc: &Document) {
    DOCUMENT.get_or_init(|| {
        doc.to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    });
}

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)))]
pub(crate) async fn openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get().map_or("{}", String::as_str),
    )
        .into_response()
}
