//! The settings as parsed: one clap group per concern, each flag with its
//! environment variable, checked by [`super::values`].

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::Args;

use crate::model::source;
use crate::preprocess::Preprocessing;

use super::values::*;

/// Which model, and how to read and run it.
#[derive(Args, Debug, Clone)]
pub struct ModelSettings {
    /// Model location: s3://bucket/key, https://…, or a file path [default: the ImageNet VGG16 of the ONNX Model Zoo].
    #[arg(long = "model", env = "MODEL_URI", value_parser = parse_model_uri)]
    pub uri: Option<String>,
    /// Expected SHA-256 of the model; a mismatch is refused.
    #[arg(long = "model-sha256", env = "MODEL_SHA256", value_parser = parse_sha256)]
    pub sha256: Option<String>,
    /// Class names as a JSON array, overriding the model's `labels` metadata.
    #[arg(long = "labels", env = "MODEL_LABELS", value_parser = parse_labels)]
    pub labels: Option<Labels>,
    /// `caffe`, `torch` or a JSON object, overriding the model's `preprocessing` metadata.
    #[arg(long = "preprocessing", env = "MODEL_PREPROCESSING", value_parser = parse_preprocessing)]
    pub preprocessing: Option<Preprocessing>,
    /// The model's name on the Open Inference Protocol routes (/v2/models/NAME)
    /// [default: the model's `name` metadata, else catdog].
    #[arg(long = "model-name", env = "MODEL_NAME", value_parser = parse_model_name)]
    pub name: Option<String>,
    /// Answer `neither` below this summed score of the other labels (0–1):
    /// for ImageNet models (cat+dog, default 0.2) and models with a
    /// `rejection` rule (default: the model's own threshold).
    #[arg(long, env = "NEITHER_BELOW", value_parser = parse_probability)]
    pub neither_below: Option<f32>,
    /// ONNX Runtime threads [default: the cores this process may use].
    #[arg(long, env = "CATDOG_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// ONNX Runtime weight pre-packing: true (at load), later (in the
    /// background once serving), false [default: later on a server; see docs/configuration.md for Lambda].
    #[arg(long, env = "CATDOG_PREPACK", value_parser = parse_prepack)]
    pub prepack: Option<crate::model::session::Prepack>,
    /// Hand a model file's weights to ONNX Runtime in place instead of letting
    /// it parse and copy them, true/false [default: true; false is the plain load].
    #[arg(long, env = "CATDOG_ZERO_COPY")]
    pub zero_copy: Option<bool>,
    /// Where to download the default VGG16 from (a mirror); verified by its known SHA-256.
    #[arg(long, env = "DEFAULT_MODEL_URL", value_parser = parse_model_uri)]
    pub default_model_url: Option<String>,
}

/// Class names, parsed from a JSON array.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels(pub Vec<String>);

