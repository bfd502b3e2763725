//! The classifier: a session runner plus the contract that says how to feed
//! it and read it.
//!
//! [`Classifier::load`] builds the session, resolves the contract (overrides >
//! ONNX metadata > defaults), checks it against the graph's input/output and
//! runs one warm-up inference, so a model that cannot answer is refused at
//! start, never on a user's request.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use image::RgbImage;
use serde::Serialize;

use crate::model::contract::{self, OutputKind};
use crate::model::error::{inference_err, ModelError};
use crate::model::explain::{self, at_load::LoadEdit, Explains, Heatmap, Method};
use crate::model::imagenet;
use crate::model::output::{self, AnswerRule, Prediction};
use crate::model::quantized;
use crate::model::session::{self, InferTimings, Prepack, Runner, SessionOptions};
use crate::model::source::FetchedModel;
use crate::model::weights::Stored;
use crate::preprocess::{Layout, Preprocessing, Preprocessor, TensorRow};

/// Where a model's SHA-256 goes once known (at load, or later from a
/// background task for a local file whose digest is only informational).
pub(crate) type DigestSlot = Arc<OnceLock<String>>;

/// Contract values given by the user (they win over the model's metadata),
/// and the default used when neither gives preprocessing.
#[derive(Debug, Clone, Default)]
pub struct ContractOverrides {
    /// `MODEL_LABELS`.
    pub labels: Option<Vec<String>>,
    /// `MODEL_PREPROCESSING`.
    pub preprocessing: Option<Preprocessing>,
    /// `NEITHER_BELOW`: the threshold of the rejecting label (`neither`),
    /// for ImageNet models and for models whose metadata has a `rejection` rule.
    pub neither_below: Option<f32>,
    /// `MODEL_NAME`: the name on the Open Inference Protocol routes.
    pub name: Option<String>,
    /// When neither the override nor the metadata gives preprocessing (the
    /// stock zoo VGG16 carries none; it is torch-style).
    pub default_preprocessing: Option<Preprocessing>,
}

/// What `GET /model` shows: enough to know exactly what is answering.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelInfo {
    /// The model's name on the Open Inference Protocol routes (`/v2/models/{name}`):
    /// `MODEL_NAME`, else the model's `name` metadata, else `catdog`.
    pub name: String,
    pub uri: String,
    /// SHA-256 of the model bytes; `None` while a local file's digest is still
    /// being computed in the background (see [`Classifier::sha256`]).
    pub sha256: Option<String>,
    pub size_bytes: u64,
    /// `labels` (the model names its classes) or `imagenet` (cat/dog groups).
    pub kind: &'static str,
    pub labels: Vec<String>,
    /// The rule of the label that means "none of the others" (`neither`):
    /// it is the answer when the other labels' scores sum to less than
    /// `below`. Absent when every answer is one of the labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection: Option<contract::Rejection>,
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
    /// A quantized model's integers and whether this CPU may answer it
    /// differently from a VNNI one; absent for a float model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int8: Option<Int8Info>,
    /// How `explain=true` explains an answer: in the graph (`cam`,
    /// `grad-cam`) or, for a model of another shape, by `occlusion`.
    pub explanation: Method,
    /// The weights' layout: `packed` (ONNX Runtime's own, built at load),
    /// `packing` (plain, while a packed session is built in the background
    /// to replace this one) or `plain` (`CATDOG_PREPACK`).
    pub weights: &'static str,
}

/// Which 8-bit integers a quantized model multiplies, on which CPU.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Int8Info {
    #[serde(flatten)]
    pub scheme: quantized::Int8Scheme,
    /// Whether this x86 CPU has VNNI; absent off x86.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_vnni: Option<bool>,
    /// int8 weights past 7 bits (u8s8 or s8s8) on an x86 CPU without VNNI:
    /// ONNX Runtime's kernels can saturate there, so labels and scores may
    /// differ from a VNNI CPU's (docs/deploy.md: "Lambda's CPUs").
    pub may_saturate: bool,
}

