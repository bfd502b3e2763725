//! What fine-tuning tells whoever runs it, while it works. The library only
//! reports events; the binary draws them as progress bars and lines, the
//! notebook as lines.

use std::fmt;

use super::config::{Augment, Init, NeitherMode};
use super::data::ValidSource;
use super::summary::NeitherSummary;
use super::train::EpochStats;

/// Receives fine-tuning's events as they happen, on its worker thread.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event<'_>);

    fn note(&self, note: Note<'_>) {
        self.event(Event::Note(note));
    }
}

/// Logs a skipped file, as every host that draws the progress does (with
/// its progress bar, if any, out of the way).
pub fn log_skipped(file: &std::path::Path, error: &str) {
    tracing::warn!(file = %file.display(), error, "skipping a file that is not a usable picture");
}

/// One step of fine-tuning's work.
pub enum Event<'a> {
    /// A `--data` prefix in S3 is being mirrored: `total` files.
    Fetching { source: &'a str, total: usize },
    /// `n` more of its files are mirrored.
    Fetched(usize),
    /// The mirror is up to date.
    FetchDone,
    /// Features of one set of pictures are being extracted: `total` files.
    Extracting {
        set: &'a str,
        view: &'static str,
        total: usize,
    },
    /// `n` more files of that set went through the base.
    Extracted(usize),
    /// A file of that set is not a usable picture and is left out.
    Skipped {
        file: &'a std::path::Path,
        error: &'a str,
    },
    /// That set is done.
    ExtractDone,
    /// Training starts: at most `epochs` epochs (it stops early when the
    /// validation loss stops improving).
    Training { epochs: usize },
    /// One epoch's figures.
    Epoch(&'a EpochStats),
    /// Training is done.
    TrainDone,
    /// Something the user should read.
    Note(Note<'a>),
}

/// What the user should read, as a sentence ([`fmt::Display`]).
pub enum Note<'a> {
    /// The base has no evidence for the rejecting label and no photos of
    /// other things were given: the model answers only the labels.
    NoEvidence {
        label: &'a str,
        labels: &'a [String],
    },
    /// Files that were not usable pictures were left out.
    Skipped(usize),
    /// Too few photos of other things to learn `label` as a class: they set
    /// the threshold instead.
    FewOthers {
        label: &'a str,
        photos: usize,
        least: usize,
    },
    /// What the head is about to be trained on.
    Plan {
        train: usize,
        augment: Augment,
        valid: usize,
        source: ValidSource,
        init: Init,
    },
    /// The rejecting label's rule and what it answers on the photos.
    Neither {
        summary: &'a NeitherSummary,
        labels: &'a [String],
    },
    /// A weak head is written because `--allow-weak` asked for it.
    WritingWeak(&'a str),
    /// Copies of pictures were kept once, and pictures under two labels
    /// left out.
    Deduped {
        duplicates: usize,
        conflicting: &'a [std::path::PathBuf],
    },
    /// Corrected pictures were among the photos.
    Corrections(&'a super::summary::CorrectionsSummary),
}

impl fmt::Display for Note<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::NoEvidence { label, labels } => write!(
                f,
                "the base is not an ImageNet classifier, so it has no evidence for `{label}`: \
                 the model answers only {labels:?} (give photos of other things with --neither DIR \
                 to train `{label}` as a class)"
            ),
            Note::Skipped(n) => write!(f, "skipped {n} file(s) that are not usable pictures"),
            Note::FewOthers {
                label,
                photos,
                least,
            } => write!(
                f,
                "{photos} photo(s) of other things, fewer than the {least} a `{label}` class is \
                 trained from: they set the threshold instead (--neither-mode threshold)"
            ),
            Note::Plan {
                train,
                augment,
                valid,
                source,
                init,
            } => write!(
                f,
                "{train} training{} and {valid} validation photos ({}), head starts {}",
                augment.describe(),
                match source {
                    ValidSource::Folder => "valid/",
                    ValidSource::Carved => "carved from train/",
                },
                match init {
                    Init::ZeroShot => "from the base's zero-shot choice",
                    _ => "random",
                },
            ),
            Note::Neither { summary: n, labels } => neither(f, n, labels),
            Note::Deduped {
                duplicates,
                conflicting,
            } => {
                write!(
                    f,
                    "{duplicates} copies of a picture among the photos kept once"
                )?;
                if !conflicting.is_empty() {
                    write!(f, "; left out, under more than one label:")?;
                }
                for file in *conflicting {
                    write!(f, "\n  {}", file.display())?;
                }
                Ok(())
            }
            Note::Corrections(c) => {
                write!(
                    f,
                    "{} corrected picture(s) ({} trained on): the model that answered them \
                     had {} right, the new one has {} right",
                    c.pictures, c.trained_on, c.right_before, c.right_after
                )?;
                for file in &c.still_wrong {
                    write!(f, "\n  still wrong: {}", file.display())?;
                }
                Ok(())
            }
            Note::WritingWeak(reason) => {
                write!(f, "WARNING: writing a weak head (--allow-weak): {reason}")
            }
        }
    }
}

/// [`Note::Neither`]: the rule, what it answers on the photos, and each of
/// the user's photos it rejects.
fn neither(f: &mut fmt::Formatter<'_>, n: &NeitherSummary, labels: &[String]) -> fmt::Result {
    let rule = match n.mode {
        NeitherMode::Threshold => format!(
            "when the base gives the labels' classes less than {:.4} in all",
            n.below
        ),
        NeitherMode::Class => "as a trained class".to_string(),
    };
    write!(
        f,
        "`{}` {rule}: {} of the {} photos of {labels:?} and {} of {} photos of other \
         things answer `{}`",
        n.label, n.photos_rejected, n.photos, n.other_photos_rejected, n.other_photos, n.label,
    )?;
    if let Some(before) = n.below_without_corrections {
        write!(
            f,
            " (lowered from {before:.4} to keep the pets people corrected)"
        )?;
    }
    for file in &n.rejected_photos {
        write!(f, "\n  answered `{}`: {}", n.label, file.display())?;
    }
    Ok(())
}
