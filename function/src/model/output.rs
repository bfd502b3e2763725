//! From raw model outputs to answers: softmax (only when needed), labels, and
//! the ImageNet cat/dog grouping for label-less 1000-class models.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::model::contract::{OutputKind, Rejection};
use crate::model::imagenet;

/// How output rows are turned into labelled answers.
#[derive(Debug, Clone)]
pub(crate) enum AnswerRule {
    /// A model with its own class names, in output order, and the rule of
    /// its rejecting label when it has one (`neither`).
    Labels {
        labels: Vec<String>,
        rejection: Option<Rejection>,
    },
    /// A stock ImageNet-1k model: cat/dog by summed group probability,
    /// `neither` when the two groups together are below `neither_below`.
    ImageNet { neither_below: f32 },
}

impl AnswerRule {
    /// The labels answers can carry, in `scores` order.
    pub(crate) fn labels(&self) -> Vec<String> {
        match self {
            AnswerRule::Labels { labels, .. } => labels.clone(),
            AnswerRule::ImageNet { .. } => vec!["cat".into(), "dog".into(), "neither".into()],
        }
    }

    /// The rule of the label that means "none of the others", if any.
    pub(crate) fn rejection(&self) -> Option<Rejection> {
        match self {
            AnswerRule::Labels { rejection, .. } => rejection.clone(),
            AnswerRule::ImageNet { neither_below } => Some(Rejection {
                label: "neither".into(),
                below: *neither_below,
            }),
        }
    }
}

/// Scores per label, serialised as a JSON object in label order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scores(pub Vec<(String, f32)>);

impl Serialize for Scores {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// One ImageNet class in a top-k list.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct TopClass {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) probability: f32,
}

/// The answer for one picture.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Prediction {
    pub label: String,
    /// Probability of `label`.
    pub confidence: f32,
    /// Probability per label (they sum to 1).
    #[schema(value_type = std::collections::HashMap<String, f32>)]
    pub(crate) scores: Scores,
    /// For ImageNet models: the five most likely of the 1000 classes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) imagenet_top5: Option<Vec<TopClass>>,
    /// Why: only when asked (`explain=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<crate::model::explain::Explanation>,
}

/// Numerically stable softmax.
pub(crate) fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// True when `row` already is a probability distribution (all in [0, 1],
/// summing to 1): the model ends in a softmax and must not get another.
pub(crate) fn looks_like_probabilities(row: &[f32]) -> bool {
    let sum: f32 = row.iter().sum();
    row.iter().all(|v| (0.0..=1.0).contains(v)) && (sum - 1.0).abs() < 1e-3
}

/// Probabilities of one output row, given what the model says it outputs.
pub(crate) fn probabilities(row: &[f32], kind: Option<OutputKind>) -> Vec<f32> {
    match kind {
        Some(OutputKind::Probabilities) => row.to_vec(),
        Some(OutputKind::Logits) => softmax(row),
        None if looks_like_probabilities(row) => row.to_vec(),
        None => softmax(row),
    }
}

/// Builds the answer for one row of probabilities.
pub(crate) fn predict(head: &AnswerRule, probs: &[f32]) -> Prediction {
    let (scores, top5) = match head {
        AnswerRule::Labels { labels, .. } => (
            labels.iter().cloned().zip(probs.iter().copied()).collect(),
            None,
        ),
        AnswerRule::ImageNet { .. } => {
            let g = imagenet::group(probs);
            let other = (1.0 - g.cat - g.dog).max(0.0);
            (
                vec![
                    ("cat".into(), g.cat),
                    ("dog".into(), g.dog),
                    ("neither".into(), other),
                ],
                Some(top_k(probs, 5)),
            )
        }
    };
    let (label, confidence) = choose(&scores, head.rejection().as_ref());
    Prediction {
        label,
        confidence,
        scores: Scores(scores),
        imagenet_top5: top5,
        explanation: None,
    }
}

