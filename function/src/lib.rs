//! catdog: a cat-or-dog image classifier served by one axum router on AWS
//! Lambda, on a local port and from a notebook.
//!
//! - [`model`]: fetching (S3, https, file), the ONNX model contract, the ONNX Runtime session.
//! - [`decode`] and [`preprocess`]: bytes → upright RGB picture → model tensor.
//! - [`http`]: the router every host serves; [`state`]: what it shares.
//! - [`runtime`]: finding the ONNX Runtime library at run time.
//! - [`app`]: loading a model from the usual configuration, for the binary and the notebook.
//! - [`files`]: classifying picture files (`catdog predict`, the notebook).
//! - [`serve`]: the router on a local port in the background; [`tunnel`]: on a public ngrok URL.
//! - [`notebook`]: inline HTML answers for Jupyter (evcxr).

pub mod app;
pub mod batcher;
pub mod decode;
pub mod eval;
pub mod files;
pub mod finetune;
pub mod http;
pub mod model;
pub mod notebook;
pub mod plot;
pub mod preprocess;
pub mod resize;
pub mod runtime;
pub mod serve;
pub mod state;
pub mod tunnel;

/// The router type every host serves (re-exported so hosts such as the
/// notebook can name it without depending on axum themselves).
pub use axum::Router;
pub use http::router;
pub use model::Classifier;
pub use state::{AppState, Limits, ModelSlot};
