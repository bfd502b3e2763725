//! The classifier: an ONNX Runtime session plus the contract that says how to
//! feed it and read it.
//!
//! [`Classifier::load`] builds the session from bytes in memory, resolves the
//! contract (overrides > ONNX metadata > defaults), checks it against the
//! graph's input/output and runs one warm-up inference, so a model that cannot
//! answer is refused at start, never on a user's request.

pub mod contract;
pub mod imagenet;
pub mod output;
pub mod publish;
pub mod source;
pub mod weights;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use image::RgbImage;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use crate::preprocess::Preprocessor;
use contract::{ContractError, Layout, OutputKind, Preprocessing};
use output::{Head, Prediction};

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("not a valid ONNX model: {0}")]
    Onnx(String),
    #[error("model contract: {0}")]
    Contract(#[from] ContractError),
    #[error("the model is not an image classifier: {0}")]
    NotAnImageModel(String),
    #[error(
        "the model has {0} outputs and no `labels` metadata: set MODEL_LABELS to a JSON array of class names"
    )]
    NoLabels(usize),
    #[error("the model has {outputs} outputs but {labels} labels")]
    LabelCount { outputs: usize, labels: usize },
    #[error(
        "the model has no `preprocessing` metadata: set MODEL_PREPROCESSING to \"caffe\", \"torch\" or a JSON object \
         (see models/README.md); guessing would give wrong answers"
    )]
    NoPreprocessing,
    #[error("inference failed: {0}")]
    Inference(String),
}

/// Contract overrides and run-time settings for [`Classifier::load`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `MODEL_LABELS`: JSON array, wins over the metadata.
    pub labels: Option<String>,
    /// `MODEL_PREPROCESSING`: preset name or JSON object, wins over the metadata.
    pub preprocessing: Option<String>,
    /// Used when neither the override nor the metadata gives preprocessing
    /// (the stock zoo VGG16 carries none; it is torch-style).
    pub fallback_preprocessing: Option<Preprocessing>,
    /// Threshold for `neither` with ImageNet models.
    pub neither_below: Option<f32>,
    /// ONNX Runtime intra-op threads (default: the cores this process may use).
    pub threads: Option<usize>,
    /// Explicit path of libonnxruntime.
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime weight pre-packing; `None` = on for quantized graphs only.
    /// Measured on VGG16 (bench/README.md): off, an fp32 session builds in
    /// ~1.05 s instead of ~1.5 s at the same speed, while int8 runs 2× slower.
    pub prepack: Option<bool>,
    /// Local model files: let ONNX Runtime map the weights from the file in
    /// place (see [`weights`]); `None` = on. Off: it parses and copies them.
    pub zero_copy: Option<bool>,
}

/// What `GET /model` shows: enough to know exactly what is answering.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelInfo {
    pub uri: String,
    /// SHA-256 of the model bytes; `None` while a local file's digest is still
    /// being computed in the background (see [`Classifier::sha256`]).
    pub sha256: Option<String>,
    pub size_bytes: u64,
    /// `labels` (the model names its classes) or `imagenet` (cat/dog groups).
    pub kind: &'static str,
    pub labels: Vec<String>,
    pub input: TensorInfo,
    pub output: OutputInfo,
    /// The preprocessing contract (models/README.md).
    #[schema(value_type = Object)]
    pub preprocessing: Preprocessing,
    /// Where labels and preprocessing came from: `override`, `metadata` or `default`.
    pub contract_source: ContractSource,
    pub fetch_ms: f64,
    pub load_ms: f64,
    pub threads: usize,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions; -1 where dynamic.
    pub shape: Vec<i64>,
    #[schema(value_type = String, example = "NCHW")]
    pub layout: Layout,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OutputInfo {
    pub name: String,
    pub classes: usize,
    /// `logits`, `probabilities`, or `auto` (decided per answer).
    pub kind: &'static str,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ContractSource {
    pub labels: &'static str,
    pub preprocessing: &'static str,
}

/// Per-call inference timings in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct InferTimings {
    pub preprocess: f64,
    pub inference: f64,
}

