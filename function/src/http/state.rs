//! What every request handler shares: the model (which may still be loading,
//! or may have failed), the request limits, the access settings and the
//! metrics, and the way into S3 for pictures stored there.

use std::sync::Arc;

use crate::batcher::Batcher;
use crate::feedback::FeedbackSink;
use crate::http::access::Access;

use crate::limits::{BatchPolicy, Limits};
use crate::memory::MemoryBudget;
use crate::metrics::{self, emf, Metrics, ModelLabels};
use crate::model::Classifier;
use crate::objects::StoredPictures;
use crate::pipeline::{ModelSlot, ModelState, Ready, Unready};

/// Shared state of the router; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    model: ModelSlot,
    pub(crate) limits: Limits,
    /// API key and CORS (default: open, no CORS headers).
    pub(crate) access: Access,
    /// What `GET /metrics` shows.
    pub(crate) metrics: Arc<Metrics>,
    /// Also write each request's figures as a CloudWatch EMF line (Lambda).
    pub(crate) emf: bool,
    /// Pictures in S3 (`/uploads`, `/predict {"s3": …}`); `None`: off.
    pub(crate) stored_pictures: Option<Arc<dyn StoredPictures>>,
    /// Where `POST /feedback` stores corrections; `None`: off.
    pub(crate) feedback: Option<Arc<dyn FeedbackSink>>,
    /// The threads packing models' weights (one per model loaded).
    packing: Arc<std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

impl AppState {
    /// A state whose model is still loading; fill it with [`AppState::set_ready`].
    pub fn loading(limits: Limits, access: Access) -> Self {
        Self {
            model: ModelSlot::default(),
            limits,
            access,
            metrics: Arc::new(Metrics::new()),
            emf: false,
            stored_pictures: None,
            feedback: None,
            packing: Arc::default(),
        }
    }

    /// With pictures in S3 reachable (`POST /uploads`, `/predict {"s3": …}`).
    pub(crate) fn with_stored_pictures(mut self, stored: Option<Arc<dyn StoredPictures>>) -> Self {
        self.stored_pictures = stored;
        self
    }

    /// With corrections stored there (`POST /feedback`).
    pub(crate) fn with_feedback(mut self, sink: Option<Arc<dyn FeedbackSink>>) -> Self {
        self.feedback = sink;
        self
    }

    /// With each request's figures also written as CloudWatch EMF lines.
    pub(crate) fn with_emf(mut self, on: bool) -> Self {
        self.emf = on;
        self
    }

    /// A state with a model ready (owned, or shared with other users of
    /// it), its weights packed now if they were to be packed later.
    pub fn ready(classifier: impl Into<Arc<Classifier>>, limits: Limits, access: Access) -> Self {
        let state = Self::loading(limits, access);
        let classifier = classifier.into();
        let classifier = match classifier.pack() {
            Some(Ok(packed)) => Arc::new(packed),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "packing the weights failed; answering with plain ones");
                classifier
            }
            None => classifier,
        };
        state.set_ready(classifier);
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
            classifier: classifier.clone(),
            batcher,
            budget,
        }));
        self.pack_later(classifier);
    }

    /// For a model answering with plain weights until packed ones are
    /// built (`CATDOG_PREPACK=later`): builds them on a thread of low
    /// priority, then puts the packed model in its place, unless another
    /// model took it meanwhile. Requests in flight finish on the plain one.
    fn pack_later(&self, plain: Arc<Classifier>) {
        if !plain.packs_later() {
            return;
        }
        let state = self.clone();
        let keep = plain.clone();
        // This thread keeps normal priority: what it starts (the packed
        // model's inference thread) must not inherit the packing's.
        let spawned = std::thread::Builder::new()
            .name("catdog-prepack".into())
            .spawn(move || {
                if !state.answers_with(&plain) {
                    plain.give_up_packing();
                    return;
                }
                let started = std::time::Instant::now();
                let packed = match pack_at_low_priority(&plain) {
                    Ok(packed) => Arc::new(packed),
                    Err(e) => {
                        tracing::warn!(error = %e, "packing the weights failed; answering with plain ones");
                        return;
                    }
                };
                let pack_ms = started.elapsed().as_secs_f64() * 1e3;
                if state.replace_model(&plain, packed) {
                    tracing::info!(pack_ms, "weights packed in the background and swapped in");
                } else {
                    tracing::info!(pack_ms, "weights packed, but another model was loaded meanwhile");
                }
            });
        match spawned {
            Ok(thread) => self
                .packing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(thread),
            Err(e) => {
                keep.give_up_packing();
                tracing::warn!(error = %e, "cannot start packing the weights; answering with plain ones")
            }
        }
    }

    /// Whether `classifier` is the one answering.
    fn answers_with(&self, classifier: &Arc<Classifier>) -> bool {
        matches!(self.model(), ModelState::Ready(ready) if Arc::ptr_eq(&ready.classifier, classifier))
    }

    /// Waits up to `bound` for the weights being packed: a process that
    /// exits while ONNX Runtime builds a session on another thread tears
    /// the library down under it.
    pub(crate) fn wait_for_packing(&self, bound: std::time::Duration) {
        let threads = std::mem::take(&mut *self.packing.lock().unwrap_or_else(|e| e.into_inner()));
        let until = std::time::Instant::now() + bound;
        for thread in threads {
            while !thread.is_finished() && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!("stopping while the weights are still being packed");
            }
        }
    }

    /// Puts `next` where `current` answers, keeping its memory budget;
    /// false if `current` no longer answers.
    fn replace_model(&self, current: &Arc<Classifier>, next: Arc<Classifier>) -> bool {
        let batcher = Batcher::start(next.clone(), self.batch_policy(), self.metrics.batch_size());
        self.model.replace_if(|state| match state {
            ModelState::Ready(ready) if Arc::ptr_eq(&ready.classifier, current) => {
                Some(ModelState::Ready(Ready {
                    classifier: next,
                    batcher,
                    budget: ready.budget.clone(),
                }))
            }
            _ => None,
        })
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
        self.model.set(state);
    }

    pub(crate) fn model(&self) -> ModelState {
        self.model.get()
    }

    /// The model, or why there is none yet (a 503).
    pub(crate) fn ready_model(&self) -> Result<Ready, Unready> {
        self.model.ready()
    }

    /// The slot the model is read from, for work that outlives a request
    /// (S3 objects).
    pub(crate) fn model_slot(&self) -> ModelSlot {
        self.model.clone()
    }

    /// The model answering now, as the metrics label it.
    pub(crate) fn model_labels(&self) -> Option<ModelLabels> {
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

/// `plain`'s packed successor, built on a thread of its own at low
/// priority (ONNX Runtime's pool threads it starts keep normal priority).
fn pack_at_low_priority(plain: &Arc<Classifier>) -> Result<Classifier, crate::model::ModelError> {
    use crate::model::session::threads::{lower_this_threads_priority, Background};
    let plain = plain.clone();
    let packing = std::thread::Builder::new()
        .name("catdog-pack".into())
        .spawn(move || {
            lower_this_threads_priority(Background::Low);
            plain.pack()
        });
    let not_packed = |why: String| crate::model::ModelError::Onnx(why);
    match packing.map(|t| t.join()) {
        Ok(Ok(Some(packed))) => packed,
        Ok(Ok(None)) => Err(not_packed("nothing to pack".into())),
        Ok(Err(_)) => Err(not_packed("the packing thread panicked".into())),
        Err(e) => Err(not_packed(format!("cannot start the packing thread: {e}"))),
    }
}
