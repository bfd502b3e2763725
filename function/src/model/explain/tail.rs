//! The way back from a classifier's feature vector to its last feature map:
//! the chain of layers between them (flatten, dense layers and their ReLUs,
//! the pooling), read off the graph, and its backward pass written as ONNX
//! nodes. Only layers whose gradient is exact and cheap are followed; any
//! other layer means the model's shape is unknown here (the caller then
//! explains by occlusion).

use onnx_protobuf::{ModelProto, NodeProto, TensorProto};

use super::channel_sums::{self, ChannelSums};
use super::dense::DenseValues;
use super::nodes::{MapLayout, Nodes};
use super::steps::{backward, int_attr, ints, producer, step_of, ReadWeight, Step, Weight};
use super::ExplainGraphError;
use crate::model::graph::build::{float_tensor, int8_tensor, opset};
use crate::model::graph::inspect::initializer;
use crate::model::weights::Stored;

/// The most weights of an int8 dense layer the branch holds to walk back
/// through, as 8-bit values or as floats (VGG16's fc2 has 16.8 M: 16.8 MB,
/// or 67 MB as floats; a layer of fc1's 102.8 M would be 103 or 411 MB, so
/// a model that needs one is explained by occlusion; fc1 itself is summed
/// per channel instead, see [`channel_sums`]). Dequantizing fc2 on every
/// explanation instead cost 35 ms on 2 cores, most of an int8 VGG16's run.
const MAX_DEQUANTIZED_WEIGHTS: usize = 32 << 20;

/// Layers are followed back this far at most.
const MAX_STEPS: usize = 48;

/// Where the chain ends: the pooling of the feature map.
#[derive(Debug, Clone)]
enum Pool {
    /// Global average (GlobalAveragePool, QLinearGlobalAveragePool, or a
    /// ReduceMean over the spatial axes): every cell gets `g / (H·W)`.
    Average,
    /// MaxPool: the gradient goes back to each window's maximum (MaxUnpool
    /// of the same pooling's indices).
    Max {
        attributes: Vec<onnx_protobuf::AttributeProto>,
    },
}

/// Per picture, one weight per channel of the map, in its own order (any
/// shape holding `N × C` values in that order).
enum Weights {
    /// The gradient's means over the map's cells (Grad-CAM's weights).
    Means(String),
    /// Its sums over the cells: the means times the number of cells.
    Sums(String),
}

/// The chain from the feature map to the features.
#[derive(Debug, Clone)]
pub(crate) struct Tail {
    /// The feature map as the graph holds it (maybe 8-bit).
    map: String,
    /// Its scale and zero point when it is 8-bit.
    quant: Option<(String, String)>,
    layout: MapLayout,
    pool: Pool,
    /// From the pooling's output to the features, in forward order.
    steps: Vec<Step>,
    /// The first dense layer summed per channel, when that layer's backward
    /// pass can be skipped.
    sums: Option<ChannelSums>,
}

impl Tail {
    /// Reads the chain back from `features` (the input of the final layer);
    /// `stored` says where the graph's weights are.
    pub(crate) fn find(
        model: &ModelProto,
        stored: &Stored,
        features: &str,
    ) -> Result<Self, ExplainGraphError> {
        let graph = model.graph.as_ref().ok_or(ExplainGraphError::Empty)?;
        let mut steps = Vec::new();
        let mut cur = features.to_string();
        for _ in 0..MAX_STEPS {
            let node = producer(graph, &cur)
                .ok_or_else(|| ExplainGraphError::Unsupported(format!("no node makes `{cur}`")))?;
            let (step, next) = match step_of(model, node)? {
                Some(found) => found,
                None => {
                    let (map, quant, layout, pool) = pooling(model, node)?;
                    steps.reverse();
                    let sums = match pool {
                        Pool::Max { .. } => channel_sums::find(model, stored, &map, &steps),
                        Pool::Average => None,
                    };
                    let mut tail = Self {
                        map,
                        quant,
                        layout,
                        pool,
                        steps,
                        sums,
                    };
                    tail.check_dequantized(model)?;
                    tail.read_int8_layers(model, stored);
                    return Ok(tail);
                }
            };
            steps.push(step);
            cur = next;
        }
        Err(ExplainGraphError::Unsupported(format!(
            "no pooling of a feature map within {MAX_STEPS} layers of the features"
        )))
    }

