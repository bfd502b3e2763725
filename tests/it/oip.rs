//! The Open Inference Protocol (v2 REST) against the real server, with the
//! model-serving world's own clients from PyPI (tests/clients/oip_clients.py:
//! tritonclient[http] in binary and JSON, the kserve SDK's
//! InferenceRESTClient in JSON and binary): each must read the label and
//! probabilities `POST /predict` answers, for a labelled and an ImageNet
//! model (tritonclient: all outputs, the classification extension, FP32
//! tensors preprocessed by PIL + numpy); their errors read as messages. And
//! `/metrics`, parsed by prometheus_client's own parser: its counters move by
//! exactly the requests sent; the key guards `/metrics` and the v2 model
//! routes.

use std::collections::HashMap;

use crate::support::*;
use serde_json::{json, Value};

fn clients_script(name: &str) -> std::path::PathBuf {
    workspace().join("tests/clients").join(name)
}

/// Runs a script of tests/clients with the test virtualenv's Python and
/// returns its JSON output; fails the test with its stderr if it fails.
fn run_python(script: &str, args: &[&str], stdin: Option<&[u8]>) -> Value {
    use std::io::Write;
    let mut child = std::process::Command::new(python())
        .arg(clients_script(script))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python (make test installs the virtualenv)");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{script}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `/predict`'s labels and scores (in label order) for `files`, as one batch.
async fn predict(base: &str, files: &[std::path::PathBuf]) -> (Vec<String>, Vec<Vec<f64>>) {
    let mut form = reqwest::multipart::Form::new();
    for f in files {
        form = form.part(
            "files",
            reqwest::multipart::Part::bytes(std::fs::read(f).unwrap()).file_name("p"),
        );
    }
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/predict"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let predictions = match v.get("predictions") {
        Some(p) => p.as_array().unwrap().clone(),
        None => vec![v.clone()],
    };
    let labels = predictions
        .iter()
        .map(|p| p["label"].as_str().unwrap().to_string())
        .collect();
    let scores = predictions
        .iter()
        .map(|p| {
            p["scores"]
                .as_object()
                .unwrap()
                .values()
                .map(|s| s.as_f64().unwrap())
                .collect()
        })
        .collect();
    (labels, scores)
}

/// `catdog serve` of the tiny labelled model, given its digest so that its
/// version is known from the start; waits until it is ready.
async fn serve_tiny_with_digest() -> (Proc, String) {
    let model = fixture("tiny_torch_nchw.onnx");
    let sha = fixture_sha("tiny_torch_nchw.onnx");
    let served = serve(
        &["--model", model.to_str().unwrap(), "--model-sha256", &sha],
        &[],
    )
    .await;
    wait_ready(&served.1).await;
    served
}

