//! The ONNX pieces a new head is built from: tensors, nodes, attributes,
//! and a group of classes' log-sum-exp score.

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{
    AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

pub(crate) fn tensor_value_info(
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

pub(crate) fn int64_tensor(name: &str, values: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.dims = vec![values.len() as i64];
    t.data_type = DataType::INT64 as i32;
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

/// The default domain's opset version of the model.
pub(crate) fn opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version)
}

/// A signed 8-bit tensor of `values` (each byte an `i8`).
pub(crate) fn int8_tensor(name: &str, dims: &[i64], values: &[u8]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.dims = dims.to_vec();
    t.data_type = DataType::INT8 as i32;
    t.raw_data = values.to_vec();
    t
}

pub(crate) fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.dims = dims.to_vec();
    t.data_type = DataType::FLOAT as i32;
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

pub(crate) fn node(
    op: &str,
    inputs: &[&str],
    output: &str,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.to_string();
    n.name = format!("{output}_{}", op.to_lowercase());
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = vec![output.to_string()];
    n.attribute = attrs;
    n
}

pub(crate) fn int_attr(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = protobuf::EnumOrUnknown::new(onnx_protobuf::attribute_proto::AttributeType::INT);
    a.i = v;
    a
}

/// `ReduceLogSumExp` over axis 1, keeping it: the axes are an attribute
/// before opset 18, an input since.
pub(crate) fn log_sum_exp(g: &mut GraphProto, opset: i64, input: &str, output: &str) {
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
pub(crate) fn group_score(
    g: &mut GraphProto,
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
