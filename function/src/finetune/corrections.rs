//! The pictures people corrected (`POST /feedback`), found among the
//! photos by their sidecars, and how the model that answered them and the
//! new one do on them.

use super::data::Split;
use super::evaluate::Answers;
use super::plan::Plan;
use super::sets::Labelled;
use super::summary::CorrectionsSummary;
use crate::feedback::sidecar;

/// A corrected picture: which split and file, and what was answered.
#[derive(Debug, Clone)]
pub(crate) struct Corrected {
    /// 0: train, 1: valid.
    split: usize,
    /// Its index in the split's files.
    file: usize,
    answered: String,
    model_sha256: Option<String>,
}

/// Every picture whose sidecar names the label of the folder it is in.
pub(crate) fn find(splits: [&Split; 2]) -> Vec<Corrected> {
    let mut found = Vec::new();
    for (split, s) in splits.into_iter().enumerate() {
        for (file, (path, class)) in s.files.iter().enumerate() {
            match sidecar::beside(path) {
                Some(c) if c.label == s.labels[*class] => found.push(Corrected {
                    split,
                    file,
                    answered: c.answered,
                    model_sha256: c.model_sha256,
                }),
                _ => {}
            }
        }
    }
    found
}

/// The corrected pictures' answers before (recorded) and after (the new
/// model, as it will answer), for those that were usable pictures.
pub(crate) fn summarize(
    found: &[Corrected],
    splits: [&Split; 2],
    sets: [&Labelled; 2],
    answers: &Answers,
    plan: &Plan,
) -> Option<CorrectionsSummary> {
    if found.is_empty() {
        return None;
    }
    let mut summary = CorrectionsSummary {
        pictures: 0,
        trained_on: 0,
        models: Vec::new(),
        right_before: 0,
        right_after: 0,
        still_wrong: Vec::new(),
    };
    for c in found {
        let set = sets[c.split];
        // Rows of the originals, in the split's file order (skipped files
        // have none).
        let Some(row) = set.ex.kept.iter().position(|&f| f == c.file) else {
            continue;
        };
        let truth = plan.truth(set.y[row]);
        summary.pictures += 1;
        summary.trained_on += usize::from(c.split == 0);
        summary.right_before += usize::from(c.answered == plan.answers[truth]);
        if answers.answer(&set.ex, row) == truth {
            summary.right_after += 1;
        } else {
            summary
                .still_wrong
                .push(splits[c.split].files[c.file].0.clone());
        }
        if let Some(m) = &c.model_sha256 {
            if !summary.models.contains(m) {
                summary.models.push(m.clone());
            }
        }
    }
    Some(summary)
}

/// The corrected pictures the model had answered `neither` for and a
/// person says are one of the labels, as (split, file): the rule must keep
/// them.
pub(crate) fn pets_said_neither(
    found: &[Corrected],
    splits: [&Split; 2],
    plan: &Plan,
) -> Vec<(usize, usize)> {
    let Some(neither) = plan.answers.get(plan.pets) else {
        return Vec::new();
    };
    found
        .iter()
        .filter(|c| c.answered == *neither && splits[c.split].files[c.file].1 < plan.pets)
        .map(|c| (c.split, c.file))
        .collect()
}
