//! The download's progress bar on a terminal.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting bytes of `total` (when known). indicatif draws to stderr
/// and stays silent when that is not a terminal (Lambda, CI), so no flag is
/// needed.
pub(crate) fn bar(total: Option<u64>, what: &str) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}
