//! SnapStart's lifecycle in the real bootstrap, driven by the stand-in
//! Runtime API: with `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start` the
//! bootstrap loads its model into memory (from moto's S3, through a TCP
//! proxy that counts connections), drops its S3 connections, asks for `/restore/next`
//! (the snapshot), and once restored reads its credentials again from the
//! container credentials endpoint Lambda gives SnapStart functions (served
//! here by the test, which changes them while the function is "frozen").
//! A restore without credentials is reported through `/restore/error`.
//!
//! No snapshot is taken here (that is Firecracker's): two environments
//! restored from one snapshot are stood in for by two bootstraps with the
//! same init, restored after the same credential change.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::lambda_api::*;
use crate::support::*;

/// What the container credentials endpoint hands out now: an access key
/// id, or `None` for a 500.
type CurrentKey = Arc<Mutex<Option<String>>>;

const TOKEN: &str = "container-token-for-the-test";

/// The container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`),
/// answering with the current key to requests that carry the token; counts
/// the requests.
async fn credentials_endpoint() -> (String, CurrentKey, Arc<AtomicUsize>) {
    let key: CurrentKey = Arc::new(Mutex::new(Some("AKIAINITSNAPSHOT".into())));
    let asked = Arc::new(AtomicUsize::new(0));
    let (k, n) = (key.clone(), asked.clone());
    let app = axum::Router::new().route(
        "/credentials",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let (k, n) = (k.clone(), n.clone());
            async move {
                use axum::response::IntoResponse;
                n.fetch_add(1, Ordering::SeqCst);
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
                    return axum::http::StatusCode::UNAUTHORIZED.into_response();
                }
                let Some(id) = k.lock().unwrap().clone() else {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
                };
                axum::Json(json!({
                    "AccessKeyId": id,
                    "SecretAccessKey": "secret-of-the-test",
                    "Token": "session-token-of-the-test",
                    "Expiration": "2099-01-01T00:00:00Z",
                }))
                .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/credentials"), key, asked)
}

/// A TCP proxy to `upstream` that counts the connections it took and has
/// open, and can close them all (as the network does to a frozen VM's).
struct Proxy {
    addr: String,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    cut: tokio::sync::watch::Sender<u32>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let cut = tokio::sync::watch::Sender::new(0u32);
        let (a, o, c) = (accepted.clone(), open.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let (o, mut cut) = (o.clone(), c.subscribe());
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.changed() => {}
                        }
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            accepted,
            open,
            cut,
        }
    }

    /// Waits up to `within` for no connection to be open; how many are.
    async fn open_after(&self, within: Duration) -> usize {
        let until = std::time::Instant::now() + within;
        while self.open.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.open.load(Ordering::SeqCst)
    }
}

/// moto with the model and a picture in it, a proxy in front, and the
/// bootstrap's environment: SnapStart, credentials from the endpoint only.
async fn snapstart_stack() -> (
    Proc,
    Proxy,
    Vec<(String, String)>,
    CurrentKey,
    Arc<AtomicUsize>,
) {
    let (moto, endpoint) = moto().await;
    let model = std::fs::read(fixture("tiny_torch_nchw.onnx")).unwrap();
    s3_put(&endpoint, "catdog-models", "v1/model.onnx", model).await;
    let red = std::fs::read(fixture("images/red.png")).unwrap();
    s3_put(&endpoint, "uploads", "in/red.png", red).await;
    let proxy = Proxy::start(endpoint.trim_start_matches("http://").to_string()).await;
    let (uri, key, asked) = credentials_endpoint().await;
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL_S3", proxy.addr.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", TOKEN),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start"),
        ("MODEL_URI", "s3://catdog-models/v1/model.onnx"),
        ("CATDOG_UPLOADS", "s3://uploads/in/"),
        ("CATDOG_DOWNLOAD_DIR", download_dir().to_str().unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    (moto, proxy, env, key, asked)
}

/// Where the bootstrap would write its model if it used a disk (SnapStart's
/// /tmp holds 512 MB at most: it must hold it in memory instead).
fn download_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("catdog-snapstart-{}", std::process::id()))
}

/// Variables of this process the bootstrap must not inherit: it is to find
/// its credentials where Lambda puts them for SnapStart, nowhere else.
const NOT_INHERITED: [&str; 5] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
];

fn function_url(path: &str, method: &str, body: &Value) -> Value {
    let mut ev = event("function-url.json");
    ev["rawPath"] = json!(path);
    ev["requestContext"]["http"]["method"] = json!(method);
    ev["requestContext"]["http"]["path"] = json!(path);
    with_body(ev, body.to_string().as_bytes(), "application/json")
}

