//! Deploys with a safety net: the CodeDeploy PreTraffic hook, run as
//! template.yaml runs it. Under one cargo-lambda emulator, the debug
//! `catdog` binary is both functions: the classifier (the new version, `_`)
//! with its model on moto's S3 server, and the hook (`catdog`, Handler
//! `pretraffic`) with the checks `catdog upload --checks` recorded next to
//! the model. The hook invokes the classifier through the emulator's Lambda
//! Invoke API and reports to a loopback stand-in speaking CodeDeploy's JSON
//! 1.1 protocol, which records what it was told. Both clients reach
//! loopback through the SDK's own variables (`AWS_ENDPOINT_URL_LAMBDA`,
//! `AWS_ENDPOINT_URL_CODEDEPLOY`), as nothing may reach AWS here.
//!
//! The right model passes; the same graph with its labels swapped fails,
//! and the hook's log names every picture that disagreed; a model without
//! checks fails; a version that cannot be invoked fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const BUCKET: &str = "catdog-models";
const KEY: &str = "models/catdog.onnx";
/// The emulator's names: `_` (its default) for the classifier, and one of
/// the workspace's binaries for the hook (cargo-lambda serves other names
/// only when they are binaries of the project it runs in).
const CLASSIFIER: &str = "_";
const HOOK: &str = "catdog";
const PUT_STATUS: &str = "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus";

/// One call the CodeDeploy stand-in received.
#[derive(Debug, Clone)]
struct Call {
    target: String,
    content_type: String,
    body: Value,
}

