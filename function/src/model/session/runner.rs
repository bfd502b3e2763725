//! Running pictures through a built session: preprocessing into the
//! batches the graph takes, one run at a time, rows out.

use std::sync::Mutex;
use std::time::Instant;

use ort::session::{Session, SessionOutputs};
use ort::value::TensorRef;

use crate::model::contract::ContractError;
use crate::model::error::{inference_err, ModelError};
use crate::preprocess::{Layout, Preprocessing, Preprocessor, SpecError, TensorRow};

/// Per-call timings in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct InferTimings {
    pub(crate) preprocess: f64,
    pub(crate) inference: f64,
}

/// Inference runs under way in this process (every session shares the cores).
static RUNS_IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether no inference is running: background work (the informational
/// digest) waits for this, because on a small machine one stolen core slice
/// stalls every thread of ONNX Runtime's parallel loops and shows as a tail.
pub(crate) fn inference_idle() -> bool {
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

/// A session with its preprocessing: runs pictures in the batches the graph
/// takes. Calls take turns on the one session (ONNX Runtime parallelises
/// inside one run; `run` needs `&mut`).
pub(crate) struct Runner {
    session: Mutex<Session>,
    /// The image input's name (runs that ask for an explanation feed it by name).
    input: String,
    pre: Preprocessor,
    /// Fixed batch size of the graph (the zoo VGG16 takes exactly 1), if any.
    fixed_batch: Option<usize>,
}

impl Runner {
    /// Checks `spec` against the input shape (layout, size) and keeps both.
    pub(crate) fn new(
        session: Session,
        spec: Preprocessing,
        (input, input_shape): (&str, &[i64]),
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
            input: input.to_string(),
            pre: Preprocessor::new(spec, layout),
            fixed_batch: usize::try_from(input_shape[0]).ok().filter(|n| *n > 0),
        })
    }

    pub(crate) fn preprocessor(&self) -> &Preprocessor {
        &self.pre
    }

    /// The batch size the graph insists on, if any (`None`: any batch size).
    pub(crate) fn fixed_batch(&self) -> Option<usize> {
        self.fixed_batch
    }

    /// Runs `pictures` (one batch when the graph allows, else in groups of its
    /// fixed size); `read` turns one group's outputs into one row per picture.
    /// Blocking: call it off the async workers.
    pub(crate) fn run<T, R: TensorRow>(
        &self,
        pictures: &[R],
        read: impl FnMut(&SessionOutputs<'_>, usize) -> Result<Vec<T>, ModelError>,
    ) -> Result<(Vec<T>, InferTimings), ModelError> {
        self.run_asking(pictures, false, read)
    }

    /// [`Runner::run`], feeding the explanation flag (`explain`: the graph's
    /// explanation branch runs too; see [`crate::model::explain`]).
    pub(crate) fn run_asking<T, R: TensorRow>(
        &self,
        pictures: &[R],
        explain: bool,
        mut read: impl FnMut(&SessionOutputs<'_>, usize) -> Result<Vec<T>, ModelError>,
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
            let outputs = if explain {
                let flag =
                    ort::value::Tensor::from_array(((), vec![true])).map_err(inference_err)?;
                session.run(ort::inputs![
                    self.input.as_str() => tensor,
                    crate::model::explain::FLAG => flag,
                ])
            } else {
                session.run(ort::inputs![tensor])
            }
            .map_err(inference_err)?;
            let got = read(&outputs, group.len())?;
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
pub(crate) fn rows(values: &[f32], n: usize) -> Result<Vec<Vec<f32>>, ModelError> {
    if n == 0 || values.is_empty() || !values.len().is_multiple_of(n) {
        return Err(ModelError::Inference(format!(
            "{} output values for {n} pictures",
            values.len()
        )));
    }
    Ok(values
        .chunks_exact(values.len() / n)
        .map(<[f32]>::to_vec)
        .collect())
}

/// The layout from the spec, or read off the input shape `[N, 3, H, W]` / `[N, H, W, 3]`.
pub(crate) fn resolve_layout(spec: &Preprocessing, shape: &[i64]) -> Result<Layout, ModelError> {
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
