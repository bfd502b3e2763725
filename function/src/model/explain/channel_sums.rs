//! Grad-CAM's channel weights without the first dense layer's backward pass.
//!
//! Grad-CAM weighs each channel of the feature map by the mean, over the
//! map's cells, of the score's gradient. When only a max pooling and a
//! flatten lie between the map and the first dense layer, that mean needs
//! each channel's *sum* of the gradient alone: a max pooling hands each
//! window's gradient to one cell of the window, so a channel's cells get in
//! all what its pooled cells had, whatever the windows. The pooled cells'
//! gradient is the dense layer's weight times its output's gradient, so the
//! channel sums are `g · Mᵀ`, with `M[c, o]` the layer's weights summed over
//! the inputs that come from channel `c`: computed once, here. The branch
//! then never reads the whole layer (VGG16's fc1 holds 103 M weights, 411 MB
//! as floats, which cost more than 1.15× the answer's own run), and the sum
//! is exact even where windows overlap.

use onnx_protobuf::{ModelProto, TensorProto};

use super::dense::{level, pick, DenseValues, Values};
use super::steps::{producer, Step};
use crate::model::graph::build::float_tensor;
use crate::model::graph::inspect::constant_or_dequantized;
use crate::model::weights::Stored;

/// The first dense layer, summed per channel of the feature map.
#[derive(Debug, Clone)]
pub(super) struct ChannelSums {
    /// `[C, out]`: the layer's weights summed over each channel's inputs.
    pub(super) matrix: TensorProto,
    /// The layer's scale (Gemm's `alpha`).
    pub(super) alpha: f32,
    /// Where that layer is among the steps (forward order).
    pub(super) dense_step: usize,
}

/// How the flattened input of the dense layer runs over the channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// `[C, H, W]`: input `i` is channel `i / (H·W)`.
    ChannelsFirst,
    /// `[H, W, C]`: input `i` is channel `i % C`.
    ChannelsLast,
}

/// The sums, when `steps` (forward order, from the max pooling of `map`)
/// start with transposes and one flatten to `[N, C·H·W]` followed by a dense
/// layer whose weights are at hand; `None` otherwise (the branch then takes
/// the whole backward pass).
pub(super) fn find(
    model: &ModelProto,
    stored: &Stored,
    map: &str,
    steps: &[Step],
) -> Option<ChannelSums> {
    let dense_step = steps.iter().position(|s| matches!(s, Step::Dense { .. }))?;
    let order = flattened_order(&steps[..dense_step])?;
    let Step::Dense {
        weight,
        transposed,
        alpha,
    } = &steps[dense_step]
    else {
        return None;
    };
    let channels = channels_of(model, map)?;
    let values = DenseValues::read(model, stored, weight, *transposed)?;
    let matrix = channel_sums(&values, channels, order)?;
    let name = format!("{}.channel_sums", super::nodes::PREFIX);
    Some(ChannelSums {
        matrix: float_tensor(&name, &[channels as i64, values.outputs as i64], &matrix),
        alpha: *alpha,
        dense_step,
    })
}

/// Follows the axes of the pooled map (`[N, C, H, W]`) through transposes
/// to one flatten, which must end the steps.
fn flattened_order(steps: &[Step]) -> Option<Order> {
    let mut axes = [0usize, 1, 2, 3];
    // Quantization boundaries that cannot clip pass the gradient as it is.
    let steps: Vec<&Step> = steps.iter().filter(|s| !matches!(s, Step::Same)).collect();
    let (last, before) = steps.split_last()?;
    for step in before {
        match step {
            Step::Transpose { perm } if perm.len() == 4 => {
                let mut next = [0usize; 4];
                for (slot, &p) in next.iter_mut().zip(perm) {
                    *slot = *axes.get(usize::try_from(p).ok()?)?;
                }
                axes = next;
            }
            _ => return None,
        }
    }
    if !matches!(last, Step::Reshape { flat: true, .. }) || axes[0] != 0 {
        return None;
    }
    match axes[1..] {
        [1, _, _] => Some(Order::ChannelsFirst),
        [_, _, 1] => Some(Order::ChannelsLast),
        _ => None,
    }
}

/// The number of channels of `map`: the output channels of the convolution
/// that makes it, through activations and quantization.
fn channels_of(model: &ModelProto, map: &str) -> Option<usize> {
    let graph = model.graph.as_ref()?;
    let mut tensor = map.to_string();
    for _ in 0..8 {
        let node = producer(graph, &tensor)?;
        let weight = match node.op_type.as_str() {
            "Conv" => node.input.get(1)?,
            "QLinearConv" => node.input.get(3)?,
            "Relu" | "Clip" | "LeakyRelu" | "Identity" | "DequantizeLinear" | "QuantizeLinear"
            | "BatchNormalization" => {
                tensor = node.input.first()?.clone();
                continue;
            }
            _ => return None,
        };
        // In a QDQ model, the weight a DequantizeLinear makes.
        let dims = &constant_or_dequantized(model, weight)?.dims;
        return usize::try_from(*dims.first()?).ok().filter(|&c| c > 0);
    }
    None
}

