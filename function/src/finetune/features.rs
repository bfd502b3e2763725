//! Running the frozen base once per picture up to the feature tensor.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use super::graph::HeadInfo;
use crate::decode::{decode_file, DecodeLimits};
use crate::preprocess::Preprocessor;

/// Features of the pictures that decoded; the others are reported, not fatal.
pub struct Extracted {
    pub features: Vec<Vec<f32>>,
    /// Index into the input list of each feature row.
    pub kept: Vec<usize>,
    /// Files skipped, with why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Runs `model` (the base with the feature tensor as an extra output).
pub fn extract(
    model: &[u8],
    head: &HeadInfo,
    pre: &Preprocessor,
    fixed_batch: Option<usize>,
    files: &[PathBuf],
    what: &str,
) -> Result<Extracted, String> {
    let env = crate::runtime::environment(None).map_err(|e| e.to_string())?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut session = Session::builder(env)
        .and_then(|b| {
            b.with_optimization_level(GraphOptimizationLevel::All)
                .map_err(Into::into)
        })
        .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
        .and_then(|mut b| b.commit_from_memory(model))
        .map_err(|e| e.to_string())?;
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
    let batch = fixed_batch.unwrap_or(16);
    let per = pre.tensor_len();
    for chunk_start in (0..files.len()).step_by(batch) {
        let chunk = &files[chunk_start..(chunk_start + batch).min(files.len())];
        let mut pictures = Vec::new();
        let mut idx = Vec::new();
        for (k, f) in chunk.iter().enumerate() {
            match decode_file(f, DecodeLimits::default()) {
                Ok(p) => {
                    pictures.push(p);
                    idx.push(chunk_start + k);
                }
                Err(e) => {
                    bar.suspend(|| tracing::warn!(file = %f.display(), error = %e, "skipping a file that is not a usable picture"));
                    out.skipped.push((f.clone(), e));
                }
            }
        }
        let groups: Vec<&[image::RgbImage]> = match fixed_batch {
            Some(n) => pictures.chunks(n).collect(),
            None if pictures.is_empty() => vec![],
            None => vec![&pictures[..]],
        };
        for group in groups {
            let mut data = vec![0f32; per * group.len()];
            for (p, slot) in group.iter().zip(data.chunks_exact_mut(per)) {
                pre.write_tensor(p, slot);
            }
            let shape = pre.batch_shape(group.len()).map(|d| d as i64);
            let tensor =
                TensorRef::from_array_view((shape, &data[..])).map_err(|e| e.to_string())?;
            let outputs = session
                .run(ort::inputs![tensor])
                .map_err(|e| e.to_string())?;
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
            if flat.len() != group.len() * head.feature_dim {
                return Err(format!(
                    "feature tensor has {} values for {} pictures of {}",
                    flat.len(),
                    group.len(),
                    head.feature_dim
                ));
            }
            out.features
                .extend(flat.chunks_exact(head.feature_dim).map(<[f32]>::to_vec));
        }
        out.kept.extend(idx);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}
