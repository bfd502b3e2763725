//! One layer on the way back from a classifier's features to its last
//! feature map: reading it off the graph (flatten, transpose, ReLU, dense
//! layers in float or 8-bit form) and writing its backward pass as ONNX
//! nodes. Only layers whose gradient is exact and cheap are read; the
//! chain as a whole, from the pooling to the features, is the tail's.

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{GraphProto, ModelProto, NodeProto, TensorProto};

use super::nodes::Nodes;
use super::ExplainGraphError;
use crate::model::graph::inspect::initializer;

/// One layer on the way back, with what its backward pass needs.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// The gradient goes through unchanged (Identity, Dropout, a
    /// quantization boundary, adding a constant).
    Same,
    /// Flatten/Reshape/Squeeze/Unsqueeze: the gradient takes the input's
    /// shape. `flat`: the output is `[N, everything else]`.
    Reshape {
        input: String,
        flat: bool,
    },
    Transpose {
        perm: Vec<i64>,
    },
    /// ReLU: the gradient where the output is positive.
    Relu {
        output: String,
    },
    /// A QuantizeLinear right after a layer (a QDQ model's ReLU is often
    /// folded into it): the gradient where the 8-bit output is not clipped
    /// to the ends of its range (`low`, `high`).
    Clip {
        output: String,
        low: f32,
        high: f32,
    },
    /// An 8-bit dense layer read once ([`Nodes::int8_product`]): its
    /// values as `[out, in]` int8, and each output's scale times `alpha`.
    Int8Dense {
        by_output: ReadWeight,
        scales: ReadWeight,
    },
    /// `y = alpha · x · W` (W as stored, `[in, out]`, or `[out, in]` when
    /// `transposed`): `g_x = alpha · g · Wᵀ`.
    Dense {
        weight: Weight,
        transposed: bool,
        alpha: f32,
    },
}

impl Step {
    /// Whether it is a dense layer, in whatever form it was read.
    pub(super) fn is_dense(&self) -> bool {
        matches!(self, Step::Dense { .. } | Step::Int8Dense { .. })
    }
}

/// A constant weight matrix as the graph stores it, or read as floats.
#[derive(Debug, Clone)]
pub(crate) enum Weight {
    Float(String),
    /// Read when the branch was built, `[in, out]`: the branch holds it.
    Read(ReadWeight),
    /// 8-bit values with a scale and zero point per tensor or per column.
    Int8 {
        values: String,
        scale: String,
        /// Absent: 0 (a DequantizeLinear without one).
        zero: Option<String>,
        /// The matrix axis a per-output scale runs along (1: columns).
        axis: usize,
    },
}

/// A weight matrix read as floats (shared: a plan is cloned).
#[derive(Clone)]
pub(crate) struct ReadWeight(pub(super) std::sync::Arc<TensorProto>);

impl std::fmt::Debug for ReadWeight {
    // Its name and shape: the values are megabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadWeight({} {:?})", self.0.name, self.0.dims)
    }
}

impl Weight {
    /// The weight as floats, in the branch.
    pub(crate) fn float(&self, n: &mut Nodes) -> String {
        match self {
            Weight::Float(name) => name.clone(),
            Weight::Read(read) => {
                n.constants.push(TensorProto::clone(&read.0));
                read.0.name.clone()
            }
            Weight::Int8 {
                values,
                scale,
                zero,
                axis,
            } => {
                let to_float = || vec![Nodes::int_attr("to", DataType::FLOAT as i64)];
                // Per row: `[out]` becomes `[out, 1]`, to broadcast along rows.
                let along = |n: &mut Nodes, t: &str| match axis {
                    0 => {
                        let column = n.int64s(&[-1, 1]);
                        n.op("Reshape", &[t, &column], vec![])
                    }
                    _ => t.to_string(),
                };
                let q = n.op("Cast", &[values], to_float());
                let centred = match zero {
                    Some(zero) => {
                        let z = n.op("Cast", &[zero], to_float());
                        let z = along(n, &z);
                        n.op("Sub", &[&q, &z], vec![])
                    }
                    None => q,
                };
                let scale = along(n, scale);
                n.op("Mul", &[&centred, &scale], vec![])
            }
        }
    }

