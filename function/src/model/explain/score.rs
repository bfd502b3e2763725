//! Which label the branch explains, and the gradient of that label's score
//! with respect to the features.
//!
//! A label's score is its logit: the trained layer's column, plus, for
//! heads that start from the base's answer (and for ImageNet's cat and dog
//! groups), the log-sum-exp of the base's logits over the label's group of
//! base classes. Both are linear in the features up to that log-sum-exp, so
//! the gradient is the trained column plus the base's weights averaged by
//! the softmax within the group: no general differentiation is needed.

use onnx_protobuf::ModelProto;

use super::dense::DenseValues;
use super::nodes::Nodes;
use super::steps::Weight;
use crate::model::weights::Stored;

/// The labels a branch can explain and how they are ranked.
#[derive(Debug, Clone)]
pub(crate) struct Targets {
    /// Each target's label (the rejecting label is never one).
    pub(crate) labels: Vec<String>,
    /// `[N, K]` scores whose softmax gives the model's probabilities (the
    /// logits, or the output when it has no Softmax of its own; either
    /// ranks the targets as the answer does).
    pub(crate) scores: String,
    /// `K`.
    pub(crate) width: usize,
    /// Per target, the columns of `scores` whose probabilities it sums.
    pub(crate) columns: Vec<Vec<usize>>,
}

impl Targets {
    /// A model's own labels (output column `i` is label `i`), all but the
    /// rejecting one.
    pub(crate) fn labelled(
        labels: &[String],
        rejecting: Option<&str>,
        scores: String,
        width: usize,
    ) -> Self {
        let kept: Vec<usize> = (0..labels.len())
            .filter(|&i| Some(labels[i].as_str()) != rejecting)
            .collect();
        Self {
            labels: kept.iter().map(|&i| labels[i].clone()).collect(),
            scores,
            width,
            columns: kept.iter().map(|&i| vec![i]).collect(),
        }
    }

    /// Each target's one output column, for targets made by
    /// [`Targets::labelled`].
    pub(crate) fn label_columns(&self) -> Vec<usize> {
        self.columns
            .iter()
            .filter_map(|c| c.first().copied())
            .collect()
    }
    /// Refuses targets the scores cannot hold (labels that do not match
    /// the model's outputs, which loading then reports on its own).
    pub(crate) fn check(&self) -> Result<(), super::ExplainGraphError> {
        let fits = self.columns.iter().flatten().all(|&c| c < self.width);
        if self.labels.is_empty() || self.labels.len() != self.columns.len() || !fits {
            return Err(super::ExplainGraphError::Unsupported(format!(
                "{} labels for {} outputs",
                self.labels.len(),
                self.width
            )));
        }
        Ok(())
    }

    /// The target explained per picture (`[N]`, int64): the most likely
    /// target, the first on ties, as the answer's rule chooses.
    pub(crate) fn choose(&self, n: &mut Nodes) -> String {
        let probabilities = n.op("Softmax", &[&self.scores], vec![Nodes::int_attr("axis", 1)]);
        let count = self.labels.len();
        let mut sums = vec![0f32; self.width * count];
        for (t, columns) in self.columns.iter().enumerate() {
            for &c in columns {
                sums[c * count + t] = 1.0;
            }
        }
        let sums = n.constant(&[self.width as i64, count as i64], &sums);
        let per_target = n.op("MatMul", &[&probabilities, &sums], vec![]);
        n.op(
            "ArgMax",
            &[&per_target],
            vec![Nodes::int_attr("axis", 1), Nodes::int_attr("keepdims", 0)],
        )
    }
}

/// A dense layer of the head.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) weight: Weight,
    /// Stored `[classes, features]` (Gemm's `transB`), else `[features, classes]`.
    pub(crate) transposed: bool,
}

/// What a target's score is made of.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScoreLayers {
    /// A layer trained for the targets, and each target's column of it.
    pub(crate) trained: Option<(Layer, Vec<i64>)>,
    /// The base's final layer, its logits (`[N, classes]`) and each
    /// target's group of its classes, whose log-sum-exp is part of the score.
    pub(crate) base: Option<Grouped>,
}

/// The base's layer and the groups of its classes.
#[derive(Debug, Clone)]
pub(crate) struct Grouped {
    pub(crate) layer: Layer,
    pub(crate) logits: String,
    pub(crate) groups: Vec<Vec<usize>>,
}

/// A log-probability that counts as impossible inside a softmax.
const EXCLUDED: f32 = -1e30;

impl ScoreLayers {
    /// `[N, F]`: per picture, the chosen target's score gradient; `None`
    /// when there is no layer to take it from. `model`'s weights (large
    /// ones in `stored`) are read where the branch can use them as
    /// constants.
    pub(crate) fn gradient(
        &self,
        n: &mut Nodes,
        chosen: &str,
        model: &ModelProto,
        stored: &Stored,
    ) -> Option<String> {
        let trained = self
            .trained
            .as_ref()
            .map(|(layer, columns)| trained_gradient(n, chosen, layer, columns, model, stored));
        let base = self
            .base
            .as_ref()
            .map(|grouped| base_gradient(n, chosen, grouped, model, stored));
        match (trained, base) {
            (Some(a), Some(b)) => Some(n.op("Add", &[&a, &b], vec![])),
            (one, other) => one.or(other),
        }
    }
}

