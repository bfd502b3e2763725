//! An infer request's body (JSON, or JSON followed by binary tensor data)
//! read into a [`Payload`] and the outputs it asks for; the model's
//! signature as the protocol lists it.

use axum::http::HeaderMap;
use bytes::Bytes;

use super::binary::split_bytes;
use super::data::{flatten, Element};
use super::error::{bad, InferError};
use super::types::{
    Datatype, InferRequest, RequestInput, TensorMetadata, EXPLANATION, HEADER_LENGTH, IMAGE_INPUT,
    LABEL, PROBABILITIES,
};
use crate::http::input::{check_count, decode_base64, InputError};
use crate::model::Classifier;
use crate::pipeline::Payload;

/// An output to answer with, and how.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Wanted {
    pub(crate) output: Output,
    pub(crate) binary: bool,
    /// Top K as `"probability:index:label"` strings (Triton's classification extension).
    pub(crate) classification: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Probabilities,
    Label,
    Explanation,
}

/// What an infer request asks.
pub(crate) struct Parsed {
    pub(crate) id: Option<String>,
    pub(crate) payload: Payload,
    pub(crate) outputs: Vec<Wanted>,
    /// Whether the answers are explained (the `explanation` output).
    pub(crate) explain: bool,
}

impl Parsed {
    fn explains(outputs: &[Wanted]) -> bool {
        outputs.iter().any(|w| w.output == Output::Explanation)
    }
}

/// The model's FP32 input: its name and one picture's dimensions.
fn tensor_input(model: &Classifier) -> (&str, Vec<usize>) {
    (
        model.info().input.name.as_str(),
        model.preprocessor().batch_shape(1)[1..].to_vec(),
    )
}

/// The inputs and outputs the model metadata lists.
pub(crate) fn signature(model: &Classifier) -> (Vec<TensorMetadata>, Vec<TensorMetadata>) {
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
            tensor(EXPLANATION, Datatype::Bytes, vec![-1]),
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
pub(crate) fn parse(
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
        explain: Parsed::explains(&outputs),
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
                decode_base64(s).map_err(|source| InputError::Base64 { index, source }.into())
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
    let explain = request
        .parameters
        .as_ref()
        .and_then(|p| p.explain)
        .unwrap_or(false);
    let Some(asked) = &request.outputs else {
        let explained = explain.then_some(Output::Explanation);
        return Ok([Output::Probabilities, Output::Label]
            .into_iter()
            .chain(explained)
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
            EXPLANATION => Output::Explanation,
            other => {
                return Err(bad(format!(
                    "unexpected inference output `{other}` for model `{model}`; it has `{PROBABILITIES}`, `{LABEL}` and `{EXPLANATION}`"
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
