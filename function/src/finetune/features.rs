//! Running the frozen base once per picture up to the feature tensor.

use std::path::PathBuf;

pub(crate) use super::view::View;

use super::probe::Probe;
use super::progress::{Event, Progress};
use crate::decode::DecodeLimits;
use crate::files::decode_chunks;
use crate::model::error::{inference_err, ModelError};

/// Features of the pictures that decoded; the others are reported, not fatal.
pub(crate) struct Extracted {
    pub(crate) features: Vec<Vec<f32>>,
    /// Index into the input list of each feature row.
    pub(crate) kept: Vec<usize>,
    /// Files skipped, with why.
    pub(crate) skipped: Vec<(PathBuf, String)>,
    /// With a prior: per kept picture, each new class's score from the
    /// base's logits (log-sum-exp over its group of base classes); see
    /// [`Extracted::set_prior`].
    pub(crate) prior: Option<Vec<Vec<f32>>>,
    /// Per kept picture, the base's logits (ImageNet bases).
    pub(crate) logits: Option<Vec<Vec<f32>>>,
}

impl Extracted {
    /// Each picture's prior: per group of base classes, its score.
    pub(crate) fn set_prior(&mut self, groups: Option<&[Vec<i64>]>) {
        self.prior = groups.zip(self.logits.as_ref()).map(|(groups, logits)| {
            logits
                .iter()
                .map(|row| groups.iter().map(|g| group_score(row, g)).collect())
                .collect()
        });
    }

    /// Each picture's evidence for a group of base classes: the base's
    /// probability that the picture is one of them.
    pub(crate) fn evidence(&self, domain: &[i64]) -> Option<Vec<f32>> {
        let logits = self.logits.as_ref()?;
        Some(logits.iter().map(|row| evidence(row, domain)).collect())
    }
}

/// The base's probability (softmax of `row`) summed over `group`.
pub(crate) fn evidence(row: &[f32], group: &[i64]) -> f32 {
    (group_score(row, group) - log_sum_exp(row)).exp()
}

/// `log Σ exp(v)`, stable.
fn log_sum_exp(values: &[f32]) -> f32 {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + values.iter().map(|v| (v - max).exp()).sum::<f32>().ln()
}

/// `log Σ exp(row[i])` over the group: the group's score, stable.
pub(crate) fn group_score(row: &[f32], group: &[i64]) -> f32 {
    let values: Vec<f32> = group
        .iter()
        .filter_map(|&i| row.get(i as usize).copied())
        .collect();
    log_sum_exp(&values)
}

/// Pictures decoded and run at a time when the graph does not fix a batch size.
const CHUNK: usize = 16;

/// Runs the probe (the base with the feature tensor as an extra output) on
/// `files`; also reads the base's `logits` tensor when it has one.
pub(crate) fn extract(
    probe: &Probe,
    files: &[PathBuf],
    view: View,
    what: &str,
    progress: &dyn Progress,
) -> Result<Extracted, ModelError> {
    let (runner, head, logits) = (&probe.runner, &probe.head, probe.logits.as_deref());
    progress.event(Event::Extracting {
        set: what,
        view: view.describe(),
        total: files.len(),
    });
    let mut out = Extracted {
        features: Vec::new(),
        kept: Vec::new(),
        skipped: Vec::new(),
        prior: None,
        logits: logits.map(|_| Vec::new()),
    };
    let chunk = runner.fixed_batch().unwrap_or(CHUNK);
    decode_chunks(files, chunk, DecodeLimits::default(), |decoded| {
        let done = decoded.pictures.len() + decoded.skipped.len();
        for (i, e) in decoded.skipped {
            let error = e.to_string();
            progress.event(Event::Skipped {
                file: &files[i],
                error: &error,
            });
            out.skipped.push((files[i].clone(), error));
        }
        let (kept, mut pictures): (Vec<usize>, Vec<image::RgbImage>) =
            decoded.pictures.into_iter().unzip();
        for p in pictures.iter_mut() {
            view.apply(p);
        }
        if !pictures.is_empty() {
            let (rows, _) = runner.run(&pictures, |outputs, n| {
                let value = &outputs[head.feature.as_str()];
                let flat: Vec<f32> = match head.quant {
                    Some((scale, zp)) => {
                        let (_, q) = value.try_extract_tensor::<u8>().map_err(inference_err)?;
                        q.iter()
                            .map(|&v| (i32::from(v) - zp) as f32 * scale)
                            .collect()
                    }
                    None => value
                        .try_extract_tensor::<f32>()
                        .map_err(inference_err)?
                        .1
                        .to_vec(),
                };
                if flat.len() != n * head.feature_dim {
                    return Err(ModelError::Inference(format!(
                        "feature tensor has {} values for {n} pictures of {}",
                        flat.len(),
                        head.feature_dim
                    )));
                }
                let features = flat.chunks_exact(head.feature_dim).map(<[f32]>::to_vec);
                let base: Vec<Option<Vec<f32>>> = match logits {
                    Some(name) => {
                        let (_, values) = outputs[name]
                            .try_extract_tensor::<f32>()
                            .map_err(inference_err)?;
                        crate::model::session::rows(values, n)?
                            .into_iter()
                            .map(Some)
                            .collect()
                    }
                    None => vec![None; n],
                };
                Ok(features.zip(base).collect::<Vec<_>>())
            })?;
            for (features, base) in rows {
                out.features.push(features);
                if let (Some(all), Some(row)) = (out.logits.as_mut(), base) {
                    all.push(row);
                }
            }
            out.kept.extend(kept);
        }
        progress.event(Event::Extracted(done));
        Ok::<(), ModelError>(())
    })?;
    progress.event(Event::ExtractDone);
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
}
