//! One new answer against its recorded one: the labels must be equal and
//! every score within the tolerance, over the same set of labels.

use std::collections::BTreeMap;

use super::layout::Expected;

/// What a deployed version answered to one picture.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub(crate) label: String,
    pub(crate) scores: BTreeMap<String, f64>,
    /// The model it answered with (`model.sha256` of the answer).
    pub(crate) model_sha256: Option<String>,
}

/// One way a new answer differs from the recorded one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Disagreement {
    #[error("label {got:?}, recorded {expected:?}")]
    Label { expected: String, got: String },
    #[error("score of {label:?} {got:.4}, recorded {expected:.4} (off by {off:.4}, more than {tolerance})", off = (got - expected).abs())]
    Score {
        label: String,
        expected: f64,
        got: f64,
        tolerance: f64,
    },
    #[error("no score for {0:?}, which was recorded")]
    MissingScore(String),
    #[error("a score for {0:?}, which was not recorded")]
    ExtraScore(String),
}

/// How `got` differs from `expected`; empty when it agrees. Scores are
/// compared as given (the model's f32, printed in JSON) within `tolerance`.
pub(crate) fn compare(expected: &Expected, got: &Answer, tolerance: f64) -> Vec<Disagreement> {
    let mut found = Vec::new();
    if got.label != expected.label {
        found.push(Disagreement::Label {
            expected: expected.label.clone(),
            got: got.label.clone(),
        });
    }
    for (label, &want) in &expected.scores {
        match got.scores.get(label) {
            None => found.push(Disagreement::MissingScore(label.clone())),
            // A NaN score is never within the tolerance: it disagrees too.
            Some(&have) if !within(have, want, tolerance) => found.push(Disagreement::Score {
                label: label.clone(),
                expected: want,
                got: have,
                tolerance,
            }),
            Some(_) => {}
        }
    }
    for label in got.scores.keys() {
        if !expected.scores.contains_key(label) {
            found.push(Disagreement::ExtraScore(label.clone()));
        }
    }
    found
}

fn within(have: f64, want: f64, tolerance: f64) -> bool {
    (have - want).abs() <= tolerance
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn expected(label: &str, s: &[(&str, f64)]) -> Expected {
        Expected {
            name: "a.jpg".into(),
            sha256: "00".into(),
            label: label.into(),
            scores: scores(s),
        }
    }

    fn answer(label: &str, s: &[(&str, f64)]) -> Answer {
        Answer {
            label: label.into(),
            scores: scores(s),
            model_sha256: None,
        }
    }

    #[test]
    fn within_the_tolerance_agrees_and_past_it_does_not() {
        let want = expected("cat", &[("cat", 0.9), ("dog", 0.1)]);
        assert!(compare(&want, &answer("cat", &[("cat", 0.94), ("dog", 0.06)]), 0.05).is_empty());
        let off = compare(&want, &answer("cat", &[("cat", 0.8), ("dog", 0.2)]), 0.05);
        assert_eq!(off.len(), 2, "{off:?}");
        assert!(
            off[0]
                .to_string()
                .contains("score of \"cat\" 0.8000, recorded 0.9000"),
            "{}",
            off[0]
        );
        assert!(compare(&want, &answer("cat", &[("cat", 0.9), ("dog", 0.1)]), 0.0).is_empty());
    }

    #[test]
    fn swapped_labels_missing_or_extra_scores_and_nan_disagree() {
        let want = expected("cat", &[("cat", 0.9), ("dog", 0.1)]);
        let swapped = compare(&want, &answer("dog", &[("cat", 0.1), ("dog", 0.9)]), 0.05);
        assert_eq!(
            swapped[0],
            Disagreement::Label {
                expected: "cat".into(),
                got: "dog".into()
            }
        );
        assert_eq!(swapped.len(), 3);
        let other = compare(
            &want,
            &answer("cat", &[("cat", 0.9), ("neither", 0.1)]),
            0.05,
        );
        assert_eq!(
            other,
            [
                Disagreement::MissingScore("dog".into()),
                Disagreement::ExtraScore("neither".into())
            ]
        );
        let nan = compare(
            &want,
            &answer("cat", &[("cat", f64::NAN), ("dog", 0.1)]),
            1.0,
        );
        assert_eq!(nan.len(), 1, "{nan:?}");
    }
}
