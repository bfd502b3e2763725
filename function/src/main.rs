//! The `catdog` binary: parses the command line, hands it to a host of the
//! library (the Lambda bootstrap when `AWS_LAMBDA_RUNTIME_API` is set,
//! `serve`, `predict`, `eval`, `finetune`, `upload`) and prints the outcome.

use std::process::ExitCode;

use anyhow::{Context, Result};
use catdog::host::{commands, lambda, logging, serve};
use catdog::messages::with_causes;
use catdog::settings::{Cli, Command, Settings};

fn main() -> ExitCode {
    let cli = Cli::from_process();
    let settings = cli.settings;
    let on_lambda = settings.on_lambda();
    let command = match cli.command {
        Some(c) => c,
        None if on_lambda => Command::Lambda,
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
        Command::Serve => serve::run(settings).await?,
        Command::Predict { json, paths } => return predict(settings, json, &paths).await,
        Command::Upload { to } => {
            let p = commands::upload(settings, &to).await?;
            eprintln!(
                "upload: {} bytes in {} part(s) to {}",
                p.bytes, p.parts, p.uri
            );
            println!("MODEL_URI={}\nMODEL_SHA256={}", p.uri, p.sha256);
        }
        Command::Eval { json, png, dir } => {
            let report = commands::eval(settings, &dir).await?;
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
        Command::Finetune(args) => {
            let summary = match commands::finetune(settings, &args).await {
                Err(commands::CommandError::Finetune(
                    catdog::finetune::FinetuneError::CrossValidated(report),
                )) => {
                    print!("{report}");
                    return Ok(ExitCode::SUCCESS);
                }
                other => other?,
            };
            let last = summary.history.last();
            eprintln!(
                "finetune: wrote {} (labels {:?}, {} training pictures, {} skipped; final loss {:.4}, accuracy {:.1}%)",
                args.out.display(),
                summary.labels,
                summary.train_images,
                summary.skipped.len(),
                last.map_or(f32::NAN, |s| s.loss),
                last.map_or(f32::NAN, |s| s.accuracy * 100.0)
            );
            let png = args.out.with_extension("training.png");
            match catdog::plot::training_curves(&summary.history, &png) {
                Ok(()) => eprintln!("finetune: training curves written to {}", png.display()),
                Err(e) => eprintln!("finetune: could not write {}: {e}", png.display()),
            }
            println!("{}", serde_json::to_string(&summary)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `catdog predict`: prints one answer per file; unreadable files are reported and skipped.
async fn predict(
    settings: &Settings,
    json: bool,
    paths: &[std::path::PathBuf],
) -> Result<ExitCode> {
    let mut failures = 0usize;
    for a in commands::predict(settings, paths).await? {
        match a.outcome {
            Err(e) => {
                failures += 1;
                eprintln!("catdog: {}: {e}", a.path.display());
            }
            Ok((_, p)) if json => {
                let mut v = serde_json::to_value(&p)?;
                v["file"] = serde_json::Value::String(a.path.display().to_string());
                println!("{v}");
            }
            Ok((_, p)) => println!("{}\t{}\t{:.4}", a.path.display(), p.label, p.confidence),
        }
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
