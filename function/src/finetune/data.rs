//! Labelled picture folders: `DIR/<split>/<label>/*` (train/, and valid/
//! when given) or `DIR/<label>/*` (all for training, as corrections are
//! stored), labels from folder names; several merged by label.

use std::path::{Path, PathBuf};

/// Why a data folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0}: no such folder (expected DIR/train/<label>/ or DIR/<label>/ with pictures)")]
    Missing(PathBuf),
    #[error("{0}: needs at least two class folders (besides the other sources'), found {1:?}")]
    TooFewClasses(PathBuf, Vec<String>),
    #[error("{}: no such folder", .0.display())]
    MissingFolder(PathBuf),
    #[error("class folder {} has no files (looked for {})", .0.display(), crate::files::IMAGE_EXTENSIONS.join(", "))]
    EmptyClass(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Walk(#[from] crate::files::FilesError),
    #[error("{split} has classes {found:?}, but train has {expected:?}")]
    ClassMismatch {
        split: String,
        found: Vec<String>,
        expected: Vec<String>,
    },
}

/// Files of one split with their class index, and the sorted class names.
#[derive(Debug, Clone)]
pub(crate) struct Split {
    pub(crate) labels: Vec<String>,
    pub(crate) files: Vec<(PathBuf, usize)>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Lists `dir`: one sub-folder per class (sorted by name), the pictures in
/// it (the one walker, [`crate::files::pictures_in`]).
pub(crate) fn list_split(dir: &Path) -> Result<Split, DataError> {
    list_classes(dir, 2)
}

/// [`list_split`], with at least `min_classes` class folders.
fn list_classes(dir: &Path, min_classes: usize) -> Result<Split, DataError> {
    if !dir.is_dir() {
        return Err(DataError::Missing(dir.to_path_buf()));
    }
    let mut labels: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with('.'))
        .collect();
    labels.sort();
    if labels.len() < min_classes.max(1) {
        return Err(DataError::TooFewClasses(dir.to_path_buf(), labels));
    }
    let mut files = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let class_dir = dir.join(label);
        let found = crate::files::pictures_in(&class_dir)?;
        if found.is_empty() {
            return Err(DataError::EmptyClass(class_dir));
        }
        files.extend(found.into_iter().map(|p| (p, i)));
    }
    Ok(Split { labels, files })
}

impl Split {
    /// This split and `other` as one: the labels of both (sorted), the
    /// files of both, in order.
    fn merge(self, other: Split) -> Split {
        let mut labels: Vec<String> = self.labels.iter().chain(&other.labels).cloned().collect();
        labels.sort();
        labels.dedup();
        let mut files = self.aligned(&labels);
        files.extend(other.aligned(&labels));
        Split { labels, files }
    }

    /// The files with their class indices in `labels` (a superset of its own).
    fn aligned(self, labels: &[String]) -> Vec<(PathBuf, usize)> {
        let to: Vec<usize> = self
            .labels
            .iter()
            .map(|l| labels.iter().position(|n| n == l).expect("a superset"))
            .collect();
        self.files.into_iter().map(|(p, c)| (p, to[c])).collect()
    }
}

/// Where the validation photos come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidSource {
    /// `DIR/valid/<label>/*`.
    Folder,
    /// Carved from `train/`: seeded, stratified.
    Carved,
}

/// The sources' training photos, merged, and a validation split: their
/// valid/ folders when any has one (classes among train's), else
/// `fraction` of each class set aside (seeded and stratified: at least one
/// photo per class, never the last). One source with train/ reads as it
/// always did.
pub(crate) fn train_and_valid(
    dirs: &[PathBuf],
    fraction: f64,
    seed: u64,
) -> Result<(Split, Split, ValidSource), DataError> {
    let (train, valid) = merged(dirs)?;
    if let Some(valid) = valid {
        let files = valid.aligned(&train.labels);
        let labels = train.labels.clone();
        return Ok((train, Split { labels, files }, ValidSource::Folder));
    }
    let mut rng = super::train::Rng::new(seed ^ 0x5EED_CA7D_0600);
    let (mut kept, mut carved) = (Vec::new(), Vec::new());
    for class in 0..train.labels.len() {
        let files: Vec<(PathBuf, usize)> = train
            .files
            .iter()
            .filter(|(_, c)| *c == class)
            .cloned()
            .collect();
        let (k, c) = carve(files, fraction, &mut rng);
        kept.extend(k);
        carved.extend(c);
    }
    kept.sort();
    carved.sort();
    let labels = train.labels;
    Ok((
        Split {
            labels: labels.clone(),
            files: kept,
        },
        Split {
            labels,
            files: carved,
        },
        ValidSource::Carved,
    ))
}

