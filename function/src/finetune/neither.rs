//! The rejecting label (`neither`): the base classes the labels are about, the rule that
//! answers `neither` (a threshold on the base's evidence, or a trained
//! class), and what that rule answers on the photos.

use super::config::{FinetuneConfig, NeitherMode};
use super::data::Split;
use super::evaluate::Answers;
use super::features::Extracted;
use super::plan::{Plan, MIN_CLASS_PHOTOS};
use super::sets::Labelled;
use super::summary::NeitherSummary;
use super::train;
use crate::model::{contract, imagenet};

/// How far below the user's photos a photo must be to count as a clear
/// outlier, by default: Tukey's fence, this many interquartile ranges under
/// the lower quartile of the photos' evidence (in logit). Measured against
/// 1.0 in models/README.md: 1.5 keeps the most unseen pets, and on the
/// shared photos 1.0 puts the threshold within 1% of a real cat's evidence.
pub(crate) const FENCE_IQRS: f64 = 1.5;

/// How far under the lowest corrected photo (a pet a person said the model
/// wrongly called `neither`) the threshold goes, so that photo is kept.
const KEEP_MARGIN: f64 = 0.9;

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
    keep: &[(usize, usize)],
) -> Option<(contract::Rejection, Option<f32>)> {
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
    // The photos people said are pets although the model said `neither`:
    // (split, file) of `photos`' rows.
    let kept: Vec<f32> = domain
        .map(|(d, _)| {
            keep.iter()
                .filter_map(|&(split, file)| {
                    let ex = &photos[split];
                    let row = ex.kept.iter().position(|&f| f == file)?;
                    Some(ex.evidence(d)?[row])
                })
                .collect()
        })
        .unwrap_or_default();
    match plan.mode? {
        NeitherMode::Threshold => {
            let (photos, others) = (evidence(photos), evidence(others));
            let fence = cfg.neither.as_ref()?.fence;
            let below = choose_threshold(&photos, &others, &kept, fence);
            // Where it would be without the corrections, when they moved it.
            let moved = (!kept.is_empty())
                .then(|| choose_threshold(&photos, &others, &[], fence))
                .filter(|&unmoved| below < unmoved);
            Some((contract::Rejection { label, below }, moved))
        }
        NeitherMode::Class => Some((contract::Rejection { label, below: 0.5 }, None)),
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
    files: [&Split; 2],
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
        below_without_corrections: None,
        rejected_photos: photos
            .iter()
            .zip(files)
            .flat_map(|(ex, split)| {
                (0..ex.features.len())
                    .filter(|&i| answers.answer(ex, i) == neither)
                    .map(|i| split.files[ex.kept[i]].0.clone())
                    .collect::<Vec<_>>()
            })
            .collect(),
    }
}

/// The threshold of the base's evidence for the labels' classes (see
/// [`super::graph::Evidence`]). From the user's photos alone: Tukey's
/// lower fence of their evidence in logit (`iqrs` interquartile
/// ranges under the lower quartile), so every photo is kept unless it is
/// a clear outlier, never above the ImageNet mode's own; a few photos of
/// other things raise it only over themselves ([`above_a_few`]). With
/// enough photos of other things: the split between the two with the fewest errors
/// (each side weighted by its size), at the middle (in log) of the best
/// splits. Either way, never above `keep` (photos a person corrected from
/// `neither`), less a margin, down to the fence twice as far out.
pub(crate) fn choose_threshold(photos: &[f32], others: &[f32], keep: &[f32], iqrs: f64) -> f32 {
    let t = if others.len() < MIN_CLASS_PHOTOS {
        above_a_few(photos, others, iqrs)
    } else {
        split(photos, others)
    };
    // Never under the fence twice as far out: one correction must not turn
    // the rule off.
    let floor = keep
        .iter()
        .map(|&e| f64::from(e) * KEEP_MARGIN)
        .fold(f64::INFINITY, f64::min)
        .max(fence(photos, 2.0 * iqrs).min(t));
    t.min(floor) as f32
}

fn sorted_log(v: &[f32]) -> Vec<f64> {
    let mut l: Vec<f64> = v.iter().map(|&e| f64::from(e.max(1e-30)).ln()).collect();
    l.sort_by(f64::total_cmp);
    l
}

/// The `q` quantile of sorted `v` (interpolated).
fn quantile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    v[i] + frac * (v[(i + 1).min(v.len() - 1)] - v[i])
}

/// With fewer than [`MIN_CLASS_PHOTOS`] photos of other things (a few
/// corrections), they do not outweigh the user's photos: the fence, raised
/// over them (to the middle, in log, of the gap) only when that rejects no
/// photo the fence keeps.
fn above_a_few(photos: &[f32], others: &[f32], iqrs: f64) -> f64 {
    let t = fence(photos, iqrs);
    let highest_other = others
        .iter()
        .map(|&e| f64::from(e))
        .fold(f64::NEG_INFINITY, f64::max);
    let lowest_kept = photos
        .iter()
        .map(|&e| f64::from(e))
        .filter(|&e| e >= t)
        .fold(f64::INFINITY, f64::min);
    if highest_other < t || highest_other >= lowest_kept {
        return t;
    }
    let middle = (highest_other.max(1e-30).ln() + lowest_kept.ln()) / 2.0;
    middle
        .exp()
        .max(t)
        .min(f64::from(imagenet::DEFAULT_NEITHER_BELOW))
}

