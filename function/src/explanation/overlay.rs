//! The grid drawn over the picture: a small copy of it, each pixel tinted
//! by the grid's value there (bilinear), as a PNG.

use image::{Rgb, RgbImage};

use super::grid::Grid;
use crate::model::explain::Png;

/// The longest side of the picture an overlay is drawn on, on the HTTP API
/// (the command line draws larger ones).
pub(crate) const OVERLAY_SIDE: u32 = 384;

/// How strongly the hottest regions are tinted.
const OPACITY: f32 = 0.6;

/// A copy of `picture` at most `side` pixels a side.
pub(crate) fn thumbnail(picture: &RgbImage, side: u32) -> RgbImage {
    let (w, h) = picture.dimensions();
    let longest = w.max(h).max(1);
    if longest <= side {
        return picture.clone();
    }
    let scale = f64::from(side) / f64::from(longest);
    let nw = ((f64::from(w) * scale).round() as u32).max(1);
    let nh = ((f64::from(h) * scale).round() as u32).max(1);
    image::imageops::thumbnail(picture, nw, nh)
}

/// `picture` with `grid` over it (stretched to cover all of it).
pub(crate) fn draw(picture: &RgbImage, grid: &Grid) -> RgbImage {
    let (w, h) = picture.dimensions();
    let mut out = picture.clone();
    for (x, y, px) in out.enumerate_pixels_mut() {
        let u = (f64::from(x) + 0.5) / f64::from(w) * grid.cols as f64 - 0.5;
        let v = (f64::from(y) + 0.5) / f64::from(h) * grid.rows as f64 - 0.5;
        let heat = grid.sample(u, v);
        let tint = colour(heat);
        let a = OPACITY * heat;
        for c in 0..3 {
            px[c] = (f32::from(px[c]) * (1.0 - a) + f32::from(tint[c]) * a).round() as u8;
        }
    }
    out
}

/// The overlay as a PNG; `None` if it could not be encoded (only short
/// of memory). Fast compression: the default level took most of an
/// explained MobileNetV2 answer's time for a few percent fewer bytes.
pub(crate) fn png(picture: &RgbImage, grid: &Grid) -> Option<Png> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let drawn = draw(picture, grid);
    let mut png = Vec::new();
    let encoder =
        PngEncoder::new_with_quality(&mut png, CompressionType::Fast, FilterType::Adaptive);
    let (w, h) = drawn.dimensions();
    match encoder.write_image(drawn.as_raw(), w, h, image::ExtendedColorType::Rgb8) {
        Ok(()) => Some(Png(png)),
        Err(error) => {
            tracing::warn!(%error, "could not encode the explanation overlay");
            None
        }
    }
}

/// Dark blue (nothing) through red to yellow (most).
fn colour(heat: f32) -> Rgb<u8> {
    const STOPS: [(f32, [f32; 3]); 4] = [
        (0.0, [20.0, 20.0, 120.0]),
        (0.4, [200.0, 30.0, 60.0]),
        (0.75, [250.0, 140.0, 20.0]),
        (1.0, [255.0, 240.0, 60.0]),
    ];
    let heat = heat.clamp(0.0, 1.0);
    let i = STOPS.iter().rposition(|(at, _)| *at <= heat).unwrap_or(0);
    let (a, ca) = STOPS[i];
    let (b, cb) = STOPS[(i + 1).min(STOPS.len() - 1)];
    let t = if b > a { (heat - a) / (b - a) } else { 0.0 };
    Rgb([0, 1, 2].map(|c| (ca[c] + (cb[c] - ca[c]) * t).round() as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hot_half_is_tinted_and_the_cold_half_is_not() {
        let picture = RgbImage::from_pixel(40, 20, Rgb([128, 128, 128]));
        let grid = Grid {
            rows: 1,
            cols: 2,
            values: vec![0.0, 1.0],
        };
        let drawn = draw(&picture, &grid);
        assert_eq!(drawn.get_pixel(0, 10), &Rgb([128, 128, 128]));
        let hot = drawn.get_pixel(39, 10);
        assert!(hot[0] > 180 && hot[2] < 120, "{hot:?}");
    }

    #[test]
    fn big_pictures_are_drawn_small() {
        let t = thumbnail(&RgbImage::new(1000, 500), OVERLAY_SIDE);
        assert_eq!(t.dimensions(), (OVERLAY_SIDE, OVERLAY_SIDE / 2));
    }
}