/// Every source's training photos (train/, or the class folders of a
/// source without one) and valid/ folders, each merged by label. The
/// classes of all sources together must be at least two.
fn merged(dirs: &[PathBuf]) -> Result<(Split, Option<Split>), DataError> {
    let (mut train, mut valid): (Option<Split>, Option<Split>) = (None, None);
    for dir in dirs {
        let (t, v) = if dir.join("train").is_dir() {
            list(dir)?
        } else {
            // Alone, a source needs two classes; beside others, one will do
            // (corrections of one label). None at all: not a photo folder.
            let classes = list_classes(dir, if dirs.len() == 1 { 2 } else { 1 });
            match classes {
                Err(DataError::TooFewClasses(_, found)) if found.is_empty() => {
                    return Err(DataError::Missing(dir.join("train")))
                }
                classes => (classes?, None),
            }
        };
        train = Some(match train {
            Some(acc) => acc.merge(t),
            None => t,
        });
        valid = match (valid, v) {
            (Some(acc), Some(v)) => Some(acc.merge(v)),
            (acc, v) => acc.or(v),
        };
    }
    let train = train.ok_or_else(|| DataError::Missing(PathBuf::from("(no --data)")))?;
    if train.labels.len() < 2 {
        let dir = dirs.first().cloned().unwrap_or_default();
        return Err(DataError::TooFewClasses(dir, train.labels));
    }
    if let Some(v) = &valid {
        if let Some(extra) = v.labels.iter().find(|l| !train.labels.contains(l)) {
            return Err(DataError::ClassMismatch {
                split: format!("valid (class {extra:?})"),
                found: v.labels.clone(),
                expected: train.labels.clone(),
            });
        }
    }
    Ok((train, valid))
}

/// `DIR/train` and, when present, `DIR/valid` (same classes required).
/// A shuffled `fraction` of one class's files (at least one, never the last).
fn carve<T>(mut files: Vec<T>, fraction: f64, rng: &mut super::train::Rng) -> (Vec<T>, Vec<T>) {
    rng.shuffle(&mut files);
    let n = files.len();
    let take = if n < 2 {
        0
    } else {
        ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
    };
    let carved = files.drain(..take).collect();
    (files, carved)
}

/// The pictures under a folder of one class: none is an error.
pub(crate) fn class_pictures(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    if !dir.is_dir() {
        return Err(DataError::MissingFolder(dir.to_path_buf()));
    }
    let found = crate::files::pictures_in(dir)?;
    if found.is_empty() {
        return Err(DataError::EmptyClass(dir.to_path_buf()));
    }
    Ok(found)
}

impl Split {
    /// The index of the class `label`, added after the others if new.
    pub(crate) fn class_of(&mut self, label: &str) -> usize {
        match self.labels.iter().position(|l| l == label) {
            Some(i) => i,
            None => {
                self.labels.push(label.to_string());
                self.labels.len() - 1
            }
        }
    }
}

/// Adds the pictures under `dir` to the class `label` — a new class after
/// the others, or more pictures of one that train/ already has — with a
/// seeded `fraction` of them in `valid`. Returns the class's index.
pub(crate) fn add_class(
    train: &mut Split,
    valid: &mut Split,
    label: &str,
    dir: &Path,
    fraction: f64,
    seed: u64,
) -> Result<usize, DataError> {
    let found = class_pictures(dir)?;
    let class = train.class_of(label);
    valid.class_of(label);
    let mut rng = super::train::Rng::new(seed ^ 0x0E17_11E2);
    let (kept, carved) = carve(found, fraction, &mut rng);
    train.files.extend(kept.into_iter().map(|p| (p, class)));
    valid.files.extend(carved.into_iter().map(|p| (p, class)));
    Ok(class)
}

pub(crate) fn list(dir: &Path) -> Result<(Split, Option<Split>), DataError> {
    let train = list_split(&dir.join("train"))?;
    let valid_dir = dir.join("valid");
    let valid = if valid_dir.is_dir() {
        let v = list_split(&valid_dir)?;
        if v.labels != train.labels {
            return Err(DataError::ClassMismatch {
                split: "valid".into(),
                found: v.labels,
                expected: train.labels,
            });
        }
        Some(v)
    } else {
        None
    };
    Ok((train, valid))
}
