//! Explanations attached to a request's answers: the graph's own, or by
//! occlusion through the same batcher, laid over each picture.

use super::prepare::blocking;
use super::Ready;
use crate::batcher::BatcherReply;
use crate::error::{ApiError, ErrorCode};
use crate::explanation::{self, occlusion, Seen};
use crate::model::explain::Heatmap;
use crate::preprocess::Tensor;

/// Sets each answer's `explanation`: the graph's map when the model has
/// an explanation branch, else one measured by covering regions of
/// `inputs`; over the picture `seen` when it is known.
pub(super) async fn attach(
    ready: &Ready,
    answer: &mut BatcherReply,
    inputs: Option<Vec<Tensor>>,
    seen: Vec<Option<Seen>>,
) -> Result<(), ApiError> {
    let mut heatmaps = std::mem::take(&mut answer.heatmaps);
    if let Some(inputs) = inputs {
        heatmaps = by_occlusion(ready, &answer.predictions, inputs).await?;
    }
    let mut seen = seen.into_iter();
    let drawn: Vec<_> = heatmaps
        .into_iter()
        .map(|heatmap| (heatmap, seen.next().flatten()))
        .collect();
    let explanations = blocking(move || {
        drawn
            .into_iter()
            .map(|(heatmap, seen)| heatmap.map(|h| explanation::explain(&h, seen.as_ref())))
            .collect::<Vec<_>>()
    })
    .await?;
    for (prediction, explanation) in answer.predictions.iter_mut().zip(explanations) {
        prediction.explanation = explanation;
    }
    Ok(())
}

/// The most pictures one request may have explained by occlusion: each
/// costs [`occlusion::CELLS`]² more passes of the model.
pub(super) const MAX_OCCLUDED_PICTURES: usize = 4;

/// Refuses a request that would take too many occlusion passes.
pub(super) fn check_occlusion_count(count: usize) -> Result<(), ApiError> {
    if count <= MAX_OCCLUDED_PICTURES {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::TooManyImages,
        format!(
            "this model is explained by occlusion ({} runs of the model per picture): \
             at most {MAX_OCCLUDED_PICTURES} pictures per request with explain=true, not {count}",
            occlusion::CELLS * occlusion::CELLS + 1
        ),
    ))
}

/// Per picture, the drop of its label's probability as each region is
/// covered: [`occlusion::CELLS`]² passes per picture.
async fn by_occlusion(
    ready: &Ready,
    answers: &[crate::model::output::Prediction],
    inputs: Vec<Tensor>,
) -> Result<Vec<Option<Heatmap>>, ApiError> {
    let rejecting = ready
        .classifier
        .info()
        .rejection
        .as_ref()
        .map(|r| r.label.clone());
    let mut heatmaps = Vec::with_capacity(inputs.len());
    for (input, answer) in inputs.iter().zip(answers) {
        let covered = occlusion::covered(input, ready.classifier.preprocessor());
        let reply = ready.batcher.submit(covered).await?;
        let label = occlusion::label_of(answer, rejecting.as_deref());
        heatmaps.push(Some(occlusion::heatmap(answer, &reply.predictions, &label)));
    }
    Ok(heatmaps)
}
