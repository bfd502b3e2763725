//! A dense layer's weights read from the model file, as the branch builder
//! needs them: floats or 8-bit values with their scale and zero point, in
//! place where they are stored (a copy only for `float_data`).

use std::borrow::Cow;

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{ModelProto, TensorProto};

use super::steps::Weight;
use crate::model::graph::inspect::initializer;
use crate::model::weights::Stored;

/// A dense layer's weights, read: `(q − zero) · scale`, or floats.
pub(super) struct DenseValues<'a> {
    pub(super) inputs: usize,
    pub(super) outputs: usize,
    /// `[out, in]` rather than `[in, out]`.
    pub(super) transposed: bool,
    pub(super) values: Values<'a>,
}

pub(super) enum Values<'a> {
    /// Little-endian f32s, as stored (a copy only for `float_data`).
    Float(Cow<'a, [u8]>),
    /// 8-bit values with a scale and zero point per tensor or per output.
    Int8 {
        raw: &'a [u8],
        signed: bool,
        scale: Vec<f32>,
        zero: Vec<i32>,
    },
}

impl<'a> DenseValues<'a> {
    pub(super) fn read(
        model: &'a ModelProto,
        stored: &Stored<'a>,
        weight: &Weight,
        transposed: bool,
    ) -> Option<Self> {
        let tensor = |name: &str| initializer(model, name);
        let (stored_as, values) = match weight {
            // Read already.
            Weight::Read(_) => return None,
            Weight::Float(name) => {
                let t = tensor(name)?;
                (t, Values::Float(float_bytes(stored, t)?))
            }
            Weight::Int8 {
                values,
                scale,
                zero,
                ..
            } => {
                let t = tensor(values)?;
                let signed = t.data_type == DataType::INT8 as i32;
                if !signed && t.data_type != DataType::UINT8 as i32 {
                    return None;
                }
                let zero = match zero {
                    Some(z) => zero_points(stored, tensor(z)?)?,
                    None => vec![0],
                };
                let values = Values::Int8 {
                    raw: stored.raw(t)?,
                    signed,
                    scale: floats(stored, tensor(scale)?)?,
                    zero,
                };
                (t, values)
            }
        };
        let [a, b] = stored_as.dims[..] else {
            return None;
        };
        let (a, b) = (usize::try_from(a).ok()?, usize::try_from(b).ok()?);
        if a == 0 || b == 0 {
            return None;
        }
        let (inputs, outputs) = if transposed { (b, a) } else { (a, b) };
        let dense = Self {
            inputs,
            outputs,
            transposed,
            values,
        };
        dense.is_whole().then_some(dense)
    }

    /// The weight from input `i` to output `o`.
    fn value(&self, i: usize, o: usize) -> f32 {
        let at = if self.transposed {
            o * self.inputs + i
        } else {
            i * self.outputs + o
        };
        match &self.values {
            Values::Float(w) => {
                let b = &w[at * 4..at * 4 + 4];
                f32::from_le_bytes([b[0], b[1], b[2], b[3]])
            }
            Values::Int8 {
                raw,
                signed,
                scale,
                zero,
            } => (level(raw[at], *signed) - pick(zero, o)) as f32 * pick(scale, o),
        }
    }

    /// `[inputs, outputs.len()]`, row-major: the columns of these outputs,
    /// as floats; `None` if one is not an output.
    pub(super) fn columns(&self, outputs: &[usize]) -> Option<Vec<f32>> {
        if outputs.iter().any(|&o| o >= self.outputs) {
            return None;
        }
        let mut picked = Vec::with_capacity(self.inputs * outputs.len());
        for i in 0..self.inputs {
            picked.extend(outputs.iter().map(|&o| self.value(i, o)));
        }
        Some(picked)
    }

    /// The whole matrix as floats, `[inputs, outputs]` row-major.
    pub(super) fn all(&self) -> Vec<f32> {
        let mut all = Vec::with_capacity(self.inputs * self.outputs);
        for i in 0..self.inputs {
            all.extend((0..self.outputs).map(|o| self.value(i, o)));
        }
        all
    }

