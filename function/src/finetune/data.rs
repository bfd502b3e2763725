//! A labelled picture folder: `DIR/<split>/<label>/*`, labels from folder names.

use std::path::{Path, PathBuf};

/// Why a data folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0}: no such folder (expected DIR/train/<label>/ with pictures)")]
    Missing(PathBuf),
    #[error("{0}: needs at least two class folders, found {1:?}")]
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
    if labels.len() < 2 {
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

/// Where the validation photos come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidSource {
    /// `DIR/valid/<label>/*`.
    Folder,
    /// Carved from `train/`: seeded, stratified.
    Carved,
}

/// `DIR/train` and a validation split: `DIR/valid` when it exists (same
/// classes required), else `fraction` of each class of `train/` set aside
/// (seeded and stratified: at least one photo per class, never the last).
pub(crate) fn train_and_valid(
    dir: &Path,
    fraction: f64,
    seed: u64,
) -> Result<(Split, Split, ValidSource), DataError> {
    let (train, valid) = list(dir)?;
    if let Some(valid) = valid {
        return Ok((train, valid, ValidSource::Folder));
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
