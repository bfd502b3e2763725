//! The rejecting label (`neither`): the base classes the labels are about, the rule that
//! answers `neither` (a threshold on the base's evidence, or a trained
//! class), and what that rule answers on the photos.

use super::config::{FinetuneConfig, NeitherMode};
use super::evaluate::Answers;
use super::features::Extracted;
use super::plan::Plan;
use super::sets::Labelled;
use super::summary::NeitherSummary;
use super::train;
use crate::model::{contract, imagenet};

/// Share of the user's own photos a threshold chosen from them alone may
/// reject: the rest is the room left for other things.
pub(crate) const PETS_REJECTED: f64 = 0.02;

/// The base classes the labels are about, and where they came from, when
/// the rejecting label needs them: the labels' ImageNet groups, else every
/// class that is the base's first choice for one of the training photos.
pub(super) fn domain(plan: &Plan, train: &Labelled) -> Option<(Vec<i64>, &'static str)> {
    let groups = plan.groups.as_deref();
    match (plan.mode, &train.ex.logits) {
        (Some(NeitherMode::Threshold), Some(logits)) => {
            let photos: Vec<&Vec<f32>> = (0..train.y.len())
                .filter(|&i| train.y[i] < plan.pets)
                .map(|i| &logits[i])
                .collect();
            Some(domain_of(groups, &photos))
        }
        (Some(NeitherMode::Class), Some(_)) if groups.is_some() => Some(domain_of(groups, &[])),
        _ => None,
    }
}

fn domain_of(groups: Option<&[Vec<i64>]>, logits: &[&Vec<f32>]) -> (Vec<i64>, &'static str) {
    let mut domain: Vec<i64> = match groups {
        Some(groups) => groups.iter().flatten().copied().collect(),
        None => logits.iter().map(|row| train::argmax(row) as i64).collect(),
    };
    domain.sort_unstable();
    domain.dedup();
    (domain, if groups.is_some() { "groups" } else { "top1" })
}

/// The head's prior per class: the labels' groups, and with `neither` as a
/// trained class, every base class outside the labels' domain as its group.
pub(super) fn prior_groups(
    plan: &Plan,
    domain: Option<&(Vec<i64>, &str)>,
) -> Option<Vec<Vec<i64>>> {
    match (plan.mode, &plan.groups, domain) {
        (Some(NeitherMode::Class), Some(groups), Some((domain, _))) => {
            let rest = (0..imagenet::NUM_CLASSES as i64)
                .filter(|c| domain.binary_search(c).is_err())
                .collect();
            Some(groups.iter().cloned().chain([rest]).collect())
        }
        (_, groups, _) => groups.clone(),
    }
}

/// The rule that answers the rejecting label: a threshold on the base's
/// evidence chosen on the photos, or (a trained class) "when the others are
/// less likely than not".
pub(super) fn rule(
    cfg: &FinetuneConfig,
    plan: &Plan,
    domain: Option<&(Vec<i64>, &str)>,
    photos: &[Extracted],
    others: &[Extracted],
) -> Option<contract::Rejection> {
    let evidence = |sets: &[Extracted]| -> Vec<f32> {
        let Some((d, _)) = domain else {
            return Vec::new();
        };
        sets.iter()
            .filter_map(|ex| ex.evidence(d))
            .flatten()
            .collect()
    };
    let label = cfg.neither.as_ref()?.label.clone();
    match plan.mode? {
        NeitherMode::Threshold => Some(contract::Rejection {
            label,
            below: choose_threshold(&evidence(photos), &evidence(others)),
        }),
        NeitherMode::Class => Some(contract::Rejection { label, below: 0.5 }),
    }
}

