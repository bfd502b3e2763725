//! `catdog finetune`: the tutorial's recipe without Python. The frozen base
//! runs once per picture up to the tensor feeding its final layer; a new
//! softmax head is trained on those features; the base graph is written back
//! with that head and our metadata, as one self-describing ONNX file.

pub mod cv;
pub mod data;
pub mod features;
pub mod graph;
pub mod train;

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::model::contract;
use crate::model::load::{self, DigestTiming, LoadError, ModelSpec};
use crate::model::session::{self, Runner, SessionOptions};
use crate::model::source::FetchedModel;
use crate::model::{imagenet, weights, ModelError};
use crate::preprocess::Preprocessing;
use train::{EpochStats, TrainConfig};

/// Why fine-tuning failed.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    #[error("the base model: {0}")]
    Load(#[from] LoadError),
    #[error("the base model: {0}")]
    Model(#[from] ModelError),
    #[error(transparent)]
    Graph(#[from] graph::GraphError),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Contract(#[from] crate::model::contract::ContractError),
    #[error("the base model has no `preprocessing` metadata: pass --preprocessing caffe|torch|JSON (the one it was trained with)")]
    NoPreprocessing,
    #[error("cannot read the base model: {0}")]
    Read(std::io::Error),
    #[error("feature extraction failed: {0}")]
    Features(String),
    #[error("class `{0}` has no usable pictures (all were skipped)")]
    NoUsable(String),
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("--init zero-shot needs an ImageNet base (1000 outputs) and the labels cat and dog; here: {0}")]
    NoZeroShot(String),
    #[error(
        "the fine-tuned head is weak, so it was not written: {reason}. Try more photos per class, a valid/ folder \
         that looks like the photos it will see, --init zero-shot on an ImageNet base, or more training (--epochs, --lr); \
         --allow-weak writes it anyway"
    )]
    Weak {
        reason: String,
        summary: Box<Summary>,
    },
    /// `--cv K`: the measurement is the outcome; nothing is written.
    #[error("cross-validation done (nothing written)")]
    CrossValidated(cv::Report),
}

/// How the new head starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// From the base's own cat-vs-dog choice when it applies (ImageNet base,
    /// labels cat and dog), else random.
    Auto,
    /// From the base's grouped cat and dog classes: before any step the head
    /// answers exactly as the base's zero-shot choice.
    ZeroShot,
    /// Glorot-random weights (Keras `Dense`), as the tutorial.
    Random,
}

/// When a result is good enough to write.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Acceptance {
    /// Lowest validation accuracy accepted.
    pub min_accuracy: f64,
    /// Write a weak head anyway (and say so).
    pub allow_weak: bool,
}

/// Augmentation: extra copies of each training photo, each run through the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Augment {
    /// The left-right mirror image.
    pub mirror: bool,
    /// The four corner crops keeping 80% of each side.
    pub crop: bool,
}

impl Augment {
    pub fn views(self) -> Vec<features::View> {
        let mut views = Vec::new();
        if self.mirror {
            views.push(features::View::Mirror);
        }
        if self.crop {
            views.extend(features::View::CROPS);
        }
        views
    }

    fn describe(self) -> &'static str {
        match (self.mirror, self.crop) {
            (false, false) => "",
            (true, false) => " (+ their mirror images)",
            (false, true) => " (+ 4 corner crops each)",
            (true, true) => " (+ their mirror images and 4 corner crops each)",
        }
    }
}

/// What to fine-tune on what.
#[derive(Debug, Clone)]
pub struct FinetuneConfig {
    /// The base model (its `preprocessing` override, session and fetch
    /// options are those of serving).
    pub base: ModelSpec,
    pub data: PathBuf,
    pub out: PathBuf,
    pub train: TrainConfig,
    pub init: Init,
    /// Share of each class of train/ set aside for validation when there is no valid/.
    pub valid_fraction: f64,
    pub accept: Acceptance,
    /// Which extra copies of each training photo to train on.
    pub augment: Augment,
    /// Measure the candidate settings by k-fold cross-validation instead of training.
    pub cv: Option<usize>,
}

