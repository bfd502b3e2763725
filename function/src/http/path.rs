//! Path parameters whose rejection is an API error like every other: axum's
//! own `Path` rejection is a `text/plain` 400 that no error shape reaches
//! (`/v2/models/%FF%FE/infer` answered "Invalid URL: Invalid UTF-8 in
//! `name`"). Through [`PathParams`] it is `invalid_path`, in the route's
//! shape (`{"error": …}` under /v2).

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::error::ErrorCode;

/// The route's path parameters, as axum's `Path` reads them.
pub(crate) struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParams(value)),
            // A route without the parameters its handler reads is a bug here.
            Err(e) if e.status().is_server_error() => {
                tracing::error!(error = %e.body_text(), "path parameters");
                Err(ApiError::new(ErrorCode::Internal, "internal error"))
            }
            Err(e) => Err(ApiError::new(
                ErrorCode::InvalidPath,
                format!("the path cannot be read: {}", e.body_text()),
            )),
        }
    }
}
