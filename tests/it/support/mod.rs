//! Shared helpers for the integration tests: where fixtures, shared data and
//! the built binary are; starting `catdog serve`, moto's S3 server, a
//! simulated S3 (s3s-fs behind a throttle) and other real processes on
//! loopback, and stopping them when a test ends.

pub mod emulator;
pub mod lambda_api;
pub mod package;
pub mod package_run;
pub mod presigned;
pub mod skips;

pub use skips::{allow_skips, skip_or_fail};

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

/// The SHA-256 of a fixture model, as the fixture builder recorded it.
pub fn fixture_sha(name: &str) -> String {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("models.json")).unwrap()).unwrap();
    manifest[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} is not in models.json"))
        .to_string()
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where the shared data folder should be: `CATDOG_DATA`, else its default
/// (`../shared/data` beside the checkout), as `scripts/data_dir.sh` says:
/// the one place that default is written, for the scripts and these tests.
pub fn data_dir() -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let script = workspace().join("scripts/data_dir.sh");
    let mut dir = succeed(Command::new(&script).current_dir(workspace())).stdout;
    if dir.last() == Some(&b'\n') {
        dir.pop();
    }
    assert!(!dir.is_empty(), "{} printed no folder", script.display());
    // Bytes, not UTF-8: any path CATDOG_DATA can name.
    PathBuf::from(std::ffi::OsString::from_vec(dir))
}

