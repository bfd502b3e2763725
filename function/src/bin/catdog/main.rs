//! The `catdog` binary: parses the command line, hands it to a host of the
//! library (the Lambda bootstrap when `AWS_LAMBDA_RUNTIME_API` is set,
//! `serve`, `predict`, `eval`, `finetune`, `upload`) and prints the outcome.

// The binary is where output is printed: the library returns what happened.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod finetune;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use catdog::host::{commands, lambda, logging, pretraffic, serve};
use catdog::messages::with_causes;
use catdog::settings::{Cli, Command, Settings};

fn main() -> ExitCode {
    catdog::memory::return_freed_memory();
    let cli = Cli::from_process();
    let settings = cli.settings;
    let on_lambda = settings.on_lambda();
    let command = match cli.command {
        Some(c) => c,
        None if on_lambda => settings.lambda_command(),
        None => {
            eprintln!("catdog: say what to do: `catdog serve`, `catdog predict FILE…` (see `catdog --help`)");
            return ExitCode::from(2);
        }
    };
    if matches!(command, Command::Lambda) {
        settings.prepare_lambda_http();
    }
    let quiet = matches!(
        command,
        Command::Predict { .. }
            | Command::Finetune(_)
            | Command::Eval { .. }
            | Command::Upload { .. }
    );
    if quiet {
        // Printing commands end quietly when their reader does (`| head`),
        // as other command-line tools do; servers keep Rust's default.
        #[cfg(unix)]
        // SAFETY: restores the default action of one signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    logging::init(&settings, if quiet { "warn" } else { "info" });
    let outcome = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(run(&settings, command)));
    match outcome {
        Ok(code) => code,
        Err(e) if on_lambda => {
            tracing::error!(error = with_causes(e.as_ref()), "fatal");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("catdog: {}", with_causes(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: &Settings, command: Command) -> Result<ExitCode> {
    match command {
        Command::Lambda => lambda::run(settings).await?,
        Command::Pretraffic => pretraffic::run(settings).await?,
        Command::Serve => serve::run(settings, |a| eprintln!("catdog: {a}")).await?,
        Command::Predict {
            json,
            write_results,
            explain,
            paths,
        } => return predict(settings, json, write_results, explain.as_deref(), &paths).await,
        Command::Upload { to, checks } => {
            let up = commands::upload(settings, &to, &checks).await?;
            up.report().iter().for_each(|l| eprintln!("upload: {l}"));
            let (uri, sha) = (&up.model.uri, &up.model.sha256);
            println!("MODEL_URI={uri}\nMODEL_SHA256={sha}");
        }
        Command::Eval {
            json,
            png,
            neither,
            dir,
        } => {
            let report = commands::eval(settings, &dir, neither.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.table());
            }
            match catdog::plot::confusion_matrix(
                &report.labels,
                &report.predicted_labels,
                &report.confusion,
                &png,
            ) {
                Ok(()) => eprintln!("eval: confusion matrix written to {}", png.display()),
                Err(e) => eprintln!("eval: could not write {}: {e}", png.display()),
            }
        }
        Command::Finetune(args) => return finetune::run(settings, &args).await,
    }
    Ok(ExitCode::SUCCESS)
}

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

async fn predict(
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
                            method_name(e),
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

fn method_name(e: &catdog::model::explain::Explanation) -> String {
    serde_json::to_value(e.method)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
