//! What to fine-tune on what: the command's choices.

use std::path::PathBuf;

use serde::Serialize;

use super::train::TrainConfig;
use super::view::View;
use crate::model::load::ModelSpec;
use crate::model::source::FetchOptions;

/// How the new head starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// From the base's own cat-vs-dog choice when it applies (ImageNet base,
    /// labels cat and dog), else random.
    Auto,
    /// From the base's grouped cat and dog classes: before any step the head
    /// answers exactly as the base's zero-shot choice.
    ZeroShot,
    /// Glorot-random weights (Keras `Dense`), as the tutorial.
    Random,
}

/// When a result is good enough to write.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Acceptance {
    /// Lowest validation accuracy accepted.
    pub(crate) min_accuracy: f64,
    /// Write a weak head anyway (and say so).
    pub(crate) allow_weak: bool,
}

/// Augmentation: extra copies of each training photo, each run through the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Augment {
    /// The left-right mirror image.
    pub(crate) mirror: bool,
    /// The four corner crops keeping 80% of each side.
    pub(crate) crop: bool,
}

impl Augment {
    /// Every augmentation (what cross-validation measures).
    pub(crate) const ALL: Augment = Augment {
        mirror: true,
        crop: true,
    };

    pub(crate) fn views(self) -> Vec<View> {
        let mut views = Vec::new();
        if self.mirror {
            views.push(View::Mirror);
        }
        if self.crop {
            views.extend(View::CROPS);
        }
        views
    }

    pub(super) fn describe(self) -> &'static str {
        match (self.mirror, self.crop) {
            (false, false) => "",
            (true, false) => " (+ their mirror images)",
            (false, true) => " (+ 4 corner crops each)",
            (true, true) => " (+ their mirror images and 4 corner crops each)",
        }
    }
}

/// How the rejecting label (`neither`) is learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NeitherMode {
    /// The base's own probability that the picture is one of the labels'
    /// classes (cats and dogs), under a threshold chosen on the photos.
    Threshold,
    /// A third class of the trained head, learnt from the non-pet photos
    /// (`--neither DIR`), starting from the base's other classes.
    Class,
}

/// The label that means "none of the others", and what it is learnt from.
#[derive(Debug, Clone)]
pub(crate) struct NeitherConfig {
    /// Its name (`neither`).
    pub(crate) label: String,
    /// Photos of other things, for its threshold or as its class.
    pub(crate) photos: Option<PathBuf>,
    /// With photos: threshold or class (without, always threshold).
    pub(crate) mode: NeitherMode,
    /// Without photos of other things: how many interquartile ranges under
    /// the photos' lower quartile (evidence in logit) the threshold sits.
    pub(crate) fence: f64,
}

/// What to fine-tune on what.
#[derive(Debug, Clone)]
pub(crate) struct FinetuneConfig {
    /// The base model (its `preprocessing` override, session and fetch
    /// options are those of serving).
    pub(crate) base: ModelSpec,
    /// The photos: folders and S3 prefixes, merged by label.
    pub(crate) data: Vec<DataSource>,
    /// How S3 prefixes among them are read.
    pub(crate) data_fetch: DataFetch,
    pub(crate) out: PathBuf,
    pub(crate) train: TrainConfig,
    pub(crate) init: Init,
    /// Share of each class of train/ set aside for validation when there is no valid/.
    pub(crate) valid_fraction: f64,
    pub(crate) accept: Acceptance,
    /// Which extra copies of each training photo to train on.
    pub(crate) augment: Augment,
    /// Measure the candidate settings by k-fold cross-validation instead of training.
    pub(crate) cv: Option<usize>,
    /// The rejecting label; `None` (`--no-neither`): every answer is one of the labels.
    pub(crate) neither: Option<NeitherConfig>,
}

/// One `--data`: a folder or an S3 prefix, as `CATDOG_FEEDBACK` names
/// where corrections go (so one can be read where the other writes).
pub(crate) use crate::feedback::Destination as DataSource;

/// How prefixes are read: the S3 options of serving, where the mirrors go,
/// and the largest object read.
#[derive(Debug, Clone)]
pub(crate) struct DataFetch {
    pub(crate) fetch: FetchOptions,
    /// `<cache>/data`: a prefix is mirrored at `<this>/<bucket>/<prefix>`.
    pub(crate) mirrors: PathBuf,
    pub(crate) max_object_bytes: usize,
}
