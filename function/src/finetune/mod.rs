//! `catdog finetune`: the tutorial's recipe without Python. The frozen base
//! runs once per picture up to the tensor feeding its final layer; a new
//! softmax head is trained on those features; the base graph is written back
//! with that head and our metadata, as one self-describing ONNX file.
//!
//! [`finetune`] is a pipeline of named steps: settle the [`config::Plan`],
//! extract features ([`sets`]), train ([`train`]) or cross-validate
//! ([`cv`]), fit the rejecting label ([`neither`]), score ([`evaluate`]),
//! and write ([`write`]). What happens on the way goes to a [`Progress`].

pub(crate) mod config;
pub(crate) mod corrections;
pub(crate) mod cv;
pub(crate) mod data;
pub(crate) mod dedupe;
pub(crate) mod error;
pub(crate) mod evaluate;
pub(crate) mod features;
pub(crate) mod graph;
pub(crate) mod neither;
pub(crate) mod plan;
pub(crate) mod probe;
pub(crate) mod progress;
pub(crate) mod sets;
pub(crate) mod sources;
pub(crate) mod summary;
pub(crate) mod train;
pub(crate) mod view;
pub(crate) mod write;

use std::sync::Arc;
use std::time::Instant;

pub(crate) use config::{Acceptance, Augment, FinetuneConfig, Init, NeitherConfig, NeitherMode};
pub(crate) use error::FinetuneError;
pub use progress::{log_skipped, Event, Note, Progress};
pub(crate) use summary::Summary;

use crate::model::load::{self, DigestTiming};
use features::View;
use plan::Plan;
use probe::Probe;
use sets::{Extractor, Labelled};
use train::{EpochStats, SoftmaxHead};

/// What fine-tuning did.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// A model was written to `cfg.out`.
    Written(Box<Summary>),
    /// `--cv K`: the candidate settings were measured; nothing was written.
    CrossValidated(cv::Report),
}

/// The photos to train on, as the data folder lists them.
struct Splits {
    train: data::Split,
    valid: data::Split,
    source: data::ValidSource,
    /// The `--data` sources as given, and as local folders.
    sources: Vec<String>,
    folders: Vec<std::path::PathBuf>,
}

/// Fine-tunes and writes `cfg.out` (or, with `--cv`, only measures),
/// telling `progress` what happens.
pub(crate) async fn finetune(
    cfg: &FinetuneConfig,
    progress: Arc<dyn Progress>,
) -> Result<Outcome, FinetuneError> {
    let folders = sources::local_folders(&cfg.data, &cfg.data_fetch, progress.as_ref()).await?;
    let (train, valid, source) =
        data::train_and_valid(&folders, cfg.valid_fraction, cfg.train.seed)?;
    let pre = cfg.base.contract.preprocessing.clone();
    let opts = cfg.base.session.clone();
    let (probe, digest) = load::load_with(&cfg.base, DigestTiming::Now, move |model, _| {
        Ok(Probe::open(model, pre.clone(), &opts))
    })
    .await?;
    let probe = probe?;
    let base_sha256 = digest.get().cloned().unwrap_or_default();
    let cfg = cfg.clone();
    let splits = Splits {
        train,
        valid,
        source,
        sources: cfg.data.iter().map(ToString::to_string).collect(),
        folders,
    };
    tokio::task::spawn_blocking(move || run(&cfg, &probe, base_sha256, splits, progress.as_ref()))
        .await?
}

/// The photos' features once settled: the originals of train/ and valid/,
/// the originals of the labels and of other things apart, and how long
/// extracting took.
struct Features {
    train: Labelled,
    valid: Labelled,
    photos: [features::Extracted; 2],
    others: [features::Extracted; 2],
    /// Training photos before augmenting.
    train_images: usize,
    skipped: Vec<String>,
    extract_s: f64,
}

