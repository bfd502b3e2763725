//! The one settings type: every flag and every environment variable catdog
//! reads, parsed and checked by clap in one place. Every host builds from it
//! — the Lambda bootstrap, `catdog serve`, the CLI commands and the notebook
//! (through [`Settings::from_env`]) — so a bad value is refused with the same
//! message wherever it is given. No other module reads the environment
//! (the AWS SDK and the Lambda runtime read their own variables).
//!
//! Flags win over environment variables; an empty variable counts as unset.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};

use crate::decode::DecodeLimits;
use crate::finetune::Init;
use crate::http::access::{self, Access};
use crate::limits::{BatchPolicy, Limits};
use crate::model::contract;
use crate::model::load::ModelSpec;
use crate::model::retry::RetryPolicy;
use crate::model::session::SessionOptions;
use crate::model::source::{self, FetchOptions};
use crate::model::ContractOverrides;
use crate::preprocess::Preprocessing;

/// The command line: settings plus what to do.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "catdog",
    version,
    about = "Cat or dog? An ONNX image classifier for AWS Lambda, a local server and the command line."
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `catdog` is asked to do.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Serve the upload page and the HTTP API on a local port (--host, --port, --ngrok).
    Serve,
    /// Classify image files (or every image in a folder) and print the answers.
    Predict {
        /// One JSON object per line: file, label, confidence, scores.
        #[arg(long)]
        json: bool,
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
    },
    /// Run as the AWS Lambda bootstrap (the default when AWS_LAMBDA_RUNTIME_API is set).
    Lambda,
    /// Score a model (--model / MODEL_URI) on DIR/<label>/*: accuracy, precision/recall, confusion matrix (table + PNG).
    Eval {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Where to write the confusion-matrix PNG.
        #[arg(long, default_value = "confusion.png")]
        png: PathBuf,
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Upload a model to S3 (multipart, SHA-256 checked per part); prints MODEL_URI and MODEL_SHA256.
    /// The file is given with --model FILE.
    Upload {
        /// s3://bucket/key
        #[arg(long)]
        to: String,
    },
    /// Fine-tune a new head on DIR/train/<label>/* over a frozen ONNX base; writes one self-describing ONNX file.
    Finetune(FinetuneArgs),
}

/// `catdog finetune`'s own flags (the base's preprocessing override is
/// `--preprocessing`, as for serving).
#[derive(Args, Debug, Clone)]
pub struct FinetuneArgs {
    /// Base classifier: s3://…, https://… or a path (its last layer must be Gemm/MatMul(+Add)).
    #[arg(long)]
    pub base: String,
    /// Expected SHA-256 of the base.
    #[arg(long, value_parser = parse_sha256)]
    pub base_sha256: Option<String>,
    /// Folder with train/<label>/* (and optionally valid/<label>/*).
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write the fine-tuned model.
    #[arg(long)]
    pub out: PathBuf,
    /// Most epochs; training stops earlier once the validation loss has not
    /// improved for --patience epochs, and the best epoch is kept.
    #[arg(long, default_value_t = 300)]
    pub epochs: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub batch: usize,
    /// Seed for the split, initialisation and shuffling (same seed, same model file).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How the new head starts: `auto` (from the base's zero-shot cat/dog choice
    /// when the base is an ImageNet classifier and the labels are cat and dog,
    /// else random), `zero-shot` or `random`.
    #[arg(long, value_enum, default_value_t = Init::Auto)]
    pub init: Init,
    /// Decoupled weight decay, pulling the head back toward its start.
    #[arg(long, default_value_t = 1e-2)]
    pub weight_decay: f32,
    /// Epochs without a better validation loss before training stops.
    #[arg(long, default_value_t = 20)]
    pub patience: usize,
    /// Most optimizer steps in all (bounds the run on large data sets).
    #[arg(long, default_value_t = 5000)]
    pub max_steps: usize,
    /// Share of each class of train/ held out for validation when there is no valid/ folder.
    #[arg(long, default_value_t = 0.2, value_parser = parse_fraction)]
    pub valid_fraction: f64,
    /// Refuse (exit non-zero, write nothing) below this validation accuracy (0–1).
    #[arg(long, default_value_t = 0.9, value_parser = parse_fraction)]
    pub min_accuracy: f64,
    /// Write the model even when it is weak (below the floor, or below the base's zero-shot choice).
    #[arg(long)]
    pub allow_weak: bool,
    /// Label smoothing of the training targets (0–1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub label_smoothing: f64,
    /// Also train on each photo's mirror image (its features through the base):
    /// measured to win by cross-validation (models/README.md); `false` halves extraction.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub mirror: bool,
    /// Also train on four corner crops of each photo (80% of each side; four
    /// more passes through the base per photo): measured to win by
    /// cross-validation (models/README.md).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub crop: bool,
    /// Measure the candidate settings by K-fold cross-validation on train/ and
    /// valid/ (never test/) and print the table; nothing is written.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u16).range(2..=20).map(usize::from))]
    pub cv: Option<usize>,
}

