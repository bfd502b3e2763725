//! The branch added when a model is loaded: for a model that lacks one (a
//! stock ImageNet model, or a classifier catdog did not write), as the
//! graph is handed to ONNX Runtime. A model of a shape catdog cannot
//! explain in the graph loads unchanged, and says why.

use std::sync::Mutex;

use super::plan::{for_model, Answers};
use super::{add_branch, ExplainGraphError, Explains, MAP};
use crate::model::contract::{self, Rejection};
use crate::model::graph::{self, find_head, metadata};
use crate::model::imagenet;
use crate::model::weights::Stored;
use crate::model::ModelError;

/// What happened to the graph.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// The model came with its branch.
    Present,
    /// The branch was added.
    Added(Explains),
    /// It has none (the model is explained by occlusion).
    Without(ExplainGraphError),
}

/// The edit, and what it did (set once it has run).
pub(crate) struct LoadEdit {
    labels: Option<Vec<String>>,
    outcome: Mutex<Option<Outcome>>,
}

impl LoadEdit {
    /// `labels`: the user's override (`MODEL_LABELS`), which wins over the
    /// model's metadata as it does for answers.
    pub(crate) fn new(labels: Option<Vec<String>>) -> Self {
        Self {
            labels,
            outcome: Mutex::new(None),
        }
    }

    /// The graph with the branch when one can be added, else as it was;
    /// `stored` holds its large weights.
    pub(crate) fn apply(&self, bytes: &[u8], stored: &Stored) -> Result<Vec<u8>, ModelError> {
        let (edited, outcome) = match self.edit(bytes, stored) {
            Ok((edited, explains)) => (edited, Outcome::Added(explains)),
            Err(ExplainGraphError::AlreadyThere) => (bytes.to_vec(), Outcome::Present),
            Err(why) => (bytes.to_vec(), Outcome::Without(why)),
        };
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        Ok(edited)
    }

    /// What the edit did, once it ran.
    pub(crate) fn outcome(&self) -> Option<Outcome> {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn edit(
        &self,
        bytes: &[u8],
        stored: &Stored,
    ) -> Result<(Vec<u8>, Explains), ExplainGraphError> {
        let unsupported = |e: graph::GraphError| ExplainGraphError::Unsupported(e.to_string());
        let mut model = graph::parse(bytes).map_err(unsupported)?;
        let has_branch = model
            .graph
            .as_ref()
            .is_some_and(|g| g.output.iter().any(|o| o.name == MAP));
        if has_branch {
            return Err(ExplainGraphError::AlreadyThere);
        }
        let labels = self.labels.clone().or_else(|| {
            metadata(&model, contract::KEY_LABELS).and_then(|t| contract::parse_labels(&t).ok())
        });
        let rejecting = labels.as_ref().and_then(|labels| {
            let text = metadata(&model, contract::KEY_REJECTION)?;
            Rejection::parse(&text, labels).ok().map(|r| r.label)
        });
        let cat: Vec<usize> = imagenet::CAT_CLASSES.collect();
        let dog: Vec<usize> = imagenet::DOG_CLASSES.collect();
        let answers = match &labels {
            Some(labels) => Answers::Labels {
                labels,
                rejecting: rejecting.as_deref(),
            },
            None => {
                let head = find_head(&model).map_err(unsupported)?;
                if head.base_classes != imagenet::NUM_CLASSES {
                    return Err(ExplainGraphError::Unsupported(format!(
                        "{} classes and no labels",
                        head.base_classes
                    )));
                }
                Answers::ImageNet {
                    cat: &cat,
                    dog: &dog,
                }
            }
        };
        let plan = for_model(&model, &answers)?;
        let explains = add_branch(&mut model, stored, &plan)?;
        let bytes = graph::serialize(&model).map_err(unsupported)?;
        Ok((bytes, explains))
    }
}
