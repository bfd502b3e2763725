//! Tensors on the wire: an infer request's body (JSON, or JSON followed by
//! binary tensor data) into a [`Payload`] and the outputs it asks for, and
//! predictions into the answer, in JSON or binary as asked.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use crate::http::classify::Payload;
use crate::http::code::ErrorCode;
use crate::http::error::{ApiError, Unready};
use crate::http::input::{check_count, decode_base64, InputError};
use crate::http::v2::types::{
    Datatype, InferRequest, InferResponse, Parameters, RequestInput, ResponseOutput, TensorData,
    TensorMetadata,
};
use crate::model::output::Prediction;
use crate::model::Classifier;

/// The binary tensor data extension's header: the length of the JSON part.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The input of encoded pictures (BYTES).
pub const IMAGE_INPUT: &str = "image";
/// The output of probabilities, `[n, classes]` in `/model`'s label order.
pub const PROBABILITIES: &str = "probabilities";
/// The output of labels, `[n]`.
pub const LABEL: &str = "label";

/// Why an infer request (or a model route) is refused: the protocol's own
/// errors, and those it shares with `/predict` ([`InputError`], [`Unready`]).
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// Inputs, outputs, shapes, datatypes or binary framing catdog cannot take.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("unknown model `{asked}`: this server serves `{serves}`")]
    UnknownModel { asked: String, serves: String },
    #[error("model `{name}` has no version `{asked}`; it serves version `{serves}`")]
    UnknownVersion {
        name: String,
        asked: String,
        serves: String,
    },
    #[error("Content-Encoding {0:?} is not accepted: send the request uncompressed")]
    Compressed(String),
    #[error(transparent)]
    Unready(#[from] Unready),
}

impl From<InferError> for ApiError {
    fn from(e: InferError) -> Self {
        let code = match e {
            InferError::Invalid(_) => ErrorCode::InvalidInferenceRequest,
            InferError::Input(e) => return e.into(),
            InferError::Unready(e) => return e.into(),
            InferError::UnknownModel { .. } => ErrorCode::UnknownModel,
            InferError::UnknownVersion { .. } => ErrorCode::UnknownVersion,
            InferError::Compressed(_) => ErrorCode::UnsupportedMediaType,
        };
        ApiError::new(code, e.to_string())
    }
}

fn bad(message: impl Into<String>) -> InferError {
    InferError::Invalid(message.into())
}

/// An output to answer with, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub output: Output,
    pub binary: bool,
    /// Top K as `"probability:index:label"` strings (Triton's classification extension).
    pub classification: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Probabilities,
    Label,
}

/// What an infer request asks.
pub struct Parsed {
    pub id: Option<String>,
    pub payload: Payload,
    pub outputs: Vec<Wanted>,
}

/// The model's FP32 input: its name and one picture's dimensions.
fn tensor_input(model: &Classifier) -> (&str, Vec<usize>) {
    (
        model.info().input.name.as_str(),
        model.preprocessor().batch_shape(1)[1..].to_vec(),
    )
}

/// The inputs and outputs the model metadata lists.
pub fn signature(model: &Classifier) -> (Vec<TensorMetadata>, Vec<TensorMetadata>) {
    let (name, dims) = tensor_input(model);
    let tensor = |name: &str, datatype: Datatype, shape: Vec<i64>| TensorMetadata {
        name: name.to_string(),
        datatype,
        shape,
    };
    let mut tensor_shape = vec![-1i64];
    tensor_shape.extend(dims.iter().map(|&d| d as i64));
    let classes = model.info().labels.len() as i64;
    (
        vec![
            tensor(IMAGE_INPUT, Datatype::Bytes, vec![-1]),
            tensor(name, Datatype::Fp32, tensor_shape),
        ],
        vec![
            tensor(PROBABILITIES, Datatype::Fp32, vec![-1, classes]),
            tensor(LABEL, Datatype::Bytes, vec![-1]),
        ],
    )
}

/// Splits the body into the request's JSON, read, and the binary data
/// after it (binary tensor data extension: the JSON's length is the
/// `Inference-Header-Content-Length` header).
fn split_body(headers: &HeaderMap, body: &Bytes) -> Result<(InferRequest, Bytes), InferError> {
    let json_len = match headers.get(HEADER_LENGTH) {
        None => body.len(),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n <= body.len())
            .ok_or_else(|| {
                bad(format!(
                    "Inference-Header-Content-Length {v:?} is not a length within the body's {} bytes",
                    body.len()
                ))
            })?,
    };
    if json_len == 0 {
        return Err(InputError::Empty("an inference request").into());
    }
    let request: InferRequest = serde_json::from_slice(&body[..json_len])
        .map_err(|e| InputError::Json(format!("the inference request is not valid: {e}")))?;
    Ok((request, body.slice(json_len..)))
}

