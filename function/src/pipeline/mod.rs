//! From pictures, or tensors a client preprocessed, to predictions:
//! decoding under the memory budget and off the async workers ([`prepare`]),
//! the queue to the inference thread, and the time each stage took. Shared
//! by every classifying route (`/predict`, the tutorial's `/`, the Open
//! Inference Protocol's `infer`) and by S3 objects (`objects`): the one
//! path from bytes to an answer.

mod explain;
pub(crate) mod model;
mod prepare;

use std::time::Instant;

use bytes::Bytes;

pub(crate) use model::{ModelSlot, ModelState, Ready, Unready, RETRY_AFTER_S};

use crate::error::ApiError;
use crate::limits::Limits;
use crate::metrics::Timings;
use crate::model::output::Prediction;
use crate::preprocess::Tensor;
use prepare::{prepare_all, Prepared};

/// What a request brings to classify.
pub(crate) enum Payload {
    /// Encoded pictures (JPEG, PNG, …), decoded here.
    Encoded(Vec<Bytes>),
    /// One input tensor per picture, already in the model's shape.
    Tensors(Vec<Tensor>),
}

/// Classifies `payload`, each answer with its explanation when `explain`;
/// `started` is when the request began and `read` the milliseconds its
/// body took.
pub(crate) async fn run(
    ready: &Ready,
    payload: Payload,
    limits: &Limits,
    explain: bool,
    started: Instant,
    read: f64,
) -> Result<(Vec<Prediction>, Timings), ApiError> {
    let (inputs, mut prepared) = match payload {
        Payload::Tensors(tensors) => (tensors, Prepared::default()),
        Payload::Encoded(images) => prepare_all(images, ready, limits, explain).await?,
    };
    let count = inputs.len();
    // A model without an explanation branch is explained by occlusion,
    // which needs the inputs again.
    let occlusion = (explain && ready.classifier.explains().is_none()).then(|| inputs.clone());
    if occlusion.is_some() {
        explain::check_occlusion_count(count)?;
    }
    let mut answer = ready.batcher.submit_asking(inputs, explain).await?;
    if explain {
        let seen = std::mem::take(&mut prepared.seen);
        explain::attach(ready, &mut answer, occlusion, seen).await?;
    }
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
