//! Models: where they come from ([`source`], written into a file by
//! [`spool`]; [`load`], retried as [`crate::aws::retry`] says), what they promise
//! ([`contract`]), how ONNX Runtime runs them ([`session`], zero-copy
//! [`weights`], pre-packing for [`quantized`] graphs) and how their outputs
//! become answers ([`classifier`], [`output`], [`imagenet`]); [`publish`]
//! puts one into S3.

pub(crate) mod classifier;
pub(crate) mod contract;
pub(crate) mod error;
pub mod explain;
pub(crate) mod framing;
pub mod graph;
pub mod imagenet;
pub mod load;
pub(crate) mod output;
pub(crate) mod publish;
pub(crate) mod quantized;
pub mod session;
pub mod source;
pub(crate) mod spool;
pub(crate) mod weights;

pub use classifier::Classifier;
pub(crate) use classifier::{ContractOverrides, ModelInfo};
pub(crate) use error::ModelError;
pub(crate) use session::InferTimings;