    /// Some of its columns (`[in, out]` stored) or rows (`transposed`,
    /// `[out, in]`), as floats, in the branch: only those are dequantized.
    /// `indices` is an int64 tensor of output positions.
    pub(crate) fn outputs(&self, n: &mut Nodes, indices: &str, transposed: bool) -> String {
        let axis = i64::from(!transposed);
        let gather = |n: &mut Nodes, t: &str| {
            n.op("Gather", &[t, indices], vec![Nodes::int_attr("axis", axis)])
        };
        match self {
            Weight::Float(name) => gather(n, name),
            Weight::Read(_) => {
                let all = self.float(n);
                gather(n, &all)
            }
            Weight::Int8 {
                values,
                scale,
                zero,
                ..
            } => {
                // Int8 weights come from QLinearMatMul: `[in, out]`, with a
                // scale and zero point per tensor or per output column.
                let picked = gather(n, values);
                let shape = n.op("Shape", &[values], vec![]);
                let out_axis = n.int64s(&[1]);
                let outs = n.op("Gather", &[&shape, &out_axis], vec![]);
                let per_output = |n: &mut Nodes, t: &str| {
                    let full = n.op("Expand", &[t, &outs], vec![]);
                    n.op(
                        "Gather",
                        &[&full, indices],
                        vec![Nodes::int_attr("axis", 0)],
                    )
                };
                let scale = per_output(n, scale);
                let zero = zero.as_ref().map(|z| per_output(n, z));
                Weight::Int8 {
                    values: picked,
                    scale,
                    zero,
                    axis: 1,
                }
                .float(n)
            }
        }
    }
}

/// `node` as a step, and the tensor the way back goes on from; `None` when
/// it is not a layer the way back passes through (the pooling, or anything
/// else: the caller decides).
pub(super) fn step_of(
    model: &ModelProto,
    node: &NodeProto,
) -> Result<Option<(Step, String)>, ExplainGraphError> {
    let input = node.input[0].clone();
    let step = match node.op_type.as_str() {
        "Identity" | "Dropout" | "DequantizeLinear" => Step::Same,
        "QuantizeLinear" => clip_of(model, node)?,
        "Add" => return Ok(Some((Step::Same, data_input(model, node, &[0, 1])?))),
        "QLinearAdd" => return Ok(Some((Step::Same, data_input(model, node, &[0, 3])?))),
        "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => Step::Reshape {
            input: input.clone(),
            flat: flattens(model, node),
        },
        "Transpose" => Step::Transpose {
            perm: ints(node, "perm").ok_or_else(|| {
                ExplainGraphError::Unsupported("a Transpose without `perm`".into())
            })?,
        },
        "Relu" => Step::Relu {
            output: node.output[0].clone(),
        },
        "Gemm" => dense_gemm(model, node)?,
        "MatMul" => dense_matmul(model, node)?,
        "QLinearMatMul" => dense_qlinear(model, node)?,
        _ => return Ok(None),
    };
    Ok(Some((step, input)))
}

