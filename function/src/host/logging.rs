//! Logs: `tracing`, one structured line per event, to stderr; JSON on Lambda
//! (CloudWatch), text elsewhere, unless the settings say otherwise.

use crate::settings::Settings;

/// Installs the subscriber; `default_level` applies when no filter is set.
pub fn init(settings: &Settings, default_level: &str) {
    let filter = settings
        .process
        .log_filter
        .as_deref()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default_level));
    let json = match settings.process.log_format.as_deref() {
        Some(f) => f == "json",
        None => settings.on_lambda(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
    // A second host in one process (tests, a notebook re-run) keeps the first subscriber.
    drop(installed);
}