/// The answer among `scores`: the rejecting label when the others sum to
/// less than its `below`, else the most likely of the others (the first on
/// ties); without a rule, the most likely label.
fn choose(scores: &[(String, f32)], rejection: Option<&Rejection>) -> (String, f32) {
    let rejecting = rejection.and_then(|r| {
        let i = scores.iter().position(|(l, _)| *l == r.label)?;
        Some((i, r.below))
    });
    if let Some((i, below)) = rejecting {
        let evidence: f32 = scores
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (_, p))| p)
            .sum();
        if evidence < below {
            return scores[i].clone();
        }
    }
    scores
        .iter()
        .enumerate()
        .filter(|(j, _)| rejecting.is_none_or(|(i, _)| *j != i))
        .fold(None::<&(String, f32)>, |best, (_, s)| match best {
            Some(b) if b.1 >= s.1 => Some(b),
            _ => Some(s),
        })
        .cloned()
        .unwrap_or_default()
}

/// The `k` most likely ImageNet classes, with names.
pub(crate) fn top_k(probs: &[f32], k: usize) -> Vec<TopClass> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|a, b| probs[*b].total_cmp(&probs[*a]));
    let names = imagenet::class_names();
    idx.into_iter()
        .take(k)
        .map(|i| TopClass {
            index: i,
            name: names.get(i).copied().unwrap_or("?").to_string(),
            probability: probs[i],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_applied_once() {
        let logits = [2.0f32, 0.0];
        let p = probabilities(&logits, None);
        assert!((p[0] - 0.880797).abs() < 1e-5);
        // already probabilities: left alone, not squashed towards 0.5
        assert_eq!(probabilities(&[0.9, 0.1], None), vec![0.9, 0.1]);
        // explicit metadata wins over the guess
        assert!((probabilities(&[0.9, 0.1], Some(OutputKind::Logits))[0] - 0.689974).abs() < 1e-5);
    }

    #[test]
    fn labelled_head_takes_argmax() {
        let head = AnswerRule::Labels {
            labels: vec!["cat".into(), "dog".into()],
            rejection: None,
        };
        let p = predict(&head, &[0.3, 0.7]);
        assert_eq!(p.label, "dog");
        assert_eq!(p.confidence, 0.7);
        assert_eq!(
            serde_json::to_string(&p.scores).unwrap(),
            r#"{"cat":0.3,"dog":0.7}"#
        );
    }

    #[test]
    fn a_rejecting_label_answers_only_below_its_threshold() {
        let head = AnswerRule::Labels {
            labels: vec!["cat".into(), "neither".into(), "dog".into()],
            rejection: Some(Rejection {
                label: "neither".into(),
                below: 0.1,
            }),
        };
        // Most likely, but the others have more than 0.1 between them.
        let p = predict(&head, &[0.15, 0.8, 0.05]);
        assert_eq!((p.label.as_str(), p.confidence), ("cat", 0.15));
        let p = predict(&head, &[0.05, 0.92, 0.03]);
        assert_eq!((p.label.as_str(), p.confidence), ("neither", 0.92));
        // Without the rule the same row is an argmax.
        let plain = AnswerRule::Labels {
            labels: head.labels(),
            rejection: None,
        };
        assert_eq!(predict(&plain, &[0.15, 0.8, 0.05]).label, "neither");
    }

    #[test]
    fn imagenet_head_groups_and_says_neither() {
        let head = AnswerRule::ImageNet { neither_below: 0.2 };
        let mut probs = vec![0.0f32; 1000];
        probs[281] = 0.3; // tabby
        probs[285] = 0.2; // Egyptian cat
        probs[207] = 0.4; // golden retriever
        probs[1] = 0.1;
        let p = predict(&head, &probs);
        assert_eq!(p.label, "cat");
        assert!((p.confidence - 0.5).abs() < 1e-6);
        let top = p.imagenet_top5.unwrap();
        assert_eq!(top[0].name, "golden retriever");
        let mut probs = vec![0.0f32; 1000];
        probs[1] = 0.9; // goldfish
        probs[207] = 0.1;
        let p = predict(&head, &probs);
        assert_eq!(p.label, "neither");
        assert!((p.confidence - 0.9).abs() < 1e-6);
    }
}