/// `M[c, o]`: the weights of output `o` summed over channel `c`'s inputs.
fn channel_sums(dense: &DenseValues, channels: usize, order: Order) -> Option<Vec<f32>> {
    if channels == 0 || !dense.inputs.is_multiple_of(channels) {
        return None;
    }
    let cells = dense.inputs / channels;
    let (ins, outs) = (dense.inputs, dense.outputs);
    let channel: Vec<usize> = (0..ins)
        .map(|i| match order {
            Order::ChannelsFirst => i / cells,
            Order::ChannelsLast => i % channels,
        })
        .collect();
    // Read in the order the weights are stored (fc1 is hundreds of MB,
    // and a column-wise walk would miss the cache at every weight):
    // `[in, out]` adds each input's row to its channel's row of sums;
    // `[out, in]` adds each output's row into that output's column.
    let mut sums = vec![0f64; channels * outs];
    let mut add = |i: usize, o: usize, v: f64| sums[channel[i] * outs + o] += v;
    match &dense.values {
        Values::Float(w) if !dense.transposed => {
            for (i, row) in w.chunks_exact(outs * 4).enumerate() {
                let target = &mut sums[channel[i] * outs..][..outs];
                for (s, v) in target.iter_mut().zip(row.chunks_exact(4)) {
                    *s += f64::from(f32::from_le_bytes([v[0], v[1], v[2], v[3]]));
                }
            }
        }
        Values::Float(w) => {
            for (o, row) in w.chunks_exact(ins * 4).enumerate() {
                for (i, v) in row.chunks_exact(4).enumerate() {
                    add(
                        i,
                        o,
                        f64::from(f32::from_le_bytes([v[0], v[1], v[2], v[3]])),
                    );
                }
            }
        }
        Values::Int8 {
            raw,
            signed,
            scale,
            zero,
        } => {
            let (rows, cols) = if dense.transposed {
                (outs, ins)
            } else {
                (ins, outs)
            };
            for (r, row) in raw.chunks_exact(cols).enumerate() {
                for (c, &b) in row.iter().enumerate() {
                    let (i, o) = if dense.transposed { (c, r) } else { (r, c) };
                    let q = level(b, *signed);
                    add(
                        i,
                        o,
                        f64::from(q - pick(zero, o)) * f64::from(pick(scale, o)),
                    );
                }
            }
            debug_assert_eq!(raw.len(), rows * cols);
        }
    }
    Some(sums.into_iter().map(|s| s as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::borrow::Cow;

    fn dense(values: Vec<f32>, inputs: usize, outputs: usize) -> DenseValues<'static> {
        DenseValues {
            inputs,
            outputs,
            transposed: false,
            values: Values::Float(Cow::Owned(
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )),
        }
    }

    #[test]
    fn channels_first_sum_runs_of_cells_and_channels_last_sum_strides() {
        // 2 channels × 2 cells, 1 output: inputs 0..4 with weights 1, 2, 4, 8.
        let d = dense(vec![1.0, 2.0, 4.0, 8.0], 4, 1);
        assert_eq!(
            channel_sums(&d, 2, Order::ChannelsFirst),
            Some(vec![3.0, 12.0])
        );
        assert_eq!(
            channel_sums(&d, 2, Order::ChannelsLast),
            Some(vec![5.0, 10.0])
        );
        assert_eq!(channel_sums(&d, 3, Order::ChannelsFirst), None);
    }

    #[test]
    fn weights_stored_out_by_in_sum_the_same() {
        // The [in, out] matrix [[1, 10], [2, 20], [4, 40], [8, 80]] stored [out, in].
        let d = DenseValues {
            inputs: 4,
            outputs: 2,
            transposed: true,
            values: Values::Float(Cow::Owned(
                [1f32, 2.0, 4.0, 8.0, 10.0, 20.0, 40.0, 80.0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            )),
        };
        assert_eq!(
            channel_sums(&d, 2, Order::ChannelsFirst),
            Some(vec![3.0, 30.0, 12.0, 120.0])
        );
        assert_eq!(
            channel_sums(&d, 2, Order::ChannelsLast),
            Some(vec![5.0, 50.0, 10.0, 100.0])
        );
    }

    #[test]
    fn int8_weights_are_summed_after_their_scale_and_zero_point() {
        let d = super::super::dense::small_int8();
        // One channel: output 0 sums (3−1)·0.5 + (5−1)·0.5, output 1 (1−1)·2 + (7−1)·2.
        assert_eq!(
            channel_sums(&d, 1, Order::ChannelsFirst),
            Some(vec![3.0, 12.0])
        );
    }

    #[test]
    fn a_transpose_to_channels_last_then_a_flatten_is_followed() {
        let flat = Step::Reshape {
            input: "x".into(),
            flat: true,
        };
        let nhwc = Step::Transpose {
            perm: vec![0, 2, 3, 1],
        };
        assert_eq!(
            flattened_order(&[nhwc.clone(), flat.clone()]),
            Some(Order::ChannelsLast)
        );
        assert_eq!(
            flattened_order(std::slice::from_ref(&flat)),
            Some(Order::ChannelsFirst)
        );
        let unflat = Step::Reshape {
            input: "x".into(),
            flat: false,
        };
        assert_eq!(flattened_order(&[unflat]), None);
        assert_eq!(flattened_order(&[flat, nhwc]), None);
    }
}
