//! Why a model could not be loaded or run.

use crate::model::contract::ContractError;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("not a valid ONNX model: {0}")]
    Onnx(String),
    #[error("model contract: {0}")]
    Contract(ContractError),
    #[error("the model is not an image classifier: {0}")]
    NotAnImageModel(String),
    #[error(
        "the model has {0} outputs and no `labels` metadata: set MODEL_LABELS to a JSON array of class names"
    )]
    NoLabels(usize),
    #[error("the model has {outputs} outputs but {labels} labels")]
    LabelCount { outputs: usize, labels: usize },
    #[error(
        "the model has no `preprocessing` metadata: set MODEL_PREPROCESSING (or --preprocessing) to \"caffe\", \
         \"torch\" or a JSON object (see models/README.md); guessing would give wrong answers"
    )]
    NoPreprocessing,
    #[error("inference failed: {0}")]
    Inference(String),
}

impl From<ContractError> for ModelError {
    fn from(e: ContractError) -> Self {
        ModelError::Contract(e)
    }
}

pub(crate) fn onnx_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Onnx(e.to_string())
}

pub(crate) fn inference_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Inference(e.to_string())
}
