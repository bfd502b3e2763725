//! A stand-in Lambda Runtime API on loopback: the same HTTP protocol the
//! Lambda service speaks to a `bootstrap` (`/invocation/next`, `/response`,
//! `/error`, `/init/error`, and SnapStart's `/restore/next` and
//! `/restore/error`), so the real binary runs as it would on Lambda. Events
//! wait in a queue that any number of `/next` calls take from at once, as
//! Lambda Managed Instances hand them out.

use std::collections::HashMap;
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
use tokio::sync::{mpsc, watch, Semaphore};

use super::{catdog_bin, workspace, Proc};

#[derive(Debug)]
pub enum Reply {
    Response(String, Value),
    #[allow(dead_code)] // printed when a test expects another reply
    Error(String, Value),
    InitError(Value),
    /// `/restore/error`: the error type header and the body.
    RestoreError(String, Value),
}

#[derive(Clone)]
struct RuntimeApi {
    /// Each invoke's time from `/next` to its deadline; far off when unset.
    deadline_in: Arc<Mutex<Option<Duration>>>,
    /// Events not yet handed out. Each `/next` takes the lock and waits for
    /// one, so waiting calls queue fairly and no event wakes nobody.
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>>,
    replies: mpsc::UnboundedSender<Reply>,
    /// Set once the function has asked for `/restore/next` (its snapshot).
    snapshotted: watch::Sender<bool>,
    /// A permit per restore the test allows.
    restores: Arc<Semaphore>,
}

/// SnapStart: the function is initialised and ready to be snapshotted; it
/// resumes when the test restores it.
async fn restore_next(State(api): State<RuntimeApi>) -> StatusCode {
    api.snapshotted.send_replace(true);
    match api.restores.acquire().await {
        Ok(permit) => permit.forget(),
        Err(_) => return StatusCode::GONE,
    }
    StatusCode::OK
}

async fn restore_error(
    State(api): State<RuntimeApi>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let kind = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let _ = api.replies.send(Reply::RestoreError(
        kind,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ));
    StatusCode::ACCEPTED
}

async fn next(State(api): State<RuntimeApi>) -> impl IntoResponse {
    let taken = api.queue.lock().await.recv().await;
    match taken {
        Some((id, event)) => {
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
            (StatusCode::OK, h, event.to_string())
        }
        None => (StatusCode::GONE, HeaderMap::new(), String::new()),
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
    events: mpsc::UnboundedSender<(String, Value)>,
    pub replies: mpsc::UnboundedReceiver<Reply>,
    addr: String,
    _server: tokio::task::JoinHandle<()>,
}

impl Harness {
    pub async fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, queue) = mpsc::unbounded_channel();
        let api = RuntimeApi {
            deadline_in: Default::default(),
            queue: Arc::new(tokio::sync::Mutex::new(queue)),
            replies: tx,
            snapshotted: watch::Sender::new(false),
            restores: Arc::new(Semaphore::new(0)),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .route("/2018-06-01/runtime/restore/next", get(restore_next))
            .route("/2018-06-01/runtime/restore/error", post(restore_error))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            api,
            events,
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
        self.events.send((id.to_string(), event)).unwrap();
        self.reply().await
    }

    /// The function's next reply (of any kind).
    pub async fn reply(&mut self) -> Reply {
        tokio::time::timeout(Duration::from_secs(60), self.replies.recv())
            .await
            .expect("no reply from the function within 60 s")
            .expect("runtime API closed")
    }

    /// Queues every event at once (as many `/next` calls as the function
    /// makes take them together) and returns the replies by request id.
    pub async fn invoke_all(&mut self, events: Vec<(String, Value)>) -> HashMap<String, Reply> {
        let n = events.len();
        for (id, event) in events {
            self.events.send((id, event)).unwrap();
        }
        let mut replies = HashMap::new();
        while replies.len() < n {
            let reply = self.reply().await;
            let id = match &reply {
                Reply::Response(id, _) | Reply::Error(id, _) => id.clone(),
                other => panic!("expected an invoke's reply, got {other:?}"),
            };
            replies.insert(id, reply);
        }
        replies
    }

    /// Waits until the function asks for `/restore/next`: its init is done
    /// and SnapStart would snapshot it now.
    pub async fn snapshotted(&self) {
        let mut seen = self.api.snapshotted.subscribe();
        tokio::time::timeout(Duration::from_secs(60), seen.wait_for(|s| *s))
            .await
            .expect("the function did not ask for /restore/next within 60 s")
            .unwrap();
    }

    /// Lets the function resume from its snapshot (`/restore/next` answers).
    pub fn restore(&self) {
        self.api.restores.add_permits(1);
    }

    pub fn bootstrap(&self, env: &[(String, String)]) -> Proc {
        self.bootstrap_to(env, Stdio::null())
    }

    /// [`Harness::bootstrap`] with its stdout (the EMF lines) sent to `stdout`.
    pub fn bootstrap_to(&self, env: &[(String, String)], stdout: Stdio) -> Proc {
        self.bootstrap_without(env, &[], stdout)
    }

    /// [`Harness::bootstrap_to`], with the variables `unset` taken out of the
    /// environment it would inherit.
    pub fn bootstrap_without(
        &self,
        env: &[(String, String)],
        unset: &[&str],
        stdout: Stdio,
    ) -> Proc {
        let mut cmd = std::process::Command::new(catdog_bin());
        for key in unset {
            cmd.env_remove(key);
        }
        self.bootstrap_command(cmd, env, stdout)
    }

    /// Starts `cmd` (a bootstrap run some other way: from an image) as
    /// Lambda would, with this Runtime API and `env`.
    pub fn bootstrap_command(
        &self,
        mut cmd: std::process::Command,
        env: &[(String, String)],
        stdout: Stdio,
    ) -> Proc {
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

/// A bootstrap's stderr (its log), once it has stopped.
pub trait OutputRef {
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
