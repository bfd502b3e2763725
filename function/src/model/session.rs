//! ONNX Runtime sessions: how one is built from a fetched model (a file,
//! loaded zero-copy, or bytes), what its image input and contract metadata
//! are, and how pictures run through it in batches. Shared by the classifier
//! and fine-tuning's feature extraction, so both load and run a model the
//! same way.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionOutputs};
use ort::value::TensorRef;

use crate::model::contract::{self, ContractError};
use crate::model::error::{inference_err, onnx_err, ModelError};
use crate::model::quantized;
use crate::model::source::{self, FetchedModel};
use crate::model::weights;
use crate::preprocess::{Layout, Preprocessing, Preprocessor, SpecError, TensorRow};

/// How sessions are built.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Intra-op threads [default: the cores this process may use].
    pub threads: Option<usize>,
    /// Weight pre-packing; `None` = on for quantized graphs only. Measured on
    /// VGG16 (bench/README.md): off, an fp32 session builds ~0.5 s faster at
    /// the same speed, while int8 runs 2× slower.
    pub prepack: Option<bool>,
    /// Model files: let ONNX Runtime map the weights from the file in place
    /// (see [`weights`]). Off: it parses and copies them.
    pub zero_copy: bool,
    /// Explicit path of libonnxruntime.
    pub ort_library: Option<PathBuf>,
    /// catdog's cache folder, where `make setup` puts the library.
    pub cache_dir: PathBuf,
}

impl SessionOptions {
    pub fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// A change to the graph before the session is built (fine-tuning adds the
/// feature tensor as an output). Given and giving a serialized `ModelProto`.
pub type GraphEdit<'a> = &'a dyn Fn(&[u8]) -> Result<Vec<u8>, String>;

/// The contract keys a model's metadata carries (models/README.md).
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub labels: Option<String>,
    pub preprocessing: Option<String>,
    pub output: Option<String>,
    pub name: Option<String>,
    pub rejection: Option<String>,
}

/// A built session and what it says about itself.
pub struct Opened {
    pub session: Session,
    pub threads: usize,
    /// The one image input: name and shape (`-1` where dynamic).
    pub input: (String, Vec<i64>),
    pub metadata: Metadata,
    /// Which 8-bit integers the graph multiplies; `None` when it is not quantized.
    pub int8: Option<quantized::Int8Scheme>,
}

/// ONNX Runtime's session option naming the folder of external data for a
/// model given from memory.
const EXTERNAL_FOLDER_KEY: &str = "session.model_external_initializers_file_folder_path";

/// What ONNX Runtime is handed.
enum Graph {
    /// It reads the file itself.
    File(PathBuf),
    /// A serialized graph whose external data (if any) lies in `folder`.
    Memory {
        graph: Vec<u8>,
        folder: Option<String>,
    },
}

/// Builds a session for `model`, after `edit` if given.
pub fn open(
    model: &FetchedModel,
    opts: &SessionOptions,
    edit: Option<GraphEdit>,
) -> Result<Opened, ModelError> {
    let env = crate::runtime::environment(opts.ort_library.as_deref(), &opts.cache_dir)?;
    let threads = opts.threads();
    let (graph, int8) = graph_of(model, opts.zero_copy)?;
    let graph = match (graph, edit) {
        (g, None) => g,
        (Graph::Memory { graph, folder }, Some(edit)) => Graph::Memory {
            graph: edit(&graph).map_err(ModelError::Onnx)?,
            folder,
        },
        (Graph::File(path), Some(edit)) => {
            let bytes = std::fs::read(&path)
                .map_err(|e| ModelError::Onnx(format!("cannot read the model file: {e}")))?;
            Graph::Memory {
                graph: edit(&bytes).map_err(ModelError::Onnx)?,
                folder: folder_of(&path),
            }
        }
    };
    let mut builder = Session::builder(env)
        .map_err(onnx_err)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(onnx_err)?
        .with_intra_threads(threads)
        .map_err(onnx_err)?
        .with_thread_manager(NamedThreads)
        .map_err(onnx_err)?
        .with_prepacking(opts.prepack.unwrap_or(int8.is_some()))
        .map_err(onnx_err)?;
    let path = Some(model.path.as_path());
    let session = match graph {
        Graph::File(path) => builder.commit_from_file(path),
        Graph::Memory { graph, folder } => {
            if let Some(folder) = folder {
                builder = builder
                    .with_config_entry(EXTERNAL_FOLDER_KEY, folder)
                    .map_err(onnx_err)?;
            }
            builder.commit_from_memory(&graph)
        }
    }
    .map_err(|e| onnx_err(without_paths(&e.to_string(), path)))?;
    let input = image_input(&session)?;
    let meta = session.metadata().map_err(onnx_err)?;
    let metadata = Metadata {
        labels: meta.custom(contract::KEY_LABELS),
        preprocessing: meta.custom(contract::KEY_PREPROCESSING),
        output: meta.custom(contract::KEY_OUTPUT),
        name: meta.custom(contract::KEY_NAME),
        rejection: meta.custom(contract::KEY_REJECTION),
    };
    drop(meta);
    Ok(Opened {
        session,
        threads,
        input,
        metadata,
        int8,
    })
}

