//! The frozen base, opened through serving's loading path to also output
//! the tensor feeding its final layer (and an ImageNet base's logits).

use super::error::FinetuneError;
use super::graph;
use crate::model::session::{self, Runner, SessionOptions};
use crate::model::source::FetchedModel;
use crate::model::{contract, imagenet, weights, ModelError};
use crate::preprocess::Preprocessing;

/// The frozen base, opened to also output its feature tensor.
pub(crate) struct Probe {
    pub(crate) runner: Runner,
    pub(crate) head: graph::FinalLayer,
    /// The base graph without its large weights (they stay in `model`).
    pub(crate) graph: onnx_protobuf::ModelProto,
    pub(crate) model: FetchedModel,
    /// The base's logits tensor (ImageNet bases).
    pub(crate) logits: Option<String>,
}

impl Probe {
    /// Finds the base's final layer and builds a session that also outputs
    /// its input, through the same loading path as serving (a file: zero-copy).
    pub(crate) fn open(
        model: FetchedModel,
        pre: Option<Preprocessing>,
        opts: &SessionOptions,
    ) -> Result<Probe, FinetuneError> {
        let view = model.view().map_err(FinetuneError::Read)?;
        let split = weights::split(&view, weights::MIN_BYTES, &model.location())
            .map_err(|e| graph::GraphError::Parse(e.to_string()))?;
        drop(view);
        let mut graph = graph::parse(&split.graph)?;
        // A base that explains itself gets a new branch for its new head.
        crate::model::explain::remove_branch(&mut graph);
        let head = graph::find_head(&graph)?;
        // An ImageNet base's logits, for a head that starts from its answer.
        let logits = (head.base_classes == imagenet::NUM_CLASSES)
            .then(|| graph::logits_tensor(&graph))
            .flatten();
        let edit = |g: &[u8], _: &weights::Stored| {
            graph::parse(g)
                .and_then(|m| graph::with_feature_output(&m, &head, logits.as_deref()))
                .map_err(|e| ModelError::Onnx(e.to_string()))
        };
        let opened = session::open(&model, opts, Some(&edit))?;
        let (spec, _) = contract::resolve(
            pre,
            opened.metadata.preprocessing.as_deref(),
            str::parse::<Preprocessing>,
            None,
        )?
        .ok_or(FinetuneError::NoPreprocessing)?;
        let runner = Runner::new(opened.session, spec, (&opened.input.0, &opened.input.1))?;
        Ok(Probe {
            runner,
            head,
            graph,
            model,
            logits,
        })
    }
}