/// A QuantizeLinear: the same gradient where it quantizes again, with the
/// same scale and zero point, what a DequantizeLinear made through a
/// max-pool or a change of shape (values it cannot clip); else a clip (a
/// layer's output: its ReLU folded in, values past the calibrated range).
/// Refused when its range is not known to be 8-bit.
fn clip_of(model: &ModelProto, node: &NodeProto) -> Result<Step, ExplainGraphError> {
    let graph = model.graph.as_ref().ok_or(ExplainGraphError::Empty)?;
    let quantization = |n: &NodeProto| (n.input.get(1).cloned(), n.input.get(2).cloned());
    let requantized = producer(graph, &node.input[0])
        .filter(|p| {
            matches!(
                p.op_type.as_str(),
                "MaxPool"
                    | "Reshape"
                    | "Flatten"
                    | "Transpose"
                    | "Squeeze"
                    | "Unsqueeze"
                    | "Identity"
            )
        })
        .and_then(|p| producer(graph, p.input.first()?))
        .is_some_and(|dq| {
            dq.op_type == "DequantizeLinear" && quantization(dq) == quantization(node)
        });
    if requantized {
        return Ok(Step::Same);
    }
    let zero = node.input.get(2).filter(|z| !z.is_empty());
    let data_type = match zero {
        Some(z) => initializer(model, z).map(|t| t.data_type),
        // Without a zero point, uint8.
        None => Some(DataType::UINT8 as i32),
    };
    let (low, high) = match data_type {
        Some(t) if t == DataType::UINT8 as i32 => (0.0, 255.0),
        Some(t) if t == DataType::INT8 as i32 => (-128.0, 127.0),
        _ => {
            return Err(ExplainGraphError::Unsupported(
                "a QuantizeLinear whose range is not known to be 8-bit".into(),
            ))
        }
    };
    Ok(Step::Clip {
        output: node.output[0].clone(),
        low,
        high,
    })
}

/// The node that makes `tensor`.
pub(super) fn producer<'a>(graph: &'a GraphProto, tensor: &str) -> Option<&'a NodeProto> {
    graph
        .node
        .iter()
        .find(|n| n.output.iter().any(|o| o == tensor))
}

/// Of a node adding a constant, the input that is not one.
fn data_input(
    model: &ModelProto,
    node: &NodeProto,
    operands: &[usize; 2],
) -> Result<String, ExplainGraphError> {
    let is_const = |i: usize| {
        node.input
            .get(i)
            .is_some_and(|t| initializer(model, t).is_some())
    };
    match (is_const(operands[0]), is_const(operands[1])) {
        (false, true) => Ok(node.input[operands[0]].clone()),
        (true, false) => Ok(node.input[operands[1]].clone()),
        _ => Err(ExplainGraphError::Unsupported(format!(
            "an {} of two computed tensors (a residual connection)",
            node.op_type
        ))),
    }
}

pub(super) fn int_attr(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

pub(super) fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.clone())
}

fn dense_gemm(model: &ModelProto, node: &NodeProto) -> Result<Step, ExplainGraphError> {
    let transposed = int_attr(node, "transB").unwrap_or(0) == 1;
    let weight = (int_attr(node, "transA").unwrap_or(0) == 0)
        .then(|| constant_weight(model, &node.input[1], transposed))
        .flatten()
        .ok_or_else(|| {
            ExplainGraphError::Unsupported("a Gemm whose weight is not a constant".into())
        })?;
    let alpha = node
        .attribute
        .iter()
        .find(|a| a.name == "alpha")
        .map_or(1.0, |a| a.f);
    Ok(Step::Dense {
        weight,
        transposed,
        alpha,
    })
}

fn dense_matmul(model: &ModelProto, node: &NodeProto) -> Result<Step, ExplainGraphError> {
    let weight = constant_weight(model, &node.input[1], false).ok_or_else(|| {
        ExplainGraphError::Unsupported("a MatMul whose weight is not a constant matrix".into())
    })?;
    Ok(Step::Dense {
        weight,
        transposed: false,
        alpha: 1.0,
    })
}

/// A dense layer's weight matrix: a float initializer, or 8-bit values a
/// DequantizeLinear turns into floats (a QDQ model) per tensor or per
/// output (the last axis of `[in, out]`, the first of `[out, in]`).
pub(super) fn constant_weight(model: &ModelProto, name: &str, transposed: bool) -> Option<Weight> {
    let matrix = |t: &str| initializer(model, t).filter(|w| w.dims.len() == 2);
    if matrix(name).is_some() {
        return Some(Weight::Float(name.to_string()));
    }
    let dq = producer(model.graph.as_ref()?, name)?;
    let (values, scale) = (dq.input.first()?, dq.input.get(1)?);
    let zero = dq.input.get(2).filter(|z| !z.is_empty());
    let per_tensor = initializer(model, scale)?.dims.iter().product::<i64>() == 1;
    let axis = int_attr(dq, "axis").unwrap_or(1);
    let output_axis = if transposed { [0, -2] } else { [1, -1] };
    let constants = matrix(values).is_some()
        && zero.is_none_or(|z| initializer(model, z).is_some())
        && (per_tensor || output_axis.contains(&axis));
    (dq.op_type == "DequantizeLinear" && constants).then(|| Weight::Int8 {
        values: values.clone(),
        scale: scale.clone(),
        zero: zero.cloned(),
        axis: usize::from(!transposed),
    })
}

