//! Writing the explanation branch's nodes: fresh tensor names, constants,
//! and the few compound steps the branch takes more than once.

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{AttributeProto, NodeProto, TensorProto};

use crate::model::graph::build::{float_tensor, int64_tensor, int8_tensor};

/// How a feature map is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MapLayout {
    Nchw,
    Nhwc,
}

/// Prefix of every tensor and node the branch adds.
pub(crate) const PREFIX: &str = "catdog.explain";

/// The nodes and constants of a subgraph being written, for a graph of
/// this opset.
pub(crate) struct Nodes {
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) constants: Vec<TensorProto>,
    next: usize,
    opset: i64,
}

impl Nodes {
    pub(crate) fn new(opset: i64) -> Self {
        Self {
            nodes: Vec::new(),
            constants: Vec::new(),
            next: 0,
            opset,
        }
    }

    fn fresh(&mut self, what: &str) -> String {
        self.next += 1;
        format!("{PREFIX}.{}{}", what.to_lowercase(), self.next)
    }

    /// Adds `op(inputs)` with one output; returns the output's name.
    pub(crate) fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(op);
        self.op_into(op, inputs, &[&out], attrs);
        out
    }

    /// Adds `op(inputs)` writing the named outputs.
    pub(crate) fn op_into(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) {
        let mut n = NodeProto::new();
        n.op_type = op.to_string();
        n.name = format!("{}.node", outputs[0]);
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = outputs.iter().map(|s| s.to_string()).collect();
        n.attribute = attrs;
        self.nodes.push(n);
    }

    /// A float constant of the given shape.
    pub(crate) fn constant(&mut self, dims: &[i64], values: &[f32]) -> String {
        let name = self.fresh("const");
        self.constants.push(float_tensor(&name, dims, values));
        name
    }

    pub(crate) fn scalar(&mut self, v: f32) -> String {
        self.constant(&[], &[v])
    }

    pub(crate) fn int64s(&mut self, values: &[i64]) -> String {
        let name = self.fresh("const");
        self.constants.push(int64_tensor(&name, values));
        name
    }

    /// `MaxPool` of `map` with the given attributes, for its second output:
    /// where each window's maximum is.
    pub(crate) fn max_pool_indices(&mut self, map: &str, attrs: Vec<AttributeProto>) -> String {
        let pooled = self.fresh("maxpool");
        let indices = self.fresh("indices");
        self.op_into("MaxPool", &[map], &[&pooled, &indices], attrs);
        indices
    }

    /// `g` where the boolean `keep` is true, 0 elsewhere.
    pub(crate) fn masked(&mut self, g: &str, keep: &str) -> String {
        let mask = self.op(
            "Cast",
            &[keep],
            vec![Self::int_attr("to", DataType::FLOAT as i64)],
        );
        self.op("Mul", &[g, &mask], vec![])
    }

    /// `g · Wᵀ` for 8-bit `W` (`transposed`: `Wᵀ` as `[K, M]` int8, a
    /// constant of the branch) and per-row scales folded into `g` first
    /// (`scales`, `[K]`): `g` quantized to 8 bits on the fly, one integer
    /// matrix product, rescaled. About 1 % off the float product, and it
    /// reads a quarter of the bytes.
    pub(crate) fn int8_product(&mut self, g: &str, transposed: &str, scales: &str) -> String {
        let scaled = self.op("Mul", &[g, scales], vec![]);
        // Each picture's row brought to [-1, 1] first: the quantization's
        // one scale then fits every picture of a batch alike.
        let magnitude = self.op("Abs", &[&scaled], vec![]);
        let largest = self.reduce_max(&magnitude, 1);
        let tiny = self.scalar(f32::MIN_POSITIVE);
        let largest = self.op("Max", &[&largest, &tiny], vec![]);
        let unit = self.op("Div", &[&scaled, &largest], vec![]);
        let (q, scale, zero) = (self.fresh("gq"), self.fresh("gscale"), self.fresh("gzero"));
        self.op_into(
            "DynamicQuantizeLinear",
            &[&unit],
            &[&q, &scale, &zero],
            vec![],
        );
        let none = self.fresh("wzero");
        self.constants.push(int8_tensor(&none, &[], &[0]));
        let product = self.op("MatMulInteger", &[&q, transposed, &zero, &none], vec![]);
        let product = self.op(
            "Cast",
            &[&product],
            vec![Self::int_attr("to", DataType::FLOAT as i64)],
        );
        let product = self.op("Mul", &[&product, &scale], vec![]);
        self.op("Mul", &[&product, &largest], vec![])
    }

    /// Whether [`Nodes::int8_product`] can be written (DynamicQuantizeLinear
    /// came with opset 11).
    pub(crate) fn has_int8_product(opset: i64) -> bool {
        opset >= 11
    }

    /// `ReduceMax` over `axis`, kept: an attribute before opset 18, an
    /// input since.
    fn reduce_max(&mut self, input: &str, axis: i64) -> String {
        let keep = Self::int_attr("keepdims", 1);
        if self.opset >= 18 {
            let axes = self.int64s(&[axis]);
            self.op("ReduceMax", &[input, &axes], vec![keep])
        } else {
            let axes = Self::ints_attr("axes", &[axis]);
            self.op("ReduceMax", &[input], vec![axes, keep])
        }
    }

    /// The number of cells of a feature map (`H·W`), as a float scalar.
    pub(crate) fn spatial_cells(&mut self, map: &str, layout: MapLayout) -> String {
        let shape = self.op("Shape", &[map], vec![]);
        let axes = match layout {
            MapLayout::Nchw => [2, 3],
            MapLayout::Nhwc => [1, 2],
        };
        let axes = self.int64s(&axes);
        let dims = self.op("Gather", &[&shape, &axes], vec![]);
        // Every axis, kept: the same form in every opset.
        let cells = self.op("ReduceProd", &[&dims], vec![Self::int_attr("keepdims", 0)]);
        self.op(
            "Cast",
            &[&cells],
            vec![Self::int_attr("to", DataType::FLOAT as i64)],
        )
    }

    /// `[N, H, W]`: the channels of `map` (whose shape `shape_of` has)
    /// summed with per-picture `weights` (`N × C` values in channel
    /// order), as one batched MatMul over the map's cells.
    pub(crate) fn channels_weighted(
        &mut self,
        map: &str,
        shape_of: &str,
        weights: &str,
        layout: MapLayout,
    ) -> String {
        let shape = self.op("Shape", &[shape_of], vec![]);
        let (spatial, product) = match layout {
            MapLayout::Nchw => {
                // [N, 1, C] · [N, C, H·W]
                let row = self.int64s(&[0, 1, -1]);
                let w = self.op("Reshape", &[weights, &row], vec![]);
                let cells = self.int64s(&[0, 0, -1]);
                let m = self.op("Reshape", &[map, &cells], vec![]);
                ([0, 2, 3], self.op("MatMul", &[&w, &m], vec![]))
            }
            MapLayout::Nhwc => {
                // [N, H·W, C] · [N, C, 1]
                let column = self.int64s(&[0, -1, 1]);
                let w = self.op("Reshape", &[weights, &column], vec![]);
                let first = self.int64s(&[0]);
                let last = self.int64s(&[3]);
                let n = self.op("Gather", &[&shape, &first], vec![]);
                let c = self.op("Gather", &[&shape, &last], vec![]);
                let any = self.int64s(&[-1]);
                let rows = self.op("Concat", &[&n, &any, &c], vec![Self::int_attr("axis", 0)]);
                let m = self.op("Reshape", &[map, &rows], vec![]);
                ([0, 1, 2], self.op("MatMul", &[&m, &w], vec![]))
            }
        };
        let axes = self.int64s(&spatial);
        let out_shape = self.op("Gather", &[&shape, &axes], vec![]);
        self.op("Reshape", &[&product, &out_shape], vec![])
    }

    pub(crate) fn int_attr(name: &str, v: i64) -> AttributeProto {
        let mut a = AttributeProto::new();
        a.name = name.to_string();
        a.type_ = protobuf::EnumOrUnknown::new(AttributeType::INT);
        a.i = v;
        a
    }

    pub(crate) fn float_attr(name: &str, v: f32) -> AttributeProto {
        let mut a = AttributeProto::new();
        a.name = name.to_string();
        a.type_ = protobuf::EnumOrUnknown::new(AttributeType::FLOAT);
        a.f = v;
        a
    }

    pub(crate) fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
        let mut a = AttributeProto::new();
        a.name = name.to_string();
        a.type_ = protobuf::EnumOrUnknown::new(AttributeType::INTS);
        a.ints = v.to_vec();
        a
    }
}
