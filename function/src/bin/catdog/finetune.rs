//! `catdog finetune` on a terminal: the library's progress events drawn as
//! bars and lines on stderr, the outcome printed.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use catdog::finetune::{log_skipped, Event, Progress};
use catdog::host::commands::{self, FinetuneOutcome};
use catdog::settings::{FinetuneArgs, Settings};
use indicatif::{ProgressBar, ProgressStyle};

/// Draws fine-tuning's events: one bar at a time (extraction, then
/// training), lines above it.
#[derive(Default)]
struct Terminal {
    bar: Mutex<Option<ProgressBar>>,
}

impl Terminal {
    fn start(&self, total: usize, template: &str, message: String) {
        let bar = ProgressBar::new(total as u64).with_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(message);
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }

    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            f(bar);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish_and_clear();
        }
    }

    /// Writes with the bar out of the way (or alone when there is none).
    fn suspended(&self, write: impl FnOnce()) {
        let guard = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    /// A line above the bar.
    fn line(&self, text: &str) {
        self.suspended(|| eprintln!("{text}"));
    }
}

impl Progress for Terminal {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Extracting { set, view, total } => self.start(
                total,
                "{msg} {bar:40} {pos}/{len} eta {eta}",
                format!("features ({set}, {view})"),
            ),
            Event::Fetching { source, total } => self.start(
                total,
                "{msg} {bar:40} {pos}/{len} eta {eta}",
                format!("mirroring {source}"),
            ),
            Event::Extracted(n) | Event::Fetched(n) => self.with_bar(|b| b.inc(n as u64)),
            Event::Skipped { file, error } => self.suspended(|| log_skipped(file, error)),
            Event::ExtractDone | Event::TrainDone | Event::FetchDone => self.finish(),
            Event::Training { epochs } => self.start(
                epochs,
                "training {bar:40} epoch {pos}/{len} (stops early when validation stops improving)",
                String::new(),
            ),
            Event::Epoch(stats) => {
                self.line(&stats.to_string());
                self.with_bar(|b| b.inc(1));
            }
            Event::Note(note) => self.line(&format!("finetune: {note}")),
        }
    }
}

/// Runs the command: the summary as JSON on stdout, what was written on stderr.
pub(crate) async fn run(settings: &Settings, args: &FinetuneArgs) -> Result<ExitCode> {
    let progress = Arc::new(Terminal::default());
    let tuned = match commands::finetune(settings, args, progress).await? {
        FinetuneOutcome::CrossValidated(report) => {
            print!("{report}");
            return Ok(ExitCode::SUCCESS);
        }
        FinetuneOutcome::Written(tuned) => tuned,
    };
    let summary = &tuned.summary;
    let last = summary.history.last();
    eprintln!(
        "finetune: wrote {} (labels {:?}, {} training pictures, {} skipped; final loss {:.4}, accuracy {:.1}%)",
        tuned.model.display(),
        summary.labels,
        summary.train_images,
        summary.skipped.len(),
        last.map_or(f32::NAN, |s| s.loss),
        last.map_or(f32::NAN, |s| s.accuracy * 100.0)
    );
    match &tuned.curves {
        Ok(png) => eprintln!("finetune: training curves written to {}", png.display()),
        Err(e) => eprintln!("finetune: could not write the training curves: {e}"),
    }
    println!("{}", serde_json::to_string(summary)?);
    Ok(ExitCode::SUCCESS)
}