/// What `catdog finetune` reports (and stores in the model's `catdog_training`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub base: String,
    pub base_sha256: String,
    pub feature_tensor: String,
    pub feature_dim: usize,
    pub replaced: String,
    pub labels: Vec<String>,
    pub train_images: usize,
    pub valid_images: usize,
    /// `folder` (valid/) or `carved` (from train/).
    pub valid_source: data::ValidSource,
    /// How the head started: `zero-shot` or `random`.
    pub init: Init,
    /// The extra copies of each training photo trained on.
    pub augment: Augment,
    pub skipped: Vec<String>,
    pub config: TrainConfig,
    pub history: Vec<EpochStats>,
    /// The epoch whose head was kept (lowest validation loss).
    pub best_epoch: usize,
    /// Validation accuracy of the kept head.
    pub valid_accuracy: f64,
    /// The base's zero-shot cat-vs-dog accuracy on the same validation photos (ImageNet bases).
    pub base_valid_accuracy: Option<f64>,
    /// Written although weak (--allow-weak).
    pub weak: bool,
    pub extract_s: f64,
    pub train_s: f64,
}

/// The summary as stored in the model: without wall-clock timings, so the
/// same data, base and seed give a byte-identical file.
fn training_record(summary: &Summary) -> String {
    let mut v = serde_json::to_value(summary).expect("summary serialises");
    if let Some(o) = v.as_object_mut() {
        o.remove("extract_s");
        o.remove("train_s");
    }
    v.to_string()
}

/// The frozen base, opened to also output its feature tensor.
struct Probe {
    runner: Runner,
    head: graph::HeadInfo,
    /// The base graph without its large weights (they stay in `model`).
    graph: onnx_protobuf::ModelProto,
    model: FetchedModel,
    /// The base's logits tensor (ImageNet bases).
    logits: Option<String>,
}

/// Finds the base's final layer and builds a session that also outputs its
/// input, through the same loading path as serving (a file: zero-copy).
fn open_probe(
    model: FetchedModel,
    pre: Option<Preprocessing>,
    opts: &SessionOptions,
) -> Result<Probe, FinetuneError> {
    let view = model.view().map_err(FinetuneError::Read)?;
    let split = weights::split(&view, weights::MIN_BYTES, &model.location())
        .map_err(|e| graph::GraphError::Parse(e.to_string()))?;
    drop(view);
    let graph = graph::parse(&split.graph)?;
    let head = graph::find_head(&graph)?;
    // An ImageNet base's logits, for a head that starts from its answer.
    let logits = (head.base_classes == imagenet::NUM_CLASSES)
        .then(|| graph::logits_tensor(&graph))
        .flatten();
    let edit = |g: &[u8]| {
        graph::parse(g)
            .and_then(|m| graph::with_feature_output(&m, &head, logits.as_deref()))
            .map_err(|e| e.to_string())
    };
    let opened = session::open(&model, opts, Some(&edit))?;
    let (spec, _) = contract::resolve(
        pre,
        opened.metadata.preprocessing.as_deref(),
        str::parse::<Preprocessing>,
        None,
    )?
    .ok_or(FinetuneError::NoPreprocessing)?;
    let runner = Runner::new(opened.session, spec, &opened.input.1)?;
    Ok(Probe {
        runner,
        head,
        graph,
        model,
        logits,
    })
}

/// The base classes each label gathers, when the head can start from the
/// base's zero-shot choice: an ImageNet base and the labels cat and dog.
fn zero_shot_groups(labels: &[String], logits: Option<&str>) -> Result<Vec<Vec<i64>>, String> {
    if logits.is_none() {
        return Err("the base is not an ImageNet classifier with 1000 outputs".into());
    }
    let group = |label: &str| match label.to_ascii_lowercase().trim_end_matches('s') {
        "cat" => Some(imagenet::CAT_CLASSES.map(|i| i as i64).collect::<Vec<_>>()),
        "dog" => Some(imagenet::DOG_CLASSES.map(|i| i as i64).collect()),
        _ => None,
    };
    let groups: Option<Vec<Vec<i64>>> = labels.iter().map(|l| group(l)).collect();
    match groups {
        Some(g) if g.len() == 2 && g[0] != g[1] => Ok(g),
        _ => Err(format!("the labels are {labels:?}, not cat and dog")),
    }
}

/// Fine-tunes and writes `cfg.out`; prints per-epoch figures to stderr.
pub async fn finetune(cfg: &FinetuneConfig) -> Result<Summary, FinetuneError> {
    let (train_split, valid_split, valid_source) =
        data::train_and_valid(&cfg.data, cfg.valid_fraction, cfg.train.seed)?;
    let pre = cfg.base.contract.preprocessing.clone();
    let opts = cfg.base.session.clone();
    let (probe, digest) = load::load_with(&cfg.base, DigestTiming::Now, move |model, _| {
        Ok(open_probe(model, pre.clone(), &opts))
    })
    .await?;
    let probe = probe?;
    let base_sha256 = digest.get().cloned().unwrap_or_default();
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || {
        run(
            &cfg,
            probe,
            base_sha256,
            train_split,
            valid_split,
            valid_source,
        )
    })
    .await
    .map_err(|e| FinetuneError::Features(format!("worker failed: {e}")))?
}

