//! The real `catdog` bootstrap under cargo-lambda's Lambda emulator (PyPI
//! `cargo-lambda`; `cargo lambda watch --only-lambda-apis`), whose Runtime API
//! address carries its own scheme and base path (`http://127.0.0.1:PORT/.rt`),
//! unlike Lambda's `host:port`. An init failure must reach the emulator, so
//! the waiting invoke fails at once instead of hanging; a good model answers
//! Function URL requests.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use catdog_tests::*;

/// cargo-lambda from the test tools' virtualenv (`make test` installs it).
fn cargo_lambda() -> PathBuf {
    let bin = python()
        .parent()
        .map(|d| d.join("cargo-lambda"))
        .filter(|p| p.exists());
    bin.unwrap_or_else(|| PathBuf::from("cargo-lambda"))
}

/// The emulator on a free loopback port, serving only the Lambda APIs.
async fn emulator() -> (Proc, u16) {
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

/// The bootstrap, as the emulator tells a function to run.
fn bootstrap(port: u16, model: &str) -> Proc {
    let child = Command::new(catdog_bin())
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "4096")
        .env("MODEL_URI", model)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc {
        child,
        name: "catdog bootstrap".into(),
    }
}

async fn invoke(port: u16, path: &str, body: Option<Vec<u8>>) -> (u16, String) {
    let url = format!("http://127.0.0.1:{port}/lambda-url/_{path}");
    let client = reqwest::Client::new();
    let req = match body {
        Some(b) => client.post(url).header("content-type", "image/png").body(b),
        None => client.get(url),
    };
    let res = req.timeout(Duration::from_secs(60)).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_init_failure_ends_the_invoke_at_once() {
    let (_emulator, port) = emulator().await;
    // The invoke comes first, as on Lambda (init runs for the first request).
    let started = Instant::now();
    let call = tokio::spawn(invoke(
        port,
        "/predict",
        Some(std::fs::read(fixture("images/red.png")).unwrap()),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut boot = bootstrap(port, "/nowhere/missing.onnx");
    let (status, _) = call.await.unwrap();
    // Reported: the emulator fails the invoke within seconds. (Unreported,
    // it would wait for a runtime that never asks for the event.)
    assert_eq!(status, 500);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let exit = boot.child.wait().unwrap();
    assert!(!exit.success(), "the bootstrap stops after a failed init");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_model_answers_function_url_requests() {
    let (_emulator, port) = emulator().await;
    let _boot = bootstrap(port, fixture("tiny_torch_nchw.onnx").to_str().unwrap());
    let (status, body) = invoke(
        port,
        "/predict",
        Some(std::fs::read(fixture("images/red.png")).unwrap()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["label"], "cat", "{v}");
    assert_eq!(v["model"]["uri"], "tiny_torch_nchw.onnx", "{v}");
    let (status, body) = invoke(port, "/health", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ok\""), "{body}");
}
