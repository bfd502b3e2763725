//! `catdog predict`: the answers printed a line each (or as JSON), and with
//! `--explain DIR` each picture's overlay written into DIR.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use catdog::host::commands;
use catdog::settings::Settings;

/// `catdog predict`: prints one answer per file; unreadable files are reported and skipped.
/// One answer line: JSON (the answer with its `file`) or `file<TAB>label<TAB>confidence`.
fn print_answer(
    json: bool,
    name: &str,
    mut answer: serde_json::Value,
    label: &str,
    confidence: f32,
) {
    if json {
        answer["file"] = serde_json::Value::String(name.to_string());
        println!("{answer}");
    } else {
        println!("{name}\t{label}\t{confidence:.4}");
    }
}

pub(crate) async fn run(
    settings: &Settings,
    json: bool,
    write_results: bool,
    explain: Option<&Path>,
    paths: &[std::path::PathBuf],
) -> Result<ExitCode> {
    let (s3, files): (Vec<_>, Vec<_>) = paths
        .iter()
        .partition(|p| p.to_str().is_some_and(|s| s.starts_with("s3://")));
    if explain.is_some() && !s3.is_empty() {
        anyhow::bail!(
            "--explain draws pictures from files and folders; S3 objects are not explained \
             (copy them here first, or ask the HTTP API with explain=true)"
        );
    }
    let mut overlays = Overlays::new(explain)?;
    let mut failures = 0usize;
    if !files.is_empty() {
        let files: Vec<_> = files.into_iter().cloned().collect();
        let asked = if explain.is_some() {
            catdog::files::Explain::FILES
        } else {
            catdog::files::Explain::No
        };
        for a in commands::predict(settings, &files, asked).await? {
            let name = a.path.display().to_string();
            match a.outcome {
                Err(e) => {
                    failures += 1;
                    eprintln!("catdog: {name}: {e}");
                }
                Ok((_, mut p)) => {
                    let written = overlays.write(&a.path, p.explanation.as_mut())?;
                    let mut v = serde_json::to_value(&p)?;
                    if let (Some(path), Some(e)) = (&written, v.get_mut("explanation")) {
                        e["overlay"] = path.display().to_string().into();
                    }
                    print_answer(json, &name, v, &p.label, p.confidence);
                    if let (Some(path), Some(e), false) = (&written, &p.explanation, json) {
                        println!(
                            "  why: {} ({}): {}",
                            e.label,
                            e.method.as_str(),
                            path.display()
                        );
                    }
                }
            }
        }
    }
    if !s3.is_empty() {
        let uris: Vec<String> = s3.iter().map(|p| p.display().to_string()).collect();
        for outcome in commands::predict_objects(settings, &uris, write_results).await? {
            let name = outcome.object().to_string();
            match outcome {
                catdog::objects::Outcome::Classified { record, .. } => {
                    if let Some((label, confidence, v)) = record.answer() {
                        print_answer(json, &name, v, label, confidence);
                    }
                }
                catdog::objects::Outcome::Failed { failure, .. } => {
                    failures += 1;
                    eprintln!("catdog: {name}: {failure}");
                }
                catdog::objects::Outcome::Ignored { .. } => {}
            }
        }
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Where `predict --explain DIR` writes each picture's overlay:
/// `DIR/<name>.explain.png`, numbered when two pictures share a name.
struct Overlays<'a> {
    dir: Option<&'a Path>,
    taken: std::collections::HashSet<std::path::PathBuf>,
}

impl<'a> Overlays<'a> {
    fn new(dir: Option<&'a Path>) -> Result<Self> {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot make the folder {}", dir.display()))?;
        }
        Ok(Self {
            dir,
            taken: Default::default(),
        })
    }

    /// Writes the explanation's overlay (taking it out of the answer, whose
    /// line then names the file instead); returns where.
    fn write(
        &mut self,
        picture: &Path,
        explanation: Option<&mut catdog::model::explain::Explanation>,
    ) -> Result<Option<std::path::PathBuf>> {
        let (Some(dir), Some(e)) = (self.dir, explanation) else {
            return Ok(None);
        };
        let Some(png) = e.overlay_png.take() else {
            return Ok(None);
        };
        let stem = picture
            .file_stem()
            .map_or_else(|| "picture".into(), |s| s.to_string_lossy().into_owned());
        let mut path = dir.join(format!("{stem}.explain.png"));
        let mut n = 2;
        while !self.taken.insert(path.clone()) {
            path = dir.join(format!("{stem}-{n}.explain.png"));
            n += 1;
        }
        std::fs::write(&path, &png.0)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Some(path))
    }
}
