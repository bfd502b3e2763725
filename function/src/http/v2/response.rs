//! Predictions into the protocol's answer: JSON, or JSON followed by the
//! binary outputs when any is asked in binary.

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::binary::join_bytes;
use super::request::{Output, Wanted};
use super::types::{
    Datatype, InferResponse, Parameters, ResponseOutput, TensorData, EXPLANATION, HEADER_LENGTH,
    LABEL, PROBABILITIES,
};
use crate::model::output::Prediction;
use crate::model::Classifier;

/// One output's elements, before they go out as JSON or binary.
enum Elements {
    Numbers(Vec<f32>),
    Strings(Vec<String>),
}

/// The answer: JSON, or JSON followed by the binary outputs (with the
/// `Inference-Header-Content-Length` header) when any is asked in binary.
pub(crate) fn respond(
    model: &Classifier,
    id: Option<String>,
    outputs: &[Wanted],
    predictions: &[Prediction],
) -> Response {
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    let tensors = outputs
        .iter()
        .map(|w| {
            let (name, shape, elements) = output(w, predictions);
            encode(name, shape, elements, w.binary, &mut blobs)
        })
        .collect();
    let answer = InferResponse {
        model_name: model.name().to_string(),
        model_version: model.version().map(str::to_owned),
        id,
        outputs: tensors,
    };
    let json = serde_json::to_vec(&answer).unwrap_or_default();
    body(json, blobs)
}

/// One asked output's name, shape and elements.
fn output(w: &Wanted, predictions: &[Prediction]) -> (&'static str, Vec<usize>, Elements) {
    let n = predictions.len();
    match (w.output, w.classification) {
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
            let strings = predictions.iter().flat_map(|p| top_k(p, k)).collect();
            (PROBABILITIES, vec![n, k], Elements::Strings(strings))
        }
        (Output::Label, _) => (
            LABEL,
            vec![n],
            Elements::Strings(predictions.iter().map(|p| p.label.clone()).collect()),
        ),
        (Output::Explanation, _) => (
            EXPLANATION,
            vec![n],
            Elements::Strings(
                predictions
                    .iter()
                    .map(|p| serde_json::to_string(&p.explanation).unwrap_or_default())
                    .collect(),
            ),
        ),
    }
}

/// The classification extension's `score:index:label` strings of the `k`
/// best classes, best first.
fn top_k(p: &Prediction, k: usize) -> Vec<String> {
    let mut ranked: Vec<(usize, &(String, f32))> = p.scores.0.iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    ranked
        .into_iter()
        .take(k)
        .map(|(i, (label, v))| format!("{v}:{i}:{label}"))
        .collect()
}

/// The output tensor: its data in the JSON, or (binary) its bytes added to
/// `blobs` and their size in its parameters.
fn encode(
    name: &str,
    shape: Vec<usize>,
    elements: Elements,
    binary: bool,
    blobs: &mut Vec<Vec<u8>>,
) -> ResponseOutput {
    let datatype = match elements {
        Elements::Numbers(_) => Datatype::Fp32,
        Elements::Strings(_) => Datatype::Bytes,
    };
    let (parameters, data) = if binary {
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
    ResponseOutput {
        name: name.to_string(),
        datatype,
        shape,
        parameters,
        data,
    }
}

/// The JSON alone, or the JSON then the binary outputs with the length of
/// the JSON in `Inference-Header-Content-Length`.
fn body(json: Vec<u8>, blobs: Vec<Vec<u8>>) -> Response {
    if blobs.is_empty() {
        let json_type = HeaderValue::from_static("application/json");
        return ([(header::CONTENT_TYPE, json_type)], json).into_response();
    }
    let json_len = json.len();
    let mut body = json;
    for blob in blobs {
        body.extend_from_slice(&blob);
    }
    let binary_type = HeaderValue::from_static("application/octet-stream");
    let mut res = ([(header::CONTENT_TYPE, binary_type)], Body::from(body)).into_response();
    res.headers_mut()
        .insert(HEADER_LENGTH, HeaderValue::from(json_len));
    res
}
