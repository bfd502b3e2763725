//! The decisions derived from the parsed settings: each layer's own plain
//! options, so no layer below reads a flag.

use std::path::PathBuf;
use std::time::Duration;

use crate::aws::{RetryPolicy, S3Options};
use crate::decode::DecodeLimits;
use crate::http::access::{self, Access};
use crate::limits::{BatchPolicy, Limits};
use crate::model::load::ModelSpec;
use crate::model::session::{Prepack, PrepackPolicy, SessionOptions};
use crate::model::source::FetchOptions;
use crate::model::ContractOverrides;

use super::*;

/// Lambda's memory for one vCPU (AWS: "at 1,769 MB, a function has the
/// equivalent of one vCPU").
const LAMBDA_MB_PER_VCPU: u64 = 1769;

impl Settings {
    /// Tells lambda_http to leave an API Gateway stage ("/prod") out of the
    /// path, as the router is mounted at the root, unless the variable was
    /// given. lambda_http reads it from the environment, and only this module
    /// touches the environment; call it before any thread starts.
    pub fn prepare_lambda_http(&self) {
        if self.process.lambda_ignore_stage.is_none() {
            std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true");
        }
    }

    /// Whether this process is a Lambda bootstrap.
    pub fn on_lambda(&self) -> bool {
        self.process.lambda_runtime_api.is_some()
    }

    /// Whether Lambda initialises this environment once, for a snapshot
    /// that new environments resume from (SnapStart).
    pub(crate) fn snapstart(&self) -> bool {
        self.on_lambda() && self.process.lambda_initialization_type.as_deref() == Some("snap-start")
    }