/// Every setting of every host.
#[derive(Args, Debug, Clone)]
pub struct Settings {
    #[command(flatten)]
    pub model: ModelSettings,
    #[command(flatten)]
    pub limits: LimitSettings,
    #[command(flatten)]
    pub access: AccessSettings,
    #[command(flatten)]
    pub fetch: FetchSettings,
    #[command(flatten)]
    pub serve: ServeSettings,
    #[command(flatten)]
    pub tunnel: TunnelSettings,
    #[command(flatten)]
    pub process: ProcessSettings,
}

/// Which model, and how to read and run it.
#[derive(Args, Debug, Clone)]
pub struct ModelSettings {
    /// Model location: s3://bucket/key, https://…, or a file path [default: the ImageNet VGG16 of the ONNX Model Zoo].
    #[arg(long = "model", env = "MODEL_URI", global = true, value_parser = parse_model_uri)]
    pub uri: Option<String>,
    /// Expected SHA-256 of the model; a mismatch is refused.
    #[arg(long = "model-sha256", env = "MODEL_SHA256", global = true, value_parser = parse_sha256)]
    pub sha256: Option<String>,
    /// Class names as a JSON array, overriding the model's `labels` metadata.
    #[arg(long = "labels", env = "MODEL_LABELS", global = true, value_parser = parse_labels)]
    pub labels: Option<Labels>,
    /// `caffe`, `torch` or a JSON object, overriding the model's `preprocessing` metadata.
    #[arg(long = "preprocessing", env = "MODEL_PREPROCESSING", global = true, value_parser = parse_preprocessing)]
    pub preprocessing: Option<Preprocessing>,
    /// The model's name on the Open Inference Protocol routes (/v2/models/NAME)
    /// [default: the model's `name` metadata, else catdog].
    #[arg(long = "model-name", env = "MODEL_NAME", global = true, value_parser = parse_model_name)]
    pub name: Option<String>,
    /// ImageNet models: answer `neither` below this summed cat+dog probability (0–1).
    #[arg(long, env = "NEITHER_BELOW", global = true, value_parser = parse_probability)]
    pub neither_below: Option<f32>,
    /// ONNX Runtime threads [default: the cores this process may use].
    #[arg(long, env = "CATDOG_THREADS", global = true, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// ONNX Runtime weight pre-packing, true/false [default: on; on Lambda for quantized models only].
    #[arg(long, env = "CATDOG_PREPACK", global = true)]
    pub prepack: Option<bool>,
    /// Hand a model file's weights to ONNX Runtime in place instead of letting
    /// it parse and copy them, true/false [default: true; false is the plain load].
    #[arg(long, env = "CATDOG_ZERO_COPY", global = true)]
    pub zero_copy: Option<bool>,
    /// Where to download the default VGG16 from (a mirror); verified by its known SHA-256.
    #[arg(long, env = "DEFAULT_MODEL_URL", global = true, value_parser = parse_model_uri)]
    pub default_model_url: Option<String>,
}

/// Class names, parsed from a JSON array.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels(pub Vec<String>);

/// Request limits.
#[derive(Args, Debug, Clone)]
pub struct LimitSettings {
    /// Largest request body in bytes (Lambda's synchronous limit is 6 MB).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = crate::limits::DEFAULT_MAX_BODY_BYTES, global = true,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 32)).map(|n| n as usize))]
    pub max_body_bytes: usize,
    /// Most pictures in one request.
    #[arg(long, env = "MAX_BATCH", default_value_t = crate::limits::DEFAULT_MAX_BATCH, global = true,
          value_parser = clap::value_parser!(u16).range(1..=1024).map(usize::from))]
    pub max_batch: usize,
    /// Micro-batching: how long a request waits for others to share its batch, in ms (0: off)
    /// [default: 2; 0 on Lambda, where an instance serves one request at a time, so no
    /// company can come].
    #[arg(long, env = "BATCH_WINDOW_MS", global = true, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub batch_window_ms: Option<u64>,
    /// Requests that may wait for the model; more get 503 + Retry-After instead of queueing without bound.
    #[arg(long, env = "MAX_QUEUED", default_value_t = crate::limits::DEFAULT_MAX_QUEUED, global = true,
          value_parser = clap::value_parser!(u32).range(1..=100_000).map(|n| n as usize))]
    pub max_queued: usize,
    /// Largest picture, in pixels (width × height), refused before decoding.
    #[arg(long, env = "MAX_PIXELS", default_value_t = crate::decode::DEFAULT_MAX_PIXELS, global = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pixels: u64,
}

