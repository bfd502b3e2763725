//! Pillow's resampling, reproduced exactly.
//!
//! Models are trained on pictures resized by Pillow (torchvision and Keras
//! both call `Image.resize`). Off-the-shelf SIMD resizers round differently
//! and land one 8-bit level away on ~15% of pixels; this port of Pillow's
//! `Resample.c` (same coefficients, same 22-bit fixed point, horizontal pass
//! first, same rounding) gives identical pixels. Nearest-neighbour is already
//! identical in `fast_image_resize` and stays there.
//!
//! A crate of its own so that it is optimised in every profile (the
//! workspace's `[profile.dev.package.pillow-resize]`): these loops run over
//! every source pixel, ~25× slower unoptimised, and the tests send
//! 40-megapixel pictures through the debug build.

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// Resampling filter, with Pillow's semantics (the filters models are trained with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    Nearest,
    Bilinear,
    Bicubic,
    Lanczos3,
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Resizes an RGB picture to `width`×`height` exactly as Pillow's `Image.resize` does.
pub fn resize_rgb(picture: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    resize_rgb_region(picture, (width, height), (0, 0, width, height), filter)
}

/// The `(left, top, w, h)` region of the picture resized to `full` =
/// `(width, height)`, computed without producing the rest: the same pixels
/// as resizing whole and then cropping (each output pixel's weights depend
/// only on its own position), at the cost of the region alone. A 10000×10
/// strip "resized to shorter side 256" would otherwise be 65 megapixels.
pub fn resize_rgb_region(
    picture: &RgbImage,
    full: (u32, u32),
    region: (u32, u32, u32, u32),
    filter: Filter,
) -> RgbImage {
    let (full_w, full_h) = full;
    let (left, top, width, height) = region;
    assert!(
        left + width <= full_w && top + height <= full_h,
        "region outside the resized picture"
    );
    let (support, kernel): (f64, fn(f64) -> f64) = match filter {
        Filter::Nearest => return nearest(picture, full, region),
        Filter::Bilinear => (1.0, bilinear),
        Filter::Bicubic => (2.0, bicubic),
        Filter::Lanczos3 => (3.0, lanczos),
    };
    let (in_w, in_h) = picture.dimensions();
    let horiz = Coeffs::new(in_w, full_w, left, width, support, kernel);
    let vert = Coeffs::new(in_h, full_h, top, height, support, kernel);
    let need_h = full_w != in_w;
    let need_v = full_h != in_h;

    // Rows of the source the vertical pass will read.
    let first_row = vert.bounds[0].0;
    let last_row = vert.bounds.last().map_or(in_h as usize, |(lo, n)| lo + n);
    let (tmp, tmp_w, row_offset) = if need_h {
        let rows = last_row - first_row;
        let mut tmp = vec![0u8; width as usize * rows * 3];
        let src = picture.as_raw();
        let in_stride = in_w as usize * 3;
        for y in 0..rows {
            let srow = &src[(y + first_row) * in_stride..][..in_stride];
            let drow = &mut tmp[y * width as usize * 3..][..width as usize * 3];
            for (x, &(lo, n)) in horiz.bounds.iter().enumerate() {
                let k = &horiz.fixed[x * horiz.ksize..][..n];
                let mut ss = [1i64 << (PRECISION_BITS - 1); 3];
                for (i, &w) in k.iter().enumerate() {
                    let p = &srow[(lo + i) * 3..][..3];
                    for c in 0..3 {
                        ss[c] += i64::from(p[c]) * i64::from(w);
                    }
                }
                for c in 0..3 {
                    drow[x * 3 + c] = clip8(ss[c]);
                }
            }
        }
        (tmp, width, first_row)
    } else {
        // Same width: only the columns of the region, all needed rows.
        let rows = last_row - first_row;
        let in_stride = in_w as usize * 3;
        let mut tmp = Vec::with_capacity(width as usize * rows * 3);
        for y in first_row..last_row {
            tmp.extend_from_slice(
                &picture.as_raw()[y * in_stride + left as usize * 3..][..width as usize * 3],
            );
        }
        (tmp, width, first_row)
    };
    if !need_v {
        // Same height: the needed rows are exactly the region's rows.
        debug_assert_eq!(tmp.len(), tmp_w as usize * 3 * height as usize);
        return RgbImage::from_raw(tmp_w, height, tmp).expect("buffer size matches");
    }
    let stride = tmp_w as usize * 3;
    let mut out = vec![0u8; stride * height as usize];
    for (y, &(lo, n)) in vert.bounds.iter().enumerate() {
        let k = &vert.fixed[y * vert.ksize..][..n];
        let drow = &mut out[y * stride..][..stride];
        for (xc, d) in drow.iter_mut().enumerate() {
            let mut ss = 1i64 << (PRECISION_BITS - 1);
            for (i, &w) in k.iter().enumerate() {
                ss += i64::from(tmp[(lo - row_offset + i) * stride + xc]) * i64::from(w);
            }
            *d = clip8(ss);
        }
    }
    RgbImage::from_raw(tmp_w, height, out).expect("buffer size matches")
}

