//! Zero-copy weights: a model file's large initializers are left where they
//! lie in the file, and ONNX Runtime maps them instead of copying them.
//!
//! Given a whole `.onnx` file, ONNX Runtime parses the protobuf (a copy of
//! every weight) and then builds its own tensors from it (a second copy), so a
//! 528 MB VGG16 needs about twice its size at start and ~1 s of parsing and
//! copying before the session exists. [`split`] rewrites the protobuf at the
//! byte level (nothing is decoded but the framing) so each large initializer
//! becomes an ONNX *external data* reference (`location`, `offset`, `length`)
//! into the model file itself. ONNX Runtime memory-maps external data on the
//! CPU, so the graph it parses is a few kilobytes and the weights are used
//! straight from the page cache. Measured on VGG16: see bench/README.md.
//!
//! Only the top graph's initializers with `raw_data` are moved; everything
//! else (small tensors, typed `float_data`, subgraphs, tensors that already use
//! external data) is copied through untouched, so any valid model still loads.

use std::ops::Range;

use crate::model::framing::{put_len_field, put_varint, Fields, Malformed, Reader, Value};

/// Initializers smaller than this stay inside the graph: moving them saves
/// nothing measurable and keeps the rewritten graph close to the original.
pub(crate) const MIN_BYTES: usize = 64 * 1024;

/// Why the model's bytes could not be split: their framing is broken.
pub(crate) type SplitError = Malformed;

/// One initializer moved out of the graph: where its bytes are in the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Weight {
    pub(crate) name: String,
    /// ONNX `TensorProto.DataType` (same numbering as ONNX Runtime's element types).
    pub(crate) data_type: i32,
    pub(crate) dims: Vec<i64>,
    /// Byte range of the raw data inside the model bytes given to [`split`].
    pub(crate) range: Range<usize>,
}

/// A model with its large initializers cut out.
#[derive(Debug)]
pub(crate) struct Split {
    /// The rewritten `ModelProto` (graph, metadata, small initializers).
    pub(crate) graph: Vec<u8>,
    pub(crate) weights: Vec<Weight>,
}

impl Split {
    /// Bytes moved out of the graph.
    pub(crate) fn moved_bytes(&self) -> usize {
        self.weights.iter().map(|w| w.range.len()).sum()
    }
}

/// Element size of the ONNX data types that can be moved (fixed-size numbers).
fn element_size(data_type: i32) -> Option<usize> {
    Some(match data_type {
        2 | 3 | 9 => 1,       // uint8, int8, bool
        4 | 5 | 10 | 16 => 2, // uint16, int16, float16, bfloat16
        1 | 6 | 12 => 4,      // float, int32, uint32
        7 | 11 | 13 => 8,     // int64, double, uint64
        _ => return None,
    })
}

/// Splits the large initializers out of `model` (a serialized `ModelProto`,
/// the whole content of the file named `location`): each becomes a reference
/// to its own bytes in that file. Moved weights are never read; the result's
/// `graph` holds everything else verbatim.
pub(crate) fn split(model: &[u8], min_bytes: usize, location: &str) -> Result<Split, SplitError> {
    let mut weights = Vec::new();
    let mut graph = Vec::with_capacity(64 * 1024);
    for field in Fields::new(model, 0) {
        let field = field?;
        match (field.number, &field.value) {
            // ModelProto.graph
            (7, Value::Len(payload)) => {
                let rewritten =
                    split_graph(model, payload.clone(), min_bytes, location, &mut weights)?;
                put_len_field(&mut graph, 7, &rewritten);
            }
            _ => graph.extend_from_slice(&model[field.span.clone()]),
        }
    }
    Ok(Split { graph, weights })
}

fn split_graph(
    model: &[u8],
    range: Range<usize>,
    min_bytes: usize,
    location: &str,
    weights: &mut Vec<Weight>,
) -> Result<Vec<u8>, SplitError> {
    let mut out = Vec::with_capacity(16 * 1024);
    for field in Fields::new(&model[range.clone()], range.start) {
        let field = field?;
        let moved = match (field.number, &field.value) {
            // GraphProto.initializer
            (5, Value::Len(payload)) => split_tensor(model, payload.clone(), min_bytes, location)?,
            _ => None,
        };
        match moved {
            Some((tensor, weight)) => {
                put_len_field(&mut out, 5, &tensor);
                weights.push(weight);
            }
            None => out.extend_from_slice(&model[field.span.clone()]),
        }
    }
    Ok(out)
}

