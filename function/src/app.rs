//! Loading the classifier from the usual configuration (CLI flags / env):
//! shared by the binary's hosts and by the notebook.

use std::path::PathBuf;

use crate::model::contract::Preprocessing;
use crate::model::source::{self, ModelUri, SourceError};
use crate::model::{Classifier, LoadOptions, ModelError};

/// Which model to load and how to read it.
#[derive(Debug, Clone, Default)]
pub struct ModelConfig {
    /// `s3://…`, `https://…` or a path; `None` → the stock ImageNet VGG16.
    pub uri: Option<String>,
    /// Expected SHA-256 (hex); the model is refused if it differs.
    pub sha256: Option<String>,
    /// Where the default VGG16 is downloaded from (a mirror may be given).
    pub default_url: Option<String>,
    /// Folder caching the default VGG16.
    pub cache_dir: Option<PathBuf>,
    pub load: LoadOptions,
}

impl ModelConfig {
    /// The configuration `catdog` reads from its environment variables (the
    /// CLI flags' fallbacks): `MODEL_URI`, `MODEL_SHA256`, `DEFAULT_MODEL_URL`,
    /// `MODEL_LABELS`, `MODEL_PREPROCESSING`, `NEITHER_BELOW`, `CATDOG_THREADS`, `CATDOG_PREPACK`, `CATDOG_ZERO_COPY`
    /// (`ORT_DYLIB_PATH` is read when the runtime loads). Empty values count as unset.
    /// For hosts without a command line, such as the notebook.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|s| !s.trim().is_empty());
        ModelConfig {
            uri: var("MODEL_URI"),
            sha256: var("MODEL_SHA256"),
            default_url: var("DEFAULT_MODEL_URL"),
            cache_dir: None,
            load: LoadOptions {
                labels: var("MODEL_LABELS"),
                preprocessing: var("MODEL_PREPROCESSING"),
                fallback_preprocessing: None,
                neither_below: var("NEITHER_BELOW").and_then(|s| s.parse().ok()),
                threads: var("CATDOG_THREADS").and_then(|s| s.parse().ok()),
                ort_library: None,
                prepack: var("CATDOG_PREPACK").and_then(|s| s.parse().ok()),
                zero_copy: var("CATDOG_ZERO_COPY").and_then(|s| s.parse().ok()),
            },
        }
    }
}

/// Why the model could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("could not start an async runtime: {0}")]
    Runtime(std::io::Error),
}

impl LoadError {
    /// Whether trying again may succeed: the model could not be fetched
    /// (network, throttling, server errors, an object not uploaded yet or a
    /// policy being fixed). Bad bytes, a digest mismatch or a bad setting
    /// will not get better by themselves.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LoadError::Source(SourceError::S3 { .. } | SourceError::Http { .. })
        )
    }
}

/// Bounded retries of a failed model fetch, with doubling pauses.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all (1 = no retry).
    pub attempts: u32,
    pub first_pause: std::time::Duration,
    pub max_pause: std::time::Duration,
}

impl Default for RetryPolicy {
    /// 4 tries, pauses 0.5 s, 1 s, 2 s: a blip is ridden out while a Lambda
    /// init (10 s budget) still fails in time with its cause.
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            first_pause: std::time::Duration::from_millis(500),
            max_pause: std::time::Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The default, with `CATDOG_FETCH_ATTEMPTS` and `CATDOG_RETRY_PAUSE_MS`
    /// (first pause) when set.
    pub fn from_env() -> Self {
        let mut policy = RetryPolicy::default();
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        if let Some(n) = var("CATDOG_FETCH_ATTEMPTS") {
            policy.attempts = n.clamp(1, 100) as u32;
        }
        if let Some(ms) = var("CATDOG_RETRY_PAUSE_MS") {
            policy.first_pause = std::time::Duration::from_millis(ms.min(60_000));
        }
        policy
    }

    /// The pause after `pause`: doubled, at most `max_pause`.
    pub fn next_pause(&self, pause: std::time::Duration) -> std::time::Duration {
        (pause * 2).min(self.max_pause)
    }
}

