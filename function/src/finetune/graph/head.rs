//! Editing the base graph around its head: a copy that also outputs the
//! feature tensor (for extraction), and the model written back with the
//! trained head.

use std::collections::HashSet;

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{GraphProto, ModelProto, NodeProto, StringStringEntryProto, TensorProto};

use crate::model::graph::build::{
    float_tensor, group_score, int_attr, log_sum_exp, node, opset, tensor_value_info,
};
use crate::model::graph::{serialize, FinalLayer, GraphError};

/// A copy of the model that also outputs the feature tensor and, when given,
/// the base's logits (float).
pub(crate) fn with_feature_output(
    model: &ModelProto,
    head: &FinalLayer,
    logits: Option<&str>,
) -> Result<Vec<u8>, GraphError> {
    let mut m = model.clone();
    let elem = if head.quant.is_some() {
        DataType::UINT8
    } else {
        DataType::FLOAT
    };
    let g = m.graph.mut_or_insert_default();
    g.output.push(tensor_value_info(&head.feature, elem, None));
    if let Some(l) = logits.filter(|l| !g.output.iter().any(|o| o.name == *l)) {
        g.output.push(tensor_value_info(l, DataType::FLOAT, None));
    }
    serialize(&m)
}

/// What the base's logits are renamed to when they were the graph's output
/// (the new head's output takes that name).
pub(crate) const BASE_LOGITS: &str = "catdog_head.base_logits";

/// A head that starts from the base's own answer: each new class's score is
/// the log-sum-exp of the base's logits over its group of base classes.
#[derive(Debug, Clone)]
pub(crate) struct Prior {
    /// The base's logits tensor (see [`super::logits_tensor`]).
    pub(crate) logits: String,
    /// Per new class, the base classes it gathers.
    pub(crate) groups: Vec<Vec<i64>>,
}

/// A rejecting label after the trained ones: its score is the base's
/// probability that the picture is none of `domain`'s classes (`1 − p`), and
/// the trained labels' probabilities are scaled by `p`, so a row still sums
/// to 1.
#[derive(Debug, Clone)]
pub(crate) struct Evidence {
    /// The base's logits tensor (see [`super::logits_tensor`]).
    pub(crate) logits: String,
    /// The base classes the trained labels are about (cats and dogs).
    pub(crate) domain: Vec<i64>,
}

/// The base model with its head replaced by `Gemm(weights [F×C], bias [C]) →
/// Softmax` (after a DequantizeLinear of the features for int8 graphs),
/// keeping the output name, plus `metadata` (replacing keys of the same name).
/// Initializers used only by the old head are dropped; all others are kept
/// untouched.
///
/// With a `prior`, the base's head stays: the new scores are the prior
/// (group log-sum-exp of the base's logits) plus the trained correction
/// `Gemm(features)`, then Softmax.
///
/// With `evidence`, a last column is added for the rejecting label (see
/// [`Evidence`]); the base's head stays for it as for a prior.
pub(crate) fn replace_head(
    model: &ModelProto,
    head: &FinalLayer,
    weights: &[f32],
    bias: &[f32],
    prior: Option<&Prior>,
    evidence: Option<&Evidence>,
    metadata: &[(&str, String)],
) -> Result<Vec<u8>, GraphError> {
    let opset = opset(model);
    let classes = bias.len();
    assert_eq!(weights.len(), head.feature_dim * classes, "weights are F×C");
    let mut m = model.clone();
    let g = m.graph.mut_or_insert_default();
    let out_name = g.output[0].name.clone();
    let batch = batch_dim(g);
    let base_logits = prior
        .map(|p| p.logits.clone())
        .or_else(|| evidence.map(|e| e.logits.clone()));
    let removed = drop_old_head(g, head, &out_name, base_logits.is_some());
    let base_logits = base_logits.map(|logits| free_output_name(g, logits, &out_name));
    let features = dequantized_features(g, head);
    let scores = add_trained_scores(
        g,
        &features,
        head.feature_dim,
        weights,
        bias,
        prior.is_some(),
    );
    if let (Some(prior), Some(logits)) = (prior, base_logits.as_deref()) {
        add_prior(g, opset, prior, logits, scores);
    }
    let outputs = match (evidence, base_logits.as_deref()) {
        (Some(evidence), Some(logits)) => {
            add_rejecting_column(g, opset, evidence, logits, &out_name);
            classes + 1
        }
        _ => {
            g.node.push(node(
                "Softmax",
                &["catdog_head.logits"],
                &out_name,
                vec![int_attr("axis", 1)],
            ));
            classes
        }
    };
    g.output[0] = tensor_value_info(
        &out_name,
        DataType::FLOAT,
        Some(vec![batch, (Some(outputs as i64), String::new())]),
    );
    let fed = drop_old_feeders(g, &removed);
    // Value infos of the removed tensors would now be stale.
    let removed_outputs: HashSet<&String> =
        removed.iter().chain(&fed).flat_map(|n| &n.output).collect();
    g.value_info.retain(|v| !removed_outputs.contains(&v.name));
    set_metadata(&mut m, metadata);
    serialize(&m)
}