/// The rewritten `TensorProto` and its weight, or `None` to keep it as it is.
fn split_tensor(
    model: &[u8],
    range: Range<usize>,
    min_bytes: usize,
    location: &str,
) -> Result<Option<(Vec<u8>, Weight)>, SplitError> {
    let bytes = &model[range.clone()];
    let mut dims = Vec::new();
    let mut data_type = 0i32;
    let mut name: Option<String> = None;
    let mut raw: Option<Range<usize>> = None;
    let mut keep_inline = false;
    for field in Fields::new(bytes, range.start) {
        let field = field?;
        match (field.number, &field.value) {
            (1, Value::Varint(d)) => dims.push(*d as i64),
            (1, Value::Len(packed)) => {
                let mut r = Reader::new(&model[packed.clone()], packed.start);
                while !r.done() {
                    dims.push(r.varint()? as i64);
                }
            }
            (2, Value::Varint(t)) => data_type = *t as i32,
            (8, Value::Len(n)) => {
                name = std::str::from_utf8(&model[n.clone()])
                    .ok()
                    .map(str::to_owned)
            }
            (9, Value::Len(r)) => raw = Some(r.clone()),
            // segment, external_data, data_location: leave such tensors alone.
            (3 | 13 | 14, _) => keep_inline = true,
            _ => {}
        }
    }
    let (Some(name), Some(raw), Some(size)) = (name, raw, element_size(data_type)) else {
        return Ok(None);
    };
    let elements = dims.iter().try_fold(1usize, |n, &d| {
        usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
    });
    if keep_inline
        || name.is_empty()
        || raw.len() < min_bytes
        || elements.and_then(|n| n.checked_mul(size)) != Some(raw.len())
    {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(bytes.len().min(256) + 64);
    for field in Fields::new(bytes, range.start) {
        let field = field?;
        if field.number != 9 {
            out.extend_from_slice(&model[field.span.clone()]);
        }
    }
    // external_data { key value } ×3 ; data_location = EXTERNAL
    for (key, value) in [
        ("location", location.to_owned()),
        ("offset", raw.start.to_string()),
        ("length", raw.len().to_string()),
    ] {
        let mut entry = Vec::new();
        put_len_field(&mut entry, 1, key.as_bytes());
        put_len_field(&mut entry, 2, value.as_bytes());
        put_len_field(&mut out, 13, &entry);
    }
    put_varint(&mut out, 14 << 3);
    put_varint(&mut out, 1);
    Ok(Some((
        out,
        Weight {
            name,
            data_type,
            dims,
            range: raw,
        },
    )))
}

/// Why [`inline`] could not give a tensor its bytes back.
#[derive(Debug, thiserror::Error)]
pub enum InlineError {
    #[error("{0}")]
    Parse(#[from] protobuf::Error),
    #[error("tensor `{0}` points outside the model")]
    Outside(String),
}

/// Where a graph's tensors keep their bytes: in themselves, or as external
/// data in `base`, the model file named `location` that [`split`] cut them
/// from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stored<'a> {
    pub(crate) base: &'a [u8],
    pub(crate) location: &'a str,
}

impl Stored<'static> {
    /// A graph whose tensors all hold their own bytes.
    pub(crate) const INLINE: Self = Stored {
        base: &[],
        location: "",
    };
}

impl<'a> Stored<'a> {
    /// The raw (little-endian) bytes of `t`: its own, or its external data
    /// in this file. `None` for typed fields (`float_data`, …) and for
    /// external data elsewhere.
    pub(crate) fn raw<'t>(&self, t: &'t onnx_protobuf::TensorProto) -> Option<&'t [u8]>
    where
        'a: 't,
    {
        if !t.raw_data.is_empty() {
            return Some(&t.raw_data);
        }
        self.external(t)?.ok()
    }

    /// `t`'s bytes in `base` when it refers to this file: `Err` when the
    /// reference points outside it.
    fn external(&self, t: &onnx_protobuf::TensorProto) -> Option<Result<&'a [u8], ()>> {
        let get = |key: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.as_str())
        };
        if get("location")? != self.location {
            return None;
        }
        let number = |key: &str| get(key).and_then(|v| v.parse::<usize>().ok());
        let (offset, length) = (number("offset").unwrap_or(0), number("length"));
        Some(
            length
                .and_then(|n| self.base.get(offset..offset.checked_add(n)?))
                .ok_or(()),
        )
    }
}

