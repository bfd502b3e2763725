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
    /// part the model sees.
    pub(crate) fn of(picture: &RgbImage, region: Region) -> Self {
        Self {
            width: picture.width(),
            height: picture.height(),
            region,
            thumbnail: overlay::thumbnail(picture),
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
        overlay_png: seen.map(|s| overlay::png_base64(&s.thumbnail, &grid)),
        grid: grid.rows(),
    }
}
