//! Explanations computed in the model's own graph, in the same ONNX Runtime
//! run as the answer: an `If` on a boolean input (`catdog.explain`, false
//! unless fed) holds the branch, so a run that does not ask costs what it
//! cost before (ONNX Runtime runs every node of a graph whatever outputs
//! are asked for, but only the taken branch of an `If`).
//!
//! The branch picks the label to explain (the most likely label that is not
//! the rejecting one: the answer itself, or for `neither` the strongest
//! other), takes that label's score gradient with respect to the features
//! ([`score`]), carries it back to the last feature map ([`tail`]) and
//! weighs the map's channels by it: Grad-CAM, which for a pooled head is
//! the class activation map (CAM).

pub(crate) mod at_load;
mod channel_sums;
mod dense;
mod nodes;
pub(crate) mod plan;
pub(crate) mod score;
mod steps;
pub(crate) mod tail;

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{AttributeProto, GraphProto, ModelProto, TensorProto};
use serde::{Deserialize, Serialize};

use crate::model::graph::build::{opset, tensor_value_info};
use crate::model::weights::Stored;
use nodes::Nodes;
pub(crate) use score::{Layer, ScoreLayers, Targets};
pub(crate) use steps::Weight;
pub(crate) use tail::Tail;

/// The boolean input that asks for the explanation (an initializer, so a
/// run that does not feed it gets `false`).
pub(crate) const FLAG: &str = "catdog.explain";
/// Output: per picture, the map before normalising (`[N, H, W]`, ≥ 0).
pub(crate) const MAP: &str = "catdog.explanation";
/// Output: per picture, which target was explained (`[N]`, an index into
/// the metadata's `labels`).
pub(crate) const TARGET: &str = "catdog.explained";
/// Metadata key: the method and the labels the targets stand for
/// ([`Explains`], JSON).
pub(crate) const METADATA_KEY: &str = "explanation";

/// How an explanation was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Class activation map: the feature map's channels weighted by the
    /// label's weights (a pooled head).
    Cam,
    /// The label score's gradient carried back through the dense layers.
    GradCam,
    /// The score's drop when each region is covered (any model).
    Occlusion,
}

impl Method {
    /// The method's name on the wire (`cam`, `grad-cam`, `occlusion`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Cam => "cam",
            Method::GradCam => "grad-cam",
            Method::Occlusion => "occlusion",
        }
    }
}

/// What a model's explanation branch says it does (its metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Explains {
    pub(crate) method: Method,
    /// Per target index, the label it explains.
    pub(crate) labels: Vec<String>,
}

/// One picture's explanation as the model computed it: a map over its
/// input (the picture as preprocessed), not yet normalised.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Heatmap {
    /// The label explained (for a rejecting answer, the strongest other).
    pub(crate) label: String,
    pub(crate) method: Method,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    /// Row-major, ≥ 0.
    pub(crate) values: Vec<f32>,
}

/// Why an answer was given, as an answer carries it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Explanation {
    /// The label explained: the answer's, or for a rejecting answer
    /// (`neither`) the strongest other label.
    pub label: String,
    pub method: Method,
    /// How much each region counted for `label`, in [0, 1]: rows of values
    /// covering the whole picture as sent (regions the preprocessing
    /// cropped away are 0).
    pub grid: Vec<Vec<f32>>,
    /// The picture with the grid over it, as a base64 PNG (at most 384
    /// pixels a side on the HTTP API); absent when no picture was sent
    /// (tensors).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Byte)]
    pub overlay_png: Option<Png>,
}

/// PNG bytes, written as base64 in JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Png(pub Vec<u8>);

impl Serialize for Png {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

/// Why a graph gets no explanation branch (it is then explained by occlusion).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ExplainGraphError {
    #[error("the model has no graph")]
    Empty,
    #[error("it already has an explanation branch")]
    AlreadyThere,
    #[error("its shape is not one catdog can explain in the graph: {0}")]
    Unsupported(String),
}

/// Everything the branch is built from.
pub(crate) struct Plan {
    /// The final layer's input: the features.
    pub(crate) features: String,
    pub(crate) targets: Targets,
    pub(crate) layers: ScoreLayers,
}