/// Who may call the API.
#[derive(Args, Debug, Clone)]
pub struct AccessSettings {
    /// Require this API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`) on
    /// classifying and /model; at least 16 characters. Prefer the env var: a
    /// flag is visible to other users in `ps`.
    #[arg(long, env = "CATDOG_API_KEY", global = true, hide_env_values = true, value_parser = parse_api_key)]
    pub api_key: Option<Secret>,
    /// Web origins allowed to call the API from a browser (CORS), comma-separated,
    /// e.g. `https://app.example.com`; `*` for any [default: none, CORS off].
    #[arg(long, env = "CATDOG_CORS_ORIGINS", global = true, value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,
}

/// Fetching models: S3 transfer and retries.
#[derive(Args, Debug, Clone)]
pub struct FetchSettings {
    /// Parallel ranged GETs of an S3 model (1 = one plain GET).
    #[arg(long, env = "CATDOG_S3_CONCURRENCY", default_value_t = source::S3_CONCURRENCY, global = true,
          value_parser = clap::value_parser!(u16).range(1..=256).map(usize::from))]
    pub s3_concurrency: usize,
    /// Seconds to wait for S3 bytes that do not come before the read fails (and is retried).
    #[arg(long, env = "CATDOG_S3_READ_TIMEOUT_S", default_value_t = 30.0, global = true, value_parser = parse_timeout_s)]
    pub s3_read_timeout_s: f64,
    /// S3 endpoint (MinIO, moto, …): path-style addressing is then used. The AWS SDK's own variable.
    #[arg(long, env = "AWS_ENDPOINT_URL_S3", global = true, value_parser = parse_url)]
    pub s3_endpoint: Option<String>,
    /// Folder remote models are written into as they download, then mapped
    /// from (`/tmp` on Lambda: size the function's EphemeralStorage to the model)
    /// [default: the system's temporary folder].
    #[arg(long, env = "CATDOG_DOWNLOAD_DIR", global = true)]
    pub download_dir: Option<PathBuf>,
    /// Tries of a model fetch that failed for a reason that may pass (Lambda init; `serve` retries without end).
    #[arg(long, env = "CATDOG_FETCH_ATTEMPTS", default_value_t = 4, global = true,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub fetch_attempts: u32,
    /// First pause between fetch tries, in ms (doubling, at most a minute).
    #[arg(long, env = "CATDOG_RETRY_PAUSE_MS", default_value_t = 500, global = true,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub retry_pause_ms: u64,
}

/// Where `catdog serve` (and the notebook) listens.
#[derive(Args, Debug, Clone)]
pub struct ServeSettings {
    #[arg(long, env = "HOST", default_value = "127.0.0.1", global = true)]
    pub host: String,
    /// Port (0: any free one).
    #[arg(long, env = "PORT", default_value_t = 8080, global = true)]
    pub port: u16,
}

