//! Picture → model input tensor, exactly as the model was trained.
//!
//! [`spec`] says what a preprocessing is (and parses it); this module runs
//! it. Resizing is Pillow's, exactly (see [`pillow_resize`]): what Keras `load_img`
//! and torchvision use. The test suite compares our tensors with a PIL + numpy
//! reference on real photos. Nothing here knows about models: the model
//! layer hands in a spec and a layout.

pub(crate) mod spec;

use std::borrow::Cow;

use image::RgbImage;

use pillow_resize::resize_rgb_region;
pub use spec::{ColorOrder, Filter, Layout, Preprocessing, ResizeMode, SpecError};

/// One picture's model input: a decoded picture preprocessed as the model's
/// contract says ([`Preprocessor::input`]), or values a client preprocessed,
/// checked to have the model's size and only finite values
/// ([`Preprocessor::check_tensor`]); a batch takes either as it is.
#[derive(Debug, Clone)]
pub(crate) struct Tensor(Vec<f32>);

impl Tensor {
    /// The values, in the model's layout.
    pub(crate) fn values(&self) -> &[f32] {
        &self.0
    }

    /// Values already in the model's shape (an edit of another input's).
    pub(crate) fn from_values(values: Vec<f32>) -> Self {
        Tensor(values)
    }
}

/// Why a client's tensor cannot be one picture's input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum TensorError {
    #[error("{got} values, but one picture's input holds {want}")]
    Size { got: usize, want: usize },
    #[error("value {index} is not a finite number")]
    NotFinite { index: usize },
}

/// Something that can fill one picture's slot of a batch tensor.
pub trait TensorRow {
    fn write_row(&self, pre: &Preprocessor, out: &mut [f32]);
}

impl TensorRow for RgbImage {
    fn write_row(&self, pre: &Preprocessor, out: &mut [f32]) {
        pre.write_tensor(self, out);
    }
}

impl TensorRow for Tensor {
    fn write_row(&self, _: &Preprocessor, out: &mut [f32]) {
        out.copy_from_slice(&self.0);
    }
}

/// A preprocessing spec with its input layout resolved, ready to run.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    spec: Preprocessing,
    layout: Layout,
    /// `lut[c][v]` = value of 8-bit level `v` in model channel `c`: exact, and
    /// one table lookup per element instead of a multiply and a divide.
    lut: [[f32; 256]; 3],
}