impl Int8Info {
    /// The scheme as it runs on this CPU.
    pub fn on_this_cpu(scheme: quantized::Int8Scheme) -> Self {
        let cpu_vnni = quantized::cpu_has_vnni();
        Self {
            may_saturate: cpu_vnni == Some(false) && scheme.can_saturate(),
            scheme,
            cpu_vnni,
        }
    }
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
    pub name: &'static str,
    pub labels: &'static str,
    pub preprocessing: &'static str,
}

/// Hex digits of the SHA-256 that make a model's version (as short as a
/// Docker image ID, and as unlikely to collide between two models of one name).
pub(crate) const VERSION_CHARS: usize = 12;

/// One picture's answer and, when asked, its explanation from the graph.
pub(crate) type Answer = (Prediction, Option<Heatmap>);

/// What a classifier answering with plain weights keeps to build its
/// packed successor ([`Classifier::pack`]): the model (a download's file
/// stays until then) and how it was loaded.
struct PackLater {
    model: FetchedModel,
    contract: ContractOverrides,
    opts: SessionOptions,
}

/// A loaded model, safe to share between threads.
pub struct Classifier {
    /// Taken by the one [`Classifier::pack`] call.
    later: std::sync::Mutex<Option<PackLater>>,
    /// Set when no packed successor will come: the weights stay plain.
    packing_given_up: std::sync::atomic::AtomicBool,
    runner: Runner,
    /// The graph's explanation branch, if it has one.
    explains: Option<Explains>,
    head: AnswerRule,
    output_kind: Option<OutputKind>,
    classes: usize,
    info: ModelInfo,
    digest: DigestSlot,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("info", &self.info)
            .finish()
    }
}

impl Classifier {
    /// Builds the session and resolves the contract. `digest` holds the
    /// model's SHA-256, now or once known.
    pub fn load(
        model: FetchedModel,
        contract: &ContractOverrides,
        opts: &SessionOptions,
        digest: DigestSlot,
    ) -> Result<Self, ModelError> {
        let started = Instant::now();
        let (opened, explains) = open_explainable(&model, opts, contract)?;
        let prepack = opened.prepack;
        let (spec, pre_source) = contract::resolve(
            contract.preprocessing.clone(),
            opened.metadata.preprocessing.as_deref(),
            str::parse::<Preprocessing>,
            contract.default_preprocessing.clone(),
        )?
        .ok_or(ModelError::NoPreprocessing)?;
        let output_kind = opened
            .metadata
            .output
            .as_deref()
            .map(OutputKind::parse)
            .transpose()?;
        let (output_name, output_shape) = float_output(&opened.session)?;
        let (input_name, input_shape) = opened.input;
        let runner = Runner::new(opened.session, spec.clone(), (&input_name, &input_shape))?;
        let layout = runner.preprocessor().layout();
        let classes = warm_up(&runner, &output_shape)?;
        let (head, labels_source) = resolve_head(contract, &opened.metadata, classes)?;
        let (name, name_source) = contract::resolve(
            contract.name.clone(),
            opened.metadata.name.as_deref(),
            contract::parse_name,
            Some(contract::DEFAULT_NAME.to_string()),
        )?
        .unwrap_or_else(|| (contract::DEFAULT_NAME.to_string(), "default"));
        let info = ModelInfo {
            name,
            uri: model.uri.clone(),
            sha256: None,
            size_bytes: model.size,
            kind: if matches!(head, AnswerRule::ImageNet { .. }) {
                "imagenet"
            } else {
                "labels"
            },
            labels: head.labels(),
            rejection: head.rejection(),
            input: TensorInfo {
                name: input_name,
                shape: input_shape,
                layout,
            },
            output: OutputInfo {
                name: output_name,
                classes,
                kind: match output_kind {
                    Some(OutputKind::Logits) => "logits",
                    Some(OutputKind::Probabilities) => "probabilities",
                    None => "auto",
                },
            },
            preprocessing: spec,
            contract_source: ContractSource {
                name: name_source,
                labels: labels_source,
                preprocessing: pre_source,
            },
            fetch_ms: model.fetch_ms,
            load_ms: started.elapsed().as_secs_f64() * 1e3,
            threads: opened.threads,
            int8: opened.int8.map(Int8Info::on_this_cpu),
            explanation: explains.as_ref().map_or(Method::Occlusion, |e| e.method),
            weights: match prepack {
                Prepack::Now => "packed",
                Prepack::Later => "packing",
                Prepack::Off => "plain",
            },
        };
        warn_if_it_may_saturate(&info);
        let later = (prepack == Prepack::Later).then(|| PackLater {
            model,
            contract: contract.clone(),
            opts: opts.clone(),
        });
        Ok(Self {
            later: std::sync::Mutex::new(later),
            packing_given_up: std::sync::atomic::AtomicBool::new(false),
            runner,
            explains,
            head,
            output_kind,
            classes,
            info,
            digest,
        })
    }