/// A public HTTPS URL through ngrok, and who may use it.
#[derive(Args, Debug, Clone)]
pub struct TunnelSettings {
    /// Also serve the router on a public ngrok URL.
    #[arg(long, env = "CATDOG_NGROK", global = true)]
    pub ngrok: bool,
    /// ngrok authtoken (https://dashboard.ngrok.com/get-started/your-authtoken).
    #[arg(long = "ngrok-authtoken", env = "NGROK_AUTHTOKEN", hide_env_values = true, global = true, value_parser = parse_secret)]
    pub authtoken: Option<Secret>,
    /// Reserved ngrok domain to use.
    #[arg(long = "ngrok-domain", env = "NGROK_DOMAIN", global = true)]
    pub domain: Option<String>,
    /// Require HTTP basic auth, `user:password` (password 8–128 chars); repeat or comma-separate.
    #[arg(long = "ngrok-basic-auth", env = "NGROK_BASIC_AUTH", value_delimiter = ',', hide_env_values = true,
          global = true, value_parser = parse_basic_auth)]
    pub basic_auth: Vec<BasicAuth>,
    /// Require login with this OAuth provider (google, github, microsoft, …).
    #[arg(long = "ngrok-oauth", env = "NGROK_OAUTH_PROVIDER", global = true)]
    pub oauth_provider: Option<String>,
    /// With --ngrok-oauth: only these emails.
    #[arg(
        long = "ngrok-oauth-allow-email",
        env = "NGROK_OAUTH_ALLOW_EMAILS",
        value_delimiter = ',',
        global = true,
        requires = "oauth_provider"
    )]
    pub oauth_allow_emails: Vec<String>,
    /// With --ngrok-oauth: only these email domains.
    #[arg(
        long = "ngrok-oauth-allow-domain",
        env = "NGROK_OAUTH_ALLOW_DOMAINS",
        value_delimiter = ',',
        global = true,
        requires = "oauth_provider"
    )]
    pub oauth_allow_domains: Vec<String>,
    /// Only clients from these networks (CIDR).
    #[arg(long = "ngrok-allow-cidr", env = "NGROK_ALLOW_CIDRS", value_delimiter = ',', global = true, value_parser = parse_cidr)]
    pub allow_cidrs: Vec<String>,
    /// Refuse clients from these networks (CIDR).
    #[arg(long = "ngrok-deny-cidr", env = "NGROK_DENY_CIDRS", value_delimiter = ',', global = true, value_parser = parse_cidr)]
    pub deny_cidrs: Vec<String>,
    /// Seconds to wait for ngrok before giving up (no network: fails at once).
    #[arg(long = "ngrok-timeout-s", env = "NGROK_TIMEOUT_S", default_value_t = 10.0, global = true, value_parser = parse_timeout_s)]
    pub connect_timeout_s: f64,
}

/// The process: ONNX Runtime, caches, logs, the Lambda environment, the demo photos.
#[derive(Args, Debug, Clone)]
pub struct ProcessSettings {
    /// Path of libonnxruntime.so [default: next to the binary, then where `make setup` put it].
    #[arg(long = "ort-lib", env = "ORT_DYLIB_PATH", global = true)]
    pub ort_lib: Option<PathBuf>,
    /// catdog's cache: the default model and the ONNX Runtime library `make setup` installs
    /// [default: $XDG_CACHE_HOME/catdog or ~/.cache/catdog].
    #[arg(long = "cache-dir", env = "CATDOG_CACHE", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Log format: `text` or `json` (default: json on Lambda, text elsewhere).
    #[arg(long, env = "LOG_FORMAT", global = true, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info` or `catdog=debug` (tracing's EnvFilter syntax).
    #[arg(long = "log", env = "RUST_LOG", global = true)]
    pub log_filter: Option<String>,
    /// Write each request's figures to stdout as a CloudWatch Embedded Metric
    /// Format line, true/false [default: on Lambda, where /metrics cannot add up
    /// instances; off elsewhere].
    #[arg(long, env = "CATDOG_EMF", global = true)]
    pub emf: Option<bool>,
    /// Set by AWS Lambda: run as its bootstrap.
    #[arg(long, env = "AWS_LAMBDA_RUNTIME_API", hide = true, global = true)]
    pub lambda_runtime_api: Option<String>,
    /// Read by lambda_http; catdog sets it to `true` on Lambda unless given.
    #[arg(
        long,
        env = "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH",
        hide = true,
        global = true
    )]
    pub lambda_ignore_stage: Option<String>,
    /// Folder of photos the notebook shows [default: $CATDOG_DATA/catsdogs/test, then ../shared/data/catsdogs/test].
    #[arg(long, env = "CATDOG_PHOTOS", global = true)]
    pub photos: Option<PathBuf>,
    /// The shared data folder (photos, models) beside the checkout.
    #[arg(long = "data-dir", env = "CATDOG_DATA", global = true)]
    pub data_dir: Option<PathBuf>,
}

/// A secret value (API key, token, password): never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

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

/// The settings could not be read (a bad value, or a missing one).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

/// Only the settings, no command: what hosts without a command line read.
#[derive(Parser, Debug)]
#[command(name = "catdog")]
struct EnvOnly {
    #[command(flatten)]
    settings: Settings,
}

