//! Recording the checks: the model answers each picture here, on the
//! uploader's machine, through the same code as `catdog predict`; those
//! answers are what a deployed version must give again.

use std::path::{Path, PathBuf};

use super::layout::{is_plain_name, Expected};
use super::{ChecksError, DEFAULT_TOLERANCE};
use crate::limits::Limits;
use crate::model::Classifier;

/// Each picture is one invoke of the new version, while its deployment waits.
pub(crate) const MAX_PICTURES: usize = 100;

/// An invoke carries at most 6 MB, and the picture goes in base64 (4/3 of
/// its size) inside the event.
pub(crate) const MAX_PICTURE_BYTES: usize = 4 << 20;

/// One picture as it will be stored: its bytes and its recorded answer.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) expected: Expected,
}

/// The model's answers to `files`, under distinct plain names; any picture
/// it cannot answer (unreadable, too large) is an error naming it, as a
/// check left out quietly would test less than asked. Blocking.
pub(crate) fn record(
    classifier: &Classifier,
    files: &[PathBuf],
    limits: &Limits,
) -> Result<Vec<Recorded>, ChecksError> {
    if files.len() > MAX_PICTURES {
        return Err(ChecksError::TooMany(files.len()));
    }
    let mut names = Vec::new();
    let mut read = Vec::with_capacity(files.len());
    for path in files {
        let bytes = std::fs::read(path).map_err(|e| picture_error(path, e.to_string()))?;
        if bytes.len() > MAX_PICTURE_BYTES {
            return Err(picture_error(
                path,
                format!(
                    "{} bytes, over the {} a check may have (it is sent inside a 6 MB invoke)",
                    bytes.len(),
                    MAX_PICTURE_BYTES
                ),
            ));
        }
        names.push(unique_name(path, &names));
        read.push(bytes);
    }
    let answers =
        crate::files::classify_files(classifier, files, limits, crate::files::Explain::No)?;
    let mut recorded = Vec::with_capacity(files.len());
    for ((answer, bytes), name) in answers.into_iter().zip(read).zip(names) {
        let (_, prediction) = answer
            .outcome
            .map_err(|reason| picture_error(&answer.path, reason.to_string()))?;
        recorded.push(Recorded {
            expected: Expected {
                name,
                sha256: crate::model::source::sha256_hex(&bytes),
                label: prediction.label.clone(),
                scores: prediction
                    .scores
                    .0
                    .iter()
                    .map(|(label, score)| (label.clone(), f64::from(*score)))
                    .collect(),
            },
            bytes,
        });
    }
    Ok(recorded)
}

/// Pictures whose answer another CPU may well change: the label wins by
/// less than twice the default tolerance (an int8 model's scores move by a
/// few hundredths from CPU to CPU). Clear pictures make steadier checks.
pub(crate) fn close_calls(recorded: &[Recorded]) -> Vec<String> {
    recorded
        .iter()
        .filter_map(|r| {
            let e = &r.expected;
            let own = *e.scores.get(&e.label)?;
            let runner_up = e
                .scores
                .iter()
                .filter(|(label, _)| **label != e.label)
                .map(|(_, s)| *s)
                .fold(f64::NEG_INFINITY, f64::max);
            let margin = own - runner_up;
            (0.0..2.0 * DEFAULT_TOLERANCE).contains(&margin).then(|| {
                format!(
                    "{}: {} by {margin:.3} only; another CPU may answer otherwise",
                    e.name, e.label
                )
            })
        })
        .collect()
}

/// The file's name, made distinct among `taken` (`a.jpg`, `a-2.jpg`, …)
/// and plain (a key under `KEY.checks/`).
fn unique_name(path: &Path, taken: &[String]) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| is_plain_name(n))
        .unwrap_or_else(|| "picture".into());
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
        _ => (name.clone(), String::new()),
    };
    let mut candidate = name;
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{stem}-{n}{ext}");
        n += 1;
    }
    candidate
}

fn picture_error(path: &Path, reason: String) -> ChecksError {
    ChecksError::Picture {
        file: path.display().to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_and_distinct() {
        let mut taken = Vec::new();
        for p in [
            "cats/a.jpg",
            "dogs/a.jpg",
            "more/a.jpg",
            "b",
            "x/.hidden.png",
        ] {
            let n = unique_name(Path::new(p), &taken);
            taken.push(n);
        }
        assert_eq!(taken, ["a.jpg", "a-2.jpg", "a-3.jpg", "b", "picture"]);
    }

    #[test]
    fn close_calls_are_named() {
        let at = |name: &str, cat: f64| Recorded {
            bytes: Vec::new(),
            expected: Expected {
                name: name.into(),
                sha256: String::new(),
                label: if cat >= 0.5 { "cat" } else { "dog" }.into(),
                scores: [("cat".to_string(), cat), ("dog".to_string(), 1.0 - cat)].into(),
            },
        };
        let notes = close_calls(&[
            at("clear.jpg", 0.97),
            at("close.jpg", 0.53),
            at("dog.jpg", 0.02),
        ]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("close.jpg: cat by 0.060"), "{notes:?}");
    }
}
