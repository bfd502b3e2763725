//! The real `catdog` binary as a Lambda `bootstrap`, driven by a stand-in
//! Lambda Runtime API on loopback (the same HTTP protocol the Lambda service
//! speaks: `/invocation/next`, `/response`, `/error`, `/init/error`), with its
//! model fetched from moto's S3 server, fed Function URL (2.0) and API Gateway
//! REST (1.0) events in `events/` with base64 bodies. Init errors are
//! reported to the Runtime API.

use std::time::Duration;

use crate::support::lambda_api::*;
use crate::support::*;
use base64::Engine;
use serde_json::{json, Value};

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

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_s3_is_retried_then_named_in_the_init_error() {
    // Nothing listens at the endpoint: 3 tries with 200 ms, 400 ms pauses,
    // then the init error names the object and the cause.
    let mut env = s3_env(&format!("http://127.0.0.1:{}", free_port()));
    env.push((
        "MODEL_URI".into(),
        "s3://catdog-models/v1/model.onnx".into(),
    ));
    env.push(("CATDOG_FETCH_ATTEMPTS".into(), "3".into()));
    env.push(("CATDOG_RETRY_PAUSE_MS".into(), "200".into()));
    let mut h = Harness::start().await;
    let started = std::time::Instant::now();
    let mut boot = h.bootstrap(&env);
    let reply = tokio::time::timeout(Duration::from_secs(60), h.replies.recv())
        .await
        .unwrap()
        .unwrap();
    let elapsed = started.elapsed();
    match reply {
        Reply::InitError(v) => {
            let msg = v["errorMessage"].as_str().unwrap();
            assert!(msg.contains("s3://catdog-models/v1/model.onnx"), "{v}");
            assert!(
                msg.to_lowercase().contains("connect"),
                "the cause is named: {v}"
            );
        }
        other => panic!("expected an init error, got {other:?}"),
    }
    // the pauses were taken (0.2 + 0.4 s), and it still failed well inside
    // Lambda's 10 s init budget
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let log = tokio::task::spawn_blocking(move || {
        let _ = boot.child.wait();
        let mut s = String::new();
        use std::io::Read;
        boot.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    })
    .await
    .unwrap();
    assert_eq!(log.matches("trying again").count(), 2, "{log}");
}

