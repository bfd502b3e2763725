//! The `catdog` binary: the Lambda bootstrap (when `AWS_LAMBDA_RUNTIME_API` is
//! set), `catdog serve` and `catdog predict`, all on the same router/model code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use catdog::app::{load_classifier, load_classifier_with_retries, ModelConfig, RetryPolicy};
use catdog::decode::DecodeLimits;
use catdog::model::LoadOptions;
use catdog::serve::LocalServer;
use catdog::state::{AppState, Limits, ModelSlot};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "catdog",
    version,
    about = "Cat or dog? An ONNX image classifier for AWS Lambda, a local server and the command line."
)]
struct Cli {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    access: AccessArgs,
    /// Log format: `text` or `json` (default: json on Lambda, text elsewhere).
    #[arg(long, env = "LOG_FORMAT", global = true)]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the upload page and the HTTP API on a local port.
    Serve {
        #[arg(long, env = "HOST", default_value = "127.0.0.1")]
        host: String,
        #[arg(long, env = "PORT", default_value_t = 8080)]
        port: u16,
        #[command(flatten)]
        ngrok: NgrokArgs,
    },
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
    Finetune {
        /// Base classifier: s3://…, https://… or a path (its last layer must be Gemm/MatMul(+Add)).
        #[arg(long)]
        base: String,
        /// Expected SHA-256 of the base.
        #[arg(long)]
        base_sha256: Option<String>,
        /// Folder with train/<label>/* (and optionally valid/<label>/*).
        #[arg(long)]
        data: PathBuf,
        /// Where to write the fine-tuned model.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 5)]
        epochs: usize,
        #[arg(long, default_value_t = 1e-4)]
        lr: f32,
        #[arg(long, default_value_t = 10)]
        batch: usize,
        /// Seed for weight initialisation and shuffling (same seed, same model).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// A public HTTPS URL through ngrok (token from NGROK_AUTHTOKEN), and who may use it.
#[derive(Args, Debug, Clone)]
struct NgrokArgs {
    /// Also serve the router on a public ngrok URL.
    #[arg(long, env = "CATDOG_NGROK")]
    ngrok: bool,
    /// Reserved ngrok domain to use.
    #[arg(long, env = "NGROK_DOMAIN")]
    ngrok_domain: Option<String>,
    /// Require HTTP basic auth, `user:password` (password 8–128 chars); repeat or comma-separate.
    #[arg(long, env = "NGROK_BASIC_AUTH", value_delimiter = ',')]
    ngrok_basic_auth: Vec<String>,
    /// Require login with this OAuth provider (google, github, microsoft, …).
    #[arg(long, env = "NGROK_OAUTH_PROVIDER")]
    ngrok_oauth: Option<String>,
    /// With --ngrok-oauth: only these emails.
    #[arg(long, env = "NGROK_OAUTH_ALLOW_EMAILS", value_delimiter = ',')]
    ngrok_oauth_allow_email: Vec<String>,
    /// With --ngrok-oauth: only these email domains.
    #[arg(long, env = "NGROK_OAUTH_ALLOW_DOMAINS", value_delimiter = ',')]
    ngrok_oauth_allow_domain: Vec<String>,
    /// Only clients from these networks (CIDR).
    #[arg(long, env = "NGROK_ALLOW_CIDRS", value_delimiter = ',')]
    ngrok_allow_cidr: Vec<String>,
    /// Refuse clients from these networks (CIDR).
    #[arg(long, env = "NGROK_DENY_CIDRS", value_delimiter = ',')]
    ngrok_deny_cidr: Vec<String>,
}

impl NgrokArgs {
    fn config(&self) -> Result<catdog::tunnel::TunnelConfig, catdog::tunnel::TunnelError> {
        Ok(catdog::tunnel::TunnelConfig {
            domain: self.ngrok_domain.clone(),
            basic_auth: self
                .ngrok_basic_auth
                .iter()
                .map(|s| catdog::tunnel::TunnelConfig::parse_basic_auth(s))
                .collect::<Result<_, _>>()?,
            oauth_provider: self.ngrok_oauth.clone(),
            oauth_allow_emails: self.ngrok_oauth_allow_email.clone(),
            oauth_allow_domains: self.ngrok_oauth_allow_domain.clone(),
            allow_cidrs: self.ngrok_allow_cidr.clone(),
            deny_cidrs: self.ngrok_deny_cidr.clone(),
            ..Default::default()
        })
    }
}

#[derive(Args, Debug)]
struct ModelArgs {
    /// Model location: s3://bucket/key, https://…, or a file path [default: the ImageNet VGG16 of the ONNX Model Zoo].
    #[arg(long = "model", env = "MODEL_URI", global = true)]
    uri: Option<String>,
    /// Expected SHA-256 of the model; a mismatch is refused.
    #[arg(long = "model-sha256", env = "MODEL_SHA256", global = true)]
    sha256: Option<String>,
    /// Class names as a JSON array, overriding the model's `labels` metadata.
    #[arg(long = "labels", env = "MODEL_LABELS", global = true)]
    labels: Option<String>,
    /// `caffe`, `torch` or a JSON object, overriding the model's `preprocessing` metadata.
    #[arg(long = "preprocessing", env = "MODEL_PREPROCESSING", global = true)]
    preprocessing: Option<String>,
    /// ImageNet models: answer `neither` below this summed cat+dog probability.
    #[arg(long, env = "NEITHER_BELOW", global = true)]
    neither_below: Option<f32>,
    /// ONNX Runtime threads [default: the cores this process may use].
    #[arg(long, env = "CATDOG_THREADS", global = true)]
    threads: Option<usize>,
    /// ONNX Runtime weight pre-packing, true/false [default: on for quantized models only].
    #[arg(long, env = "CATDOG_PREPACK", global = true)]
    prepack: Option<bool>,
    /// Hand the model's weights to ONNX Runtime in place instead of letting it
    /// parse and copy them, true/false [default: true; false is the plain load].
    #[arg(long, env = "CATDOG_ZERO_COPY", global = true)]
    zero_copy: Option<bool>,
    /// Path of libonnxruntime.so [default: ORT_DYLIB_PATH, then next to the binary].
    #[arg(long = "ort-lib", global = true)]
    ort_lib: Option<PathBuf>,
    /// Where to download the default VGG16 from (a mirror); verified by its known SHA-256.
    #[arg(long, env = "DEFAULT_MODEL_URL", global = true)]
    default_model_url: Option<String>,
}

#[derive(Args, Debug)]
struct AccessArgs {
    /// Require this API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`) on
    /// every route but the page and /health; at least 16 characters. Prefer the
    /// env var: a flag is visible to other users in `ps`.
    #[arg(long, env = "CATDOG_API_KEY", global = true, hide_env_values = true)]
    api_key: Option<String>,
    /// Web origins allowed to call the API from a browser (CORS), comma-separated,
    /// e.g. `https://app.example.com`; `*` for any [default: none, CORS off].
    #[arg(
        long,
        env = "CATDOG_CORS_ORIGINS",
        global = true,
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
}

#[derive(Args, Debug)]
struct LimitArgs {
    /// Largest request body in bytes (Lambda's synchronous limit is 6 MB).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = catdog::state::DEFAULT_MAX_BODY_BYTES, global = true)]
    max_body_bytes: usize,
    /// Most pictures in one request.
    #[arg(long, env = "MAX_BATCH", default_value_t = catdog::state::DEFAULT_MAX_BATCH, global = true)]
    max_batch: usize,
    /// Micro-batching: how long a request waits for others to share its batch, in ms (0: off).
    #[arg(long, env = "BATCH_WINDOW_MS", default_value_t = catdog::batcher::DEFAULT_BATCH_WINDOW_MS, global = true)]
    batch_window_ms: u64,
    /// Requests that may wait for the model; more get 503 + Retry-After instead of queueing without bound.
    #[arg(long, env = "MAX_QUEUED", default_value_t = catdog::batcher::DEFAULT_MAX_QUEUED, global = true)]
    max_queued: usize,
    /// Largest picture, in pixels (width × height), refused before decoding.
    #[arg(long, env = "MAX_PIXELS", default_value_t = catdog::decode::DEFAULT_MAX_PIXELS, global = true)]
    max_pixels: u64,
}

impl Cli {
    fn model_config(&self) -> ModelConfig {
        ModelConfig {
            uri: self.model.uri.clone(),
            sha256: self.model.sha256.clone().filter(|s| !s.is_empty()),
            default_url: self.model.default_model_url.clone(),
            cache_dir: None,
            load: LoadOptions {
                labels: self.model.labels.clone().filter(|s| !s.is_empty()),
                preprocessing: self.model.preprocessing.clone().filter(|s| !s.is_empty()),
                fallback_preprocessing: None,
                neither_below: self.model.neither_below,
                threads: self.model.threads,
                ort_library: self.model.ort_lib.clone(),
                prepack: self.model.prepack,
                zero_copy: self.model.zero_copy,
            },
        }
    }

    fn access(&self) -> Result<catdog::http::access::Access> {
        catdog::http::access::Access::new(self.access.api_key.as_deref(), &self.access.cors_origins)
            .context("access settings")
    }

    fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: self.limits.max_body_bytes,
            max_batch: self.limits.max_batch.max(1),
            decode: DecodeLimits {
                max_pixels: self.limits.max_pixels,
                ..DecodeLimits::default()
            },
            batching: catdog::batcher::BatchPolicy {
                window: std::time::Duration::from_millis(self.limits.batch_window_ms),
                max_pictures: self.limits.max_batch.max(1),
                max_queued: self.limits.max_queued.max(1),
            },
        }
    }
}

