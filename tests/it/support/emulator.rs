//! cargo-lambda's Lambda emulator (PyPI `cargo-lambda`; `cargo lambda watch
//! --only-lambda-apis`), for running a real `bootstrap` as Lambda would: the
//! emulator serves the Runtime API and the invoke APIs on one loopback port.
//!
//! Shared by `tests/it/lambda_emulator.rs` (the debug binary) and
//! `tests/it/deploy.rs` (what `sam build` packaged).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, python, workspace, Proc};

/// cargo-lambda from the test tools' virtualenv (`make test` installs it),
/// else whichever is on PATH.
pub fn cargo_lambda() -> PathBuf {
    let bin = python()
        .parent()
        .map(|d| d.join("cargo-lambda"))
        .filter(|p| p.exists());
    bin.unwrap_or_else(|| PathBuf::from("cargo-lambda"))
}

/// The emulator on a free loopback port, serving only the Lambda APIs (no
/// build, no watching); waits until it listens.
pub async fn start() -> (Proc, u16) {
    let port = free_port();
    let child = Command::new(cargo_lambda())
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ])
        .current_dir(workspace())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cargo-lambda (make test installs it with the Python test tools)");
    let proc = Proc {
        child,
        name: "cargo lambda watch".into(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "cargo-lambda did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (proc, port)
}

/// The variables Lambda gives a function's runtime, pointing at the emulator
/// on `port` (its Runtime API address carries a scheme and a base path,
/// unlike Lambda's `host:port`); the function is named `_`.
pub fn runtime_env(port: u16) -> Vec<(String, String)> {
    [
        (
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        ),
        ("AWS_LAMBDA_FUNCTION_NAME", "_".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "1".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "4096".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