impl Preprocessor {
    pub fn new(spec: Preprocessing, layout: Layout) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, slot) in table.iter_mut().enumerate() {
                *slot = (v as f32 * spec.scale - spec.mean[c]) / spec.std[c];
            }
        }
        Self { spec, layout, lut }
    }

    pub(crate) fn spec(&self) -> &Preprocessing {
        &self.spec
    }

    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    /// Number of f32 values one picture occupies in the input tensor.
    pub fn tensor_len(&self) -> usize {
        3 * self.spec.size[0] as usize * self.spec.size[1] as usize
    }

    /// Shape of a batch of `n` pictures, in the model's layout.
    pub(crate) fn batch_shape(&self, n: usize) -> [usize; 4] {
        let [h, w] = self.spec.size.map(|v| v as usize);
        match self.layout {
            Layout::Nchw => [n, 3, h, w],
            Layout::Nhwc => [n, h, w, 3],
        }
    }

    /// Writes one picture's tensor into `out` (`tensor_len()` values).
    pub(crate) fn write_tensor(&self, picture: &RgbImage, out: &mut [f32]) {
        assert_eq!(
            out.len(),
            self.tensor_len(),
            "tensor slot has the wrong size"
        );
        let [h, w] = self.spec.size.map(|v| v as usize);
        let resized = self.resize(picture);
        let stride = resized.width() as usize * 3;
        let src = resized.as_raw();
        // model channel c reads source channel order[c]
        let order = match self.spec.color {
            ColorOrder::Rgb => [0, 1, 2],
            ColorOrder::Bgr => [2, 1, 0],
        };
        match self.layout {
            Layout::Nchw => {
                let plane = h * w;
                for (c, &sc) in order.iter().enumerate() {
                    let lut = &self.lut[c];
                    let dst = &mut out[c * plane..(c + 1) * plane];
                    for y in 0..h {
                        let row = &src[y * stride..][..w * 3];
                        let drow = &mut dst[y * w..(y + 1) * w];
                        for (d, px) in drow.iter_mut().zip(row.chunks_exact(3)) {
                            *d = lut[px[sc] as usize];
                        }
                    }
                }
            }
            Layout::Nhwc => {
                for y in 0..h {
                    let row = &src[y * stride..][..w * 3];
                    let drow = &mut out[y * w * 3..(y + 1) * w * 3];
                    for (d, px) in drow.chunks_exact_mut(3).zip(row.chunks_exact(3)) {
                        for c in 0..3 {
                            d[c] = self.lut[c][px[order[c]] as usize];
                        }
                    }
                }
            }
        }
    }

    /// Checks a client's preprocessed values as one picture's input.
    pub(crate) fn check_tensor(&self, values: Vec<f32>) -> Result<Tensor, TensorError> {
        if values.len() != self.tensor_len() {
            return Err(TensorError::Size {
                got: values.len(),
                want: self.tensor_len(),
            });
        }
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(TensorError::NotFinite { index });
        }
        Ok(Tensor(values))
    }

    /// A decoded picture reduced to its model input, so the picture itself
    /// can be freed before it waits for inference (bit-exact with writing
    /// it into a batch: the same [`Preprocessor::write_tensor`]).
    pub(crate) fn input(&self, picture: &RgbImage) -> Tensor {
        Tensor(self.tensor(picture))
    }

    /// The most memory preprocessing a `width`×`height` picture takes besides
    /// the picture: the resize's intermediate rows (the output's width by the
    /// rows it reads, at most every row), the resized region and the tensor.
    pub(crate) fn scratch_bytes(&self, width: u32, height: u32) -> u64 {
        let [h, w] = self.spec.size.map(u64::from);
        let longest = u64::from(width.max(height));
        let intermediate = 3 * w.max(h) * longest;
        intermediate + 3 * w * h + 4 * self.tensor_len() as u64
    }

    /// One picture as its own tensor (convenience for tests and tools).
    pub fn tensor(&self, picture: &RgbImage) -> Vec<f32> {
        let mut out = vec![0f32; self.tensor_len()];
        self.write_tensor(picture, &mut out);
        out
    }

    /// The part of a `width`×`height` picture the model sees (the center
    /// crop, or all of it when stretched), in the picture's pixels.
    pub(crate) fn region(&self, width: u32, height: u32) -> Region {
        let [h, w] = self.spec.size;
        let (rw, rh) = match self.spec.resize {
            ResizeMode::Stretch => (w, h),
            ResizeMode::ShorterSideCenterCrop => {
                shorter_side_size(width, height, self.spec.resize_shorter.unwrap_or(h.min(w)))
            }
        };
        let sx = f64::from(width) / f64::from(rw.max(1));
        let sy = f64::from(height) / f64::from(rh.max(1));
        Region {
            x: f64::from(round_half_even_half(rw.saturating_sub(w))) * sx,
            y: f64::from(round_half_even_half(rh.saturating_sub(h))) * sy,
            width: f64::from(w.min(rw)) * sx,
            height: f64::from(h.min(rh)) * sy,
        }
    }

    /// Resizes per the spec, producing only the model's input region
    /// (the center crop, if any): same pixels as resize-then-crop.
    fn resize<'a>(&self, picture: &'a RgbImage) -> Cow<'a, RgbImage> {
        let [h, w] = self.spec.size;
        let (rw, rh) = match self.spec.resize {
            ResizeMode::Stretch => (w, h),
            ResizeMode::ShorterSideCenterCrop => shorter_side_size(
                picture.width(),
                picture.height(),
                self.spec.resize_shorter.unwrap_or(h.min(w)),
            ),
        };
        // torchvision CenterCrop: int(round((size - crop) / 2.0)), Python's round-half-even.
        let left = round_half_even_half(rw.saturating_sub(w));
        let top = round_half_even_half(rh.saturating_sub(h));
        if (rw, rh) == picture.dimensions() && (rw, rh) == (w, h) {
            Cow::Borrowed(picture)
        } else {
            Cow::Owned(resize_rgb_region(
                picture,
                (rw, rh),
                (left, top, w.min(rw), h.min(rh)),
                self.spec.filter,
            ))
        }
    }
}