fn clip8(ss: i64) -> u8 {
    if ss >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if ss <= 0 {
        0
    } else {
        (ss >> PRECISION_BITS) as u8
    }
}

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Per output pixel: first source index, tap count, and fixed-point weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    fixed: Vec<i32>,
}

impl Coeffs {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for output
    /// pixels `start..start + count` of a resize from `in_size` to `out_size`.
    fn new(
        in_size: u32,
        out_size: u32,
        start: u32,
        count: u32,
        filter_support: f64,
        kernel: fn(f64) -> f64,
    ) -> Self {
        let scale = f64::from(in_size) / f64::from(out_size);
        let filterscale = scale.max(1.0);
        let support = filter_support * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(count as usize);
        let mut fixed = vec![0i32; count as usize * ksize];
        let ss = 1.0 / filterscale;
        let mut k = vec![0f64; ksize];
        for (slot_index, xx) in (start as usize..(start + count) as usize).enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) truncation; values here are >= 0 after the clamp
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size)) as usize;
            let n = xmax.saturating_sub(xmin);
            let mut ww = 0.0;
            for (x, slot) in k.iter_mut().enumerate().take(n) {
                let w = kernel((x as f64 + xmin as f64 - center + 0.5) * ss);
                *slot = w;
                ww += w;
            }
            for x in 0..n {
                let w = if ww != 0.0 { k[x] / ww } else { k[x] };
                let v = w * f64::from(1u32 << PRECISION_BITS);
                fixed[slot_index * ksize + x] = if w < 0.0 {
                    (-0.5 + v) as i32
                } else {
                    (0.5 + v) as i32
                };
            }
            bounds.push((xmin, n));
        }
        Self {
            ksize,
            bounds,
            fixed,
        }
    }
}