/// What ONNX Runtime's intra-op pool threads are called: `top -H`, `perf`
/// and the tests (tests/it/cpus.rs) tell them from tokio's by it.
pub const INTRA_OP_THREAD_NAME: &str = "ort-intra-op";

/// Starts ONNX Runtime's pool threads under [`INTRA_OP_THREAD_NAME`]
/// (otherwise they inherit whichever thread built the session's name).
struct NamedThreads;

impl ort::environment::ThreadManager for NamedThreads {
    type Thread = std::thread::JoinHandle<()>;

    fn create(&self, work: impl FnOnce() + Send + 'static) -> ort::Result<Self::Thread> {
        std::thread::Builder::new()
            .name(INTRA_OP_THREAD_NAME.into())
            // glibc's default for a new thread, which ONNX Runtime's own
            // threads would have had (Rust's default is 2 MiB).
            .stack_size(8 << 20)
            .spawn(work)
            .map_err(|e| ort::Error::new(format!("cannot start an ONNX Runtime thread: {e}")))
    }

    fn join(thread: Self::Thread) -> ort::Result<()> {
        thread
            .join()
            .map_err(|_| ort::Error::new("an ONNX Runtime thread panicked"))
    }
}

/// The graph to hand ONNX Runtime, and which 8-bit integers it multiplies
/// (`None`: not quantized), which decides pre-packing and whether this CPU
/// may answer differently: read from the mapped file, touching its framing
/// and int8 weights only.
fn graph_of(
    model: &FetchedModel,
    zero_copy: bool,
) -> Result<(Graph, Option<quantized::Int8Scheme>), ModelError> {
    let file_err = |e: std::io::Error| ModelError::Onnx(format!("cannot read the model file: {e}"));
    // ONNX Runtime checks that external data stays inside the folder after
    // resolving links, so name the real file.
    let real = std::fs::canonicalize(&model.path).map_err(file_err)?;
    let map = source::map_file(&real).map_err(file_err)?;
    let scheme = quantized::int8_scheme(&map).map_err(onnx_err)?;
    if zero_copy {
        if let Some(mapped) = map_weights(&real, &map)? {
            let graph = Graph::Memory {
                graph: mapped.graph,
                folder: Some(mapped.folder),
            };
            return Ok((graph, scheme));
        }
    }
    Ok((Graph::File(model.path.clone()), scheme))
}

/// The session's one float32 image input of rank 4.
fn image_input(session: &Session) -> Result<(String, Vec<i64>), ModelError> {
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
    if shape.len() != 4 {
        return Err(ModelError::NotAnImageModel(format!(
            "input shape {shape:?} is not [batch, …] of rank 4"
        )));
    }
    Ok((input.name().to_string(), shape))
}

/// Per-call timings in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct InferTimings {
    pub preprocess: f64,
    pub inference: f64,
}

