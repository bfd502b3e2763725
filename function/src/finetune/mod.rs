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

use crate::model::contract::Preprocessing;
use crate::model::source::{self, ModelUri};
use crate::preprocess::Preprocessor;
use train::{EpochStats, TrainConfig};

/// Why fine-tuning failed.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Graph(#[from] graph::GraphError),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Contract(#[from] crate::model::contract::ContractError),
    #[error("the base model has no `preprocessing` metadata: pass --preprocessing caffe|torch|JSON (the one it was trained with)")]
    NoPreprocessing,
    #[error("the base model's input is not an image: {0}")]
    Input(String),
    #[error("feature extraction failed: {0}")]
    Features(String),
    #[error("class `{0}` has no usable pictures (all were skipped)")]
    NoUsable(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to fine-tune on what.
#[derive(Debug, Clone)]
pub struct FinetuneConfig {
    pub base: String,
    pub base_sha256: Option<String>,
    pub data: PathBuf,
    pub out: PathBuf,
    pub train: TrainConfig,
    /// Overrides the base's `preprocessing` metadata.
    pub preprocessing: Option<String>,
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

fn input_shape(model: &onnx_protobuf::ModelProto) -> Result<(String, Vec<i64>), FinetuneError> {
    let g = model
        .graph
        .as_ref()
        .ok_or_else(|| FinetuneError::Input("no graph".into()))?;
    let inits: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<_> = g
        .input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(FinetuneError::Input(format!(
            "{} inputs, expected 1",
            inputs.len()
        )));
    };
    let shape = input
        .type_
        .as_ref()
        .and_then(|t| t.tensor_type().shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| if d.has_dim_value() { d.dim_value() } else { -1 })
                .collect::<Vec<i64>>()
        })
        .unwrap_or_default();
    if shape.len() != 4 {
        return Err(FinetuneError::Input(format!(
            "shape {shape:?} is not rank 4"
        )));
    }
    Ok((input.name.clone(), shape))
}

/// Fine-tunes and writes `cfg.out`; prints per-epoch figures to stderr.
pub async fn finetune(cfg: &FinetuneConfig) -> Result<Summary, FinetuneError> {
    let uri: ModelUri = cfg.base.parse()?;
    let fetched = source::fetch(&uri, cfg.base_sha256.as_deref()).await?;
    let (train_split, valid_split) = data::list(&cfg.data)?;
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || run(&cfg, fetched, train_split, valid_split))
        .await
        .map_err(|e| FinetuneError::Features(format!("worker failed: {e}")))?
}

fn run(
    cfg: &FinetuneConfig,
    fetched: source::FetchedModel,
    train_split: data::Split,
    valid_split: Option<data::Split>,
) -> Result<Summary, FinetuneError> {
    let model = graph::parse(&fetched.bytes)?;
    let head = graph::find_head(&model)?;
    let spec = match (
        &cfg.preprocessing,
        graph::metadata(&model, crate::model::contract::KEY_PREPROCESSING),
    ) {
        (Some(t), _) => Preprocessing::parse(t)?,
        (None, Some(t)) => Preprocessing::parse(&t)?,
        (None, None) => return Err(FinetuneError::NoPreprocessing),
    };
    let (_, shape) = input_shape(&model)?;
    let layout = crate::model::resolve_layout(&spec, &shape)
        .map_err(|e| FinetuneError::Input(e.to_string()))?;
    let pre = Preprocessor::new(spec.clone(), layout);
    let fixed_batch = usize::try_from(shape[0]).ok().filter(|n| *n > 0);
    let probe = graph::with_feature_output(&model, &head)?;

    let t0 = Instant::now();
    let files: Vec<PathBuf> = train_split.files.iter().map(|(p, _)| p.clone()).collect();
    let tr = features::extract(&probe, &head, &pre, fixed_batch, &files, "train")
        .map_err(FinetuneError::Features)?;
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
            let ex = features::extract(&probe, &head, &pre, fixed_batch, &files, "valid")
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
        base: fetched.uri.clone(),
        base_sha256: fetched.sha256.clone(),
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
    let mut spec_out = spec;
    spec_out.layout = Some(layout);
    let metadata = [
        (
            crate::model::contract::KEY_LABELS,
            serde_json::to_string(&summary.labels).expect("strings serialise"),
        ),
        (
            crate::model::contract::KEY_PREPROCESSING,
            serde_json::to_string(&spec_out).expect("spec serialises"),
        ),
        (
            crate::model::contract::KEY_OUTPUT,
            "probabilities".to_string(),
        ),
        ("catdog_training", training_record(&summary)),
    ];
    let bytes = graph::replace_head(&model, &head, &trained.weights, &trained.bias, &metadata)?;
    std::fs::write(&cfg.out, bytes).map_err(|source| FinetuneError::Write {
        path: cfg.out.clone(),
        source,
    })?;
    Ok(summary)
}
