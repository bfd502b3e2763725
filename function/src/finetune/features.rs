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
}

/// Pictures decoded and run at a time when the graph does not fix a batch size.
const CHUNK: usize = 16;

/// Runs the probe (the base with the feature tensor as an extra output) on `files`.
pub fn extract(
    runner: &Runner,
    head: &HeadInfo,
    files: &[PathBuf],
    what: &str,
) -> Result<Extracted, String> {
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("features ({what})"));
    let mut out = Extracted {
        features: Vec::new(),
        kept: Vec::new(),
        skipped: Vec::new(),
    };
    let chunk = runner.fixed_batch().unwrap_or(CHUNK);
    decode_chunks(files, chunk, DecodeLimits::default(), |decoded| {
        for (i, e) in decoded.skipped {
            bar.suspend(|| tracing::warn!(file = %files[i].display(), error = %e, "skipping a file that is not a usable picture"));
            out.skipped.push((files[i].clone(), e));
        }
        let (kept, pictures): (Vec<usize>, Vec<image::RgbImage>) =
            decoded.pictures.into_iter().unzip();
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
                    Ok(flat
                        .chunks_exact(head.feature_dim)
                        .map(<[f32]>::to_vec)
                        .collect())
                })
                .map_err(|e| e.to_string())?;
            out.features.extend(rows);
            out.kept.extend(kept);
        }
        bar.inc(chunk as u64);
        Ok::<(), String>(())
    })?;
    bar.finish_and_clear();
    Ok(out)
}
