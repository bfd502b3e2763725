//! `catdog finetune --cv K`: the candidate settings measured by stratified
//! k-fold cross-validation on the cached features of train/ and valid/ (never
//! test/), to choose the defaults by measurement. Each fold trains as
//! `finetune` does (early stopping on a fifth of the training folds) and is
//! scored on the held-out fold.

use serde::Serialize;

use super::features::{Extracted, View};
use super::train::{self, Rng, Set, TrainConfig};

/// The photos' features, with each augmented copy's.
pub(crate) struct Pool {
    x: Vec<Vec<f32>>,
    y: Vec<usize>,
    prior: Option<Vec<Vec<f32>>>,
    /// Augmented copies, each aligned with `x` (copies that did not align are dropped).
    views: Vec<Copies>,
}

/// One augmentation's copy of every pooled photo.
struct Copies {
    view: View,
    x: Vec<Vec<f32>>,
    prior: Option<Vec<Vec<f32>>>,
}

/// Appends `ex` to (features, priors); priors go away when one set has none.
fn append(x: &mut Vec<Vec<f32>>, prior: &mut Option<Vec<Vec<f32>>>, ex: &Extracted) {
    x.extend(ex.features.iter().cloned());
    match (prior.as_mut(), &ex.prior) {
        (Some(p), Some(e)) => p.extend(e.iter().cloned()),
        _ => *prior = None,
    }
}

impl Pool {
    /// Pools sets of (features, labels) with, per view, the same sets' augmented extractions.
    pub(crate) fn new<const N: usize>(
        sets: &[(&Extracted, &Vec<usize>); N],
        views: &[(View, [Extracted; N])],
    ) -> Self {
        let mut pool = Pool {
            x: vec![],
            y: vec![],
            prior: Some(vec![]),
            views: vec![],
        };
        for (ex, y) in sets {
            append(&mut pool.x, &mut pool.prior, ex);
            pool.y.extend(y.iter().copied());
        }
        for (view, extracted) in views {
            let (mut x, mut prior) = (vec![], Some(vec![]));
            for ex in extracted {
                append(&mut x, &mut prior, ex);
            }
            if x.len() == pool.x.len() {
                pool.views.push(Copies {
                    view: *view,
                    x,
                    prior,
                });
            }
        }
        pool
    }

    fn has(&self, wanted: impl Fn(View) -> bool) -> bool {
        self.views.iter().any(|c| wanted(c.view))
    }
}

/// One candidate's settings.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Candidate {
    pub(crate) zero_shot: bool,
    pub(crate) weight_decay: f32,
    pub(crate) label_smoothing: f32,
    pub(crate) mirror: bool,
    pub(crate) crop: bool,
}

/// One candidate's cross-validated score.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CandidateScore {
    pub(crate) candidate: Candidate,
    pub(crate) correct: usize,
    pub(crate) total: usize,
    pub(crate) mean_loss: f32,
    /// The same heads, answering with the mean of the photo's and its
    /// mirror image's probabilities (test-time flip averaging).
    pub(crate) tta_correct: Option<usize>,
    pub(crate) tta_mean_loss: Option<f32>,
}

/// Every candidate's score, best first, and the base's zero-shot choice.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub(crate) folds: usize,
    pub(crate) photos: usize,
    pub(crate) zero_shot_correct: Option<usize>,
    pub(crate) rows: Vec<CandidateScore>,
}

/// Runs every candidate over `k` stratified folds.
pub(crate) fn run(
    pool: &Pool,
    classes: usize,
    k: usize,
    base: TrainConfig,
    zero_shot: bool,
) -> Report {
    let k = k.max(2);
    // Stratified folds: each class shuffled by the seed, dealt round-robin.
    let mut fold = vec![0usize; pool.y.len()];
    let mut rng = Rng::new(base.seed ^ 0xC0FF_EE00);
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..pool.y.len()).filter(|&i| pool.y[i] == c).collect();
        rng.shuffle(&mut idx);
        for (n, i) in idx.into_iter().enumerate() {
            fold[i] = n % k;
        }
    }
    let mut candidates = Vec::new();
    for zs in if zero_shot {
        vec![true, false]
    } else {
        vec![false]
    } {
        for wd in [0.0, 1e-2, 1e-1] {
            for ls in [0.0, 0.1] {
                for (mirror, crop) in [(false, false), (true, false), (false, true), (true, true)] {
                    if (mirror && !pool.has(|v| v == View::Mirror))
                        || (crop && !pool.has(|v| matches!(v, View::Crop(_))))
                    {
                        continue;
                    }
                    candidates.push(Candidate {
                        zero_shot: zs,
                        weight_decay: wd,
                        label_smoothing: ls,
                        mirror,
                        crop,
                    });
                }
            }
        }
    }
    let mut rows: Vec<CandidateScore> = candidates
        .iter()
        .map(|c| score(pool, classes, k, &fold, base, *c))
        .collect();
    rows.sort_by(|a, b| {
        b.correct
            .cmp(&a.correct)
            .then(a.mean_loss.total_cmp(&b.mean_loss))
    });
    let zero_shot_correct = pool.prior.as_ref().map(|p| {
        p.iter()
            .zip(&pool.y)
            .filter(|(p, &y)| train::argmax(p) == y)
            .count()
    });
    Report {
        folds: k,
        photos: pool.y.len(),
        zero_shot_correct,
        rows,
    }
}