/// Each output pixel copies one source pixel, as Pillow's affine scale
/// picks it: a region is the same crop of the same whole by construction.
fn nearest(picture: &RgbImage, full: (u32, u32), region: (u32, u32, u32, u32)) -> RgbImage {
    let (left, top, width, height) = region;
    let (in_w, in_h) = picture.dimensions();
    let columns = nearest_sources(in_w, full.0);
    let rows = nearest_sources(in_h, full.1);
    let columns = &columns[left as usize..][..width as usize];
    let rows = &rows[top as usize..][..height as usize];
    let stride = in_w as usize * 3;
    let src = picture.as_raw();
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for &y in rows {
        let row = &src[y * stride..][..stride];
        for &x in columns {
            out.extend_from_slice(&row[x * 3..][..3]);
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer size matches")
}

/// The source index of each of `target` columns (or rows): s/2, then the
/// scale s added one at a time, as Pillow's `ImagingScaleAffine` does. The
/// product s/2 + s·x lands one pixel away at some sizes (640, 1024 or 1920
/// wide to 224, among others), as `fast_image_resize` 5 did for columns.
fn nearest_sources(source: u32, target: u32) -> Vec<usize> {
    let scale = f64::from(source) / f64::from(target);
    let last = source.saturating_sub(1) as usize;
    let mut at = scale * 0.5;
    (0..target)
        .map(|_| {
            let index = (at as usize).min(last);
            at += scale;
            index
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn solid_colours_stay_solid_with_every_filter() {
        let pic = RgbImage::from_pixel(37, 23, Rgb([200, 10, 99]));
        for f in [
            Filter::Nearest,
            Filter::Bilinear,
            Filter::Bicubic,
            Filter::Lanczos3,
        ] {
            for (w, h) in [(10, 10), (80, 50), (37, 5), (3, 23)] {
                let out = resize_rgb(&pic, w, h, f);
                assert_eq!(out.dimensions(), (w, h));
                assert!(
                    out.pixels().all(|p| *p == Rgb([200, 10, 99])),
                    "{f:?} {w}x{h}"
                );
            }
        }
    }

    #[test]
    fn a_region_equals_the_crop_of_the_whole() {
        let pic = RgbImage::from_fn(53, 41, |x, y| {
            Rgb([(x * 7 + y) as u8, (y * 11) as u8, (x * y) as u8])
        });
        for f in [
            Filter::Bilinear,
            Filter::Bicubic,
            Filter::Lanczos3,
            Filter::Nearest,
        ] {
            for (full, region) in [
                ((80, 60), (10, 7, 50, 40)),
                ((30, 41), (3, 0, 20, 41)),
                ((53, 20), (0, 5, 53, 10)),
            ] {
                let whole = resize_rgb(&pic, full.0, full.1, f);
                let crop =
                    image::imageops::crop_imm(&whole, region.0, region.1, region.2, region.3)
                        .to_image();
                assert_eq!(
                    resize_rgb_region(&pic, full, region, f),
                    crop,
                    "{f:?} {full:?} {region:?}"
                );
            }
        }
    }

    /// The pixels Pillow 13 picks (`Image.resize(size, Image.NEAREST)`, the
    /// Keras preset's resize) where a product of the scale picks others:
    /// column 16 of 224 → 33 is source 111, not 112.
    #[test]
    fn nearest_picks_the_pixels_pillow_picks() {
        let pillow_224_to_33: [u8; 33] = [
            3, 10, 16, 23, 30, 37, 44, 50, 57, 64, 71, 78, 84, 91, 98, 105, 111, 118, 125, 132,
            139, 145, 152, 159, 166, 173, 179, 186, 193, 200, 207, 213, 220,
        ];
        let wide = RgbImage::from_fn(224, 1, |x, _| Rgb([x as u8, 0, 0]));
        let out = resize_rgb(&wide, 33, 1, Filter::Nearest);
        assert_eq!(
            out.pixels().map(|p| p[0]).collect::<Vec<_>>(),
            pillow_224_to_33
        );
        let tall = RgbImage::from_fn(1, 224, |_, y| Rgb([0, y as u8, 0]));
        let out = resize_rgb(&tall, 1, 33, Filter::Nearest);
        assert_eq!(
            out.pixels().map(|p| p[1]).collect::<Vec<_>>(),
            pillow_224_to_33
        );
        let two = RgbImage::from_fn(2, 1, |x, _| Rgb([x as u8, 0, 0]));
        let out = resize_rgb(&two, 7, 1, Filter::Nearest);
        assert_eq!(
            out.pixels().map(|p| p[0]).collect::<Vec<_>>(),
            [0, 0, 0, 0, 1, 1, 1]
        );
    }

    /// Values printed by Pillow 12 for the same inputs (`Image.resize`).
    #[test]
    fn matches_pillow_on_small_cases() {
        let pic = RgbImage::from_fn(4, 1, |x, _| {
            let v = [0u8, 100, 200, 50][x as usize];
            Rgb([v, v, v])
        });
        let out = resize_rgb(&pic, 2, 1, Filter::Bilinear);
        assert_eq!(out.as_raw(), &vec![71, 71, 71, 121, 121, 121]);

        let pic = RgbImage::from_fn(5, 3, |x, y| {
            let i = y * 5 + x;
            Rgb([
                (i * 13 % 256) as u8,
                (i * 29 % 256) as u8,
                (i * 51 % 256) as u8,
            ])
        });
        let out = resize_rgb(&pic, 3, 2, Filter::Bilinear);
        let want: Vec<u8> = [
            [30, 66, 76],
            [50, 112, 102],
            [70, 103, 182],
            [112, 88, 166],
            [132, 134, 100],
            [152, 125, 180],
        ]
        .concat();
        assert_eq!(out.as_raw(), &want);
        let out = resize_rgb(&pic, 8, 7, Filter::Bicubic);
        let want: Vec<u8> = [
            [0, 0, 0],
            [0, 0, 3],
            [8, 17, 55],
            [16, 35, 87],
            [24, 52, 118],
            [32, 70, 150],
        ]
        .concat();
        assert_eq!(&out.as_raw()[..18], &want[..]);
    }
}
