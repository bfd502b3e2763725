//! Reading and editing the ONNX graph of a base classifier (with the
//! `onnx-protobuf` message types): [`inspect`] finds the final layer and the
//! base's logits, [`head`] exposes the feature tensor and writes the model
//! back with a new head, built from [`build`]'s nodes and tensors.

pub(crate) mod build;
pub(crate) mod head;
pub(crate) mod inspect;

use onnx_protobuf::ModelProto;
use protobuf::Message;

pub(crate) use head::{replace_head, with_feature_output, Evidence, Prior};
pub use inspect::{find_head, logits_tensor, metadata, FinalLayer};

/// Why a base model cannot be fine-tuned.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("not a valid ONNX model: {0}")]
    Parse(String),
    #[error("the model has no graph or no output")]
    Empty,
    #[error("cannot find the final layer: {0}")]
    NoHead(String),
    #[error("not a valid ONNX model: {0}")]
    Inline(#[from] crate::model::weights::InlineError),
}

pub fn parse(bytes: &[u8]) -> Result<ModelProto, GraphError> {
    ModelProto::parse_from_bytes(bytes).map_err(|e| GraphError::Parse(e.to_string()))
}

/// The serialized model.
fn serialize(model: &ModelProto) -> Result<Vec<u8>, GraphError> {
    model
        .write_to_bytes()
        .map_err(|e| GraphError::Parse(e.to_string()))
}
