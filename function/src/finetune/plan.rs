//! The plan the command's choices, the photos and the base settle on
//! before any picture is run through the base: which classes there are
//! (photos of other things gathered as the last one), how the head starts,
//! and how `neither` is answered.

use super::config::{FinetuneConfig, Init, NeitherMode};
use super::data::{self, Split};
use super::error::{FinetuneError, NoZeroShot};
use super::progress::{Note, Progress};
use crate::model::imagenet;

/// Fewest photos of other things `neither` is trained from as a class.
pub(crate) const MIN_CLASS_PHOTOS: usize = 10;

/// What the choices, the photos and the base settle on before any picture
/// is run through the base.
pub(crate) struct Plan {
    /// The splits' labels, the rejecting one (when it has photos) last.
    pub(crate) labels: Vec<String>,
    /// The labels' own classes are `0..pets`; photos of other things are `pets`.
    pub(crate) pets: usize,
    /// Whether the splits hold photos of other things (class `pets`).
    pub(crate) rejecting: bool,
    /// The base classes each label gathers, when the head starts from the
    /// base's zero-shot choice.
    pub(crate) groups: Option<Vec<Vec<i64>>>,
    /// How the head actually starts (`Auto` resolved).
    pub(crate) init: Init,
    /// How the rejecting label is answered; `None`: it is not.
    pub(crate) mode: Option<NeitherMode>,
    /// What the model answers: the labels, then the rejecting one.
    pub(crate) answers: Vec<String>,
}

impl Plan {
    /// Gathers the rejecting class's photos into the splits (last), then
    /// settles how the head starts and how `neither` is answered.
    pub(crate) fn settle(
        cfg: &FinetuneConfig,
        logits: Option<&str>,
        train: &mut Split,
        valid: &mut Split,
        progress: &dyn Progress,
    ) -> Result<Plan, FinetuneError> {
        let rejecting = gather(cfg, train, valid)?;
        let labels = train.labels.clone();
        let pets = labels.len() - usize::from(rejecting);
        if pets < 2 {
            return Err(FinetuneError::Neither(format!(
                "needs at least two labels besides `{}`; train/ has {labels:?}",
                labels[labels.len() - 1]
            )));
        }
        let groups = match (cfg.init, zero_shot_groups(&labels[..pets], logits)) {
            (Init::Random, _) | (Init::Auto, Err(_)) => None,
            (_, Ok(groups)) => Some(groups),
            (Init::ZeroShot, Err(why)) => return Err(FinetuneError::NoZeroShot(why)),
        };
        let init = if groups.is_some() {
            Init::ZeroShot
        } else {
            Init::Random
        };
        let others = train.files.iter().chain(&valid.files);
        let others = others
            .filter(|(_, c)| rejecting && *c == labels.len() - 1)
            .count();
        let mode = match (&cfg.neither, rejecting, logits.is_some()) {
            (None, ..) => None,
            // A class is not learnt from a handful of photos (a few
            // corrections): they place the threshold instead.
            (Some(n), true, true) if n.mode == NeitherMode::Class && others < MIN_CLASS_PHOTOS => {
                progress.note(Note::FewOthers {
                    label: &n.label,
                    photos: others,
                    least: MIN_CLASS_PHOTOS,
                });
                Some(NeitherMode::Threshold)
            }
            (Some(n), true, true) => Some(n.mode),
            (Some(_), true, false) => Some(NeitherMode::Class),
            (Some(_), false, true) => Some(NeitherMode::Threshold),
            (Some(n), false, false) => {
                progress.note(Note::NoEvidence {
                    label: &n.label,
                    labels: &labels,
                });
                None
            }
        };
        let mut answers = labels[..pets].to_vec();
        if let (Some(_), Some(n)) = (mode, &cfg.neither) {
            answers.push(n.label.clone());
        }
        Ok(Plan {
            labels,
            pets,
            rejecting,
            groups,
            init,
            mode,
            answers,
        })
    }

    /// The head's classes: the labels, plus `neither` when it is a trained class.
    pub(crate) fn head_classes(&self) -> usize {
        match self.mode {
            Some(NeitherMode::Class) => self.pets + 1,
            _ => self.pets,
        }
    }

    /// The answer that is right for a photo of class `c`: its label, or the
    /// rejecting one for photos of other things.
    pub(crate) fn truth(&self, c: usize) -> usize {
        c.min(self.answers.len() - 1)
    }

    /// Every class has at least one usable picture among the rows `y`.
    pub(crate) fn check_usable(&self, y: &[usize]) -> Result<(), FinetuneError> {
        match (0..self.labels.len()).find(|c| !y.contains(c)) {
            Some(c) => Err(FinetuneError::NoUsable(self.labels[c].clone())),
            None => Ok(()),
        }
    }
}

/// The base classes each label gathers, when the head can start from the
/// base's zero-shot choice: an ImageNet base and the labels cat and dog.
fn zero_shot_groups(labels: &[String], logits: Option<&str>) -> Result<Vec<Vec<i64>>, NoZeroShot> {
    if logits.is_none() {
        return Err(NoZeroShot::NotImageNet);
    }
    let group = |label: &str| match label.to_ascii_lowercase().trim_end_matches('s') {
        "cat" => Some(imagenet::CAT_CLASSES.map(|i| i as i64).collect::<Vec<_>>()),
        "dog" => Some(imagenet::DOG_CLASSES.map(|i| i as i64).collect()),
        _ => None,
    };
    let groups: Option<Vec<Vec<i64>>> = labels.iter().map(|l| group(l)).collect();
    match groups {
        Some(g) if g.len() == 2 && g[0] != g[1] => Ok(g),
        _ => Err(NoZeroShot::Labels(labels.to_vec())),
    }
}

/// Adds the photos of other things (`--neither DIR`, or a train/ folder
/// named as the rejecting label) to the splits as their last class.
/// Returns whether there are any.
fn gather(
    cfg: &FinetuneConfig,
    train: &mut Split,
    valid: &mut Split,
) -> Result<bool, FinetuneError> {
    let Some(n) = &cfg.neither else {
        return Ok(false);
    };
    let rejecting = match &n.photos {
        Some(dir) => Some(data::add_class(
            train,
            valid,
            &n.label,
            dir,
            cfg.valid_fraction,
            cfg.train.seed,
        )?),
        None => train.labels.iter().position(|l| *l == n.label),
    };
    let Some(r) = rejecting else {
        return Ok(false);
    };
    let last = train.labels.len() - 1;
    let remap = |c: usize| match c {
        c if c == r => last,
        c if c > r => c - 1,
        c => c,
    };
    for split in [train, valid] {
        let label = split.labels.remove(r);
        split.labels.push(label);
        for f in split.files.iter_mut() {
            f.1 = remap(f.1);
        }
    }
    Ok(true)
}
