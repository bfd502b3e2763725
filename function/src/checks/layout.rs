//! The checks as they lie in S3, next to the model at KEY:
//!
//! - `KEY.checks.json`: the answers file ([`Checks`]): the model's SHA-256
//!   and, per picture, its name, its bytes' SHA-256, the label and every score;
//! - `KEY.checks/NAME`: each picture, as it was answered.
//!
//! The hook's policy may read these keys and no other (template.yaml).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the answers file's key ends with, after the model's key.
pub(crate) const ANSWERS_SUFFIX: &str = ".checks.json";

/// The answers file's `format`; another value is refused, not guessed at.
pub(crate) const FORMAT: &str = "catdog-checks/1";

/// The answers file: what a model answered to each picture, and which model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checks {
    pub(crate) format: String,
    /// The SHA-256 of the model that gave these answers: a deployed version
    /// answering with another model fails the checks, even if it agrees.
    pub(crate) model_sha256: String,
    /// Which catdog on which CPU architecture recorded them (for people).
    pub(crate) recorded_with: String,
    pub(crate) pictures: Vec<Expected>,
}

/// One picture and its recorded answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Expected {
    /// Its file name under `KEY.checks/`.
    pub(crate) name: String,
    /// Of its bytes: a picture replaced after recording fails the checks.
    pub(crate) sha256: String,
    pub(crate) label: String,
    pub(crate) scores: BTreeMap<String, f64>,
}

/// `KEY.checks.json` for the model at `model_key`.
pub(crate) fn answers_key(model_key: &str) -> String {
    format!("{model_key}{ANSWERS_SUFFIX}")
}

/// The key of picture `name`, beside the answers file `answers_key`
/// (`KEY.checks.json` → `KEY.checks/NAME`).
pub(crate) fn picture_key(answers_key: &str, name: &str) -> String {
    let folder = answers_key.strip_suffix(".json").unwrap_or(answers_key);
    format!("{folder}/{name}")
}

/// Whether `name` is one file name (no folder, nothing hidden): it becomes
/// a key under `KEY.checks/`, where the hook's policy lets it read.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

impl Checks {
    /// Parses and checks an answers file: the known format, at least one
    /// picture, plain and distinct names, a label and scores for each.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        let checks: Checks = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if checks.format != FORMAT {
            return Err(format!(
                "format {:?}, this catdog reads {FORMAT:?}",
                checks.format
            ));
        }
        if checks.pictures.is_empty() {
            return Err("it lists no pictures".into());
        }
        let mut seen = std::collections::HashSet::new();
        for p in &checks.pictures {
            if !is_plain_name(&p.name) {
                return Err(format!("{:?} is not a plain file name", p.name));
            }
            if !seen.insert(p.name.as_str()) {
                return Err(format!("{:?} is listed twice", p.name));
            }
            if !p.scores.contains_key(&p.label) {
                return Err(format!("{}: its label {:?} has no score", p.name, p.label));
            }
        }
        Ok(checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(pictures: serde_json::Value) -> Vec<u8> {
        serde_json::json!({
            "format": FORMAT, "model_sha256": "ab", "recorded_with": "catdog", "pictures": pictures,
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn keys_sit_next_to_the_model() {
        let answers = answers_key("models/catdog.onnx");
        assert_eq!(answers, "models/catdog.onnx.checks.json");
        assert_eq!(
            picture_key(&answers, "cat 1.jpg"),
            "models/catdog.onnx.checks/cat 1.jpg"
        );
    }

    #[test]
    fn a_file_that_could_let_a_check_pass_unseen_is_refused() {
        let good = serde_json::json!([{"name": "a.jpg", "sha256": "00", "label": "cat", "scores": {"cat": 0.9, "dog": 0.1}}]);
        assert_eq!(Checks::parse(&checks(good)).unwrap().pictures.len(), 1);
        for (pictures, says) in [
            (serde_json::json!([]), "no pictures"),
            (
                serde_json::json!([{"name": "../model.onnx", "sha256": "00", "label": "cat", "scores": {"cat": 1.0}}]),
                "plain file name",
            ),
            (
                serde_json::json!([
                    {"name": "a.jpg", "sha256": "00", "label": "cat", "scores": {"cat": 1.0}},
                    {"name": "a.jpg", "sha256": "00", "label": "cat", "scores": {"cat": 1.0}}
                ]),
                "twice",
            ),
            (
                serde_json::json!([{"name": "a.jpg", "sha256": "00", "label": "cat", "scores": {"dog": 1.0}}]),
                "has no score",
            ),
        ] {
            let err = Checks::parse(&checks(pictures)).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
        let other = br#"{"format": "catdog-checks/2", "model_sha256": "", "recorded_with": "", "pictures": []}"#;
        assert!(Checks::parse(other)
            .unwrap_err()
            .contains("catdog-checks/1"));
        assert!(Checks::parse(b"not json").is_err());
    }
}