    /// Builds the same model again with packed weights, when this one was
    /// loaded to be packed later; `None` otherwise, or once asked. Blocking
    /// (seconds for VGG16): call it off the async workers.
    pub(crate) fn pack(&self) -> Option<Result<Classifier, ModelError>> {
        let PackLater {
            model,
            contract,
            mut opts,
        } = self
            .later
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        opts.prepack = opts.prepack.at_load();
        let packed = Classifier::load(model, &contract, &opts, self.digest.clone());
        if packed.is_err() {
            self.give_up_packing();
        }
        Some(packed)
    }

    /// No packed successor will be built: this one says its weights are
    /// plain, and lets go of the model it kept for packing.
    pub(crate) fn give_up_packing(&self) {
        self.later.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.packing_given_up
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether [`Classifier::pack`] has a packed successor to build.
    pub(crate) fn packs_later(&self) -> bool {
        self.later
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The batch size the graph insists on, if any (`None`: any batch size).
    pub fn fixed_batch(&self) -> Option<usize> {
        self.runner.fixed_batch()
    }

    /// The model's SHA-256 (hex), or `None` while it is being computed.
    pub fn sha256(&self) -> Option<&str> {
        self.digest.get().map(String::as_str)
    }

    /// The model's name on the Open Inference Protocol routes.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The model's version on the Open Inference Protocol routes: the first
    /// [`VERSION_CHARS`] hex digits of its SHA-256, `None` while that is
    /// still being computed.
    pub fn version(&self) -> Option<&str> {
        self.sha256().map(|s| &s[..VERSION_CHARS.min(s.len())])
    }

    /// [`ModelInfo`] with the digest as known now.
    pub fn info_now(&self) -> ModelInfo {
        let given_up = self
            .packing_given_up
            .load(std::sync::atomic::Ordering::Acquire);
        ModelInfo {
            sha256: self.sha256().map(str::to_owned),
            weights: if given_up { "plain" } else { self.info.weights },
            ..self.info.clone()
        }
    }

    /// What was known at load; the digest may come later: see [`Classifier::sha256`].
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn preprocessor(&self) -> &Preprocessor {
        self.runner.preprocessor()
    }

    /// Classifies pictures (one batch when the graph allows, else in groups).
    /// Blocking: call it off the async workers.
    pub fn classify<R: TensorRow>(
        &self,
        pictures: &[R],
    ) -> Result<(Vec<Prediction>, InferTimings), ModelError> {
        let (rows, timings) = run_rows(&self.runner, pictures)?;
        let preds = rows
            .iter()
            .map(|row| self.answer(row))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((preds, timings))
    }

    /// What the graph's explanation branch explains; `None` when the model
    /// has none (it is then explained by occlusion).
    pub(crate) fn explains(&self) -> Option<&Explains> {
        self.explains.as_ref()
    }

    /// [`Classifier::classify`], with each answer's explanation from the
    /// graph's branch in the same run (`None` each when it has no branch).
    pub(crate) fn classify_explained<R: TensorRow>(
        &self,
        pictures: &[R],
    ) -> Result<(Vec<Answer>, InferTimings), ModelError> {
        let Some(explains) = &self.explains else {
            let (preds, timings) = self.classify(pictures)?;
            return Ok((preds.into_iter().map(|p| (p, None)).collect(), timings));
        };
        let (rows, timings) = self.runner.run_asking(pictures, true, |outputs, n| {
            let (_, values) = outputs[0]
                .try_extract_tensor::<f32>()
                .map_err(inference_err)?;
            let rows = session::rows(values, n)?;
            let heatmaps = heatmaps(outputs, n, explains)?;
            Ok(rows.into_iter().zip(heatmaps).collect())
        })?;
        let answers = rows
            .into_iter()
            .map(|(row, heatmap)| Ok((self.answer(&row)?, Some(heatmap))))
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok((answers, timings))
    }

    /// One output row's answer.
    fn answer(&self, row: &[f32]) -> Result<Prediction, ModelError> {
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
    }
}

/// The session, with the explanation branch added when the model has none
/// and one can be (a graph ONNX Runtime then refuses loads as it came), and
/// what its branch explains.
fn open_explainable(
    model: &FetchedModel,
    opts: &SessionOptions,
    contract: &ContractOverrides,
) -> Result<(session::Opened, Option<Explains>), ModelError> {
    let edit = LoadEdit::new(contract.labels.clone());
    let apply = |bytes: &[u8], stored: &Stored| edit.apply(bytes, stored);
    let opened = match session::open(model, opts, Some(&apply)) {
        Ok(opened) => opened,
        Err(error) if matches!(edit.outcome(), Some(explain::at_load::Outcome::Added(_))) => {
            tracing::warn!(%error, "ONNX Runtime refused the explanation branch catdog added; \
                 loading the model as it came (explained by occlusion)");
            session::open(model, opts, None)?
        }
        Err(error) => return Err(error),
    };
    let explains = opened
        .metadata
        .explanation
        .as_deref()
        .and_then(|text| serde_json::from_str::<Explains>(text).ok())
        .filter(|_| has_branch_outputs(&opened.session));
    match (&explains, edit.outcome()) {
        (Some(e), _) => tracing::debug!(method = ?e.method, "explanations in the graph"),
        (None, Some(explain::at_load::Outcome::Without(why))) => {
            tracing::info!(reason = %why, "explanations by occlusion")
        }
        (None, _) => tracing::info!("explanations by occlusion"),
    }
    Ok((opened, explains))
}

fn has_branch_outputs(session: &ort::session::Session) -> bool {
    let names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    names.contains(&explain::MAP) && names.contains(&explain::TARGET)
}

/// The branch's outputs for `n` pictures: each one's map and the label it explains.
fn heatmaps(
    outputs: &ort::session::SessionOutputs<'_>,
    n: usize,
    explains: &Explains,
) -> Result<Vec<Heatmap>, ModelError> {
    let (shape, values) = outputs[explain::MAP]
        .try_extract_tensor::<f32>()
        .map_err(inference_err)?;
    let (_, targets) = outputs[explain::TARGET]
        .try_extract_tensor::<i64>()
        .map_err(inference_err)?;
    let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    let [count, rows, cols] = dims[..] else {
        return Err(ModelError::Inference(format!(
            "the explanation has shape {dims:?}, expected [pictures, rows, columns]"
        )));
    };
    if count != n || targets.len() != n || values.len() != n * rows * cols {
        return Err(ModelError::Inference(format!(
            "{count} explanations ({} labels) for {n} pictures",
            targets.len()
        )));
    }
    let per = rows * cols;
    (0..n)
        .map(|i| {
            let label = usize::try_from(targets[i])
                .ok()
                .and_then(|t| explains.labels.get(t))
                .ok_or_else(|| {
                    ModelError::Inference(format!(
                        "explained label #{} is not one of the model's",
                        targets[i]
                    ))
                })?;
            Ok(Heatmap {
                label: label.clone(),
                method: explains.method,
                rows,
                cols,
                values: values[i * per..(i + 1) * per].to_vec(),
            })
        })
        .collect()
}

/// The first output's rows, one per picture.
fn run_rows<R: TensorRow>(
    runner: &Runner,
    pictures: &[R],
) -> Result<(Vec<Vec<f32>>, InferTimings), ModelError> {
    runner.run(pictures, |outputs, n| {
        let (_, values) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(inference_err)?;
        session::rows(values, n)
    })
}

/// The graph's first output, which must be a float32 tensor: its name and
/// declared shape.
fn float_output(session: &ort::session::Session) -> Result<(String, Vec<i64>), ModelError> {
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
    let shape = out.dtype().tensor_shape().map(|s| s.to_vec());
    Ok((out.name().to_string(), shape.unwrap_or_default()))
}

/// One inference on a blank picture: proves the graph runs on our tensor
/// and tells the class count even when the output shape is dynamic.
fn warm_up(runner: &Runner, output_shape: &[i64]) -> Result<usize, ModelError> {
    let [h, w] = runner.preprocessor().spec().size;
    let classes = run_rows(runner, std::slice::from_ref(&RgbImage::new(w, h)))?
        .0
        .first()
        .map_or(0, Vec::len);
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
    Ok(classes)
}

/// How answers are read from the `classes` outputs: the labels (override >
/// metadata) with their rejection rule, or the ImageNet cat/dog groups for
/// a 1000-class model without labels. Returns where the labels came from.
fn resolve_head(
    contract: &ContractOverrides,
    metadata: &session::Metadata,
    classes: usize,
) -> Result<(AnswerRule, &'static str), ModelError> {
    let labels = contract::resolve(
        contract.labels.clone(),
        metadata.labels.as_deref(),
        contract::parse_labels,
        None,
    )?;
    match labels {
        Some((labels, _)) if labels.len() != classes => Err(ModelError::LabelCount {
            outputs: classes,
            labels: labels.len(),
        }),
        Some((labels, from)) => {
            let rejection = metadata
                .rejection
                .as_deref()
                .map(|text| contract::Rejection::parse(text, &labels))
                .transpose()?
                .map(|r| contract::Rejection {
                    below: contract.neither_below.unwrap_or(r.below),
                    ..r
                });
            if rejection.is_none() && contract.neither_below.is_some() {
                tracing::warn!(
                    "NEITHER_BELOW is set, but this model has no rejecting label \
                     (no `rejection` metadata): it always answers one of {labels:?}"
                );
            }
            Ok((AnswerRule::Labels { labels, rejection }, from))
        }
        None if classes == imagenet::NUM_CLASSES => Ok((
            AnswerRule::ImageNet {
                neither_below: contract
                    .neither_below
                    .unwrap_or(imagenet::DEFAULT_NEITHER_BELOW),
            },
            "default",
        )),
        None => Err(ModelError::NoLabels(classes)),
    }
}

/// int8 weights past 7 bits on an x86 CPU without VNNI may answer
/// differently from a VNNI CPU: said once, at load.
fn warn_if_it_may_saturate(info: &ModelInfo) {
    if let Some(int8) = info.int8.as_ref().filter(|i| i.may_saturate) {
        tracing::warn!(
            scheme = %int8.scheme.scheme,
            "this model multiplies by int8 weights that use all 8 bits, \
             and this CPU has no VNNI: ONNX Runtime's kernels can saturate here, so its \
             answers may differ from a VNNI CPU's (x86 Lambda has none); requantize it with \
             models/quantize.py, whose int8 models answer alike on both"
        );
    }
}