/// CodeDeploy on loopback: `POST /` with `X-Amz-Target`, JSON 1.1 in and out.
/// PutLifecycleEventHookExecutionStatus is recorded and answered as
/// CodeDeploy answers it; anything else is refused as an unknown operation.
async fn codedeploy() -> (String, Arc<Mutex<Vec<Call>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    let call = Call {
                        target: header("x-amz-target"),
                        content_type: header("content-type"),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    };
                    let json11 = [("content-type", "application/x-amz-json-1.1")];
                    let known = call.target == PUT_STATUS;
                    let id = call.body["lifecycleEventHookExecutionId"].clone();
                    seen.lock().unwrap().push(call);
                    if known {
                        (
                            axum::http::StatusCode::OK,
                            json11,
                            json!({"lifecycleEventHookExecutionId": id}).to_string(),
                        )
                    } else {
                        (
                            axum::http::StatusCode::BAD_REQUEST,
                            json11,
                            json!({"__type": "UnknownOperationException"}).to_string(),
                        )
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

/// moto with the models bucket, and a scratch folder; both go with the test.
struct S3 {
    _moto: Proc,
    endpoint: String,
    scratch: PathBuf,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

async fn s3(name: &str) -> S3 {
    let (moto, endpoint) = moto().await;
    s3_test_client(&endpoint)
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let scratch = std::env::temp_dir().join(format!("catdog-canary-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    S3 {
        _moto: moto,
        endpoint,
        scratch,
    }
}

impl S3 {
    /// `catdog upload` of a fixture model to KEY, with `--checks` when
    /// pictures are given; its stderr.
    fn upload(&self, model: &str, checks: Option<&Path>) -> String {
        let mut cmd = catdog_command();
        cmd.args(["upload", "--model"])
            .arg(fixture(model))
            .args(["--to", &format!("s3://{BUCKET}/{KEY}")])
            .envs(s3_env(&self.endpoint));
        if let Some(dir) = checks {
            cmd.arg("--checks").arg(dir);
        }
        String::from_utf8_lossy(&succeed(&mut cmd).stderr).into_owned()
    }

    /// Known pictures, as a user keeps them: red is a cat to the tiny model,
    /// blue a dog, and murky a dog by a hair (0.54: a close call).
    fn pictures(&self) -> PathBuf {
        let dir = self.scratch.join("known");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["red.jpg", "blue.png"] {
            std::fs::copy(fixture(&format!("images/{name}")), dir.join(name)).unwrap();
        }
        let murky = solid([128, 128, 110], 64, 64, image::ImageFormat::Png);
        std::fs::write(dir.join("murky.png"), murky).unwrap();
        dir
    }
}

/// The emulator with both functions, and the CodeDeploy stand-in.
struct Deployment {
    // Fields drop in order: the functions go before the emulator they poll.
    _functions: Vec<Proc>,
    _emulator: Proc,
    port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    hook_log: PathBuf,
}

/// Starts the classifier (unless `classifier` is false) on the model at
/// KEY, and the hook checking the function named `checked`.
async fn deploy(s3: &S3, classifier: bool, checked: &str) -> Deployment {
    let (emulator, port) = crate::support::emulator::start().await;
    let (codedeploy_url, calls) = codedeploy().await;
    let mut functions = Vec::new();
    if classifier {
        let child = Command::new(catdog_bin())
            .env_remove("MODEL_URI")
            .envs(crate::support::emulator::runtime_env(port))
            .envs(s3_env(&s3.endpoint))
            .env("MODEL_URI", format!("s3://{BUCKET}/{KEY}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the classifier bootstrap");
        functions.push(Proc {
            child,
            name: "classifier bootstrap".into(),
        });
    }
    let hook_log = s3.scratch.join("hook.log");
    let child = Command::new(catdog_bin())
        .env_remove("MODEL_URI")
        .env_remove("AWS_ENDPOINT_URL")
        // What Lambda gives the hook function: its own name on the Runtime
        // API, and template.yaml's Handler.
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt/{HOOK}"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", HOOK)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("_HANDLER", "pretraffic")
        // template.yaml's variables for it...
        .env("CATDOG_CHECK_FUNCTION", checked)
        .env("CATDOG_CHECKS", format!("s3://{BUCKET}/{KEY}.checks.json"))
        .env("RUST_LOG", "info")
        // ...and the loopback endpoints, by the SDK's own variables.
        .envs(s3_env(&s3.endpoint))
        .env(
            "AWS_ENDPOINT_URL_LAMBDA",
            format!("http://127.0.0.1:{port}"),
        )
        .env("AWS_ENDPOINT_URL_CODEDEPLOY", &codedeploy_url)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&hook_log).unwrap())
        .spawn()
        .expect("start the hook bootstrap");
    functions.push(Proc {
        child,
        name: "PreTraffic hook bootstrap".into(),
    });
    Deployment {
        _emulator: emulator,
        _functions: functions,
        port,
        calls,
        hook_log,
    }
}

impl Deployment {
    /// Invokes the hook as CodeDeploy does; its answer.
    async fn run_hook(&self, deployment_id: &str) -> Value {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{HOOK}/invocations",
            self.port
        );
        let event = json!({
            "DeploymentId": deployment_id,
            "LifecycleEventHookExecutionId": format!("exec-{deployment_id}"),
        });
        let res = reqwest::Client::new()
            .post(url)
            .json(&event)
            .timeout(Duration::from_secs(180))
            .send()
            .await
            .expect("the hook answered within 180 s");
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(
            status,
            200,
            "the hook's invoke failed: {text}\nhook log:\n{}",
            self.log()
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// What the hook reported to CodeDeploy: exactly one call, for this
    /// deployment, in CodeDeploy's protocol; its status.
    fn reported(&self, deployment_id: &str) -> String {
        let calls = self.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 1, "{calls:?}\nhook log:\n{}", self.log());
        let call = &calls[0];
        assert_eq!(call.target, PUT_STATUS);
        assert_eq!(call.content_type, "application/x-amz-json-1.1");
        assert_eq!(call.body["deploymentId"], deployment_id);
        assert_eq!(
            call.body["lifecycleEventHookExecutionId"],
            format!("exec-{deployment_id}")
        );
        call.body["status"].as_str().unwrap_or("").to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.hook_log).unwrap_or_default()
    }

    /// The hook's log lines (JSON on Lambda) whose message is `message`.
    fn logged(&self, message: &str) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == message)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_model_the_checks_were_recorded_with_passes() {
    let s3 = s3("right").await;
    let said = s3.upload("tiny_torch_nchw.onnx", Some(&s3.pictures()));
    assert!(
        said.contains("3 picture(s) and the model's answers to them at s3://catdog-models/models/catdog.onnx.checks.json"),
        "{said}"
    );
    // The close call is pointed out: another CPU may well answer it otherwise.
    assert!(said.contains("close call: murky.png: dog by 0.0"), "{said}");
    assert!(!said.contains("warning"), "{said}");

    // What was stored: the answers file next to the model, pictures beside it.
    let client = s3_test_client(&s3.endpoint);
    let get = |key: String| {
        let client = client.clone();
        async move {
            let out = client.get_object().bucket(BUCKET).key(&key).send().await;
            let out = out.unwrap_or_else(|e| panic!("{key}: {e:?}"));
            out.body.collect().await.unwrap().into_bytes().to_vec()
        }
    };
    let checks: Value = serde_json::from_slice(&get(format!("{KEY}.checks.json")).await).unwrap();
    assert_eq!(checks["format"], "catdog-checks/1");
    assert_eq!(checks["model_sha256"], fixture_sha("tiny_torch_nchw.onnx"));
    let pictures = checks["pictures"].as_array().unwrap();
    let names: Vec<&str> = pictures
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blue.png", "murky.png", "red.jpg"]);
    assert_eq!(pictures[2]["label"], "cat");
    assert_eq!(pictures[0]["label"], "dog");
    let red = get(format!("{KEY}.checks/red.jpg")).await;
    assert_eq!(red, std::fs::read(fixture("images/red.jpg")).unwrap());
    assert_eq!(
        pictures[2]["sha256"],
        catdog::model::source::sha256_hex(&red)
    );

    let d = deploy(&s3, true, CLASSIFIER).await;
    let answer = d.run_hook("d-RIGHT").await;
    assert_eq!(answer["status"], "Succeeded", "{answer}\n{}", d.log());
    assert_eq!(answer["pictures"], 3);
    assert_eq!(d.reported("d-RIGHT"), "Succeeded");
    let agreed: Vec<String> = d
        .logged("agrees")
        .iter()
        .map(|l| l["picture"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(agreed, ["blue.png", "murky.png", "red.jpg"], "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_with_swapped_labels_fails_and_the_log_names_each_picture() {
    let s3 = s3("swapped").await;
    s3.upload("tiny_torch_nchw.onnx", Some(&s3.pictures()));
    // Someone replaces the model, same graph, labels reversed, and records
    // no checks for it: the old ones stay, and must not let it through.
    let said = s3.upload("tiny_swapped.onnx", None);
    assert!(said.contains("will FAIL at its PreTraffic hook"), "{said}");

    let d = deploy(&s3, true, CLASSIFIER).await;
    let answer = d.run_hook("d-SWAPPED").await;
    assert_eq!(answer["status"], "Failed", "{answer}");
    assert_eq!(d.reported("d-SWAPPED"), "Failed");
    // Each picture answered, and each disagreement named with both labels.
    assert_eq!(answer["pictures"], 3, "{answer}");
    let disagreed = d.logged("disagrees");
    let named: Vec<(&str, &str, &str)> = disagreed
        .iter()
        .map(|l| {
            (
                l["picture"].as_str().unwrap(),
                l["recorded"].as_str().unwrap(),
                l["answered"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            ("blue.png", "dog", "cat"),
            ("murky.png", "dog", "cat"),
            ("red.jpg", "cat", "dog")
        ],
        "{}",
        d.log()
    );
    for l in &disagreed {
        let why = l["disagreements"].as_str().unwrap();
        assert!(why.contains("label") && why.contains("score of"), "{why}");
    }
    // And the model it answered with is not the one the checks were made for.
    let problems = answer["problems"].to_string();
    assert!(
        problems.contains(&fixture_sha("tiny_swapped.onnx"))
            && problems.contains(&fixture_sha("tiny_torch_nchw.onnx")),
        "{problems}"
    );
    assert_eq!(d.logged("the new version failed its checks").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_without_checks_fails() {
    let s3 = s3("missing").await;
    let said = s3.upload("tiny_torch_nchw.onnx", None);
    assert!(
        said.contains("no --checks pictures")
            && said.contains("will FAIL at its PreTraffic hook")
            && said.contains("s3://catdog-models/models/catdog.onnx.checks.json")
            && said.contains("--checks PICTURES"),
        "{said}"
    );
    let d = deploy(&s3, true, CLASSIFIER).await;
    let answer = d.run_hook("d-MISSING").await;
    assert_eq!(answer["status"], "Failed", "{answer}");
    assert_eq!(answer["pictures"], 0);
    assert_eq!(d.reported("d-MISSING"), "Failed");
    let problems = answer["problems"].to_string();
    assert!(
        problems.contains("models/catdog.onnx.checks.json")
            && problems.contains("no_such_key")
            && problems.contains("catdog upload --model FILE --to s3://BUCKET/KEY --checks"),
        "{problems}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_that_cannot_be_invoked_fails() {
    let s3 = s3("unreachable").await;
    s3.upload("tiny_torch_nchw.onnx", Some(&s3.pictures()));
    // The emulator knows no such function: every invoke is refused.
    let d = deploy(&s3, false, "no-such-function").await;
    let answer = d.run_hook("d-NOFUNCTION").await;
    assert_eq!(answer["status"], "Failed", "{answer}");
    assert_eq!(answer["pictures"], 0);
    assert_eq!(d.reported("d-NOFUNCTION"), "Failed");
    let problems = answer["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 3, "{problems:?}");
    for p in problems {
        assert!(
            p.as_str().unwrap().contains("invoking no-such-function"),
            "{p}"
        );
    }
    assert_eq!(d.logged("no answer").len(), 3, "{}", d.log());
}
