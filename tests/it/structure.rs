//! The shape the architecture promises (ARCHITECTURE.md), checked on the
//! sources: the binary stays a dispatcher, and the module graph has no cycle
//! (between leaf modules or top-level ones). That only `settings` reads the
//! environment is clippy's to check (clippy.toml: disallowed-methods).

use std::process::Command;

use crate::support::workspace;

#[test]
fn the_binary_only_parses_dispatches_and_prints() {
    let main =
        std::fs::read_to_string(workspace().join("function/src/bin/catdog/main.rs")).unwrap();
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

#[test]
fn the_module_graph_check_finds_a_forbidden_arrow() {
    // The check itself, on a copy of the sources with one arrow added:
    // objects reaching into the router must fail it.
    let root = std::env::temp_dir().join(format!("catdog-structure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let src = root.join("function/src");
    copy_dir(&workspace().join("function/src"), &src);
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    std::fs::copy(
        workspace().join("scripts/module_graph.py"),
        root.join("scripts/module_graph.py"),
    )
    .unwrap();
    let worker = src.join("objects/worker.rs");
    let code = std::fs::read_to_string(&worker).unwrap();
    std::fs::write(
        &worker,
        format!("use crate::http::state::AppState;\n{code}"),
    )
    .unwrap();
    let out = Command::new("python3")
        .arg(root.join("scripts/module_graph.py"))
        .arg("--check")
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&root);
    assert!(
        !out.status.success() && text.contains("forbidden arrow: objects -> http"),
        "{text}"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn every_build_that_resolves_dependencies_is_locked() {
    // What `make`, `sam build`, the benchmarks and the test command build
    // must be what Cargo.lock names: a build that may resolve anew could
    // ship a dependency no one reviewed.
    let mut unlocked = Vec::new();
    let mut files = vec![workspace().join("Makefile")];
    for dir in ["scripts", "bench"] {
        for entry in std::fs::read_dir(workspace().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "sh") {
                files.push(path);
            }
        }
    }
    let mut builds = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap_or(line).trim_start();
            if code.starts_with('#') {
                continue;
            }
            for command in [
                "cargo build",
                "cargo lambda build",
                "cargo install",
                "cargo run",
            ] {
                if code.contains(command) {
                    builds += 1;
                    if !code.contains("--locked") && !code.contains("--list") {
                        unlocked.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        builds >= 8,
        "found only {builds} builds: is the search looking in the right places?"
    );
    assert!(
        unlocked.is_empty(),
        "builds without --locked:\n{}",
        unlocked.join("\n")
    );
}
