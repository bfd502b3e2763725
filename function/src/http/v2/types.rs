//! The Open Inference Protocol's (v2 REST) wire types, as KServe and Triton
//! define them: what the `/v2` handlers serialize and read, and their
//! OpenAPI schemas.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A request's or tensor's `parameters`: any JSON values by name.
pub type Parameters = serde_json::Map<String, serde_json::Value>;

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
    /// `BYTES`, `FP32`, …
    pub datatype: String,
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
    /// `binary_data_output: true` asks for every output in binary.
    #[serde(default)]
    #[schema(value_type = Object, nullable = false)]
    pub parameters: Option<Parameters>,
    pub inputs: Vec<RequestInput>,
    /// Which outputs, and how; all of them when absent.
    #[serde(default)]
    #[schema(nullable = false)]
    pub outputs: Option<Vec<RequestOutput>>,
}

/// One input tensor of a request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    /// `binary_data_size`: the tensor's bytes follow the JSON.
    #[serde(default)]
    #[schema(value_type = Object, nullable = false)]
    pub parameters: Option<Parameters>,
    /// The elements in row-major order, flat or nested (BYTES: base64 strings).
    #[serde(default)]
    #[schema(value_type = Vec<Object>, nullable = false)]
    pub data: Option<serde_json::Value>,
}

/// An output a request asks for.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestOutput {
    pub name: String,
    /// `binary_data: true|false`; `classification: K` (probabilities only)
    /// answers the top K as `"probability:index:label"` strings.
    #[serde(default)]
    #[schema(value_type = Object, nullable = false)]
    pub parameters: Option<Parameters>,
}

/// An answer's output tensor.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseOutput {
    pub name: String,
    pub datatype: &'static str,
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