/// What the rule answers on the photos of the labels and of other things.
pub(super) fn summarize(
    plan: &Plan,
    rejection: &contract::Rejection,
    domain: Option<&(Vec<i64>, &'static str)>,
    answers: &Answers,
    photos: &[Extracted],
    others: &[Extracted],
) -> NeitherSummary {
    let neither = plan.answers.len() - 1;
    let rejected =
        |sets: &[Extracted]| -> usize { sets.iter().map(|ex| answers.count(ex, neither)).sum() };
    let threshold = plan.mode == Some(NeitherMode::Threshold);
    NeitherSummary {
        label: rejection.label.clone(),
        mode: plan.mode.unwrap_or(NeitherMode::Threshold),
        below: rejection.below,
        domain: domain
            .filter(|_| threshold)
            .map(|(d, from)| (d.len(), *from)),
        photos: photos.iter().map(|ex| ex.features.len()).sum(),
        photos_rejected: rejected(photos),
        other_photos: others.iter().map(|ex| ex.features.len()).sum(),
        other_photos_rejected: rejected(others),
    }
}

/// The threshold of the base's evidence for the labels' classes (see
/// [`super::graph::Evidence`]). From the user's photos alone: the value that
/// [`PETS_REJECTED`] of them fall under (interpolated in log), never above
/// the ImageNet mode's own. With photos of other things too: the split
/// between the two with the fewest errors (each side weighted by its
/// size), at the middle (in log) of the best splits.
pub(crate) fn choose_threshold(photos: &[f32], others: &[f32]) -> f32 {
    let log = |v: &[f32]| -> Vec<f64> {
        let mut l: Vec<f64> = v.iter().map(|&e| f64::from(e.max(1e-30)).ln()).collect();
        l.sort_by(f64::total_cmp);
        l
    };
    let (photos, others) = (log(photos), log(others));
    let cap = f64::from(imagenet::DEFAULT_NEITHER_BELOW);
    if photos.is_empty() {
        return cap as f32;
    }
    if others.is_empty() {
        let pos = PETS_REJECTED * (photos.len() - 1) as f64;
        let (i, frac) = (pos.floor() as usize, pos.fract());
        let next = photos[(i + 1).min(photos.len() - 1)];
        return (photos[i] + frac * (next - photos[i])).exp().min(cap) as f32;
    }
    let mut cuts: Vec<f64> = photos.iter().chain(&others).copied().collect();
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    let mut candidates: Vec<f64> = cuts.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    candidates.push(cuts[0] - 1.0);
    candidates.push(cuts[cuts.len() - 1] + 1.0);
    let error = |t: f64| {
        let rejected = photos.iter().filter(|&&p| p < t).count() as f64 / photos.len() as f64;
        let kept = others.iter().filter(|&&o| o >= t).count() as f64 / others.len() as f64;
        rejected + kept
    };
    let best = candidates
        .iter()
        .map(|&t| error(t))
        .fold(f64::INFINITY, f64::min);
    let mut tied: Vec<f64> = candidates
        .into_iter()
        .filter(|&t| error(t) <= best + 1e-12)
        .collect();
    tied.sort_by(f64::total_cmp);
    let (lo, hi) = (tied[0], tied[tied.len() - 1]);
    ((lo + hi) / 2.0).exp().min(0.5) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_from_the_photos_alone_rejects_few_of_them() {
        // 101 photos, evidence 0.01, 0.02, …: 2% of them fall under it.
        let photos: Vec<f32> = (1..=101).map(|i| i as f32 / 101.0).collect();
        let t = choose_threshold(&photos, &[]);
        let under = photos.iter().filter(|&&e| e < t).count();
        assert_eq!(under, 2, "threshold {t}");
        // Never above the ImageNet mode's own.
        assert_eq!(
            choose_threshold(&[0.9, 0.95, 0.99], &[]),
            imagenet::DEFAULT_NEITHER_BELOW
        );
        assert_eq!(choose_threshold(&[], &[]), imagenet::DEFAULT_NEITHER_BELOW);
    }

    #[test]
    fn a_threshold_with_other_photos_splits_them_in_the_middle() {
        let photos = [0.5f32, 0.9, 0.99, 0.2];
        let others = [0.001f32, 0.0001, 0.002];
        let t = choose_threshold(&photos, &others);
        // The middle (in log) of the gap between 0.002 and 0.2.
        assert!((t - (0.002f32 * 0.2).sqrt()).abs() < 1e-4, "{t}");
        // Overlap: the split with fewest errors, one photo given up.
        let t = choose_threshold(&[0.5, 0.9, 0.99, 0.0005], &others);
        assert!(t > 0.002 && t < 0.5, "{t}");
    }
}
