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
use crate::model::{imagenet, output, weights, ModelError};
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
    #[error("{0}")]
    Neither(String),
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

/// How the rejecting label (`neither`) is learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NeitherMode {
    /// The base's own probability that the picture is one of the labels'
    /// classes (cats and dogs), under a threshold chosen on the photos.
    Threshold,
    /// A third class of the trained head, learnt from the non-pet photos
    /// (`--neither DIR`), starting from the base's other classes.
    Class,
}

/// The label that means "none of the others", and what it is learnt from.
#[derive(Debug, Clone)]
pub struct NeitherConfig {
    /// Its name (`neither`).
    pub label: String,
    /// Photos of other things, for its threshold or as its class.
    pub photos: Option<PathBuf>,
    /// With photos: threshold or class (without, always threshold).
    pub mode: NeitherMode,
}

/// Share of the user's own photos a threshold chosen from them alone may
/// reject: the rest is the room left for other things.
pub const PETS_REJECTED: f64 = 0.02;

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
    /// The rejecting label; `None` (`--no-neither`): every answer is one of the labels.
    pub neither: Option<NeitherConfig>,
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
    /// The rejecting label's rule, when the model has one.
    pub neither: Option<NeitherSummary>,
    /// Written although weak (--allow-weak).
    pub weak: bool,
    pub extract_s: f64,
    pub train_s: f64,
}

