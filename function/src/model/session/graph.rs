//! What ONNX Runtime is handed for a model file: the file itself, or its
//! graph with the large weights left in the file for it to map (see
//! [`weights`]), and which 8-bit integers the graph multiplies.

use std::path::{Path, PathBuf};

use crate::model::error::{onnx_err, ModelError};
use crate::model::quantized;
use crate::model::source::{self, FetchedModel};
use crate::model::weights;

/// ONNX Runtime's session option naming the folder of external data for a
/// model given from memory.
pub(super) const EXTERNAL_FOLDER_KEY: &str = "session.model_external_initializers_file_folder_path";

/// What ONNX Runtime is handed.
pub(super) enum Graph {
    /// It reads the file itself.
    File(PathBuf),
    /// A serialized graph whose external data (if any) lies in `folder`.
    Memory {
        graph: Vec<u8>,
        folder: Option<String>,
    },
}

/// The graph to hand ONNX Runtime, and which 8-bit integers it multiplies
/// (`None`: not quantized), which decides pre-packing and whether this CPU
/// may answer differently: read from the mapped file, touching its framing
/// and int8 weights only.
pub(super) fn graph_of(
    model: &FetchedModel,
    zero_copy: bool,
) -> Result<(Graph, Option<quantized::Int8Scheme>), ModelError> {
    let file_err = |e: std::io::Error| ModelError::Onnx(format!("cannot read the model file: {e}"));
    // A model held in memory (a memfd) has no folder for external data to
    // be found in: ONNX Runtime reads it by its descriptor's path.
    if model.in_memory() {
        let map = source::map_file(&model.path).map_err(file_err)?;
        let scheme = quantized::int8_scheme(&map).map_err(onnx_err)?;
        return Ok((Graph::File(model.path.clone()), scheme));
    }
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

/// A model file's graph with its weights left in the file (see [`weights`]).
struct MappedWeights {
    graph: Vec<u8>,
    /// The file's folder, where ONNX Runtime resolves the weights' `location`.
    folder: String,
}

/// The real folder of a model file, as text ONNX Runtime can be given.
pub(super) fn folder_of(path: &Path) -> Option<String> {
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