/// On Lambda each request's figures also go out as a CloudWatch Embedded
/// Metric Format line on stdout (one per request, one when the model is
/// ready), checked against the EMF specification by tests/clients/check_emf.py.
#[tokio::test(flavor = "multi_thread")]
async fn each_request_writes_one_emf_line_of_the_specified_shape() {
    let (_moto, env) = model_in_s3("tiny_torch_nchw.onnx").await;
    let mut h = Harness::start().await;
    let out_path = std::env::temp_dir().join(format!("catdog-emf-{}.log", std::process::id()));
    let mut boot = h.bootstrap_to(&env, std::fs::File::create(&out_path).unwrap().into());
    let red = std::fs::read(fixture("images/red.png")).unwrap();
    let mut sent = Vec::new();
    for (id, body, ctype) in [
        ("a", &red[..], "image/png"),
        ("b", &b"not an image"[..], "image/jpeg"),
        ("c", &red[..], "image/png"),
    ] {
        let (status, _) = http_of(
            h.invoke(id, with_body(event("function-url.json"), body, ctype))
                .await,
            id,
        );
        sent.push(status);
    }
    assert_eq!(sent, [200, 400, 200]);
    // the Open Inference Protocol through the Lambda path too, JSON and binary
    let v2 = |binary: bool| {
        let request = json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
            "data": [base64::engine::general_purpose::STANDARD.encode(&red)]}],
            "parameters": {"binary_data_output": binary}});
        let mut ev = with_body(
            event("function-url.json"),
            request.to_string().as_bytes(),
            "application/json",
        );
        ev["rawPath"] = json!("/v2/models/catdog/infer");
        ev["requestContext"]["http"]["path"] = json!("/v2/models/catdog/infer");
        ev
    };
    let (status, body) = http_of(h.invoke("v2-json", v2(false)).await, "v2-json");
    assert_eq!(
        (status, &body["outputs"][1]["data"]),
        (200, &json!(["cat"])),
        "{body}"
    );
    match h.invoke("v2-binary", v2(true)).await {
        Reply::Response(_, v) => {
            assert_eq!(v["statusCode"], 200, "{v}");
            assert_eq!(
                v["isBase64Encoded"], true,
                "binary answers travel base64-encoded: {v}"
            );
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v["body"].as_str().unwrap())
                .unwrap();
            let json_len: usize = v["headers"]["inference-header-content-length"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(raw.ends_with(b"\x03\x00\x00\x00cat"), "{v}");
            let head: Value = serde_json::from_slice(&raw[..json_len]).unwrap();
            assert_eq!(head["model_name"], "catdog");
        }
        other => panic!("expected a response, got {other:?}"),
    }
    let _ = boot.child.kill();
    let _ = boot.child.wait();
    let text = std::fs::read(&out_path).unwrap();
    let _ = std::fs::remove_file(&out_path);

    use std::io::Write;
    let mut check = std::process::Command::new(python())
        .arg(workspace().join("tests/clients/check_emf.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(&text).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&checked.stderr),
        String::from_utf8_lossy(&text)
    );
    let docs: Vec<Value> = serde_json::from_slice(&checked.stdout).unwrap();
    let requests: Vec<&Value> = docs.iter().filter(|d| d.get("Route").is_some()).collect();
    let statuses: Vec<u64> = requests
        .iter()
        .map(|d| d["Status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [200, 400, 200, 200, 200],
        "one line per request: {docs:?}"
    );
    let routes: Vec<&str> = requests
        .iter()
        .map(|d| d["Route"].as_str().unwrap())
        .collect();
    assert_eq!(
        routes,
        [
            "/predict",
            "/predict",
            "/predict",
            "/v2/models/{name}/infer",
            "/v2/models/{name}/infer"
        ]
    );
    for d in &requests {
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Namespace"], "catdog");
        assert_eq!(d["Requests"], 1.0);
        assert_eq!(d["Model"], "catdog");
    }
    assert!(
        requests[0]["InferenceTime"].as_f64().unwrap() > 0.0,
        "{:?}",
        requests[0]
    );
    assert_eq!(requests[1]["ClientErrors"], 1.0);
    assert!(
        requests[1].get("InferenceTime").is_none(),
        "no stages for a refused picture"
    );
    let model: Vec<&Value> = docs
        .iter()
        .filter(|d| d.get("ModelLoadTime").is_some())
        .collect();
    assert_eq!(model.len(), 1, "one model line: {docs:?}");
    assert_eq!(model[0]["ModelUriScheme"], "s3");
    assert!(model[0]["ModelFetchTime"].as_f64().unwrap() > 0.0);
    assert_eq!(docs.len(), 6, "nothing else on stdout: {docs:?}");
}

/// Lambda Managed Instances: with `AWS_LAMBDA_MAX_CONCURRENCY=8` the one
/// environment takes 8 invokes at once (the stand-in hands them to 8 `/next`
/// calls together); they meet in the micro-batcher, and each is answered
/// with its own picture's label and its own EMF line.
#[tokio::test(flavor = "multi_thread")]
async fn eight_invokes_at_once_share_batches_and_each_gets_its_own_answer() {
    let (_moto, mut env) = model_in_s3("tiny_torch_nchw.onnx").await;
    env.push(("AWS_LAMBDA_MAX_CONCURRENCY".into(), "8".into()));
    // Wide enough that 8 invokes handed out together meet on a busy machine.
    env.push(("BATCH_WINDOW_MS".into(), "300".into()));
    let mut h = Harness::start().await;
    let out_path = std::env::temp_dir().join(format!("catdog-mi-{}.log", std::process::id()));
    let mut boot = h.bootstrap_to(&env, std::fs::File::create(&out_path).unwrap().into());
    let red = std::fs::read(fixture("images/red.png")).unwrap();
    let blue = std::fs::read(fixture("images/blue.jpg")).unwrap();
    let want = |i: usize| if i.is_multiple_of(2) { "cat" } else { "dog" };
    let events = (0..8)
        .map(|i| {
            let (img, ctype) = if want(i) == "cat" {
                (&red, "image/png")
            } else {
                (&blue, "image/jpeg")
            };
            (
                format!("mi-{i}"),
                with_body(event("function-url.json"), img, ctype),
            )
        })
        .collect();
    let mut replies = h.invoke_all(events).await;
    let mut largest = 0;
    for i in 0..8 {
        let id = format!("mi-{i}");
        let (status, body) = http_of(replies.remove(&id).unwrap(), &id);
        assert_eq!(
            (status, body["label"].as_str()),
            (200, Some(want(i))),
            "{id}: {body}"
        );
        largest = largest.max(body["timings_ms"]["batch_images"].as_u64().unwrap());
    }
    assert!(largest > 1, "8 invokes at once never shared a batch");

    let _ = boot.child.kill();
    let logs = boot.child.wait_with_output_ref();
    let taking: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "taking invokes")
        .collect();
    assert_eq!(taking.len(), 1, "{logs}");
    assert_eq!(taking[0]["invokes_at_once"], 8, "{logs}");
    let emf: Vec<Value> = std::fs::read_to_string(&out_path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v.get("_aws").is_some() && v.get("Requests").is_some())
        .collect();
    let _ = std::fs::remove_file(&out_path);
    assert_eq!(emf.len(), 8, "one EMF line per invoke: {emf:?}");
}