fn run(
    cfg: &FinetuneConfig,
    probe: Probe,
    base_sha256: String,
    train_split: data::Split,
    valid_split: data::Split,
    valid_source: data::ValidSource,
) -> Result<Summary, FinetuneError> {
    let head = &probe.head;
    let groups = match (
        cfg.init,
        zero_shot_groups(&train_split.labels, probe.logits.as_deref()),
    ) {
        (Init::Random, _) => None,
        (_, Ok(groups)) => Some(groups),
        (Init::ZeroShot, Err(why)) => return Err(FinetuneError::NoZeroShot(why)),
        (Init::Auto, Err(_)) => None,
    };
    let init = if groups.is_some() {
        Init::ZeroShot
    } else {
        Init::Random
    };
    let spec = groups
        .as_ref()
        .zip(probe.logits.as_deref())
        .map(|(groups, logits)| features::PriorSpec { logits, groups });

    let t0 = Instant::now();
    let mut skipped = Vec::new();
    let mut extract = |split: &data::Split,
                       view: features::View,
                       what: &str|
     -> Result<(features::Extracted, Vec<usize>), FinetuneError> {
        let files: Vec<PathBuf> = split.files.iter().map(|(p, _)| p.clone()).collect();
        let ex = features::extract(&probe.runner, head, spec.as_ref(), &files, view, what)
            .map_err(FinetuneError::Features)?;
        if view == features::View::Original {
            skipped.extend(
                ex.skipped
                    .iter()
                    .map(|(p, e)| format!("{}: {e}", p.display())),
            );
        }
        let y = ex.kept.iter().map(|&i| split.files[i].1).collect();
        Ok((ex, y))
    };
    let (mut tr, mut y) = extract(&train_split, features::View::Original, "train")?;
    let (va, vy) = extract(&valid_split, features::View::Original, "valid")?;
    for (c, label) in train_split.labels.iter().enumerate() {
        if !y.contains(&c) {
            return Err(FinetuneError::NoUsable(label.clone()));
        }
    }
    let train_images = y.len();
    if let Some(k) = cfg.cv {
        // Measuring, not training: the candidates by k-fold cross-validation
        // over train/ and valid/ (never test/), with every augmented copy.
        let all = Augment {
            mirror: true,
            crop: true,
        };
        let mut views = Vec::new();
        for view in all.views() {
            let (t, _) = extract(&train_split, view, "train")?;
            let (v, _) = extract(&valid_split, view, "valid")?;
            views.push((view, [t, v]));
        }
        let pool = cv::Pool::new(&[(&tr, &y), (&va, &vy)], &views);
        let report = cv::run(
            &pool,
            train_split.labels.len(),
            k,
            cfg.train,
            groups.is_some(),
        );
        return Err(FinetuneError::CrossValidated(report));
    }
    for view in cfg.augment.views() {
        let (more, ym) = extract(&train_split, view, "train")?;
        tr.features.extend(more.features);
        if let (Some(p), Some(pm)) = (tr.prior.as_mut(), more.prior) {
            p.extend(pm);
        }
        y.extend(ym);
    }
    let extract_s = t0.elapsed().as_secs_f64();
    if !skipped.is_empty() {
        eprintln!(
            "finetune: skipped {} file(s) that are not usable pictures",
            skipped.len()
        );
    }
    let train_set = train::Set {
        x: &tr.features,
        y: &y,
        prior: tr.prior.as_deref(),
    };
    let valid_set = train::Set {
        x: &va.features,
        y: &vy,
        prior: va.prior.as_deref(),
    };
    let base_valid_accuracy = va.prior.as_ref().map(|prior| {
        let right = prior
            .iter()
            .zip(&vy)
            .filter(|(p, &y)| train::argmax(p) == y)
            .count();
        right as f64 / vy.len().max(1) as f64
    });
    eprintln!(
        "finetune: {} training{} and {} validation photos ({}), head starts {}{}",
        train_images,
        cfg.augment.describe(),
        vy.len(),
        match valid_source {
            data::ValidSource::Folder => "valid/",
            data::ValidSource::Carved => "carved from train/",
        },
        match init {
            Init::ZeroShot => "from the base's zero-shot choice",
            _ => "random",
        },
        base_valid_accuracy.map_or(String::new(), |a| format!(
            " (zero-shot validation accuracy {:.1}%)",
            a * 100.0
        )),
    );

    let t1 = Instant::now();
    let bar = indicatif::ProgressBar::new(cfg.train.epochs as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "training {bar:40} epoch {pos}/{len} (stops early when validation stops improving)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let valid_opt = (!vy.is_empty()).then_some(valid_set);
    let (trained, history) = train::train(
        train_set,
        train_split.labels.len(),
        cfg.train,
        valid_opt,
        |s| {
            bar.suspend(|| {
                let valid = match (s.valid_loss, s.valid_accuracy) {
                    (Some(l), Some(a)) => format!("  valid loss {l:.4} accuracy {:.1}%", a * 100.0),
                    _ => String::new(),
                };
                eprintln!(
                    "epoch {:>3}: loss {:.4} accuracy {:.1}%{valid}",
                    s.epoch,
                    s.loss,
                    s.accuracy * 100.0
                );
            });
            bar.inc(1);
        },
    );
    bar.finish_and_clear();
    let train_s = t1.elapsed().as_secs_f64();
    let (_, valid_accuracy) = trained.evaluate(valid_set);
    let best_epoch = history
        .iter()
        .filter_map(|h| h.valid_loss.map(|l| (h.epoch, l)))
        .fold(
            (history.last().map_or(0, |h| h.epoch), f32::INFINITY),
            |b, (e, l)| if l < b.1 - 1e-6 { (e, l) } else { b },
        )
        .0;

    let mut weak = None;
    if (valid_accuracy as f64) + 1e-6 < cfg.accept.min_accuracy {
        weak = Some(format!(
            "validation accuracy {:.1}% is below the floor of {:.1}% (--min-accuracy)",
            valid_accuracy * 100.0,
            cfg.accept.min_accuracy * 100.0
        ));
    } else if let Some(base) = base_valid_accuracy.filter(|b| (valid_accuracy as f64) + 1e-6 < *b) {
        weak = Some(format!(
            "validation accuracy {:.1}% is below the base's own zero-shot choice ({:.1}%) on the same photos",
            valid_accuracy * 100.0,
            base * 100.0
        ));
    }
    let summary = Summary {
        base: probe.model.uri.clone(),
        base_sha256,
        feature_tensor: head.feature.clone(),
        feature_dim: head.feature_dim,
        replaced: match init {
            Init::ZeroShot => format!(
                "{} ({} nodes) kept, grouped, plus a trained correction",
                head.op,
                head.nodes.len()
            ),
            _ => format!("{} ({} nodes)", head.op, head.nodes.len()),
        },
        labels: train_split.labels.clone(),
        train_images,
        valid_images: vy.len(),
        valid_source,
        init,
        augment: cfg.augment,
        skipped,
        config: cfg.train,
        history,
        best_epoch,
        valid_accuracy: valid_accuracy as f64,
        base_valid_accuracy,
        weak: weak.is_some(),
        extract_s,
        train_s,
    };
    match &weak {
        Some(reason) if !cfg.accept.allow_weak => {
            return Err(FinetuneError::Weak {
                reason: reason.clone(),
                summary: Box::new(summary),
            })
        }
        Some(reason) => {
            eprintln!("finetune: WARNING: writing a weak head (--allow-weak): {reason}")
        }
        None => {}
    }
    let mut spec_out = probe.runner.preprocessor().spec().clone();
    spec_out.layout = Some(probe.runner.preprocessor().layout());
    let metadata = [
        (
            contract::KEY_LABELS,
            serde_json::to_string(&summary.labels).expect("strings serialise"),
        ),
        (
            contract::KEY_PREPROCESSING,
            serde_json::to_string(&spec_out).expect("spec serialises"),
        ),
        (contract::KEY_OUTPUT, "probabilities".to_string()),
        ("catdog_training", training_record(&summary)),
    ];
    let prior = groups
        .zip(probe.logits.clone())
        .map(|(groups, logits)| graph::Prior { logits, groups });
    let graph = graph::replace_head(
        &probe.graph,
        head,
        &trained.weights,
        &trained.bias,
        prior.as_ref(),
        &metadata,
    )?;
    // The weights the new graph still refers to, taken back from the base.
    let view = probe.model.view().map_err(FinetuneError::Read)?;
    let bytes = graph::inline_weights(&graph, &view, &probe.model.location())?;
    std::fs::write(&cfg.out, bytes).map_err(|error| FinetuneError::Write {
        path: cfg.out.clone(),
        error,
    })?;
    Ok(summary)
}
