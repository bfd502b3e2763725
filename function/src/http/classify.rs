//! From a request's pictures, or tensors a client preprocessed, to
//! predictions: decoding under the memory budget and off the async workers,
//! the queue to the inference thread, and the time each stage took. Shared by every classifying route
//! (`/predict`, the tutorial's `/`, the Open Inference Protocol's `infer`).

use std::time::Instant;

use bytes::Bytes;

use crate::decode::{decode_inspected, inspect, DecodeError};
use crate::http::error::{ApiError, PictureError, Unready};
use crate::http::state::{AppState, ModelState, Ready};
use crate::http::types::Timings;
use crate::limits::Limits;
use crate::model::output::Prediction;
use crate::preprocess::Tensor;

/// What a request brings to classify.
pub enum Payload {
    /// Encoded pictures (JPEG, PNG, …), decoded here.
    Encoded(Vec<Bytes>),
    /// One input tensor per picture, already in the model's shape.
    Tensors(Vec<Tensor>),
}

/// The model, or why there is none yet (a 503).
pub fn ready_model(state: &AppState) -> Result<Ready, Unready> {
    match state.model() {
        ModelState::Ready(ready) => Ok(ready),
        ModelState::Loading => Err(Unready::Loading),
        ModelState::Retrying(reason) => Err(Unready::Retrying(reason)),
        ModelState::Failed(reason) => Err(Unready::Failed(reason)),
    }
}

/// Classifies `payload`; `started` is when the request began and `read` the
/// milliseconds its body took.
pub async fn classify(
    ready: &Ready,
    payload: Payload,
    limits: &Limits,
    started: Instant,
    read: f64,
) -> Result<(Vec<Prediction>, Timings), ApiError> {
    let (inputs, prepared) = match payload {
        Payload::Tensors(tensors) => (tensors, Prepared::default()),
        Payload::Encoded(images) => prepare_all(images, ready, limits).await?,
    };
    let count = inputs.len();
    let answer = ready.batcher.classify(inputs).await?;
    let timings = Timings {
        read,
        memory_wait: prepared.memory_wait,
        decode: prepared.decode,
        preprocess: prepared.preprocess + answer.timings.preprocess,
        inference: answer.timings.inference,
        queue: answer.queued_ms,
        total: started.elapsed().as_secs_f64() * 1e3,
        images: count,
        batch: answer.batch_pictures,
    };
    Ok((answer.predictions, timings))
}

/// Where preparing a request's pictures went, in ms.
#[derive(Debug, Default)]
struct Prepared {
    memory_wait: f64,
    decode: f64,
    preprocess: f64,
}

/// Decodes each picture under the memory budget and reduces it to its model
/// input at once, so at most one full-size picture per request is held,
/// and only while the budget has room for it. Every header is read first:
/// a bad picture, or one that could never fit the budget, refuses the
/// request (named by its place) before anything is decoded. CPU-bound work
/// runs off the async workers.
async fn prepare_all(
    images: Vec<Bytes>,
    ready: &Ready,
    limits: &Limits,
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
        let (input, decode_ms, preprocess_ms) = blocking(move || {
            let t0 = Instant::now();
            let picture = decode_inspected(&bytes, &header, decode_limits)?;
            let t1 = Instant::now();
            let input = classifier.preprocessor().input(&picture);
            drop(picture);
            Ok::<_, DecodeError>((input, ms(t1 - t0), ms(t1.elapsed())))
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
        inputs.push(input);
    }
    Ok((inputs, prepared))
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs CPU-bound work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "decoding task failed");
        ApiError::internal("decoding failed; see the server log")
    })
}
