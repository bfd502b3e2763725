//! The Open Inference Protocol's (v2 REST) wire types, as KServe and Triton
//! define them: what the `/v2` handlers serialize and read, and their
//! OpenAPI schemas.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// The binary tensor data extension's header: the length of the JSON part.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The input of encoded pictures (BYTES).
pub const IMAGE_INPUT: &str = "image";
/// The output of probabilities, `[n, classes]` in `/model`'s label order.
pub const PROBABILITIES: &str = "probabilities";
/// The output of labels, `[n]`.
pub const LABEL: &str = "label";

/// A request's or tensor's `parameters`: any JSON values by name.
pub type Parameters = serde_json::Map<String, serde_json::Value>;

/// A tensor's element type: every one the protocol names. catdog takes
/// `BYTES` (encoded pictures) and `FP32` (the model's own input); a request
/// naming another is well-formed, and refused by the model for its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Datatype {
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
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    /// Protocol extensions spoken here.
    pub extensions: Vec<String>,
}

/// `GET /v2/health/live`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerLive {
    pub live: bool,
}

/// `GET /v2/health/ready` (and the model's `…/ready`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
}

/// A tensor as model metadata names it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: Datatype,
    /// `-1` where any size goes.
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{name}`: give one of the inputs (encoded pictures as
/// BYTES, or the model's own FP32 input); both outputs come back unless the
/// request names some.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    /// The SHA-256 prefix; empty for a moment after start while a local
    /// file's digest is computed.
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// `POST /v2/models/{name}/infer`. With the binary tensor data extension,
/// the body is this JSON (its length in the `Inference-Header-Content-Length`
/// header) followed by each binary input's bytes in order.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
    "data": [crate::http::types::RED_PNG_BASE64]}]}))]
pub struct InferRequest {
    #[serde(default)]
    #[schema(nullable = false)]
    pub id: Option<String>,
    #[serde(default)]
    #[schema(nullable = false)]
    pub parameters: Option<RequestParameters>,
    pub inputs: Vec<RequestInput>,
    /// Which outputs, and how; all of them when absent.
    #[serde(default)]
    #[schema(nullable = false)]
    pub outputs: Option<Vec<RequestOutput>>,
}

/// A request's parameters: the one catdog reads, and any others (ignored).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RequestParameters {
    /// `true` asks for every output in binary (an output's own
    /// `binary_data` says otherwise for it).
    #[serde(default, deserialize_with = "flag")]
    #[schema(nullable = false)]
    pub binary_data_output: Option<bool>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: Parameters,
}

/// One input tensor of a request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: Datatype,
    #[serde(default)]
    #[schema(nullable = false)]
    pub parameters: Option<InputParameters>,
    /// The elements in row-major order, flat or nested (BYTES: base64
    /// strings). Kept as text until the request's structure (one input,
    /// its shape, the batch limit) is checked, then read up to the shape's
    /// count of elements: a body of a million `0,` costs no million values.
    #[serde(default)]
    #[schema(value_type = Vec<Object>, nullable = false)]
    pub data: Option<Box<serde_json::value::RawValue>>,
}

/// An input's parameters: the one catdog reads, and any others (ignored).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct InputParameters {
    /// The tensor's bytes follow the JSON (binary tensor data extension),
    /// this many of them, instead of `data`.
    #[serde(default)]
    #[schema(nullable = false)]
    pub binary_data_size: Option<u64>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: Parameters,
}

/// An output a request asks for.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default)]
    #[schema(nullable = false)]
    pub parameters: Option<OutputParameters>,
}

/// An output's parameters: those catdog reads, and any others (ignored).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct OutputParameters {
    /// In binary after the JSON (`true`), or as `data` (`false`).
    #[serde(default, deserialize_with = "flag")]
    #[schema(nullable = false)]
    pub binary_data: Option<bool>,
    /// On `probabilities` only: the top K as `"probability:index:label"`
    /// strings (Triton's classification extension).
    #[serde(default)]
    #[schema(nullable = false, minimum = 1)]
    pub classification: Option<u64>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: Parameters,
}

/// An answer's output tensor.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseOutput {
    pub name: String,
    pub datatype: Datatype,
    pub shape: Vec<usize>,
    /// `binary_data_size` when the data follows the JSON instead of `data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, nullable = false)]
    pub parameters: Option<Parameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub data: Option<TensorData>,
}

/// Output elements, row-major.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum TensorData {
    Numbers(Vec<f32>),
    Strings(Vec<String>),
}

/// The answer to an infer request (in binary, this JSON comes first).
#[derive(Debug, Serialize, ToSchema)]
pub struct InferResponse {
    pub model_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub model_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub id: Option<String>,
    pub outputs: Vec<ResponseOutput>,
}