/// A session with its preprocessing: runs pictures in the batches the graph
/// takes. Calls take turns on the one session (ONNX Runtime parallelises
/// inside one run; `run` needs `&mut`).
/// Inference runs under way in this process (every session shares the cores).
static RUNS_IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether no inference is running: background work (the informational
/// digest) waits for this, because on a small machine one stolen core slice
/// stalls every thread of ONNX Runtime's parallel loops and shows as a tail.
pub fn inference_idle() -> bool {
    RUNS_IN_FLIGHT.load(std::sync::atomic::Ordering::Relaxed) == 0
}

/// Counts a run in flight while alive.
struct InFlight;

impl InFlight {
    fn new() -> Self {
        RUNS_IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        RUNS_IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

pub struct Runner {
    session: Mutex<Session>,
    pre: Preprocessor,
    /// Fixed batch size of the graph (the zoo VGG16 takes exactly 1), if any.
    fixed_batch: Option<usize>,
}

impl Runner {
    /// Checks `spec` against the input shape (layout, size) and keeps both.
    pub fn new(
        session: Session,
        spec: Preprocessing,
        input_shape: &[i64],
    ) -> Result<Self, ModelError> {
        let layout = resolve_layout(&spec, input_shape)?;
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
                return Err(ContractError::Preprocessing(SpecError(format!(
                    "preprocessing size {:?} does not match the input {what} {got} (shape {input_shape:?})",
                    spec.size
                )))
                .into());
            }
        }
        Ok(Self {
            session: Mutex::new(session),
            pre: Preprocessor::new(spec, layout),
            fixed_batch: usize::try_from(input_shape[0]).ok().filter(|n| *n > 0),
        })
    }

    pub fn preprocessor(&self) -> &Preprocessor {
        &self.pre
    }

    /// The batch size the graph insists on, if any (`None`: any batch size).
    pub fn fixed_batch(&self) -> Option<usize> {
        self.fixed_batch
    }

    /// Runs `pictures` (one batch when the graph allows, else in groups of its
    /// fixed size); `read` turns one group's outputs into one row per picture.
    /// Blocking: call it off the async workers.
    pub fn run<T, R: TensorRow>(
        &self,
        pictures: &[R],
        mut read: impl FnMut(&SessionOutputs<'_>, usize) -> Result<Vec<T>, String>,
    ) -> Result<(Vec<T>, InferTimings), ModelError> {
        let chunk = self.fixed_batch.unwrap_or(pictures.len().max(1));
        if self.fixed_batch.is_some_and(|b| b != 1) && !pictures.len().is_multiple_of(chunk) {
            return Err(ModelError::Inference(format!(
                "the model takes batches of exactly {chunk}"
            )));
        }
        let _in_flight = InFlight::new();
        let mut rows = Vec::with_capacity(pictures.len());
        let mut timings = InferTimings::default();
        let per = self.pre.tensor_len();
        for group in pictures.chunks(chunk) {
            let t0 = Instant::now();
            let mut data = vec![0f32; per * group.len()];
            for (pic, slot) in group.iter().zip(data.chunks_exact_mut(per)) {
                pic.write_row(&self.pre, slot);
            }
            let shape = self.pre.batch_shape(group.len()).map(|d| d as i64);
            let t1 = Instant::now();
            let tensor = TensorRef::from_array_view((shape, &data[..])).map_err(inference_err)?;
            let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
            let outputs = session.run(ort::inputs![tensor]).map_err(inference_err)?;
            let got = read(&outputs, group.len()).map_err(ModelError::Inference)?;
            if got.len() != group.len() {
                return Err(ModelError::Inference(format!(
                    "{} answers for {} pictures",
                    got.len(),
                    group.len()
                )));
            }
            rows.extend(got);
            timings.preprocess += (t1 - t0).as_secs_f64() * 1e3;
            timings.inference += t1.elapsed().as_secs_f64() * 1e3;
        }
        Ok((rows, timings))
    }
}

/// Splits a flat output of `n` pictures into one row each.
pub fn rows(values: &[f32], n: usize) -> Result<Vec<Vec<f32>>, String> {
    if n == 0 || values.is_empty() || !values.len().is_multiple_of(n) {
        return Err(format!("{} output values for {n} pictures", values.len()));
    }
    Ok(values
        .chunks_exact(values.len() / n)
        .map(<[f32]>::to_vec)
        .collect())
}

/// The layout from the spec, or read off the input shape `[N, 3, H, W]` / `[N, H, W, 3]`.
pub fn resolve_layout(spec: &Preprocessing, shape: &[i64]) -> Result<Layout, ModelError> {
    let by_shape = match (shape[1] == 3, shape[3] == 3) {
        (true, false) => Some(Layout::Nchw),
        (false, true) => Some(Layout::Nhwc),
        _ => None,
    };
    match (spec.layout, by_shape) {
        (Some(Layout::Nchw), _) if shape[1] > 0 && shape[1] != 3 => Err(ModelError::NotAnImageModel(format!(
            "layout NCHW but input shape {shape:?} has no 3 channels at dim 1"
        ))),
        (Some(Layout::Nhwc), _) if shape[3] > 0 && shape[3] != 3 => Err(ModelError::NotAnImageModel(format!(
            "layout NHWC but input shape {shape:?} has no 3 channels at dim 3"
        ))),
        (Some(l), _) => Ok(l),
        (None, Some(l)) => Ok(l),
        (None, None) => Err(ModelError::NotAnImageModel(format!(
            "cannot tell the layout from input shape {shape:?}: expected [N,3,H,W] or [N,H,W,3], or state `layout`"
        ))),
    }
}

/// ONNX Runtime's message without the model's path (it says "Load model
/// from /where/it/is failed: …"): errors reach /health, which must not show
/// the machine's layout.
fn without_paths(message: &str, path: Option<&Path>) -> String {
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

/// A model file's graph with its weights left in the file (see [`weights`]).
struct MappedWeights {
    graph: Vec<u8>,
    /// The file's folder, where ONNX Runtime resolves the weights' `location`.
    folder: String,
}

/// The real folder of a model file, as text ONNX Runtime can be given.
fn folder_of(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    real.parent().and_then(|p| p.to_str()).map(str::to_owned)
}

/// Splits a local model file's weights out of its graph, or `None` when
/// there is nothing to gain (no large initializer, or a path ONNX Runtime
/// could not be given as text): then it reads the file itself.
fn map_weights(real: &Path, map: &[u8]) -> Result<Option<MappedWeights>, ModelError> {
    let (Some(folder), Some(name)) = (folder_of(real), real.file_name().and_then(|n| n.to_str()))
    else {
        return Ok(None);
    };
    let split = weights::split(map, weights::MIN_BYTES, name).map_err(onnx_err)?;
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
        folder,
    }))
}
