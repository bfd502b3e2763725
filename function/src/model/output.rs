//! From raw model outputs to answers: softmax (only when needed), labels, and
//! the ImageNet cat/dog grouping for label-less 1000-class models.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::model::contract::OutputKind;
use crate::model::imagenet;

/// How output rows are turned into labelled answers.
#[derive(Debug, Clone)]
pub enum Head {
    /// A model with its own class names, in output order.
    Labels(Vec<String>),
    /// A stock ImageNet-1k model: cat/dog by summed group probability,
    /// `neither` when the two groups together are below `neither_below`.
    ImageNet { neither_below: f32 },
}

impl Head {
    /// The labels answers can carry, in `scores` order.
    pub fn labels(&self) -> Vec<String> {
        match self {
            Head::Labels(l) => l.clone(),
            Head::ImageNet { .. } => vec!["cat".into(), "dog".into(), "neither".into()],
        }
    }
}

/// Scores per label, serialised as a JSON object in label order.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores(pub Vec<(String, f32)>);

impl Serialize for Scores {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Scores {
    pub fn get(&self, label: &str) -> Option<f32> {
        self.0.iter().find(|(k, _)| k == label).map(|(_, v)| *v)
    }
}

/// One ImageNet class in a top-k list.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TopClass {
    pub index: usize,
    pub name: String,
    pub probability: f32,
}

/// The answer for one picture.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Prediction {
    pub label: String,
    /// Probability of `label`.
    pub confidence: f32,
    /// Probability per label (they sum to 1).
    #[schema(value_type = std::collections::HashMap<String, f32>)]
    pub scores: Scores,
    /// For ImageNet models: the five most likely of the 1000 classes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imagenet_top5: Option<Vec<TopClass>>,
}

/// Numerically stable softmax.
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// True when `row` already is a probability distribution (all in [0, 1],
/// summing to 1): the model ends in a softmax and must not get another.
pub fn looks_like_probabilities(row: &[f32]) -> bool {
    let sum: f32 = row.iter().sum();
    row.iter().all(|v| (0.0..=1.0).contains(v)) && (sum - 1.0).abs() < 1e-3
}

/// Probabilities of one output row, given what the model says it outputs.
pub fn probabilities(row: &[f32], kind: Option<OutputKind>) -> Vec<f32> {
    match kind {
        Some(OutputKind::Probabilities) => row.to_vec(),
        Some(OutputKind::Logits) => softmax(row),
        None if looks_like_probabilities(row) => row.to_vec(),
        None => softmax(row),
    }
}

/// Builds the answer for one row of probabilities.
pub fn predict(head: &Head, probs: &[f32]) -> Prediction {
    match head {
        Head::Labels(labels) => {
            let scores: Vec<(String, f32)> =
                labels.iter().cloned().zip(probs.iter().copied()).collect();
            let (label, confidence) = argmax(&scores);
            Prediction {
                label,
                confidence,
                scores: Scores(scores),
                imagenet_top5: None,
            }
        }
        Head::ImageNet { neither_below } => {
            let g = imagenet::group(probs);
            let other = (1.0 - g.cat - g.dog).max(0.0);
            let (label, confidence) = if g.cat + g.dog < *neither_below {
                ("neither", other)
            } else if g.cat >= g.dog {
                ("cat", g.cat)
            } else {
                ("dog", g.dog)
            };
            Prediction {
                label: label.into(),
                confidence,
                scores: Scores(vec![
                    ("cat".into(), g.cat),
                    ("dog".into(), g.dog),
                    ("neither".into(), other),
                ]),
                imagenet_top5: Some(top_k(probs, 5)),
            }
        }
    }
}

fn argmax(scores: &[(String, f32)]) -> (String, f32) {
    scores
        .iter()
        .fold(None::<&(String, f32)>, |best, s| match best {
            Some(b) if b.1 >= s.1 => Some(b),
            _ => Some(s),
        })
        .map(|(l, p)| (l.clone(), *p))
        .unwrap_or_default()
}

/// The `k` most likely ImageNet classes, with names.
pub fn top_k(probs: &[f32], k: usize) -> Vec<TopClass> {
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
        let head = Head::Labels(vec!["cat".into(), "dog".into()]);
        let p = predict(&head, &[0.3, 0.7]);
        assert_eq!(p.label, "dog");
        assert_eq!(p.confidence, 0.7);
        assert_eq!(
            serde_json::to_string(&p.scores).unwrap(),
            r#"{"cat":0.3,"dog":0.7}"#
        );
    }

    #[test]
    fn imagenet_head_groups_and_says_neither() {
        let head = Head::ImageNet { neither_below: 0.2 };
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
