//! The Open Inference Protocol's (v2 REST) wire types, as KServe and Triton
//! define them: what the `/v2` handlers serialize and read, and their
//! OpenAPI schemas.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// The binary tensor data extension's header: the length of the JSON part.
pub(crate) const HEADER_LENGTH: &str = "inference-header-content-length";

/// The input of encoded pictures (BYTES).
pub(crate) const IMAGE_INPUT: &str = "image";
/// The output of probabilities, `[n, classes]` in `/model`'s label order.
pub(crate) const PROBABILITIES: &str = "probabilities";
/// The output of labels, `[n]`.
pub(crate) const LABEL: &str = "label";
/// The output of each answer's explanation (BYTES, one JSON document per
/// picture: label, method, grid, overlay_png), given when a request asks
/// (`parameters.explain`, or by naming it in `outputs`).
pub(crate) const EXPLANATION: &str = "explanation";

/// A request's or tensor's `parameters`: any JSON values by name.
pub(crate) type Parameters = serde_json::Map<String, serde_json::Value>;

/// A tensor's element type: every one the protocol names. catdog takes
/// `BYTES` (encoded pictures) and `FP32` (the model's own input); a request
/// naming another is well-formed, and refused by the model for its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum Datatype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bf16,
    Bytes,
}

impl std::fmt::Display for Datatype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the wire name, as serde writes it
        let name = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        f.write_str(name.as_str().unwrap_or_default())
    }
}

/// A parameter that is a flag: absent or `null` is "not said", anything but
/// a boolean is refused with a message that says what is wanted.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Bool(b)) => Ok(Some(b)),
        Some(v) => Err(serde::de::Error::custom(format!(
            "a flag parameter must be true or false (got {v})"
        ))),
    }
}

/// `GET /v2`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServerMetadata {
    pub(crate) name: String,
    pub(crate) version: String,
    /// Protocol extensions spoken here.
    pub(crate) extensions: Vec<String>,
}

/// `GET /v2/health/live`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServerLive {
    pub(crate) live: bool,
}

/// `GET /v2/health/ready` (and the model's `…/ready`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Readiness {
    pub(crate) ready: bool,
}

/// A tensor as model metadata names it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TensorMetadata {
    pub(crate) name: String,
    pub(crate) datatype: Datatype,
    /// `-1` where any size goes.
    pub(crate) shape: Vec<i64>,
}

/// `GET /v2/models/{name}`: give one of the inputs (encoded pictures as
/// BYTES, or the model's own FP32 input); both outputs come back unless the
/// request names some.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelMetadata {
    pub(crate) name: String,
    /// The SHA-256 prefix; empty for a moment after start while a local
    /// file's digest is computed.
    pub(crate) versions: Vec<String>,
    pub(crate) platform: String,
    pub(crate) inputs: Vec<TensorMetadata>,
    pub(crate) outputs: Vec<TensorMetadata>,
}

/// `POST /v2/models/{name}/infer`. With the binary tensor data extension,
/// the body is this JSON (its length in the `Inference-Header-Content-Length`
/// header) followed by each binary input's bytes in order.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
    "data": [crate::http::types::RED_PNG_BASE64]}]}))]
pub(crate) struct InferRequest {
    #[serde(default)]
    #[schema(nullable = false)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    #[schema(nullable = false)]
    pub(crate) parameters: Option<RequestParameters>,
    pub(crate) inputs: Vec<RequestInput>,
    /// Which outputs, and how; all of them when absent.
    #[serde(default)]
    #[schema(nullable = false)]
    pub(crate) outputs: Option<Vec<RequestOutput>>,
}

/// A request's parameters: the one catdog reads, and any others (ignored).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct RequestParameters {
    /// `true` asks for every output in binary (an output's own
    /// `binary_data` says otherwise for it).
    #[serde(default, deserialize_with = "flag")]
    #[schema(nullable = false)]
    pub(crate) binary_data_output: Option<bool>,
    /// `true` adds the `explanation` output: why each answer was given
    /// (docs/api.md: Explanations).
    #[serde(default, deserialize_with = "flag")]
    #[schema(nullable = false)]
    pub(crate) explain: Option<bool>,
}

/// One input tensor of a request.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RequestInput {
    pub(crate) name: String,
    pub(crate) shape: Vec<i64>,
    pub(crate) datatype: Datatype,
    #[serde(default)]
    #[schema(nullable = false)]
    pub(crate) parameters: Option<InputParameters>,
    /// The elements in row-major order, flat or nested (BYTES: base64
    /// strings). Kept as text until the request's structure (one input,
    /// its shape, the batch limit) is checked, then read up to the shape's
    /// count of elements: a body of a million `0,` costs no million values.
    #[serde(default)]
    #[schema(value_type = Vec<Object>, nullable = false)]
    pub(crate) data: Option<Box<serde_json::value::RawValue>>,
}

/// An input's parameters: the one catdog reads, and any others (ignored).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct InputParameters {
    /// The tensor's bytes follow the JSON (binary tensor data extension),
    /// this many of them, instead of `data`.
    #[serde(default)]
    #[schema(nullable = false)]
    pub(crate) binary_data_size: Option<u64>,
}

/// An output a request asks for.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RequestOutput {
    pub(crate) name: String,
    #[serde(default)]
    #[schema(nullable = false)]
    pub(crate) parameters: Option<OutputParameters>,
}

/// An output's parameters: those catdog reads, and any others (ignored).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct OutputParameters {
    /// In binary after the JSON (`true`), or as `data` (`false`).
    #[serde(default, deserialize_with = "flag")]
    #[schema(nullable = false)]
    pub(crate) binary_data: Option<bool>,
    /// On `probabilities` only: the top K as `"probability:index:label"`
    /// strings (Triton's classification extension).
    #[serde(default)]
    #[schema(nullable = false, minimum = 1)]
    pub(crate) classification: Option<u64>,
}

/// An answer's output tensor.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResponseOutput {
    pub(crate) name: String,
    pub(crate) datatype: Datatype,
    pub(crate) shape: Vec<usize>,
    /// `binary_data_size` when the data follows the JSON instead of `data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, nullable = false)]
    pub(crate) parameters: Option<Parameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) data: Option<TensorData>,
}

/// Output elements, row-major.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum TensorData {
    Numbers(Vec<f32>),
    Strings(Vec<String>),
}

/// The answer to an infer request (in binary, this JSON comes first).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InferResponse {
    pub(crate) model_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) model_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(crate) id: Option<String>,
    pub(crate) outputs: Vec<ResponseOutput>,
}
