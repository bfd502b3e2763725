//! `POST /feedback`: a person says which label is right for a picture.
//! The picture (in any form `/predict` takes, or an upload's id) is
//! decoded and classified under the same limits, then stored where
//! fine-tuning reads a class folder (see [`crate::feedback`]). Off unless
//! `CATDOG_FEEDBACK` names a destination.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;

use crate::error::{ApiError, ErrorCode};
use crate::feedback::{Correction, FeedbackSink};
use crate::http::input::{check_count, OtherTypes};
use crate::http::query::FeedbackQuery;
use crate::http::routes::{request_pictures, with_timings};
use crate::http::state::AppState;
use crate::http::types::{
    FeedbackAnswer, FeedbackErrors, JsonPictures, KeyRequired, Picture, UploadForm,
};
use crate::pipeline::{self, Payload};

fn sink(state: &AppState) -> Result<std::sync::Arc<dyn FeedbackSink>, ApiError> {
    state.feedback.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::FeedbackOff,
            "this server stores no corrections: start it with CATDOG_FEEDBACK=s3://bucket/prefix/ or a folder",
        )
    })
}

/// `POST /feedback?label=…`: stores the picture as `label`.
#[utoipa::path(post, path = "/feedback", tag = "feedback", params(FeedbackQuery),
    request_body(description = "One picture: a raw image body, a multipart form with one file, or JSON with base64, an allowed `s3` reference or an `upload` id", content(
        (Picture = "image/jpeg"), (Picture = "image/png"), (Picture = "image/webp"),
        (Picture = "image/gif"), (Picture = "image/bmp"), (Picture = "application/octet-stream"),
        (UploadForm = "multipart/form-data"),
        (JsonPictures = "application/json"))),
    responses(
        (status = 201, description = "Stored", body = FeedbackAnswer),
        (status = 200, description = "Already stored with that label (stored once)", body = FeedbackAnswer),
        FeedbackErrors, KeyRequired,
    ))]
pub(crate) async fn feedback(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let sink = sink(&state)?;
    let query = FeedbackQuery::parse(uri.query())?;
    let started = Instant::now();
    let ready = state.ready_model()?;
    let label = known_label(&ready.classifier.info().labels, query.label)?;
    let pictures = request_pictures(&state, &headers, body, OtherTypes::Refuse).await?;
    // A correction is about one picture.
    check_count(pictures.len(), 1).map_err(ApiError::from)?;
    let picture = pictures.into_iter().next().unwrap_or_default();
    let read = started.elapsed().as_secs_f64() * 1e3;
    let payload = Payload::Encoded(vec![picture.clone()]);
    let (answers, timings) =
        pipeline::run(&ready, payload, &state.limits, false, started, read).await?;
    let answered = &answers[0];
    let correction = Correction::new(label, picture, answered, &ready.classifier)?;
    let sha256 = correction.sha256.clone();
    let label = correction.sidecar.label.clone();
    let stored = sink.store(correction).await?;
    // Counted once per picture and label, as it is stored.
    if stored.new {
        state.metrics.corrected(&answered.label, &label);
        if state.emf {
            let model = state.model_labels();
            crate::metrics::emf::emit_correction(&answered.label, &label, model.as_ref());
        }
    }
    tracing::info!(answered = %answered.label, corrected = %label, new = stored.new, "correction");
    let status = if stored.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let answer = FeedbackAnswer {
        label,
        answered: answered.label.clone(),
        confidence: answered.confidence,
        sha256,
        stored: stored.key,
        new: stored.new,
    };
    Ok(with_timings((status, Json(answer)), timings))
}

/// `label` if the model has it (so it is also a safe folder name: the
/// model contract's labels are checked when it loads).
fn known_label(labels: &[String], label: String) -> Result<String, ApiError> {
    if labels.contains(&label) && is_folder_name(&label) {
        return Ok(label);
    }
    Err(ApiError::new(
        ErrorCode::UnknownLabel,
        format!(
            "`{}` is not one of the model's labels: give one of {}",
            label.chars().take(64).collect::<String>(),
            labels.join(", ")
        ),
    ))
}

/// A label a folder (and an S3 key segment) can be named: no separators,
/// no dot segments, nothing hidden.
fn is_folder_name(label: &str) -> bool {
    !label.is_empty()
        && !label.starts_with('.')
        && label.len() <= 128
        && !label
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_models_labels_and_only_as_folder_names() {
        let labels: Vec<String> = ["cat", "dog", "neither", "../x"].map(String::from).to_vec();
        assert_eq!(known_label(&labels, "dog".into()).unwrap(), "dog");
        for bad in ["horse", "../x", "", "Dog"] {
            let refused = known_label(&labels, bad.into()).unwrap_err();
            assert_eq!(refused.code, ErrorCode::UnknownLabel, "{bad}");
        }
    }
}
