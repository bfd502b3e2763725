//! Writing the fine-tuned model: the base graph with the new head and our
//! metadata, its weights taken back from the base, as one ONNX file that
//! the same data, base and seed write byte for byte the same.

use std::path::Path;

use super::config::NeitherMode;
use super::error::FinetuneError;
use super::graph;
use super::plan::Plan;
use super::probe::Probe;
use super::summary::Summary;
use super::train::SoftmaxHead;
use crate::model::{contract, explain, weights};

/// What the written graph holds besides the trained head.
pub(crate) struct Extras<'a> {
    pub(crate) rejection: Option<&'a contract::Rejection>,
    /// The head's prior per class (see [`super::neither::prior_groups`]).
    pub(crate) prior_groups: Option<Vec<Vec<i64>>>,
    /// The base classes the labels are about.
    pub(crate) domain: Option<&'a (Vec<i64>, &'static str)>,
}

/// Writes the model to `out`.
pub(crate) fn model(
    out: &Path,
    probe: &Probe,
    plan: &Plan,
    trained: &SoftmaxHead,
    summary: &Summary,
    extras: Extras,
) -> Result<(), FinetuneError> {
    let metadata = metadata(probe, summary, extras.rejection);
    let prior = extras
        .prior_groups
        .zip(probe.logits.clone())
        .map(|(groups, logits)| graph::Prior { logits, groups });
    let evidence = match (plan.mode, extras.domain, &probe.logits) {
        (Some(NeitherMode::Threshold), Some((domain, _)), Some(logits)) => Some(graph::Evidence {
            logits: logits.clone(),
            domain: domain.clone(),
        }),
        _ => None,
    };
    let graph = graph::replace_head(
        &probe.graph,
        &probe.head,
        &trained.weights,
        &trained.bias,
        prior.as_ref(),
        evidence.as_ref(),
        &metadata,
    )?;
    // The weights the new graph still refers to, in the base's file.
    let view = probe.model.view().map_err(FinetuneError::Read)?;
    let location = probe.model.location();
    let stored = weights::Stored {
        base: &view,
        location: &location,
    };
    let graph = with_explanation(
        graph,
        probe,
        &stored,
        &summary.labels,
        extras.rejection,
        prior.as_ref(),
    )?;
    let bytes = weights::inline(&graph, &view, &location).map_err(graph::GraphError::from)?;
    std::fs::write(out, bytes).map_err(|error| FinetuneError::Write {
        path: out.to_path_buf(),
        error,
    })
}

/// The written graph with its explanation branch (see
/// [`crate::model::explain`]): the trained head's columns, plus the base's
/// groups when the head starts from the base's answer. A base whose
/// feature map catdog cannot reach is written without one, and said so.
fn with_explanation(
    graph_bytes: Vec<u8>,
    probe: &Probe,
    stored: &weights::Stored,
    labels: &[String],
    rejection: Option<&contract::Rejection>,
    prior: Option<&graph::Prior>,
) -> Result<Vec<u8>, FinetuneError> {
    let mut model = graph::parse(&graph_bytes)?;
    let Some(scores) = graph::logits_tensor(&model) else {
        return Ok(graph_bytes);
    };
    let rejecting = rejection.map(|r| r.label.as_str());
    let targets = explain::Targets::labelled(labels, rejecting, scores, labels.len());
    let kept = targets.label_columns();
    let trained = explain::Layer {
        weight: explain::Weight::Float("catdog_head.weight".into()),
        transposed: false,
    };
    let base = prior.and_then(|prior| {
        let layer = explain::plan::final_layer(&probe.graph, &probe.head)?;
        let produced = |name: &str| {
            model
                .graph
                .as_ref()
                .is_some_and(|g| g.node.iter().any(|n| n.output.iter().any(|o| o == name)))
        };
        // When the base's logits were its output, the new head took that
        // name and they were renamed.
        let renamed = graph::BASE_LOGITS;
        let logits = if produced(renamed) {
            renamed.to_string()
        } else {
            prior.logits.clone()
        };
        Some(explain::score::Grouped {
            layer,
            logits,
            groups: prior
                .groups
                .iter()
                .map(|g| g.iter().map(|&c| c as usize).collect())
                .collect(),
        })
    });
    let plan = explain::Plan {
        features: probe.head.feature.clone(),
        targets,
        layers: explain::ScoreLayers {
            trained: Some((trained, kept.iter().map(|&i| i as i64).collect())),
            base: base.map(|mut b| {
                b.groups = kept
                    .iter()
                    .filter_map(|&i| b.groups.get(i).cloned())
                    .collect();
                b
            }),
        },
    };
    match explain::add_branch(&mut model, stored, &plan) {
        Ok(_) => Ok(graph::serialize(&model)?),
        Err(why) => {
            tracing::info!(reason = %why, "the fine-tuned model is explained by occlusion");
            Ok(graph_bytes)
        }
    }
}

/// The model contract's metadata: labels, the base's preprocessing (with
/// its layout), the output, the rejection rule, and the training record.
fn metadata(
    probe: &Probe,
    summary: &Summary,
    rejection: Option<&contract::Rejection>,
) -> Vec<(&'static str, String)> {
    let mut spec = probe.runner.preprocessor().spec().clone();
    spec.layout = Some(probe.runner.preprocessor().layout());
    let mut metadata = vec![
        (
            contract::KEY_LABELS,
            serde_json::to_string(&summary.labels).expect("strings serialise"),
        ),
        (
            contract::KEY_PREPROCESSING,
            serde_json::to_string(&spec).expect("spec serialises"),
        ),
        (contract::KEY_OUTPUT, "probabilities".to_string()),
        ("catdog_training", training_record(summary)),
    ];
    if let Some(r) = rejection {
        metadata.push((contract::KEY_REJECTION, r.to_metadata()));
    }
    metadata
}

/// The summary as stored in the model: without wall-clock timings, so the
/// same data, base and seed give a byte-identical file.
fn training_record(summary: &Summary) -> String {
    let mut v = serde_json::to_value(summary).expect("summary serialises");
    if let Some(o) = v.as_object_mut() {
        o.remove("extract_s");
        o.remove("train_s");
    }
    v.to_string()
}
