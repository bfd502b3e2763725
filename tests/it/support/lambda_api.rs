//! A stand-in Lambda Runtime API on loopback: the same HTTP protocol the
//! Lambda service speaks to a `bootstrap` (`/invocation/next`, `/response`,
//! `/error`, `/init/error`), so the real binary runs as it would on Lambda.

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
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use super::{catdog_bin, workspace, Proc};

#[derive(Debug)]
pub enum Reply {
    Response(String, Value),
    #[allow(dead_code)] // printed when a test expects another reply
    Error(String, Value),
    InitError(Value),
}

#[derive(Clone)]
struct RuntimeApi {
    /// Each invoke's time from `/next` to its deadline; far off when unset.
    deadline_in: Arc<Mutex<Option<Duration>>>,
    queue: Arc<Mutex<VecDeque<(String, Value)>>>,
    ready: Arc<Notify>,
    replies: mpsc::UnboundedSender<Reply>,
}

async fn next(State(api): State<RuntimeApi>) -> impl IntoResponse {
    loop {
        if let Some((id, event)) = api.queue.lock().unwrap().pop_front() {
            let mut h = HeaderMap::new();
            h.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
            // As Lambda sends it: milliseconds since the Unix epoch.
            let deadline = match *api.deadline_in.lock().unwrap() {
                Some(d) => (std::time::SystemTime::now() + d)
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis()
                    .to_string(),
                None => "4102444800000".into(),
            };
            h.insert("lambda-runtime-deadline-ms", deadline.parse().unwrap());
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

pub struct Harness {
    api: RuntimeApi,
    pub replies: mpsc::UnboundedReceiver<Reply>,
    addr: String,
    _server: tokio::task::JoinHandle<()>,
}

impl Harness {
    pub async fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let api = RuntimeApi {
            deadline_in: Default::default(),
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

    /// Gives each next invoke `d` from its `/next` to its deadline, as
    /// Lambda does with the function's timeout.
    pub fn set_timeout(&self, d: Duration) {
        *self.api.deadline_in.lock().unwrap() = Some(d);
    }

    /// Invokes the function with `event` and returns what it answered.
    pub async fn invoke(&mut self, id: &str, event: Value) -> Reply {
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

    pub fn bootstrap(&self, env: &[(String, String)]) -> Proc {
        self.bootstrap_to(env, Stdio::null())
    }

    /// [`Harness::bootstrap`] with its stdout (the EMF lines) sent to `stdout`.
    pub fn bootstrap_to(&self, env: &[(String, String)], stdout: Stdio) -> Proc {
        let mut cmd = std::process::Command::new(catdog_bin());
        cmd.env("AWS_LAMBDA_RUNTIME_API", &self.addr)
            .env("AWS_LAMBDA_FUNCTION_NAME", "catdog")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/catdog")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("RUST_LOG", "info")
            .stdout(stdout)
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

pub fn event(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(workspace().join("events").join(name)).unwrap()).unwrap()
}

pub fn with_body(mut ev: Value, bytes: &[u8], content_type: &str) -> Value {
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
pub fn http_of(reply: Reply, id: &str) -> (u16, Value) {
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