/// [`load_classifier`], tried again after retryable failures (see
/// [`LoadError::is_retryable`]) as `policy` says; `on_retry` hears of each
/// failure that will be retried, with the pause before the next try.
pub async fn load_classifier_with_retries(
    cfg: &ModelConfig,
    policy: RetryPolicy,
    mut on_retry: impl FnMut(&LoadError, u32, std::time::Duration),
) -> Result<Classifier, LoadError> {
    let mut pause = policy.first_pause;
    let mut attempt = 1;
    loop {
        match load_classifier(cfg).await {
            Err(e) if e.is_retryable() && attempt < policy.attempts => {
                tracing::warn!(
                    error = %e, attempt, pause_ms = pause.as_millis() as u64,
                    "model fetch failed; trying again"
                );
                on_retry(&e, attempt, pause);
                tokio::time::sleep(pause).await;
                pause = policy.next_pause(pause);
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// [`load_classifier`] for callers without an async runtime (the notebook):
/// runs it on a runtime of its own and waits. Must not be called from async
/// code (use `load_classifier` there).
pub fn load_classifier_blocking(cfg: &ModelConfig) -> Result<Classifier, LoadError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)?
        .block_on(load_classifier(cfg))
}

fn joined<T>(r: Result<T, tokio::task::JoinError>) -> Result<T, LoadError> {
    r.map_err(|e| LoadError::Model(ModelError::Onnx(format!("loader task failed: {e}"))))
}

/// A model file on disk. With `expected`, the file's SHA-256 is computed while
/// the session builds and a mismatch refuses the model. Without it the digest
/// is only informational, so it is computed in the background at low CPU
/// priority once the model is ready (for VGG16 it is ~0.3 s of a core, a third
/// of the start-up): `sha256` reads `null` until then.
async fn load_local(
    path: &std::path::Path,
    uri: &ModelUri,
    expected: Option<&str>,
    load: LoadOptions,
) -> Result<Classifier, LoadError> {
    let expected = expected.map(source::normalize_sha256).transpose()?;
    let started = std::time::Instant::now();
    let file_err = |source| SourceError::File {
        path: path.to_path_buf(),
        source,
    };
    let (size, quantized) = if load.zero_copy.unwrap_or(true) {
        // The graph is scanned without its weights by Classifier::load.
        let size = std::fs::metadata(path).map_err(file_err)?.len();
        (size, false)
    } else {
        let p = path.to_path_buf();
        joined(tokio::task::spawn_blocking(move || source::scan_file(&p)).await)?
            .map_err(file_err)?
    };
    let model = source::FetchedModel {
        bytes: Vec::new(),
        path: Some(path.to_path_buf()),
        size,
        quantized,
        sha256: String::new(),
        uri: uri.to_string(),
        fetch_ms: 0.0,
    };
    let building = tokio::task::spawn_blocking(move || Classifier::load(&model, &load));
    let Some(expected) = expected else {
        let classifier = joined(building.await)??;
        let slot = classifier.digest_slot();
        let p = path.to_path_buf();
        std::thread::Builder::new()
            .name("catdog-digest".into())
            .spawn(move || {
                lower_priority();
                match source::hash_file(&p) {
                    Ok(digest) => {
                        tracing::info!(sha256 = %digest, ms = started.elapsed().as_secs_f64() * 1e3, "model digest");
                        let _ = slot.set(digest);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot compute the model digest"),
                }
            })
            .map_err(|e| LoadError::Model(ModelError::Onnx(format!("cannot start the digest thread: {e}"))))?;
        log_ready(&classifier);
        return Ok(classifier);
    };
    let p = path.to_path_buf();
    let hashing = tokio::task::spawn_blocking(move || {
        let digest = source::hash_file(&p);
        (digest, started.elapsed().as_secs_f64() * 1e3)
    });
    let (hashed, built) = tokio::join!(hashing, building);
    let (digest, hash_ms) = joined(hashed)?;
    let sha256 = digest.map_err(file_err)?;
    source::verify_sha256(&uri.to_string(), Some(&expected), &sha256)?;
    let mut classifier = joined(built)??;
    classifier.set_digest(sha256, hash_ms);
    log_ready(&classifier);
    Ok(classifier)
}

/// Lowers the calling thread's CPU priority (nice 19) so background work only
/// uses cycles the requests leave idle. Best effort.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

/// Fetches the model and builds the classifier (session build runs on a blocking thread).
pub async fn load_classifier(cfg: &ModelConfig) -> Result<Classifier, LoadError> {
    let mut load = cfg.load.clone();
    let fetched = match cfg.uri.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(uri) => {
            let uri: ModelUri = uri.parse()?;
            tracing::info!(model = %uri, "fetching model");
            if let ModelUri::File(path) = &uri {
                return load_local(path, &uri, cfg.sha256.as_deref(), load).await;
            }
            source::fetch(&uri, cfg.sha256.as_deref()).await?
        }
        None => {
            // The zoo VGG16 carries no metadata; it was trained torch-style.
            load.fallback_preprocessing
                .get_or_insert_with(Preprocessing::torch);
            let url = cfg
                .default_url
                .as_deref()
                .unwrap_or(source::DEFAULT_MODEL_URL);
            let cache = cfg.cache_dir.clone().unwrap_or_else(source::cache_dir);
            source::fetch_default(url, &cache).await?
        }
    };
    let classifier = tokio::task::spawn_blocking(move || Classifier::load(&fetched, &load))
        .await
        .map_err(|e| ModelError::Onnx(format!("loader task failed: {e}")))??;
    log_ready(&classifier);
    Ok(classifier)
}

fn log_ready(classifier: &Classifier) {
    let info = classifier.info();
    tracing::info!(
        model = %info.uri, sha256 = classifier.sha256().unwrap_or("(computing)"), bytes = info.size_bytes, kind = info.kind,
        labels = ?info.labels, fetch_ms = info.fetch_ms, load_ms = info.load_ms, threads = info.threads,
        "model ready"
    );
}
