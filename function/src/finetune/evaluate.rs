//! Scoring the trained head as the written model will answer: accuracy on
//! the validation photos, the base's own zero-shot accuracy on the same
//! photos, the epoch kept, and whether the result is too weak to write.

use super::config::{Acceptance, NeitherMode};
use super::features::{self, Extracted};
use super::plan::Plan;
use super::sets::Labelled;
use super::summary::NeitherSummary;
use super::train::{EpochStats, SoftmaxHead};
use crate::model::{contract, imagenet, output};

/// The written model's answers, computed on cached rows: the trained head,
/// then (threshold mode) the base's evidence as the last column, then the
/// label rule — the same rule serving applies ([`output::predict`]).
pub(crate) struct Answers<'a> {
    head: &'a SoftmaxHead,
    rule: output::AnswerRule,
    /// Threshold mode: the base classes the evidence sums over.
    evidence: Option<&'a [i64]>,
}

impl<'a> Answers<'a> {
    pub(crate) fn new(
        head: &'a SoftmaxHead,
        plan: &Plan,
        rejection: Option<&contract::Rejection>,
        domain: Option<&'a (Vec<i64>, &'static str)>,
    ) -> Self {
        Answers {
            head,
            rule: output::AnswerRule::Labels {
                labels: plan.answers.clone(),
                rejection: rejection.cloned(),
            },
            evidence: domain
                .map(|(d, _)| d.as_slice())
                .filter(|_| plan.mode == Some(NeitherMode::Threshold)),
        }
    }

    /// The index (in the rule's labels) of the answer for row `i` of `ex`.
    pub(crate) fn answer(&self, ex: &Extracted, i: usize) -> usize {
        let mut row = self
            .head
            .probabilities(&ex.features[i], ex.prior.as_ref().map(|p| p[i].as_slice()));
        if let (Some(domain), Some(logits)) = (self.evidence, &ex.logits) {
            let e = features::evidence(&logits[i], domain);
            row.iter_mut().for_each(|p| *p *= e);
            row.push(1.0 - e);
        }
        // `scores` are in the rule's label order.
        let p = output::predict(&self.rule, &row);
        p.scores
            .0
            .iter()
            .position(|(l, _)| *l == p.label)
            .unwrap_or(0)
    }

    /// How many rows of `ex` get the answer `label`.
    pub(crate) fn count(&self, ex: &Extracted, label: usize) -> usize {
        (0..ex.features.len())
            .filter(|&i| self.answer(ex, i) == label)
            .count()
    }

    /// Share of the rows answered right (see [`Plan::truth`]).
    pub(crate) fn accuracy(&self, set: &Labelled, plan: &Plan) -> f64 {
        let right = (0..set.y.len())
            .filter(|&i| self.answer(&set.ex, i) == plan.truth(set.y[i]))
            .count();
        right as f64 / set.y.len().max(1) as f64
    }
}

/// The base's own zero-shot answer on the same photos (ImageNet bases: the
/// labels' groups, and `neither` below the ImageNet mode's threshold).
pub(crate) fn base_accuracy(
    plan: &Plan,
    rejection: Option<&contract::Rejection>,
    valid: &Labelled,
) -> Option<f64> {
    let (groups, logits) = plan.groups.as_ref().zip(valid.ex.logits.as_ref())?;
    let zero_shot = output::AnswerRule::Labels {
        labels: plan.answers.clone(),
        rejection: rejection.map(|r| contract::Rejection {
            below: imagenet::DEFAULT_NEITHER_BELOW,
            ..r.clone()
        }),
    };
    let right = logits
        .iter()
        .zip(&valid.y)
        .filter(|(row, &y)| {
            let mut p: Vec<f32> = groups.iter().map(|g| features::evidence(row, g)).collect();
            if rejection.is_some() {
                p.push((1.0 - p.iter().sum::<f32>()).max(0.0));
            }
            let label = output::predict(&zero_shot, &p).label;
            plan.answers.iter().position(|l| *l == label) == Some(plan.truth(y))
        })
        .count();
    Some(right as f64 / valid.y.len().max(1) as f64)
}

/// The epoch whose head training kept: the lowest validation loss (the
/// last epoch without validation).
pub(crate) fn best_epoch(history: &[EpochStats]) -> usize {
    history
        .iter()
        .filter_map(|h| h.valid_loss.map(|l| (h.epoch, l)))
        .fold(
            (history.last().map_or(0, |h| h.epoch), f32::INFINITY),
            |b, (e, l)| if l < b.1 - 1e-6 { (e, l) } else { b },
        )
        .0
}

/// Why the head is too weak to write, the most specific reason first:
/// photos of other things it does not answer `neither` for, then a
/// validation accuracy under the floor, then under the base's own.
pub(crate) fn weakness(
    accept: &Acceptance,
    neither: Option<&NeitherSummary>,
    valid_accuracy: f64,
    base_accuracy: Option<f64>,
) -> Option<String> {
    let floor = accept.min_accuracy;
    // A handful of photos of other things (a few corrections) is not a
    // sample to judge the rule by: they only place it (neither::above_a_few).
    if let Some(n) = neither.filter(|n| {
        n.other_photos >= super::plan::MIN_CLASS_PHOTOS
            && (n.other_photos_rejected as f64) + 1e-6 < floor * n.other_photos as f64
    }) {
        return Some(format!(
            "`{}` is the answer for only {} of the {} photos of other things, below the floor of {:.1}% (--min-accuracy)",
            n.label,
            n.other_photos_rejected,
            n.other_photos,
            floor * 100.0
        ));
    }
    if valid_accuracy + 1e-6 < floor {
        return Some(format!(
            "validation accuracy {:.1}% is below the floor of {:.1}% (--min-accuracy)",
            valid_accuracy * 100.0,
            floor * 100.0
        ));
    }
    base_accuracy
        .filter(|b| valid_accuracy + 1e-6 < *b)
        .map(|base| {
            format!(
                "validation accuracy {:.1}% is below the base's own zero-shot choice ({:.1}%) on the same photos",
                valid_accuracy * 100.0,
                base * 100.0
            )
        })
}
