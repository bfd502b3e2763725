//! What `catdog finetune` reports, and stores in the model it writes.

use serde::Serialize;

use super::config::{Augment, Init, NeitherMode};
use super::data;
use super::train::{EpochStats, TrainConfig};

/// What `catdog finetune` reports (and stores in the model's `catdog_training`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub base: String,
    pub base_sha256: String,
    pub feature_tensor: String,
    pub feature_dim: usize,
    pub replaced: String,
    pub labels: Vec<String>,
    pub train_images: usize,
    pub valid_images: usize,
    /// `folder` (valid/) or `carved` (from train/).
    pub valid_source: data::ValidSource,
    /// How the head started: `zero-shot` or `random`.
    pub init: Init,
    /// The extra copies of each training photo trained on.
    pub augment: Augment,
    pub skipped: Vec<String>,
    pub config: TrainConfig,
    pub history: Vec<EpochStats>,
    /// The epoch whose head was kept (lowest validation loss).
    pub best_epoch: usize,
    /// Validation accuracy of the kept head.
    pub valid_accuracy: f64,
    /// The base's zero-shot cat-vs-dog accuracy on the same validation photos (ImageNet bases).
    pub base_valid_accuracy: Option<f64>,
    /// The rejecting label's rule, when the model has one.
    pub neither: Option<NeitherSummary>,
    /// Written although weak (--allow-weak).
    pub weak: bool,
    pub extract_s: f64,
    pub train_s: f64,
}

/// How the model says `neither`, and what that was fitted on.
#[derive(Debug, Clone, Serialize)]
pub struct NeitherSummary {
    pub label: String,
    pub mode: NeitherMode,
    /// The answer is `label` when the other labels' scores sum to less than this.
    pub below: f32,
    /// Threshold mode: how many base classes the evidence sums over, and
    /// where they came from (`groups`: the labels' ImageNet groups;
    /// `top1`: the base's first choice for the training photos).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<(usize, &'static str)>,
    /// The user's photos of the labels (originals, train and valid), and
    /// how many of them the rule answers `label` for.
    pub photos: usize,
    pub photos_rejected: usize,
    /// Photos of other things it was fitted on, and how many of them it
    /// answers `label` for.
    pub other_photos: usize,
    pub other_photos_rejected: usize,
}