/// The output's first dimension (the batch), as a value or a name.
fn batch_dim(g: &GraphProto) -> (Option<i64>, String) {
    let first = g.output[0].type_.as_ref().and_then(|t| {
        t.tensor_type()
            .shape
            .as_ref()
            .and_then(|s| s.dim.first().cloned())
    });
    match first {
        Some(d) if d.has_dim_value() => (Some(d.dim_value()), String::new()),
        Some(d) if d.has_dim_param() => (None, d.dim_param().to_string()),
        _ => (None, "N".to_string()),
    }
}

/// Removes the old head's nodes (only a final Softmax when the base's
/// logits keep flowing) and the initializers only they used. Returns the
/// removed nodes.
fn drop_old_head(
    g: &mut GraphProto,
    head: &FinalLayer,
    out_name: &str,
    keep_logits: bool,
) -> Vec<NodeProto> {
    let is_final_softmax =
        |n: &NodeProto| n.op_type == "Softmax" && n.output.iter().any(|o| o == out_name);
    let drop: Vec<usize> = if keep_logits {
        let nodes = head.nodes.iter().copied();
        nodes.filter(|&i| is_final_softmax(&g.node[i])).collect()
    } else {
        head.nodes.clone()
    };
    let mut removed = Vec::new();
    let mut kept = Vec::with_capacity(g.node.len());
    for (i, n) in std::mem::take(&mut g.node).into_iter().enumerate() {
        if drop.contains(&i) {
            removed.push(n);
        } else {
            kept.push(n);
        }
    }
    g.node = kept;
    removed
}

/// Once the new head is in: removes the nodes that only fed the old one
/// (in a QDQ model, the DequantizeLinear of its weight and bias) and what
/// only fed them, then the initializers only they read; returns the nodes.
fn drop_old_feeders(g: &mut GraphProto, removed: &[NodeProto]) -> Vec<NodeProto> {
    let mut head_inputs: HashSet<String> = removed.iter().flat_map(|n| n.input.clone()).collect();
    let mut fed = Vec::new();
    loop {
        let used: HashSet<&String> = g
            .node
            .iter()
            .flat_map(|n| &n.input)
            .chain(g.output.iter().map(|o| &o.name))
            .collect();
        let dead = g.node.iter().position(|n| {
            n.output.iter().any(|o| head_inputs.contains(o))
                && n.output.iter().all(|o| !used.contains(o))
        });
        let Some(dead) = dead else {
            break;
        };
        let node = g.node.remove(dead);
        head_inputs.extend(node.input.iter().cloned());
        fed.push(node);
    }
    let still_used: HashSet<&String> = g.node.iter().flat_map(|n| &n.input).collect();
    g.initializer
        .retain(|t| still_used.contains(&t.name) || !head_inputs.contains(&t.name));
    fed
}

/// The base's logits keep flowing; when they were the graph output, they
/// take another name so the output can be ours.
fn free_output_name(g: &mut GraphProto, logits: String, out_name: &str) -> String {
    if logits != out_name {
        return logits;
    }
    let renamed = BASE_LOGITS.to_string();
    for n in g.node.iter_mut() {
        for t in n.output.iter_mut().chain(n.input.iter_mut()) {
            if *t == out_name {
                *t = renamed.clone();
            }
        }
    }
    renamed
}

