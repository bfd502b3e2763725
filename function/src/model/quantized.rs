//! Quantized graphs, read from the model's bytes before the session exists:
//! which 8-bit integers a graph multiplies, if any. Being quantized decides
//! weight pre-packing (`session.rs`); the integers decide whether this CPU
//! answers as exactly as the one the model was measured on.
//!
//! ONNX Runtime multiplies uint8 activations by int8 weights ("u8s8") on x86
//! with `vpmaddubsw` unless the CPU has VNNI: that instruction adds two
//! u8×s8 products into an int16 and saturates when they exceed it
//! (2 × 255 × 127 > 32767). x86 Lambda CPUs have AVX2 and no VNNI, so a u8s8
//! model whose weights use all 8 bits can answer differently there than on
//! a VNNI machine (measured: 5 of 46 labels of the shared MobileNetV2 int8).
//! s8s8 graphs run through the same kernels (activations shifted by 128),
//! and measured so (2 of 46 labels). Weights kept to 7 bits (`reduce_range`)
//! cannot saturate, nor can u8u8 graphs, nor any graph on ARM (its
//! kernels widen products before adding them).

use std::collections::HashMap;
use std::ops::Range;

use crate::model::framing::{Fields, Malformed, Value};

/// ONNX `TensorProto.DataType` of the 8-bit integers.
const UINT8: i32 = 2;
const INT8: i32 = 3;

/// The largest int8 weight magnitude whose u8×s8 pair sums fit in an int16
/// (2 × 255 × 64 = 32640): what `reduce_range` (7-bit weights) keeps to.
const NON_SATURATING_WEIGHT: i8 = 64;

/// Which 8-bit integers an integer graph multiplies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Int8Scheme {
    /// Activations then weights, `u` for uint8 and `s` for int8: `u8s8`,
    /// `u8u8`, `s8s8`; `mixed` when the graph's operators disagree.
    #[schema(example = "u8s8")]
    pub(crate) scheme: String,
    /// Whether every int8 weight lies within ±64, so a u8×s8 pair sum fits
    /// in int16; `None` when some weight is not inline in the model file
    /// (external data, typed fields), so it could not be read.
    pub(crate) weights_within_7_bits: Option<bool>,
}

impl Int8Scheme {
    /// Whether some pair of products with int8 weights can exceed an int16:
    /// on an x86 CPU without VNNI, ONNX Runtime's kernels then saturate.
    pub(crate) fn can_saturate(&self) -> bool {
        self.scheme != "u8u8" && self.weights_within_7_bits != Some(true)
    }
}

/// Whether this CPU multiplies u8×s8 with int32 sums (VNNI on x86: the
/// AVX-512 or the AVX form). `None` off x86, where the question does not
/// arise.
pub(crate) fn cpu_has_vnni() -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = std::arch::is_x86_feature_detected!("avx512vnni");
        let avx = std::arch::is_x86_feature_detected!("avxvnni");
        Some(avx512 || avx)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// An initializer as far as the scheme needs it.
struct Initializer {
    data_type: i32,
    /// Its `raw_data` within the model bytes, when inline.
    raw: Option<Range<usize>>,
}

