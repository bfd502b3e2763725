//! Loading a model as the settings describe it: fetch it (a file, the cached
//! default VGG16, or remote bytes), build what is asked for from it on a
//! blocking thread, and check its SHA-256 — while the session builds when a
//! digest is expected, or afterwards in the background when it is only
//! informational. One path for the classifier (every host) and fine-tuning.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aws::RetryPolicy;
use crate::model::classifier::{Classifier, ContractOverrides, DigestSlot};
use crate::model::error::ModelError;
use crate::model::session::SessionOptions;
use crate::model::source::{self, FetchOptions, FetchedModel, ModelUri, SourceError};
use crate::preprocess::Preprocessing;

/// Which model to load and how to read it.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// `s3://…`, `https://…` or a path; `None` → the stock ImageNet VGG16.
    pub(crate) uri: Option<String>,
    /// Expected SHA-256 (hex); the model is refused if it differs.
    pub(crate) sha256: Option<String>,
    /// Where the default VGG16 is downloaded from (a mirror may be given).
    pub(crate) default_url: Option<String>,
    /// Folder caching the default VGG16.
    pub(crate) cache_dir: PathBuf,
    pub(crate) contract: ContractOverrides,
    pub(crate) session: SessionOptions,
    pub(crate) fetch: FetchOptions,
}

impl ModelSpec {
    /// For a command, which answers once and swaps nothing in: weights a
    /// server would pack in the background are packed at load.
    pub(crate) fn for_command(mut self) -> Self {
        self.session.prepack = self.session.prepack.at_load();
        self
    }
}

/// Why the model could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl LoadError {
    /// Whether trying again may succeed: the model could not be fetched
    /// (network, throttling, server errors, an object not uploaded yet or a
    /// policy being fixed). Bad bytes, a digest mismatch or a bad setting
    /// will not get better by themselves.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(
            self,
            LoadError::Source(SourceError::S3 { .. } | SourceError::Http { .. })
        )
    }
}

/// When a model file's digest is computed if no digest is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DigestTiming {
    /// While the session builds: known when loading returns (fine-tuning records it).
    Now,
    /// After loading, at low CPU priority (serving: it is only informational,
    /// and for VGG16 it is ~0.3 s of a core, a third of the start-up).
    Background,
}

/// The classifier, as `spec` says.
pub async fn load_classifier(spec: &ModelSpec) -> Result<Classifier, LoadError> {
    let contract = spec.contract.clone();
    let session = spec.session.clone();
    let classifier = load_with(spec, DigestTiming::Background, move |model, digest| {
        Classifier::load(model, &contract, &session, digest)
    })
    .await?
    .0;
    let info = classifier.info();
    tracing::info!(
        model = %info.uri, sha256 = classifier.sha256().unwrap_or("(computing)"), bytes = info.size_bytes,
        kind = info.kind, labels = ?info.labels, fetch_ms = info.fetch_ms, load_ms = info.load_ms,
        threads = info.threads, "model ready"
    );
    Ok(classifier)
}

/// [`load_classifier`], tried again after retryable failures (see
/// [`LoadError::is_retryable`]) as `policy` says; `on_retry` hears of each
/// failure that will be retried, with the pause before the next try.
pub(crate) async fn load_classifier_with_retries(
    spec: &ModelSpec,
    policy: RetryPolicy,
    mut on_retry: impl FnMut(&LoadError, u32, Duration),
) -> Result<Classifier, LoadError> {
    policy
        .run(
            || load_classifier(spec),
            LoadError::is_retryable,
            |e, attempt, pause| {
                tracing::warn!(
                    error = %e, attempt, pause_ms = pause.as_millis() as u64,
                    "model fetch failed; trying again"
                );
                on_retry(e, attempt, pause);
            },
        )
        .await
}

/// A model as fetched, and the digest still to be checked against it (a
/// file's, computed while it loads).
struct Located {
    model: FetchedModel,
    known_sha256: Option<String>,
    verify: Option<String>,
}

async fn locate(spec: &ModelSpec, force_download: bool) -> Result<Located, SourceError> {
    let expected = spec
        .sha256
        .as_deref()
        .map(source::normalize_sha256)
        .transpose()?;
    match spec.uri.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(uri) => {
            let uri: ModelUri = uri.parse()?;
            tracing::info!(model = %uri, "fetching model");
            match &uri {
                ModelUri::File(path) => Ok(Located {
                    model: source::local_file(path)?,
                    known_sha256: None,
                    verify: expected,
                }),
                _ => {
                    let (model, sha256) =
                        source::fetch_remote(&uri, expected.as_deref(), &spec.fetch).await?;
                    Ok(Located {
                        model,
                        known_sha256: Some(sha256),
                        verify: None,
                    })
                }
            }
        }
        None => {
            let (file, whole) = source::cached_default(&spec.cache_dir);
            let started = Instant::now();
            let downloaded = !whole || force_download;
            if downloaded {
                let url = spec
                    .default_url
                    .as_deref()
                    .unwrap_or(source::DEFAULT_MODEL_URL);
                source::download_default(url, &spec.cache_dir).await?;
            }
            let mut model = source::local_file(&file)?;
            model.fetch_ms = started.elapsed().as_secs_f64() * 1e3;
            let default = source::DEFAULT_MODEL_SHA256.to_string();
            if let Some(e) = expected.filter(|e| *e != default) {
                source::verify_sha256(&model.uri, Some(&e), &default)?;
            }
            Ok(if downloaded {
                Located {
                    model,
                    known_sha256: Some(default),
                    verify: None,
                }
            } else {
                Located {
                    model,
                    known_sha256: None,
                    verify: Some(default),
                }
            })
        }
    }
}

