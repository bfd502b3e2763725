//! The model contract: what a self-describing ONNX classifier tells us about
//! itself (class labels, input preprocessing, output kind), read from the ONNX
//! custom metadata and overridable from the CLI/env, and the one rule that
//! resolves each value. What a preprocessing spec *is* belongs to the
//! preprocessing layer ([`crate::preprocess::Preprocessing`]); the contract
//! only says where a model's spec comes from.
//!
//! Keys are documented in `models/README.md`; keep the two in step.

use serde::{Deserialize, Serialize};

use crate::preprocess::SpecError;

/// Metadata key holding a JSON array of class names in output order.
pub(crate) const KEY_LABELS: &str = "labels";
/// Metadata key holding a preset name (`caffe`, `torch`) or a JSON object.
pub(crate) const KEY_PREPROCESSING: &str = "preprocessing";
/// Metadata key saying whether outputs are `"logits"` or `"probabilities"`.
pub(crate) const KEY_OUTPUT: &str = "output";
/// Metadata key naming the model on the Open Inference Protocol routes
/// (`/v2/models/{name}`); [`DEFAULT_NAME`] without it.
pub(crate) const KEY_NAME: &str = "name";
/// The model's name when neither the settings nor the metadata give one.
pub(crate) const DEFAULT_NAME: &str = "catdog";
/// Metadata key holding the rule for a label that means "none of the
/// others" (a JSON [`Rejection`]).
pub(crate) const KEY_REJECTION: &str = "rejection";

/// Why a model's contract could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("`labels` must be a JSON array of strings (got {0})")]
    Labels(String),
    #[error(transparent)]
    Preprocessing(#[from] SpecError),
    #[error("`output` must be \"logits\" or \"probabilities\" (got {0:?})")]
    Output(String),
    #[error("`rejection` must be {{\"label\": one of the labels, \"below\": 0 to 1}} ({0})")]
    Rejection(String),
    #[error("`name` must be 1 to 128 letters, digits, `_`, `-` or `.`, not starting with `.` (got {0:?})")]
    Name(String),
}

/// The one rule for every contract value: what the user gave wins, then the
/// model's metadata, then the default; with where it came from
/// (`override`, `metadata` or `default`). `None` when none of them has it.
pub(crate) fn resolve<T, E: Into<ContractError>>(
    given: Option<T>,
    metadata: Option<&str>,
    parse: impl Fn(&str) -> Result<T, E>,
    default: Option<T>,
) -> Result<Option<(T, &'static str)>, ContractError> {
    Ok(match (given, metadata) {
        (Some(v), _) => Some((v, "override")),
        (None, Some(text)) => Some((parse(text).map_err(Into::into)?, "metadata")),
        (None, None) => default.map(|d| (d, "default")),
    })
}

/// Checks a model name: it is a path segment of the `/v2/models/{name}` routes.
pub(crate) fn parse_name(text: &str) -> Result<String, ContractError> {
    let name = text.trim();
    let ok = (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(ContractError::Name(name.to_string()))
    }
}

/// Whether the model's output already is a probability distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OutputKind {
    Logits,
    Probabilities,
}

impl OutputKind {
    pub(crate) fn parse(text: &str) -> Result<Self, ContractError> {
        match text.trim().trim_matches('"') {
            "logits" | "scores" => Ok(Self::Logits),
            "probabilities" | "softmax" => Ok(Self::Probabilities),
            other => Err(ContractError::Output(other.into())),
        }
    }
}

/// The rule of a label that means "none of the others" (`neither`): it is
/// the answer when the other labels' scores sum to less than `below`;
/// otherwise the answer is the most likely of the others. The model's
/// output keeps a score for it like any label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    /// The rejecting label, one of the model's labels.
    pub(crate) label: String,
    /// Below this summed score of the other labels (0–1), the answer is `label`.
    pub(crate) below: f32,
}

impl Rejection {
    /// Parses a `rejection` value and checks it against the model's labels.
    pub(crate) fn parse(text: &str, labels: &[String]) -> Result<Self, ContractError> {
        let r: Rejection = serde_json::from_str(text.trim())
            .map_err(|e| ContractError::Rejection(e.to_string()))?;
        if !(0.0..=1.0).contains(&r.below) {
            return Err(ContractError::Rejection(format!("below is {}", r.below)));
        }
        if !labels.contains(&r.label) {
            return Err(ContractError::Rejection(format!(
                "{:?} is not one of the labels {labels:?}",
                r.label
            )));
        }
        if labels.len() < 2 {
            return Err(ContractError::Rejection(
                "a model needs another label besides the rejecting one".into(),
            ));
        }
        Ok(r)
    }

    /// The metadata value.
    pub(crate) fn to_metadata(&self) -> String {
        serde_json::to_string(self).expect("a rejection serialises")
    }
}

/// Parses a `labels` value: a JSON array of non-empty, distinct strings.
pub(crate) fn parse_labels(text: &str) -> Result<Vec<String>, ContractError> {
    let labels: Vec<String> =
        serde_json::from_str(text.trim()).map_err(|e| ContractError::Labels(e.to_string()))?;
    if labels.is_empty() {
        return Err(ContractError::Labels("an empty array".into()));
    }
    if labels.iter().any(|l| l.trim().is_empty()) {
        return Err(ContractError::Labels("an empty name".into()));
    }
    let mut sorted = labels.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != labels.len() {
        return Err(ContractError::Labels("duplicate names".into()));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_checked() {
        assert_eq!(
            parse_labels(r#"["cat","dog"]"#).unwrap(),
            vec!["cat", "dog"]
        );
        assert!(parse_labels("[]").is_err());
        assert!(parse_labels(r#"["cat","cat"]"#).is_err());
        assert!(parse_labels(r#"{"0":"cat"}"#).is_err());
    }

    #[test]
    fn a_rejection_names_one_of_the_labels() {
        let labels: Vec<String> = ["cat", "dog", "neither"].map(String::from).to_vec();
        let r = Rejection::parse(r#"{"label":"neither","below":0.03}"#, &labels).unwrap();
        assert_eq!(r.label, "neither");
        assert_eq!(Rejection::parse(&r.to_metadata(), &labels).unwrap(), r);
        for bad in [
            r#"{"label":"other","below":0.03}"#,
            r#"{"label":"neither","below":1.5}"#,
            r#"{"label":"neither"}"#,
            r#"{"label":"neither","below":0.1,"extra":1}"#,
            "0.2",
        ] {
            assert!(Rejection::parse(bad, &labels).is_err(), "{bad}");
        }
        assert!(Rejection::parse(r#"{"label":"neither","below":0.1}"#, &labels[2..]).is_err());
    }

    #[test]
    fn names_are_path_segments() {
        assert_eq!(parse_name(" catdog-v2.1 ").unwrap(), "catdog-v2.1");
        for bad in ["", "a/b", "..", ".hidden", "café", "a b", &"x".repeat(129)] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }
}