/// The shared data folder ([`data_dir`]). Where it is absent the test fails,
/// naming the folder, unless the run allows skips (`CATDOG_ALLOW_SKIPS=1`):
/// then `None`, with the skip printed and recorded (see [`skip_or_fail`]).
#[track_caller]
pub fn shared_data(test: &str) -> Option<PathBuf> {
    skips::shared_data_at(test, &data_dir(), allow_skips(), &skips::skip_log())
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

/// Runs `cmd` to the end; fails the test with its stderr unless it succeeded.
pub fn succeed(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
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
    /// What it is, for the line printed when it died before the test ended.
    pub name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A helper that died on its own explains many a failure that follows.
        if let Ok(Some(status)) = self.child.try_wait() {
            if !status.success() {
                eprintln!("{} had exited before the test ended: {status}", self.name);
            }
        }
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

/// How the simulated S3 ([`s3s`]) behaves, per connection: the bandwidth cap
/// (server→client, megabytes per second; 0 = none) and the delay of each
/// response's first byte after its request.
#[derive(Debug, Clone, Copy)]
pub struct S3SimOptions {
    pub mbps: f64,
    pub first_byte_ms: u64,
}

impl Default for S3SimOptions {
    /// About one S3 GET stream as a Lambda function sees it: ~90 MB/s, ~20 ms
    /// to the first byte.
    fn default() -> Self {
        Self {
            mbps: 90.0,
            first_byte_ms: 20,
        }
    }
}

/// An S3 that behaves like S3 for reads: s3s-fs (which reads only the range
/// asked for) on loopback, behind `s3_throttle` (per-connection cap, first-byte
/// delay). Both are stopped and the root folder removed when it is dropped.
pub struct S3Sim {
    /// The folder s3s-fs serves; each subfolder is a bucket. Put objects
    /// through S3 (PUT), not by copying files in: an object without the
    /// ETag s3s-fs saves on PUT is hashed whole on every GET.
    pub root: PathBuf,
    /// s3s-fs itself, without the throttle (quick set-up of big objects).
    pub direct: String,
    /// Where the throttle answers with its byte counts ([`ThrottleStats`]).
    stats: String,
    procs: Vec<Proc>,
}

impl S3Sim {
    /// Creates `bucket` (a folder in the root; `create_bucket` works too).
    pub fn bucket(&self, bucket: &str) {
        std::fs::create_dir_all(self.root.join(bucket)).unwrap();
    }

    /// What the throttle has let through so far, per connection and window.
    pub async fn throttle_stats(&self) -> ThrottleStats {
        let v: serde_json::Value = reqwest::get(&self.stats)
            .await
            .expect("ask s3_throttle for its counts")
            .json()
            .await
            .expect("s3_throttle's counts are JSON");
        let ms = |key: &str| Duration::from_millis(v[key].as_u64().unwrap());
        ThrottleStats {
            window: ms("window_ms"),
            mbps: v["mbps"].as_f64().unwrap(),
            burst: ms("burst_ms"),
            chunk: v["chunk_bytes"].as_u64().unwrap(),
            connections: v["connections"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    let bytes = c["bytes"].as_array().unwrap();
                    (
                        c["first_window"].as_u64().unwrap(),
                        bytes.iter().map(|b| b.as_u64().unwrap()).collect(),
                    )
                })
                .collect(),
        }
    }
}

/// The simulated S3's throttle's own counts (`s3_throttle --stats-listen`):
/// for each client connection, the bytes its pacer let through in each
/// window of `window` since the proxy started. Counts, not timings: a busy
/// machine makes transfers slower, never these counts larger.
#[derive(Debug)]
pub struct ThrottleStats {
    pub window: Duration,
    /// The cap per connection, MB/s (0: none).
    pub mbps: f64,
    /// How far ahead of the steady rate the pacer lets a connection go.
    pub burst: Duration,
    /// The largest piece the proxy writes at once.
    pub chunk: u64,
    /// Per connection: its first window, then bytes per window from there.
    pub connections: Vec<(u64, Vec<u64>)>,
}

impl ThrottleStats {
    /// The most one capped connection can be let through in one window,
    /// however late its wake-ups: the rate over the window and the burst,
    /// and one piece more (counted whole in the window it went out in); the
    /// pacer holds that exactly, and a tenth more is allowed here anyway, so
    /// that only a cap that does not hold can go over it.
    pub fn one_connection_limit(&self) -> u64 {
        let exact = self.mbps * 1e6 * (self.window + self.burst).as_secs_f64() + self.chunk as f64;
        (exact * 1.1) as u64
    }

    /// Each connection's fullest window.
    pub fn peak_per_connection(&self) -> Vec<u64> {
        self.connections
            .iter()
            .map(|(_, w)| w.iter().copied().max().unwrap_or(0))
            .collect()
    }

    /// The fullest window counting every connection together.
    pub fn peak_all_connections(&self) -> u64 {
        let mut total = std::collections::BTreeMap::<u64, u64>::new();
        for (first, windows) in &self.connections {
            for (i, bytes) in windows.iter().enumerate() {
                *total.entry(first + i as u64).or_default() += bytes;
            }
        }
        total.into_values().max().unwrap_or(0)
    }

    /// Everything let through, all connections.
    pub fn total(&self) -> u64 {
        self.connections.iter().flat_map(|(_, w)| w).sum()
    }
}

impl Drop for S3Sim {
    fn drop(&mut self) {
        self.procs.clear(); // kills and reaps both
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The `s3s-fs` binary (`scripts/setup.sh --test-tools` installs it with
/// cargo): on `PATH`, else in cargo's bin folder.
fn s3s_fs_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin"));
    on_path
        .chain(cargo_bin)
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
}

/// The `s3_throttle` proxy built beside this test binary (a bin of this crate).
pub fn s3_throttle_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("s3_throttle");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build --workspace --all-targets` first (make test does)",
        bin.display()
    );
    bin
}

/// Starts the simulated S3 ([`S3Sim`]) with the credentials of [`s3_env`],
/// and returns it with the throttled endpoint URL (what clients should use).
/// Where s3s-fs is not installed: fails, or with `CATDOG_ALLOW_SKIPS=1`
/// records the skip for `test` and returns `None`.
pub async fn s3s(test: &str, opts: S3SimOptions) -> Option<(S3Sim, String)> {
    let Some(s3s_fs) = s3s_fs_bin() else {
        skip_or_fail(
            test,
            "s3s-fs is not installed (scripts/setup.sh --test-tools installs it: \
             cargo install s3s-fs --version 0.14.1 --features binary --locked)",
        );
        return None;
    };
    let root =
        std::env::temp_dir().join(format!("catdog-s3s-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&root).unwrap();
    let port = free_port();
    let server = Proc {
        child: Command::new(&s3s_fs)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "testing", "--secret-key", "testing"])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", s3s_fs.display())),
        name: "s3s-fs".into(),
    };
    let direct = format!("http://127.0.0.1:{port}");
    // Any answer will do (an unsigned GET / is refused): it is listening.
    wait_http(&direct, None, Duration::from_secs(20)).await;

    let mut proxy = Command::new(s3_throttle_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--mbps", &opts.mbps.to_string()])
        .args(["--first-byte-ms", &opts.first_byte_ms.to_string()])
        .args(["--stats-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start s3_throttle");
    // Its first stdout line is the address it bound (port 0: its own pick),
    // the second the one it answers with its counts on.
    let stdout = proxy.stdout.take().expect("piped stdout");
    let proxy = Proc {
        child: proxy,
        name: "s3_throttle".into(),
    };
    let mut stdout = std::io::BufReader::new(stdout);
    let mut line = || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        let addr = line.trim().to_string();
        assert!(!addr.is_empty(), "s3_throttle printed no address");
        addr
    };
    let (addr, stats) = (line(), line());
    Some((
        S3Sim {
            root,
            direct,
            stats: format!("http://{stats}/"),
            procs: vec![proxy, server],
        },
        format!("http://{addr}"),
    ))
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

/// An S3 client of the tests' own for `endpoint`, with the static
/// credentials of [`s3_env`] (path-style, as loopback servers want).
pub fn s3_test_client(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// For tests that call catdog's S3 fetch in this process: the AWS SDK's
/// default chain reads credentials and region from the process environment
/// only. Every integration test shares this process (one binary), so the
/// variables are set once, to the same static values [`s3_env`] gives child
/// processes, and the endpoint is never among them: callers pass it in
/// `FetchOptions` (or `--s3-endpoint`), so two tests with two S3 servers
/// cannot see each other's.
pub fn in_process_aws_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (k, v) in s3_env("unused") {
            if k != "AWS_ENDPOINT_URL_S3" {
                std::env::set_var(k, v);
            }
        }
    });
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
except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
    pass  # moto says the first, s3s-fs the second
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

/// The last line of a script's stdout, as JSON (the browser scripts print
/// one object last).
pub fn last_json_line(stdout: &[u8]) -> serde_json::Value {
    let line = stdout
        .trim_ascii_end()
        .rsplit(|b| *b == b'\n')
        .next()
        .unwrap_or_default();
    serde_json::from_slice(line)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(stdout)))
}

/// An object's bytes and Content-Type, read with the tests' own client.
pub async fn s3_get(endpoint: &str, bucket: &str, key: &str) -> (Vec<u8>, String) {
    let o = s3_test_client(endpoint)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("s3://{bucket}/{key}: {e:?}"));
    let content_type = o.content_type().unwrap_or_default().to_string();
    (
        o.body.collect().await.unwrap().into_bytes().to_vec(),
        content_type,
    )
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

/// The model's SHA-256, once the server knows it (a local file's is
/// computed in the background, on otherwise idle cores).
pub async fn model_sha(base: &str) -> String {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let m: serde_json::Value = reqwest::get(format!("{base}/model"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(sha) = m["sha256"].as_str() {
            return sha.to_string();
        }
        assert!(
            std::time::Instant::now() < until,
            "no digest within 60 s: {m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