    /// Whether the features are the map's global average alone, so the
    /// explanation is the class activation map itself (CAM), not a gradient
    /// through dense layers (Grad-CAM).
    pub(crate) fn is_pooled(&self) -> bool {
        matches!(self.pool, Pool::Average) && !self.steps.iter().any(Step::is_dense)
    }

    /// Grad-CAM from `gradient` (of the explained score with respect to
    /// the features, `[N, F]`): the backward pass to the feature map, the
    /// channel weights (the gradient's spatial mean), their weighted sum of
    /// the map's channels and its positive part. Returns the `[N, H, W]` map.
    pub(crate) fn grad_cam(&self, n: &mut Nodes, gradient: &str) -> String {
        let mut g = gradient.to_string();
        for step in self.walked_back().iter().rev() {
            g = backward(n, step, &g);
        }
        let map = match &self.quant {
            Some((scale, zero)) => n.op("DequantizeLinear", &[&self.map, scale, zero], vec![]),
            None => self.map.clone(),
        };
        // Shapes are read off the map as stored: an 8-bit map's one
        // consumer is then the weighted sum, and ONNX Runtime does not
        // dequantize it once per consumer.
        let shape_of = self.map.clone();
        let weights = match (&self.pool, &self.sums) {
            (_, Some(sums)) => {
                // The channels' summed gradient, over the map's cells.
                n.constants.push(sums.matrix.clone());
                let summed = n.op(
                    "Gemm",
                    &[&g, &sums.matrix.name],
                    vec![
                        Nodes::float_attr("alpha", sums.alpha),
                        Nodes::int_attr("transB", 1),
                    ],
                );
                Weights::Sums(summed)
            }
            (pool, None) => self.pooled_weights(n, &map, &shape_of, pool, &g),
        };
        let (weights, summed) = match weights {
            Weights::Means(w) => (w, false),
            Weights::Sums(w) => (w, true),
        };
        let weighted = n.channels_weighted(&map, &shape_of, &weights, self.layout);
        let positive = n.op("Relu", &[&weighted], vec![]);
        if !summed {
            return positive;
        }
        // Sums made means: divided once, on the `[N, H, W]` map, not per
        // channel (ReLU keeps a positive factor).
        let cells = n.spatial_cells(&shape_of, self.layout);
        n.op("Div", &[&positive, &cells], vec![])
    }

    /// Whether the first dense layer's backward pass is replaced by its
    /// channel sums.
    pub(crate) fn sums_first_dense(&self) -> bool {
        self.sums.is_some()
    }

    /// The steps the branch walks back through (forward order): all of
    /// them, or those after the layer the channel sums stand for.
    fn walked_back(&self) -> &[Step] {
        &self.steps[self.first_walked_back()..]
    }

    /// Where [`Tail::walked_back`] starts among the steps.
    fn first_walked_back(&self) -> usize {
        self.sums.as_ref().map_or(0, |s| s.dense_step + 1)
    }