impl Cli {
    /// The command line and the environment, checked; exits with clap's
    /// message (status 2) on a bad value, on a flag that means nothing to
    /// the subcommand, or after printing --help.
    pub fn from_process() -> Self {
        Self::try_from_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// [`Cli::from_process`] for a given `argv` (its first item is the program).
    pub fn try_from_args<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let (cli, matches, mut command) = parse_matches::<Cli, _, _>(argv)?;
        if let (Some(what), Some((name, sub))) = (&cli.command, matches.subcommand()) {
            check_flags_apply(what, name, &matches, sub, &mut command)?;
        }
        Ok(cli)
    }
}

impl Command {
    /// The groups of settings that mean something to this command. The
    /// flags are global so that one `Settings` type reads every host's
    /// environment; a flag of another group given on the command line is
    /// refused (`catdog predict --ngrok-basic-auth …`), never quietly ignored.
    /// The match is exhaustive: a new command has to say which apply.
    fn setting_groups(&self) -> Vec<clap::Id> {
        let model = ModelSettings::group_id();
        let limits = LimitSettings::group_id();
        let access = AccessSettings::group_id();
        let fetch = FetchSettings::group_id();
        let serve = ServeSettings::group_id();
        let tunnel = TunnelSettings::group_id();
        let process = ProcessSettings::group_id();
        let groups = match self {
            Command::Serve => vec![model, limits, access, fetch, serve, tunnel, process],
            Command::Lambda => vec![model, limits, access, fetch, process],
            Command::Predict { .. } | Command::Eval { .. } | Command::Finetune(_) => {
                vec![model, limits, fetch, process]
            }
            Command::Upload { .. } => vec![model, fetch, process],
        };
        groups.into_iter().flatten().collect()
    }
}

/// Every group of settings (see [`Command::setting_groups`]).
fn all_setting_groups() -> Vec<clap::Id> {
    [
        ModelSettings::group_id(),
        LimitSettings::group_id(),
        AccessSettings::group_id(),
        FetchSettings::group_id(),
        ServeSettings::group_id(),
        TunnelSettings::group_id(),
        ProcessSettings::group_id(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Refuses a flag given on the command line whose group means nothing to
/// the subcommand `name` (a value from the environment is ambient, not a
/// request, and stays allowed).
fn check_flags_apply(
    what: &Command,
    name: &str,
    top: &clap::ArgMatches,
    sub: &clap::ArgMatches,
    command: &mut clap::Command,
) -> Result<(), clap::Error> {
    use clap::parser::ValueSource;
    let allowed = what.setting_groups();
    let refused: Vec<clap::Id> = command
        .get_groups()
        .filter(|g| all_setting_groups().contains(g.get_id()) && !allowed.contains(g.get_id()))
        .flat_map(|g| g.get_args().cloned().collect::<Vec<_>>())
        .collect();
    for id in refused {
        let given = [top, sub]
            .iter()
            .any(|m| m.value_source(id.as_str()) == Some(ValueSource::CommandLine));
        if given {
            let flag = command
                .get_arguments()
                .find(|a| a.get_id() == &id)
                .and_then(|a| a.get_long())
                .unwrap_or(id.as_str())
                .to_string();
            return Err(command.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("--{flag} means nothing to `catdog {name}`; leave it out (see `catdog {name} --help`)"),
            ));
        }
    }
    Ok(())
}

/// Parses `argv` with the environment, an empty variable counting as unset
/// (clap would take it as an empty value, and refuse it).
fn parse<P: Parser, I, T>(argv: I) -> Result<P, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    parse_matches(argv).map(|(parsed, _, _)| parsed)
}

/// [`parse`], also giving the matches and the command they came from.
fn parse_matches<P: Parser, I, T>(
    argv: I,
) -> Result<(P, clap::ArgMatches, clap::Command), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut command = P::command();
    let empty: Vec<clap::Id> = command
        .get_arguments()
        .filter(|a| {
            a.get_env()
                .is_some_and(|name| std::env::var_os(name).is_some_and(|v| v.is_empty()))
        })
        .map(|a| a.get_id().clone())
        .collect();
    for id in empty {
        command = command.mut_arg(id, |a| a.env(None::<&str>));
    }
    let matches = command.clone().try_get_matches_from(argv)?;
    let parsed = P::from_arg_matches(&matches)?;
    Ok((parsed, matches, command))
}

