//! Training a softmax head on cached features: categorical cross-entropy,
//! Adam (Keras defaults), mini-batches, deterministic for a given seed.

use serde::Serialize;

/// Hyper-parameters (the tutorial's: Adam 1e-4, batch 10, 5 epochs).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub lr: f32,
    pub batch: usize,
    pub seed: u64,
}

/// One epoch's figures.
#[derive(Debug, Clone, Serialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub loss: f32,
    pub accuracy: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_loss: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_accuracy: Option<f32>,
}

/// A dense softmax layer: `probs = softmax(x · W + b)`, `W` is F×C row-major.
#[derive(Debug, Clone)]
pub struct SoftmaxHead {
    pub features: usize,
    pub classes: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// splitmix64: small, seedable, and the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

impl SoftmaxHead {
    /// Glorot-uniform weights, zero bias (Keras `Dense` defaults).
    pub fn new(features: usize, classes: usize, rng: &mut Rng) -> Self {
        let limit = (6.0 / (features + classes) as f32).sqrt();
        let weights = (0..features * classes)
            .map(|_| (rng.next_f32() * 2.0 - 1.0) * limit)
            .collect();
        Self {
            features,
            classes,
            weights,
            bias: vec![0.0; classes],
        }
    }

    pub fn probabilities(&self, x: &[f32]) -> Vec<f32> {
        let mut z = self.bias.clone();
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
    pub fn evaluate(&self, x: &[Vec<f32>], y: &[usize]) -> (f32, f32) {
        let mut loss = 0.0;
        let mut right = 0;
        for (xi, &yi) in x.iter().zip(y) {
            let p = self.probabilities(xi);
            loss -= p[yi].max(1e-12).ln();
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            right += usize::from(best == yi);
        }
        (
            loss / x.len().max(1) as f32,
            right as f32 / x.len().max(1) as f32,
        )
    }
}

/// Trains a head on `x`/`y`; `on_epoch` sees each epoch's figures as they come.
pub fn train(
    x: &[Vec<f32>],
    y: &[usize],
    classes: usize,
    cfg: TrainConfig,
    valid: Option<(&[Vec<f32>], &[usize])>,
    mut on_epoch: impl FnMut(&EpochStats),
) -> (SoftmaxHead, Vec<EpochStats>) {
    let features = x.first().map_or(0, Vec::len);
    let mut rng = Rng::new(cfg.seed);
    let mut head = SoftmaxHead::new(features, classes, &mut rng);
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-7f32);
    let n_params = features * classes + classes;
    let (mut m, mut v) = (vec![0f32; n_params], vec![0f32; n_params]);
    let mut step = 0i32;
    let mut order: Vec<usize> = (0..x.len()).collect();
    let mut history = Vec::new();
    for epoch in 1..=cfg.epochs {
        rng.shuffle(&mut order);
        let (mut loss_sum, mut right) = (0f32, 0usize);
        for batch in order.chunks(cfg.batch.max(1)) {
            let mut grad = vec![0f32; n_params];
            for &i in batch {
                let p = head.probabilities(&x[i]);
                loss_sum -= p[y[i]].max(1e-12).ln();
                let best = p
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(k, _)| k);
                right += usize::from(best == y[i]);
                // d(CE)/dz = p - onehot(y)
                let mut dz = p;
                dz[y[i]] -= 1.0;
                for (f, xv) in x[i].iter().enumerate() {
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
            let lr_t = cfg.lr * (1.0 - b2.powi(step)).sqrt() / (1.0 - b1.powi(step));
            let (w, b) = (&mut head.weights, &mut head.bias);
            for (k, g) in grad.iter().enumerate() {
                let g = g * scale;
                m[k] = b1 * m[k] + (1.0 - b1) * g;
                v[k] = b2 * v[k] + (1.0 - b2) * g * g;
                let delta = lr_t * m[k] / (v[k].sqrt() + eps);
                if k < features * classes {
                    w[k] -= delta;
                } else {
                    b[k - features * classes] -= delta;
                }
            }
        }
        let (valid_loss, valid_accuracy) = match valid {
            Some((vx, vy)) if !vx.is_empty() => {
                let (l, a) = head.evaluate(vx, vy);
                (Some(l), Some(a))
            }
            _ => (None, None),
        };
        let stats = EpochStats {
            epoch,
            loss: loss_sum / x.len().max(1) as f32,
            accuracy: right as f32 / x.len().max(1) as f32,
            valid_loss,
            valid_accuracy,
        };
        on_epoch(&stats);
        history.push(stats);
    }
    (head, history)
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
        };
        let (head, hist) = train(&x, &y, 2, cfg, None, |_| {});
        assert!(hist.last().unwrap().accuracy > 0.98, "{hist:?}");
        assert!(hist.last().unwrap().loss < hist[0].loss);
        let (again, _) = train(&x, &y, 2, cfg, None, |_| {});
        assert_eq!(head.weights, again.weights, "same seed, same model");
        let (other, _) = train(&x, &y, 2, TrainConfig { seed: 4, ..cfg }, None, |_| {});
        assert_ne!(head.weights, other.weights);
    }
}
