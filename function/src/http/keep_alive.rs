//! Keep-alive connections that stay usable after an early answer. A 404,
//! 401 or 415 is answered before the request's body is read; with that body
//! unread the server must close the connection, and without a word the
//! client's next request on it fails ("Broken pipe"). So the rest of an
//! unread body is read and thrown away before the answer goes out (bounded
//! by the 413 path's limits: [`drain`]), and when
//! that cannot be done at once — a body declared over the bound, one that
//! has not come within [`QUICK_DRAIN`], or one still being drained
//! elsewhere (the 413 path) — the answer goes out at once with
//! `Connection: close` (RFC 9112 §9.6) while the body is drained in the
//! background: the server will close.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::Stream;
use tokio::sync::oneshot;

use crate::http::input::{drain, LINGER_BYTES};

/// The request body, noting whether it was read to its end; dropped unread,
/// it hands what is left back to the middleware.
struct Tracked {
    inner: Option<BodyDataStream>,
    finished: Arc<AtomicBool>,
    unread: Option<oneshot::Sender<BodyDataStream>>,
}

impl Stream for Tracked {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let next = Pin::new(inner).poll_next(cx);
        if let Poll::Ready(None) = next {
            self.finished.store(true, Ordering::SeqCst);
            self.inner = None;
        }
        next
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let (Some(rest), Some(unread)) = (self.inner.take(), self.unread.take()) {
            let _ = unread.send(rest);
        }
    }
}

/// How long an early answer waits for the rest of its body before it goes
/// out with `Connection: close` (the body is then drained in the
/// background): a body already on its way is read, a body that never comes
/// does not hold the answer.
const QUICK_DRAIN: std::time::Duration = std::time::Duration::from_millis(200);

/// The middleware: see the module's documentation.
pub(crate) async fn keep_alive(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if declared.unwrap_or(0) == 0 && !chunked {
        return next.run(req).await;
    }
    let finished = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = oneshot::channel();
    let (parts, body) = req.into_parts();
    let tracked = Tracked {
        inner: Some(body.into_data_stream()),
        finished: finished.clone(),
        unread: Some(tx),
    };
    let mut res = next
        .run(Request::from_parts(parts, Body::from_stream(tracked)))
        .await;
    if finished.load(Ordering::SeqCst) {
        return res;
    }
    let drained = match rx.try_recv() {
        // Left unread: drained in the background; the answer waits for it
        // only a moment, and goes out with `Connection: close` if it has
        // not ended by then.
        Ok(rest) if declared.is_some_and(|n| n <= LINGER_BYTES as u64) => {
            let draining = tokio::spawn(drain(rest));
            matches!(
                tokio::time::timeout(QUICK_DRAIN, draining).await,
                Ok(Ok(true))
            )
        }
        Ok(rest) => {
            tokio::spawn(drain(rest));
            false
        }
        // Still held (the 413 path drains it in the background, then closes).
        Err(_) => false,
    };
    if !drained {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}
