//! The `catdog` binary: parses the command line, hands it to a host of the
//! library (the Lambda bootstrap when `AWS_LAMBDA_RUNTIME_API` is set,
//! `serve`, `predict`, `eval`, `finetune`, `upload`) and prints the outcome.

// The binary is where output is printed: the library returns what happened.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod finetune;
mod predict;

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
        } => return predict::run(settings, json, write_results, explain.as_deref(), &paths).await,
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