/// The model's one input as a request gives it: its shape checked, its
/// binary data (if any) taken from what follows the JSON.
struct Given<'a> {
    input: &'a RequestInput,
    shape: Vec<usize>,
    /// Elements the shape holds.
    elements: usize,
    /// Its bytes after the JSON, when it has `binary_data_size`.
    raw: Option<Bytes>,
}

impl Given<'_> {
    fn name(&self) -> &str {
        &self.input.name
    }

    /// The JSON `data`, flattened in row-major order into `T`s as they are
    /// read, no further than one element past the shape's count.
    fn data<T: Element>(&self) -> Result<Vec<T>, InferError> {
        let data = self.input.data.as_ref().ok_or_else(|| {
            bad(format!(
                "input `{}` has neither `data` nor `binary_data_size`",
                self.name()
            ))
        })?;
        flatten(data.get(), self.elements).map_err(|m| bad(format!("input `{}`: {m}", self.name())))
    }
}

/// Reads an infer request's body for `model`, taking at most `max_batch` pictures.
pub fn parse(
    headers: &HeaderMap,
    body: &Bytes,
    model: &Classifier,
    max_batch: usize,
) -> Result<Parsed, InferError> {
    let (request, binary) = split_body(headers, body)?;
    let (tensor_name, dims) = tensor_input(model);
    let accepted = format!(
        "`{IMAGE_INPUT}` (BYTES: encoded pictures) or `{tensor_name}` (FP32, shape [n, {}])",
        join(&dims)
    );
    let [input] = &request.inputs[..] else {
        return Err(bad(format!(
            "{} inputs given; this model takes one: {accepted}",
            request.inputs.len()
        )));
    };
    let given = given(input, binary)?;
    let payload = match input.datatype {
        Datatype::Bytes if input.name == IMAGE_INPUT => pictures(&given, max_batch)?,
        Datatype::Fp32 if input.name == tensor_name => tensors(&given, model, max_batch)?,
        Datatype::Bytes | Datatype::Fp32 => {
            return Err(bad(format!(
                "unexpected input `{}` ({}) for model `{}`; it takes {accepted}",
                input.name,
                input.datatype,
                model.name()
            )))
        }
        other => {
            return Err(bad(format!(
                "input `{}` is {other}; this model takes {accepted}",
                input.name
            )))
        }
    };
    let outputs = wanted(&request, model.name())?;
    Ok(Parsed {
        id: request.id,
        payload,
        outputs,
    })
}

/// `[a, b, c]` as `a, b, c`.
fn join(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The input's shape and its binary data; every byte after the JSON must be its.
fn given(input: &RequestInput, mut binary: Bytes) -> Result<Given<'_>, InferError> {
    if input.shape.iter().any(|&d| d < 0) {
        return Err(bad(format!(
            "input `{}` has a negative dimension in shape {:?}",
            input.name, input.shape
        )));
    }
    let shape: Vec<usize> = input.shape.iter().map(|&d| d as usize).collect();
    let elements = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|_| !shape.is_empty())
        .ok_or_else(|| {
            bad(format!(
                "input `{}` has no usable shape ({:?})",
                input.name, input.shape
            ))
        })?;
    let size = input.parameters.as_ref().and_then(|p| p.binary_data_size);
    let raw = match size {
        Some(size) => {
            if input.data.is_some() {
                return Err(bad(format!(
                    "input `{}` has both `data` and `binary_data_size`",
                    input.name
                )));
            }
            let size = usize::try_from(size)
                .ok()
                .filter(|&n| n <= binary.len())
                .ok_or_else(|| {
                    bad(format!(
                        "input `{}` says {size} bytes of binary data, but {} follow the JSON",
                        input.name,
                        binary.len()
                    ))
                })?;
            Some(binary.split_to(size))
        }
        None => None,
    };
    if !binary.is_empty() {
        return Err(bad(format!(
            "{} bytes follow the JSON that no input claims",
            binary.len()
        )));
    }
    Ok(Given {
        input,
        shape,
        elements,
        raw,
    })
}

