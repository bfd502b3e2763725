//! A limit on the request line and headers that holds every time. hyper
//! refuses a head over its read buffer (~400 KB), but only when the head
//! arrives in pieces small enough: measured, 500 kB of headers were
//! accepted or refused by chance, and only around 700 kB always refused.
//! Here the head hyper did accept is measured and refused over
//! [`MAX_HEAD_BYTES`] with the API's own 431, so what a client may send does
//! not depend on how its bytes arrive.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::error::ErrorCode;

/// Most bytes of request line and headers: a browser's cookies and a
/// signed request's headers fit many times over (nginx's default buffers
/// take 32 kB; a Lambda Function URL, 10 KB of headers).
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The request's head as sent: `METHOD target HTTP/1.1`, then each
/// `name: value` line.
fn head_bytes(req: &Request) -> usize {
    let line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len()
        + 1;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + ": \r\n".len())
        .sum();
    line + headers + 2
}

pub(crate) async fn limit_head(req: Request, next: Next) -> Response {
    let size = head_bytes(&req);
    if size > MAX_HEAD_BYTES {
        return ApiError::new(
            ErrorCode::RequestHeadTooLarge,
            format!(
                "the request line and headers are {size} bytes; the limit is {MAX_HEAD_BYTES} (64 KiB)"
            ),
        )
        .into_response();
    }
    next.run(req).await
}
