//! The command-line hosts: `predict`, `eval`, `finetune` and `upload`, built
//! from the settings like every other host. They return what happened; the
//! binary prints it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;

use crate::aws::s3_client;
use crate::aws::SdkRetries;
use crate::checks;
use crate::eval::{EvalError, EvalReport};
use crate::files::{FileAnswer, FilesError};
use crate::finetune::{self, FinetuneConfig, FinetuneError, Progress, Summary};
use crate::http::state::AppState;
use crate::model::load::{self, LoadError};
use crate::model::publish::{self, PublishError, Published};
use crate::model::{Classifier, ModelError};
use crate::objects::location::split_s3_uri;
use crate::objects::store::ObjectStore;
use crate::objects::{ObjectWorker, Outcome, ResultsConfig};
use crate::settings::{FinetuneArgs, Settings};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("no image files found (looked for {})", crate::files::IMAGE_EXTENSIONS.join(", "))]
    NoFiles,
    #[error("loading the model: {0}")]
    Load(#[from] LoadError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Finetune(#[from] FinetuneError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("checks: {0}")]
    Checks(#[from] crate::checks::ChecksError),
    #[error("say which file to upload: --model FILE")]
    NoUploadFile,
    #[error("worker failed: {0}")]
    Worker(String),
    #[error("{0:?} is not s3://bucket/prefix")]
    BadS3Uri(String),
    #[error("listing {uri}: {failure}")]
    Listing {
        uri: String,
        failure: crate::objects::Failure,
    },
    #[error("no image objects under {0} (looked for keys ending in {exts})", exts = crate::files::IMAGE_EXTENSIONS.join(", "))]
    NoObjects(String),
}

async fn classifier(settings: &Settings) -> Result<Classifier, CommandError> {
    Ok(load::load_classifier_with_retries(
        &settings.model_spec().for_command(),
        settings.retry_policy(),
        |_, _, _| {},
    )
    .await?)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CommandError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CommandError::Worker(e.to_string()))
}

/// `catdog predict FILE|DIR…`: one answer per file; a file that is not a
/// usable picture gets its reason instead.
pub async fn predict(
    settings: &Settings,
    paths: &[PathBuf],
    explain: crate::files::Explain,
) -> Result<Vec<FileAnswer>, CommandError> {
    let files = crate::files::collect(paths)?;
    if files.is_empty() {
        return Err(CommandError::NoFiles);
    }
    let classifier = classifier(settings).await?;
    let limits = settings.request_limits();
    Ok(
        blocking(move || crate::files::classify_files(&classifier, &files, &limits, explain))
            .await??,
    )
}

/// `catdog predict s3://bucket/prefix/…`: every picture under each prefix
/// (listed page by page; the same file-name rule as a folder's, catdog's
/// own records left out), classified through the same worker as the Lambda
/// function's S3 events, `--object-concurrency` at a time, with a progress
/// bar. With `write_results`, their tags and records are written as the
/// function writes them; else nothing is written. Answers in listing order.
pub async fn predict_objects(
    settings: &Settings,
    uris: &[String],
    write_results: bool,
) -> Result<Vec<Outcome>, CommandError> {
    let fetch = settings.fetch_options();
    let store = ObjectStore::new(s3_client(&fetch.s3, SdkRetries::ThisPolicy).await);
    let results = if write_results {
        settings.results_config()
    } else {
        ResultsConfig {
            tags: false,
            record: false,
            ..settings.results_config()
        }
    };
    let mut objects = Vec::new();
    for uri in uris {
        let (bucket, prefix) =
            split_s3_uri(uri).ok_or_else(|| CommandError::BadS3Uri(uri.clone()))?;
        let before = objects.len();
        let mut token = None;
        loop {
            let (page, next) = store
                .list_page(bucket, prefix, token)
                .await
                .map_err(|failure| CommandError::Listing {
                    uri: uri.clone(),
                    failure,
                })?;
            objects.extend(page.into_iter().filter(|o| {
                let name = o.key.rsplit('/').next().unwrap_or("");
                crate::files::is_picture(Path::new(&o.key))
                    && !name.starts_with('.')
                    && !results.is_result_key(&o.key)
            }));
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        if objects.len() == before {
            return Err(CommandError::NoObjects(uri.clone()));
        }
    }
    let classifier = classifier(settings).await?;
    let state = AppState::ready(classifier, settings.request_limits(), Default::default());
    let worker = ObjectWorker::new(store, state.model_slot(), state.limits, results);
    let bar = indicatif::ProgressBar::new(objects.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} objects {elapsed} ({eta} left)",
        )
        .expect("a valid template"),
    );
    let outcomes = futures_util::stream::iter(objects)
        .map(|o| {
            let worker = worker.clone();
            let bar = bar.clone();
            async move {
                let outcome = worker.run(o).await;
                bar.inc(1);
                outcome
            }
        })
        .buffered(settings.objects.object_concurrency)
        .collect()
        .await;
    bar.finish_and_clear();
    Ok(outcomes)
}