/// The served model's SHA-256, as `/model` gives it (the servers here are
/// given it, so it is known from the start).
async fn model_sha(base: &str) -> String {
    let info: Value = reqwest::get(format!("{base}/model"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    info["sha256"]
        .as_str()
        .expect("the digest is known")
        .to_string()
}

fn assert_same(client: &str, got: &Value, labels: &[String], scores: &[Vec<f64>], tolerance: f64) {
    let got_labels: Vec<String> = serde_json::from_value(got["labels"].clone()).unwrap();
    assert_eq!(got_labels, labels, "{client}: {got}");
    let got_probs: Vec<Vec<f64>> = serde_json::from_value(got["probabilities"].clone()).unwrap();
    assert_eq!(got_probs.len(), scores.len(), "{client}: {got}");
    for (row, want) in got_probs.iter().zip(scores) {
        assert_eq!(row.len(), want.len(), "{client}: {got}");
        for (a, b) in row.iter().zip(want) {
            // /predict's JSON and the protocol's carry the same f32 (written
            // shortest, read by Python as a double)
            let (a, b) = (*a as f32, *b as f32);
            assert!(
                (a - b).abs() <= tolerance as f32,
                "{client}: {a} vs /predict {b}"
            );
        }
    }
}

/// A PIL + numpy preprocessed photo (torch style, CHW) and its PNG, from the
/// fixtures' references; `None` (skipped, or failed in CI) without shared data.
fn reference_tensor() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let index = fixture("preprocess/index.json");
    if !index.exists() {
        skip_or_fail(
            "oip: FP32 input from a client's own preprocessing",
            "no preprocessing references (the shared photos were missing when the fixtures were built)",
        );
        return None;
    }
    let index: Vec<Value> = serde_json::from_slice(&std::fs::read(index).unwrap()).unwrap();
    let r = index
        .iter()
        .find(|r| r["kind"] == "png" && r["preset"] == "torch")
        .expect("a PNG torch reference");
    Some((
        r["image"].as_str().unwrap().into(),
        r["tensor"].as_str().unwrap().into(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn tritonclient_and_kserve_read_what_predict_answers() {
    let (_p, base) = serve_tiny_with_digest().await;
    let images = vec![fixture("images/red.png"), fixture("images/blue.jpg")];
    let (labels, scores) = predict(&base, &images).await;
    assert_eq!(labels, ["cat", "dog"]);
    let tensor = reference_tensor();
    let args = json!({
        "base": base,
        "model": "catdog",
        "images": images,
        "tensor": tensor.as_ref().map(|(_, t)| json!({"path": t, "input": "input", "shape": [1, 3, 224, 224]})),
    });
    let out = run_python("oip_clients.py", &[&args.to_string()], None);
    let checks = &out["checks"];
    for ok in [
        "triton_live",
        "triton_ready",
        "triton_model_ready",
        "kserve_live",
        "kserve_ready",
        "kserve_model_ready",
    ] {
        assert_eq!(checks[ok], true, "{ok}: {checks}");
    }
    let meta = &checks["triton_model_metadata"];
    assert_eq!(meta["name"], "catdog");
    let sha = model_sha(&base).await;
    assert_eq!(
        meta["versions"],
        json!([&sha[..12]]),
        "the version is the SHA-256 prefix"
    );
    assert_eq!(
        meta["inputs"][0],
        json!({"name": "image", "datatype": "BYTES", "shape": [-1]})
    );
    assert_eq!(
        meta["inputs"][1],
        json!({"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]})
    );
    assert_eq!(
        meta["outputs"][0],
        json!({"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]})
    );
    let extensions = checks["triton_server_metadata"]["extensions"]
        .as_array()
        .unwrap();
    assert!(
        extensions.contains(&json!("binary_tensor_data")),
        "{checks}"
    );

    for client in [
        "tritonclient_binary",
        "tritonclient_json",
        "tritonclient_all_outputs",
        "kserve_json",
        "kserve_binary",
    ] {
        assert_same(client, &out["results"][client], &labels, &scores, 0.0);
    }
    assert_eq!(out["results"]["tritonclient_binary"]["id"], "req-1");
    assert_eq!(
        out["results"]["tritonclient_binary"]["model_version"],
        &sha[..12]
    );

    // classification: "probability:index:label", most likely first
    let ranked = out["results"]["tritonclient_classification"]
        .as_array()
        .unwrap();
    for (row, (label, s)) in ranked.iter().zip(labels.iter().zip(&scores)) {
        let first: Vec<&str> = row[0].as_str().unwrap().splitn(3, ':').collect();
        assert_eq!(first[2], label, "{row}");
        let best = s.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(
            first[0].parse::<f64>().unwrap() as f32,
            best as f32,
            "{row}"
        );
        assert_eq!(row.as_array().unwrap().len(), 2);
    }

    // FP32: the client preprocessed with PIL + numpy; catdog's own
    // preprocessing agrees to 1e-5 per value (tests/it/preprocess_reference.rs)
    if let Some((png, _)) = &tensor {
        let (l, s) = predict(&base, std::slice::from_ref(png)).await;
        assert_same(
            "tritonclient_fp32",
            &out["results"]["tritonclient_fp32"],
            &l,
            &s,
            1e-4,
        );
    }

    // errors in the protocol's shape, which tritonclient reads as its message
    let unknown = &out["errors"]["unknown_model"];
    assert_eq!(unknown["status"], "404", "{unknown}");
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("unknown model `no-such-model`"),
        "{unknown}"
    );
    let output = &out["errors"]["unknown_output"];
    assert_eq!(output["status"], "400", "{output}");
    assert!(
        output["message"].as_str().unwrap().contains("`logits`"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_imagenet_model_answers_cat_dog_and_neither_as_predict_does() {
    let model = fixture("tiny_imagenet.onnx");
    let (_p, base) = serve(
        &["--model", model.to_str().unwrap(), "--model-name", "zoo"],
        &[],
    )
    .await;
    wait_ready(&base).await;
    let images = vec![
        fixture("images/red.png"),
        fixture("images/blue.png"),
        fixture("images/green.png"),
    ];
    let (labels, scores) = predict(&base, &images).await;
    assert_eq!(labels, ["cat", "dog", "neither"]);
    let args = json!({"base": base, "model": "zoo", "images": images, "tensor": null});
    let out = run_python("oip_clients.py", &[&args.to_string()], None);
    assert_eq!(
        out["checks"]["triton_model_metadata"]["outputs"][0]["shape"],
        json!([-1, 3]),
        "cat, dog, neither"
    );
    for client in [
        "tritonclient_binary",
        "tritonclient_json",
        "kserve_json",
        "kserve_binary",
    ] {
        assert_same(client, &out["results"][client], &labels, &scores, 0.0);
    }
}

/// Every sample of a `/metrics` text, parsed by prometheus_client, keyed by
/// its name and sorted labels.
async fn scrape(base: &str) -> (HashMap<String, f64>, Value) {
    let res = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        res.headers()
    );
    let text = res.bytes().await.unwrap();
    let families = run_python("parse_metrics.py", &[], Some(&text));
    let mut samples = HashMap::new();
    for family in families.as_array().unwrap() {
        for s in family["samples"].as_array().unwrap() {
            let mut labels: Vec<String> = s["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                .collect();
            labels.sort();
            samples.insert(
                format!("{}{{{}}}", s["name"].as_str().unwrap(), labels.join(",")),
                s["value"].as_f64().unwrap(),
            );
        }
    }
    (samples, families)
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_count_exactly_the_requests_sent() {
    let (_p, base) = serve_tiny_with_digest().await;
    let (before, _) = scrape(&base).await;
    let client = reqwest::Client::new();
    let red = std::fs::read(fixture("images/red.png")).unwrap();
    for _ in 0..3 {
        let r = client
            .post(format!("{base}/predict"))
            .header("content-type", "image/png")
            .body(red.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for _ in 0..2 {
        let r = client
            .post(format!("{base}/predict"))
            .header("content-type", "image/png")
            .body("not a picture")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let b64 = base64_of(&red);
    let r = client
        .post(format!("{base}/v2/models/catdog/infer"))
        .json(&json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": [b64, b64]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(
        client
            .get(format!("{base}/no-such-path"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let (after, families) = scrape(&base).await;
    let moved = |key: &str| value(&after, key) - value(&before, key);
    let req = |route: &str, status: u16, method: &str| {
        format!("catdog_requests_total{{method={method},route={route},status={status}}}")
    };
    assert_eq!(moved(&req("/predict", 200, "POST")), 3.0, "{after:?}");
    assert_eq!(moved(&req("/predict", 400, "POST")), 2.0);
    assert_eq!(moved(&req("/v2/models/{name}/infer", 200, "POST")), 1.0);
    assert_eq!(
        moved(&req("unmatched", 404, "GET")),
        1.0,
        "unknown paths are one series"
    );
    // the first scrape itself was counted once it was answered
    assert_eq!(moved(&req("/metrics", 200, "GET")), 1.0);
    // stage histograms: one observation per classified request
    for stage in ["read", "queue", "decode", "preprocess", "inference"] {
        let key = format!("catdog_{stage}_seconds_count{{route=/predict}}");
        assert_eq!(moved(&key), 3.0, "{key}");
        let key = format!("catdog_{stage}_seconds_count{{route=/v2/models/{{name}}/infer}}");
        assert_eq!(moved(&key), 1.0, "{key}");
    }
    assert_eq!(
        moved("catdog_request_duration_seconds_count{route=/predict}"),
        5.0
    );
    // four model runs: three of one picture, one of two
    assert_eq!(moved("catdog_batch_size_count{}"), 4.0);
    assert_eq!(moved("catdog_batch_size_sum{}"), 5.0);
    assert_eq!(
        value(&after, "catdog_requests_in_flight{}"),
        1.0,
        "the scrape itself"
    );
    assert!(value(&after, "catdog_model_load_seconds{}") > 0.0);
    let sha = model_sha(&base).await;
    let info = format!(
        "catdog_model_info{{kind=labels,name=catdog,sha256={sha},uri_scheme=file,version={}}}",
        &sha[..12]
    );
    assert_eq!(value(&after, &info), 1.0, "{after:?}");
    let types: HashMap<String, String> = families
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(types["catdog_requests"], "counter", "{types:?}");
    assert_eq!(types["catdog_inference_seconds"], "histogram");
    assert_eq!(types["catdog_requests_in_flight"], "gauge");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_the_v2_model_routes_need_the_key_when_one_is_set() {
    const KEY: &str = "metrics-test-key-0123456789";
    let model = fixture("tiny_torch_nchw.onnx");
    let (_p, base) = serve(
        &["--model", model.to_str().unwrap()],
        &[("CATDOG_API_KEY", KEY)],
    )
    .await;
    wait_ready(&base).await;
    let client = reqwest::Client::new();
    for path in ["/metrics", "/model", "/v2/models/catdog"] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // the v2 refusal is in the protocol's shape
    let r = client
        .get(format!("{base}/v2/models/catdog"))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("API key"), "{v}");
    // health stays public
    for path in [
        "/v2/health/ready",
        "/v2/health/live",
        "/v2/models/catdog/ready",
        "/v2",
    ] {
        assert_eq!(
            client
                .get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{path}"
        );
    }
    let args = json!({"base": base, "model": "catdog", "images": [fixture("images/red.png")],
                      "tensor": null, "headers": {"Authorization": format!("Bearer {KEY}")}});
    let out = run_python("oip_clients.py", &[&args.to_string()], None);
    assert_eq!(
        out["results"]["tritonclient_binary"]["labels"],
        json!(["cat"])
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
