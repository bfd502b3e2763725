//! From a request's pictures, or tensors a client preprocessed, to
//! predictions: decoding off the async workers, the queue to the inference
//! thread, and the time each stage took. Shared by every classifying route
//! (`/predict`, the tutorial's `/`, the Open Inference Protocol's `infer`).

use std::time::Instant;

use bytes::Bytes;

use crate::decode::decode_rgb;
use crate::http::error::{ApiError, PictureError, Unready};
use crate::http::state::{AppState, ModelState, Ready};
use crate::http::types::Timings;
use crate::limits::Limits;
use crate::model::output::Prediction;
use crate::preprocess::{Input, Tensor};

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
    let (inputs, decode) = match payload {
        Payload::Tensors(tensors) => (tensors.into_iter().map(Input::Tensor).collect(), 0.0),
        Payload::Encoded(images) => decode_all(images, limits).await?,
    };
    let count = inputs.len();
    let answer = ready.batcher.classify(inputs).await?;
    let timings = Timings {
        read,
        decode,
        preprocess: answer.timings.preprocess,
        inference: answer.timings.inference,
        queue: answer.queued_ms,
        total: started.elapsed().as_secs_f64() * 1e3,
        images: count,
        batch: answer.batch_pictures,
    };
    Ok((answer.predictions, timings))
}

/// Decodes every picture (CPU-bound: off the async workers); the first bad
/// one refuses the request, named by its place.
async fn decode_all(images: Vec<Bytes>, limits: &Limits) -> Result<(Vec<Input>, f64), ApiError> {
    let limits = limits.decode;
    let count = images.len();
    let (pictures, ms) = tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        let pictures = images
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                decode_rgb(bytes, limits)
                    .map(Input::Picture)
                    .map_err(|source| PictureError {
                        index: i,
                        count,
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>();
        (pictures, t0.elapsed().as_secs_f64() * 1e3)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "decoding task failed");
        ApiError::internal("decoding failed; see the server log")
    })?;
    Ok((pictures.map_err(ApiError::from)?, ms))
}
