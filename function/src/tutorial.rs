//! The tutorial's whole path, as the notebook runs it: fine-tune a model on
//! a photo folder (`catdog finetune`, same flags and defaults), score it
//! (`catdog eval`), publish it (`catdog upload`). Each step is the command's
//! own code, called without a shell; the notebook shows what they write.

// The notebook's cells show what a step prints (evcxr): printing is how
// this host reports, as the binary's is for the command line. Progress goes
// to stderr, as the command's does.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::eval::{EvalError, EvalReport};
use crate::finetune::{Event, Progress};
use crate::host::commands::{self, CommandError, FinetuneOutcome, Finetuned};
use crate::model::publish;
use crate::model::Classifier;
use crate::notebook::shared_data;
use crate::settings::{Cli, Command, Settings};

/// Why a step of the tutorial could not run.
#[derive(Debug, thiserror::Error)]
pub enum TutorialError {
    #[error("no photos to fine-tune on (looked for {0}): set CATDOG_FINETUNE to `--data DIR --base MODEL …`")]
    NoData(String),
    #[error("CATDOG_FINETUNE: {0}")]
    Flags(String),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(
        "CATDOG_FINETUNE asks for cross-validation (--cv), which writes no model to go on with"
    )]
    CrossValidated,
}

/// Fine-tuning's progress as cell output on stderr, as the command writes
/// it: each epoch and note a line (a cell shows no progress bar).
struct CellLines;

impl Progress for CellLines {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Epoch(stats) => eprintln!("{stats}"),
            Event::Skipped { file, error } => crate::finetune::log_skipped(file, error),
            Event::Note(note) => eprintln!("finetune: {note}"),
            _ => {}
        }
    }
}

/// Whether `flags` already gives `--name` (as `--name V` or `--name=V`).
fn has_flag(flags: &[String], name: &str) -> bool {
    flags
        .iter()
        .any(|f| f == name || f.starts_with(&format!("{name}=")))
}

/// The `catdog finetune` command line the notebook runs: `CATDOG_FINETUNE`'s
/// flags, plus what they leave out: the shared MobileNetV2 base (torch
/// preprocessing), the shared catsdogs photos, and the output in catdog's
/// cache folder.
pub fn finetune_command(settings: &Settings) -> Result<Vec<String>, TutorialError> {
    let given: Vec<String> = settings
        .notebook
        .finetune
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let data = shared_data(settings).into_iter().find(|d| d.is_dir());
    let mut argv: Vec<String> = vec!["catdog".into(), "finetune".into()];
    let mut default = |name: &str, value: Option<PathBuf>, also: &[&str]| {
        if has_flag(&given, name) {
            return Ok(());
        }
        let value = value.ok_or_else(|| {
            TutorialError::NoData(
                shared_data(settings)
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })?;
        argv.push(name.to_string());
        argv.push(value.display().to_string());
        argv.extend(also.iter().map(|s| s.to_string()));
        Ok::<(), TutorialError>(())
    };
    let preprocessing: &[&str] = if has_flag(&given, "--preprocessing") {
        &[]
    } else {
        &["--preprocessing", "torch"]
    };
    default(
        "--base",
        data.as_ref()
            .map(|d| d.join("models/mobilenetv2-12-int8.onnx")),
        preprocessing,
    )?;
    default("--data", data.as_ref().map(|d| d.join("catsdogs")), &[])?;
    default(
        "--out",
        Some(settings.cache_dir().join("notebook/catdog-finetuned.onnx")),
        &[],
    )?;
    argv.extend(given);
    Ok(argv)
}

/// Runs `catdog finetune` as [`finetune_command`] says, printing its
/// progress (each epoch) as the command does; blocking.
pub fn finetune(settings: &Settings) -> Result<Finetuned, TutorialError> {
    run_finetune(finetune_command(settings)?)
}

/// Runs the `catdog finetune` command line `argv`, printing it and its
/// progress.
fn run_finetune(argv: Vec<String>) -> Result<Finetuned, TutorialError> {
    println!("$ {}", argv.join(" "));
    let cli = Cli::try_from_args(&argv).map_err(|e| TutorialError::Flags(e.to_string()))?;
    let Some(Command::Finetune(args)) = &cli.command else {
        return Err(TutorialError::Flags("not a finetune command".into()));
    };
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).map_err(TutorialError::Runtime)?;
    }
    let runtime = tokio::runtime::Runtime::new().map_err(TutorialError::Runtime)?;
    match runtime.block_on(commands::finetune(&cli.settings, args, Arc::new(CellLines)))? {
        FinetuneOutcome::Written(tuned) => Ok(*tuned),
        FinetuneOutcome::CrossValidated(_) => Err(TutorialError::CrossValidated),
    }
}

/// Where the notebook's server keeps corrections: `CATDOG_FEEDBACK` when
/// set, else a folder in catdog's cache, which this sets (the notebook
/// says so; its server listens on loopback, and a tunnel needs a guard).
pub fn keep_corrections(settings: &mut Settings) -> String {
    let folder = settings.cache_dir().join("notebook/feedback");
    let destination = settings
        .objects
        .feedback
        .get_or_insert(crate::feedback::Destination::Folder(folder));
    destination.to_string()
}

/// The photos `report` says the model answered wrong, with the label that
/// is right (their folder's), at most `most` of them.
pub fn wrong_answers(report: &EvalReport, most: usize) -> Vec<(PathBuf, String)> {
    report
        .misclassified
        .iter()
        .take(most)
        .map(|m| (PathBuf::from(&m.file), m.label.clone()))
        .collect()
}

