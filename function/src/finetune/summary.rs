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
    /// The corrected pictures among the photos (`POST /feedback`'s), and
    /// how the model that answered them and the new one do on them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrections: Option<CorrectionsSummary>,
    /// The `--data` sources, as given.
    pub data: Vec<String>,
    /// Copies of a picture among the photos, trained on once.
    pub duplicates: usize,
    /// Pictures found under more than one label (every copy), left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicting: Vec<std::path::PathBuf>,
    /// The same as local folders (an S3 prefix's mirror).
    #[serde(skip)]
    pub data_folders: Vec<std::path::PathBuf>,
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
    /// The threshold before corrections lowered it to keep pets a person
    /// said the model wrongly called `label` (absent: they did not move it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub below_without_corrections: Option<f32>,
    /// Each of the user's photos the rule answers `label` for (clear
    /// outliers, or photos too near other things).
    pub rejected_photos: Vec<std::path::PathBuf>,
}

/// What fine-tuning says about the corrected pictures it read.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CorrectionsSummary {
    /// Corrected pictures among the photos (usable ones).
    pub pictures: usize,
    /// Of them, in the training photos (the rest are validation photos).
    pub trained_on: usize,
    /// The models that answered them (SHA-256), when recorded.
    pub models: Vec<String>,
    /// How many the model that answered got right (the label a person gave).
    pub right_before: usize,
    /// How many the new model gets right.
    pub right_after: usize,
    /// Each corrected picture the new model still gets wrong.
    pub still_wrong: Vec<std::path::PathBuf>,
}