/// Whether a Flatten/Reshape makes `[N, everything else]`: Flatten at axis
/// 1, or a Reshape to a constant shape of two.
fn flattens(model: &ModelProto, node: &NodeProto) -> bool {
    match node.op_type.as_str() {
        "Flatten" => int_attr(node, "axis").unwrap_or(1) == 1,
        "Reshape" => node
            .input
            .get(1)
            .and_then(|s| initializer(model, s))
            .is_some_and(|s| s.dims.iter().product::<i64>() == 2),
        _ => false,
    }
}

/// An int8 dense layer (QOperator form): its 8-bit weight with its scale
/// and zero point per tensor or per output column, read when the branch is
/// built (see `Tail::read_int8_layers` and, for the limit,
/// `Tail::check_dequantized`).
fn dense_qlinear(model: &ModelProto, node: &NodeProto) -> Result<Step, ExplainGraphError> {
    let unsupported =
        |why: &str| ExplainGraphError::Unsupported(format!("an int8 dense layer {why}"));
    let weight = initializer(model, &node.input[3])
        .ok_or_else(|| unsupported("whose weight is not a constant"))?;
    if weight.dims.len() != 2 {
        return Err(unsupported("whose weight is not a matrix"));
    }
    Ok(Step::Dense {
        weight: Weight::Int8 {
            values: node.input[3].clone(),
            scale: node.input[4].clone(),
            zero: Some(node.input[5].clone()),
            axis: 1,
        },
        transposed: false,
        alpha: 1.0,
    })
}

/// One layer's backward pass: the gradient of its input from its output's.
pub(super) fn backward(n: &mut Nodes, step: &Step, g: &str) -> String {
    match step {
        Step::Same => g.to_string(),
        Step::Reshape { input, .. } => {
            let shape = n.op("Shape", &[input], vec![]);
            n.op("Reshape", &[g, &shape], vec![])
        }
        Step::Transpose { perm } => {
            let mut inverse = vec![0i64; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p as usize] = i as i64;
            }
            n.op("Transpose", &[g], vec![Nodes::ints_attr("perm", &inverse)])
        }
        Step::Relu { output } => {
            let zero = n.scalar(0.0);
            let positive = n.op("Greater", &[output, &zero], vec![]);
            n.masked(g, &positive)
        }
        Step::Clip { output, low, high } => {
            let q = n.op(
                "Cast",
                &[output],
                vec![Nodes::int_attr("to", DataType::FLOAT as i64)],
            );
            let (low, high) = (n.scalar(*low), n.scalar(*high));
            let above = n.op("Greater", &[&q, &low], vec![]);
            let below = n.op("Less", &[&q, &high], vec![]);
            let inside = n.op("And", &[&above, &below], vec![]);
            n.masked(g, &inside)
        }
        Step::Int8Dense { by_output, scales } => {
            n.constants.push(TensorProto::clone(&by_output.0));
            n.constants.push(TensorProto::clone(&scales.0));
            n.int8_product(g, &by_output.0.name, &scales.0.name)
        }
        Step::Dense {
            weight,
            transposed,
            alpha,
        } => {
            // y = x·W (W [in, out]) → g·Wᵀ; y = x·Wᵀ (W [out, in]) → g·W.
            let trans_b = i64::from(!*transposed);
            let weight = weight.float(n);
            n.op(
                "Gemm",
                &[g, &weight],
                vec![
                    Nodes::float_attr("alpha", *alpha),
                    Nodes::int_attr("transB", trans_b),
                ],
            )
        }
    }
}