    /// Invokes this environment takes at once: Lambda Managed Instances'
    /// `AWS_LAMBDA_MAX_CONCURRENCY`, else 1.
    pub(crate) fn lambda_concurrency(&self) -> u32 {
        self.process
            .lambda_max_concurrency
            .as_deref()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&n| n > 0 && self.on_lambda())
            .unwrap_or(1)
    }

    /// Whether pictures from different requests meet in this process: a
    /// server, or a Lambda environment that takes several invokes at once.
    fn shares_requests(&self) -> bool {
        !self.on_lambda() || self.lambda_concurrency() > 1
    }

    /// Whether requests' figures go out as CloudWatch EMF lines (see [`ProcessSettings::emf`]).
    pub(crate) fn emf(&self) -> bool {
        self.process.emf.unwrap_or_else(|| self.on_lambda())
    }

    /// catdog's cache folder (see [`ProcessSettings::cache_dir`]).
    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.process
            .cache_dir
            .clone()
            .unwrap_or_else(default_cache_dir)
    }

    /// What classifying an S3 object writes back, and where.
    pub(crate) fn results_config(&self) -> crate::objects::ResultsConfig {
        let o = &self.objects;
        crate::objects::ResultsConfig {
            tags: o.results.tags,
            record: o.results.record,
            prefix: o.results_prefix.clone(),
            bucket: o.results_bucket.clone(),
        }
    }

    /// How the Lambda bootstrap works through S3-side events.
    pub(crate) fn event_options(&self) -> crate::events::dispatch::EventOptions {
        crate::events::dispatch::EventOptions {
            concurrency: self.objects.object_concurrency,
            scope: self
                .objects
                .uploads
                .clone()
                .map(|(bucket, prefix)| crate::objects::location::ObjectScope { bucket, prefix }),
            margin: self.request_limits().timeouts.lambda_margin,
        }
    }

    /// Pictures in S3 as the HTTP API reaches them (`POST /uploads`,
    /// `/predict {"s3": …}`); `None` when no bucket is named.
    pub(crate) fn stored_pictures(
        &self,
    ) -> Option<std::sync::Arc<dyn crate::objects::StoredPictures>> {
        crate::objects::S3StoredPictures::new(
            self.objects.uploads.clone(),
            self.objects.s3_allow.clone(),
            self.results_config(),
            self.fetch_options(),
        )
        .map(|g| std::sync::Arc::new(g) as std::sync::Arc<dyn crate::objects::StoredPictures>)
    }

    /// Where `POST /feedback` stores corrections; `None`: the route is off.
    /// Refused when it overlaps the uploads or the records.
    pub(crate) fn feedback_sink(
        &self,
    ) -> Result<Option<std::sync::Arc<dyn crate::feedback::FeedbackSink>>, crate::feedback::Overlap>
    {
        let Some(destination) = self.objects.feedback.as_ref() else {
            return Ok(None);
        };
        let results = (
            self.objects.results_bucket.as_deref(),
            self.objects.results_prefix.as_str(),
        );
        destination.check_apart(self.objects.uploads.as_ref(), results)?;
        Ok(Some(crate::feedback::sink(
            destination,
            &self.fetch_options(),
        )))
    }

    /// Which model to load, and how.
    pub fn model_spec(&self) -> ModelSpec {
        let m = &self.model;
        ModelSpec {
            uri: m.uri.clone(),
            sha256: m.sha256.clone(),
            default_url: m.default_model_url.clone(),
            cache_dir: self.cache_dir().join("models"),
            contract: ContractOverrides {
                labels: m.labels.clone().map(|l| l.0),
                preprocessing: m.preprocessing.clone(),
                neither_below: m.neither_below,
                name: m.name.clone(),
                default_preprocessing: None,
            },
            session: self.session_options(),
            fetch: self.fetch_options(),
        }
    }

    /// How ONNX Runtime sessions are built.
    pub(crate) fn session_options(&self) -> SessionOptions {
        SessionOptions {
            threads: self.model.threads.map(usize::from),
            prepack: self.prepack_policy(),
            zero_copy: self.model.zero_copy.unwrap_or(true),
            ort_library: self.process.ort_lib.clone(),
            cache_dir: self.cache_dir(),
        }
    }

    /// When weights are pre-packed. Packing costs an fp32 VGG16 0.5–1.0 s
    /// of a core and a transient copy; without it ONNX Runtime repacks fc1
    /// (411 MB) for every batch: 2% slower alone, 9–11% fewer images a
    /// second at 4 clients. int8 runs 2× slower unpacked.
    fn prepack_policy(&self) -> PrepackPolicy {
        if self.snapstart() {
            // Paid once, when the version is published, never by a user;
            // `later` would be finished by every restored environment.
            return self
                .model
                .prepack
                .map_or(PrepackPolicy::always(Prepack::Now), PrepackPolicy::always)
                .at_load();
        }
        if let Some(set) = self.model.prepack {
            return PrepackPolicy::always(set);
        }
        if self.shares_requests() {
            // A server, Managed Instances: answer at once, pack meanwhile.
            return PrepackPolicy::always(Prepack::Later);
        }
        // On-demand Lambda: one invoke at a time, with CPU in proportion to
        // memory (1,769 MB is one vCPU), and the environment frozen between
        // invokes, so background work only runs while one is in flight.
        // With a whole vCPU spare (3,538 MB and more) an fp32 pack runs on
        // it beside the invokes and wins its 2% for the environment's life;
        // with less it would take the core those invokes need, for an
        // environment that may see only a few. Quantized graphs pack at
        // load: unpacked they are 2× slower.
        let spare_vcpu = self
            .process
            .lambda_memory_mb
            .is_some_and(|mb| mb >= 2 * LAMBDA_MB_PER_VCPU);
        PrepackPolicy {
            fp32: if spare_vcpu {
                Prepack::Later
            } else {
                Prepack::Off
            },
            int8: Prepack::Now,
        }
    }

    /// How models are fetched from S3.
    pub fn fetch_options(&self) -> FetchOptions {
        FetchOptions {
            s3_concurrency: self.fetch.s3_concurrency,
            download_dir: self
                .fetch
                .download_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
            in_memory: self.snapstart(),
            s3: S3Options {
                read_timeout: Duration::from_secs_f64(self.fetch.s3_read_timeout_s),
                endpoint: self.fetch.s3_endpoint.clone(),
                retry: self.retry_policy(),
            },
        }
    }

    /// Retries of a fetch that may pass (bounded: Lambda init, the CLI).
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.fetch.fetch_attempts,
            first_pause: Duration::from_millis(self.fetch.retry_pause_ms),
            max_pause: Duration::from_secs(60),
        }
    }

    /// The request limits.
    pub fn request_limits(&self) -> Limits {
        let l = &self.limits;
        Limits {
            max_body_bytes: l.max_body_bytes,
            max_object_bytes: l.max_object_bytes,
            max_batch: l.max_batch,
            decode: DecodeLimits {
                max_pixels: l.max_pixels,
                ..DecodeLimits::default()
            },
            batching: BatchPolicy {
                // Alone in its environment, a request has nobody to wait for.
                window: Duration::from_millis(l.batch_window_ms.unwrap_or(
                    if self.shares_requests() {
                        crate::limits::DEFAULT_BATCH_WINDOW_MS
                    } else {
                        0
                    },
                )),
                max_pictures: l.max_batch,
                max_queued: l.max_queued,
            },
            memory: crate::memory::MemoryPolicy {
                budget: match l.memory_budget {
                    Some(MemoryBudgetSetting::Bytes(b)) => Some(b),
                    Some(MemoryBudgetSetting::Auto) | None => None,
                },
                // Lambda's own variable: it means something on Lambda only.
                lambda_memory_mb: self.process.lambda_memory_mb.filter(|_| self.on_lambda()),
                wait: Duration::from_millis(l.memory_wait_ms),
            },
            timeouts: crate::limits::Timeouts {
                body_idle: Duration::from_secs_f64(l.body_timeout_s),
                request: Duration::from_secs_f64(l.request_timeout_s),
                lambda_margin: Duration::from_millis(l.deadline_margin_ms),
            },
        }
    }

    /// API key and CORS, as the router applies them (the values were
    /// checked when parsed; this only builds them).
    pub fn access_control(&self) -> Result<Access, access::AccessError> {
        Access::new(
            self.access.api_key.as_ref().map(Secret::expose),
            &self.access.cors_origins,
        )
    }

    /// How `catdog serve` (and the tunnel) hold connections.
    pub(crate) fn connection_limits(&self) -> crate::limits::ConnectionLimits {
        crate::limits::ConnectionLimits {
            header_timeout: Duration::from_secs_f64(self.serve.header_timeout_s),
            max_connections: self.serve.max_connections,
        }
    }

    /// Whether the router will ask for an API key (given, or in a secret).
    pub(crate) fn keyed(&self) -> bool {
        self.access.api_key.is_some() || self.api_key_secret().is_some()
    }

    /// The Secrets Manager secret holding the API key, if one is named.
    pub(crate) fn api_key_secret(&self) -> Option<&str> {
        self.access
            .api_key_secret
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// `host:port` to bind.
    pub(crate) fn bind_address(&self) -> String {
        let ServeSettings { host, port, .. } = &self.serve;
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }
}

/// `$XDG_CACHE_HOME/catdog` (or the platform's cache folder), as `scripts/setup.sh` uses.
pub fn default_cache_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("catdog")
}
