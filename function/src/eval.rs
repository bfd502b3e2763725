//! `catdog eval`: accuracy, per-class precision/recall, a confusion matrix and
//! the misclassified files of a model on a labelled folder (`DIR/<label>/*`).
//! ImageNet models are scored by their cat/dog/neither answer.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::files::classify_each;
use crate::finetune::data;
use crate::limits::Limits;
use crate::model::Classifier;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error("inference failed: {0}")]
    Model(#[from] crate::model::ModelError),
    #[error("no picture in {0} could be decoded")]
    Nothing(PathBuf),
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassStats {
    pub label: String,
    pub precision: Option<f64>,
    pub recall: f64,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub file: String,
    pub label: String,
    pub predicted: String,
    pub confidence: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub file: String,
    pub label: String,
    pub predicted: String,
    pub confidence: f32,
}

/// Everything `catdog eval` prints.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub total: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// Row names: the folder labels.
    pub labels: Vec<String>,
    /// Column names: what the model can answer.
    pub predicted_labels: Vec<String>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    pub per_class: Vec<ClassStats>,
    pub misclassified: Vec<Miss>,
    pub skipped: Vec<String>,
    pub answers: Vec<Answer>,
}

/// Scores `classifier` on every picture under `dir/<label>/`, and on
/// those under `others` (photos of other things) as its rejecting label
/// (`neither`), decoding `limits.max_batch` pictures at a time.
pub fn evaluate(
    classifier: &Classifier,
    dir: &Path,
    others: Option<&Path>,
    limits: &Limits,
) -> Result<EvalReport, EvalError> {
    let mut split = data::list_split(dir)?;
    if let Some(others) = others {
        let label = classifier
            .info()
            .rejection
            .as_ref()
            .map_or("neither".to_string(), |r| r.label.clone());
        let found = data::class_pictures(others)?;
        let class = split.class_of(&label);
        split.files.extend(found.into_iter().map(|p| (p, class)));
    }
    let cols = classifier.info().labels.clone();
    let mut confusion = vec![vec![0usize; cols.len()]; split.labels.len()];
    let mut answers = Vec::new();
    let mut skipped = Vec::new();
    let files: Vec<PathBuf> = split.files.iter().map(|(f, _)| f.clone()).collect();
    let mut label_of = split.files.iter().map(|(_, label)| *label);
    classify_each(classifier, &files, limits, crate::files::Explain::No, |a| {
        let label = label_of.next().unwrap_or(0);
        match a.outcome {
            Ok((_, p)) => {
                let col = cols.iter().position(|c| *c == p.label).unwrap_or(0);
                confusion[label][col] += 1;
                answers.push(Answer {
                    file: a.path.display().to_string(),
                    label: split.labels[label].clone(),
                    predicted: p.label,
                    confidence: p.confidence,
                });
            }
            Err(e) => skipped.push(format!("{}: {e}", a.path.display())),
        }
    })?;
    if answers.is_empty() {
        return Err(EvalError::Nothing(dir.to_path_buf()));
    }
    let correct = answers.iter().filter(|a| a.label == a.predicted).count();
    let per_class = split
        .labels
        .iter()
        .enumerate()
        .map(|(r, label)| {
            let support: usize = confusion[r].iter().sum();
            let col = cols.iter().position(|c| c == label);
            let tp = col.map_or(0, |c| confusion[r][c]);
            let predicted: usize = col.map_or(0, |c| confusion.iter().map(|row| row[c]).sum());
            ClassStats {
                label: label.clone(),
                precision: (predicted > 0).then(|| tp as f64 / predicted as f64),
                recall: if support > 0 {
                    tp as f64 / support as f64
                } else {
                    0.0
                },
                support,
            }
        })
        .collect();
    let misclassified = answers
        .iter()
        .filter(|a| a.label != a.predicted)
        .map(|a| Miss {
            file: a.file.clone(),
            label: a.label.clone(),
            predicted: a.predicted.clone(),
            confidence: a.confidence,
        })
        .collect();
    Ok(EvalReport {
        model: classifier.info().uri.clone(),
        total: answers.len(),
        correct,
        accuracy: correct as f64 / answers.len() as f64,
        labels: split.labels,
        predicted_labels: cols,
        confusion,
        per_class,
        misclassified,
        skipped,
        answers,
    })
}

impl EvalReport {
    /// The human-readable report.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "model: {}", self.model);
        let _ = writeln!(
            s,
            "accuracy: {}/{} = {:.1}%",
            self.correct,
            self.total,
            self.accuracy * 100.0
        );
        let _ = writeln!(
            s,
            "\n{:<12} {:>9} {:>7} {:>8}",
            "class", "precision", "recall", "support"
        );
        for c in &self.per_class {
            let p = c.precision.map_or("-".to_string(), |p| format!("{:.3}", p));
            let _ = writeln!(
                s,
                "{:<12} {:>9} {:>7.3} {:>8}",
                c.label, p, c.recall, c.support
            );
        }
        let _ = write!(
            s,
            "\nconfusion (rows: true, columns: predicted)\n{:<12}",
            ""
        );
        for c in &self.predicted_labels {
            let _ = write!(s, " {c:>8}");
        }
        s.push('\n');
        for (label, row) in self.labels.iter().zip(&self.confusion) {
            let _ = write!(s, "{label:<12}");
            for v in row {
                let _ = write!(s, " {v:>8}");
            }
            s.push('\n');
        }
        if !self.misclassified.is_empty() {
            let _ = writeln!(s, "\nmisclassified ({}):", self.misclassified.len());
            for m in &self.misclassified {
                let _ = writeln!(
                    s,
                    "  {}  true {} predicted {} ({:.3})",
                    m.file, m.label, m.predicted, m.confidence
                );
            }
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(
                s,
                "\nskipped ({}): {}",
                self.skipped.len(),
                self.skipped.join("; ")
            );
        }
        s
    }
}
