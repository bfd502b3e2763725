//! Plans for the branch of a model catdog did not write: a classifier with
//! its own labels (its final layer's columns are the labels' scores) or a
//! stock ImageNet model (cat and dog are groups of its classes).

use onnx_protobuf::ModelProto;

use super::score::{Grouped, Layer, ScoreLayers, Targets};
use super::steps::{constant_weight, Weight};
use super::{ExplainGraphError, Plan};
use crate::model::graph::{find_head, logits_tensor, FinalLayer};

/// What the answers of a model are, as its contract says.
pub(crate) enum Answers<'a> {
    /// Its own labels, in output order, and the rejecting one if any.
    Labels {
        labels: &'a [String],
        rejecting: Option<&'a str>,
    },
    /// A 1000-class ImageNet model: cat and dog are these groups of classes.
    ImageNet { cat: &'a [usize], dog: &'a [usize] },
}

/// The plan for a model whose final layer [`find_head`] finds.
pub(crate) fn for_model(model: &ModelProto, answers: &Answers) -> Result<Plan, ExplainGraphError> {
    let unsupported = |why: String| ExplainGraphError::Unsupported(why);
    let head = find_head(model).map_err(|e| unsupported(e.to_string()))?;
    let layer = final_layer(model, &head)
        .ok_or_else(|| unsupported("its final layer's weight is not a plain matrix".into()))?;
    let scores = logits_tensor(model).ok_or(ExplainGraphError::Empty)?;
    let width = head.base_classes;
    let (targets, layers) = match answers {
        Answers::Labels { labels, rejecting } => {
            let targets = Targets::labelled(labels, *rejecting, scores, width);
            let columns = targets.label_columns().iter().map(|&i| i as i64).collect();
            let layers = ScoreLayers {
                trained: Some((layer, columns)),
                base: None,
            };
            (targets, layers)
        }
        Answers::ImageNet { cat, dog } => {
            let groups = vec![cat.to_vec(), dog.to_vec()];
            let targets = Targets {
                labels: vec!["cat".into(), "dog".into()],
                scores: scores.clone(),
                width,
                columns: groups.clone(),
            };
            let layers = ScoreLayers {
                trained: None,
                base: Some(Grouped {
                    layer,
                    logits: scores,
                    groups,
                }),
            };
            (targets, layers)
        }
    };
    Ok(Plan {
        features: head.feature.clone(),
        targets,
        layers,
    })
}

/// The final layer's weight as the graph stores it.
pub(crate) fn final_layer(model: &ModelProto, head: &FinalLayer) -> Option<Layer> {
    let graph = model.graph.as_ref()?;
    let node = graph.node.get(*head.nodes.last()?)?;
    match node.op_type.as_str() {
        "Gemm" | "MatMul" => {
            let transposed = node
                .attribute
                .iter()
                .any(|a| a.name == "transB" && a.i == 1);
            Some(Layer {
                weight: constant_weight(model, node.input.get(1)?, transposed)?,
                transposed,
            })
        }
        "QLinearMatMul" => Some(Layer {
            weight: Weight::Int8 {
                values: node.input.get(3)?.clone(),
                scale: node.input.get(4)?.clone(),
                zero: Some(node.input.get(5)?.clone()),
                axis: 1,
            },
            transposed: false,
        }),
        _ => None,
    }
}