/// A loaded model, safe to share between threads.
pub struct Classifier {
    // ONNX Runtime parallelises inside one run; `run` needs `&mut`, so calls
    // take turns on the one session rather than each holding a 528 MB copy.
    session: Mutex<Session>,
    preprocessor: Preprocessor,
    head: Head,
    output_kind: Option<OutputKind>,
    /// Fixed batch size of the graph (the zoo VGG16 takes exactly 1), if any.
    fixed_batch: Option<usize>,
    classes: usize,
    info: ModelInfo,
    /// The model's SHA-256, set once known (at load, or later by a background task).
    digest: std::sync::Arc<std::sync::OnceLock<String>>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("info", &self.info)
            .finish()
    }
}

fn onnx_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Onnx(e.to_string())
}

impl Classifier {
    /// Builds the session from model bytes and resolves its contract.
    pub fn load(model: &source::FetchedModel, opts: &LoadOptions) -> Result<Self, ModelError> {
        let started = Instant::now();
        let env = crate::runtime::environment(opts.ort_library.as_deref())?;
        let threads = opts
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let builder = Session::builder(env)
            .map_err(onnx_err)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(onnx_err)?
            .with_intra_threads(threads)
            .map_err(onnx_err)?;
        let mapped = match &model.path {
            Some(path) if opts.zero_copy.unwrap_or(true) => map_weights(path)?,
            _ => None,
        };
        // Without its weights the graph is a few KB: scanning it is free.
        let quantized = mapped
            .as_ref()
            .map_or(model.quantized, |m| source::looks_quantized(&m.graph));
        let mut builder = builder
            .with_prepacking(opts.prepack.unwrap_or(quantized))
            .map_err(onnx_err)?;
        let session = match (&model.path, mapped) {
            (_, Some(mapped)) => {
                builder = builder
                    .with_config_entry(EXTERNAL_FOLDER_KEY, mapped.folder)
                    .map_err(onnx_err)?;
                builder.commit_from_memory(&mapped.graph)
            }
            (Some(path), None) => builder.commit_from_file(path),
            (None, None) => builder.commit_from_memory(&model.bytes),
        }
        .map_err(|e| onnx_err(without_paths(&e.to_string(), model.path.as_deref())))?;

        let (input_name, input_shape) = {
            let inputs = session.inputs();
            if inputs.len() != 1 {
                return Err(ModelError::NotAnImageModel(format!(
                    "it has {} inputs, expected 1",
                    inputs.len()
                )));
            }
            let input = &inputs[0];
            let ty = input.dtype();
            if ty.tensor_type() != Some(ort::value::TensorElementType::Float32) {
                return Err(ModelError::NotAnImageModel(format!(
                    "input `{}` is {ty:?}, expected a float32 tensor",
                    input.name()
                )));
            }
            let shape: Vec<i64> = ty.tensor_shape().map(|s| s.to_vec()).unwrap_or_default();
            (input.name().to_string(), shape)
        };
        if input_shape.len() != 4 {
            return Err(ModelError::NotAnImageModel(format!(
                "input shape {input_shape:?} is not [batch, …] of rank 4"
            )));
        }
        let (output_name, output_shape) = {
            let out = session
                .outputs()
                .first()
                .ok_or_else(|| ModelError::NotAnImageModel("it has no outputs".into()))?;
            if out.dtype().tensor_type() != Some(ort::value::TensorElementType::Float32) {
                return Err(ModelError::NotAnImageModel(format!(
                    "output `{}` is not a float32 tensor",
                    out.name()
                )));
            }
            (
                out.name().to_string(),
                out.dtype()
                    .tensor_shape()
                    .map(|s| s.to_vec())
                    .unwrap_or_default(),
            )
        };

        let meta = session.metadata().map_err(onnx_err)?;
        let meta_labels = meta.custom(contract::KEY_LABELS);
        let meta_pre = meta.custom(contract::KEY_PREPROCESSING);
        let meta_output = meta.custom(contract::KEY_OUTPUT);
        drop(meta);

        let (spec, pre_source) = match (&opts.preprocessing, &meta_pre) {
            (Some(text), _) => (Preprocessing::parse(text)?, "override"),
            (None, Some(text)) => (Preprocessing::parse(text)?, "metadata"),
            (None, None) => (
                opts.fallback_preprocessing
                    .clone()
                    .ok_or(ModelError::NoPreprocessing)?,
                "default",
            ),
        };
        let layout = resolve_layout(&spec, &input_shape)?;
        let (h_dim, w_dim) = match layout {
            Layout::Nchw => (2, 3),
            Layout::Nhwc => (1, 2),
        };
        for (dim, want, what) in [
            (h_dim, spec.size[0], "height"),
            (w_dim, spec.size[1], "width"),
        ] {
            let got = input_shape[dim];
            if got > 0 && got != i64::from(want) {
                return Err(ContractError::Preprocessing(format!(
                    "preprocessing size {:?} does not match the input {what} {got} (shape {input_shape:?})",
                    spec.size
                ))
                .into());
            }
        }
        let output_kind = meta_output.as_deref().map(OutputKind::parse).transpose()?;
        let fixed_batch = usize::try_from(input_shape[0]).ok().filter(|n| *n > 0);

        let mut this = Self {
            session: Mutex::new(session),
            preprocessor: Preprocessor::new(spec.clone(), layout),
            head: Head::Labels(vec![]),
            output_kind,
            fixed_batch,
            classes: 0,
            digest: Default::default(),
            info: ModelInfo {
                uri: model.uri.clone(),
                sha256: None,
                size_bytes: model.size,
                kind: "labels",
                labels: vec![],
                input: TensorInfo {
                    name: input_name,
                    shape: input_shape,
                    layout,
                },
                output: OutputInfo {
                    name: output_name,
                    classes: 0,
                    kind: match output_kind {
                        Some(OutputKind::Logits) => "logits",
                        Some(OutputKind::Probabilities) => "probabilities",
                        None => "auto",
                    },
                },
                preprocessing: spec,
                contract_source: ContractSource {
                    labels: "default",
                    preprocessing: pre_source,
                },
                fetch_ms: model.fetch_ms,
                load_ms: 0.0,
                threads,
            },
        };

        // Warm-up: proves the graph runs on our tensor and tells the class
        // count even when the output shape is dynamic.
        let blank = RgbImage::new(spec_w(&this), spec_h(&this));
        let rows = this.run_rows(std::slice::from_ref(&blank))?.0;
        let classes = rows.first().map_or(0, Vec::len);
        if let Some(&declared) = output_shape.get(1) {
            if declared > 0 && declared as usize != classes {
                return Err(ModelError::NotAnImageModel(format!(
                    "output shape {output_shape:?} but got {classes} values"
                )));
            }
        }
        if classes == 0 {
            return Err(ModelError::NotAnImageModel("the output is empty".into()));
        }
        this.classes = classes;
        this.info.output.classes = classes;

        let (head, labels_source) = match (&opts.labels, &meta_labels) {
            (Some(text), _) => (Head::Labels(contract::parse_labels(text)?), "override"),
            (None, Some(text)) => (Head::Labels(contract::parse_labels(text)?), "metadata"),
            (None, None) if classes == imagenet::NUM_CLASSES => (
                Head::ImageNet {
                    neither_below: opts
                        .neither_below
                        .unwrap_or(imagenet::DEFAULT_NEITHER_BELOW),
                },
                "default",
            ),
            (None, None) => return Err(ModelError::NoLabels(classes)),
        };
        if let Head::Labels(labels) = &head {
            if labels.len() != classes {
                return Err(ModelError::LabelCount {
                    outputs: classes,
                    labels: labels.len(),
                });
            }
        } else {
            this.info.kind = "imagenet";
        }
        this.info.labels = head.labels();
        this.info.contract_source.labels = labels_source;
        this.head = head;
        if !model.sha256.is_empty() {
            let _ = this.digest.set(model.sha256.clone());
        }
        this.info.load_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(this)
    }