/// How the model says `neither`, and what that was fitted on.
#[derive(Debug, Clone, Serialize)]
pub struct NeitherSummary {
    pub label: String,
    pub mode: NeitherMode,
    /// The answer is `label` when the other labels' scores sum to less than this.
    pub below: f32,
    /// Threshold mode: how many base classes the evidence sums over, and
    /// where they came from (`groups`: the labels' ImageNet groups;
    /// `top1`: the base's first choice for the training photos).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<(usize, &'static str)>,
    /// The user's photos of the labels (originals, train and valid), and
    /// how many of them the rule answers `label` for.
    pub photos: usize,
    pub photos_rejected: usize,
    /// Photos of other things it was fitted on, and how many of them it
    /// answers `label` for.
    pub other_photos: usize,
    pub other_photos_rejected: usize,
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

/// The threshold of the base's evidence for the labels' classes (see
/// [`graph::Evidence`]). From the user's photos alone: the value that
/// [`PETS_REJECTED`] of them fall under (interpolated in log), never above
/// the ImageNet mode's own. With photos of other things too: the split
/// between the two with the fewest errors (each side weighted by its
/// size), at the middle (in log) of the best splits.
pub fn choose_threshold(photos: &[f32], others: &[f32]) -> f32 {
    let log = |v: &[f32]| -> Vec<f64> {
        let mut l: Vec<f64> = v.iter().map(|&e| f64::from(e.max(1e-30)).ln()).collect();
        l.sort_by(f64::total_cmp);
        l
    };
    let (photos, others) = (log(photos), log(others));
    let cap = f64::from(imagenet::DEFAULT_NEITHER_BELOW);
    if photos.is_empty() {
        return cap as f32;
    }
    if others.is_empty() {
        let pos = PETS_REJECTED * (photos.len() - 1) as f64;
        let (i, frac) = (pos.floor() as usize, pos.fract());
        let next = photos[(i + 1).min(photos.len() - 1)];
        return (photos[i] + frac * (next - photos[i])).exp().min(cap) as f32;
    }
    let mut cuts: Vec<f64> = photos.iter().chain(&others).copied().collect();
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    let mut candidates: Vec<f64> = cuts.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    candidates.push(cuts[0] - 1.0);
    candidates.push(cuts[cuts.len() - 1] + 1.0);
    let error = |t: f64| {
        let rejected = photos.iter().filter(|&&p| p < t).count() as f64 / photos.len() as f64;
        let kept = others.iter().filter(|&&o| o >= t).count() as f64 / others.len() as f64;
        rejected + kept
    };
    let best = candidates
        .iter()
        .map(|&t| error(t))
        .fold(f64::INFINITY, f64::min);
    let mut tied: Vec<f64> = candidates
        .into_iter()
        .filter(|&t| error(t) <= best + 1e-12)
        .collect();
    tied.sort_by(f64::total_cmp);
    let (lo, hi) = (tied[0], tied[tied.len() - 1]);
    ((lo + hi) / 2.0).exp().min(0.5) as f32
}

/// The base classes a label set is about, for the evidence that a picture
/// is one of them: the labels' ImageNet groups, else every class that is
/// the base's first choice for one of the training photos.
fn domain_of(groups: Option<&[Vec<i64>]>, logits: &[Vec<f32>]) -> (Vec<i64>, &'static str) {
    let mut domain: Vec<i64> = match groups {
        Some(groups) => groups.iter().flatten().copied().collect(),
        None => logits.iter().map(|row| train::argmax(row) as i64).collect(),
    };
    domain.sort_unstable();
    domain.dedup();
    (domain, if groups.is_some() { "groups" } else { "top1" })
}

/// The rows of a set whose label passes `keep`.
fn select(
    ex: &features::Extracted,
    y: &[usize],
    keep: impl Fn(usize) -> bool,
) -> (features::Extracted, Vec<usize>) {
    let rows: Vec<usize> = (0..y.len()).filter(|&i| keep(y[i])).collect();
    let pick = |v: &Vec<Vec<f32>>| rows.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
    (
        features::Extracted {
            features: pick(&ex.features),
            kept: rows.iter().map(|&i| ex.kept[i]).collect(),
            skipped: Vec::new(),
            prior: ex.prior.as_ref().map(pick),
            logits: ex.logits.as_ref().map(pick),
        },
        rows.iter().map(|&i| y[i]).collect(),
    )
}

fn run(
    cfg: &FinetuneConfig,
    probe: Probe,
    base_sha256: String,
    mut train_split: data::Split,
    mut valid_split: data::Split,
    valid_source: data::ValidSource,
) -> Result<Summary, FinetuneError> {
    let head = &probe.head;
    // Photos of other things join the splits as one more class, after the
    // labels' own (also when train/ has a folder of that name).
    let mut rejecting = None;
    if let Some(n) = &cfg.neither {
        rejecting = match &n.photos {
            Some(dir) => Some(data::add_class(
                &mut train_split,
                &mut valid_split,
                &n.label,
                dir,
                cfg.valid_fraction,
                cfg.train.seed,
            )?),
            None => train_split.labels.iter().position(|l| *l == n.label),
        };
    }
    if let Some(r) = rejecting {
        let last = train_split.labels.len() - 1;
        let remap = |c: usize| match c {
            c if c == r => last,
            c if c > r => c - 1,
            c => c,
        };
        for split in [&mut train_split, &mut valid_split] {
            let label = split.labels.remove(r);
            split.labels.push(label);
            for f in split.files.iter_mut() {
                f.1 = remap(f.1);
            }
        }
    }
    let labels = train_split.labels.clone();
    // The labels' own classes are 0..pets; photos of other things are `pets`.
    let pets = labels.len() - usize::from(rejecting.is_some());
    if pets < 2 {
        return Err(FinetuneError::Neither(format!(
            "needs at least two labels besides `{}`; train/ has {labels:?}",
            labels[labels.len() - 1]
        )));
    }
    let groups = match (
        cfg.init,
        zero_shot_groups(&labels[..pets], probe.logits.as_deref()),
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
    let mode = match (&cfg.neither, rejecting.is_some(), probe.logits.is_some()) {
        (None, ..) => None,
        (Some(n), true, true) => Some(n.mode),
        (Some(_), true, false) => Some(NeitherMode::Class),
        (Some(_), false, true) => Some(NeitherMode::Threshold),
        (Some(n), false, false) => {
            eprintln!(
                "finetune: the base is not an ImageNet classifier, so it has no evidence for `{}`: \
                 the model answers only {labels:?} (give photos of other things with --neither DIR \
                 to train `{}` as a class)",
                n.label, n.label
            );
            None
        }
    };
    let neither_label = cfg.neither.as_ref().map(|n| n.label.clone());
    // What the model answers: the labels, then the rejecting one.
    let mut labels_out = labels[..pets].to_vec();
    if let (Some(_), Some(label)) = (mode, &neither_label) {
        labels_out.push(label.clone());
    }

    let t0 = Instant::now();
    let mut skipped = Vec::new();
    let mut extract = |split: &data::Split,
                       view: features::View,
                       what: &str|
     -> Result<(features::Extracted, Vec<usize>), FinetuneError> {
        let files: Vec<PathBuf> = split.files.iter().map(|(p, _)| p.clone()).collect();
        let ex = features::extract(
            &probe.runner,
            head,
            probe.logits.as_deref(),
            &files,
            view,
            what,
        )
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
    let (mut va, vy) = extract(&valid_split, features::View::Original, "valid")?;
    for (c, label) in labels.iter().enumerate() {
        if !y.contains(&c) {
            return Err(FinetuneError::NoUsable(label.clone()));
        }
    }
    // The classes the labels are about, and the head's prior per class.
    let domain = match (mode, &tr.logits) {
        (Some(NeitherMode::Threshold), Some(logits)) => {
            let photos: Vec<Vec<f32>> = (0..y.len())
                .filter(|&i| y[i] < pets)
                .map(|i| logits[i].clone())
                .collect();
            Some(domain_of(groups.as_deref(), &photos))
        }
        (Some(NeitherMode::Class), Some(_)) if groups.is_some() => {
            Some(domain_of(groups.as_deref(), &[]))
        }
        _ => None,
    };
    let prior_groups: Option<Vec<Vec<i64>>> = match (mode, &groups, &domain) {
        (Some(NeitherMode::Class), Some(groups), Some((domain, _))) => {
            let rest = (0..imagenet::NUM_CLASSES as i64)
                .filter(|c| domain.binary_search(c).is_err())
                .collect();
            Some(groups.iter().cloned().chain([rest]).collect())
        }
        (_, groups, _) => groups.clone(),
    };
    tr.set_prior(prior_groups.as_deref());
    va.set_prior(prior_groups.as_deref());
    // The head learns the labels; photos of other things become its third
    // class, or only set the threshold.
    let head_classes = match mode {
        Some(NeitherMode::Class) => pets + 1,
        _ => pets,
    };
    let train_images = y.len();
    if let Some(k) = cfg.cv {
        if rejecting.is_some() {
            return Err(FinetuneError::Neither(
                "--cv measures the labels' head: run it without photos of other things".into(),
            ));
        }
        // Measuring, not training: the candidates by k-fold cross-validation
        // over train/ and valid/ (never test/), with every augmented copy.
        let all = Augment {
            mirror: true,
            crop: true,
        };
        let mut views = Vec::new();
        for view in all.views() {
            let (mut t, _) = extract(&train_split, view, "train")?;
            let (mut v, _) = extract(&valid_split, view, "valid")?;
            t.set_prior(prior_groups.as_deref());
            v.set_prior(prior_groups.as_deref());
            views.push((view, [t, v]));
        }
        let pool = cv::Pool::new(&[(&tr, &y), (&va, &vy)], &views);
        let report = cv::run(&pool, labels.len(), k, cfg.train, groups.is_some());
        return Err(FinetuneError::CrossValidated(report));
    }
    // Each photo once, before augmenting: for the threshold and the figures.
    let photos = [
        select(&tr, &y, |c| c < pets).0,
        select(&va, &vy, |c| c < pets).0,
    ];
    let others = [
        select(&tr, &y, |c| c >= pets).0,
        select(&va, &vy, |c| c >= pets).0,
    ];
    for view in cfg.augment.views() {
        let (mut more, ym) = extract(&train_split, view, "train")?;
        more.set_prior(prior_groups.as_deref());
        tr.features.extend(more.features);
        tr.kept.extend(more.kept);
        if let (Some(p), Some(pm)) = (tr.prior.as_mut(), more.prior) {
            p.extend(pm);
        }
        if let (Some(l), Some(lm)) = (tr.logits.as_mut(), more.logits) {
            l.extend(lm);
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
    let (tr_head, y_head) = select(&tr, &y, |c| c < head_classes);
    let (va_head, vy_head) = select(&va, &vy, |c| c < head_classes);
    let train_set = train::Set {
        x: &tr_head.features,
        y: &y_head,
        prior: tr_head.prior.as_deref(),
    };
    let valid_set = train::Set {
        x: &va_head.features,
        y: &vy_head,
        prior: va_head.prior.as_deref(),
    };
    eprintln!(
        "finetune: {} training{} and {} validation photos ({}), head starts {}",
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
    );

    let t1 = Instant::now();
    let bar = indicatif::ProgressBar::new(cfg.train.epochs as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "training {bar:40} epoch {pos}/{len} (stops early when validation stops improving)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let valid_opt = (!vy_head.is_empty()).then_some(valid_set);
    let (trained, history) = train::train(train_set, head_classes, cfg.train, valid_opt, |s| {
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
    });
    bar.finish_and_clear();
    let train_s = t1.elapsed().as_secs_f64();

    // The rejecting label's rule.
    let evidence = |sets: &[features::Extracted]| -> Vec<f32> {
        let Some((d, _)) = &domain else {
            return Vec::new();
        };
        sets.iter()
            .filter_map(|ex| ex.evidence(d))
            .flatten()
            .collect()
    };
    let rejection = match (mode, &cfg.neither) {
        (Some(NeitherMode::Threshold), Some(n)) => Some(contract::Rejection {
            label: n.label.clone(),
            below: choose_threshold(&evidence(&photos), &evidence(&others)),
        }),
        // A trained class: the answer when the others are less likely than not.
        (Some(NeitherMode::Class), Some(n)) => Some(contract::Rejection {
            label: n.label.clone(),
            below: 0.5,
        }),
        _ => None,
    };
    let answers = Answers {
        head: &trained,
        rule: output::Head::Labels {
            labels: labels_out.clone(),
            rejection: rejection.clone(),
        },
        evidence: domain
            .as_ref()
            .map(|(d, _)| d.as_slice())
            .filter(|_| mode == Some(NeitherMode::Threshold)),
    };
    // Right: the photo's label, or the rejecting one for other things.
    let truth = |c: usize| c.min(labels_out.len() - 1);
    let valid_accuracy = answers.accuracy(&va, &vy, truth);
    // The base's own zero-shot answer on the same photos (ImageNet mode:
    // the groups, and `neither` below its default threshold).
    let base_valid_accuracy = groups
        .as_ref()
        .zip(va.logits.as_ref())
        .map(|(groups, logits)| {
            let zero_shot = output::Head::Labels {
                labels: labels_out.clone(),
                rejection: rejection.as_ref().map(|r| contract::Rejection {
                    below: imagenet::DEFAULT_NEITHER_BELOW,
                    ..r.clone()
                }),
            };
            let right = logits
                .iter()
                .zip(&vy)
                .filter(|(row, &y)| {
                    let mut p: Vec<f32> =
                        groups.iter().map(|g| features::evidence(row, g)).collect();
                    if rejection.is_some() {
                        p.push((1.0 - p.iter().sum::<f32>()).max(0.0));
                    }
                    let label = output::predict(&zero_shot, &p).label;
                    labels_out.iter().position(|l| *l == label) == Some(truth(y))
                })
                .count();
            right as f64 / vy.len().max(1) as f64
        });
    let rejected = |sets: &[features::Extracted]| -> usize {
        sets.iter()
            .map(|ex| answers.count(ex, labels_out.len() - 1))
            .sum()
    };
    let neither = rejection.as_ref().map(|r| NeitherSummary {
        label: r.label.clone(),
        mode: mode.unwrap_or(NeitherMode::Threshold),
        below: r.below,
        domain: domain
            .as_ref()
            .filter(|_| mode == Some(NeitherMode::Threshold))
            .map(|(d, from)| (d.len(), *from)),
        photos: photos.iter().map(|ex| ex.features.len()).sum(),
        photos_rejected: rejected(&photos),
        other_photos: others.iter().map(|ex| ex.features.len()).sum(),
        other_photos_rejected: rejected(&others),
    });
    if let Some(n) = &neither {
        eprintln!(
            "finetune: `{}` {}: {} of the {} photos of {:?} and {} of {} photos of other things answer `{}`",
            n.label,
            match n.mode {
                NeitherMode::Threshold => format!(
                    "when the base gives the labels' classes less than {:.4} in all",
                    n.below
                ),
                NeitherMode::Class => "as a trained class".to_string(),
            },
            n.photos_rejected,
            n.photos,
            &labels_out[..pets],
            n.other_photos_rejected,
            n.other_photos,
            n.label,
        );
    }
    let best_epoch = history
        .iter()
        .filter_map(|h| h.valid_loss.map(|l| (h.epoch, l)))
        .fold(
            (history.last().map_or(0, |h| h.epoch), f32::INFINITY),
            |b, (e, l)| if l < b.1 - 1e-6 { (e, l) } else { b },
        )
        .0;

    // The most specific reason first: photos of other things that the
    // model does not answer `neither` for.
    let weak = if let Some(n) = neither.as_ref().filter(|n| {
        n.other_photos > 0
            && (n.other_photos_rejected as f64) + 1e-6
                < cfg.accept.min_accuracy * n.other_photos as f64
    }) {
        Some(format!(
            "`{}` is the answer for only {} of the {} photos of other things, below the floor of {:.1}% (--min-accuracy)",
            n.label,
            n.other_photos_rejected,
            n.other_photos,
            cfg.accept.min_accuracy * 100.0
        ))
    } else if valid_accuracy + 1e-6 < cfg.accept.min_accuracy {
        Some(format!(
            "validation accuracy {:.1}% is below the floor of {:.1}% (--min-accuracy)",
            valid_accuracy * 100.0,
            cfg.accept.min_accuracy * 100.0
        ))
    } else {
        base_valid_accuracy
            .filter(|b| valid_accuracy + 1e-6 < *b)
            .map(|base| {
                format!(
                    "validation accuracy {:.1}% is below the base's own zero-shot choice ({:.1}%) on the same photos",
                    valid_accuracy * 100.0,
                    base * 100.0
                )
            })
    };
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
        labels: labels_out.clone(),
        train_images,
        valid_images: vy.len(),
        valid_source,
        init,
        augment: cfg.augment,
        skipped,
        config: cfg.train,
        history,
        best_epoch,
        valid_accuracy,
        base_valid_accuracy,
        neither,
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
    let mut metadata = vec![
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
    if let Some(r) = &rejection {
        metadata.push((contract::KEY_REJECTION, r.to_metadata()));
    }
    let prior = prior_groups
        .zip(probe.logits.clone())
        .map(|(groups, logits)| graph::Prior { logits, groups });
    let evidence = match (mode, &domain, &probe.logits) {
        (Some(NeitherMode::Threshold), Some((domain, _)), Some(logits)) => Some(graph::Evidence {
            logits: logits.clone(),
            domain: domain.clone(),
        }),
        _ => None,
    };
    let graph = graph::replace_head(
        &probe.graph,
        head,
        &trained.weights,
        &trained.bias,
        prior.as_ref(),
        evidence.as_ref(),
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

/// The written model's answers, computed on cached rows: the trained head,
/// then (threshold mode) the base's evidence as the last column, then the
/// label rule — the same rule serving applies ([`output::predict`]).
struct Answers<'a> {
    head: &'a train::SoftmaxHead,
    rule: output::Head,
    /// Threshold mode: the base classes the evidence sums over.
    evidence: Option<&'a [i64]>,
}

impl Answers<'_> {
    /// The index (in the rule's labels) of the answer for row `i` of `ex`.
    fn answer(&self, ex: &features::Extracted, i: usize) -> usize {
        let mut row = self
            .head
            .probabilities(&ex.features[i], ex.prior.as_ref().map(|p| p[i].as_slice()));
        if let (Some(domain), Some(logits)) = (self.evidence, &ex.logits) {
            let e = features::evidence(&logits[i], domain);
            row.iter_mut().for_each(|p| *p *= e);
            row.push(1.0 - e);
        }
        // `scores` are in the rule's label order.
        let p = output::predict(&self.rule, &row);
        p.scores
            .0
            .iter()
            .position(|(l, _)| *l == p.label)
            .unwrap_or(0)
    }

    /// How many rows of `ex` get the answer `label`.
    fn count(&self, ex: &features::Extracted, label: usize) -> usize {
        (0..ex.features.len())
            .filter(|&i| self.answer(ex, i) == label)
            .count()
    }

    /// Share of rows answered `truth(y)`.
    fn accuracy(
        &self,
        ex: &features::Extracted,
        y: &[usize],
        truth: impl Fn(usize) -> usize,
    ) -> f64 {
        let right = (0..y.len())
            .filter(|&i| self.answer(ex, i) == truth(y[i]))
            .count();
        right as f64 / y.len().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_from_the_photos_alone_rejects_few_of_them() {
        // 101 photos, evidence 0.01, 0.02, …: 2% of them fall under it.
        let photos: Vec<f32> = (1..=101).map(|i| i as f32 / 101.0).collect();
        let t = choose_threshold(&photos, &[]);
        let under = photos.iter().filter(|&&e| e < t).count();
        assert_eq!(under, 2, "threshold {t}");
        // Never above the ImageNet mode's own.
        assert_eq!(
            choose_threshold(&[0.9, 0.95, 0.99], &[]),
            imagenet::DEFAULT_NEITHER_BELOW
        );
        assert_eq!(choose_threshold(&[], &[]), imagenet::DEFAULT_NEITHER_BELOW);
    }

    #[test]
    fn a_threshold_with_other_photos_splits_them_in_the_middle() {
        let photos = [0.5f32, 0.9, 0.99, 0.2];
        let others = [0.001f32, 0.0001, 0.002];
        let t = choose_threshold(&photos, &others);
        // The middle (in log) of the gap between 0.002 and 0.2.
        assert!((t - (0.002f32 * 0.2).sqrt()).abs() < 1e-4, "{t}");
        // Overlap: the split with fewest errors, one photo given up.
        let t = choose_threshold(&[0.5, 0.9, 0.99, 0.0005], &others);
        assert!(t > 0.002 && t < 0.5, "{t}");
    }
}