/// The messages of the bootstrap's JSON log lines, in order.
fn messages(logs: &str) -> Vec<String> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| l["message"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn restored_environments_use_new_connections_new_credentials_and_their_own_ids() {
    let (_moto, proxy, env, key, asked) = snapstart_stack().await;
    let mut harnesses = vec![Harness::start().await, Harness::start().await];
    let mut boots: Vec<Proc> = harnesses
        .iter()
        .map(|h| h.bootstrap_without(&env, &NOT_INHERITED, std::process::Stdio::null()))
        .collect();
    for h in &harnesses {
        h.snapshotted().await;
    }
    // Init fetched the model with the init credentials, into memory; at the
    // snapshot no S3 connection is left open.
    assert!(!download_dir().exists(), "the model went through the disk");
    assert!(
        asked.load(Ordering::SeqCst) >= 1,
        "init read no credentials"
    );
    let before = proxy.accepted.load(Ordering::SeqCst);
    assert!(before >= 2, "the model came through the proxy: {before}");
    assert_eq!(
        proxy.open_after(Duration::from_secs(5)).await,
        0,
        "S3 connections still open at the snapshot"
    );
    // While frozen: the network forgets every connection, the credentials change.
    proxy.cut.send_modify(|n| *n += 1);
    *key.lock().unwrap() = Some("AKIARESTOREDENV".into());
    for h in &harnesses {
        h.restore();
    }

    let mut ids = Vec::new();
    for (n, h) in harnesses.iter_mut().enumerate() {
        // A picture by reference: S3 again, through new connections.
        let id = format!("ref-{n}");
        let ev = function_url(
            "/predict",
            "POST",
            &json!({"s3": "s3://uploads/in/red.png"}),
        );
        let (status, body) = http_of(h.invoke(&id, ev).await, &id);
        assert_eq!(
            (status, body["label"].as_str()),
            (200, Some("cat")),
            "{body}"
        );
        // An upload ticket, signed with the credentials of after the restore.
        let id = format!("upload-{n}");
        let ev = function_url(
            "/uploads",
            "POST",
            &json!({"bytes": 1000, "content_type": "image/png"}),
        );
        let (status, ticket) = http_of(h.invoke(&id, ev).await, &id);
        assert_eq!(status, 201, "{ticket}");
        let url = ticket["url"].as_str().unwrap();
        assert!(url.contains("X-Amz-Credential=AKIARESTOREDENV%2F"), "{url}");
        ids.push(ticket["id"].as_str().unwrap().to_string());
    }
    assert!(
        proxy.accepted.load(Ordering::SeqCst) > before,
        "no new S3 connection after the restore"
    );
    // Ids come from the kernel at each upload, so no two environments share
    // one; here the two are separate processes (no snapshot can be taken),
    // so this checks the ids, not the snapshot.
    assert_ne!(ids[0], ids[1], "two environments drew one upload id");

    for boot in &mut boots {
        let _ = boot.child.kill();
        let logs = boot.child.wait_with_output_ref();
        let said = messages(&logs);
        let at = |m: &str| {
            said.iter()
                .position(|s| s.starts_with(m))
                .unwrap_or_else(|| panic!("no {m:?} in:\n{logs}"))
        };
        assert!(at("model ready") < at("SnapStart: S3 clients dropped before the snapshot"));
        assert!(
            at("SnapStart: S3 clients dropped before the snapshot") < at("SnapStart: restored"),
            "{logs}"
        );
        assert!(
            !logs.contains("AKIA"),
            "credentials reached the logs: {logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_without_credentials_is_reported_to_the_runtime_api() {
    let (_moto, _proxy, env, key, _) = snapstart_stack().await;
    let mut h = Harness::start().await;
    let mut boot = h.bootstrap_without(&env, &NOT_INHERITED, std::process::Stdio::null());
    h.snapshotted().await;
    *key.lock().unwrap() = None;
    h.restore();
    match h.reply().await {
        Reply::RestoreError(kind, body) => {
            assert_eq!(kind, "Runtime.AfterRestoreError", "{body}");
            let message = body["errorMessage"].as_str().unwrap_or_default();
            assert!(message.contains("credentials"), "{body}");
        }
        other => panic!("expected the restore error, got {other:?}"),
    }
    // The runtime stops after reporting it, as Lambda expects.
    let status = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(status) = boot.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the bootstrap went on after a failed restore");
    assert!(!status.success());
}
