//! What every request handler shares: the model (which may still be loading,
//! or may have failed), the request limits, the access settings and the
//! metrics, and the way into S3 for pictures stored there.

use std::sync::{Arc, RwLock};

use crate::batcher::Batcher;
use crate::http::access::Access;
use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::http::error::ApiError;
use crate::http::types::{UploadRequest, UploadTicket};
use crate::limits::{BatchPolicy, Limits};
use crate::memory::MemoryBudget;
use crate::metrics::{self, emf, Metrics, ModelLabels};
use crate::model::Classifier;

/// A model ready to answer: the classifier, the queue in front of its
/// inference thread and the memory budget its pictures are decoded under,
/// always together.
#[derive(Clone)]
pub struct Ready {
    pub classifier: Arc<Classifier>,
    pub batcher: Batcher,
    /// The budget its requests' pictures are decoded under.
    pub budget: MemoryBudget,
}

/// Where the model stands.
#[derive(Clone)]
pub enum ModelState {
    Loading,
    Ready(Ready),
    /// The fetch failed for a reason that may pass (S3 unreachable, …):
    /// the server tries again in the background.
    Retrying(String),
    /// The model cannot be used (bad bytes, digest mismatch, bad settings).
    Failed(String),
}

/// Shared state of the router; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    model: Arc<RwLock<ModelState>>,
    pub limits: Limits,
    /// API key and CORS (default: open, no CORS headers).
    pub access: Access,
    /// What `GET /metrics` shows.
    pub metrics: Arc<Metrics>,
    /// Also write each request's figures as a CloudWatch EMF line (Lambda).
    pub emf: bool,
    /// Pictures in S3 (`/uploads`, `/predict {"s3": …}`); `None`: off.
    pub stored: Option<Stored>,
}

impl AppState {
    /// A state whose model is still loading; fill it with [`AppState::set_ready`].
    pub fn loading(limits: Limits, access: Access) -> Self {
        Self {
            model: Arc::new(RwLock::new(ModelState::Loading)),
            limits,
            access,
            metrics: Arc::new(Metrics::new()),
            emf: false,
            stored: None,
        }
    }

    /// With pictures in S3 reachable (`POST /uploads`, `/predict {"s3": …}`).
    pub fn with_stored(mut self, stored: Option<Stored>) -> Self {
        self.stored = stored;
        self
    }

    /// With each request's figures also written as CloudWatch EMF lines.
    pub fn with_emf(mut self, on: bool) -> Self {
        self.emf = on;
        self
    }

    /// A state with a model ready (owned, or shared with other users of it).
    pub fn ready(classifier: impl Into<Arc<Classifier>>, limits: Limits, access: Access) -> Self {
        let state = Self::loading(limits, access);
        state.set_ready(classifier.into());
        state
    }

    /// Installs a loaded model, starting its inference thread.
    pub fn set_ready(&self, classifier: Arc<Classifier>) {
        let batcher = Batcher::start(
            classifier.clone(),
            self.batch_policy(),
            self.metrics.batch_size(),
        );
        let info = classifier.info();
        self.metrics.model_loaded(info.fetch_ms, info.load_ms);
        if self.emf {
            emf::emit_model(&model_labels(&classifier), info.fetch_ms, info.load_ms);
        }
        // Decided now, so the process's footprint includes the model.
        let budget = MemoryBudget::new(self.limits.memory.decide());
        let b = budget.info();
        tracing::info!(
            budget_mib = b.bytes >> 20,
            source = ?b.source,
            limit_mib = b.limit_bytes.map(|l| l >> 20),
            footprint_mib = b.footprint_bytes.map(|f| f >> 20),
            wait_ms = b.wait_ms,
            "memory budget for decoding pictures"
        );
        self.set(ModelState::Ready(Ready {
            classifier,
            batcher,
            budget,
        }));
    }

    /// A fetch failed and will be tried again.
    pub fn set_retrying(&self, reason: String) {
        self.set(ModelState::Retrying(reason));
    }

    /// The model cannot be used.
    pub fn set_failed(&self, reason: String) {
        self.set(ModelState::Failed(reason));
    }

    fn set(&self, state: ModelState) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = state;
    }

    pub fn model(&self) -> ModelState {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The model answering now, as the metrics label it.
    pub fn model_labels(&self) -> Option<ModelLabels> {
        match self.model() {
            ModelState::Ready(r) => Some(model_labels(&r.classifier)),
            _ => None,
        }
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max_pictures: self.limits.batching.max_pictures.max(self.limits.max_batch),
            ..self.limits.batching
        }
    }
}

fn model_labels(c: &Classifier) -> ModelLabels {
    ModelLabels {
        name: c.name().to_string(),
        version: c.version().unwrap_or_default().to_string(),
        sha256: c.sha256().unwrap_or_default().to_string(),
        uri_scheme: metrics::uri_scheme(&c.info().uri).to_string(),
        kind: c.info().kind.to_string(),
    }
}

// Pictures in S3, as the HTTP API reaches them: `POST /uploads` (a presigned
// PUT past the invoke limit), `GET /uploads/{id}` (its answer) and
// `/predict {"s3": …}` (a picture by reference, from allowed buckets). The
// S3 side lives in `objects`, which builds on this router's pipeline, so the
// router reaches it through this trait: the imports go one way.

/// What the router asks of S3 (`objects::gateway` answers).
pub trait StoredPictures: Send + Sync {
    /// A presigned PUT into the uploads bucket (`uploads_off` without one).
    fn upload(&self, request: UploadRequest) -> BoxFuture<'_, Result<UploadTicket, ApiError>>;

    /// An upload's record (written by its S3 event, or now when the event
    /// has not come yet: the same worker, so the event then finds it
    /// current), as JSON, and whether it was there already.
    fn upload_result(
        &self,
        state: AppState,
        id: String,
    ) -> BoxFuture<'_, Result<(String, bool), ApiError>>;

    /// A picture's bytes by reference (`s3://bucket/key`), if its bucket is
    /// on the allow-list; `s3_not_allowed` otherwise.
    fn fetch(&self, uri: String, max_bytes: usize) -> BoxFuture<'_, Result<Bytes, ApiError>>;
}

/// The hosts' handle on it.
pub type Stored = Arc<dyn StoredPictures>;
