//! The model's map over the picture it saw, spread over the whole picture
//! as sent: normalised to [0, 1], zero where the preprocessing cropped.

use crate::model::explain::Heatmap;
use crate::preprocess::Region;

/// The most cells a grid has on a side.
pub(crate) const MAX_CELLS: usize = 64;

/// Values in [0, 1], row-major.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grid {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) values: Vec<f32>,
}

impl Grid {
    /// The map itself, normalised (no picture to place it on).
    pub(crate) fn of_map(map: &Heatmap) -> Self {
        Self {
            rows: map.rows,
            cols: map.cols,
            values: normalised(&map.values),
        }
    }

    /// The value at (`row`, `col`).
    pub(crate) fn at(&self, row: usize, col: usize) -> f32 {
        self.values[row * self.cols + col]
    }

    /// The value at fractional (`u` columns, `v` rows), bilinear between
    /// the nearest cells, clamped to the grid.
    pub(crate) fn sample(&self, u: f64, v: f64) -> f32 {
        let u = u.clamp(0.0, (self.cols.max(1) - 1) as f64);
        let v = v.clamp(0.0, (self.rows.max(1) - 1) as f64);
        let (c0, r0) = (u.floor() as usize, v.floor() as usize);
        let (c1, r1) = ((c0 + 1).min(self.cols - 1), (r0 + 1).min(self.rows - 1));
        let (fu, fv) = ((u - c0 as f64) as f32, (v - r0 as f64) as f32);
        let top = self.at(r0, c0) * (1.0 - fu) + self.at(r0, c1) * fu;
        let bottom = self.at(r1, c0) * (1.0 - fu) + self.at(r1, c1) * fu;
        top * (1.0 - fv) + bottom * fv
    }

    /// As rows, the answer's form.
    pub(crate) fn rows(&self) -> Vec<Vec<f32>> {
        self.values
            .chunks(self.cols.max(1))
            .map(<[f32]>::to_vec)
            .collect()
    }
}

/// Divided by the largest value (all zero when there is none above 0).
fn normalised(values: &[f32]) -> Vec<f32> {
    let max = values.iter().copied().fold(0f32, f32::max);
    if max > 0.0 && max.is_finite() {
        values.iter().map(|v| (v / max).clamp(0.0, 1.0)).collect()
    } else {
        vec![0.0; values.len()]
    }
}

/// `map` (over `region` of a `width`×`height` picture) as a grid over the
/// whole picture, with cells the size of the map's in the picture's pixels
/// (at most [`MAX_CELLS`] a side): a cell whose center falls in the region
/// takes the map's value there (bilinear), any other is 0. When the region
/// is the whole picture, the grid is the map.
pub(crate) fn whole_picture(map: &Heatmap, width: u32, height: u32, region: Region) -> Grid {
    let map_grid = Grid::of_map(map);
    let (mr, mc) = (map.rows.max(1), map.cols.max(1));
    let cell_w = region.width / mc as f64;
    let cell_h = region.height / mr as f64;
    let (w, h) = (f64::from(width), f64::from(height));
    // As many cells as the map has over its region, kept to the picture's
    // shape: at most MAX_CELLS a side, and no cell under a pixel.
    let (ideal_cols, ideal_rows) = (w / cell_w, h / cell_h);
    let shrink = (MAX_CELLS as f64 / ideal_cols.max(ideal_rows))
        .min(w / ideal_cols)
        .min(h / ideal_rows)
        .min(1.0);
    let cols = ((ideal_cols * shrink).round() as usize).max(1);
    let rows = ((ideal_rows * shrink).round() as usize).max(1);
    let mut out = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        let y = (i as f64 + 0.5) * h / rows as f64;
        for j in 0..cols {
            let x = (j as f64 + 0.5) * w / cols as f64;
            let inside = x >= region.x
                && x < region.x + region.width
                && y >= region.y
                && y < region.y + region.height;
            out.push(if inside {
                map_grid.sample((x - region.x) / cell_w - 0.5, (y - region.y) / cell_h - 0.5)
            } else {
                0.0
            });
        }
    }
    Grid {
        rows,
        cols,
        values: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::explain::Method;

    fn map(rows: usize, cols: usize, values: Vec<f32>) -> Heatmap {
        Heatmap {
            label: "cat".into(),
            method: Method::Cam,
            rows,
            cols,
            values,
        }
    }

    #[test]
    fn over_the_whole_picture_the_grid_is_the_normalised_map() {
        let m = map(2, 3, vec![0.0, 1.0, 2.0, 4.0, 3.0, 0.5]);
        let whole = Region {
            x: 0.0,
            y: 0.0,
            width: 300.0,
            height: 200.0,
        };
        let g = whole_picture(&m, 300, 200, whole);
        assert_eq!((g.rows, g.cols), (2, 3));
        assert_eq!(g.values, vec![0.0, 0.25, 0.5, 1.0, 0.75, 0.125]);
    }

    #[test]
    fn cropped_away_regions_are_zero_and_the_crop_keeps_the_map() {
        // A 2×2 map over the middle 200×200 of a 400×200 picture: 100-pixel
        // cells, so 4 columns, the outer two cropped away.
        let m = map(2, 2, vec![1.0, 2.0, 3.0, 4.0]);
        let middle = Region {
            x: 100.0,
            y: 0.0,
            width: 200.0,
            height: 200.0,
        };
        let g = whole_picture(&m, 400, 200, middle);
        assert_eq!((g.rows, g.cols), (2, 4));
        assert_eq!(
            g.rows(),
            vec![vec![0.0, 0.25, 0.5, 0.0], vec![0.0, 0.75, 1.0, 0.0]]
        );
    }

    #[test]
    fn a_fine_map_over_a_small_picture_keeps_the_pictures_shape() {
        // A 224×224 map over the middle 64×64 of a 96×64 picture: cells
        // under a pixel, so one cell per pixel, 96×64, capped at 64 wide.
        let m = map(224, 224, vec![1.0; 224 * 224]);
        let middle = Region {
            x: 16.0,
            y: 0.0,
            width: 64.0,
            height: 64.0,
        };
        let g = whole_picture(&m, 96, 64, middle);
        assert_eq!((g.cols, g.rows), (64, 43));
        assert_eq!(g.at(20, 0), 0.0, "cropped-away left edge");
        assert_eq!(g.at(20, 32), 1.0);
    }

    #[test]
    fn a_map_of_zeros_stays_zero() {
        let g = Grid::of_map(&map(1, 2, vec![0.0, 0.0]));
        assert_eq!(g.values, vec![0.0, 0.0]);
    }
}
