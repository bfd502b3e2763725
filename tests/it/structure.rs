//! The shape the architecture promises (README: Architecture), checked on the
//! sources: the binary stays a dispatcher, and the module graph has no cycle
//! (between leaf modules or top-level ones). That only `settings` reads the
//! environment is clippy's to check (clippy.toml: disallowed-methods).

use std::process::Command;

use crate::support::workspace;

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
