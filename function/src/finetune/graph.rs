//! Reading and editing the ONNX graph of a base classifier (with the
//! `onnx-protobuf` message types): find the final layer, expose its input as
//! the feature tensor, and write the model back with a new head.

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{
    AttributeProto, ModelProto, NodeProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use protobuf::Message;

/// Why a base model cannot be fine-tuned.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("not a valid ONNX model: {0}")]
    Parse(String),
    #[error("the model has no graph or no output")]
    Empty,
    #[error("cannot find the final layer: {0}")]
    NoHead(String),
}

/// The final layer found in a base graph.
#[derive(Debug, Clone)]
pub struct HeadInfo {
    /// Tensor feeding the final layer: the features we train on.
    pub feature: String,
    /// For int8 graphs (QLinearMatMul): the features' scale and zero point.
    pub quant: Option<(f32, i32)>,
    /// Width of the feature vector.
    pub feature_dim: usize,
    /// Classes of the base head.
    pub base_classes: usize,
    /// Indices of the nodes that make up the head (replaced on export).
    pub nodes: Vec<usize>,
    /// Op of the final layer (`Gemm`, `MatMul`, `QLinearMatMul`).
    pub op: String,
}

pub fn parse(bytes: &[u8]) -> Result<ModelProto, GraphError> {
    ModelProto::parse_from_bytes(bytes).map_err(|e| GraphError::Parse(e.to_string()))
}

fn initializer<'a>(model: &'a ModelProto, name: &str) -> Option<&'a TensorProto> {
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