/// Which 8-bit integers the graph in `model` (a serialized `ModelProto`,
/// weights inline or not) multiplies; `None` for a graph with no integer
/// operator. Reads only framing, names and types, and the int8 weights.
pub(crate) fn int8_scheme(model: &[u8]) -> Result<Option<Int8Scheme>, Malformed> {
    let mut graph = None;
    for field in Fields::new(model, 0) {
        if let (7, Value::Len(payload)) = field?.into_parts() {
            graph = Some(payload);
        }
    }
    let Some(graph) = graph else { return Ok(None) };
    let mut initializers = HashMap::new();
    let mut nodes = Vec::new();
    for field in Fields::new(&model[graph.clone()], graph.start) {
        match field?.into_parts() {
            (1, Value::Len(node)) => nodes.push(node),
            (5, Value::Len(tensor)) => {
                if let Some((name, init)) = initializer(model, tensor)? {
                    initializers.insert(name, init);
                }
            }
            _ => {}
        }
    }
    let dtype = |name: Option<&String>| name.and_then(|n| initializers.get(n.as_str()));
    let (mut activations, mut weights) = (Vec::new(), Vec::new());
    for node in nodes {
        let (op, inputs) = node_of(model, node)?;
        // (the activation's zero point, the weight) of each integer operator;
        // a missing zero point means uint8 (the ONNX default).
        let (zero_point, weight) = match op.as_str() {
            "QuantizeLinear" => (Some(inputs.get(2)), None),
            "DequantizeLinear" => (None, inputs.first()),
            "QLinearConv" | "QLinearMatMul" | "QGemm" => (Some(inputs.get(2)), inputs.get(3)),
            "ConvInteger" | "MatMulInteger" => (Some(inputs.get(2)), inputs.get(1)),
            _ => continue,
        };
        if let Some(zp) = zero_point {
            match dtype(zp).map(|i| i.data_type) {
                None => activations.push(UINT8),
                Some(t @ (UINT8 | INT8)) => activations.push(t),
                Some(_) => {}
            }
        }
        // Only constant 8-bit inputs are weights (a DequantizeLinear of an
        // activation has none, and biases are int32).
        if let Some(init) = dtype(weight).filter(|i| matches!(i.data_type, UINT8 | INT8)) {
            weights.push(init);
        }
    }
    if activations.is_empty() && weights.is_empty() {
        return Ok(None);
    }
    let letter = |types: &mut dyn Iterator<Item = i32>| -> &'static str {
        let (mut u, mut s) = (false, false);
        for t in types {
            u |= t == UINT8;
            s |= t == INT8;
        }
        match (u, s) {
            (true, false) => "u8",
            (false, true) => "s8",
            _ => "?",
        }
    };
    let a = letter(&mut activations.iter().copied());
    let w = letter(&mut weights.iter().map(|i| i.data_type));
    let scheme = match (a, w) {
        ("?", _) | (_, "?") => "mixed".to_string(),
        (a, w) => format!("{a}{w}"),
    };
    let mut within = Some(true);
    for init in weights.iter().filter(|i| i.data_type == INT8) {
        match &init.raw {
            Some(raw) => {
                if model[raw.clone()]
                    .iter()
                    .any(|&b| (b as i8).unsigned_abs() > NON_SATURATING_WEIGHT as u8)
                {
                    within = Some(false);
                    break;
                }
            }
            None => within = None,
        }
    }
    Ok(Some(Int8Scheme {
        scheme,
        weights_within_7_bits: within,
    }))
}

/// A `TensorProto`'s name, type and inline bytes.
fn initializer(
    model: &[u8],
    tensor: Range<usize>,
) -> Result<Option<(String, Initializer)>, Malformed> {
    let (mut name, mut data_type, mut raw) = (None, 0, None);
    for field in Fields::new(&model[tensor.clone()], tensor.start) {
        match field?.into_parts() {
            (2, Value::Varint(t)) => data_type = t as i32,
            (8, Value::Len(n)) => name = std::str::from_utf8(&model[n]).ok().map(str::to_owned),
            (9, Value::Len(r)) => raw = Some(r),
            _ => {}
        }
    }
    Ok(name.map(|name| (name, Initializer { data_type, raw })))
}

