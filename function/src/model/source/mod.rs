//! Where a model comes from: `s3://bucket/key`, `https://…` (or `http://`),
//! or a local path. A fetched model is always a file, so that ONNX Runtime
//! maps its weights (see `model/session/`): remote models are written into
//! a download folder as they arrive (`/tmp` on Lambda: `model/spool.rs`),
//! hashed on the way and verified against an optional SHA-256 before
//! anything is built from them. The default VGG16 is downloaded once into
//! the cache.
//!
//! One job a module: [`uri`](ModelUri) parsing, digests, the https fetch,
//! the S3 (ranged) fetch, the default model's cache, and `fetch`, the entry
//! that turns a location into a [`FetchedModel`]. Their public items are
//! named from here, so callers need not know the split.

mod default_model;
mod digest;
mod error;
mod fetch;
mod http;
mod options;
mod progress;
mod s3;
mod uri;

pub(crate) use default_model::{
    cached_default, download_default, DEFAULT_MODEL_SHA256, DEFAULT_MODEL_URL,
};
pub use digest::sha256_hex;
pub(crate) use digest::{
    hash_file, hash_file_when, normalize_sha256, sha256_of_blocks, verify_sha256,
};
pub use error::SourceError;
pub use fetch::{fetch_remote, local_file, map_file, FetchedModel};
pub use options::{FetchOptions, S3_CONCURRENCY};
pub use uri::ModelUri;
