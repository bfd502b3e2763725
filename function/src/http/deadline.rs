//! Every request's time, bounded on every host: the body must keep coming
//! (no pause longer than the body timeout), and the whole request must be
//! answered within the request timeout and, on Lambda, before the invoke's
//! deadline less a margin. Past either, the answer is an error of its own
//! (408 when the client is the slow one, 503 + `Retry-After` when the work
//! is), never an invocation that Lambda times out: a timeout is an
//! invocation error, which retries an SQS batch whole and trips the
//! deployment alarms.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use lambda_http::RequestExt;
use tokio::sync::Notify;
use tokio::time::Sleep;

use crate::error::ApiError;
use crate::error::ErrorCode;
use crate::http::state::AppState;
use crate::limits::Timeouts;

/// When work for an invoke must stop: Lambda's deadline (milliseconds since
/// the Unix epoch, as the Runtime API gives it) less `margin`, as an
/// instant of this process's clock; `None` for a context that names no
/// deadline a Runtime API could have meant: 0 (not from one), or a time
/// more than a day away (cargo-lambda's emulator sends `600000`, its
/// timeout, where Lambda sends the time; an invoke lasts 15 minutes at most).
pub(crate) fn lambda_stop(deadline_ms: u64, margin: Duration) -> Option<Instant> {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if deadline_ms.abs_diff(now_ms) > DAY_MS {
        return None;
    }
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Some(Instant::now() + left.saturating_sub(margin))
}

/// The request body, watched: `stalled` is told when no bytes came for
/// `idle` while the handler waited for them (the stream then stays
/// pending; the middleware answers), `ended` is set when it was read to
/// its end. The clock starts when the handler first waits for the body,
/// so work before reading it (a key read again) is not counted.
struct Watched {
    inner: BodyDataStream,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    stalled: Arc<Notify>,
    ended: Arc<AtomicBool>,
}

impl Stream for Watched {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(None) => {
                self.ended.store(true, Ordering::SeqCst);
                Poll::Ready(None)
            }
            Poll::Ready(Some(item)) => {
                let next = tokio::time::Instant::now() + self.idle;
                if let Some(timer) = self.timer.as_mut() {
                    timer.as_mut().reset(next);
                }
                Poll::Ready(Some(item))
            }
            Poll::Pending => {
                let idle = self.idle;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    self.stalled.notify_one();
                }
                Poll::Pending
            }
        }
    }
}

/// The middleware: see the module's documentation.
pub(crate) async fn deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Timeouts {
        body_idle,
        request,
        lambda_margin,
    } = state.limits.timeouts;
    let mut stop = Instant::now() + request;
    if let Some(lambda) = req
        .lambda_context_ref()
        .and_then(|c| lambda_stop(c.deadline, lambda_margin))
    {
        stop = stop.min(lambda);
    }
    let stalled = Arc::new(Notify::new());
    let (parts, body) = req.into_parts();
    // A request without a body (a GET) has all of it from the start.
    let ended = Arc::new(AtomicBool::new(axum::body::HttpBody::is_end_stream(&body)));
    let watched = Watched {
        inner: body.into_data_stream(),
        idle: body_idle,
        timer: None,
        stalled: stalled.clone(),
        ended: ended.clone(),
    };
    let req = Request::from_parts(parts, Body::from_stream(watched));
    tokio::select! {
        // An answer ready when time is up still goes out.
        biased;
        res = next.run(req) => res,
        () = stalled.notified() => ApiError::new(
            ErrorCode::RequestTimeout,
            format!("no bytes of the request body came for {} s", body_idle.as_secs_f64()),
        )
        .into_response(),
        () = tokio::time::sleep_until(stop.into()) => late(ended.load(Ordering::SeqCst)),
    }
}

/// The answer when the request's time is up: the client's fault if its
/// body had not all come, else the work's.
fn late(body_ended: bool) -> Response {
    let error = if body_ended {
        tracing::warn!("request stopped at its deadline");
        ApiError::new(
            ErrorCode::DeadlineExceeded,
            "the request could not be answered before its deadline; try again, or send fewer or smaller pictures",
        )
    } else {
        ApiError::new(
            ErrorCode::RequestTimeout,
            "the request body did not arrive within the request timeout",
        )
    };
    error.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lambda_deadline_becomes_an_instant_before_it() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let stop = lambda_stop(now_ms + 10_000, Duration::from_secs(2)).unwrap();
        let left = stop.saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_millis(7_500) && left <= Duration::from_secs(8),
            "{left:?}"
        );
        // A deadline already past, or within the margin: stop now.
        let past = lambda_stop(now_ms.saturating_sub(5_000), Duration::from_secs(2)).unwrap();
        assert!(past <= Instant::now());
        assert_eq!(lambda_stop(0, Duration::from_secs(2)), None);
        assert_eq!(lambda_stop(600_000, Duration::from_secs(2)), None);
    }
}