/// `image`, BYTES: encoded pictures, base64 in JSON or length-prefixed in binary.
fn pictures(given: &Given, max_batch: usize) -> Result<Payload, InferError> {
    // The batch limit from the shape, before any element is read.
    check_count(given.elements, max_batch)?;
    let pictures: Vec<Bytes> = match &given.raw {
        Some(raw) => {
            split_bytes(raw.clone()).map_err(|m| bad(format!("input `{IMAGE_INPUT}`: {m}")))?
        }
        None => given
            .data::<String>()?
            .iter()
            .enumerate()
            .map(|(index, s)| {
                decode_base64(s).map_err(|message| InputError::Base64 { index, message }.into())
            })
            .collect::<Result<_, InferError>>()?,
    };
    if pictures.len() != given.elements {
        return Err(bad(format!(
            "input `{IMAGE_INPUT}` has shape {:?} ({} elements) but {} pictures",
            given.input.shape,
            given.elements,
            pictures.len()
        )));
    }
    Ok(Payload::Encoded(pictures))
}

/// The model's own input, FP32 `[n, …]` in exactly its shape, JSON or
/// little-endian binary; each picture's values checked by the preprocessor.
fn tensors(given: &Given, model: &Classifier, max_batch: usize) -> Result<Payload, InferError> {
    let (name, dims) = tensor_input(model);
    let shape = &given.shape;
    if shape.len() != dims.len() + 1 || shape[1..] != dims[..] {
        return Err(bad(format!(
            "input `{name}` has shape {:?}; this model takes [n, {}]",
            given.input.shape,
            join(&dims)
        )));
    }
    check_count(shape[0], max_batch)?;
    let values: Vec<f32> = match &given.raw {
        Some(raw) => {
            if raw.len() != given.elements * 4 {
                return Err(bad(format!(
                    "input `{name}`: {} bytes of binary data for {} FP32 values",
                    raw.len(),
                    given.elements
                )));
            }
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        }
        None => given.data::<f32>()?,
    };
    if values.len() != given.elements {
        return Err(bad(format!(
            "input `{name}` has shape {:?} ({} elements) but {} values",
            given.input.shape,
            given.elements,
            values.len()
        )));
    }
    let per = values.len() / shape[0];
    let tensors = values
        .chunks_exact(per)
        .enumerate()
        .map(|(i, row)| {
            model
                .preprocessor()
                .check_tensor(row.to_vec())
                .map_err(|e| bad(format!("input `{name}`, picture {i}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Payload::Tensors(tensors))
}

/// The outputs to answer with: those asked for, else all; binary where asked.
fn wanted(request: &InferRequest, model: &str) -> Result<Vec<Wanted>, InferError> {
    let all_binary = request
        .parameters
        .as_ref()
        .and_then(|p| p.binary_data_output)
        .unwrap_or(false);
    let Some(asked) = &request.outputs else {
        return Ok([Output::Probabilities, Output::Label]
            .into_iter()
            .map(|output| Wanted {
                output,
                binary: all_binary,
                classification: None,
            })
            .collect());
    };
    let mut out: Vec<Wanted> = Vec::new();
    for o in asked {
        let output = match o.name.as_str() {
            PROBABILITIES => Output::Probabilities,
            LABEL => Output::Label,
            other => {
                return Err(bad(format!(
                    "unexpected inference output `{other}` for model `{model}`; it has `{PROBABILITIES}` and `{LABEL}`"
                )))
            }
        };
        if out.iter().any(|w| w.output == output) {
            return Err(bad(format!("output `{}` is asked for twice", o.name)));
        }
        let parameters = o.parameters.as_ref();
        let classification = match parameters.and_then(|p| p.classification) {
            None => None,
            Some(k) if k >= 1 && output == Output::Probabilities => {
                Some(usize::try_from(k).unwrap_or(usize::MAX))
            }
            Some(k) => {
                return Err(bad(format!(
                    "`classification` takes a count of classes of 1 or more, on `{PROBABILITIES}` only (got {k} on `{}`)",
                    o.name
                )))
            }
        };
        out.push(Wanted {
            output,
            binary: parameters.and_then(|p| p.binary_data).unwrap_or(all_binary),
            classification,
        });
    }
    if out.is_empty() {
        return Err(bad(
            "`outputs` is empty: name at least one output, or leave it out for all",
        ));
    }
    Ok(out)
}

/// What a `data` array holds: FP32 numbers, or BYTES as base64 strings.
trait Element: Sized {
    /// What an element must be, for a refusal.
    const WHAT: &'static str;
    fn from_number(_: f64) -> Option<Self> {
        None
    }
    fn from_text(_: &str) -> Option<Self> {
        None
    }
}

impl Element for f32 {
    const WHAT: &'static str = "a number";
    fn from_number(v: f64) -> Option<Self> {
        Some(v as f32)
    }
}

impl Element for String {
    const WHAT: &'static str = "a (base64) string";
    fn from_text(v: &str) -> Option<Self> {
        Some(v.to_string())
    }
}

/// Flattens nested arrays of elements, in row-major order, into `T`s as
/// they are read from the JSON text (a million zeros are a million `f32`s,
/// never a million JSON values): past `limit` elements it stops with an
/// error, before the rest is read.
fn flatten<T: Element>(json: &str, limit: usize) -> Result<Vec<T>, String> {
    use serde::de::DeserializeSeed;
    let mut out = Vec::with_capacity(limit.min(1 << 20));
    let mut de = serde_json::Deserializer::from_str(json);
    Flat {
        out: &mut out,
        limit,
        top: true,
    }
    .deserialize(&mut de)
    .map_err(|e| {
        // serde_json adds " at line 1 column …": the message is the point.
        let e = e.to_string();
        e.split(" at line ").next().unwrap_or(&e).to_string()
    })?;
    Ok(out)
}

/// One level of [`flatten`]'s arrays (`top`: the `data` itself, which must be one).
struct Flat<'a, T> {
    out: &'a mut Vec<T>,
    limit: usize,
    top: bool,
}

impl<T: Element> Flat<'_, T> {
    fn push<E: serde::de::Error>(self, v: Option<T>) -> Result<(), E> {
        if self.top {
            return Err(E::custom("`data` must be an array"));
        }
        if self.out.len() == self.limit {
            return Err(E::custom(format!(
                "`data` holds more than the shape's {} elements",
                self.limit
            )));
        }
        let v =
            v.ok_or_else(|| E::custom(format!("element {} is not {}", self.out.len(), T::WHAT)))?;
        self.out.push(v);
        Ok(())
    }
}

impl<'de, T: Element> serde::de::DeserializeSeed<'de> for Flat<'_, T> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Element> serde::de::Visitor<'de> for Flat<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of elements, flat or nested")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (out, limit) = (self.out, self.limit);
        while seq
            .next_element_seed(Flat {
                out: &mut *out,
                limit,
                top: false,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.push(T::from_text(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.push(T::from_number(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.push(T::from_number(v as f64))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.push(T::from_number(v as f64))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.push(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.push(None)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.push(None)
    }
}

/// BYTES elements in binary: each is a 4-byte little-endian length, then its bytes.
fn split_bytes(mut raw: Bytes) -> Result<Vec<Bytes>, String> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        if raw.len() < 4 {
            return Err(format!(
                "{} stray bytes where an element's 4-byte length should be",
                raw.len()
            ));
        }
        let len = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
        let _ = raw.split_to(4);
        if len > raw.len() {
            return Err(format!(
                "element {} says {len} bytes, {} remain",
                out.len(),
                raw.len()
            ));
        }
        out.push(raw.split_to(len));
    }
    Ok(out)
}

/// BYTES elements in binary, as [`split_bytes`] reads them.
fn join_bytes<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(&(item.len() as u32).to_le_bytes());
        out.extend_from_slice(item);
    }
    out
}

/// One output's elements, before they go out as JSON or binary.
enum Elements {
    Numbers(Vec<f32>),
    Strings(Vec<String>),
}

/// The answer: JSON, or JSON followed by the binary outputs (with the
/// `Inference-Header-Content-Length` header) when any is asked in binary.
pub fn respond(
    model: &Classifier,
    id: Option<String>,
    outputs: &[Wanted],
    predictions: &[Prediction],
) -> Response {
    let n = predictions.len();
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    let mut tensors = Vec::new();
    for w in outputs {
        let (name, shape, elements) = match (w.output, w.classification) {
            (Output::Probabilities, None) => {
                let values: Vec<f32> = predictions
                    .iter()
                    .flat_map(|p| p.scores.0.iter().map(|(_, v)| *v))
                    .collect();
                let classes = values.len() / n.max(1);
                (PROBABILITIES, vec![n, classes], Elements::Numbers(values))
            }
            (Output::Probabilities, Some(k)) => {
                let k = k.min(predictions.first().map_or(0, |p| p.scores.0.len()));
                let strings = predictions
                    .iter()
                    .flat_map(|p| {
                        let mut ranked: Vec<(usize, &(String, f32))> =
                            p.scores.0.iter().enumerate().collect();
                        ranked.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
                        ranked
                            .into_iter()
                            .take(k)
                            .map(|(i, (label, v))| format!("{v}:{i}:{label}"))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                (PROBABILITIES, vec![n, k], Elements::Strings(strings))
            }
            (Output::Label, _) => (
                LABEL,
                vec![n],
                Elements::Strings(predictions.iter().map(|p| p.label.clone()).collect()),
            ),
        };
        let datatype = match elements {
            Elements::Numbers(_) => Datatype::Fp32,
            Elements::Strings(_) => Datatype::Bytes,
        };
        let (parameters, data) = if w.binary {
            let blob = match &elements {
                Elements::Numbers(v) => v.iter().flat_map(|f| f.to_le_bytes()).collect(),
                Elements::Strings(s) => join_bytes(s.iter().map(|s| s.as_bytes())),
            };
            let mut p = Parameters::new();
            p.insert("binary_data_size".into(), Value::from(blob.len()));
            blobs.push(blob);
            (Some(p), None)
        } else {
            let data = match elements {
                Elements::Numbers(v) => TensorData::Numbers(v),
                Elements::Strings(s) => TensorData::Strings(s),
            };
            (None, Some(data))
        };
        tensors.push(ResponseOutput {
            name: name.to_string(),
            datatype,
            shape,
            parameters,
            data,
        });
    }
    let answer = InferResponse {
        model_name: model.name().to_string(),
        model_version: model.version().map(str::to_owned),
        id,
        outputs: tensors,
    };
    let json = serde_json::to_vec(&answer).unwrap_or_default();
    if blobs.is_empty() {
        return (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response();
    }
    let json_len = json.len();
    let mut body = json;
    for blob in blobs {
        body.extend_from_slice(&blob);
    }
    let mut res = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        Body::from(body),
    )
        .into_response();
    res.headers_mut()
        .insert(HEADER_LENGTH, HeaderValue::from(json_len));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_elements_round_trip_and_malformed_ones_are_refused() {
        let joined = join_bytes([&b"ab"[..], b"", b"xyz"]);
        let split = split_bytes(Bytes::from(joined)).unwrap();
        assert_eq!(
            split,
            vec![Bytes::from("ab"), Bytes::new(), Bytes::from("xyz")]
        );
        assert!(split_bytes(Bytes::from_static(&[5, 0, 0, 0, 1])).is_err());
        assert!(split_bytes(Bytes::from_static(&[1, 0])).is_err());
    }

    #[test]
    fn nested_data_flattens_in_row_major_order() {
        let out: Vec<f32> = flatten("[[1, 2], [3, [4.5]]]", 4).unwrap();
        assert_eq!(out, [1.0, 2.0, 3.0, 4.5]);
        let words: Vec<String> = flatten(r#"["a", ["b"]]"#, 2).unwrap();
        assert_eq!(words, ["a", "b"]);
        assert_eq!(
            flatten::<f32>("\"x\"", 4).unwrap_err(),
            "`data` must be an array"
        );
        assert!(flatten::<f32>("{\"a\": 1}", 4).is_err());
        assert_eq!(
            flatten::<f32>("[1, {\"a\": 1}]", 4).unwrap_err(),
            "element 1 is not a number"
        );
        assert_eq!(
            flatten::<String>("[\"a\", 7]", 4).unwrap_err(),
            "element 1 is not a (base64) string"
        );
    }

    #[test]
    fn data_past_the_shape_is_refused_without_being_read() {
        // Six MiB of `0,`: refused at the shape's count plus one, and the
        // rest is never turned into values (nor even parsed).
        let mut huge = String::from("[");
        huge.push_str(&"0,".repeat(3 << 20));
        huge.push_str("0]");
        let e = flatten::<f32>(&huge, 16).unwrap_err();
        assert_eq!(e, "`data` holds more than the shape's 16 elements");
        // Malformed text after the point of refusal is not reached either.
        let e = flatten::<f32>("[1, 2, 3, oops", 2).unwrap_err();
        assert!(e.contains("more than the shape's 2"), "{e}");
        assert_eq!(flatten::<f32>("[[1], [2]]", 2).unwrap().len(), 2);
    }
}
