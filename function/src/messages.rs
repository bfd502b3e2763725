//! How errors and paths are put into words for users: one rule each, shared
//! by the binary's error output, the model fetch's messages and the notebook.
//! It imports nothing from the crate, so every layer may use it.

use std::path::Path;

/// The error and its causes, each said once: a cause whose text the message
/// already holds (errors that show their source) is not repeated.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(inner) = cause {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    text
}

/// The last part of a path: how answers, logs and messages name a file,
/// never by the machine's folders.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("shows its source: {0}")]
    struct Showing(#[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(with_causes(&e), "outer: inner");
        let e = Showing(std::io::Error::other("inner"));
        assert_eq!(with_causes(&e), "shows its source: inner");
    }

    #[test]
    fn files_are_named_without_their_folders() {
        assert_eq!(file_name(Path::new("/srv/models/m.onnx")), "m.onnx");
        assert_eq!(file_name(Path::new("/")), "/");
    }
}
