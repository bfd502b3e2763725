//! Finding what a base graph is made of: its final layer (the head we
//! replace) and the tensor holding its raw class scores.

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{ModelProto, TensorProto};

use super::GraphError;

/// The final layer found in a base graph.
#[derive(Debug, Clone)]
pub struct FinalLayer {
    /// Tensor feeding the final layer: the features we train on.
    pub(crate) feature: String,
    /// For int8 graphs (QLinearMatMul): the features' scale and zero point.
    pub(crate) quant: Option<(f32, i32)>,
    /// Width of the feature vector.
    pub(crate) feature_dim: usize,
    /// Classes of the base head.
    pub(crate) base_classes: usize,
    /// Indices of the nodes that make up the head (replaced on export).
    pub nodes: Vec<usize>,
    /// Op of the final layer (`Gemm`, `MatMul`, `QLinearMatMul`).
    pub(crate) op: String,
}

pub(crate) fn initializer<'a>(model: &'a ModelProto, name: &str) -> Option<&'a TensorProto> {
    model.graph.initializer.iter().find(|t| t.name == name)
}

fn scalar_f32(t: &TensorProto) -> Option<f32> {
    t.float_data.first().copied().or_else(|| {
        t.raw_data
            .get(..4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    })
}

fn scalar_zero_point(t: &TensorProto) -> Option<i32> {
    t.int32_data.first().copied().or_else(|| {
        let b = *t.raw_data.first()?;
        Some(if t.data_type == DataType::INT8 as i32 {
            i32::from(b as i8)
        } else {
            i32::from(b)
        })
    })
}

/// Walks back from the graph output through Softmax / (De)QuantizeLinear /
/// Identity / (QLinear)Add-with-a-constant to the Gemm, MatMul or
/// QLinearMatMul whose weight is an initializer (or, in a QDQ model, the
/// DequantizeLinear of one): that is the final layer, and its data input is
/// the feature tensor (fc2's ReLU output for VGG16).
pub fn find_head(model: &ModelProto) -> Result<FinalLayer, GraphError> {
    let graph = model.graph.as_ref().ok_or(GraphError::Empty)?;
    let out = graph.output.first().ok_or(GraphError::Empty)?;
    let producer = |name: &str| {
        graph
            .node
            .iter()
            .position(|n| n.output.iter().any(|o| o == name))
    };
    let is_const = |name: &str| initializer(model, name).is_some();
    let mut cur = out.name.clone();
    let mut nodes = Vec::new();
    for _ in 0..8 {
        let idx = producer(&cur)
            .ok_or_else(|| GraphError::NoHead(format!("no node produces `{cur}`")))?;
        let n = &graph.node[idx];
        nodes.push(idx);
        match n.op_type.as_str() {
            "Softmax" | "DequantizeLinear" | "QuantizeLinear" | "Identity" => {
                cur = n.input[0].clone()
            }
            "Add" => {
                cur = match (is_const(&n.input[0]), is_const(&n.input[1])) {
                    (false, true) => n.input[0].clone(),
                    (true, false) => n.input[1].clone(),
                    _ => return Err(GraphError::NoHead("the last Add does not add a constant bias".into())),
                }
            }
            "QLinearAdd" => {
                cur = match (is_const(&n.input[0]), is_const(&n.input[3])) {
                    (false, true) => n.input[0].clone(),
                    (true, false) => n.input[3].clone(),
                    _ => return Err(GraphError::NoHead("the last QLinearAdd does not add a constant bias".into())),
                }
            }
            "Gemm" | "MatMul" => {
                let w = constant_or_dequantized(model, &n.input[1])
                    .ok_or_else(|| GraphError::NoHead(format!("{}'s weight is not a constant", n.op_type)))?;
                let trans_b = n.attribute.iter().any(|a| a.name == "transB" && a.i == 1);
                let (f, c) = match (w.dims.as_slice(), trans_b) {
                    ([c, f], true) | ([f, c], false) => (*f as usize, *c as usize),
                    _ => return Err(GraphError::NoHead(format!("weight of rank {}", w.dims.len()))),
                };
                return Ok(FinalLayer { feature: n.input[0].clone(), quant: None, feature_dim: f, base_classes: c, nodes, op: n.op_type.clone() });
            }
            "QLinearMatMul" => {
                let w = initializer(model, &n.input[3]).ok_or_else(|| GraphError::NoHead("QLinearMatMul weight is not a constant".into()))?;
                let scale = initializer(model, &n.input[1]).and_then(scalar_f32);
                let zp = initializer(model, &n.input[2]).and_then(scalar_zero_point);
                let (Some(scale), Some(zp), [f, c]) = (scale, zp, w.dims.as_slice()) else {
                    return Err(GraphError::NoHead("QLinearMatMul without constant per-tensor input scale/zero point".into()));
                };
                return Ok(FinalLayer {
                    feature: n.input[0].clone(),
                    quant: Some((scale, zp)),
                    feature_dim: *f as usize,
                    base_classes: *c as usize,
                    nodes,
                    op: n.op_type.clone(),
                });
            }
            other => {
                return Err(GraphError::NoHead(format!(
                    "the output comes from {other}; expected a Gemm/MatMul(+Add)(+Softmax) classifier layer"
                )))
            }
        }
    }
    Err(GraphError::NoHead(
        "no Gemm/MatMul within 8 nodes of the output".into(),
    ))
}

/// The initializer `name`, or the one a DequantizeLinear makes `name` of.
pub(crate) fn constant_or_dequantized<'a>(
    model: &'a ModelProto,
    name: &str,
) -> Option<&'a TensorProto> {
    initializer(model, name).or_else(|| {
        let dq = model
            .graph
            .node
            .iter()
            .find(|n| n.op_type == "DequantizeLinear" && n.output.iter().any(|o| o == name))?;
        initializer(model, dq.input.first()?)
    })
}

/// The tensor holding the base's raw class scores: the graph output, or the
/// input of a final Softmax.
pub fn logits_tensor(model: &ModelProto) -> Option<String> {
    let g = model.graph.as_ref()?;
    let out = &g.output.first()?.name;
    match g.node.iter().find(|n| n.output.iter().any(|o| o == out)) {
        Some(n) if n.op_type == "Softmax" => n.input.first().cloned(),
        _ => Some(out.clone()),
    }
}

/// Existing metadata value of a model.
pub fn metadata(model: &ModelProto, key: &str) -> Option<String> {
    model
        .metadata_props
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.clone())
}
