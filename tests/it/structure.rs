//! The shape the architecture promises (README: Architecture), checked on the
//! sources: settings are read in one place, the binary stays a dispatcher,
//! and the module graph has no cycle.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::workspace;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_the_settings_module_reads_the_environment() {
    let src = workspace().join("function/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "sources not found in {}", src.display());
    let readers: Vec<String> = files
        .iter()
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("env::var"))
        .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
        .collect();
    assert_eq!(
        readers,
        ["settings.rs"],
        "environment read outside the settings module"
    );
}

#[test]
fn the_binary_only_parses_dispatches_and_prints() {
    let main = std::fs::read_to_string(workspace().join("function/src/main.rs")).unwrap();
    let lines = main.lines().count();
    assert!(lines <= 200, "main.rs has {lines} lines");
    for host_work in [
        "Router",
        "AppState",
        "load_classifier",
        "TcpListener",
        "lambda_http::run",
    ] {
        assert!(
            !main.contains(host_work),
            "main.rs does a host's work: {host_work}"
        );
    }
}

#[test]
fn no_two_modules_import_each_other() {
    let out = Command::new("python3")
        .arg(workspace().join("scripts/module_graph.py"))
        .arg("--check")
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("no cycles among"),
        "{text}"
    );
}
