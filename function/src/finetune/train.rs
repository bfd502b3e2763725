//! Training a softmax head on cached features: categorical cross-entropy,
//! Adam (Keras defaults) with decoupled weight decay, mini-batches, early
//! stopping on the validation loss (the best epoch is kept), deterministic
//! for a given seed.
//!
//! The head computes `z = prior + x · W + b`. With a prior (the base's own
//! grouped logits, see [`super`]) it starts at `W = 0, b = 0`, so before any
//! step it answers exactly as the base's zero-shot choice, and weight decay
//! pulls it back toward that start: the few photos refine what the base
//! knows instead of replacing it. Without one it starts from Glorot weights.

use serde::Serialize;

/// Hyper-parameters.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TrainConfig {
    /// Most epochs; training stops earlier when the validation loss has not
    /// improved for `patience` epochs, or when `max_steps` is spent.
    pub(crate) epochs: usize,
    pub(crate) lr: f32,
    pub(crate) batch: usize,
    pub(crate) seed: u64,
    /// Decoupled weight decay (toward the start: zero correction).
    pub(crate) weight_decay: f32,
    /// Epochs without a better validation loss before stopping.
    pub(crate) patience: usize,
    /// Most optimizer steps in all (bounds the run on large data sets).
    pub(crate) max_steps: usize,
    /// Label smoothing: the target puts this much mass evenly on all classes.
    pub(crate) label_smoothing: f32,
}

/// One epoch's figures.
#[derive(Debug, Clone, Serialize)]
pub struct EpochStats {
    pub(crate) epoch: usize,
    pub loss: f32,
    pub accuracy: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) valid_loss: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) valid_accuracy: Option<f32>,
}

impl std::fmt::Display for EpochStats {
    /// The epoch's line: `epoch   3: loss 0.1234 accuracy 95.0%  valid loss …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "epoch {:>3}: loss {:.4} accuracy {:.1}%",
            self.epoch,
            self.loss,
            self.accuracy * 100.0
        )?;
        if let (Some(l), Some(a)) = (self.valid_loss, self.valid_accuracy) {
            write!(f, "  valid loss {l:.4} accuracy {:.1}%", a * 100.0)?;
        }
        Ok(())
    }
}

/// A dense softmax layer: `probs = softmax(prior + x · W + b)`, `W` is F×C row-major.
#[derive(Debug, Clone)]
pub(crate) struct SoftmaxHead {
    pub(crate) classes: usize,
    pub(crate) weights: Vec<f32>,
    pub(crate) bias: Vec<f32>,
}

/// A labelled set of cached features, with the base's prior logits per
/// sample when the head starts from the base.
#[derive(Clone, Copy)]
pub(crate) struct Set<'a> {
    pub(crate) x: &'a [Vec<f32>],
    pub(crate) y: &'a [usize],
    pub(crate) prior: Option<&'a [Vec<f32>]>,
}

/// splitmix64: small, seedable, and the same on every platform.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub(crate) fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

impl SoftmaxHead {
    /// Glorot-uniform weights, zero bias (Keras `Dense` defaults).
    pub(crate) fn new(features: usize, classes: usize, rng: &mut Rng) -> Self {
        let limit = (6.0 / (features + classes) as f32).sqrt();
        let weights = (0..features * classes)
            .map(|_| (rng.next_f32() * 2.0 - 1.0) * limit)
            .collect();
        Self {
            classes,
            weights,
            bias: vec![0.0; classes],
        }
    }

    /// All zero: with a prior, the base's own answer.
    pub(crate) fn zero(features: usize, classes: usize) -> Self {
        Self {
            classes,
            weights: vec![0.0; features * classes],
            bias: vec![0.0; classes],
        }
    }

    pub(crate) fn probabilities(&self, x: &[f32], prior: Option<&[f32]>) -> Vec<f32> {
        let mut z = self.bias.clone();
        if let Some(p) = prior {
            for (zc, pc) in z.iter_mut().zip(p) {
                *zc += pc;
            }
        }
        for (f, xv) in x.iter().enumerate() {
            if *xv != 0.0 {
                let row = &self.weights[f * self.classes..(f + 1) * self.classes];
                for (zc, w) in z.iter_mut().zip(row) {
                    *zc += xv * w;
                }
            }
        }
        crate::model::output::softmax(&z)
    }

