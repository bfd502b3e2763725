//! What every request handler shares: the model (which may still be loading,
//! or may have failed) and the request limits.

use std::sync::{Arc, RwLock};

use crate::batcher::{BatchPolicy, Batcher};
use crate::decode::DecodeLimits;
use crate::http::access::Access;
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
    /// Micro-batching window and the bound on requests waiting for the model.
    pub batching: BatchPolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch: DEFAULT_MAX_BATCH,
            decode: DecodeLimits::default(),
            batching: BatchPolicy::default(),
        }
    }
}

/// Where the model stands.
#[derive(Debug, Clone)]
pub enum ModelSlot {
    Loading,
    Ready(Arc<Classifier>),
    /// The fetch failed for a reason that may pass (S3 unreachable, …):
    /// the server tries again in the background.
    Retrying(String),
    /// The model cannot be used (bad bytes, digest mismatch, bad settings).
    Failed(String),
}

/// Shared state of the router; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    model: Arc<RwLock<(ModelSlot, Option<Batcher>)>>,
    pub limits: Limits,
    /// API key and CORS (default: open, no CORS headers).
    pub access: Access,
}

impl AppState {
    /// A state whose model is still loading; fill it with [`AppState::set_model`].
    pub fn loading(limits: Limits) -> Self {
        Self {
            model: Arc::new(RwLock::new((ModelSlot::Loading, None))),
            limits,
            access: Access::default(),
        }
    }

    /// The same state with these access settings.
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// A state with a model ready (owned, or shared with other users of it).
    pub fn ready(classifier: impl Into<Arc<Classifier>>, limits: Limits) -> Self {
        let state = Self::loading(limits);
        state.set_model(ModelSlot::Ready(classifier.into()));
        state
    }

    /// Installs the model (starting its inference thread when it is ready).
    pub fn set_model(&self, slot: ModelSlot) {
        let batcher = match &slot {
            ModelSlot::Ready(c) => Some(Batcher::start(c.clone(), self.batch_policy())),
            _ => None,
        };
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = (slot, batcher);
    }

    pub fn model(&self) -> ModelSlot {
        self.model
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// The model and the queue in front of its inference thread, when ready.
    pub fn ready_model(&self) -> Result<(Arc<Classifier>, Batcher), ModelSlot> {
        let guard = self.model.read().unwrap_or_else(|p| p.into_inner());
        match &*guard {
            (ModelSlot::Ready(c), Some(b)) => Ok((c.clone(), b.clone())),
            (slot, _) => Err(slot.clone()),
        }
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max_pictures: self.limits.batching.max_pictures.max(self.limits.max_batch),
            ..self.limits.batching
        }
    }
}
