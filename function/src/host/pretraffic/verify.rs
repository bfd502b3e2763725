//! The checks run against one function version: every recorded picture is
//! read from S3, sent to the version as its Function URL would send it, and
//! its answer compared with the recorded one. Every picture is tried and
//! every problem kept, so one run's log names them all.

use std::collections::BTreeSet;

use aws_sdk_lambda::primitives::Blob;

use crate::aws::sdk_error_message;
use crate::checks::event::{answer_of, function_url_event};
use crate::checks::persist::{get_checks, get_picture};
use crate::checks::{compare, Answer, ChecksError};
use crate::model::source::sha256_hex;
use crate::objects::store::ObjectStore;

/// The version under check, and how to reach it.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) lambda: aws_sdk_lambda::Client,
    /// A name, an ARN or `name:version`, as Lambda's Invoke API takes it.
    pub(crate) function: String,
    /// The classifier's API key, when it asks for one.
    pub(crate) api_key: Option<String>,
}

/// What the checks found: how many pictures were answered, and every
/// problem, one line each (empty: the version passed).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Verdict {
    pub(crate) pictures: usize,
    pub(crate) problems: Vec<String>,
}

impl Verdict {
    pub(crate) fn passed(&self) -> bool {
        self.problems.is_empty() && self.pictures > 0
    }
}

/// Runs the checks of the answers file `s3://bucket/key` against `target`,
/// scores within `tolerance`. `Err` when there are no checks to run (the
/// file is missing, unreadable or not a checks file).
pub(crate) async fn verify(
    store: &ObjectStore,
    target: &Target,
    bucket: &str,
    key: &str,
    tolerance: f64,
) -> Result<Verdict, ChecksError> {
    let checks = get_checks(store, bucket, key).await?;
    tracing::info!(
        pictures = checks.pictures.len(),
        model_sha256 = %checks.model_sha256,
        recorded_with = %checks.recorded_with,
        function = %target.function,
        tolerance,
        "checking the new version"
    );
    let mut verdict = Verdict::default();
    let mut models = BTreeSet::new();
    for (i, expected) in checks.pictures.iter().enumerate() {
        let name = &expected.name;
        let answer = match ask(store, target, bucket, key, expected, i).await {
            Ok(answer) => answer,
            Err(problem) => {
                tracing::warn!(picture = %name, problem = %problem, "no answer");
                verdict.problems.push(format!("{name}: {problem}"));
                continue;
            }
        };
        verdict.pictures += 1;
        models.insert(answer.model_sha256.clone());
        let found = compare(expected, &answer, tolerance);
        if found.is_empty() {
            tracing::info!(picture = %name, label = %answer.label, "agrees");
            continue;
        }
        let reasons = found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        tracing::warn!(
            picture = %name,
            recorded = %expected.label,
            answered = %answer.label,
            disagreements = %reasons,
            "disagrees"
        );
        verdict.problems.push(format!("{name}: {reasons}"));
    }
    // Agreeing answers from another model than the recorded one are not a
    // pass: the checks were made for that model, and say nothing of this one.
    for model in models {
        if model.as_deref() != Some(checks.model_sha256.as_str()) {
            let problem = format!(
                "the new version answers with model {}, the checks were recorded with {} \
                 (record them for this model: catdog upload --checks)",
                model.as_deref().unwrap_or("(no digest)"),
                checks.model_sha256
            );
            tracing::warn!(problem = %problem, "another model");
            verdict.problems.push(problem);
        }
    }
    Ok(verdict)
}

/// Why a version gave no answer for a recorded picture.
#[derive(Debug, thiserror::Error)]
enum NoAnswer {
    #[error(transparent)]
    Picture(#[from] crate::checks::ChecksError),
    #[error("the picture in S3 is not the one recorded (its SHA-256 changed)")]
    Changed,
    #[error("invoking {function}: {reason}")]
    Invoke { function: String, reason: String },
    #[error("the function failed ({kind}): {payload}")]
    Failed { kind: String, payload: String },
    #[error("{0}")]
    Answer(String),
}

/// Picture `expected`'s answer from the version, or why there is none.
async fn ask(
    store: &ObjectStore,
    target: &Target,
    bucket: &str,
    key: &str,
    expected: &crate::checks::Expected,
    index: usize,
) -> Result<Answer, NoAnswer> {
    let bytes = get_picture(store, bucket, key, &expected.name).await?;
    if sha256_hex(&bytes) != expected.sha256 {
        return Err(NoAnswer::Changed);
    }
    let event = function_url_event(
        &bytes,
        target.api_key.as_deref(),
        &format!("pretraffic-{index}"),
    );
    let out = target
        .lambda
        .invoke()
        .function_name(&target.function)
        .payload(Blob::new(event.to_string()))
        .send()
        .await
        .map_err(|e| NoAnswer::Invoke {
            function: target.function.clone(),
            reason: sdk_error_message(&e),
        })?;
    let payload = out.payload().map(Blob::as_ref).unwrap_or_default();
    if let Some(kind) = out.function_error() {
        return Err(NoAnswer::Failed {
            kind: kind.to_string(),
            payload: String::from_utf8_lossy(payload).into_owned(),
        });
    }
    answer_of(payload).map_err(NoAnswer::Answer)
}
