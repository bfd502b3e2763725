//! The variants of each picture run through the base: augmentation on the
//! cached features, each copy one more forward pass.

/// A variant of each picture run through the base: augmentation on the
/// cached features, each copy one more forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    Original,
    /// Left-right mirror image.
    Mirror,
    /// A corner crop (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)
    /// keeping [`CROP_SIDE`] of each side, as a zoom-and-shift augmentation.
    Crop(u8),
}

/// Share of each side a crop keeps (Keras's `zoom_range=0.2`, at its corners).
pub(crate) const CROP_SIDE: f64 = 0.8;

impl View {
    /// The four corner crops.
    pub(crate) const CROPS: [View; 4] =
        [View::Crop(0), View::Crop(1), View::Crop(2), View::Crop(3)];

    pub(crate) fn apply(self, picture: &mut image::RgbImage) {
        match self {
            View::Original => {}
            View::Mirror => image::imageops::flip_horizontal_in_place(picture),
            View::Crop(corner) => {
                let (w, h) = picture.dimensions();
                let (cw, ch) = (
                    ((f64::from(w) * CROP_SIDE).round() as u32).max(1),
                    ((f64::from(h) * CROP_SIDE).round() as u32).max(1),
                );
                let x = if corner % 2 == 1 { w - cw } else { 0 };
                let y = if corner >= 2 { h - ch } else { 0 };
                *picture = image::imageops::crop_imm(picture, x, y, cw, ch).to_image();
            }
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            View::Original => "original",
            View::Mirror => "mirrored",
            View::Crop(0) => "top-left crop",
            View::Crop(1) => "top-right crop",
            View::Crop(2) => "bottom-left crop",
            View::Crop(_) => "bottom-right crop",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_keep_the_corner_they_name() {
        // 10×5 picture whose pixel value encodes its position.
        let picture = image::RgbImage::from_fn(10, 5, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let mut mirrored = picture.clone();
        View::Mirror.apply(&mut mirrored);
        assert_eq!(mirrored.get_pixel(0, 0)[0], 9);
        for (corner, (x0, y0)) in [(0, (0, 0)), (1, (2, 0)), (2, (0, 1)), (3, (2, 1))] {
            let mut p = picture.clone();
            View::Crop(corner).apply(&mut p);
            assert_eq!(p.dimensions(), (8, 4), "80% of each side");
            assert_eq!(p.get_pixel(0, 0).0[..2], [x0, y0], "corner {corner}");
        }
        let mut tiny = image::RgbImage::new(1, 1);
        View::Crop(3).apply(&mut tiny);
        assert_eq!(tiny.dimensions(), (1, 1), "never an empty picture");
    }
}