    /// Mean cross-entropy and accuracy over a set.
    pub(crate) fn evaluate(&self, set: Set) -> (f32, f32) {
        let mut loss = 0.0;
        let mut right = 0;
        for (i, (xi, &yi)) in set.x.iter().zip(set.y).enumerate() {
            let p = self.probabilities(xi, set.prior.map(|p| p[i].as_slice()));
            loss -= p[yi].max(1e-12).ln();
            right += usize::from(argmax(&p) == yi);
        }
        (
            loss / set.x.len().max(1) as f32,
            right as f32 / set.x.len().max(1) as f32,
        )
    }
}

/// Index of the largest value (the first on ties).
pub(crate) fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Trains a head on `train`; `on_epoch` sees each epoch's figures as they
/// come. Returns the head of the epoch with the lowest validation loss (the
/// last one without validation) and every epoch's figures.
pub(crate) fn train(
    train: Set,
    classes: usize,
    cfg: TrainConfig,
    valid: Option<Set>,
    mut on_epoch: impl FnMut(&EpochStats),
) -> (SoftmaxHead, Vec<EpochStats>) {
    let features = train.x.first().map_or(0, Vec::len);
    let mut rng = Rng::new(cfg.seed);
    let mut head = match train.prior {
        Some(_) => SoftmaxHead::zero(features, classes),
        None => SoftmaxHead::new(features, classes, &mut rng),
    };
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-7f32);
    let n_params = features * classes + classes;
    let (mut m, mut v) = (vec![0f32; n_params], vec![0f32; n_params]);
    let mut step = 0usize;
    let mut order: Vec<usize> = (0..train.x.len()).collect();
    let mut history = Vec::new();
    let mut best: Option<(f32, SoftmaxHead)> = None;
    let mut since_best = 0;
    for epoch in 1..=cfg.epochs {
        if step >= cfg.max_steps {
            break;
        }
        rng.shuffle(&mut order);
        let (mut loss_sum, mut right) = (0f32, 0usize);
        for batch in order.chunks(cfg.batch.max(1)) {
            let mut grad = vec![0f32; n_params];
            for &i in batch {
                let p = head.probabilities(&train.x[i], train.prior.map(|p| p[i].as_slice()));
                let yi = train.y[i];
                loss_sum -= p[yi].max(1e-12).ln();
                right += usize::from(argmax(&p) == yi);
                // d(CE)/dz = p - target, target = (1 - ε)·onehot(y) + ε/C
                let mut dz = p;
                let spread = cfg.label_smoothing / classes as f32;
                for d in dz.iter_mut() {
                    *d -= spread;
                }
                dz[yi] -= 1.0 - cfg.label_smoothing;
                for (f, xv) in train.x[i].iter().enumerate() {
                    if *xv != 0.0 {
                        let g = &mut grad[f * classes..(f + 1) * classes];
                        for (gc, d) in g.iter_mut().zip(&dz) {
                            *gc += xv * d;
                        }
                    }
                }
                for (gc, d) in grad[features * classes..].iter_mut().zip(&dz) {
                    *gc += d;
                }
            }
            step += 1;
            let scale = 1.0 / batch.len() as f32;
            let t = step.min(i32::MAX as usize) as i32;
            let lr_t = cfg.lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
            let (w, b) = (&mut head.weights, &mut head.bias);
            for (k, g) in grad.iter().enumerate() {
                let g = g * scale;
                m[k] = b1 * m[k] + (1.0 - b1) * g;
                v[k] = b2 * v[k] + (1.0 - b2) * g * g;
                let delta = lr_t * m[k] / (v[k].sqrt() + eps);
                if k < features * classes {
                    // Decoupled decay of the weights (AdamW), toward zero.
                    w[k] -= delta + cfg.lr * cfg.weight_decay * w[k];
                } else {
                    b[k - features * classes] -= delta;
                }
            }
            if step >= cfg.max_steps {
                break;
            }
        }
        let (valid_loss, valid_accuracy) = match valid {
            Some(set) if !set.x.is_empty() => {
                let (l, a) = head.evaluate(set);
                (Some(l), Some(a))
            }
            _ => (None, None),
        };
        let stats = EpochStats {
            epoch,
            loss: loss_sum / train.x.len().max(1) as f32,
            accuracy: right as f32 / train.x.len().max(1) as f32,
            valid_loss,
            valid_accuracy,
        };
        on_epoch(&stats);
        history.push(stats);
        if let Some(loss) = valid_loss {
            if best.as_ref().is_none_or(|(b, _)| loss < *b - 1e-6) {
                best = Some((loss, head.clone()));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= cfg.patience {
                    break;
                }
            }
        }
    }
    (best.map_or(head, |(_, h)| h), history)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_problem_deterministically() {
        let mut rng = Rng::new(7);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..200 {
            let c = i % 2;
            let centre = if c == 0 { -1.0 } else { 1.0 };
            x.push(
                (0..4)
                    .map(|_| centre + (rng.next_f32() - 0.5))
                    .collect::<Vec<f32>>(),
            );
            y.push(c);
        }
        let cfg = TrainConfig {
            epochs: 10,
            lr: 1e-2,
            batch: 10,
            seed: 3,
            weight_decay: 0.0,
            patience: 5,
            max_steps: 10_000,
            label_smoothing: 0.0,
        };
        let set = Set {
            x: &x,
            y: &y,
            prior: None,
        };
        let (head, hist) = train(set, 2, cfg, None, |_| {});
        assert!(hist.last().unwrap().accuracy > 0.98, "{hist:?}");
        assert!(hist.last().unwrap().loss < hist[0].loss);
        let (again, _) = train(set, 2, cfg, None, |_| {});
        assert_eq!(head.weights, again.weights, "same seed, same model");
        let (other, _) = train(set, 2, TrainConfig { seed: 4, ..cfg }, None, |_| {});
        assert_ne!(head.weights, other.weights);
    }

    #[test]
    fn a_prior_is_the_answer_before_any_step_and_training_keeps_the_best_epoch() {
        // The prior says class 0 for every sample; the features say the truth.
        let x: Vec<Vec<f32>> = (0..40)
            .map(|i| vec![if i % 2 == 0 { -1.0 } else { 1.0 }, 0.5])
            .collect();
        let y: Vec<usize> = (0..40).map(|i| i % 2).collect();
        let prior: Vec<Vec<f32>> = (0..40).map(|_| vec![0.3, -0.3]).collect();
        let set = Set {
            x: &x,
            y: &y,
            prior: Some(&prior),
        };
        let start = SoftmaxHead::zero(2, 2);
        for (i, xi) in x.iter().enumerate() {
            assert_eq!(argmax(&start.probabilities(xi, Some(&prior[i]))), 0);
        }
        let cfg = TrainConfig {
            epochs: 50,
            lr: 1e-1,
            batch: 8,
            seed: 1,
            weight_decay: 1e-3,
            patience: 50,
            max_steps: 7,
            label_smoothing: 0.0,
        };
        let (head, hist) = train(set, 2, cfg, Some(set), |_| {});
        assert!(
            hist.len() <= 2,
            "the step budget ends training: {} epochs",
            hist.len()
        );
        let best = hist
            .iter()
            .map(|h| h.valid_loss.unwrap())
            .fold(f32::INFINITY, f32::min);
        assert!(
            (head.evaluate(set).0 - best).abs() < 1e-6,
            "the best epoch's head is kept"
        );
        let cfg = TrainConfig {
            max_steps: 10_000,
            ..cfg
        };
        let (head, _) = train(set, 2, cfg, Some(set), |_| {});
        assert_eq!(head.evaluate(set).1, 1.0);
    }
}
