//! Running the frozen base once per picture up to the feature tensor.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use super::graph::HeadInfo;
use crate::decode::DecodeLimits;
use crate::files::decode_chunks;
use crate::model::session::Runner;

/// Features of the pictures that decoded; the others are reported, not fatal.
pub struct Extracted {
    pub features: Vec<Vec<f32>>,
    /// Index into the input list of each feature row.
    pub kept: Vec<usize>,
    /// Files skipped, with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// With a prior: per kept picture, each new class's score from the
    /// base's logits (log-sum-exp over its group of base classes); see
    /// [`Extracted::set_prior`].
    pub prior: Option<Vec<Vec<f32>>>,
    /// Per kept picture, the base's logits (ImageNet bases).
    pub logits: Option<Vec<Vec<f32>>>,
}

impl Extracted {
    /// Each picture's prior: per group of base classes, its score.
    pub fn set_prior(&mut self, groups: Option<&[Vec<i64>]>) {
        self.prior = groups.zip(self.logits.as_ref()).map(|(groups, logits)| {
            logits
                .iter()
                .map(|row| groups.iter().map(|g| group_score(row, g)).collect())
                .collect()
        });
    }

    /// Each picture's evidence for a group of base classes: the base's
    /// probability that the picture is one of them.
    pub fn evidence(&self, domain: &[i64]) -> Option<Vec<f32>> {
        let logits = self.logits.as_ref()?;
        Some(logits.iter().map(|row| evidence(row, domain)).collect())
    }
}

/// The base's probability (softmax of `row`) summed over `group`.
pub fn evidence(row: &[f32], group: &[i64]) -> f32 {
    (group_score(row, group) - log_sum_exp(row)).exp()
}

/// `log Σ exp(v)`, stable.
fn log_sum_exp(values: &[f32]) -> f32 {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + values.iter().map(|v| (v - max).exp()).sum::<f32>().ln()
}

/// `log Σ exp(row[i])` over the group: the group's score, stable.
pub fn group_score(row: &[f32], group: &[i64]) -> f32 {
    let values: Vec<f32> = group
        .iter()
        .filter_map(|&i| row.get(i as usize).copied())
        .collect();
    log_sum_exp(&values)
}

/// A variant of each picture run through the base: augmentation on the
/// cached features, each copy one more forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Original,
    /// Left-right mirror image.
    Mirror,
    /// A corner crop (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)
    /// keeping [`CROP_SIDE`] of each side, as a zoom-and-shift augmentation.
    Crop(u8),
}

/// Share of each side a crop keeps (Keras's `zoom_range=0.2`, at its corners).
pub const CROP_SIDE: f64 = 0.8;

impl View {
    /// The four corner crops.
    pub const CROPS: [View; 4] = [View::Crop(0), View::Crop(1), View::Crop(2), View::Crop(3)];

    pub fn apply(self, picture: &mut image::RgbImage) {
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

    pub fn describe(self) -> &'static str {
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

/// Pictures decoded and run at a time when the graph does not fix a batch size.
const CHUNK: usize = 16;

/// Runs the probe (the base with the feature tensor as an extra output) on
/// `files`; also reads the base's `logits` tensor when given.
pub fn extract(
    runner: &Runner,
    head: &HeadInfo,
    logits: Option<&str>,
    files: &[PathBuf],
    view: View,
    what: &str,
) -> Result<Extracted, String> {
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("features ({what}, {})", view.describe()));
    let mut out = Extracted {
        features: Vec::new(),
        kept: Vec::new(),
        skipped: Vec::new(),
        prior: None,
        logits: logits.map(|_| Vec::new()),
    };
    let chunk = runner.fixed_batch().unwrap_or(CHUNK);
    decode_chunks(files, chunk, DecodeLimits::default(), |decoded| {
        for (i, e) in decoded.skipped {
            bar.suspend(|| tracing::warn!(file = %files[i].display(), error = %e, "skipping a file that is not a usable picture"));
            out.skipped.push((files[i].clone(), e));
        }
        let (kept, mut pictures): (Vec<usize>, Vec<image::RgbImage>) =
            decoded.pictures.into_iter().unzip();
        for p in pictures.iter_mut() {
            view.apply(p);
        }
        if !pictures.is_empty() {
            let (rows, _) = runner
                .run(&pictures, |outputs, n| {
                    let value = &outputs[head.feature.as_str()];
                    let flat: Vec<f32> = match head.quant {
                        Some((scale, zp)) => {
                            let (_, q) = value
                                .try_extract_tensor::<u8>()
                                .map_err(|e| e.to_string())?;
                            q.iter()
                                .map(|&v| (i32::from(v) - zp) as f32 * scale)
                                .collect()
                        }
                        None => value
                            .try_extract_tensor::<f32>()
                            .map_err(|e| e.to_string())?
                            .1
                            .to_vec(),
                    };
                    if flat.len() != n * head.feature_dim {
                        return Err(format!(
                            "feature tensor has {} values for {n} pictures of {}",
                            flat.len(),
                            head.feature_dim
                        ));
                    }
                    let features = flat.chunks_exact(head.feature_dim).map(<[f32]>::to_vec);
                    let base: Vec<Option<Vec<f32>>> = match logits {
                        Some(name) => {
                            let (_, values) = outputs[name]
                                .try_extract_tensor::<f32>()
                                .map_err(|e| e.to_string())?;
                            crate::model::session::rows(values, n)?
                                .into_iter()
                                .map(Some)
                                .collect()
                        }
                        None => vec![None; n],
                    };
                    Ok(features.zip(base).collect::<Vec<_>>())
                })
                .map_err(|e| e.to_string())?;
            for (features, base) in rows {
                out.features.push(features);
                if let (Some(all), Some(row)) = (out.logits.as_mut(), base) {
                    all.push(row);
                }
            }
            out.kept.extend(kept);
        }
        bar.inc(chunk as u64);
        Ok::<(), String>(())
    })?;
    bar.finish_and_clear();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_is_the_softmax_mass_of_the_group() {
        let row = [1.0f32, 2.0, 3.0, 0.5];
        let e: Vec<f32> = row.iter().map(|v| v.exp()).collect();
        let total: f32 = e.iter().sum();
        assert!((evidence(&row, &[1, 2]) - (e[1] + e[2]) / total).abs() < 1e-6);
        assert!((evidence(&row, &[0, 1, 2, 3]) - 1.0).abs() < 1e-6);
    }

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