fn init_logging(format: Option<&str>, on_lambda: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let json = match format {
        Some(f) => f.eq_ignore_ascii_case("json"),
        None => on_lambda,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let on_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let command = match cli.command {
        Some(ref c) => c,
        None if on_lambda => &Command::Lambda,
        None => {
            eprintln!("catdog: say what to do: `catdog serve`, `catdog predict FILE…` (see `catdog --help`)");
            return ExitCode::from(2);
        }
    };
    if matches!(command, Command::Lambda)
        && std::env::var_os("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_none()
    {
        // The router is mounted at the root: an API Gateway stage ("/prod")
        // must not become part of the path. Set before any thread starts.
        std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true");
    }
    let level = if matches!(
        command,
        Command::Predict { .. }
            | Command::Finetune { .. }
            | Command::Eval { .. }
            | Command::Upload { .. }
    ) {
        "warn"
    } else {
        "info"
    };
    init_logging(cli.log_format.as_deref(), on_lambda, level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("catdog: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Lambda => run_lambda(&cli).await,
            Command::Serve { host, port, ngrok } => serve(&cli, host, *port, ngrok).await,
            Command::Predict { json, paths } => predict(&cli, *json, paths).await,
            Command::Upload { to } => {
                let Some(file) = cli.model.uri.as_deref() else { bail!("say which file to upload: --model FILE") };
                let p = catdog::model::publish::upload(std::path::Path::new(file), to).await?;
                eprintln!("upload: {} bytes in {} part(s) to {}", p.bytes, p.parts, p.uri);
                println!("MODEL_URI={}\nMODEL_SHA256={}", p.uri, p.sha256);
                Ok(ExitCode::SUCCESS)
            }
            Command::Eval { json, png, dir } => {
                let classifier = load_classifier(&cli.model_config()).await.context("loading the model")?;
                let batch = cli.limits().max_batch;
                let dir = dir.clone();
                let report = tokio::task::spawn_blocking(move || catdog::eval::evaluate(&classifier, &dir, batch)).await??;
                if *json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    print!("{}", report.table());
                }
                match catdog::plot::confusion_matrix(&report.labels, &report.predicted_labels, &report.confusion, png) {
                    Ok(()) => eprintln!("eval: confusion matrix written to {}", png.display()),
                    Err(e) => eprintln!("eval: could not write {}: {e}", png.display()),
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Finetune { base, base_sha256, data, out, epochs, lr, batch, seed } => {
                let cfg = catdog::finetune::FinetuneConfig {
                    base: base.clone(),
                    base_sha256: base_sha256.clone(),
                    data: data.clone(),
                    out: out.clone(),
                    train: catdog::finetune::train::TrainConfig { epochs: *epochs, lr: *lr, batch: *batch, seed: *seed },
                    preprocessing: cli.model.preprocessing.clone().filter(|s| !s.is_empty()),
                };
                let summary = catdog::finetune::finetune(&cfg).await?;
                let last = summary.history.last();
                eprintln!(
                    "finetune: wrote {} (labels {:?}, {} training pictures, {} skipped; final loss {:.4}, accuracy {:.1}%)",
                    out.display(),
                    summary.labels,
                    summary.train_images,
                    summary.skipped.len(),
                    last.map_or(f32::NAN, |s| s.loss),
                    last.map_or(f32::NAN, |s| s.accuracy * 100.0)
                );
                let png = out.with_extension("training.png");
                match catdog::plot::training_curves(&summary.history, &png) {
                    Ok(()) => eprintln!("finetune: training curves written to {}", png.display()),
                    Err(e) => eprintln!("finetune: could not write {}: {e}", png.display()),
                }
                println!("{}", serde_json::to_string(&summary)?);
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            if on_lambda {
                tracing::error!(error = format!("{e:#}"), "fatal");
            } else {
                eprintln!("catdog: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Lambda: load the model during the init phase, then hand the router to the runtime.
async fn run_lambda(cli: &Cli) -> Result<ExitCode> {
    let access = match cli.access() {
        Ok(a) => a,
        Err(e) => {
            report_init_error(&format!("{e:#}")).await;
            return Err(e);
        }
    };
    let classifier = match load_classifier_with_retries(
        &cli.model_config(),
        RetryPolicy::from_env(),
        |_, _, _| {},
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            report_init_error(&e.to_string()).await;
            return Err(e).context("loading the model during Lambda init");
        }
    };
    let app = catdog::router(AppState::ready(classifier, cli.limits()).with_access(access));
    lambda_http::run(app)
        .await
        .map_err(|e| anyhow::anyhow!("Lambda runtime: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Tells the Lambda service why init failed, so the invoke error names the cause.
async fn report_init_error(message: &str) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let url = format!("http://{api}/2018-06-01/runtime/init/error");
    let body = serde_json::json!({"errorMessage": message, "errorType": "Runtime.InitError"});
    let sent = reqwest::Client::new()
        .post(url)
        .header("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
        .json(&body)
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await;
    if let Err(e) = sent {
        tracing::warn!(error = %e, "could not report the init error to the Runtime API");
    }
}

/// `catdog serve`: listen at once, load the model in the background (503 until ready).
async fn serve(cli: &Cli, host: &str, port: u16, ngrok: &NgrokArgs) -> Result<ExitCode> {
    let state = AppState::loading(cli.limits()).with_access(cli.access()?);
    let app = catdog::router(state.clone());
    let bind = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut server =
        LocalServer::start(app.clone(), &bind).with_context(|| format!("listening on {bind}"))?;
    eprintln!(
        "catdog: serving on {} (upload page), POST /predict",
        server.url
    );

    // The tunnel serves the same router; its failure never stops the local server.
    let mut tunnel_task = None;
    if ngrok.ngrok {
        let config = ngrok.config()?;
        config.validate()?;
        let public_app = app.clone();
        tunnel_task = Some(tokio::spawn(async move {
            match catdog::tunnel::open(&config, public_app).await {
                Ok(t) => {
                    eprintln!(
                        "catdog: public URL {} ({})",
                        t.url,
                        config.describe().join(", ")
                    );
                    Some(t)
                }
                Err(e) => {
                    tracing::error!(error = %e, "no public URL; the local server keeps running");
                    eprintln!("catdog: {e}; serving locally only");
                    None
                }
            }
        }));
    }
    let cfg = cli.model_config();
    tokio::spawn(async move {
        // The same retry loop as Lambda's init, without its bound: failures
        // that may pass (S3 unreachable, object not there yet) are tried
        // again with doubling pauses up to a minute, answering 503 with the
        // reason meanwhile.
        let policy = RetryPolicy {
            attempts: u32::MAX,
            ..RetryPolicy::from_env()
        };
        let on_retry = |e: &catdog::app::LoadError, attempt: u32, pause: std::time::Duration| {
            state.set_model(ModelSlot::Retrying(format!(
                "{e} (try {attempt}; next in {:.1} s)",
                pause.as_secs_f64()
            )));
        };
        match load_classifier_with_retries(&cfg, policy, on_retry).await {
            Ok(c) => state.set_model(ModelSlot::Ready(std::sync::Arc::new(c))),
            Err(e) => {
                tracing::error!(error = %e, "model failed to load");
                state.set_model(ModelSlot::Failed(e.to_string()));
            }
        }
    });
    tokio::select! {
        r = server.wait() => r?,
        _ = shutdown_signal() => {}
    }
    if let Some(task) = tunnel_task {
        task.abort();
        if let Ok(Some(t)) = task.await {
            t.close();
        }
    }
    tokio::task::spawn_blocking(move || server.stop()).await??;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// `catdog predict`: prints one answer per file; unreadable files are reported and skipped.
async fn predict(cli: &Cli, json: bool, paths: &[PathBuf]) -> Result<ExitCode> {
    let files = catdog::files::collect(paths)?;
    if files.is_empty() {
        bail!(
            "no image files found (looked for {})",
            catdog::files::IMAGE_EXTENSIONS.join(", ")
        );
    }
    let classifier = load_classifier(&cli.model_config())
        .await
        .context("loading the model")?;
    let limits = cli.limits();
    let answers =
        tokio::task::spawn_blocking(move || catdog::files::classify(&classifier, &files, &limits))
            .await?
            .context("inference")?;
    let mut failures = 0usize;
    for a in answers {
        match a.outcome {
            Err(e) => {
                failures += 1;
                eprintln!("catdog: {}: {e}", a.path.display());
            }
            Ok((_, p)) if json => {
                let mut v = serde_json::to_value(&p)?;
                v["file"] = serde_json::Value::String(a.path.display().to_string());
                println!("{v}");
            }
            Ok((_, p)) => println!("{}\t{}\t{:.4}", a.path.display(), p.label, p.confidence),
        }
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