/// Fetches the model `spec` names and builds `T` from it with `build` (on a
/// blocking thread), handling its digest as `timing` says; returns `T` and
/// the model's digest slot.
pub(crate) async fn load_with<T: Send + 'static>(
    spec: &ModelSpec,
    timing: DigestTiming,
    build: impl Fn(FetchedModel, DigestSlot) -> Result<T, ModelError> + Send + Sync + 'static,
) -> Result<(T, DigestSlot), LoadError> {
    let mut spec = spec.clone();
    if spec.uri.is_none() {
        // The zoo VGG16 carries no metadata; it was trained torch-style.
        spec.contract
            .default_preprocessing
            .get_or_insert_with(Preprocessing::torch);
    }
    let build = Arc::new(build);
    let located = locate(&spec, false).await?;
    match build_verified(located, timing, build.clone()).await {
        Err(LoadError::Source(SourceError::Sha256Mismatch { .. })) if spec.uri.is_none() => {
            tracing::warn!("the cached default model is damaged; downloading it again");
            build_verified(locate(&spec, true).await?, timing, build).await
        }
        result => result,
    }
}

async fn build_verified<T: Send + 'static>(
    located: Located,
    timing: DigestTiming,
    build: Arc<impl Fn(FetchedModel, DigestSlot) -> Result<T, ModelError> + Send + Sync + 'static>,
) -> Result<(T, DigestSlot), LoadError> {
    let Located {
        model,
        known_sha256,
        verify,
    } = located;
    let slot = DigestSlot::default();
    if let Some(sha) = known_sha256 {
        let _ = slot.set(sha);
    }
    let path = slot.get().is_none().then(|| model.path.clone());
    let uri = model.uri.clone();
    let building = {
        let slot = slot.clone();
        tokio::task::spawn_blocking(move || build(model, slot))
    };
    let Some(path) = path else {
        return Ok((joined(building.await)??, slot));
    };
    if verify.is_none() && timing == DigestTiming::Background {
        let value = joined(building.await)??;
        hash_in_background(path, slot.clone())?;
        return Ok((value, slot));
    }
    let started = Instant::now();
    let hashing = tokio::task::spawn_blocking(move || {
        source::hash_file(&path).map_err(|error| SourceError::File { path, error })
    });
    let (hashed, built) = tokio::join!(hashing, building);
    let sha256 = joined(hashed)??;
    tracing::debug!(ms = started.elapsed().as_secs_f64() * 1e3, "model digest");
    source::verify_sha256(&uri, verify.as_deref(), &sha256)?;
    let value = joined(built)??;
    let _ = slot.set(sha256);
    Ok((value, slot))
}

fn joined<T>(r: Result<T, tokio::task::JoinError>) -> Result<T, LoadError> {
    r.map_err(|e| LoadError::Model(ModelError::Onnx(format!("loader task failed: {e}"))))
}

/// Computes a file's digest on a low-priority thread and fills `slot`.
fn hash_in_background(path: PathBuf, slot: DigestSlot) -> Result<(), LoadError> {
    let started = Instant::now();
    std::thread::Builder::new()
        .name("catdog-digest".into())
        .spawn(move || {
            crate::model::session::threads::lower_this_threads_priority(crate::model::session::threads::Background::Idle);
            // Only between inferences: hashing beside a run stalls ONNX
            // Runtime's threads (measured as the fp32 p99 tail at one client).
            let idle = crate::model::session::inference_idle;
            match source::hash_file_when(&path, idle, Duration::from_millis(2)) {
                Ok(digest) => {
                    tracing::info!(sha256 = %digest, ms = started.elapsed().as_secs_f64() * 1e3, "model digest");
                    let _ = slot.set(digest);
                }
                Err(e) => tracing::warn!(error = %e, file = %crate::messages::file_name(&path), "cannot compute the model digest"),
            }
        })
        .map(drop)
        .map_err(|e| LoadError::Model(ModelError::Onnx(format!("cannot start the digest thread: {e}"))))
}