impl Settings {
    /// The settings from the environment variables alone, with the same
    /// parsing and checks as the command line (for the notebook).
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_args(std::iter::empty::<&str>())
    }

    /// The settings from flags (and the environment), as `catdog` reads them.
    pub fn from_args<I, T>(args: I) -> Result<Self, SettingsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let argv = std::iter::once(std::ffi::OsString::from("catdog"))
            .chain(args.into_iter().map(Into::into));
        parse::<EnvOnly, _, _>(argv)
            .map(|e| e.settings)
            .map_err(|e| SettingsError(e.render().to_string().trim_end().to_string()))
    }

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

    /// Whether requests' figures go out as CloudWatch EMF lines (see [`ProcessSettings::emf`]).
    pub fn emf(&self) -> bool {
        self.process.emf.unwrap_or_else(|| self.on_lambda())
    }

    /// catdog's cache folder (see [`ProcessSettings::cache_dir`]).
    pub fn cache_dir(&self) -> PathBuf {
        self.process
            .cache_dir
            .clone()
            .unwrap_or_else(default_cache_dir)
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
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            threads: self.model.threads.map(usize::from),
            // Pre-packed weights cost a transient copy at load (fp32 VGG16:
            // +0.5–1.0 s of cold start, peak +120 MB) and 4 clients get 9–11% more throughput (ONNX
            // Runtime repacks a 411 MB fc1 for every batch otherwise): worth it
            // for a server; on Lambda (one request at a time, cold starts seen
            // by users) only for quantized models, which need it.
            prepack: self
                .model
                .prepack
                .or_else(|| (!self.on_lambda()).then_some(true)),
            zero_copy: self.model.zero_copy.unwrap_or(true),
            ort_library: self.process.ort_lib.clone(),
            cache_dir: self.cache_dir(),
        }
    }

    /// How models are fetched from S3.
    pub fn fetch_options(&self) -> FetchOptions {
        FetchOptions {
            s3_concurrency: self.fetch.s3_concurrency,
            s3_read_timeout: Duration::from_secs_f64(self.fetch.s3_read_timeout_s),
            s3_endpoint: self.fetch.s3_endpoint.clone(),
            download_dir: self
                .fetch
                .download_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
            retry: self.retry_policy(),
        }
    }

    /// Retries of a fetch that may pass (bounded: Lambda init, the CLI).
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.fetch.fetch_attempts,
            first_pause: Duration::from_millis(self.fetch.retry_pause_ms),
            max_pause: Duration::from_secs(60),
        }
    }

    /// The request limits.
    pub fn limits(&self) -> Limits {
        let l = &self.limits;
        Limits {
            max_body_bytes: l.max_body_bytes,
            max_batch: l.max_batch,
            decode: DecodeLimits {
                max_pixels: l.max_pixels,
                ..DecodeLimits::default()
            },
            batching: BatchPolicy {
                window: Duration::from_millis(l.batch_window_ms.unwrap_or(if self.on_lambda() {
                    0
                } else {
                    crate::limits::DEFAULT_BATCH_WINDOW_MS
                })),
                max_pictures: l.max_batch,
                max_queued: l.max_queued,
            },
        }
    }

    /// API key and CORS, as the router applies them (the values were
    /// checked when parsed; this only builds them).
    pub fn access(&self) -> Result<Access, access::AccessError> {
        Access::new(
            self.access.api_key.as_ref().map(Secret::expose),
            &self.access.cors_origins,
        )
    }

    /// `host:port` to bind.
    pub fn bind_address(&self) -> String {
        let ServeSettings { host, port } = &self.serve;
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }

    /// The folder of photos the notebook shows: `--photos`, else
    /// `$CATDOG_DATA/catsdogs/test`, else the shared data folder beside the
    /// checkout (tried from the notebook folder and the repository root).
    pub fn photo_candidates(&self) -> Vec<PathBuf> {
        if let Some(p) = &self.process.photos {
            return vec![p.clone()];
        }
        let mut out: Vec<PathBuf> = self
            .process
            .data_dir
            .iter()
            .map(|d| d.join("catsdogs/test"))
            .collect();
        out.push(PathBuf::from("../../shared/data/catsdogs/test"));
        out.push(PathBuf::from("../shared/data/catsdogs/test"));
        out
    }
}

/// `$XDG_CACHE_HOME/catdog` (or the platform's cache folder), as `scripts/setup.sh` uses.
pub fn default_cache_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("catdog")
}

fn parse_model_uri(s: &str) -> Result<String, String> {
    s.parse::<source::ModelUri>().map_err(|e| e.to_string())?;
    Ok(s.trim().to_string())
}