/// Adds the explanation branch to `model` (whose large weights `stored`
/// holds); returns what it explains.
pub(crate) fn add_branch(
    model: &mut ModelProto,
    stored: &Stored,
    plan: &Plan,
) -> Result<Explains, ExplainGraphError> {
    let graph = model.graph.as_ref().ok_or(ExplainGraphError::Empty)?;
    if graph.output.iter().any(|o| o.name == MAP) {
        return Err(ExplainGraphError::AlreadyThere);
    }
    plan.targets.check()?;
    let started = std::time::Instant::now();
    let tail = Tail::find(model, stored, &plan.features)?;
    let mut n = Nodes::new(opset(model));
    let chosen = plan.targets.choose(&mut n);
    let gradient = plan
        .layers
        .gradient(&mut n, &chosen, model, stored)
        .ok_or_else(|| {
            ExplainGraphError::Unsupported("no layer gives the labels' scores".into())
        })?;
    let map = tail.grad_cam(&mut n, &gradient);
    tracing::debug!(
        ops = n.nodes.len(),
        first_dense_summed = tail.sums_first_dense(),
        build_ms = started.elapsed().as_secs_f64() * 1e3,
        "explanation branch built"
    );
    let explains = Explains {
        method: if tail.is_pooled() {
            Method::Cam
        } else {
            Method::GradCam
        },
        labels: plan.targets.labels.clone(),
    };
    let then_branch = branch_graph(n, &map, &chosen);
    let else_branch = nothing_graph(opset(model));
    let g = model.graph.mut_or_insert_default();
    g.input
        .push(tensor_value_info(FLAG, DataType::BOOL, Some(vec![])));
    g.initializer.push(false_flag());
    g.node.push(if_node(then_branch, else_branch));
    g.output.push(tensor_value_info(
        MAP,
        DataType::FLOAT,
        Some(dims(&["N", "H", "W"])),
    ));
    g.output.push(tensor_value_info(
        TARGET,
        DataType::INT64,
        Some(dims(&["N"])),
    ));
    let meta = serde_json::to_string(&explains).unwrap_or_default();
    model.metadata_props.retain(|p| p.key != METADATA_KEY);
    let mut p = onnx_protobuf::StringStringEntryProto::new();
    p.key = METADATA_KEY.to_string();
    p.value = meta;
    model.metadata_props.push(p);
    Ok(explains)
}

/// Removes an explanation branch (before the graph is edited into another
/// model, whose branch is then built anew).
pub(crate) fn remove_branch(model: &mut ModelProto) {
    if let Some(g) = model.graph.as_mut() {
        g.node
            .retain(|n| !(n.op_type == "If" && n.output.iter().any(|o| o == MAP)));
        g.input.retain(|i| i.name != FLAG);
        g.initializer.retain(|t| t.name != FLAG);
        g.output.retain(|o| o.name != MAP && o.name != TARGET);
    }
    model.metadata_props.retain(|p| p.key != METADATA_KEY);
}

fn dims(names: &[&str]) -> Vec<(Option<i64>, String)> {
    names
        .iter()
        .map(|n| (None, format!("{FLAG}.{n}")))
        .collect()
}

/// The taken branch: its nodes, constants and two outputs.
fn branch_graph(mut n: Nodes, map: &str, chosen: &str) -> GraphProto {
    let map_out = format!("{MAP}.then");
    let target_out = format!("{TARGET}.then");
    n.op_into("Identity", &[map], &[&map_out], vec![]);
    n.op_into("Identity", &[chosen], &[&target_out], vec![]);
    let mut g = GraphProto::new();
    g.name = "catdog_explain".into();
    g.node = n.nodes;
    g.initializer = n.constants;
    g.output = vec![
        tensor_value_info(&map_out, DataType::FLOAT, Some(dims(&["N", "H", "W"]))),
        tensor_value_info(&target_out, DataType::INT64, Some(dims(&["N"]))),
    ];
    g
}

/// The branch a run takes when it does not ask: two empty outputs.
fn nothing_graph(opset: i64) -> GraphProto {
    let mut n = Nodes::new(opset);
    let map_out = format!("{MAP}.else");
    let target_out = format!("{TARGET}.else");
    let mut empty_map = TensorProto::new();
    empty_map.name = "empty_map".into();
    empty_map.data_type = DataType::FLOAT as i32;
    empty_map.dims = vec![0, 0, 0];
    let mut empty_target = TensorProto::new();
    empty_target.name = "empty_target".into();
    empty_target.data_type = DataType::INT64 as i32;
    empty_target.dims = vec![0];
    n.op_into(
        "Constant",
        &[],
        &[&map_out],
        vec![tensor_attr("value", empty_map)],
    );
    n.op_into(
        "Constant",
        &[],
        &[&target_out],
        vec![tensor_attr("value", empty_target)],
    );
    let mut g = GraphProto::new();
    g.name = "catdog_no_explanation".into();
    g.node = n.nodes;
    g.output = vec![
        tensor_value_info(&map_out, DataType::FLOAT, Some(dims(&["N", "H", "W"]))),
        tensor_value_info(&target_out, DataType::INT64, Some(dims(&["N"]))),
    ];
    g
}

fn false_flag() -> TensorProto {
    let mut t = TensorProto::new();
    t.name = FLAG.to_string();
    t.data_type = DataType::BOOL as i32;
    t.raw_data = vec![0];
    t
}

fn if_node(then_branch: GraphProto, else_branch: GraphProto) -> onnx_protobuf::NodeProto {
    let mut node = onnx_protobuf::NodeProto::new();
    node.op_type = "If".into();
    node.name = format!("{FLAG}.if");
    node.input = vec![FLAG.to_string()];
    node.output = vec![MAP.to_string(), TARGET.to_string()];
    node.attribute = vec![
        graph_attr("then_branch", then_branch),
        graph_attr("else_branch", else_branch),
    ];
    node
}

fn graph_attr(name: &str, g: GraphProto) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = protobuf::EnumOrUnknown::new(onnx_protobuf::attribute_proto::AttributeType::GRAPH);
    a.g = protobuf::MessageField::some(g);
    a
}

fn tensor_attr(name: &str, t: TensorProto) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = protobuf::EnumOrUnknown::new(onnx_protobuf::attribute_proto::AttributeType::TENSOR);
    a.t = protobuf::MessageField::some(t);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_methods_name_is_its_wire_name() {
        for m in [Method::Cam, Method::GradCam, Method::Occlusion] {
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
    }
}