    /// The batch size the graph insists on, if any (`None`: any batch size).
    pub fn fixed_batch(&self) -> Option<usize> {
        self.fixed_batch
    }

    /// Records the digest of a model whose file was hashed while the session
    /// was being built (see `app::load_classifier`).
    pub(crate) fn set_digest(&mut self, sha256: String, fetch_ms: f64) {
        let _ = self.digest.set(sha256);
        self.info.fetch_ms = fetch_ms;
    }

    /// Where a digest computed after loading is to be put.
    pub(crate) fn digest_slot(&self) -> std::sync::Arc<std::sync::OnceLock<String>> {
        std::sync::Arc::clone(&self.digest)
    }

    /// The model's SHA-256 (hex), or `None` while it is being computed.
    pub fn sha256(&self) -> Option<&str> {
        self.digest.get().map(String::as_str)
    }

    /// [`ModelInfo`] with the digest as known now.
    pub fn info_now(&self) -> ModelInfo {
        ModelInfo {
            sha256: self.sha256().map(str::to_owned),
            ..self.info.clone()
        }
    }

    /// What was known at load; the digest may come later: see [`Classifier::sha256`].
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    /// Classifies pictures (one batch when the graph allows, else one by one).
    /// Blocking: call it off the async workers.
    pub fn classify(
        &self,
        pictures: &[RgbImage],
    ) -> Result<(Vec<Prediction>, InferTimings), ModelError> {
        let (rows, timings) = self.run_rows(pictures)?;
        let preds = rows
            .iter()
            .map(|row| {
                if row.len() != self.classes {
                    return Err(ModelError::Inference(format!(
                        "expected {} outputs, got {}",
                        self.classes,
                        row.len()
                    )));
                }
                Ok(output::predict(
                    &self.head,
                    &output::probabilities(row, self.output_kind),
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((preds, timings))
    }

    /// Raw output rows, one per picture.
    fn run_rows(&self, pictures: &[RgbImage]) -> Result<(Vec<Vec<f32>>, InferTimings), ModelError> {
        let chunk = self.fixed_batch.unwrap_or(pictures.len().max(1));
        if self.fixed_batch.is_some_and(|b| b != 1) && pictures.len() % chunk != 0 {
            return Err(ModelError::Inference(format!(
                "the model takes batches of exactly {chunk}"
            )));
        }
        let mut rows = Vec::with_capacity(pictures.len());
        let mut timings = InferTimings::default();
        let per = self.preprocessor.tensor_len();
        for group in pictures.chunks(chunk) {
            let t0 = Instant::now();
            let mut data = vec![0f32; per * group.len()];
            for (pic, slot) in group.iter().zip(data.chunks_exact_mut(per)) {
                self.preprocessor.write_tensor(pic, slot);
            }
            let shape = self.preprocessor.batch_shape(group.len()).map(|d| d as i64);
            let t1 = Instant::now();
            let tensor = TensorRef::from_array_view((shape, &data[..]))
                .map_err(|e| ModelError::Inference(e.to_string()))?;
            let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
            let outputs = session
                .run(ort::inputs![tensor])
                .map_err(|e| ModelError::Inference(e.to_string()))?;
            let (_, values) = outputs[0]
                .try_extract_tensor::<f32>()
                .map_err(|e| ModelError::Inference(e.to_string()))?;
            if values.is_empty() || values.len() % group.len() != 0 {
                return Err(ModelError::Inference(format!(
                    "{} output values for {} pictures",
                    values.len(),
                    group.len()
                )));
            }
            let width = values.len() / group.len();
            rows.extend(values.chunks_exact(width).map(<[f32]>::to_vec));
            timings.preprocess += (t1 - t0).as_secs_f64() * 1e3;
            timings.inference += t1.elapsed().as_secs_f64() * 1e3;
        }
        Ok((rows, timings))
    }
}

/// ONNX Runtime's message without the model's path (it says "Load model
/// from /where/it/is failed: …"): errors reach /health, which must not show
/// the machine's layout.
fn without_paths(message: &str, path: Option<&std::path::Path>) -> String {
    let mut message = message.to_string();
    if let Some(rest) = message
        .strip_prefix("Load model from ")
        .and_then(|m| m.split_once(" failed:"))
        .map(|(_, rest)| rest.trim().to_string())
    {
        message = rest;
    }
    if let Some(path) = path {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let mut forms = vec![path.to_path_buf()];
        forms.extend(std::fs::canonicalize(path));
        for form in forms {
            let form = form.to_string_lossy();
            if !form.is_empty() {
                message = message.replace(form.as_ref(), &name);
            }
        }
    }
    message
}

/// ONNX Runtime's session option naming the folder of external data for a
/// model given from memory.
const EXTERNAL_FOLDER_KEY: &str = "session.model_external_initializers_file_folder_path";

/// A model file's graph with its weights left in the file (see [`weights`]).
struct MappedWeights {
    graph: Vec<u8>,
    /// The file's folder, where ONNX Runtime resolves the weights' `location`.
    folder: String,
}

/// Splits a local model file's weights out of its graph, or `None` when
/// there is nothing to gain (no large initializer, or a path ONNX Runtime
/// could not be given as text): then it reads the file itself.
fn map_weights(path: &std::path::Path) -> Result<Option<MappedWeights>, ModelError> {
    let file_err = |e: std::io::Error| ModelError::Onnx(format!("cannot read the model file: {e}"));
    // ONNX Runtime checks that external data stays inside the folder after
    // resolving links, so name the real file.
    let real = std::fs::canonicalize(path).map_err(file_err)?;
    let (Some(folder), Some(name)) = (
        real.parent().and_then(|p| p.to_str()),
        real.file_name().and_then(|n| n.to_str()),
    ) else {
        return Ok(None);
    };
    let file = std::fs::File::open(&real).map_err(file_err)?;
    // SAFETY: read-only map; only the protobuf framing is read (a few pages),
    // before the session is built. Replacing the file by renaming is safe;
    // truncating it in place while serving is not (as for any mapped file,
    // including ONNX Runtime's own external data).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(file_err)?;
    let split = weights::split(&map, weights::MIN_BYTES, name).map_err(onnx_err)?;
    if split.weights.is_empty() {
        return Ok(None);
    }
    tracing::debug!(
        moved = split.weights.len(),
        moved_bytes = split.moved_bytes(),
        graph_bytes = split.graph.len(),
        "weights mapped from the model file"
    );
    Ok(Some(MappedWeights {
        graph: split.graph,
        folder: folder.to_owned(),
    }))
}

fn spec_h(c: &Classifier) -> u32 {
    c.preprocessor.spec().size[0]
}
fn spec_w(c: &Classifier) -> u32 {
    c.preprocessor.spec().size[1]
}

/// The layout from the spec, or read off the input shape `[N, 3, H, W]` / `[N, H, W, 3]`.
pub(crate) fn resolve_layout(spec: &Preprocessing, shape: &[i64]) -> Result<Layout, ModelError> {
    let by_shape = match (shape[1] == 3, shape[3] == 3) {
        (true, false) => Some(Layout::Nchw),
        (false, true) => Some(Layout::Nhwc),
        _ => None,
    };
    match (spec.layout, by_shape) {
        (Some(Layout::Nchw), _) if shape[1] > 0 && shape[1] != 3 => {
            Err(ModelError::NotAnImageModel(format!("layout NCHW but input shape {shape:?} has no 3 channels at dim 1")))
        }
        (Some(Layout::Nhwc), _) if shape[3] > 0 && shape[3] != 3 => {
            Err(ModelError::NotAnImageModel(format!("layout NHWC but input shape {shape:?} has no 3 channels at dim 3")))
        }
        (Some(l), _) => Ok(l),
        (None, Some(l)) => Ok(l),
        (None, None) => Err(ModelError::NotAnImageModel(format!(
            "cannot tell the layout from input shape {shape:?}: expected [N,3,H,W] or [N,H,W,3], or state `layout`"
        ))),
    }
}
