//! Explaining a model the graph cannot explain: cover each region of its
//! input in turn and see how much the label's probability drops. Costs
//! one pass per region ([`CELLS`]² of them) plus the answer itself, run
//! through the same batcher as every picture.

use crate::model::explain::{Heatmap, Method};
use crate::model::output::Prediction;
use crate::preprocess::{Layout, Preprocessor, Tensor};

/// Regions per side: 7×7 covers, 49 passes.
pub(crate) const CELLS: usize = 7;

/// The input with each region covered in turn, row by row: the region's
/// values set to 0, the dataset's mean after normalisation.
pub(crate) fn covered(input: &Tensor, pre: &Preprocessor) -> Vec<Tensor> {
    let [h, w] = pre.spec().size.map(|v| v as usize);
    let layout = pre.layout();
    let mut out = Vec::with_capacity(CELLS * CELLS);
    for i in 0..CELLS {
        let (y0, y1) = (i * h / CELLS, (i + 1) * h / CELLS);
        for j in 0..CELLS {
            let (x0, x1) = (j * w / CELLS, (j + 1) * w / CELLS);
            let mut values = input.values().to_vec();
            for y in y0..y1 {
                for x in x0..x1 {
                    for c in 0..3 {
                        let at = match layout {
                            Layout::Nchw => (c * h + y) * w + x,
                            Layout::Nhwc => (y * w + x) * 3 + c,
                        };
                        values[at] = 0.0;
                    }
                }
            }
            out.push(Tensor::from_values(values));
        }
    }
    out
}

/// The label an occlusion explains: the answer's, or for a rejecting
/// answer the strongest other label.
pub(crate) fn label_of(answer: &Prediction, rejecting: Option<&str>) -> String {
    if Some(answer.label.as_str()) != rejecting {
        return answer.label.clone();
    }
    answer
        .scores
        .0
        .iter()
        .filter(|(l, _)| Some(l.as_str()) != rejecting)
        .fold(None::<&(String, f32)>, |best, s| match best {
            Some(b) if b.1 >= s.1 => Some(b),
            _ => Some(s),
        })
        .map_or_else(|| answer.label.clone(), |(l, _)| l.clone())
}

/// The map: per region, how much `label`'s probability fell when it was
/// covered (rises count as 0).
pub(crate) fn heatmap(answer: &Prediction, covered: &[Prediction], label: &str) -> Heatmap {
    let score = |p: &Prediction| {
        p.scores
            .0
            .iter()
            .find(|(l, _)| l == label)
            .map_or(0.0, |(_, s)| *s)
    };
    let base = score(answer);
    Heatmap {
        label: label.to_string(),
        method: Method::Occlusion,
        rows: CELLS,
        cols: CELLS,
        values: covered.iter().map(|p| (base - score(p)).max(0.0)).collect(),
    }
}