/// [`finetune`] again with the corrections stored so far as a second
/// `--data` (the folder `CATDOG_FEEDBACK` names, when it holds any), into
/// a new file beside the first (the server maps the one it serves).
pub fn finetune_with_corrections(settings: &Settings) -> Result<Finetuned, TutorialError> {
    let mut argv = finetune_command(settings)?;
    let out = argv
        .iter()
        .position(|a| a == "--out" || a.starts_with("--out="));
    if let Some(i) = out {
        let (flag, first) = match argv[i].strip_prefix("--out=") {
            Some(path) => (i, PathBuf::from(path)),
            None => (
                i + 1,
                PathBuf::from(argv.get(i + 1).cloned().unwrap_or_default()),
            ),
        };
        let new = unused(&first);
        argv[flag] = if flag == i {
            format!("--out={}", new.display())
        } else {
            new.display().to_string()
        };
    }
    match &settings.objects.feedback {
        Some(crate::feedback::Destination::Folder(dir)) if !dir.is_dir() => {
            println!(
                "no corrections in {} yet: fine-tuning on the photos alone",
                dir.display()
            );
        }
        Some(destination) => argv.extend(["--data".to_string(), destination.to_string()]),
        None => println!("CATDOG_FEEDBACK is not set: fine-tuning on the photos alone"),
    }
    run_finetune(argv)
}

/// `MODEL.corrected.onnx` beside `first`, or `MODEL.corrected-2.onnx`, …:
/// a file not there yet (the server may be serving, mapped, the last one).
fn unused(first: &Path) -> PathBuf {
    (1..)
        .map(|n| match n {
            1 => first.with_extension("corrected.onnx"),
            n => first.with_extension(format!("corrected-{n}.onnx")),
        })
        .find(|p| !p.exists())
        .expect("an unused name")
}

/// The labelled photos to score a model fine-tuned on `data` with: its
/// `test/` folder, and photos of other things from a `neither/` folder
/// beside `data` (the shared data's layout), when there is one.
pub fn test_folders(data: &Path) -> (PathBuf, Option<PathBuf>) {
    let others = data
        .parent()
        .map(|p| p.join("neither"))
        .filter(|p| p.is_dir());
    (data.join("test"), others)
}

/// `catdog eval` of the model being served, with its confusion matrix
/// drawn to `png`; blocking.
pub fn evaluate(
    classifier: &Classifier,
    settings: &Settings,
    dir: &Path,
    others: Option<&Path>,
    png: &Path,
) -> Result<EvalReport, TutorialError> {
    let report = crate::eval::evaluate(classifier, dir, others, &settings.request_limits())?;
    if let Err(e) = crate::plot::confusion_matrix(
        &report.labels,
        &report.predicted_labels,
        &report.confusion,
        png,
    ) {
        eprintln!("could not draw the confusion matrix: {e}");
    }
    Ok(report)
}

/// What publishing did.
#[derive(Debug)]
pub enum Publishing {
    /// The model, and the answers recorded for the checks pictures.
    Published(Box<commands::Uploaded>),
    /// Not published, and why (no destination, no credentials).
    Skipped(String),
}

/// How long the SDK's credential chain may look (a role lookup off AWS
/// waits on the network).
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(5);

/// `catdog upload --checks CHECKS…` of `model` to `CATDOG_UPLOAD_TO`, when
/// that is set and AWS credentials are found; otherwise it says why and
/// skips. The checks are the pictures a deploy's PreTraffic hook asks the
/// new version again. Blocking.
pub fn publish(
    settings: &Settings,
    model: &Path,
    checks: &[PathBuf],
) -> Result<Publishing, TutorialError> {
    let Some(to) = settings.notebook.upload_to.as_deref() else {
        return Ok(Publishing::Skipped(
            "CATDOG_UPLOAD_TO is not set: not publishing (set it to s3://bucket/key)".into(),
        ));
    };
    let runtime = tokio::runtime::Runtime::new().map_err(TutorialError::Runtime)?;
    if let Err(why) = runtime.block_on(publish::credentials(CREDENTIALS_TIMEOUT)) {
        return Ok(Publishing::Skipped(format!(
            "not publishing to {to}: {why}"
        )));
    }
    let mut settings = settings.clone();
    settings.model.uri = Some(model.display().to_string());
    let done = runtime.block_on(commands::upload(&settings, to, checks))?;
    Ok(Publishing::Published(Box::new(done)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_destination_publishing_says_so_and_skips() {
        let mut settings = Settings::from_args(std::iter::empty::<&str>()).unwrap();
        settings.notebook.upload_to = None;
        match publish(&settings, Path::new("model.onnx"), &[]).unwrap() {
            Publishing::Skipped(why) => {
                assert!(why.starts_with("CATDOG_UPLOAD_TO is not set"), "{why}")
            }
            Publishing::Published(p) => panic!("published {p:?}"),
        }
    }

    #[test]
    fn the_notebook_s_flags_win_and_the_defaults_fill_in() {
        let mut settings = Settings::from_args(std::iter::empty::<&str>()).unwrap();
        settings.notebook.finetune = Some("--base /m.onnx --data /photos --epochs 5".into());
        let argv = finetune_command(&settings).unwrap_or_else(|e| panic!("{e}"));
        let has = |pair: [&str; 2]| argv.windows(2).any(|w| w == pair);
        assert!(has(["--data", "/photos"]), "{argv:?}");
        assert!(has(["--base", "/m.onnx"]), "{argv:?}");
        assert_eq!(
            argv.iter().filter(|a| *a == "--base").count(),
            1,
            "{argv:?}"
        );
        assert!(
            !argv.iter().any(|a| a == "--preprocessing"),
            "the base's own: {argv:?}"
        );
        assert!(has(["--epochs", "5"]), "{argv:?}");
        assert!(argv.iter().any(|a| a == "--out"), "{argv:?}");
    }
}
