//! Fine-tuning's edits of a base classifier's graph: [`head`] exposes the
//! feature tensor and writes the model back with a new head. Reading and
//! building graphs is [`crate::model::graph`]'s.

pub(crate) mod head;

pub(crate) use crate::model::graph::{
    find_head, logits_tensor, parse, serialize, FinalLayer, GraphError,
};
pub(crate) use head::{replace_head, with_feature_output, Evidence, Prior, BASE_LOGITS};
