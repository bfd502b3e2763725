//! Why fine-tuning failed.

use std::path::PathBuf;

use super::summary::Summary;
use super::{data, graph};
use crate::model::load::LoadError;
use crate::model::ModelError;

/// Why fine-tuning failed.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    #[error("the base model: {0}")]
    Load(#[from] LoadError),
    #[error("the base model: {0}")]
    Model(#[from] ModelError),
    #[error(transparent)]
    Graph(#[from] graph::GraphError),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Mirror(#[from] super::sources::MirrorError),
    #[error(transparent)]
    Contract(#[from] crate::model::contract::ContractError),
    #[error("the base model has no `preprocessing` metadata: pass --preprocessing caffe|torch|JSON (the one it was trained with)")]
    NoPreprocessing,
    #[error("cannot read the base model: {0}")]
    Read(std::io::Error),
    #[error("feature extraction failed: {0}")]
    Features(ModelError),
    #[error("class `{0}` has no usable pictures (all were skipped)")]
    NoUsable(String),
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Neither(String),
    #[error("--init zero-shot needs an ImageNet base (1000 outputs) and the labels cat and dog; here: {0}")]
    NoZeroShot(#[from] NoZeroShot),
    #[error(
        "the fine-tuned head is weak, so it was not written: {reason}. Try more photos per class, a valid/ folder \
         that looks like the photos it will see, --init zero-shot on an ImageNet base, or more training (--epochs, --lr); \
         --allow-weak writes it anyway"
    )]
    Weak {
        reason: String,
        summary: Box<Summary>,
    },
    #[error("the fine-tuning worker failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

/// Why the head cannot start from the base's zero-shot choice.
#[derive(Debug, thiserror::Error)]
pub enum NoZeroShot {
    #[error("the base is not an ImageNet classifier with 1000 outputs")]
    NotImageNet,
    #[error("the labels are {0:?}, not cat and dog")]
    Labels(Vec<String>),
}
