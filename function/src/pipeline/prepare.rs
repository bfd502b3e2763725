//! Pictures to model inputs under the memory budget: every header read and
//! admitted first, then each decoded and reduced at once, off the async
//! workers.

use std::time::Instant;

use bytes::Bytes;

use super::Ready;
use crate::decode::{decode_inspected, inspect, DecodeError};
use crate::error::{ApiError, PictureError};
use crate::explanation::Seen;
use crate::limits::Limits;
use crate::preprocess::Tensor;

/// Where preparing a request's pictures went, in ms, and what an
/// explanation needs of each picture (when asked).
#[derive(Debug, Default)]
pub(super) struct Prepared {
    pub(super) memory_wait: f64,
    pub(super) decode: f64,
    pub(super) preprocess: f64,
    pub(super) seen: Vec<Option<Seen>>,
}

/// Decodes each picture under the memory budget and reduces it to its model
/// input at once, so at most one full-size picture per request is held,
/// and only while the budget has room for it. Every header is read first:
/// a bad picture, or one that could never fit the budget, refuses the
/// request (named by its place) before anything is decoded. CPU-bound work
/// runs off the async workers.
pub(super) async fn prepare_all(
    images: Vec<Bytes>,
    ready: &Ready,
    limits: &Limits,
    explain: bool,
) -> Result<(Vec<Tensor>, Prepared), ApiError> {
    let decode_limits = limits.decode;
    let count = images.len();
    let classifier = ready.classifier.clone();
    let (images, headers) = blocking(move || {
        let headers = images
            .iter()
            .enumerate()
            .map(|(index, bytes)| {
                let header = inspect(bytes, decode_limits).map_err(|source| PictureError {
                    index,
                    count,
                    source,
                })?;
                let cost = header.decoded_bytes()
                    + classifier
                        .preprocessor()
                        .scratch_bytes(header.width, header.height);
                Ok((header, cost))
            })
            .collect::<Result<Vec<_>, PictureError>>();
        (images, headers)
    })
    .await?;
    let headers = headers?;
    for (index, (header, cost)) in headers.iter().enumerate() {
        ready
            .budget
            .check(header.width, header.height, *cost)
            .map_err(|source| PictureError {
                index,
                count,
                source,
            })?;
    }
    let mut prepared = Prepared::default();
    let mut inputs = Vec::with_capacity(count);
    for (index, (bytes, (header, cost))) in images.into_iter().zip(headers).enumerate() {
        let admitted = ready
            .budget
            .admit(header.width, header.height, cost)
            .await
            .map_err(|source| PictureError {
                index,
                count,
                source,
            })?;
        prepared.memory_wait += admitted.waited_ms;
        let classifier = ready.classifier.clone();
        let (input, seen, decode_ms, preprocess_ms) = blocking(move || {
            let t0 = Instant::now();
            let picture = decode_inspected(&bytes, &header, decode_limits)?;
            let t1 = Instant::now();
            let pre = classifier.preprocessor();
            let input = pre.input(&picture);
            let seen = explain.then(|| {
                let region = pre.region(picture.width(), picture.height());
                Seen::of(&picture, region, crate::explanation::overlay::OVERLAY_SIDE)
            });
            drop(picture);
            Ok::<_, DecodeError>((input, seen, ms(t1 - t0), ms(t1.elapsed())))
        })
        .await?
        .map_err(|source| PictureError {
            index,
            count,
            source,
        })?;
        drop(admitted);
        prepared.decode += decode_ms;
        prepared.preprocess += preprocess_ms;
        prepared.seen.push(seen);
        inputs.push(input);
    }
    Ok((inputs, prepared))
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs CPU-bound work off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "decoding task failed");
        ApiError::internal("decoding failed; see the server log")
    })
}
