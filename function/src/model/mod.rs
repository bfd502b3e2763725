//! Models: where they come from ([`source`], written into a file by
//! [`spool`]; [`load`], retried as [`crate::aws::retry`] says), what they promise
//! ([`contract`]), how ONNX Runtime runs them ([`session`], zero-copy
//! [`weights`], pre-packing for [`quantized`] graphs) and how their outputs
//! become answers ([`classifier`], [`output`], [`imagenet`]); [`publish`]
//! puts one into S3.

pub mod classifier;
pub mod contract;
pub mod error;
pub mod imagenet;
pub mod load;
pub mod output;
pub mod publish;
pub mod quantized;
pub mod session;
pub mod source;
pub mod spool;
pub mod weights;
pub mod wire;

pub use classifier::{
    Classifier, ContractOverrides, ContractSource, DigestSlot, Int8Info, ModelInfo, OutputInfo,
    TensorInfo,
};
pub use error::ModelError;
pub use session::InferTimings;
