//! What every request handler shares: the model (which may still be loading,
//! or may have failed) and the request limits.

use std::sync::{Arc, RwLock};

use crate::decode::DecodeLimits;
use crate::model::Classifier;

/// Default request body limit: Lambda's 6 MB synchronous payload limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// Default maximum pictures per request.
pub const DEFAULT_MAX_BATCH: usize = 16;

/// Limits applied to every request (documented in the README).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub decode: DecodeLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch: DEFAULT_MAX_BATCH,
            decode: DecodeLimits::default(),
        }
    }
}

/// Where the model stands.
#[derive(Debug, Clone)]
pub enum ModelSlot {
    Loading,
    Ready(Arc<Classifier>),
    Failed(String),
}

/// Shared state of the router; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    model: Arc<RwLock<ModelSlot>>,
    pub limits: Limits,
}

impl AppState {
    /// A state whose model is still loading; fill it with [`AppState::set_model`].
    pub fn loading(limits: Limits) -> Self {
        Self {
            model: Arc::new(RwLock::new(ModelSlot::Loading)),
            limits,
        }
    }

    /// A state with a model ready (owned, or shared with other users of it).
    pub fn ready(classifier: impl Into<Arc<Classifier>>, limits: Limits) -> Self {
        Self {
            model: Arc::new(RwLock::new(ModelSlot::Ready(classifier.into()))),
            limits,
        }
    }

    pub fn set_model(&self, slot: ModelSlot) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = slot;
    }

    pub fn model(&self) -> ModelSlot {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
