//! The real `catdog` binary as a Lambda `bootstrap`, driven by a stand-in
//! Lambda Runtime API on loopback (the same HTTP protocol the Lambda service
//! speaks: `/invocation/next`, `/response`, `/error`, `/init/error`), with its
//! model fetched from moto's S3 server, fed Function URL (2.0) and API Gateway
//! REST (1.0) events with base64 bodies.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use catdog_tests::*;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

#[derive(Debug)]
enum Reply {
    Response(String, Value),
    #[allow(dead_code)] // printed when a test expects another reply
    Error(String, Value),
    InitError(Value),
}

#[derive(Clone)]
struct RuntimeApi {
    queue: Arc<Mutex<VecDeque<(String, Value)>>>,
    ready: Arc<Notify>,
    replies: mpsc::UnboundedSender<Reply>,
}

async fn next(State(api): State<RuntimeApi>) -> impl IntoResponse {
    loop {
        if let Some((id, event)) = api.queue.lock().unwrap().pop_front() {
            let mut h = HeaderMap::new();
            h.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
            h.insert(
                "lambda-runtime-deadline-ms",
                "4102444800000".parse().unwrap(),
            );
            h.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:catdog"
                    .parse()
                    .unwrap(),
            );
            h.insert(
                "lambda-runtime-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793".parse().unwrap(),
            );
            return (h, event.to_string());
        }
        api.ready.notified().await;
    }
}

async fn response(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let _ = api.replies.send(Reply::Response(
        id,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ));
    StatusCode::ACCEPTED
}

async fn error(State(api): State<RuntimeApi>, Path(id): Path<String>, body: String) -> StatusCode {
    let _ = api.replies.send(Reply::Error(
        id,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ));
    StatusCode::ACCEPTED
}

async fn init_error(State(api): State<RuntimeApi>, body: String) -> StatusCode {
    let _ = api.replies.send(Reply::InitError(
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ));
    StatusCode::ACCEPTED
}

struct Harness {
    api: RuntimeApi,
    replies: mpsc::UnboundedReceiver<Reply>,
    addr: String,
    _server: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let api = RuntimeApi {
            queue: Default::default(),
            ready: Arc::new(Notify::new()),
            replies: tx,
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            api,
            replies: rx,
            addr,
            _server: server,
        }
    }

    /// Invokes the function with `event` and returns what it answered.
    async fn invoke(&mut self, id: &str, event: Value) -> Reply {
        self.api
            .queue
            .lock()
            .unwrap()
            .push_back((id.to_string(), event));
        self.api.ready.notify_waiters();
        self.api.ready.notify_one();
        tokio::time::timeout(Duration::from_secs(60), self.replies.recv())
            .await
            .expect("no reply from the function within 60 s")
            .expect("runtime API closed")
    }

    fn bootstrap(&self, env: &[(String, String)]) -> Proc {
        let mut cmd = std::process::Command::new(catdog_bin());
        cmd.env("AWS_LAMBDA_RUNTIME_API", &self.addr)
            .env("AWS_LAMBDA_FUNCTION_NAME", "catdog")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/catdog")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().expect("spawn bootstrap"),
            name: "bootstrap".into(),
        }
    }
}

fn event(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(workspace().join("events").join(name)).unwrap()).unwrap()
}

fn with_body(mut ev: Value, bytes: &[u8], content_type: &str) -> Value {
    ev["body"] = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    ev["isBase64Encoded"] = Value::Bool(true);
    if ev["headers"].get("content-type").is_some() {
        ev["headers"]["content-type"] = json!(content_type);
    } else {
        ev["headers"]["Content-Type"] = json!(content_type);
        ev["multiValueHeaders"]["Content-Type"] = json!([content_type]);
    }
    ev
}

/// The HTTP answer inside a Lambda proxy response: (status, JSON body).
fn http_of(reply: Reply, id: &str) -> (u16, Value) {
    match reply {
        Reply::Response(rid, v) => {
            assert_eq!(rid, id);
            let status = v["statusCode"].as_u64().unwrap() as u16;
            let body = v["body"].as_str().unwrap();
            let body = if v["isBase64Encoded"] == true {
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .unwrap(),
                )
                .unwrap()
            } else {
                body.to_string()
            };
            (
                status,
                serde_json::from_str(&body).unwrap_or_else(|_| panic!("body not JSON: {body}")),
            )
        }
        other => panic!("expected a response, got {other:?}"),
    }
}