/// Request limits.
#[derive(Args, Debug, Clone)]
pub struct LimitSettings {
    /// Largest request body in bytes (Lambda's synchronous limit is 6 MB).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = crate::limits::DEFAULT_MAX_BODY_BYTES,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 32)).map(|n| n as usize))]
    pub max_body_bytes: usize,
    /// Largest picture read from S3 in bytes (uploads, S3 events, Batch
    /// Operations, `/predict {"s3": …}`): the path past the invoke limit.
    #[arg(long, env = "CATDOG_MAX_OBJECT_BYTES", default_value_t = crate::limits::DEFAULT_MAX_OBJECT_BYTES,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 32)).map(|n| n as usize))]
    pub max_object_bytes: usize,
    /// Most pictures in one request.
    #[arg(long, env = "MAX_BATCH", default_value_t = crate::limits::DEFAULT_MAX_BATCH,
          value_parser = clap::value_parser!(u16).range(1..=1024).map(usize::from))]
    pub max_batch: usize,
    /// Micro-batching: how long a request waits for others to share its batch, in ms (0: off)
    /// [default: 2; 0 on Lambda, where an instance serves one request at a time, so no
    /// company can come].
    #[arg(long, env = "BATCH_WINDOW_MS", value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub batch_window_ms: Option<u64>,
    /// Requests that may wait for the model; more get 503 + Retry-After instead of queueing without bound.
    #[arg(long, env = "MAX_QUEUED", default_value_t = crate::limits::DEFAULT_MAX_QUEUED,
          value_parser = clap::value_parser!(u32).range(1..=100_000).map(|n| n as usize))]
    pub max_queued: usize,
    /// Largest picture, in pixels (width × height), refused before decoding.
    #[arg(long, env = "MAX_PIXELS", default_value_t = crate::decode::DEFAULT_MAX_PIXELS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pixels: u64,
    /// Bytes of decoded pictures in flight at once, e.g. `768MiB`; `auto`: half of what the
    /// process leaves of the memory it may use (on Lambda the function's MemorySize, else the
    /// machine's or the cgroup's), at most 512 MiB or 128 MiB per core, whichever is more [default: auto].
    #[arg(long, env = "CATDOG_MEMORY_BUDGET", value_parser = parse_memory_budget)]
    pub memory_budget: Option<MemoryBudgetSetting>,
    /// How long a picture may wait for the memory budget before the request gets 503 + Retry-After, in ms.
    #[arg(long, env = "CATDOG_MEMORY_WAIT_MS", default_value_t = crate::memory::DEFAULT_WAIT_MS,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub memory_wait_ms: u64,
    /// Longest pause between two pieces of a request body, in seconds (then 408 `request_timeout`).
    #[arg(long, env = "CATDOG_BODY_TIMEOUT_S", default_value_t = crate::limits::DEFAULT_BODY_TIMEOUT_S,
          value_parser = parse_timeout_s)]
    pub body_timeout_s: f64,
    /// Longest a whole request may take, in seconds (then 408 if its body had not come, else 503 `deadline_exceeded`).
    #[arg(long, env = "CATDOG_REQUEST_TIMEOUT_S", default_value_t = crate::limits::DEFAULT_REQUEST_TIMEOUT_S,
          value_parser = parse_timeout_s)]
    pub request_timeout_s: f64,
    /// On Lambda: ms kept before the invoke's deadline, where new work stops so the invoke answers instead of timing out.
    #[arg(long, env = "CATDOG_DEADLINE_MARGIN_MS", default_value_t = crate::limits::DEFAULT_DEADLINE_MARGIN_MS,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub deadline_margin_ms: u64,
}

/// `CATDOG_MEMORY_BUDGET`: a number of bytes, or decided at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryBudgetSetting {
    Auto,
    Bytes(u64),
}

/// Who may call the API.
#[derive(Args, Debug, Clone)]
pub struct AccessSettings {
    /// Require this API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`) on
    /// classifying and /model; at least 16 characters. Prefer the env var: a
    /// flag is visible to other users in `ps`.
    #[arg(long, env = "CATDOG_API_KEY", hide_env_values = true, value_parser = parse_api_key)]
    pub api_key: Option<Secret>,
    /// Read the API key from this AWS Secrets Manager secret (its ARN or
    /// name; the secret's string is the key) at start, and again when a
    /// presented key does not match, at most once a minute, so rotation
    /// needs no restart. How the template keeps the key out of the
    /// function's configuration.
    #[arg(long, env = "CATDOG_API_KEY_SECRET", conflicts_with = "api_key")]
    pub api_key_secret: Option<String>,
    /// Web origins allowed to call the API from a browser (CORS), comma-separated,
    /// e.g. `https://app.example.com`; `*` for any [default: none, CORS off].
    #[arg(long, env = "CATDOG_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,
}

/// Fetching models: S3 transfer and retries.
#[derive(Args, Debug, Clone)]
pub struct FetchSettings {
    /// Parallel ranged GETs of an S3 model (1 = one plain GET).
    #[arg(long, env = "CATDOG_S3_CONCURRENCY", default_value_t = source::S3_CONCURRENCY,
          value_parser = clap::value_parser!(u16).range(1..=256).map(usize::from))]
    pub s3_concurrency: usize,
    /// Seconds to wait for S3 bytes that do not come before the read fails (and is retried).
    #[arg(long, env = "CATDOG_S3_READ_TIMEOUT_S", default_value_t = 30.0, value_parser = parse_timeout_s)]
    pub s3_read_timeout_s: f64,
    /// S3 endpoint (MinIO, moto, …): path-style addressing is then used. The AWS SDK's own variable.
    #[arg(long, env = "AWS_ENDPOINT_URL_S3", value_parser = parse_url)]
    pub s3_endpoint: Option<String>,
    /// Folder remote models are written into as they download, then mapped
    /// from (`/tmp` on Lambda: size the function's EphemeralStorage to the model)
    /// [default: the system's temporary folder].
    #[arg(long, env = "CATDOG_DOWNLOAD_DIR")]
    pub download_dir: Option<PathBuf>,
    /// Tries of a model fetch that failed for a reason that may pass (Lambda init; `serve` retries without end).
    #[arg(long, env = "CATDOG_FETCH_ATTEMPTS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub fetch_attempts: u32,
    /// First pause between fetch tries, in ms (doubling, at most a minute).
    #[arg(long, env = "CATDOG_RETRY_PAUSE_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub retry_pause_ms: u64,
}