fn parse_sha256(s: &str) -> Result<String, String> {
    source::normalize_sha256(s).map_err(|e| e.to_string())
}

fn parse_labels(s: &str) -> Result<Labels, String> {
    contract::parse_labels(s)
        .map(Labels)
        .map_err(|e| e.to_string())
}

fn parse_model_name(s: &str) -> Result<String, String> {
    crate::model::contract::parse_name(s).map_err(|e| format!("MODEL_NAME: {e}"))
}

fn parse_preprocessing(s: &str) -> Result<Preprocessing, String> {
    s.parse::<Preprocessing>().map_err(|e| e.to_string())
}

/// A number within `range`; `what` names it in the refusal.
fn number_in<T>(s: &str, range: impl std::ops::RangeBounds<T>, what: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd,
{
    match s.trim().parse::<T>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not {what}")),
    }
}

fn parse_probability(s: &str) -> Result<f32, String> {
    number_in(s, 0.0..=1.0, "a probability between 0 and 1")
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    number_in(s, 0.0..=1.0, "a fraction between 0 and 1")
}

fn parse_timeout_s(s: &str) -> Result<f64, String> {
    number_in(
        s,
        f64::MIN_POSITIVE..=3600.0,
        "a number of seconds between 0 and 3600",
    )
}

fn parse_url(s: &str) -> Result<String, String> {
    match reqwest::Url::parse(s.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(s.trim().to_string()),
        _ => Err(format!("{s:?} is not an http(s) URL")),
    }
}

fn parse_secret(s: &str) -> Result<Secret, String> {
    Ok(Secret(s.trim().to_string()))
}

fn parse_api_key(s: &str) -> Result<Secret, String> {
    access::check_key(s).map_err(|e| e.to_string())?;
    Ok(Secret(s.trim().to_string()))
}

fn parse_origin(s: &str) -> Result<String, String> {
    access::check_origin(s).map_err(|e| e.to_string())?;
    Ok(s.trim().to_string())
}

/// Parses a `user:password` credential (ngrok wants 8–128 character passwords).
pub fn parse_basic_auth(s: &str) -> Result<BasicAuth, String> {
    let (user, pass) = s
        .trim()
        .split_once(':')
        .ok_or("basic auth must be user:password")?;
    if user.is_empty() || !(8..=128).contains(&pass.len()) {
        return Err("basic auth needs a user and a password of 8 to 128 characters".into());
    }
    Ok(BasicAuth {
        user: user.to_string(),
        password: Secret(pass.to_string()),
    })
}

