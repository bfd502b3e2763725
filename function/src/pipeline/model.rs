//! Where the model stands (loading, ready, retrying, failed), the slot
//! every host reads it from, and why there is none to answer with yet.

use std::sync::{Arc, RwLock};

use crate::batcher::Batcher;
use crate::error::{ApiError, ErrorCode};
use crate::memory::MemoryBudget;
use crate::model::Classifier;

/// A model ready to answer: the classifier, the queue in front of its
/// inference thread and the memory budget its pictures are decoded under,
/// always together.
#[derive(Clone)]
pub(crate) struct Ready {
    pub(crate) classifier: Arc<Classifier>,
    pub(crate) batcher: Batcher,
    /// The budget its requests' pictures are decoded under.
    pub(crate) budget: MemoryBudget,
}

/// Where the model stands.
#[derive(Clone)]
pub(crate) enum ModelState {
    Loading,
    Ready(Ready),
    /// The fetch failed for a reason that may pass (S3 unreachable, …):
    /// the server tries again in the background.
    Retrying(String),
    /// The model cannot be used (bad bytes, digest mismatch, bad settings).
    Failed(String),
}

/// The model every request of a process shares: set by the host as it
/// loads, read by each request; cheap to clone.
#[derive(Clone)]
pub(crate) struct ModelSlot(Arc<RwLock<ModelState>>);

impl Default for ModelSlot {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(ModelState::Loading)))
    }
}

impl ModelSlot {
    pub(crate) fn set(&self, state: ModelState) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// Replaces the state with what `next` makes of it, if anything,
    /// atomically; whether it did.
    pub(crate) fn replace_if(&self, next: impl FnOnce(&ModelState) -> Option<ModelState>) -> bool {
        let mut state = self.0.write().unwrap_or_else(|p| p.into_inner());
        match next(&state) {
            Some(new) => {
                *state = new;
                true
            }
            None => false,
        }
    }

    pub(crate) fn get(&self) -> ModelState {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The model, or why there is none yet (a 503).
    pub(crate) fn ready(&self) -> Result<Ready, Unready> {
        match self.get() {
            ModelState::Ready(ready) => Ok(ready),
            ModelState::Loading => Err(Unready::Loading),
            ModelState::Retrying(reason) => Err(Unready::Retrying(reason)),
            ModelState::Failed(reason) => Err(Unready::Failed(reason)),
        }
    }
}

/// Why there is no model to answer with (a 503). The cause decides the
/// `Retry-After`: a fetch being retried or a digest being computed will
/// pass; a load that failed will not by itself.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Unready {
    #[error("the model is still loading; retry in a few seconds")]
    Loading,
    #[error("the model could not be fetched yet ({0}); the server keeps trying")]
    Retrying(String),
    #[error("the model failed to load: {0}")]
    Failed(String),
    #[error("the model's version (its SHA-256) is still being computed; retry in a moment")]
    VersionPending,
}

/// Seconds a client is told to wait while the server retries a fetch.
pub(crate) const RETRY_AFTER_S: u32 = 5;

impl From<Unready> for ApiError {
    fn from(e: Unready) -> Self {
        let retry_after = match e {
            Unready::Retrying(_) => Some(RETRY_AFTER_S),
            Unready::VersionPending => Some(1),
            Unready::Loading | Unready::Failed(_) => None,
        };
        Self {
            retry_after,
            ..Self::new(ErrorCode::ModelUnavailable, e.to_string())
        }
    }
}