/// Classifying S3 objects (S3 events, Batch Operations, `predict s3://…`):
/// what is written back, and where.
#[derive(Args, Debug, Clone)]
pub struct ObjectSettings {
    /// What to write for each classified object: `tags` (catdog-label,
    /// catdog-confidence, catdog-model, merged with the object's own), `record`
    /// (JSON at <results prefix><key>.json), both (`tags,record`), or `none`.
    #[arg(long, env = "CATDOG_RESULTS", default_value = "tags,record", value_parser = parse_results)]
    pub results: ResultsWanted,
    /// Where records go; keys under it are catdog's own and never classified.
    #[arg(long, env = "CATDOG_RESULTS_PREFIX", default_value = crate::objects::results::DEFAULT_PREFIX,
          value_parser = parse_results_prefix)]
    pub results_prefix: String,
    /// The bucket records go to, at <results prefix><bucket>/<key>.json
    /// [default: the classified object's own, at <results prefix><key>.json].
    #[arg(long, env = "CATDOG_RESULTS_BUCKET")]
    pub results_bucket: Option<String>,
    /// Objects classified at once within one event or listing.
    #[arg(long, env = "CATDOG_OBJECT_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64).map(usize::from))]
    pub object_concurrency: usize,
    /// Where `POST /uploads` lets clients put pictures over the body limit,
    /// `s3://bucket/prefix/` [default: none, /uploads off].
    #[arg(long, env = "CATDOG_UPLOADS", value_parser = parse_uploads)]
    pub uploads: Option<(String, String)>,
    /// Where `POST /feedback` stores corrections, as `<label>/<sha256>.<ext>`
    /// and a JSON sidecar: `s3://bucket/prefix/` or a folder [default: none,
    /// /feedback off].
    #[arg(long, env = "CATDOG_FEEDBACK", value_parser = parse_feedback)]
    pub feedback: Option<crate::feedback::Destination>,
    /// Buckets `/predict {"s3": "s3://bucket/key"}` may read, comma-separated
    /// (the uploads bucket always may) [default: none].
    #[arg(long = "s3-allow", env = "CATDOG_S3_ALLOW", value_delimiter = ',', value_parser = parse_bucket)]
    pub s3_allow: Vec<String>,
}

/// Which results are written: (tags, record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultsWanted {
    pub tags: bool,
    pub record: bool,
}

/// Where `catdog serve` (and the notebook) listens.
#[derive(Args, Debug, Clone)]
pub struct ServeSettings {
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free one).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Seconds a connection has to send a request's line and headers; then it is closed.
    #[arg(long, env = "CATDOG_HEADER_TIMEOUT_S", default_value_t = 10.0, value_parser = parse_timeout_s)]
    pub header_timeout_s: f64,
    /// Connections open at once (the port and the tunnel each); more wait until one closes.
    #[arg(long, env = "CATDOG_MAX_CONNECTIONS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65_536).map(|n| n as usize))]
    pub max_connections: usize,
}

