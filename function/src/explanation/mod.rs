//! Explanations as a person sees them: the model's map laid over the whole
//! picture as sent ([`grid`]), drawn over it ([`overlay`]), or, for a model
//! whose graph has no explanation branch, measured by covering each region
//! in turn ([`occlusion`]). The map itself comes from the model's graph
//! ([`crate::model::explain`]).

pub(crate) mod grid;
pub(crate) mod occlusion;
pub(crate) mod overlay;

use image::RgbImage;

use crate::model::explain::{Explanation, Heatmap};
use crate::model::output::Prediction;
use crate::model::{Classifier, ModelError};
use crate::preprocess::Region;

/// What an explanation needs of the picture besides the model's map.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// The picture's size, upright.
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// The part of it the model saw.
    pub(crate) region: Region,
    /// A small copy to draw the overlay on.
    pub(crate) thumbnail: RgbImage,
}

impl Seen {
    /// What `picture` shows of itself to an explanation; `region` is the
    /// part the model sees, `side` the overlay's longest side.
    pub(crate) fn of(picture: &RgbImage, region: Region, side: u32) -> Self {
        Self {
            width: picture.width(),
            height: picture.height(),
            region,
            thumbnail: overlay::thumbnail(picture, side),
        }
    }
}

/// The explanation of one answer: `heatmap` over the whole picture, and
/// drawn over it when the picture is known.
pub(crate) fn explain(heatmap: &Heatmap, seen: Option<&Seen>) -> Explanation {
    let grid = match seen {
        Some(seen) => grid::whole_picture(heatmap, seen.width, seen.height, seen.region),
        None => grid::Grid::of_map(heatmap),
    };
    Explanation {
        label: heatmap.label.clone(),
        method: heatmap.method,
        overlay_png: seen.and_then(|s| overlay::png(&s.thumbnail, &grid)),
        grid: grid.rows(),
    }
}

/// Classifies `pictures` (on this thread, as the command line does), each
/// answer with its explanation: the graph's own, or by occlusion for a
/// model without an explanation branch; overlays at most `side` a side.
pub(crate) fn classify_explained(
    classifier: &Classifier,
    pictures: &[RgbImage],
    side: u32,
) -> Result<Vec<Prediction>, ModelError> {
    let (answers, _) = classifier.classify_explained(pictures)?;
    let pre = classifier.preprocessor();
    let rejecting = classifier
        .info()
        .rejection
        .as_ref()
        .map(|r| r.label.clone());
    answers
        .into_iter()
        .zip(pictures)
        .map(|((mut answer, heatmap), picture)| {
            let heatmap = match heatmap {
                Some(h) => h,
                None => {
                    let covered = occlusion::covered(&pre.input(picture), pre);
                    let (scores, _) = classifier.classify(&covered)?;
                    let label = occlusion::label_of(&answer, rejecting.as_deref());
                    occlusion::heatmap(&answer, &scores, &label)
                }
            };
            let seen = Seen::of(picture, pre.region(picture.width(), picture.height()), side);
            answer.explanation = Some(explain(&heatmap, Some(&seen)));
            Ok(answer)
        })
        .collect()
}