/// A `NodeProto`'s operator and inputs.
fn node_of(model: &[u8], node: Range<usize>) -> Result<(String, Vec<String>), Malformed> {
    let (mut op, mut inputs) = (String::new(), Vec::new());
    for field in Fields::new(&model[node.clone()], node.start) {
        match field?.into_parts() {
            (1, Value::Len(i)) => inputs.push(String::from_utf8_lossy(&model[i]).into_owned()),
            (4, Value::Len(o)) => op = String::from_utf8_lossy(&model[o]).into_owned(),
            _ => {}
        }
    }
    Ok((op, inputs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::framing::{put_len_field, put_varint};

    fn tensor(name: &str, data_type: i32, raw: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        put_varint(&mut t, 2 << 3);
        put_varint(&mut t, data_type as u64);
        put_len_field(&mut t, 8, name.as_bytes());
        put_len_field(&mut t, 9, raw);
        t
    }

    fn node(op: &str, inputs: &[&str]) -> Vec<u8> {
        let mut n = Vec::new();
        for i in inputs {
            put_len_field(&mut n, 1, i.as_bytes());
        }
        put_len_field(&mut n, 4, op.as_bytes());
        n
    }

    /// A QDQ conv: x → QuantizeLinear(zp of `act`) → DequantizeLinear, and
    /// a weight of type `weight` with values `w` → DequantizeLinear → Conv.
    fn qdq_model(act: i32, weight: i32, w: &[u8]) -> Vec<u8> {
        let mut g = Vec::new();
        put_len_field(&mut g, 1, &node("QuantizeLinear", &["x", "s", "x_zp"]));
        put_len_field(&mut g, 1, &node("DequantizeLinear", &["xq", "s", "x_zp"]));
        put_len_field(&mut g, 1, &node("DequantizeLinear", &["w", "ws", "w_zp"]));
        put_len_field(&mut g, 1, &node("Conv", &["xd", "wd"]));
        put_len_field(&mut g, 5, &tensor("x_zp", act, &[0]));
        put_len_field(&mut g, 5, &tensor("w", weight, w));
        put_len_field(&mut g, 5, &tensor("w_zp", weight, &[0]));
        put_len_field(&mut g, 5, &tensor("s", 1, &[0, 0, 128, 63]));
        let mut m = Vec::new();
        put_varint(&mut m, 1 << 3); // ir_version
        put_varint(&mut m, 8);
        put_len_field(&mut m, 7, &g);
        m
    }

    #[test]
    fn schemes_and_weight_ranges_are_read_from_the_graph() {
        let wide = [1u8, 0x80, 5]; // -128
        let narrow = [1u8, (-64i8) as u8, 64];
        let s = int8_scheme(&qdq_model(UINT8, INT8, &wide))
            .unwrap()
            .unwrap();
        assert_eq!(s.scheme, "u8s8");
        assert_eq!(s.weights_within_7_bits, Some(false));
        assert!(s.can_saturate());
        let s = int8_scheme(&qdq_model(UINT8, INT8, &narrow))
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.scheme.as_str(), s.weights_within_7_bits),
            ("u8s8", Some(true))
        );
        assert!(!s.can_saturate(), "reduce_range's 7-bit weights fit");
        let s = int8_scheme(&qdq_model(UINT8, UINT8, &[255, 0]))
            .unwrap()
            .unwrap();
        assert_eq!(s.scheme, "u8u8");
        assert!(!s.can_saturate());
        let s = int8_scheme(&qdq_model(INT8, INT8, &wide)).unwrap().unwrap();
        assert_eq!(s.scheme, "s8s8");
        assert!(s.can_saturate(), "x86 runs s8s8 on the u8s8 kernels");
        let s = int8_scheme(&qdq_model(INT8, INT8, &narrow))
            .unwrap()
            .unwrap();
        assert!(!s.can_saturate());
    }

    #[test]
    fn float_graphs_have_no_scheme_and_broken_bytes_say_so() {
        let mut g = Vec::new();
        put_len_field(&mut g, 1, &node("Conv", &["x", "w"]));
        put_len_field(&mut g, 5, &tensor("w", 1, &[0; 8]));
        let mut m = Vec::new();
        put_len_field(&mut m, 7, &g);
        assert_eq!(int8_scheme(&m).unwrap(), None);
        assert!(int8_scheme(&[0x3a, 0x50, 1]).is_err());
    }
}