/// The feature tensor as float: int8 graphs' features go through a
/// DequantizeLinear first.
fn dequantized_features(g: &mut GraphProto, head: &FinalLayer) -> String {
    let Some((scale, zp)) = head.quant else {
        return head.feature.clone();
    };
    let scale_name = "catdog_head.features_scale";
    let zp_name = "catdog_head.features_zero_point";
    g.initializer.push(float_tensor(scale_name, &[], &[scale]));
    let mut z = TensorProto::new();
    z.name = zp_name.to_string();
    z.data_type = DataType::UINT8 as i32;
    z.raw_data = vec![zp as u8];
    g.initializer.push(z);
    g.node.push(node(
        "DequantizeLinear",
        &[&head.feature, scale_name, zp_name],
        "catdog_head.features",
        vec![],
    ));
    "catdog_head.features".to_string()
}

/// The trained `Gemm`: the logits, or with a prior the correction added to
/// it. Returns its output's name.
fn add_trained_scores(
    g: &mut GraphProto,
    features: &str,
    feature_dim: usize,
    weights: &[f32],
    bias: &[f32],
    correction: bool,
) -> &'static str {
    let classes = bias.len() as i64;
    g.initializer.push(float_tensor(
        "catdog_head.weight",
        &[feature_dim as i64, classes],
        weights,
    ));
    g.initializer
        .push(float_tensor("catdog_head.bias", &[classes], bias));
    let out = if correction {
        "catdog_head.correction"
    } else {
        "catdog_head.logits"
    };
    g.node.push(node(
        "Gemm",
        &[features, "catdog_head.weight", "catdog_head.bias"],
        out,
        vec![],
    ));
    out
}

/// `logits = concat(group scores of the base's logits) + correction`.
fn add_prior(g: &mut GraphProto, opset: i64, prior: &Prior, logits: &str, correction: &str) {
    let mut groups = Vec::new();
    for (c, classes) in prior.groups.iter().enumerate() {
        let score = format!("catdog_head.group{c}.score");
        group_score(g, opset, logits, classes, &score);
        groups.push(score);
    }
    let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    g.node.push(node(
        "Concat",
        &refs,
        "catdog_head.prior",
        vec![int_attr("axis", 1)],
    ));
    g.node.push(node(
        "Add",
        &["catdog_head.prior", correction],
        "catdog_head.logits",
        vec![],
    ));
}

/// The output with the rejecting label's column: with `p` the base's
/// evidence for the domain, `p = exp(LSE(domain) − LSE(all))`,
/// `out = [probabilities · p, 1 − p]`.
fn add_rejecting_column(
    g: &mut GraphProto,
    opset: i64,
    evidence: &Evidence,
    logits: &str,
    out_name: &str,
) {
    g.node.push(node(
        "Softmax",
        &["catdog_head.logits"],
        "catdog_head.probabilities",
        vec![int_attr("axis", 1)],
    ));
    group_score(
        g,
        opset,
        logits,
        &evidence.domain,
        "catdog_head.domain.score",
    );
    log_sum_exp(g, opset, logits, "catdog_head.all.score");
    let domain = "catdog_head.domain";
    let evidence = "catdog_head.domain.evidence";
    let log_evidence = "catdog_head.domain.log_evidence";
    let one = "catdog_head.one";
    g.node.push(node(
        "Sub",
        &[&format!("{domain}.score"), "catdog_head.all.score"],
        log_evidence,
        vec![],
    ));
    g.node.push(node("Exp", &[log_evidence], evidence, vec![]));
    g.initializer.push(float_tensor(one, &[], &[1.0]));
    g.node.push(node(
        "Mul",
        &["catdog_head.probabilities", evidence],
        "catdog_head.in_domain",
        vec![],
    ));
    g.node.push(node(
        "Sub",
        &[one, evidence],
        "catdog_head.rejected",
        vec![],
    ));
    g.node.push(node(
        "Concat",
        &["catdog_head.in_domain", "catdog_head.rejected"],
        out_name,
        vec![int_attr("axis", 1)],
    ));
}

/// Sets `metadata` on the model, replacing keys of the same name.
fn set_metadata(m: &mut ModelProto, metadata: &[(&str, String)]) {
    for (k, v) in metadata {
        m.metadata_props.retain(|p| p.key != *k);
        let mut p = StringStringEntryProto::new();
        p.key = k.to_string();
        p.value = v.clone();
        m.metadata_props.push(p);
    }
}