    /// The int8 dense layers the branch walks back through, read once: as
    /// 8-bit values for an integer product when they allow it, else as
    /// floats (`[in, out]`); a layer whose weights are not at hand stays as
    /// it is, dequantized in the branch.
    fn read_int8_layers(&mut self, model: &ModelProto, stored: &Stored) {
        let first = self.first_walked_back();
        for (at, step) in self.steps.iter_mut().enumerate().skip(first) {
            let Step::Dense {
                weight: weight @ Weight::Int8 { .. },
                transposed,
                alpha,
            } = step
            else {
                continue;
            };
            let Some(dense) = DenseValues::read(model, stored, weight, *transposed) else {
                continue;
            };
            let name = format!("{}.dense{at}", super::nodes::PREFIX);
            let (ins, outs) = (dense.inputs as i64, dense.outputs as i64);
            let shared = |t: TensorProto| ReadWeight(std::sync::Arc::new(t));
            let int8 = Nodes::has_int8_product(opset(model))
                .then(|| dense.int8_transposed(*alpha))
                .flatten();
            *step = match int8 {
                Some((by_output, scales)) => {
                    let values = int8_tensor(&format!("{name}.int8"), &[outs, ins], &by_output);
                    let scales = float_tensor(&format!("{name}.scales"), &[outs], &scales);
                    Step::Int8Dense {
                        by_output: shared(values),
                        scales: shared(scales),
                    }
                }
                None => Step::Dense {
                    weight: Weight::Read(shared(float_tensor(&name, &[ins, outs], &dense.all()))),
                    transposed: false,
                    alpha: *alpha,
                },
            };
        }
    }

    /// Refuses a chain whose backward pass would hold too large an int8
    /// layer.
    fn check_dequantized(&self, model: &ModelProto) -> Result<(), ExplainGraphError> {
        for step in self.walked_back() {
            let Step::Dense {
                weight: Weight::Int8 { values, .. },
                ..
            } = step
            else {
                continue;
            };
            let count: i64 = initializer(model, values)
                .map(|w| w.dims.iter().product())
                .unwrap_or(0);
            if count as usize > MAX_DEQUANTIZED_WEIGHTS {
                return Err(ExplainGraphError::Unsupported(format!(
                    "an int8 dense layer of {count} weights (over {MAX_DEQUANTIZED_WEIGHTS} \
                     to hold for explanations)"
                )));
            }
        }
        Ok(())
    }

    /// The channel weights from the gradient at the pooling's output.
    fn pooled_weights(
        &self,
        n: &mut Nodes,
        map: &str,
        shape_of: &str,
        pool: &Pool,
        g: &str,
    ) -> Weights {
        match pool {
            // Every cell's gradient is `g / (H·W)`, which is also the cells'
            // mean; `g` holds one value per channel whether the pooling kept
            // its spatial axes or not.
            Pool::Average => Weights::Sums(g.to_string()),
            Pool::Max { attributes } => {
                let shape = n.op("Shape", &[shape_of], vec![]);
                let indices = n.max_pool_indices(map, attributes.clone());
                let mut unpool_attrs: Vec<_> = attributes
                    .iter()
                    .filter(|a| ["kernel_shape", "strides", "pads"].contains(&a.name.as_str()))
                    .cloned()
                    .collect();
                unpool_attrs.sort_by(|a, b| a.name.cmp(&b.name));
                let cells_gradient = n.op("MaxUnpool", &[g, &indices, &shape], unpool_attrs);
                Weights::Means(n.op("GlobalAveragePool", &[&cells_gradient], vec![]))
            }
        }
    }
}

