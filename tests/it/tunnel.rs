//! `catdog serve --ngrok` without the ngrok service (no network here): the
//! tunnel fails fast with a clear message and the local server keeps serving;
//! bad protection settings are refused before anything starts.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn serve_with_ngrok(
    env: &[(&str, &str)],
    extra: &[&str],
) -> (Proc, String, std::sync::mpsc::Receiver<String>) {
    let port = free_port();
    let mut cmd = Command::new(catdog_bin());
    cmd.args([
        "serve",
        "--port",
        &port.to_string(),
        "--ngrok",
        "--model",
        fixture("tiny_caffe_nhwc.onnx").to_str().unwrap(),
    ])
    .args(extra)
    .env_remove("NGROK_AUTHTOKEN")
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (
        Proc {
            child,
            name: "serve --ngrok".into(),
        },
        format!("http://127.0.0.1:{port}"),
        rx,
    )
}

fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.contains(needle) {
                return line;
            }
            seen.push(line);
        }
    }
    panic!("no line with {needle:?} within {within:?}; saw: {seen:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnel_failure_is_fast_and_clear_and_local_keeps_serving() {
    for (env, needle) in [
        (
            vec![("NGROK_AUTHTOKEN", "not-a-real-token")],
            "ngrok: could not connect",
        ),
        (vec![], "no ngrok authtoken: set NGROK_AUTHTOKEN"),
    ] {
        let started = Instant::now();
        let (_p, base, rx) = serve_with_ngrok(
            &env,
            &[
                "--ngrok-basic-auth",
                "demo:long-password",
                "--ngrok-allow-cidr",
                "10.0.0.0/8",
            ],
        );
        let line = wait_line(&rx, "serving locally only", Duration::from_secs(15));
        assert!(line.contains(needle), "{line}");
        println!("{needle}: reported after {:?}", started.elapsed());
        assert!(!line.contains("long-password"), "no secrets in messages");
        wait_ready(&base).await;
        let r = reqwest::Client::new()
            .post(format!("{base}/predict"))
            .header("content-type", "image/png")
            .body(std::fs::read(fixture("images/red.png")).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[test]
fn bad_protection_settings_are_refused_at_start() {
    for (args, needle) in [
        (
            vec!["--ngrok-basic-auth", "demo:short"],
            "password of 8 to 128 characters",
        ),
        (
            vec!["--ngrok-allow-cidr", "10.0.0.0/99"],
            "bad prefix length",
        ),
        (
            vec!["--ngrok-oauth-allow-email", "me@example.com"],
            "required arguments were not provided:\n  --ngrok-oauth <OAUTH_PROVIDER>",
        ),
    ] {
        let mut cmd = Command::new(catdog_bin());
        cmd.args([
            "serve",
            "--port",
            &free_port().to_string(),
            "--ngrok",
            "--model",
            fixture("tiny_caffe_nhwc.onnx").to_str().unwrap(),
        ])
        .args(&args)
        .env("NGROK_AUTHTOKEN", "x");
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
