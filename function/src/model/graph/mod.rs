//! Reading and editing ONNX graphs (with the `onnx-protobuf` message types):
//! [`inspect`] finds a classifier's final layer and raw class scores,
//! [`build`] makes the tensors and nodes an edit adds. Fine-tuning writes new
//! heads with them; the explanation branch ([`super::explain`]) is built
//! from them too.

pub(crate) mod build;
pub(crate) mod inspect;

use onnx_protobuf::ModelProto;
use protobuf::Message;

pub use inspect::{find_head, logits_tensor, metadata, FinalLayer};

/// Why a graph cannot be read or edited as asked.
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
pub(crate) fn serialize(model: &ModelProto) -> Result<Vec<u8>, GraphError> {
    model
        .write_to_bytes()
        .map_err(|e| GraphError::Parse(e.to_string()))
}