/// The pooling that ends the chain: the feature map, its quantization and
/// layout, and how the gradient spreads over its cells.
#[allow(clippy::type_complexity)]
fn pooling(
    model: &ModelProto,
    node: &NodeProto,
) -> Result<(String, Option<(String, String)>, MapLayout, Pool), ExplainGraphError> {
    let input = node.input[0].clone();
    match node.op_type.as_str() {
        "GlobalAveragePool" => Ok((input, None, MapLayout::Nchw, Pool::Average)),
        "QLinearGlobalAveragePool" => {
            let layout = if int_attr(node, "channels_last").unwrap_or(0) == 1 {
                MapLayout::Nhwc
            } else {
                MapLayout::Nchw
            };
            let quant = Some((node.input[1].clone(), node.input[2].clone()));
            Ok((input, quant, layout, Pool::Average))
        }
        "ReduceMean" => {
            let axes = ints(node, "axes")
                .filter(|a| !a.is_empty())
                .or_else(|| {
                    let t = initializer(model, node.input.get(1)?)?;
                    Some(
                        t.raw_data
                            .chunks_exact(8)
                            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                            .chain(t.int64_data.iter().copied())
                            .collect(),
                    )
                })
                .unwrap_or_default();
            let mut sorted = axes.clone();
            sorted.sort_unstable();
            match sorted.as_slice() {
                [2, 3] => Ok((input, None, MapLayout::Nchw, Pool::Average)),
                [1, 2] => Ok((input, None, MapLayout::Nhwc, Pool::Average)),
                _ => Err(ExplainGraphError::Unsupported(format!(
                    "a ReduceMean over axes {axes:?}, not a feature map's spatial axes"
                ))),
            }
        }
        "MaxPool" => {
            let dilated = ints(node, "dilations").is_some_and(|d| d.iter().any(|&v| v != 1));
            let ceil = int_attr(node, "ceil_mode").unwrap_or(0) != 0;
            let auto_pad = node
                .attribute
                .iter()
                .find(|a| a.name == "auto_pad")
                .map(|a| String::from_utf8_lossy(&a.s).to_string())
                .filter(|p| p != "NOTSET");
            if dilated || ceil || auto_pad.is_some() || node.output.len() > 1 {
                return Err(ExplainGraphError::Unsupported(
                    "a MaxPool with dilations, ceil_mode or auto_pad".into(),
                ));
            }
            let attributes = node
                .attribute
                .iter()
                .filter(|a| ["kernel_shape", "strides", "pads"].contains(&a.name.as_str()))
                .cloned()
                .collect();
            Ok((input, None, MapLayout::Nchw, Pool::Max { attributes }))
        }
        other => Err(ExplainGraphError::Unsupported(format!(
            "a {other} between the feature map and the features"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::graph::build::{float_tensor, int64_tensor, node};
    use onnx_protobuf::tensor_proto::DataType;
    use onnx_protobuf::{GraphProto, TensorProto};

    /// conv (4 channels) → relu → max-pool → `between` → flatten → dense 16
    /// → relu → dense 8 (the features' layer is the caller's).
    fn vgg_like(between: Option<NodeProto>) -> ModelProto {
        let mut g = GraphProto::new();
        g.initializer = vec![
            float_tensor("conv.w", &[4, 3, 3, 3], &[0.1; 108]),
            float_tensor("fc1.w", &[4 * 2 * 2, 16], &[0.5; 256]),
            float_tensor("fc2.w", &[16, 8], &[0.25; 128]),
            int64_tensor("flat.shape", &[-1, 16]),
        ];
        let pool = node("MaxPool", &["conv_relu"], "pool", vec![]);
        let mut nodes = vec![
            node("Conv", &["input", "conv.w"], "conv", vec![]),
            node("Relu", &["conv"], "conv_relu", vec![]),
            pool,
        ];
        let flat_input = match between {
            Some(n) => {
                let out = n.output[0].clone();
                nodes.push(n);
                out
            }
            None => "pool".to_string(),
        };
        nodes.extend([
            node("Reshape", &[&flat_input, "flat.shape"], "flat", vec![]),
            node("MatMul", &["flat", "fc1.w"], "fc1", vec![]),
            node("Relu", &["fc1"], "fc1_relu", vec![]),
            node("MatMul", &["fc1_relu", "fc2.w"], "fc2", vec![]),
            node("Relu", &["fc2"], "features", vec![]),
        ]);
        g.node = nodes;
        let mut m = ModelProto::new();
        m.graph = protobuf::MessageField::some(g);
        m
    }

    fn ops(n: &Nodes) -> Vec<&str> {
        n.nodes.iter().map(|n| n.op_type.as_str()).collect()
    }

    #[test]
    fn a_max_pooled_flatten_skips_the_first_dense_layers_backward_pass() {
        let nhwc = node(
            "Transpose",
            &["pool"],
            "pool_nhwc",
            vec![Nodes::ints_attr("perm", &[0, 2, 3, 1])],
        );
        for model in [vgg_like(None), vgg_like(Some(nhwc))] {
            let tail = Tail::find(&model, &Stored::INLINE, "features").unwrap();
            let sums = tail.sums.as_ref().expect("the channel sums are used");
            // fc1's 16 inputs are 4 channels × 4 cells of 0.5.
            assert_eq!(sums.matrix.dims, [4, 16]);
            let mut n = Nodes::new(13);
            tail.grad_cam(&mut n, "gradient");
            let ops = ops(&n);
            assert!(!ops.contains(&"MaxUnpool"), "{ops:?}");
            // One Gemm for fc2's backward pass, one for the sums.
            assert_eq!(ops.iter().filter(|&&o| o == "Gemm").count(), 2, "{ops:?}");
        }
    }

    /// An 8-bit tensor (`INT8`, or `UINT8` when not `signed`).
    fn bytes_tensor(name: &str, dims: &[i64], values: &[u8], signed: bool) -> TensorProto {
        let mut t = int8_tensor(name, dims, values);
        if !signed {
            t.data_type = DataType::UINT8 as i32;
        }
        t
    }

    /// [`vgg_like`] as a QDQ model writes it: ReLUs folded into the
    /// QuantizeLinear after each layer, activations quantized again after
    /// the pooling and the flatten, dense weights 8-bit behind a
    /// DequantizeLinear with a scale per output (fc2's all `fc2_value`).
    fn vgg_like_qdq(fc2_value: u8) -> ModelProto {
        let mut g = GraphProto::new();
        let (s, z) = ("act.scale", "act.zero");
        g.initializer = vec![
            float_tensor("conv.w", &[4, 3, 3, 3], &[0.1; 108]),
            float_tensor(s, &[], &[0.05]),
            bytes_tensor(z, &[], &[0], false),
            bytes_tensor("fc1.q", &[16, 16], &[2; 256], true),
            float_tensor("fc1.scale", &[16], &[0.25; 16]),
            bytes_tensor("fc2.q", &[16, 8], &[fc2_value; 128], true),
            float_tensor(
                "fc2.scale",
                &[8],
                &(0..8).map(|o| 0.5 + o as f32).collect::<Vec<_>>(),
            ),
            int64_tensor("flat.shape", &[-1, 16]),
        ];
        let axis = || vec![Nodes::int_attr("axis", 1)];
        let qdq = |x: &str| {
            [
                node("QuantizeLinear", &[x, s, z], &format!("{x}.q"), vec![]),
                node(
                    "DequantizeLinear",
                    &[&format!("{x}.q"), s, z],
                    &format!("{x}.dq"),
                    vec![],
                ),
            ]
        };
        let mut nodes = vec![node("Conv", &["input", "conv.w"], "conv", vec![])];
        nodes.extend(qdq("conv"));
        nodes.push(node("MaxPool", &["conv.dq"], "pool", vec![]));
        nodes.extend(qdq("pool"));
        nodes.push(node("Reshape", &["pool.dq", "flat.shape"], "flat", vec![]));
        nodes.extend(qdq("flat"));
        for (layer, input) in [("fc1", "flat.dq"), ("fc2", "fc1.dq")] {
            let (q, scale, w) = (
                format!("{layer}.q"),
                format!("{layer}.scale"),
                format!("{layer}.w"),
            );
            nodes.push(node("DequantizeLinear", &[&q, &scale], &w, axis()));
            nodes.push(node("MatMul", &[input, &w], layer, vec![]));
            nodes.extend(qdq(layer));
        }
        g.node = nodes;
        let mut m = ModelProto::new();
        m.graph = protobuf::MessageField::some(g);
        let mut onnx = onnx_protobuf::OperatorSetIdProto::new();
        onnx.version = 13;
        m.opset_import.push(onnx);
        m
    }

    #[test]
    fn a_qdq_model_is_walked_back_with_clips_and_weights_read_once() {
        let model = vgg_like_qdq(3);
        let tail = Tail::find(&model, &Stored::INLINE, "fc2.dq").unwrap();
        let sums = tail.sums.as_ref().expect("fc1 is summed per channel");
        // fc1's 16 inputs are 4 channels × 4 cells of 2 · 0.25.
        assert_eq!(sums.matrix.dims, [4, 16]);
        assert!(sums
            .matrix
            .raw_data
            .chunks_exact(4)
            .all(|b| b == 2f32.to_le_bytes()));
        // The quantizations after fc1 and fc2 clip; those after the pooling
        // and the flatten (of values they made themselves) do not.
        let clips = tail
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Clip { .. }))
            .count();
        assert_eq!(clips, 2, "{:?}", tail.steps);
        // fc2 (7-bit values, zero points 0): read once for an 8-bit product.
        let [Step::Int8Dense { by_output, scales }] = &tail
            .walked_back()
            .iter()
            .filter(|s| s.is_dense())
            .collect::<Vec<_>>()[..]
        else {
            panic!("fc2 is not an 8-bit product: {:?}", tail.steps);
        };
        assert_eq!(by_output.0.dims, [8, 16]);
        assert!(by_output.0.raw_data.iter().all(|&b| b == 3));
        let scales: Vec<f32> = scales
            .0
            .raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(scales, (0..8).map(|o| 0.5 + o as f32).collect::<Vec<_>>());
        let mut n = Nodes::new(13);
        tail.grad_cam(&mut n, "gradient");
        let ops = ops(&n);
        assert_eq!(ops.iter().filter(|&&o| o == "And").count(), 2, "{ops:?}");
        assert!(ops.contains(&"MatMulInteger"), "{ops:?}");
        assert!(
            !ops.contains(&"DequantizeLinear"),
            "no weight dequantized per run: {ops:?}"
        );
        assert!(!ops.contains(&"MaxUnpool"), "{ops:?}");
        // A layer read for an 8-bit product is still a dense layer: behind
        // an average pooling, its map is Grad-CAM's, not CAM.
        let mut pooled = tail.clone();
        pooled.pool = Pool::Average;
        pooled.steps.retain(|s| !matches!(s, Step::Dense { .. }));
        assert!(!pooled.is_pooled());
    }

    #[test]
    fn full_range_int8_weights_are_read_as_floats() {
        // Values past ±64 could saturate the 16-bit sums of CPUs without VNNI.
        let tail = Tail::find(&vgg_like_qdq(100), &Stored::INLINE, "fc2.dq").unwrap();
        let read: Vec<&ReadWeight> = tail
            .walked_back()
            .iter()
            .filter_map(|s| match s {
                Step::Dense {
                    weight: Weight::Read(r),
                    transposed: false,
                    ..
                } => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(read.len(), 1, "fc2 is read as floats: {:?}", tail.steps);
        assert_eq!(read[0].0.dims, [16, 8]);
        let first_row: Vec<f32> = read[0].0.raw_data[..32]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let expected: Vec<f32> = (0..8).map(|o| 100.0 * (0.5 + o as f32)).collect();
        assert_eq!(first_row, expected);
        let mut n = Nodes::new(13);
        tail.grad_cam(&mut n, "gradient");
        assert!(!ops(&n).contains(&"MatMulInteger"));
    }

    #[test]
    fn anything_else_between_the_pooling_and_the_flatten_takes_the_whole_way_back() {
        let odd = node("Sigmoid", &["pool"], "pool_odd", vec![]);
        assert!(Tail::find(&vgg_like(Some(odd)), &Stored::INLINE, "features").is_err());
        let squeezed = node("Unsqueeze", &["pool"], "pool_more", vec![]);
        let tail = Tail::find(&vgg_like(Some(squeezed)), &Stored::INLINE, "features").unwrap();
        assert!(tail.sums.is_none());
        let mut n = Nodes::new(13);
        tail.grad_cam(&mut n, "gradient");
        assert!(ops(&n).contains(&"MaxUnpool"));
    }
}