/// The inverse of [`split`]: the serialized model `graph` with every tensor
/// that refers to external data in `location` given its bytes back from
/// `base` (the whole model file those references point into), as one
/// self-contained ONNX file.
pub(crate) fn inline(graph: &[u8], base: &[u8], location: &str) -> Result<Vec<u8>, InlineError> {
    use protobuf::Message;
    let stored = Stored { base, location };
    let mut m = onnx_protobuf::ModelProto::parse_from_bytes(graph)?;
    for t in m.graph.mut_or_insert_default().initializer.iter_mut() {
        let bytes = match stored.external(t) {
            None => continue,
            Some(found) => found.map_err(|()| InlineError::Outside(t.name.clone()))?,
        };
        t.raw_data = bytes.to_vec();
        t.external_data.clear();
        t.data_location =
            protobuf::EnumOrUnknown::new(onnx_protobuf::tensor_proto::DataLocation::DEFAULT);
    }
    Ok(m.write_to_bytes()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::Message;

    fn tensor(
        name: &str,
        dims: &[i64],
        data_type: i32,
        raw: Vec<u8>,
    ) -> onnx_protobuf::TensorProto {
        let mut t = onnx_protobuf::TensorProto::new();
        t.name = name.into();
        t.dims = dims.to_vec();
        t.data_type = data_type;
        t.raw_data = raw;
        t
    }

    fn model(inits: Vec<onnx_protobuf::TensorProto>) -> Vec<u8> {
        let mut m = onnx_protobuf::ModelProto::new();
        m.ir_version = 8;
        m.producer_name = "test".into();
        let mut g = onnx_protobuf::GraphProto::new();
        g.name = "g".into();
        g.initializer = inits;
        m.graph = protobuf::MessageField::some(g);
        let mut kv = onnx_protobuf::StringStringEntryProto::new();
        kv.key = "labels".into();
        kv.value = "[\"cat\",\"dog\"]".into();
        m.metadata_props.push(kv);
        m.write_to_bytes().unwrap()
    }

    #[test]
    fn moves_large_raw_initializers_and_keeps_everything_else() {
        let big: Vec<u8> = (0..4096u32)
            .flat_map(|i| (i as f32).to_le_bytes())
            .collect();
        let small = vec![1u8, 2, 3, 4];
        let bytes = model(vec![
            tensor("w", &[64, 64], 1, big.clone()),
            tensor("b", &[1], 1, small.clone()),
        ]);
        let split = split(&bytes, 1024, "m.onnx").unwrap();
        assert_eq!(split.weights.len(), 1);
        let w = &split.weights[0];
        assert_eq!(
            (w.name.as_str(), w.data_type, w.dims.as_slice()),
            ("w", 1, &[64i64, 64][..])
        );
        assert_eq!(
            &bytes[w.range.clone()],
            &big[..],
            "the range points at the weight's bytes"
        );
        assert_eq!(split.moved_bytes(), big.len());
        assert!(split.graph.len() < bytes.len() - big.len() + 100);

        let back = onnx_protobuf::ModelProto::parse_from_bytes(&split.graph).unwrap();
        assert_eq!(back.producer_name, "test");
        assert_eq!(back.metadata_props[0].value, "[\"cat\",\"dog\"]");
        let inits = &back.graph.initializer;
        assert_eq!(inits.len(), 2, "order and count of initializers kept");
        assert_eq!(inits[0].name, "w");
        assert!(inits[0].raw_data.is_empty());
        assert_eq!(inits[0].data_location.value(), 1, "marked EXTERNAL");
        let entries: Vec<(&str, &str)> = inits[0]
            .external_data
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        let (offset, length) = (w.range.start.to_string(), big.len().to_string());
        assert_eq!(
            entries,
            [
                ("location", "m.onnx"),
                ("offset", offset.as_str()),
                ("length", length.as_str())
            ]
        );
        assert_eq!(inits[0].dims, vec![64, 64]);
        assert_eq!(inits[1].raw_data, small, "small initializers stay inline");
    }

    #[test]
    fn leaves_tensors_it_cannot_describe() {
        let big = vec![0u8; 4096];
        let bytes = model(vec![
            tensor("bad_size", &[10], 1, big.clone()), // 40 bytes declared, 4096 given
            tensor("string", &[4096], 8, big.clone()), // not a fixed-size type
            tensor("", &[1024], 1, big.clone()),       // unnamed
        ]);
        let split = split(&bytes, 1024, "m.onnx").unwrap();
        assert!(split.weights.is_empty());
        assert_eq!(
            split.graph, bytes,
            "nothing moved: the model is copied verbatim"
        );
    }

    #[test]
    fn broken_framing_is_an_error_not_a_panic() {
        let big: Vec<u8> = vec![7; 8192];
        let bytes = model(vec![tensor("w", &[2048], 1, big)]);
        for cut in [1, 7, 100, bytes.len() / 2, bytes.len() - 1] {
            let r = split(&bytes[..cut], 1024, "m.onnx");
            assert!(r.is_err() || r.unwrap().weights.is_empty(), "cut at {cut}");
        }
        assert!(matches!(
            split(&[0xff; 12], 1024, "m.onnx"),
            Err(Malformed { .. })
        ));
    }
}