/// The steps, in order.
fn run(
    cfg: &FinetuneConfig,
    probe: &Probe,
    base_sha256: String,
    mut splits: Splits,
    progress: &dyn Progress,
) -> Result<Outcome, FinetuneError> {
    let deduped = dedupe::dedupe([&mut splits.train, &mut splits.valid])?;
    if deduped != dedupe::Deduped::default() {
        progress.note(Note::Deduped {
            duplicates: deduped.duplicates,
            conflicting: &deduped.conflicting,
        });
    }
    let logits = probe.logits.as_deref();
    let plan = Plan::settle(cfg, logits, &mut splits.train, &mut splits.valid, progress)?;
    let corrected = corrections::find([&splits.train, &splits.valid]);
    let t0 = Instant::now();
    let mut extractor = Extractor::new(probe, progress);
    let mut train = extractor.run(&splits.train, View::Original, "train")?;
    let mut valid = extractor.run(&splits.valid, View::Original, "valid")?;
    plan.check_usable(&train.y)?;
    let domain = neither::domain(&plan, &train);
    let prior_groups = neither::prior_groups(&plan, domain.as_ref());
    train.set_prior(prior_groups.as_deref());
    valid.set_prior(prior_groups.as_deref());
    if let Some(k) = cfg.cv {
        let sets = [&train, &valid];
        let report = cross_validate(cfg, &plan, &mut extractor, &splits, sets, &prior_groups, k)?;
        return Ok(Outcome::CrossValidated(report));
    }
    // Each photo once, before augmenting: for the threshold and the figures.
    let photos = [&train, &valid].map(|s| s.select(|c| c < plan.pets).ex);
    let others = [&train, &valid].map(|s| s.select(|c| c >= plan.pets).ex);
    let train_images = train.y.len();
    for view in cfg.augment.views() {
        let mut more = extractor.run(&splits.train, view, "train")?;
        more.set_prior(prior_groups.as_deref());
        train.extend(more);
    }
    let features = Features {
        train,
        valid,
        photos,
        others,
        train_images,
        skipped: extractor.into_skipped(),
        extract_s: t0.elapsed().as_secs_f64(),
    };
    if !features.skipped.is_empty() {
        progress.note(Note::Skipped(features.skipped.len()));
    }
    progress.note(Note::Plan {
        train: train_images,
        augment: cfg.augment,
        valid: features.valid.y.len(),
        source: splits.source,
        init: plan.init,
    });
    let t1 = Instant::now();
    let (trained, history) = train_head(cfg, &plan, &features, progress);
    let train_s = t1.elapsed().as_secs_f64();
    let judged = judge(
        cfg, &plan, &domain, &features, &splits, &corrected, &trained, progress,
    );
    let Judged {
        rejection,
        neither,
        corrections,
        valid_accuracy,
        base_valid_accuracy,
    } = judged;
    let weak = evaluate::weakness(
        &cfg.accept,
        neither.as_ref(),
        valid_accuracy,
        base_valid_accuracy,
    );
    let summary = Summary {
        base: probe.model.uri.clone(),
        base_sha256,
        feature_tensor: probe.head.feature.clone(),
        feature_dim: probe.head.feature_dim,
        replaced: describe_replaced(&plan, &probe.head),
        labels: plan.answers.clone(),
        train_images: features.train_images,
        valid_images: features.valid.y.len(),
        valid_source: splits.source,
        init: plan.init,
        augment: cfg.augment,
        skipped: features.skipped,
        config: cfg.train,
        best_epoch: evaluate::best_epoch(&history),
        history,
        valid_accuracy,
        base_valid_accuracy,
        neither,
        corrections,
        data: splits.sources.clone(),
        duplicates: deduped.duplicates,
        conflicting: deduped.conflicting,
        data_folders: splits.folders.clone(),
        weak: weak.is_some(),
        extract_s: features.extract_s,
        train_s,
    };
    accept(cfg, weak, &summary, progress)?;
    let extras = write::Extras {
        rejection: rejection.as_ref(),
        prior_groups,
        domain: domain.as_ref(),
    };
    write::model(&cfg.out, probe, &plan, &trained, &summary, extras)?;
    Ok(Outcome::Written(Box::new(summary)))
}

/// The rejecting label's rule and the written model's answers, judged:
/// on the validation photos, on the user's photos and other things, and
/// on the corrected pictures.
struct Judged {
    rejection: Option<crate::model::contract::Rejection>,
    neither: Option<summary::NeitherSummary>,
    corrections: Option<summary::CorrectionsSummary>,
    valid_accuracy: f64,
    base_valid_accuracy: Option<f64>,
}