/// A public HTTPS URL through ngrok, and who may use it.
#[derive(Args, Debug, Clone)]
pub struct TunnelSettings {
    /// Also serve the router on a public ngrok URL.
    #[arg(long, env = "CATDOG_NGROK")]
    pub ngrok: bool,
    /// ngrok authtoken (https://dashboard.ngrok.com/get-started/your-authtoken).
    #[arg(long = "ngrok-authtoken", env = "NGROK_AUTHTOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub authtoken: Option<Secret>,
    /// Reserved ngrok domain to use.
    #[arg(long = "ngrok-domain", env = "NGROK_DOMAIN")]
    pub domain: Option<String>,
    /// Require HTTP basic auth, `user:password` (password 8–128 chars); repeat or comma-separate.
    #[arg(long = "ngrok-basic-auth", env = "NGROK_BASIC_AUTH", value_delimiter = ',', hide_env_values = true,
          value_parser = parse_basic_auth)]
    pub basic_auth: Vec<BasicAuth>,
    /// Require login with this OAuth provider (google, github, microsoft, …).
    #[arg(long = "ngrok-oauth", env = "NGROK_OAUTH_PROVIDER")]
    pub oauth_provider: Option<String>,
    /// With --ngrok-oauth: only these emails.
    #[arg(
        long = "ngrok-oauth-allow-email",
        env = "NGROK_OAUTH_ALLOW_EMAILS",
        value_delimiter = ',',
        requires = "oauth_provider"
    )]
    pub oauth_allow_emails: Vec<String>,
    /// With --ngrok-oauth: only these email domains.
    #[arg(
        long = "ngrok-oauth-allow-domain",
        env = "NGROK_OAUTH_ALLOW_DOMAINS",
        value_delimiter = ',',
        requires = "oauth_provider"
    )]
    pub oauth_allow_domains: Vec<String>,
    /// Only clients from these networks (CIDR).
    #[arg(long = "ngrok-allow-cidr", env = "NGROK_ALLOW_CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    pub allow_cidrs: Vec<String>,
    /// Refuse clients from these networks (CIDR).
    #[arg(long = "ngrok-deny-cidr", env = "NGROK_DENY_CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    pub deny_cidrs: Vec<String>,
    /// Seconds to wait for ngrok before giving up (no network: fails at once).
    #[arg(long = "ngrok-timeout-s", env = "NGROK_TIMEOUT_S", default_value_t = 10.0, value_parser = parse_timeout_s)]
    pub connect_timeout_s: f64,
    /// Serve others although nothing guards the server: a tunnel without an
    /// API key, basic auth, OAuth allow-list or CIDR allow-list, or a
    /// keyless `--host` other than loopback. Without this both are refused:
    /// anyone could then classify, mint upload tickets signed with your AWS
    /// credentials and read /metrics.
    #[arg(long = "public", env = "CATDOG_PUBLIC")]
    pub public: bool,
}

/// The process: ONNX Runtime, caches, logs, the Lambda environment, the demo photos.
#[derive(Args, Debug, Clone)]
pub struct ProcessSettings {
    /// Path of libonnxruntime.so [default: next to the binary, then where `make setup` put it].
    #[arg(long = "ort-lib", env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,
    /// catdog's cache: the default model and the ONNX Runtime library `make setup` installs
    /// [default: $XDG_CACHE_HOME/catdog or ~/.cache/catdog].
    #[arg(long = "cache-dir", env = "CATDOG_CACHE")]
    pub cache_dir: Option<PathBuf>,
    /// Log format: `text` or `json` (default: json on Lambda, text elsewhere).
    #[arg(long, env = "LOG_FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info` or `catdog=debug` (tracing's EnvFilter syntax).
    #[arg(long = "log", env = "RUST_LOG")]
    pub log_filter: Option<String>,
    /// Write each request's figures to stdout as a CloudWatch Embedded Metric
    /// Format line, true/false [default: on Lambda, where /metrics cannot add up
    /// instances; off elsewhere].
    #[arg(long, env = "CATDOG_EMF")]
    pub emf: Option<bool>,
    /// Set by AWS Lambda: run as its bootstrap.
    #[arg(long, env = "AWS_LAMBDA_RUNTIME_API", hide = true)]
    pub lambda_runtime_api: Option<String>,
    /// Set by AWS Lambda: the function's memory in MB, from which the memory budget follows.
    #[arg(long, env = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", hide = true,
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub lambda_memory_mb: Option<u64>,
    /// Set by AWS Lambda: how this environment was made (`on-demand`,
    /// `provisioned-concurrency`, `snap-start`, `lambda-managed-instances`).
    #[arg(long, env = "AWS_LAMBDA_INITIALIZATION_TYPE", hide = true)]
    pub lambda_initialization_type: Option<String>,
    /// Set by Lambda Managed Instances: how many invokes one environment
    /// takes at once. Read as lambda_runtime reads it (a positive integer,
    /// else one at a time), so an odd value cannot stop the bootstrap.
    #[arg(long, env = "AWS_LAMBDA_MAX_CONCURRENCY", hide = true)]
    pub lambda_max_concurrency: Option<String>,
    /// Read by lambda_http; catdog sets it to `true` on Lambda unless given.
    #[arg(long, env = "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", hide = true)]
    pub lambda_ignore_stage: Option<String>,
    /// Set by AWS Lambda from the function's Handler: `pretraffic` runs the
    /// CodeDeploy PreTraffic hook, anything else the classifier.
    #[arg(long, env = "_HANDLER", hide = true)]
    pub lambda_handler: Option<String>,
    /// Folder of photos the notebook shows [default: $CATDOG_DATA/catsdogs/test, then ../shared/data/catsdogs/test].
    #[arg(long, env = "CATDOG_PHOTOS")]
    pub photos: Option<PathBuf>,
    /// The shared data folder (photos, models) beside the checkout.
    #[arg(long = "data-dir", env = "CATDOG_DATA")]
    pub data_dir: Option<PathBuf>,
}

