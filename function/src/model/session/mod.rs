//! ONNX Runtime sessions: how one is built from a fetched model (a file,
//! loaded zero-copy, or bytes), what its image input and contract metadata
//! are, and how pictures run through it in batches. Shared by the classifier
//! and fine-tuning's feature extraction, so both load and run a model the
//! same way.
//!
//! [`open`] builds a session ([`graph`]: what ONNX Runtime is handed,
//! weights mapped in place; [`threads`]: its named pool threads);
//! [`runner`] runs pictures through it.

mod graph;
pub(crate) mod runner;
pub(crate) mod threads;

use std::path::{Path, PathBuf};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

pub(crate) use runner::{inference_idle, rows, InferTimings, Runner};
pub use threads::INTRA_OP_THREAD_NAME;

use crate::model::contract;
use crate::model::error::{onnx_err, ModelError};
use crate::model::quantized;
use crate::model::source::FetchedModel;
use crate::model::weights::Stored;
use graph::{folder_of, graph_of, Graph, EXTERNAL_FOLDER_KEY};
use threads::NamedThreads;

/// How sessions are built.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Intra-op threads [default: the cores this process may use].
    pub(crate) threads: Option<usize>,
    /// When weights are pre-packed, for fp32 and for quantized graphs.
    pub(crate) prepack: PrepackPolicy,
    /// Model files: let ONNX Runtime map the weights from the file in place
    /// (see [`weights`]). Off: it parses and copies them.
    pub(crate) zero_copy: bool,
    /// Explicit path of libonnxruntime.
    pub(crate) ort_library: Option<PathBuf>,
    /// catdog's cache folder, where `make setup` puts the library.
    pub(crate) cache_dir: PathBuf,
}

/// When ONNX Runtime pre-packs a session's weights (its own layout of each
/// weight for its matrix kernels). Measured on VGG16 (bench/README.md):
/// packing adds 0.5–1.0 s and a transient copy to an fp32 session's build,
/// and without it ONNX Runtime repacks the 411 MB fc1 for every batch (4
/// clients get 9–11% fewer images a second); int8 runs 2× slower unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepack {
    /// While the session builds, before its first answer.
    Now,
    /// Answer at once with plain weights; a packed session is built in the
    /// background, at low priority, and swapped in (a server's model slot
    /// does this; anything else that loads a model packs it [`Prepack::Now`]).
    Later,
    /// Never.
    Off,
}

/// [`Prepack`] for plain and for quantized graphs (known once the graph is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepackPolicy {
    pub(crate) fp32: Prepack,
    pub(crate) int8: Prepack,
}

impl PrepackPolicy {
    /// The same for every graph.
    pub(crate) fn always(when: Prepack) -> Self {
        Self {
            fp32: when,
            int8: when,
        }
    }

    /// For a load nothing will swap later (a command): packed at load
    /// where a server would pack it later.
    pub(crate) fn at_load(self) -> Self {
        let now = |p| if p == Prepack::Later { Prepack::Now } else { p };
        Self {
            fp32: now(self.fp32),
            int8: now(self.int8),
        }
    }

    fn for_graph(self, quantized: bool) -> Prepack {
        if quantized {
            self.int8
        } else {
            self.fp32
        }
    }
}

impl Default for PrepackPolicy {
    /// Quantized graphs, which need it; fp32 ones do without.
    fn default() -> Self {
        Self {
            fp32: Prepack::Off,
            int8: Prepack::Now,
        }
    }
}

impl SessionOptions {
    pub(crate) fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// A change to the graph before the session is built (fine-tuning adds the
/// feature tensor as an output). Given and giving a serialized `ModelProto`.
/// An edit of a model's graph before ONNX Runtime gets it; the graph's
/// large weights may lie in the model file, which [`Stored`] reads.
pub(crate) type GraphEdit<'a> = &'a dyn Fn(&[u8], &Stored) -> Result<Vec<u8>, ModelError>;

/// The contract keys a model's metadata carries (models/README.md).
#[derive(Debug, Clone, Default)]
pub(crate) struct Metadata {
    pub(crate) labels: Option<String>,
    pub(crate) preprocessing: Option<String>,
    pub(crate) output: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) rejection: Option<String>,
    /// What the explanation branch explains (see [`crate::model::explain`]).
    pub(crate) explanation: Option<String>,
}

/// A built session and what it says about itself.
pub(crate) struct Opened {
    pub(crate) session: Session,
    pub(crate) threads: usize,
    /// The one image input: name and shape (`-1` where dynamic).
    pub(crate) input: (String, Vec<i64>),
    pub(crate) metadata: Metadata,
    /// Which 8-bit integers the graph multiplies; `None` when it is not quantized.
    pub(crate) int8: Option<quantized::Int8Scheme>,
    /// Whether its weights are packed, or are to be in another session.
    pub(crate) prepack: Prepack,
}

/// Builds a session for `model`, after `edit` if given.
pub(crate) fn open(
    model: &FetchedModel,
    opts: &SessionOptions,
    edit: Option<GraphEdit>,
) -> Result<Opened, ModelError> {
    let env = crate::runtime::environment(opts.ort_library.as_deref(), &opts.cache_dir)?;
    let threads = opts.threads();
    let (graph, int8) = graph_of(model, opts.zero_copy)?;
    let prepack = opts.prepack.for_graph(int8.is_some());
    let graph = match (graph, edit) {
        (g, None) => g,
        (Graph::Memory { graph, folder }, Some(edit)) => {
            let base = model
                .view()
                .map_err(|e| ModelError::Onnx(format!("cannot read the model file: {e}")))?;
            let location = model.location();
            let stored = Stored {
                base: &base,
                location: &location,
            };
            Graph::Memory {
                graph: edit(&graph, &stored)?,
                folder,
            }
        }
        (Graph::File(path), Some(edit)) => {
            let bytes = std::fs::read(&path)
                .map_err(|e| ModelError::Onnx(format!("cannot read the model file: {e}")))?;
            Graph::Memory {
                graph: edit(&bytes, &Stored::INLINE)?,
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
        .with_prepacking(prepack == Prepack::Now)
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
        explanation: meta.custom(crate::model::explain::METADATA_KEY),
    };
    drop(meta);
    Ok(Opened {
        session,
        threads,
        input,
        metadata,
        int8,
        prepack,
    })
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