/// `catdog eval DIR [--neither OTHERS]`: the model's scores on
/// `DIR/<label>/*`, and on OTHERS as its rejecting label.
pub async fn eval(
    settings: &Settings,
    dir: &Path,
    others: Option<&Path>,
) -> Result<EvalReport, CommandError> {
    let classifier = classifier(settings).await?;
    let limits = settings.request_limits();
    let dir = dir.to_path_buf();
    let others = others.map(Path::to_path_buf);
    Ok(
        blocking(move || crate::eval::evaluate(&classifier, &dir, others.as_deref(), &limits))
            .await??,
    )
}

/// A fine-tuned model as written, with its training curves.
#[derive(Debug, Clone)]
pub struct Finetuned {
    pub summary: Summary,
    pub model: PathBuf,
    /// The first `--data` as a local folder (a prefix's mirror): where its
    /// test/ photos are.
    pub data: PathBuf,
    /// The training curves' PNG beside the model (`MODEL.training.png`), or
    /// why it could not be drawn.
    pub curves: Result<PathBuf, crate::plot::PlotError>,
}

/// What `catdog finetune` did.
#[derive(Debug, Clone)]
pub enum FinetuneOutcome {
    /// A model was written, with its training curves.
    Written(Box<Finetuned>),
    /// `--cv K`: the candidate settings were measured; nothing was written.
    CrossValidated(finetune::cv::Report),
}

/// `catdog finetune`: a new head over a frozen base, written as one ONNX
/// file, and its training curves beside it; `progress` hears how it goes.
pub async fn finetune(
    settings: &Settings,
    args: &FinetuneArgs,
    progress: Arc<dyn Progress>,
) -> Result<FinetuneOutcome, CommandError> {
    let cfg = finetune_config(settings, args);
    let summary = match finetune::finetune(&cfg, progress).await? {
        finetune::Outcome::Written(summary) => summary,
        finetune::Outcome::CrossValidated(report) => {
            return Ok(FinetuneOutcome::CrossValidated(report))
        }
    };
    let png = args.out.with_extension("training.png");
    let curves = crate::plot::training_curves(&summary.history, &png).map(|()| png);
    let data = summary.data_folders.first().cloned().unwrap_or_default();
    Ok(FinetuneOutcome::Written(Box::new(Finetuned {
        summary: *summary,
        model: args.out.clone(),
        data,
        curves,
    })))
}

fn finetune_config(settings: &Settings, args: &FinetuneArgs) -> FinetuneConfig {
    let mut base = settings.model_spec().for_command();
    base.uri = Some(args.base.clone());
    base.sha256 = args.base_sha256.clone();
    let data_fetch = crate::finetune::config::DataFetch {
        fetch: settings.fetch_options(),
        mirrors: settings.cache_dir().join("data"),
        max_object_bytes: settings.request_limits().max_object_bytes,
    };
    FinetuneConfig {
        base,
        data: args.data.clone(),
        data_fetch,
        out: args.out.clone(),
        train: crate::finetune::train::TrainConfig {
            epochs: args.epochs,
            lr: args.lr,
            batch: args.batch,
            seed: args.seed,
            weight_decay: args.weight_decay,
            patience: args.patience,
            max_steps: args.max_steps,
            label_smoothing: args.label_smoothing as f32,
        },
        init: args.init,
        valid_fraction: args.valid_fraction,
        accept: crate::finetune::Acceptance {
            min_accuracy: args.min_accuracy,
            allow_weak: args.allow_weak,
        },
        augment: crate::finetune::Augment {
            mirror: args.mirror,
            crop: args.crop,
        },
        cv: args.cv,
        neither: (!args.no_neither).then(|| crate::finetune::NeitherConfig {
            label: args.neither_label.clone(),
            photos: args.neither.clone(),
            mode: args.neither_mode,
            fence: args.neither_fence,
        }),
    }
}

