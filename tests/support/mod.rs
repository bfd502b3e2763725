//! Shared helpers for the integration tests: where fixtures, shared data and
//! the built binary are; starting `catdog serve`, moto's S3 server and other
//! real processes on loopback, and stopping them when a test ends.

pub mod lambda_api;
pub mod skips;

pub use skips::{allow_skips, skip_or_fail, ALLOW_SKIPS};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Folder of generated fixtures (`make test` builds it).
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("CATDOG_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/fixtures"));
    assert!(
        dir.join("models.json").exists(),
        "fixtures missing in {}: run the tests with `make test` (it builds them)",
        dir.display()
    );
    dir
}

pub fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The shared data folder (`CATDOG_DATA`, default `../shared/data` beside the
/// checkout). Where it is absent the test fails, naming the folder, unless the
/// run allows skips (`CATDOG_ALLOW_SKIPS=1`): then `None`, with the skip
/// printed and recorded (see [`skip_or_fail`]).
#[track_caller]
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CATDOG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/data"));
    skips::shared_data_at(test, &dir, allow_skips(), &skips::skip_log())
}

/// The `catdog` binary built beside this test binary.
pub fn catdog_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("catdog");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build --workspace` first (make test does)",
        bin.display()
    );
    bin
}

/// A command running the `catdog` binary as a user's shell would: not as a
/// Lambda bootstrap and with no model preset from the test's environment.
pub fn catdog_command() -> Command {
    let mut cmd = Command::new(catdog_bin());
    cmd.env_remove("AWS_LAMBDA_RUNTIME_API")
        .env_remove("MODEL_URI");
    cmd
}

/// Python with the fixture tools (numpy, onnx, onnxruntime, moto).
pub fn python() -> PathBuf {
    std::env::var_os("CATDOG_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "python3".into())
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `url` until it answers with `want` (or any status if `None`).
pub async fn wait_http(url: &str, want: Option<u16>, timeout: Duration) -> reqwest::Response {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(url).send().await {
            if want.is_none_or(|w| r.status().as_u16() == w) {
                return r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer {want:?} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `catdog serve` on a free port with extra args/env; waits until it listens.
pub async fn serve(args: &[&str], env: &[(&str, &str)]) -> (Proc, String) {
    let port = free_port();
    let mut cmd = Command::new(catdog_bin());
    cmd.args(["serve", "--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env_remove("AWS_LAMBDA_RUNTIME_API");
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    let proc = Proc {
        child: cmd.spawn().expect("spawn catdog serve"),
        name: "catdog serve".into(),
    };
    let base = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{base}/health"), None, Duration::from_secs(20)).await;
    (proc, base)
}

/// Polls `/health` until the model has settled (`ok`, `failed`, or
/// `retrying`: a fetch failure the server keeps retrying in the background);
/// returns that status and, unless ok, the reason.
async fn settled_health(base: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: serde_json::Value = reqwest::get(format!("{base}/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(status @ ("ok" | "failed" | "retrying")) = v["status"].as_str() {
            return (
                status.to_string(),
                v["reason"].as_str().unwrap_or("").to_string(),
            );
        }
        assert!(
            Instant::now() < deadline,
            "model neither ready nor failed within 60 s: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `/health` says ok (the model loads in the background);
/// panics at once with the reason if loading failed.
pub async fn wait_ready(base: &str) {
    let (status, reason) = settled_health(base).await;
    assert_eq!(status, "ok", "model failed to load: {reason}");
}

/// Waits until `/health` says the model failed (for good, or for now while
/// the server retries a fetch), and returns the reason.
pub async fn wait_failed(base: &str) -> String {
    let (status, reason) = settled_health(base).await;
    assert_ne!(
        status, "ok",
        "the model loaded, but it should have been refused"
    );
    reason
}

/// The `/health` status and reason right now.
pub async fn health(base: &str) -> (u16, serde_json::Value) {
    let res = reqwest::get(format!("{base}/health")).await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// Serves `bytes` at `http://127.0.0.1:PORT/PATH` until the handle is dropped.
pub async fn static_http(path: &str, bytes: Vec<u8>) -> (tokio::task::JoinHandle<()>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = bytes::Bytes::from(bytes);
    let app = axum::Router::new().route(
        path,
        axum::routing::get(move || async move { body.clone() }),
    );
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (task, format!("http://{addr}{path}"))
}

/// moto's S3-compatible server on a free loopback port.
pub async fn moto() -> (Proc, String) {
    moto_on(free_port()).await
}

/// moto's S3-compatible server on this loopback port (to bring back a server
/// a client was told about before it was up).
pub async fn moto_on(port: u16) -> (Proc, String) {
    let py = python();
    let bin = py
        .parent()
        .map(|d| d.join("moto_server"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "moto_server".into());
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server (make test installs it)");
    let url = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{url}/moto-api/"), None, Duration::from_secs(30)).await;
    (
        Proc {
            child,
            name: "moto".into(),
        },
        url,
    )
}

/// Standard AWS env for a loopback S3 server (static test credentials).
pub fn s3_env(endpoint: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL_S3".into(), endpoint.into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]
}

/// Creates `bucket` and puts `bytes` at `key` with Python's boto3 (another
/// S3 client than the one under test).
pub async fn s3_put(endpoint: &str, bucket: &str, key: &str, bytes: Vec<u8>) {
    let dir =
        std::env::temp_dir().join(format!("catdog-put-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("object");
    std::fs::write(&file, &bytes).unwrap();
    let script = r#"
import sys, boto3
endpoint, bucket, key, path = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                  aws_secret_access_key="testing", region_name="us-east-1")
try:
    s3.create_bucket(Bucket=bucket)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
with open(path, "rb") as f:
    s3.put_object(Bucket=bucket, Key=key, Body=f.read())
"#;
    let out = tokio::process::Command::new(python())
        .args(["-c", script, endpoint, bucket, key, file.to_str().unwrap()])
        .output()
        .await
        .expect("run python boto3");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "s3 put failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// POSTs a picture to `{base}/predict` and returns the JSON answer.
pub async fn predict_json(
    base: &str,
    body: impl Into<reqwest::Body>,
    content_type: &str,
) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{base}/predict"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A solid-colour picture encoded in `format`.
pub fn solid(rgb: [u8; 3], w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(w, h, image::Rgb(rgb)));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

pub const RED: [u8; 3] = [220, 30, 30];
pub const BLUE: [u8; 3] = [30, 30, 220];
pub const GREEN: [u8; 3] = [30, 220, 30];
