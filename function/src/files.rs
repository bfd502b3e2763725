//! Classifying picture files: finding them (files as given, folders walked)
//! and running them through the classifier in batches. Shared by
//! `catdog predict` and the notebook, so both give the same answers.

use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::decode::{decode_file, DecodeLimits, FileDecodeError};
use crate::limits::Limits;
use crate::model::output::Prediction;
use crate::model::{Classifier, ModelError};

/// File extensions picked up when a folder is walked (any case).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp"];

/// Why the list of files could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{0}: no such file or folder")]
    Missing(PathBuf),
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
}

/// Files as given; folders walked with [`pictures_in`]: `predict`'s arguments.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, FilesError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(pictures_in(p)?);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(FilesError::Missing(p.clone()));
        }
    }
    Ok(out)
}

/// The pictures in `dir` and its sub-folders, sorted so runs are
/// repeatable: the one folder walker (`predict`, `eval`, fine-tuning's class
/// folders), so every command takes the same files from the same folder.
pub fn pictures_in(dir: &Path) -> Result<Vec<PathBuf>, FilesError> {
    let mut stack = vec![dir.to_path_buf()];
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| FilesError::Read(dir.clone(), e))?;
        for entry in entries {
            let path = entry.map_err(|e| FilesError::Read(dir.clone(), e))?.path();
            if is_hidden(&path) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if is_picture(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The one rule of which files are pictures: a name ending in one of
/// [`IMAGE_EXTENSIONS`]. What is inside is judged when it is decoded.
pub fn is_picture(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Hidden files and folders (`.DS_Store`, `._x.jpg`, `.git`) are not walked.
fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Whether answers carry their explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explain {
    No,
    /// With overlays at most `side` pixels a side.
    Overlays {
        side: u32,
    },
}

impl Explain {
    /// The overlays `catdog predict --explain` writes.
    pub const FILES: Explain = Explain::Overlays { side: 1024 };
}

/// One file's outcome: its upright RGB picture and answer, or why it was skipped.
#[derive(Debug)]
pub struct FileAnswer {
    pub path: PathBuf,
    pub outcome: Result<(RgbImage, Prediction), FileDecodeError>,
}

/// A chunk of decoded files: the usable pictures with their index in the
/// file list, and the others with why they were skipped.
pub struct Decoded {
    pub pictures: Vec<(usize, RgbImage)>,
    pub skipped: Vec<(usize, FileDecodeError)>,
}

/// Decodes `files` `chunk` at a time (so memory holds one chunk of
/// pictures), handing each chunk to `visit`. The one loop behind
/// `predict`, `eval` and fine-tuning's feature extraction.
pub fn decode_chunks<E>(
    files: &[PathBuf],
    chunk: usize,
    limits: DecodeLimits,
    mut visit: impl FnMut(Decoded) -> Result<(), E>,
) -> Result<(), E> {
    for (c, group) in files.chunks(chunk.max(1)).enumerate() {
        let mut decoded = Decoded {
            pictures: Vec::new(),
            skipped: Vec::new(),
        };
        for (k, f) in group.iter().enumerate() {
            let i = c * chunk.max(1) + k;
            match decode_file(f, limits) {
                Ok(p) => decoded.pictures.push((i, p)),
                Err(e) => decoded.skipped.push((i, e)),
            }
        }
        visit(decoded)?;
    }
    Ok(())
}

/// Decodes and classifies `files`, `limits.max_batch` at a time, handing
/// each file's answer to `visit` in file order. Unreadable pictures are
/// reported in their [`FileAnswer`] and the rest go on; an inference
/// failure ends the run. Blocking: call it off async workers.
pub fn classify_each(
    classifier: &Classifier,
    files: &[PathBuf],
    limits: &Limits,
    explain: Explain,
    mut visit: impl FnMut(FileAnswer),
) -> Result<(), ModelError> {
    decode_chunks(files, limits.max_batch, limits.decode, |chunk| {
        let (index, pictures): (Vec<usize>, Vec<RgbImage>) = chunk.pictures.into_iter().unzip();
        let preds = if pictures.is_empty() {
            Vec::new()
        } else if let Explain::Overlays { side } = explain {
            crate::explanation::classify_explained(classifier, &pictures, side)?
        } else {
            classifier.classify(&pictures)?.0
        };
        if preds.len() != pictures.len() {
            return Err(ModelError::Inference("fewer answers than pictures".into()));
        }
        let mut answers: Vec<(usize, FileAnswer)> = index
            .into_iter()
            .zip(pictures.into_iter().zip(preds))
            .map(|(i, answer)| {
                (
                    i,
                    FileAnswer {
                        path: files[i].clone(),
                        outcome: Ok(answer),
                    },
                )
            })
            .chain(chunk.skipped.into_iter().map(|(i, e)| {
                (
                    i,
                    FileAnswer {
                        path: files[i].clone(),
                        outcome: Err(e),
                    },
                )
            }))
            .collect();
        answers.sort_by_key(|(i, _)| *i);
        answers.into_iter().for_each(|(_, a)| visit(a));
        Ok(())
    })
}

/// [`classify_each`], collected.
pub fn classify_files(
    classifier: &Classifier,
    files: &[PathBuf],
    limits: &Limits,
    explain: Explain,
) -> Result<Vec<FileAnswer>, ModelError> {
    let mut out = Vec::with_capacity(files.len());
    classify_each(classifier, files, limits, explain, |a| out.push(a))?;
    Ok(out)
}

#[cfg(test)]
// Unit tests make scratch folders in the system's temporary folder; the
// rule that only settings reads the environment is for the running code.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_for_pictures_and_sorted() {
        let dir = std::env::temp_dir().join(format!("catdog-files-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("b")).unwrap();
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        for name in [
            "b/2.JPG",
            "1.png",
            "notes.txt",
            "b/3.webp",
            "._1.png",
            ".git/x.png",
        ] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let got = collect(std::slice::from_ref(&dir)).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["1.png", "b/2.JPG", "b/3.webp"]);
        assert!(matches!(
            collect(&[dir.join("nope")]),
            Err(FilesError::Missing(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