/// The photos' lower fence, in evidence (see [`choose_threshold`]).
fn fence(photos: &[f32], iqrs: f64) -> f64 {
    let cap = f64::from(imagenet::DEFAULT_NEITHER_BELOW);
    if photos.is_empty() {
        return cap;
    }
    let logit = |e: f32| {
        let e = f64::from(e).clamp(1e-12, 1.0 - 1e-12);
        (e / (1.0 - e)).ln()
    };
    let mut x: Vec<f64> = photos.iter().map(|&e| logit(e)).collect();
    x.sort_by(f64::total_cmp);
    let (q1, q3) = (quantile(&x, 0.25), quantile(&x, 0.75));
    let fence = q1 - iqrs * (q3 - q1);
    (1.0 / (1.0 + (-fence).exp())).min(cap)
}

/// The split between the photos and other things with the fewest errors.
fn split(photos: &[f32], others: &[f32]) -> f64 {
    let (photos, others) = (sorted_log(photos), sorted_log(others));
    if photos.is_empty() {
        return f64::from(imagenet::DEFAULT_NEITHER_BELOW);
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
    ((lo + hi) / 2.0).exp().min(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_from_the_photos_alone_keeps_all_but_clear_outliers() {
        // 100 photos with evidence spread over logit 0..10, and one far
        // below them: only that one falls under the fence.
        let logistic = |x: f64| (1.0 / (1.0 + (-x).exp())) as f32;
        let mut photos: Vec<f32> = (0..100).map(|i| logistic(f64::from(i) / 10.0)).collect();
        let t = choose_threshold(&photos, &[], &[], FENCE_IQRS);
        assert!(photos.iter().all(|&e| e >= t), "threshold {t}");
        photos.push(logistic(-20.0));
        let t = choose_threshold(&photos, &[], &[], FENCE_IQRS);
        assert_eq!(
            photos.iter().filter(|&&e| e < t).count(),
            1,
            "threshold {t}"
        );
        // Never above the ImageNet mode's own.
        assert_eq!(
            choose_threshold(&[0.9, 0.95, 0.99], &[], &[], FENCE_IQRS),
            imagenet::DEFAULT_NEITHER_BELOW
        );
        assert_eq!(
            choose_threshold(&[], &[], &[], FENCE_IQRS),
            imagenet::DEFAULT_NEITHER_BELOW
        );
        // A photo a person corrected from `neither` is kept, down to the
        // fence twice as far out; one far beyond it is not.
        let near = logistic(-3.0);
        photos.push(near);
        let t = choose_threshold(&photos, &[], &[near], FENCE_IQRS);
        assert!(near >= t, "{near} < {t}");
        let far = logistic(-20.0);
        let t = choose_threshold(&photos, &[], &[far], FENCE_IQRS);
        assert!(far < t, "{far} >= {t}: one correction turned the rule off");
    }

    #[test]
    fn a_threshold_with_other_photos_splits_them_in_the_middle() {
        let photos = [0.5f32, 0.9, 0.99, 0.2];
        let others = [0.001f32, 0.0001, 0.002].repeat(4);
        let t = choose_threshold(&photos, &others, &[], FENCE_IQRS);
        // The middle (in log) of the gap between 0.002 and 0.2.
        assert!((t - (0.002f32 * 0.2).sqrt()).abs() < 1e-4, "{t}");
        // Overlap: the split with fewest errors, one photo given up…
        let t = choose_threshold(&[0.5, 0.9, 0.99, 0.0005], &others, &[], FENCE_IQRS);
        assert!(t > 0.002 && t < 0.5, "{t}");
        // …unless a person said it is a pet.
        let t = choose_threshold(&[0.5, 0.9, 0.99, 0.0005], &others, &[0.0005], FENCE_IQRS);
        assert!(t <= 0.0005, "{t}");
    }

    #[test]
    fn a_few_other_photos_raise_the_fence_only_over_themselves() {
        let logistic = |x: f64| (1.0 / (1.0 + (-x).exp())) as f32;
        // Evidence from logit -3 to 10: the fence is near logit -6.
        let photos: Vec<f32> = (0..130)
            .map(|i| logistic(-3.0 + f64::from(i) / 10.0))
            .collect();
        let fenced = choose_threshold(&photos, &[], &[], FENCE_IQRS);
        // Under the lowest photo kept: the threshold goes over it.
        let under = logistic(-4.5);
        let t = choose_threshold(&photos, &[under], &[], FENCE_IQRS);
        assert!(t > under && photos.iter().all(|&e| e >= t), "{t}");
        // Among the photos kept: it stays at the fence, the photos win.
        let among = logistic(0.0);
        assert_eq!(choose_threshold(&photos, &[among], &[], FENCE_IQRS), fenced);
    }
}
