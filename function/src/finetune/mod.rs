//! `catdog finetune`: the tutorial's recipe without Python. The frozen base
//! runs once per picture up to the tensor feeding its final layer; a new
//! softmax head is trained on those features; the base graph is written back
//! with that head and our metadata, as one self-describing ONNX file.

pub mod data;
pub mod features;
pub mod graph;
pub mod train;

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::model::contract::{self, Preprocessing};
use crate::model::load::{self, DigestTiming, LoadError, ModelSpec};
use crate::model::session::{self, Runner, SessionOptions};
use crate::model::source::FetchedModel;
use crate::model::{weights, ModelError};
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
    pub skipped: Vec<String>,
    pub config: TrainConfig,
    pub history: Vec<EpochStats>,
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
    let edit = |g: &[u8]| {
        graph::parse(g)
            .and_then(|m| graph::with_feature_output(&m, &head))
            .map_err(|e| e.to_string())
    };
    let opened = session::open(&model, opts, Some(&edit))?;
    let (spec, _) = contract::resolve(
        pre,
        opened.metadata.preprocessing.as_deref(),
        Preprocessing::parse,
        None,
    )?
    .ok_or(FinetuneError::NoPreprocessing)?;
    let runner = Runner::new(opened.session, spec, &opened.input.1)?;
    Ok(Probe {
        runner,
        head,
        graph,
        model,
    })
}

/// Fine-tunes and writes `cfg.out`; prints per-epoch figures to stderr.
pub async fn finetune(cfg: &FinetuneConfig) -> Result<Summary, FinetuneError> {
    let (train_split, valid_split) = data::list(&cfg.data)?;
    let pre = cfg.base.contract.preprocessing.clone();
    let opts = cfg.base.session.clone();
    let (probe, digest) = load::load_with(&cfg.base, DigestTiming::Now, move |model, _| {
        Ok(open_probe(model, pre.clone(), &opts))
    })
    .await?;
    let probe = probe?;
    let base_sha256 = digest.get().cloned().unwrap_or_default();
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || run(&cfg, probe, base_sha256, train_split, valid_split))
        .await
        .map_err(|e| FinetuneError::Features(format!("worker failed: {e}")))?
}

fn run(
    cfg: &FinetuneConfig,
    probe: Probe,
    base_sha256: String,
    train_split: data::Split,
    valid_split: Option<data::Split>,
) -> Result<Summary, FinetuneError> {
    let head = &probe.head;
    let t0 = Instant::now();
    let files: Vec<PathBuf> = train_split.files.iter().map(|(p, _)| p.clone()).collect();
    let tr =
        features::extract(&probe.runner, head, &files, "train").map_err(FinetuneError::Features)?;
    let y: Vec<usize> = tr.kept.iter().map(|&i| train_split.files[i].1).collect();
    for (c, label) in train_split.labels.iter().enumerate() {
        if !y.contains(&c) {
            return Err(FinetuneError::NoUsable(label.clone()));
        }
    }
    let mut skipped: Vec<String> = tr
        .skipped
        .iter()
        .map(|(p, e)| format!("{}: {e}", p.display()))
        .collect();
    let valid = match &valid_split {
        Some(v) => {
            let files: Vec<PathBuf> = v.files.iter().map(|(p, _)| p.clone()).collect();
            let ex = features::extract(&probe.runner, head, &files, "valid")
                .map_err(FinetuneError::Features)?;
            skipped.extend(
                ex.skipped
                    .iter()
                    .map(|(p, e)| format!("{}: {e}", p.display())),
            );
            let vy: Vec<usize> = ex.kept.iter().map(|&i| v.files[i].1).collect();
            Some((ex.features, vy))
        }
        None => None,
    };
    let extract_s = t0.elapsed().as_secs_f64();
    if !skipped.is_empty() {
        eprintln!(
            "finetune: skipped {} file(s) that are not usable pictures",
            skipped.len()
        );
    }

    let t1 = Instant::now();
    let bar = indicatif::ProgressBar::new(cfg.train.epochs as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("training {bar:40} epoch {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (trained, history) = train::train(
        &tr.features,
        &y,
        train_split.labels.len(),
        cfg.train,
        valid.as_ref().map(|(x, y)| (x.as_slice(), y.as_slice())),
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

    let summary = Summary {
        base: probe.model.uri.clone(),
        base_sha256,
        feature_tensor: head.feature.clone(),
        feature_dim: head.feature_dim,
        replaced: format!("{} ({} nodes)", head.op, head.nodes.len()),
        labels: train_split.labels.clone(),
        train_images: y.len(),
        valid_images: valid.as_ref().map_or(0, |(_, vy)| vy.len()),
        skipped,
        config: cfg.train,
        history,
        extract_s,
        train_s,
    };
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
    let graph = graph::replace_head(
        &probe.graph,
        head,
        &trained.weights,
        &trained.bias,
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