/// Checks a CIDR block (`10.0.0.0/8`, `2001:db8::/32`).
pub fn parse_cidr(cidr: &str) -> Result<String, String> {
    let cidr = cidr.trim();
    let (addr, bits) = cidr
        .split_once('/')
        .ok_or_else(|| format!("{cidr:?} is not a CIDR"))?;
    let ip: std::net::IpAddr = addr
        .parse()
        .map_err(|_| format!("{cidr:?} is not a CIDR"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if bits.parse::<u8>().ok().filter(|b| *b <= max).is_none() {
        return Err(format!("{cidr:?} has a bad prefix length"));
    }
    Ok(cidr.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_from_args(std::iter::once("catdog").chain(args.iter().copied()))
    }

    #[test]
    fn a_flag_applies_only_to_the_commands_it_means_something_to() {
        let refused = |args: &[&str], flag: &str| {
            let e = cli(args).expect_err(&format!("{args:?} was accepted"));
            assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict, "{e}");
            assert!(
                e.to_string()
                    .contains(&format!("--{flag} means nothing to")),
                "{e}"
            );
        };
        refused(
            &["predict", "--ngrok-basic-auth", "user:password1", "a.jpg"],
            "ngrok-basic-auth",
        );
        refused(
            &["--ngrok-basic-auth", "user:password1", "predict", "a.jpg"],
            "ngrok-basic-auth",
        );
        refused(&["predict", "--port", "9000", "a.jpg"], "port");
        refused(&["eval", "--api-key", "0123456789abcdef", "dir"], "api-key");
        refused(
            &["upload", "--max-batch", "3", "--to", "s3://b/k"],
            "max-batch",
        );
        refused(&["lambda", "--ngrok"], "ngrok");
        // …and each is taken where it means something.
        cli(&[
            "serve",
            "--ngrok-basic-auth",
            "user:password1",
            "--port",
            "9000",
        ])
        .unwrap();
        cli(&[
            "lambda",
            "--api-key",
            "0123456789abcdef",
            "--max-batch",
            "3",
        ])
        .unwrap();
        cli(&[
            "predict",
            "--model",
            "m.onnx",
            "--max-pixels",
            "1000",
            "a.jpg",
        ])
        .unwrap();
        cli(&[
            "upload",
            "--model",
            "m.onnx",
            "--s3-endpoint",
            "http://127.0.0.1:1",
            "--to",
            "s3://b/k",
        ])
        .unwrap();
    }

    fn parse(args: &[&str]) -> Result<Settings, SettingsError> {
        Settings::from_args(args.iter().copied())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = parse(&[]).unwrap();
        let l = s.limits();
        assert_eq!(l.max_body_bytes, 6 * 1024 * 1024);
        assert_eq!(l.max_batch, 16);
        assert_eq!(l.batching.window, Duration::from_millis(2));
        assert_eq!(s.serve.port, 8080);
        assert_eq!(s.retry_policy().attempts, 4);
        assert!(s.session_options().zero_copy);
    }

    #[test]
    fn lambda_does_not_wait_for_company_that_cannot_come() {
        let lambda = parse(&["--lambda-runtime-api", "127.0.0.1:9001"]).unwrap();
        assert_eq!(lambda.limits().batching.window, Duration::ZERO);
        assert_eq!(
            lambda.session_options().prepack,
            None,
            "Lambda: quantized models only"
        );
        assert_eq!(parse(&[]).unwrap().session_options().prepack, Some(true));
        assert!(lambda.emf(), "Lambda: figures as EMF lines");
        assert!(!parse(&[]).unwrap().emf(), "elsewhere: /metrics only");
        assert!(
            !parse(&["--lambda-runtime-api", "127.0.0.1:9001", "--emf", "false"])
                .unwrap()
                .emf()
        );
        let asked = parse(&[
            "--lambda-runtime-api",
            "127.0.0.1:9001",
            "--batch-window-ms",
            "5",
        ])
        .unwrap();
        assert_eq!(
            asked.limits().batching.window,
            Duration::from_millis(5),
            "an explicit window is kept"
        );
        assert_eq!(
            parse(&["--batch-window-ms", "0"])
                .unwrap()
                .limits()
                .batching
                .window,
            Duration::ZERO
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for (args, says) in [
            (&["--model-sha256", "abc"][..], "64 hex digits"),
            (&["--model-name", "a/b"][..], "MODEL_NAME"),
            (&["--api-key", "short"][..], "at least 16 characters"),
            (&["--preprocessing", "keras"][..], "unknown preset"),
            (&["--labels", "cat,dog"][..], "JSON array"),
            (&["--neither-below", "2"][..], "between 0 and 1"),
            (&["--max-batch", "0"][..], "--max-batch"),
            (&["--ngrok-basic-auth", "a:b"][..], "8 to 128"),
            (&["--ngrok-allow-cidr", "10.0.0.0/40"][..], "prefix length"),
            (
                &["--cors-origins", "https://a.example/"][..],
                "not an origin",
            ),
            (&["--ngrok-oauth-allow-email", "a@b.c"][..], "--ngrok-oauth"),
            (&["--model", "ftp://x/y"][..], "invalid model URI"),
        ] {
            let err = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} accepted"))
                .to_string();
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = parse(&[
            "--api-key",
            "correct horse battery staple",
            "--ngrok-basic-auth",
            "ann:longpassword",
            "--ngrok-authtoken",
            "tok-123",
        ])
        .unwrap();
        let shown = format!("{s:?}");
        for secret in ["correct horse", "longpassword", "tok-123"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert_eq!(s.tunnel.basic_auth[0].user, "ann");
        assert_eq!(s.tunnel.basic_auth[0].password.expose(), "longpassword");
    }

    #[test]
    fn comma_lists_and_ipv6_hosts() {
        let s = parse(&[
            "--ngrok-allow-cidr",
            "10.0.0.0/8,2001:db8::/32",
            "--ngrok-oauth",
            "github",
            "--ngrok-oauth-allow-domain",
            "example.com",
            "--host",
            "::1",
            "--port",
            "0",
        ])
        .unwrap();
        assert_eq!(s.tunnel.allow_cidrs, ["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(s.tunnel.oauth_allow_domains, ["example.com"]);
        assert_eq!(s.bind_address(), "[::1]:0");
    }
}