/// Walks back from the graph output through Softmax / DequantizeLinear /
/// Identity / (QLinear)Add-with-a-constant to the Gemm, MatMul or
/// QLinearMatMul whose weight is an initializer: that is the final layer, and
/// its data input is the feature tensor (fc2's ReLU output for VGG16).
pub fn find_head(model: &ModelProto) -> Result<HeadInfo, GraphError> {
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
            "Softmax" | "DequantizeLinear" | "Identity" => cur = n.input[0].clone(),
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
                let w = initializer(model, &n.input[1])
                    .ok_or_else(|| GraphError::NoHead(format!("{}'s weight is not a constant", n.op_type)))?;
                let trans_b = n.attribute.iter().any(|a| a.name == "transB" && a.i == 1);
                let (f, c) = match (w.dims.as_slice(), trans_b) {
                    ([c, f], true) | ([f, c], false) => (*f as usize, *c as usize),
                    _ => return Err(GraphError::NoHead(format!("weight of rank {}", w.dims.len()))),
                };
                return Ok(HeadInfo { feature: n.input[0].clone(), quant: None, feature_dim: f, base_classes: c, nodes, op: n.op_type.clone() });
            }
            "QLinearMatMul" => {
                let w = initializer(model, &n.input[3]).ok_or_else(|| GraphError::NoHead("QLinearMatMul weight is not a constant".into()))?;
                let scale = initializer(model, &n.input[1]).and_then(scalar_f32);
                let zp = initializer(model, &n.input[2]).and_then(scalar_zero_point);
                let (Some(scale), Some(zp), [f, c]) = (scale, zp, w.dims.as_slice()) else {
                    return Err(GraphError::NoHead("QLinearMatMul without constant per-tensor input scale/zero point".into()));
                };
                return Ok(HeadInfo {
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

fn tensor_value_info(
    name: &str,
    elem: DataType,
    dims: Option<Vec<(Option<i64>, String)>>,
) -> ValueInfoProto {
    let mut tensor = onnx_protobuf::type_proto::Tensor::new();
    tensor.elem_type = elem as i32;
    if let Some(dims) = dims {
        let mut shape = TensorShapeProto::new();
        for (v, p) in dims {
            let mut d = onnx_protobuf::tensor_shape_proto::Dimension::new();
            match v {
                Some(v) => d.set_dim_value(v),
                None => d.set_dim_param(p),
            }
            shape.dim.push(d);
        }
        tensor.shape = protobuf::MessageField::some(shape);
    }
    let mut ty = TypeProto::new();
    ty.set_tensor_type(tensor);
    let mut vi = ValueInfoProto::new();
    vi.name = name.to_string();
    vi.type_ = protobuf::MessageField::some(ty);
    vi
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

/// A copy of the model that also outputs the feature tensor and, when given,
/// the base's logits (float).
pub fn with_feature_output(
    model: &ModelProto,
    head: &HeadInfo,
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
    m.write_to_bytes()
        .map_err(|e| GraphError::Parse(e.to_string()))
}

/// A head that starts from the base's own answer: each new class's score is
/// the log-sum-exp of the base's logits over its group of base classes.
#[derive(Debug, Clone)]
pub struct Prior {
    /// The base's logits tensor (see [`logits_tensor`]).
    pub logits: String,
    /// Per new class, the base classes it gathers.
    pub groups: Vec<Vec<i64>>,
}

/// A rejecting label after the trained ones: its score is the base's
/// probability that the picture is none of `domain`'s classes (`1 − p`), and
/// the trained labels' probabilities are scaled by `p`, so a row still sums
/// to 1.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The base's logits tensor (see [`logits_tensor`]).
    pub logits: String,
    /// The base classes the trained labels are about (cats and dogs).
    pub domain: Vec<i64>,
}

fn int64_tensor(name: &str, values: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.dims = vec![values.len() as i64];
    t.data_type = DataType::INT64 as i32;
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

/// The default domain's opset version of the model.
fn opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version)
}

fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.dims = dims.to_vec();
    t.data_type = DataType::FLOAT as i32;
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.to_string();
    n.name = format!("{output}_{}", op.to_lowercase());
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = vec![output.to_string()];
    n.attribute = attrs;
    n
}

fn int_attr(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = protobuf::EnumOrUnknown::new(onnx_protobuf::attribute_proto::AttributeType::INT);
    a.i = v;
    a
}

/// `ReduceLogSumExp` over axis 1, keeping it: the axes are an attribute
/// before opset 18, an input since.
fn log_sum_exp(g: &mut onnx_protobuf::GraphProto, opset: i64, input: &str, output: &str) {
    if opset >= 18 {
        let axes = format!("{output}.axes");
        g.initializer.push(int64_tensor(&axes, &[1]));
        g.node.push(node(
            "ReduceLogSumExp",
            &[input, &axes],
            output,
            vec![int_attr("keepdims", 1)],
        ));
    } else {
        let mut axes = AttributeProto::new();
        axes.name = "axes".into();
        axes.type_ =
            protobuf::EnumOrUnknown::new(onnx_protobuf::attribute_proto::AttributeType::INTS);
        axes.ints = vec![1];
        g.node.push(node(
            "ReduceLogSumExp",
            &[input],
            output,
            vec![axes, int_attr("keepdims", 1)],
        ));
    }
}

/// `Gather` of classes along axis 1, then their log-sum-exp: a group's score.
fn group_score(
    g: &mut onnx_protobuf::GraphProto,
    opset: i64,
    logits: &str,
    classes: &[i64],
    name: &str,
) {
    let idx = format!("{name}.classes");
    g.initializer.push(int64_tensor(&idx, classes));
    let gathered = format!("{name}.logits");
    g.node.push(node(
        "Gather",
        &[logits, &idx],
        &gathered,
        vec![int_attr("axis", 1)],
    ));
    log_sum_exp(g, opset, &gathered, name);
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
pub fn replace_head(
    model: &ModelProto,
    head: &HeadInfo,
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
    let first_dim = g.output[0].type_.as_ref().and_then(|t| {
        t.tensor_type()
            .shape
            .as_ref()
            .and_then(|s| s.dim.first().cloned())
    });
    let base_logits = prior
        .map(|p| p.logits.clone())
        .or_else(|| evidence.map(|e| e.logits.clone()));

    // When the base's logits are used only a final Softmax goes; otherwise
    // the whole old head.
    let drop: Vec<usize> = match base_logits {
        Some(_) => head
            .nodes
            .iter()
            .copied()
            .filter(|&i| g.node[i].op_type == "Softmax" && g.node[i].output.contains(&out_name))
            .collect(),
        None => head.nodes.clone(),
    };
    let removed: Vec<NodeProto> = drop.iter().map(|&i| g.node[i].clone()).collect();
    let mut keep = Vec::with_capacity(g.node.len());
    for (i, n) in std::mem::take(&mut g.node).into_iter().enumerate() {
        if !drop.contains(&i) {
            keep.push(n);
        }
    }
    g.node = keep;
    let still_used: std::collections::HashSet<String> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .collect();
    let head_inputs: std::collections::HashSet<String> = removed
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .collect();
    g.initializer
        .retain(|t| still_used.contains(&t.name) || !head_inputs.contains(&t.name));

    // The base's logits keep flowing; when they were the graph output, they
    // take another name so the output can be ours.
    let base_logits = base_logits.map(|logits| {
        if logits != out_name {
            return logits;
        }
        let renamed = "catdog_head.base_logits".to_string();
        for n in g.node.iter_mut() {
            for t in n.output.iter_mut().chain(n.input.iter_mut()) {
                if *t == out_name {
                    *t = renamed.clone();
                }
            }
        }
        renamed
    });

    let mut features = head.feature.clone();
    if let Some((scale, zp)) = head.quant {
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
        features = "catdog_head.features".to_string();
    }
    g.initializer.push(float_tensor(
        "catdog_head.weight",
        &[head.feature_dim as i64, classes as i64],
        weights,
    ));
    g.initializer
        .push(float_tensor("catdog_head.bias", &[classes as i64], bias));
    let gemm_out = if prior.is_some() {
        "catdog_head.correction"
    } else {
        "catdog_head.logits"
    };
    g.node.push(node(
        "Gemm",
        &[&features, "catdog_head.weight", "catdog_head.bias"],
        gemm_out,
        vec![],
    ));
    if let (Some(prior), Some(logits)) = (prior, base_logits.as_deref()) {
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
            &["catdog_head.prior", gemm_out],
            "catdog_head.logits",
            vec![],
        ));
    }
    let outputs = match (evidence, base_logits.as_deref()) {
        (Some(evidence), Some(logits)) => {
            // p = exp(LSE(domain) − LSE(all)); out = [probabilities · p, 1 − p].
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
            g.node.push(node(
                "Sub",
                &["catdog_head.domain.score", "catdog_head.all.score"],
                "catdog_head.domain.log_evidence",
                vec![],
            ));
            g.node.push(node(
                "Exp",
                &["catdog_head.domain.log_evidence"],
                "catdog_head.domain.evidence",
                vec![],
            ));
            g.initializer
                .push(float_tensor("catdog_head.one", &[], &[1.0]));
            g.node.push(node(
                "Mul",
                &["catdog_head.probabilities", "catdog_head.domain.evidence"],
                "catdog_head.in_domain",
                vec![],
            ));
            g.node.push(node(
                "Sub",
                &["catdog_head.one", "catdog_head.domain.evidence"],
                "catdog_head.rejected",
                vec![],
            ));
            g.node.push(node(
                "Concat",
                &["catdog_head.in_domain", "catdog_head.rejected"],
                &out_name,
                vec![int_attr("axis", 1)],
            ));
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
    let batch = first_dim.map(|d| {
        if d.has_dim_value() {
            (Some(d.dim_value()), String::new())
        } else if d.has_dim_param() {
            (None, d.dim_param().to_string())
        } else {
            (None, "N".to_string())
        }
    });
    g.output[0] = tensor_value_info(
        &out_name,
        DataType::FLOAT,
        Some(vec![
            batch.unwrap_or((None, "N".into())),
            (Some(outputs as i64), String::new()),
        ]),
    );
    // Value infos of the removed tensors would now be stale.
    let removed_outputs: std::collections::HashSet<String> = removed
        .iter()
        .flat_map(|n| n.output.iter().cloned())
        .collect();
    g.value_info.retain(|v| !removed_outputs.contains(&v.name));

    for (k, v) in metadata {
        m.metadata_props.retain(|p| p.key != *k);
        let mut p = StringStringEntryProto::new();
        p.key = k.to_string();
        p.value = v.clone();
        m.metadata_props.push(p);
    }
    m.write_to_bytes()
        .map_err(|e| GraphError::Parse(e.to_string()))
}

/// The serialized model `graph` with every tensor that refers to external
/// data in `location` given its bytes back from `base` (the whole model file
/// those references point into): one self-contained ONNX file.
pub fn inline_weights(graph: &[u8], base: &[u8], location: &str) -> Result<Vec<u8>, GraphError> {
    let mut m = parse(graph)?;
    for t in m.graph.mut_or_insert_default().initializer.iter_mut() {
        let get = |key: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.clone())
        };
        if get("location").as_deref() != Some(location) {
            continue;
        }
        let number = |key: &str| get(key).and_then(|v| v.parse::<usize>().ok());
        let (offset, length) = (number("offset").unwrap_or(0), number("length"));
        let bytes = length
            .and_then(|n| base.get(offset..offset.checked_add(n)?))
            .ok_or_else(|| {
                GraphError::Parse(format!("tensor `{}` points outside the model", t.name))
            })?;
        t.raw_data = bytes.to_vec();
        t.external_data.clear();
        t.data_location =
            protobuf::EnumOrUnknown::new(onnx_protobuf::tensor_proto::DataLocation::DEFAULT);
    }
    m.write_to_bytes()
        .map_err(|e| GraphError::Parse(e.to_string()))
}

/// Existing metadata value of a model.
pub fn metadata(model: &ModelProto, key: &str) -> Option<String> {
    model
        .metadata_props
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.clone())
}