fn score(
    pool: &Pool,
    classes: usize,
    k: usize,
    fold: &[usize],
    base: TrainConfig,
    c: Candidate,
) -> CandidateScore {
    let cfg = TrainConfig {
        weight_decay: c.weight_decay,
        label_smoothing: c.label_smoothing,
        ..base
    };
    let (mut correct, mut total, mut loss) = (0, 0, 0.0f32);
    let (mut tta_correct, mut tta_loss) = (0usize, 0.0f32);
    let tta = pool.has(|v| v == View::Mirror);
    let pick = |idx: &[usize], view: View| {
        let (xs, ps) = pool
            .views
            .iter()
            .find(|c| c.view == view)
            .map_or((&pool.x, &pool.prior), |c| (&c.x, &c.prior));
        let x: Vec<Vec<f32>> = idx.iter().map(|&i| xs[i].clone()).collect();
        let y: Vec<usize> = idx.iter().map(|&i| pool.y[i]).collect();
        let p: Option<Vec<Vec<f32>>> = ps
            .as_ref()
            .filter(|_| c.zero_shot)
            .map(|ps| idx.iter().map(|&i| ps[i].clone()).collect());
        (x, y, p)
    };
    for f in 0..k {
        let held: Vec<usize> = (0..pool.y.len()).filter(|&i| fold[i] == f).collect();
        let rest: Vec<usize> = (0..pool.y.len()).filter(|&i| fold[i] != f).collect();
        // A fifth of the training folds stops training early, as `finetune` does.
        let inner: Vec<usize> = rest
            .iter()
            .copied()
            .enumerate()
            .filter(|(n, _)| n % 5 == 0)
            .map(|(_, i)| i)
            .collect();
        let fit: Vec<usize> = rest
            .iter()
            .copied()
            .enumerate()
            .filter(|(n, _)| n % 5 != 0)
            .map(|(_, i)| i)
            .collect();
        let (mut x, mut y, mut p) = pick(&fit, View::Original);
        let views = super::Augment {
            mirror: c.mirror,
            crop: c.crop,
        }
        .views();
        for view in views {
            let (xm, ym, pm) = pick(&fit, view);
            x.extend(xm);
            y.extend(ym);
            if let (Some(p), Some(pm)) = (p.as_mut(), pm) {
                p.extend(pm);
            }
        }
        let (vx, vy, vp) = pick(&inner, View::Original);
        let (hx, hy, hp) = pick(&held, View::Original);
        let fit_set = Set {
            x: &x,
            y: &y,
            prior: p.as_deref(),
        };
        let valid = Set {
            x: &vx,
            y: &vy,
            prior: vp.as_deref(),
        };
        let (head, _) = train::train(fit_set, classes, cfg, Some(valid), |_| {});
        let held_set = Set {
            x: &hx,
            y: &hy,
            prior: hp.as_deref(),
        };
        let (l, a) = head.evaluate(held_set);
        correct += (a * hy.len() as f32).round() as usize;
        total += hy.len();
        loss += l * hy.len() as f32;
        if tta {
            let (mx, _, mp) = pick(&held, View::Mirror);
            for (i, &y) in hy.iter().enumerate() {
                let p = head.probabilities(&hx[i], hp.as_ref().map(|p| p[i].as_slice()));
                let q = head.probabilities(&mx[i], mp.as_ref().map(|p| p[i].as_slice()));
                let mean: Vec<f32> = p.iter().zip(&q).map(|(a, b)| (a + b) / 2.0).collect();
                tta_loss -= mean[y].max(1e-12).ln();
                tta_correct += usize::from(train::argmax(&mean) == y);
            }
        }
    }
    CandidateScore {
        candidate: c,
        correct,
        total,
        mean_loss: loss / total.max(1) as f32,
        tta_correct: tta.then_some(tta_correct),
        tta_mean_loss: tta.then(|| tta_loss / total.max(1) as f32),
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}-fold cross-validation on {} photos (train/ and valid/; test/ untouched)\n",
            self.folds, self.photos
        )?;
        if let Some(z) = self.zero_shot_correct {
            writeln!(
                f,
                "the base's zero-shot choice, no training: {z}/{} = {:.1}%\n",
                self.photos,
                pct(z, self.photos)
            )?;
        }
        writeln!(
            f,
            "| start | weight decay | label smoothing | mirror | crops | accuracy | held-out loss | with flip averaging |"
        )?;
        writeln!(f, "| --- | --- | --- | --- | --- | --- | --- | --- |")?;
        for r in &self.rows {
            let c = r.candidate;
            writeln!(
                f,
                "| {} | {} | {} | {} | {} | {}/{} = {:.1}% | {:.4} | {} |",
                if c.zero_shot { "zero-shot" } else { "random" },
                c.weight_decay,
                c.label_smoothing,
                if c.mirror { "yes" } else { "no" },
                if c.crop { "yes" } else { "no" },
                r.correct,
                r.total,
                pct(r.correct, r.total),
                r.mean_loss,
                match (r.tta_correct, r.tta_mean_loss) {
                    (Some(n), Some(l)) => format!("{n}/{}, loss {l:.4}", r.total),
                    _ => "-".into(),
                }
            )?;
        }
        Ok(())
    }
}

fn pct(n: usize, d: usize) -> f64 {
    n as f64 * 100.0 / d.max(1) as f64
}