    /// For [`super::nodes::Nodes::int8_product`]: the 8-bit values as
    /// `[outputs, inputs]` and each output's scale (times `alpha`), when
    /// they are signed, centred on 0 and within ±64 (so the u8·s8 kernels
    /// of CPUs without VNNI, which add two products in 16 bits, cannot
    /// saturate: what `models/quantize.py` writes); else `None`.
    pub(super) fn int8_transposed(&self, alpha: f32) -> Option<(Vec<u8>, Vec<f32>)> {
        let Values::Int8 {
            raw,
            signed: true,
            scale,
            zero,
        } = &self.values
        else {
            return None;
        };
        let small = raw.iter().all(|&b| (b as i8).unsigned_abs() <= 64);
        if zero.iter().any(|&z| z != 0) || !small {
            return None;
        }
        let (ins, outs) = (self.inputs, self.outputs);
        let mut by_output = vec![0u8; raw.len()];
        if self.transposed {
            by_output.copy_from_slice(raw);
        } else {
            for (i, row) in raw.chunks_exact(outs).enumerate() {
                for (o, &b) in row.iter().enumerate() {
                    by_output[o * ins + i] = b;
                }
            }
        }
        let scales = (0..outs).map(|o| pick(scale, o) * alpha).collect();
        Some((by_output, scales))
    }

    /// Whether the values fill the matrix, with a scale and zero point per
    /// tensor or per output.
    fn is_whole(&self) -> bool {
        let cells = self.inputs * self.outputs;
        let per = |n: usize| n == 1 || n == self.outputs;
        match &self.values {
            Values::Float(v) => v.len() == cells * 4,
            Values::Int8 {
                raw, scale, zero, ..
            } => raw.len() == cells && per(scale.len()) && per(zero.len()),
        }
    }
}

/// The integer an 8-bit weight stands for.
pub(super) fn level(b: u8, signed: bool) -> i32 {
    if signed {
        i32::from(b as i8)
    } else {
        i32::from(b)
    }
}

/// A per-tensor or per-output value: the one, or output `o`'s.
pub(super) fn pick<T: Copy>(values: &[T], o: usize) -> T {
    if values.len() == 1 {
        values[0]
    } else {
        values[o]
    }
}

/// A float tensor's little-endian bytes: where they are stored, or made
/// from `float_data`.
fn float_bytes<'a>(stored: &Stored<'a>, t: &'a TensorProto) -> Option<Cow<'a, [u8]>> {
    if t.data_type != DataType::FLOAT as i32 {
        return None;
    }
    if !t.float_data.is_empty() {
        return Some(Cow::Owned(
            t.float_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
    }
    stored.raw(t).map(Cow::Borrowed)
}

/// A float tensor's values, from its raw bytes or `float_data`.
fn floats(stored: &Stored, t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::FLOAT as i32 {
        return None;
    }
    if !t.float_data.is_empty() {
        return Some(t.float_data.clone());
    }
    let raw = stored.raw(t)?;
    Some(
        raw.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

/// An 8-bit zero point tensor's values.
fn zero_points(stored: &Stored, t: &TensorProto) -> Option<Vec<i32>> {
    if !t.int32_data.is_empty() {
        return Some(t.int32_data.clone());
    }
    let raw = stored.raw(t)?;
    Some(if t.data_type == DataType::INT8 as i32 {
        raw.iter().map(|&b| i32::from(b as i8)).collect()
    } else {
        raw.iter().map(|&b| i32::from(b)).collect()
    })
}

/// `[[3, 1], [5, 7]]` (`[in, out]`, uint8) with scales 0.5 and 2 and zero
/// points 1, for tests.
#[cfg(test)]
pub(super) fn small_int8() -> DenseValues<'static> {
    DenseValues {
        inputs: 2,
        outputs: 2,
        transposed: false,
        values: Values::Int8 {
            raw: &[3, 1, 5, 7],
            signed: false,
            scale: vec![0.5, 2.0],
            zero: vec![1, 1],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_read_in_either_storage_order_and_after_scale_and_zero() {
        // The [in, out] matrix [[1, 10, 100], [2, 20, 200]].
        let in_out: Vec<u8> = [1f32, 10.0, 100.0, 2.0, 20.0, 200.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let out_in: Vec<u8> = [1f32, 2.0, 10.0, 20.0, 100.0, 200.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        for (bytes, transposed) in [(in_out, false), (out_in, true)] {
            let d = DenseValues {
                inputs: 2,
                outputs: 3,
                transposed,
                values: Values::Float(Cow::Owned(bytes)),
            };
            assert_eq!(d.columns(&[2, 0]), Some(vec![100.0, 1.0, 200.0, 2.0]));
            assert_eq!(d.columns(&[3]), None);
        }
        // Output 1: (1 − 1)·2 and (7 − 1)·2.
        assert_eq!(small_int8().columns(&[1]), Some(vec![0.0, 12.0]));
    }
}
