//! The photos' features as labelled rows: extracting a split through the
//! probe (originals or an augmented view), picking rows by class, adding
//! augmented copies.

use std::path::PathBuf;

use super::data::Split;
use super::error::FinetuneError;
use super::features::{self, Extracted, View};
use super::probe::Probe;
use super::progress::Progress;

/// Features of one split's usable pictures, with each row's class.
pub(crate) struct Labelled {
    pub(crate) ex: Extracted,
    pub(crate) y: Vec<usize>,
}

impl Labelled {
    /// The rows whose class passes `keep`.
    pub(crate) fn select(&self, keep: impl Fn(usize) -> bool) -> Labelled {
        let rows: Vec<usize> = (0..self.y.len()).filter(|&i| keep(self.y[i])).collect();
        let pick = |v: &Vec<Vec<f32>>| rows.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
        let ex = &self.ex;
        Labelled {
            ex: Extracted {
                features: pick(&ex.features),
                kept: rows.iter().map(|&i| ex.kept[i]).collect(),
                skipped: Vec::new(),
                prior: ex.prior.as_ref().map(pick),
                logits: ex.logits.as_ref().map(pick),
            },
            y: rows.iter().map(|&i| self.y[i]).collect(),
        }
    }

    /// Appends another extraction of the same kind (an augmented copy).
    pub(crate) fn extend(&mut self, more: Labelled) {
        let (ex, m) = (&mut self.ex, more.ex);
        ex.features.extend(m.features);
        ex.kept.extend(m.kept);
        if let (Some(p), Some(pm)) = (ex.prior.as_mut(), m.prior) {
            p.extend(pm);
        }
        if let (Some(l), Some(lm)) = (ex.logits.as_mut(), m.logits) {
            l.extend(lm);
        }
        self.y.extend(more.y);
    }

    /// Each row's prior for the head's classes (see [`Extracted::set_prior`]).
    pub(crate) fn set_prior(&mut self, groups: Option<&[Vec<i64>]>) {
        self.ex.set_prior(groups);
    }
}

/// Runs splits through the probe, collecting the files that are not
/// usable pictures (from the originals: augmented views skip the same ones).
pub(crate) struct Extractor<'a> {
    probe: &'a Probe,
    progress: &'a dyn Progress,
    skipped: Vec<String>,
}

impl<'a> Extractor<'a> {
    pub(crate) fn new(probe: &'a Probe, progress: &'a dyn Progress) -> Self {
        Extractor {
            probe,
            progress,
            skipped: Vec::new(),
        }
    }

    /// The features of `split` seen as `view`.
    pub(crate) fn run(
        &mut self,
        split: &Split,
        view: View,
        what: &str,
    ) -> Result<Labelled, FinetuneError> {
        let files: Vec<PathBuf> = split.files.iter().map(|(p, _)| p.clone()).collect();
        let ex = features::extract(self.probe, &files, view, what, self.progress)
            .map_err(FinetuneError::Features)?;
        if view == View::Original {
            self.skipped.extend(
                ex.skipped
                    .iter()
                    .map(|(p, e)| format!("{}: {e}", p.display())),
            );
        }
        let y = ex.kept.iter().map(|&i| split.files[i].1).collect();
        Ok(Labelled { ex, y })
    }

    /// The files left out, with why.
    pub(crate) fn into_skipped(self) -> Vec<String> {
        self.skipped
    }
}