/// The CodeDeploy PreTraffic hook (`catdog pretraffic`; on Lambda, the
/// handler `pretraffic`): which version it checks, against what, how closely.
#[derive(Args, Debug, Clone)]
pub struct HookSettings {
    /// The function version to check: a name, an ARN or `name:version`
    /// (template.yaml gives the new version's ARN).
    #[arg(long = "check-function", env = "CATDOG_CHECK_FUNCTION")]
    pub check_function: Option<String>,
    /// The recorded answers, `s3://bucket/<model key>.checks.json`, as
    /// `catdog upload --checks` writes them (pictures beside, under `<model key>.checks/`).
    #[arg(long = "checks-object", env = "CATDOG_CHECKS", value_parser = parse_checks_uri)]
    pub checks_object: Option<(String, String)>,
    /// Largest difference allowed between a recorded score and the new
    /// version's (0–1); labels must be equal whatever it is. The answers were
    /// recorded on another CPU than Lambda's: fp32 models differ by ~1e-6
    /// there, int8 ones by a few hundredths (docs/deploy.md).
    #[arg(long = "check-tolerance", env = "CATDOG_CHECK_TOLERANCE",
          default_value_t = crate::checks::DEFAULT_TOLERANCE, value_parser = parse_tolerance)]
    pub check_tolerance: f64,
    /// Seconds the checks may take in all before the hook reports Failed
    /// (under the hook function's Timeout, so it is still there to report).
    #[arg(long = "check-timeout-s", env = "CATDOG_CHECK_TIMEOUT_S", default_value_t = crate::checks::DEFAULT_TIMEOUT_S,
          value_parser = parse_timeout_s)]
    pub check_timeout_s: f64,
}

/// The notebook's tutorial path: what it fine-tunes and where it publishes.
/// Read from the environment only: no subcommand takes these as flags.
#[derive(Args, Debug, Clone)]
pub struct NotebookSettings {
    /// `catdog finetune` flags for the notebook's fine-tune, after its own
    /// defaults (the shared MobileNetV2 base and catsdogs photos beside the
    /// checkout), e.g. `--base vgg16-7.onnx --data photos/ --epochs 50`.
    #[arg(
        long = "notebook-finetune",
        env = "CATDOG_FINETUNE",
        allow_hyphen_values = true
    )]
    pub finetune: Option<String>,
    /// Where the notebook publishes the model it fine-tuned (s3://bucket/key);
    /// unset: it says so and does not publish.
    #[arg(long = "notebook-upload-to", env = "CATDOG_UPLOAD_TO")]
    pub upload_to: Option<String>,
}

/// A secret value (API key, token, password): never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A `user:password` for ngrok's basic auth (the password is a [`Secret`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub user: String,
    pub password: Secret,
}

impl TunnelSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout_s)
    }

    /// The protections, as applied to the endpoint (also for logs: no secrets).
    pub fn describe(&self) -> Vec<String> {
        let mut d = Vec::new();
        if !self.basic_auth.is_empty() {
            d.push(format!("basic auth ({} user(s))", self.basic_auth.len()));
        }
        if let Some(p) = &self.oauth_provider {
            d.push(format!(
                "oauth {p} (emails {:?}, domains {:?})",
                self.oauth_allow_emails, self.oauth_allow_domains
            ));
        }
        if !self.allow_cidrs.is_empty() {
            d.push(format!("allow {:?}", self.allow_cidrs));
        }
        if !self.deny_cidrs.is_empty() {
            d.push(format!("deny {:?}", self.deny_cidrs));
        }
        d
    }
}