/// A rectangle of a picture, in its pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Region {
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) width: f64,
    pub(crate) height: f64,
}

/// Output size of torchvision `Resize(shorter)` for a `width`×`height` picture:
/// the shorter side becomes `shorter`, the longer one `int(shorter * long / short)`.
pub(crate) fn shorter_side_size(width: u32, height: u32, shorter: u32) -> (u32, u32) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (u64::from(shorter) * u64::from(long) / u64::from(short.max(1))) as u32;
    if width <= height {
        (shorter, new_long.max(1))
    } else {
        (new_long.max(1), shorter)
    }
}

/// `round(diff / 2)` with Python's round-half-to-even.
fn round_half_even_half(diff: u32) -> u32 {
    let half = diff / 2;
    if diff % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn torchvision_resize_and_crop_arithmetic() {
        assert_eq!(shorter_side_size(500, 375, 256), (341, 256));
        assert_eq!(shorter_side_size(375, 500, 256), (256, 341));
        assert_eq!(shorter_side_size(256, 256, 256), (256, 256));
        // Python: round(117/2)=58 (58.5 → even), round(115/2)=58 (57.5 → even), round(32/2)=16
        assert_eq!(round_half_even_half(117), 58);
        assert_eq!(round_half_even_half(115), 58);
        assert_eq!(round_half_even_half(32), 16);
        assert_eq!(round_half_even_half(1), 0);
    }

    #[test]
    fn the_region_is_the_center_crop_in_the_pictures_pixels() {
        let pre = Preprocessor::new(Preprocessing::torch(), Layout::Nchw);
        // 500×375 → 341×256, crop 224 at (58, 16) → ×(500/341, 375/256).
        let r = pre.region(500, 375);
        assert!((r.x - 58.0 * 500.0 / 341.0).abs() < 1e-9, "{r:?}");
        assert!((r.y - 16.0 * 375.0 / 256.0).abs() < 1e-9, "{r:?}");
        assert!((r.width - 224.0 * 500.0 / 341.0).abs() < 1e-9, "{r:?}");
        assert!((r.height - 224.0 * 375.0 / 256.0).abs() < 1e-9, "{r:?}");
        let mut stretch = Preprocessing::caffe();
        stretch.resize = ResizeMode::Stretch;
        let whole = Preprocessor::new(stretch, Layout::Nhwc).region(640, 480);
        assert_eq!(
            whole,
            Region {
                x: 0.0,
                y: 0.0,
                width: 640.0,
                height: 480.0
            }
        );
    }

    #[test]
    fn caffe_is_bgr_minus_means_in_either_layout() {
        let mut spec = Preprocessing::caffe();
        spec.size = [2, 2];
        let pic = RgbImage::from_pixel(2, 2, Rgb([200, 100, 50]));
        let nchw = Preprocessor::new(spec.clone(), Layout::Nchw).tensor(&pic);
        let b = 50.0 - 103.939f32;
        let g = 100.0 - 116.779f32;
        let r = 200.0 - 123.68f32;
        assert_eq!(nchw, vec![b, b, b, b, g, g, g, g, r, r, r, r]);
        let nhwc = Preprocessor::new(spec, Layout::Nhwc).tensor(&pic);
        assert_eq!(&nhwc[..6], &[b, g, r, b, g, r]);
    }

    #[test]
    fn torch_normalises_rgb() {
        let pic = RgbImage::from_pixel(300, 260, Rgb([255, 0, 128]));
        let t = Preprocessor::new(Preprocessing::torch(), Layout::Nchw).tensor(&pic);
        let plane = 224 * 224;
        assert!((t[0] - (1.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((t[plane] - (0.0 - 0.456) / 0.224).abs() < 1e-6);
        assert!((t[2 * plane + 500] - (128.0 / 255.0 - 0.406) / 0.225).abs() < 1e-6);
    }
}