/// Fits the rejecting label's rule (kept above the pets people corrected
/// from it), then scores the written model's answers, telling `progress`.
#[allow(clippy::too_many_arguments)]
fn judge(
    cfg: &FinetuneConfig,
    plan: &Plan,
    domain: &Option<(Vec<i64>, &'static str)>,
    features: &Features,
    splits: &Splits,
    corrected: &[corrections::Corrected],
    trained: &SoftmaxHead,
    progress: &dyn Progress,
) -> Judged {
    let files = [&splits.train, &splits.valid];
    let keep = corrections::pets_said_neither(corrected, files, plan);
    let (photos, others) = (&features.photos, &features.others);
    let rule = neither::rule(cfg, plan, domain.as_ref(), photos, others, &keep);
    let (rejection, moved) = rule.unzip();
    let answers = evaluate::Answers::new(trained, plan, rejection.as_ref(), domain.as_ref());
    let neither = rejection.as_ref().map(|r| {
        let domain = domain.as_ref();
        let mut n = neither::summarize(plan, r, domain, &answers, photos, others, files);
        n.below_without_corrections = moved.flatten();
        n
    });
    if let Some(n) = &neither {
        let labels = &plan.answers[..plan.pets];
        progress.note(Note::Neither { summary: n, labels });
    }
    let sets = [&features.train, &features.valid];
    let corrections = corrections::summarize(corrected, files, sets, &answers, plan);
    if let Some(c) = &corrections {
        progress.note(Note::Corrections(c));
    }
    Judged {
        valid_accuracy: answers.accuracy(&features.valid, plan),
        base_valid_accuracy: evaluate::base_accuracy(plan, rejection.as_ref(), &features.valid),
        rejection,
        neither,
        corrections,
    }
}

/// `--cv K`: the candidate settings by k-fold cross-validation over train/
/// and valid/ (never test/), with every augmented copy. Measuring, not
/// training.
fn cross_validate(
    cfg: &FinetuneConfig,
    plan: &Plan,
    extractor: &mut Extractor,
    splits: &Splits,
    sets: [&Labelled; 2],
    prior_groups: &Option<Vec<Vec<i64>>>,
    k: usize,
) -> Result<cv::Report, FinetuneError> {
    if plan.rejecting {
        return Err(FinetuneError::Neither(
            "--cv measures the labels' head: run it without photos of other things".into(),
        ));
    }
    let mut views = Vec::new();
    for view in Augment::ALL.views() {
        let mut t = extractor.run(&splits.train, view, "train")?;
        let mut v = extractor.run(&splits.valid, view, "valid")?;
        t.set_prior(prior_groups.as_deref());
        v.set_prior(prior_groups.as_deref());
        views.push((view, [t.ex, v.ex]));
    }
    let pool = cv::Pool::new(&sets.map(|s| (&s.ex, &s.y)), &views);
    let zero_shot = plan.groups.is_some();
    Ok(cv::run(&pool, plan.labels.len(), k, cfg.train, zero_shot))
}

/// Trains the head on the classes it learns (the labels, and `neither`
/// when it is a trained class), reporting each epoch.
fn train_head(
    cfg: &FinetuneConfig,
    plan: &Plan,
    features: &Features,
    progress: &dyn Progress,
) -> (SoftmaxHead, Vec<EpochStats>) {
    let classes = plan.head_classes();
    let train = features.train.select(|c| c < classes);
    let valid = features.valid.select(|c| c < classes);
    let valid_set = (!valid.y.is_empty()).then(|| set(&valid));
    progress.event(Event::Training {
        epochs: cfg.train.epochs,
    });
    let trained = train::train(set(&train), classes, cfg.train, valid_set, |s| {
        progress.event(Event::Epoch(s));
    });
    progress.event(Event::TrainDone);
    trained
}

/// A labelled set as training reads it.
fn set(s: &Labelled) -> train::Set<'_> {
    train::Set {
        x: &s.ex.features,
        y: &s.y,
        prior: s.ex.prior.as_deref(),
    }
}

/// What the summary says was replaced in the base.
fn describe_replaced(plan: &Plan, head: &graph::FinalLayer) -> String {
    match plan.init {
        Init::ZeroShot => format!(
            "{} ({} nodes) kept, grouped, plus a trained correction",
            head.op,
            head.nodes.len()
        ),
        _ => format!("{} ({} nodes)", head.op, head.nodes.len()),
    }
}

/// A weak head is refused unless `--allow-weak` asked for it (then said).
fn accept(
    cfg: &FinetuneConfig,
    weak: Option<String>,
    summary: &Summary,
    progress: &dyn Progress,
) -> Result<(), FinetuneError> {
    match weak {
        Some(reason) if !cfg.accept.allow_weak => Err(FinetuneError::Weak {
            reason,
            summary: Box::new(summary.clone()),
        }),
        Some(reason) => {
            progress.note(Note::WritingWeak(&reason));
            Ok(())
        }
        None => Ok(()),
    }
}
