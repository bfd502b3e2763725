//! The real `catdog` bootstrap under cargo-lambda's Lambda emulator (PyPI
//! `cargo-lambda`; `cargo lambda watch --only-lambda-apis`), whose Runtime API
//! address carries its own scheme and base path (`http://127.0.0.1:PORT/.rt`),
//! unlike Lambda's `host:port`. An init failure must reach the emulator, so
//! the waiting invoke fails at once instead of hanging; a good model answers
//! Function URL requests.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// The bootstrap, as the emulator tells a function to run.
fn bootstrap(port: u16, model: &str) -> Proc {
    let child = Command::new(catdog_bin())
        .envs(crate::support::emulator::runtime_env(port))
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
    let (_emulator, port) = crate::support::emulator::start().await;
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
    let (_emulator, port) = crate::support::emulator::start().await;
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
