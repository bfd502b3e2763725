//! catdog: a cat-or-dog image classifier served by one axum router on AWS
//! Lambda, on a local port and from a notebook.
//!
//! The flow goes one way: [`settings`] → [`host`] → [`http`] (the router) →
//! [`model`] (classifier → session → ONNX Runtime). Nothing below imports
//! anything above.
//!
//! - [`settings`]: every flag and environment variable, parsed once.
//! - [`host`]: the Lambda bootstrap, the local server (+ ngrok tunnel), the CLI commands.
//! - [`http`]: the router, its wire types, access control, the Open Inference
//!   Protocol routes; [`batcher`]: the inference thread requests share;
//!   [`limits`]: what a request may hold; [`metrics`]: `/metrics` and EMF lines.
//! - [`events`]: the Lambda events besides HTTP (S3, EventBridge, SQS, Batch
//!   Operations), beside the router; [`objects`]: classifying an S3 object
//!   and writing its tags and record.
//! - [`model`]: fetching, the ONNX model contract, sessions, the classifier.
//! - [`decode`] and [`preprocess`] (its spec, Pillow's resize from the
//!   `pillow-resize` crate, the tensor): bytes → upright RGB picture → model
//!   tensor, under the [`memory`] budget.
//! - [`files`]: classifying picture files in chunks (predict, eval, the
//!   notebook, fine-tuning's features); [`eval`], [`finetune`], [`plot`]: scoring,
//!   training a new head, and their pictures.
//! - [`feedback`]: corrections people send (`POST /feedback`), stored where
//!   fine-tuning reads them.
//! - [`checks`]: known pictures and a model's answers to them, recorded by
//!   `catdog upload` and compared by the PreTraffic hook before a deploy.
//! - [`runtime`]: finding the ONNX Runtime library at run time.
//! - [`messages`]: how errors (with their causes) and files are named to users.
//! - [`notebook`]: inline HTML answers for Jupyter (evcxr).

pub mod aws;
pub mod batcher;
pub mod checks;
pub mod decode;
pub mod error;
pub mod eval;
pub mod events;
pub(crate) mod explanation;
pub mod feedback;
pub mod files;
pub mod finetune;
pub mod host;
pub mod http;
pub mod limits;
pub mod memory;
pub mod messages;
pub mod metrics;
pub mod model;
pub mod notebook;
pub mod objects;
pub mod pipeline;
pub mod plot;
pub mod preprocess;
pub mod runtime;
// The one module that reads the process environment (and the command line);
// clippy.toml forbids it everywhere else.
#[allow(clippy::disallowed_methods)]
pub mod settings;
pub mod tutorial;

/// The router type every host serves (re-exported so hosts such as the
/// notebook can name it without depending on axum themselves).
pub use axum::Router;
pub use http::router;
pub use http::state::AppState;
pub use limits::Limits;
pub use model::Classifier;
pub use settings::Settings;