async fn model_in_s3(file: &str) -> (Proc, Vec<(String, String)>) {
    let (moto, endpoint) = moto().await;
    s3_put(
        &endpoint,
        "catdog-models",
        "v1/model.onnx",
        std::fs::read(fixture(file)).unwrap(),
    )
    .await;
    let mut env = s3_env(&endpoint);
    env.push((
        "MODEL_URI".into(),
        "s3://catdog-models/v1/model.onnx".into(),
    ));
    (moto, env)
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_answers_function_url_and_api_gateway_events() {
    let (_moto, env) = model_in_s3("tiny_torch_nchw.onnx").await;
    let mut h = Harness::start().await;
    let mut boot = h.bootstrap(&env);
    let red = std::fs::read(fixture("images/red.png")).unwrap();
    let blue = std::fs::read(fixture("images/blue.jpg")).unwrap();

    for (n, (file, img, ctype, want)) in [
        ("function-url.json", &red, "image/png", "cat"),
        ("api-gateway-rest.json", &blue, "image/jpeg", "dog"),
        ("function-url.json", &blue, "image/jpeg", "dog"),
        ("api-gateway-rest.json", &red, "image/png", "cat"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("req-{n}");
        let reply = h.invoke(&id, with_body(event(file), img, ctype)).await;
        let (status, body) = http_of(reply, &id);
        assert_eq!(status, 200, "{file}: {body}");
        assert_eq!(body["label"], want, "{file}: {body}");
        assert_eq!(body["model"]["uri"], "s3://catdog-models/v1/model.onnx");
    }

    // the committed events as they are (a real cat photo): a valid answer
    for file in ["function-url.json", "api-gateway-rest.json"] {
        let (status, body) = http_of(h.invoke(file, event(file)).await, file);
        assert_eq!(status, 200, "{file}: {body}");
        assert!(body["scores"]["cat"].as_f64().is_some(), "{body}");
    }

    // bad input through the Lambda path: a 4xx answer, and the next one is fine
    let id = "bad";
    let (status, body) = http_of(
        h.invoke(
            id,
            with_body(event("function-url.json"), b"not an image", "image/jpeg"),
        )
        .await,
        id,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_image")),
        "{body}"
    );
    let mut ev = event("function-url.json");
    ev["rawPath"] = json!("/health");
    ev["requestContext"]["http"]["method"] = json!("GET");
    ev["requestContext"]["http"]["path"] = json!("/health");
    ev["body"] = Value::Null;
    ev["isBase64Encoded"] = json!(false);
    let (status, body) = http_of(h.invoke("health", ev).await, "health");
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    let (status, body) = http_of(
        h.invoke(
            "after",
            with_body(event("function-url.json"), &red, "image/png"),
        )
        .await,
        "after",
    );
    assert_eq!(
        (status, body["label"].as_str()),
        (200, Some("cat")),
        "{body}"
    );

    // a request log line per invocation, as JSON (Lambda default)
    let _ = boot.child.kill();
    let out = boot.child.wait_with_output_ref();
    let logs: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        logs.iter().any(|l| l["message"] == "model ready"),
        "no model-ready log: {out}"
    );
    let requests: Vec<&Value> = logs.iter().filter(|l| l["message"] == "request").collect();
    assert!(
        requests.len() >= 8,
        "expected a log line per request: {out}"
    );
    assert!(
        requests
            .iter()
            .any(|l| l["inference_ms"].as_f64().is_some()),
        "{out}"
    );
    assert!(
        !out.contains("testing"),
        "credentials must not reach the logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn init_failure_is_reported_to_the_runtime_api() {
    let (_moto, mut env) = model_in_s3("tiny_torch_nchw.onnx").await;
    env.retain(|(k, _)| k != "MODEL_URI");
    env.push(("MODEL_URI".into(), "s3://catdog-models/missing.onnx".into()));
    let mut h = Harness::start().await;
    let mut boot = h.bootstrap(&env);
    let reply = tokio::time::timeout(Duration::from_secs(60), h.replies.recv())
        .await
        .unwrap()
        .unwrap();
    match reply {
        Reply::InitError(v) => {
            let msg = v["errorMessage"].as_str().unwrap();
            assert!(
                msg.contains("s3://catdog-models/missing.onnx") && msg.contains("NoSuchKey"),
                "{v}"
            );
            assert_eq!(v["errorType"], "Runtime.InitError");
        }
        other => panic!("expected an init error, got {other:?}"),
    }
    let status = tokio::task::spawn_blocking(move || boot.child.wait().unwrap())
        .await
        .unwrap();
    assert!(
        !status.success(),
        "bootstrap must exit non-zero after an init error"
    );
}

trait OutputRef {
    fn wait_with_output_ref(&mut self) -> String;
}

impl OutputRef for std::process::Child {
    fn wait_with_output_ref(&mut self) -> String {
        use std::io::Read;
        let _ = self.wait();
        let mut s = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}