/// `[N, F]`: the trained layer's column of each picture's chosen target.
fn trained_gradient(
    n: &mut Nodes,
    chosen: &str,
    layer: &Layer,
    columns: &[i64],
    model: &ModelProto,
    stored: &Stored,
) -> String {
    // Each target's column, read once as a row of floats
    // (`[targets, features]`), when the weights are at hand.
    let read =
        DenseValues::read(model, stored, &layer.weight, layer.transposed).and_then(|dense| {
            let wanted: Vec<usize> = columns.iter().map(|&c| c as usize).collect();
            let by_feature = dense.columns(&wanted)?;
            Some(rows_by_target(&by_feature, wanted.len()))
        });
    match read {
        Some((rows, features)) => {
            let dims = [columns.len() as i64, features as i64];
            let rows = n.constant(&dims, &rows);
            n.op("Gather", &[&rows, chosen], vec![Nodes::int_attr("axis", 0)])
        }
        None => {
            let columns = n.int64s(columns);
            let column = n.op(
                "Gather",
                &[&columns, chosen],
                vec![Nodes::int_attr("axis", 0)],
            );
            rows_of(n, layer, &column)
        }
    }
}

/// `[N, F]`: the base's weights of the chosen target's group of classes,
/// averaged by the softmax within the group.
fn base_gradient(
    n: &mut Nodes,
    chosen: &str,
    grouped: &Grouped,
    model: &ModelProto,
    stored: &Stored,
) -> String {
    // Only the groups' classes count (123 of ImageNet's 1000 for cat
    // and dog): their logits and weights alone are taken.
    let mut members: Vec<usize> = grouped.groups.iter().flatten().copied().collect();
    members.sort_unstable();
    members.dedup();
    let count = grouped.groups.len();
    let mut masks = vec![EXCLUDED; count * members.len()];
    for (t, group) in grouped.groups.iter().enumerate() {
        for c in group {
            if let Ok(at) = members.binary_search(c) {
                masks[t * members.len() + at] = 0.0;
            }
        }
    }
    let indices: Vec<i64> = members.iter().map(|&c| c as i64).collect();
    let indices = n.int64s(&indices);
    let logits = n.op(
        "Gather",
        &[&grouped.logits, &indices],
        vec![Nodes::int_attr("axis", 1)],
    );
    let masks = n.constant(&[count as i64, members.len() as i64], &masks);
    let mask = n.op(
        "Gather",
        &[&masks, chosen],
        vec![Nodes::int_attr("axis", 0)],
    );
    let within = n.op("Add", &[&logits, &mask], vec![]);
    let shares = n.op("Softmax", &[&within], vec![Nodes::int_attr("axis", 1)]);
    let layer = &grouped.layer;
    // The members' columns, read once here as floats `[features,
    // members]` (for an 8-bit head, dequantizing them on every run
    // cost more than the rest of the map); else gathered in the
    // branch, `[members, features]` when the layer is transposed.
    let read = DenseValues::read(model, stored, &layer.weight, layer.transposed)
        .and_then(|dense| Some((dense.inputs, dense.columns(&members)?)));
    let (weight, features_first) = match read {
        Some((features, columns)) => {
            let dims = [features as i64, members.len() as i64];
            (n.constant(&dims, &columns), true)
        }
        None => (
            layer.weight.outputs(n, &indices, layer.transposed),
            !layer.transposed,
        ),
    };
    // shares [N, members] · Wᵀ.
    n.op(
        "Gemm",
        &[&shares, &weight],
        vec![Nodes::int_attr("transB", i64::from(features_first))],
    )
}

/// `[features, targets]` row-major as `[targets, features]`, and the
/// number of features.
fn rows_by_target(by_feature: &[f32], targets: usize) -> (Vec<f32>, usize) {
    let features = by_feature.len() / targets.max(1);
    let mut rows = vec![0f32; by_feature.len()];
    for (f, row) in by_feature.chunks_exact(targets.max(1)).enumerate() {
        for (t, &v) in row.iter().enumerate() {
            rows[t * features + f] = v;
        }
    }
    (rows, features)
}

/// `[N, F]`: the layer's weights of each picture's `column` (`[N]`).
fn rows_of(n: &mut Nodes, layer: &Layer, column: &str) -> String {
    let picked = layer.weight.outputs(n, column, layer.transposed);
    if layer.transposed {
        picked
    } else {
        n.op(
            "Transpose",
            &[&picked],
            vec![Nodes::ints_attr("perm", &[1, 0])],
        )
    }
}