/// What `catdog upload` put into S3.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub model: Published,
    /// The checks recorded for it; `None` without `--checks`.
    pub(crate) checks: Option<UploadedChecks>,
}

impl Uploaded {
    /// What to tell the user, a line each: where the model and its checks
    /// went, the close calls, or that a deploy will fail without checks.
    pub fn report(&self) -> Vec<String> {
        let p = &self.model;
        let mut lines = vec![format!(
            "{} bytes in {} part(s) to {}",
            p.bytes, p.parts, p.uri
        )];
        match &self.checks {
            Some(c) => {
                lines.push(format!(
                    "{} picture(s) and the model's answers to them at {} \
                     (a deploy's PreTraffic hook compares the new version's answers with these)",
                    c.pictures, c.uri
                ));
                lines.extend(c.close_calls.iter().map(|n| format!("close call: {n}")));
            }
            None => lines.push(format!(
                "warning: no --checks pictures, so no answers were recorded for this model: \
                 a deploy of template.yaml will FAIL at its PreTraffic hook (it finds no checks \
                 for this model at {}{}). Record them with the same command and \
                 --checks PICTURES… (files or folders of known pictures)",
                p.uri,
                checks::ANSWERS_SUFFIX
            )),
        }
        lines
    }
}

/// The checks `catdog upload --checks` recorded and stored next to the model.
#[derive(Debug, Clone)]
pub(crate) struct UploadedChecks {
    /// The answers file, `s3://bucket/KEY.checks.json`.
    pub(crate) uri: String,
    pub(crate) pictures: usize,
    /// Pictures whose answer another CPU may change (see [`checks::record::close_calls`]).
    pub(crate) close_calls: Vec<String>,
}

/// `catdog upload --model FILE --to s3://… [--checks PICTURES…]`: the model,
/// then the pictures and the answers it gave them, next to it.
pub async fn upload(
    settings: &Settings,
    to: &str,
    pictures: &[PathBuf],
) -> Result<Uploaded, CommandError> {
    let file = settings
        .model
        .uri
        .as_deref()
        .ok_or(CommandError::NoUploadFile)?;
    // Answered before anything is sent: a picture the model cannot answer
    // stops the upload, rather than leaving a model without its checks.
    let recorded = if pictures.is_empty() {
        None
    } else {
        Some(record_checks(settings, pictures).await?)
    };
    let fetch = settings.fetch_options();
    let model = publish::upload(Path::new(file), to, &fetch).await?;
    let Some(recorded) = recorded else {
        return Ok(Uploaded {
            model,
            checks: None,
        });
    };
    let (bucket, key) =
        split_s3_uri(&model.uri).ok_or_else(|| CommandError::BadS3Uri(model.uri.clone()))?;
    let client = s3_client(&fetch.s3, SdkRetries::ThisPolicy).await;
    let uri = checks::persist::put(&client, bucket, key, &model.sha256, &recorded).await?;
    Ok(Uploaded {
        checks: Some(UploadedChecks {
            uri,
            pictures: recorded.len(),
            close_calls: checks::record::close_calls(&recorded),
        }),
        model,
    })
}

/// The model's answers to the pictures in `paths` (files or folders).
async fn record_checks(
    settings: &Settings,
    paths: &[PathBuf],
) -> Result<Vec<checks::Recorded>, CommandError> {
    let files = crate::files::collect(paths)?;
    if files.is_empty() {
        return Err(CommandError::NoFiles);
    }
    // The deployed function reads the model as it is (template.yaml gives it
    // no labels, preprocessing or threshold of its own): record it so too,
    // whatever this shell's MODEL_LABELS and the like say.
    let mut spec = settings.model_spec().for_command();
    spec.contract = crate::model::ContractOverrides::default();
    let classifier =
        load::load_classifier_with_retries(&spec, settings.retry_policy(), |_, _, _| {}).await?;
    let limits = settings.request_limits();
    Ok(blocking(move || checks::record::record(&classifier, &files, &limits)).await??)
}
