//! `catdog serve` over real TCP: every request form, every error status, the
//! upload page, /health and /model — against tiny models whose answers are
//! known by construction (red → cat, blue → dog). Models come from a file,
//! from moto's S3 server and from HTTP; refused models (bad digest, not
//! ONNX, not an image model) answer 503 with the reason.

use std::time::Duration;

use crate::support::*;
use base64::Engine;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn img(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("images/{name}"))).unwrap()
}

async fn post(base: &str, path: &str, ctype: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .body(body);
    if let Some(c) = ctype {
        req = req.header("content-type", c);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
}

fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

/// After an error the server must still answer a good request correctly.
async fn still_serves(base: &str) {
    let (s, v) = post(base, "/predict", Some("image/png"), img("blue.png")).await;
    assert_eq!((s, v["label"].as_str()), (200, Some("dog")), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_form_gets_the_right_answer() {
    let model = fixture("tiny_caffe_nhwc.onnx");
    let (_p, base) = serve(&["--model", model.to_str().unwrap()], &[]).await;
    wait_ready(&base).await;

    // raw bodies in every supported format
    for (name, ctype, want) in [
        ("red.jpg", "image/jpeg", "cat"),
        ("red.png", "image/png", "cat"),
        ("red.webp", "image/webp", "cat"),
        ("red.bmp", "image/bmp", "cat"),
        ("anim_red_then_blue.gif", "image/gif", "cat"), // first frame
        ("blue.jpg", "application/octet-stream", "dog"),
        ("red_cmyk.jpg", "image/jpeg", "cat"),
        ("red_rgba.png", "image/png", "cat"),
        ("red_palette.png", "image/png", "cat"),
        ("red_exif_rot6.jpg", "image/jpeg", "cat"),
        ("red_1x1.png", "image/png", "cat"),
        ("red_10000x10.png", "image/png", "cat"),
        ("gray16.png", "image/png", "dog"), // mid-grey: B - mean_B > R - mean_R in caffe space
    ] {
        let (s, v) = post(&base, "/predict", Some(ctype), img(name)).await;
        assert_eq!(s, 200, "{name}: {v}");
        assert_eq!(v["label"], want, "{name}: {v}");
        let conf = v["confidence"].as_f64().unwrap();
        assert!(conf > 0.5 && conf <= 1.0, "{name}: {v}");
        assert_eq!(v["scores"][want].as_f64().unwrap(), conf);
        let sum: f64 = v["scores"]
            .as_object()
            .unwrap()
            .values()
            .map(|x| x.as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-4, "{name}: scores sum to {sum}");
        for k in ["decode", "preprocess", "inference", "total"] {
            assert!(
                v["timings_ms"][k].as_f64().is_some(),
                "{name}: no timing {k}: {v}"
            );
        }
        // null while the local file's digest is computed in the background
        let digest = &v["model"]["sha256"];
        assert!(
            digest.is_null() || digest.as_str().unwrap().len() == 64,
            "{digest}"
        );
    }

    // the softmax in the graph is not applied twice: the answer equals the
    // closed form softmax([0.05(R-B), 0.05(B-R)]) of the caffe-space means.
    let (_, v) = post(&base, "/predict", Some("image/png"), img("red.png")).await;
    let d = 0.05 * ((220.0 - 123.68) - (30.0 - 103.939));
    let want = 1.0 / (1.0 + f64::exp(-2.0 * d));
    assert!(
        (v["confidence"].as_f64().unwrap() - want).abs() < 1e-4,
        "{v} vs {want}"
    );

    // multipart: one file, then several (a batch, in order)
    let form = Form::new().part(
        "file",
        Part::bytes(img("red.jpg"))
            .file_name("red.jpg")
            .mime_str("image/jpeg")
            .unwrap(),
    );
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/predict"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["label"], "cat", "{v}");
    let form = Form::new()
        .text("note", "ignored text field")
        .part("files", Part::bytes(img("blue.png")).file_name("a.png"))
        .part("files", Part::bytes(img("red.png")).file_name("b.png"))
        .part("files", Part::bytes(img("blue.jpg")).file_name("c.jpg"));
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/predict"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let labels: Vec<&str> = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["dog", "cat", "dog"], "{v}");

    // JSON: one, several, data: URL
    let body = serde_json::json!({"image": b64(&img("red.png"))})
        .to_string()
        .into_bytes();
    let (s, v) = post(&base, "/predict", Some("application/json"), body).await;
    assert_eq!((s, v["label"].as_str()), (200, Some("cat")), "{v}");
    let body = serde_json::json!({"images": [b64(&img("blue.png")), format!("data:image/jpeg;base64,{}", b64(&img("red.jpg")))]})
        .to_string()
        .into_bytes();
    let (s, v) = post(&base, "/predict", Some("application/json"), body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["predictions"][0]["label"], "dog");
    assert_eq!(v["predictions"][1]["label"], "cat");

    // the tutorial's endpoint and answer shape
    let body =
        serde_json::json!({"image": format!("data:image/png;base64,{}", b64(&img("red.png")))})
            .to_string()
            .into_bytes();
    let (s, v) = post(&base, "/", Some("application/json"), body).await;
    assert_eq!(s, 200, "{v}");
    let p = &v["prediction"];
    assert!(
        p["cat"].as_f64().unwrap() > p["dog"].as_f64().unwrap(),
        "{v}"
    );
    assert_eq!(
        v.as_object().unwrap().len(),
        1,
        "legacy answer has only `prediction`: {v}"
    );

    // /health, /model, the page
    let h: Value = reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    let m: Value = reqwest::get(format!("{base}/model"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["labels"], serde_json::json!(["cat", "dog"]));
    assert_eq!(m["input"]["shape"], serde_json::json!([-1, 224, 224, 3]));
    assert_eq!(m["input"]["layout"], "NHWC");
    assert_eq!(m["preprocessing"]["preset"], "caffe");
    assert_eq!(m["preprocessing"]["color"], "BGR");
    assert_eq!(m["contract_source"]["labels"], "metadata");
    assert_eq!(
        m["size_bytes"].as_u64().unwrap(),
        std::fs::metadata(&model).unwrap().len()
    );
    let models: Value =
        serde_json::from_slice(&std::fs::read(fixture("models.json")).unwrap()).unwrap();
    // The digest of a local file without MODEL_SHA256 is computed in the
    // background after the model is ready: it must arrive, and be right.
    assert_eq!(model_sha(&base).await, models["tiny_caffe_nhwc.onnx"]);
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<input")
            && html.contains("type=\"file\"")
            && html.contains("fetch(\"predict?explain=true\""),
        "upload page lacks its form"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page must not load anything from elsewhere"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error_and_the_server_keeps_serving() {
    let model = fixture("tiny_caffe_nhwc.onnx");
    let (_p, base) = serve(
        &[
            "--model",
            model.to_str().unwrap(),
            "--max-batch",
            "3",
            "--max-pixels",
            "50000000",
        ],
        &[],
    )
    .await;
    wait_ready(&base).await;
    // The catalogue of bad bodies is tests/it/catalogue.rs (HTTP and Lambda);
    // here: what only a raw HTTP connection can do.
    // over the body limit: declared up front, refused before a byte of it is
    // sent (raw TCP: headers only, then read the answer) …
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .unwrap();
        tcp.write_all(
            b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/jpeg\r\nContent-Length: 7340032\r\n\r\n",
        )
        .await
        .unwrap();
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("payload_too_large"), "{answer}");
    }
    let big = vec![0u8; 7 * 1024 * 1024];
    // … and streamed without a length (cut off once past the limit)
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let res = reqwest::Client::new()
        .post(format!("{base}/predict"))
        .header("content-type", "image/jpeg")
        .body(reqwest::Body::wrap_stream(futures_util_stream(chunks)))
        .send()
        .await;
    match res {
        Ok(r) => {
            assert_eq!(r.status().as_u16(), 413);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "payload_too_large");
        }
        // the server may close the connection before we finish sending
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    still_serves(&base).await;

    // routes and methods
    let r = reqwest::get(format!("{base}/nope")).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let r = reqwest::get(format!("{base}/predict")).await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "method_not_allowed"
    );
    let r = reqwest::Client::new()
        .delete(format!("{base}/model"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    still_serves(&base).await;
}

fn futures_util_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core_stream::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_core_stream::iter(chunks)
}

mod futures_core_stream {
    pub use futures_util::stream::{iter, Stream};
}

#[tokio::test(flavor = "multi_thread")]
async fn imagenet_models_answer_cat_dog_or_neither_with_top5() {
    let model = fixture("tiny_imagenet.onnx");
    let (_p, base) = serve(&["--model", model.to_str().unwrap()], &[]).await;
    wait_ready(&base).await;
    for (name, want, top) in [
        ("red.png", "cat", "tabby"),
        ("blue.png", "dog", "golden retriever"),
        ("green.png", "neither", "goldfish"),
    ] {
        let (s, v) = post(&base, "/predict", Some("image/png"), img(name)).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["label"], want, "{name}: {v}");
        assert_eq!(v["imagenet_top5"][0]["name"], top, "{name}: {v}");
        assert_eq!(v["imagenet_top5"].as_array().unwrap().len(), 5);
        let keys: Vec<&String> = v["scores"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["cat", "dog", "neither"]);
    }
    let m: Value = reqwest::get(format!("{base}/model"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["kind"], "imagenet");
    assert_eq!(m["output"]["classes"], 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn model_failures_are_503_with_the_reason_and_overrides_work() {
    // A model without preprocessing metadata is refused, and /health says why.
    let model = fixture("tiny_fixed_batch.onnx");
    let (_p, base) = serve(
        &[
            "--model",
            model.to_str().unwrap(),
            "--labels",
            r#"["cat","dog"]"#,
        ],
        &[],
    )
    .await;
    let h = wait_http(
        &format!("{base}/health"),
        Some(503),
        Duration::from_secs(30),
    )
    .await;
    let mut v: Value = h.json().await.unwrap();
    for _ in 0..100 {
        if v["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        v = reqwest::get(format!("{base}/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    }
    assert_eq!(v["status"], "failed", "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("MODEL_PREPROCESSING"),
        "{v}"
    );
    let got = post(&base, "/predict", Some("image/png"), img("red.png")).await;
    assert_error(&got, 503, "model_unavailable");
    let r = reqwest::get(format!("{base}/model")).await.unwrap();
    assert_eq!(r.status(), 503);

    // With the contract given by env, the same model serves; its batch is
    // fixed at 1, so a batch of three runs one by one, in order.
    let (_p2, base) = serve(
        &["--model", model.to_str().unwrap()],
        &[
            ("MODEL_LABELS", r#"["kitty","doggo"]"#),
            ("MODEL_PREPROCESSING", "torch"),
        ],
    )
    .await;
    wait_ready(&base).await;
    let body = serde_json::json!({"images": [b64(&img("red.png")), b64(&img("blue.png")), b64(&img("red.jpg"))]}).to_string().into_bytes();
    let (s, v) = post(&base, "/predict", Some("application/json"), body).await;
    assert_eq!(s, 200, "{v}");
    let labels: Vec<&str> = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["kitty", "doggo", "kitty"]);
    let m: Value = reqwest::get(format!("{base}/model"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["contract_source"]["labels"], "override");
    assert_eq!(m["input"]["shape"][0], 1);

    // Not an image model / not ONNX at all / wrong digest: refused with the cause.
    for (name, extra, needle) in [
        ("not_an_image.onnx", vec![], "not an image classifier"),
        ("garbage.onnx", vec![], "not a valid ONNX model"),
        (
            "tiny_caffe_nhwc.onnx",
            vec![("MODEL_SHA256", "0".repeat(64))],
            "SHA-256",
        ),
        (
            "tiny_torch_nchw.onnx",
            vec![("MODEL_LABELS", r#"["a","b","c"]"#.to_string())],
            "3 labels",
        ),
    ] {
        let env: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (_p, base) = serve(&["--model", fixture(name).to_str().unwrap()], &env).await;
        let reason = wait_failed(&base).await;
        assert!(reason.contains(needle), "{name}: {reason}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn model_from_s3_and_from_http() {
    let (_moto, endpoint) = moto().await;
    let bytes = std::fs::read(fixture("tiny_torch_nchw.onnx")).unwrap();
    s3_put(&endpoint, "models", "cats/v1.onnx", bytes.clone()).await;
    let env = s3_env(&endpoint);
    let mut env_ref: Vec<(&str, &str)> =
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env_ref.push(("MODEL_URI", "s3://models/cats/v1.onnx"));
    let (_p, base) = serve(&[], &env_ref).await;
    wait_ready(&base).await;
    let (s, v) = post(&base, "/predict", Some("image/jpeg"), img("red.jpg")).await;
    assert_eq!((s, v["label"].as_str()), (200, Some("cat")), "{v}");
    let m: Value = reqwest::get(format!("{base}/model"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["uri"], "s3://models/cats/v1.onnx");
    assert_eq!(m["size_bytes"].as_u64().unwrap(), bytes.len() as u64);

    // a missing object: a clear failure naming the object
    env_ref.pop();
    env_ref.push(("MODEL_URI", "s3://models/nope.onnx"));
    let (_p2, base) = serve(&[], &env_ref).await;
    let reason = wait_failed(&base).await;
    assert!(
        reason.contains("s3://models/nope.onnx") && reason.contains("NoSuchKey"),
        "{reason}"
    );

    // an http(s) URL, verified against MODEL_SHA256
    let (_web, url) = static_http("/models/v1.onnx", bytes.clone()).await;
    let digest = catdog::model::source::sha256_hex(&bytes);
    let (_p3, base) = serve(&["--model", &url, "--model-sha256", &digest], &[]).await;
    wait_ready(&base).await;
    let (s, v) = post(&base, "/predict", Some("image/png"), img("blue.png")).await;
    assert_eq!((s, v["label"].as_str()), (200, Some("dog")), "{v}");
}

/// Clients that write their whole body before reading the answer (Python's
/// urllib) must read the 413 too: the server answers early, then drains the
/// rest of the body (bounded) before closing, as nginx's lingering close.
#[tokio::test(flavor = "multi_thread")]
async fn write_first_clients_read_the_413_for_any_over_limit_body() {
    let model = fixture("tiny_torch_nchw.onnx");
    let (_p, base) = serve(&["--model", model.to_str().unwrap()], &[]).await;
    wait_ready(&base).await;
    let script = r#"
import json, os, sys, urllib.error, urllib.request
import requests
base, tries = sys.argv[1], int(sys.argv[2])
body = os.urandom(7 * 1024 * 1024)  # over the 6 MiB default
def chunks():
    for i in range(0, len(body), 65536):
        yield body[i:i + 65536]
def urllib_post(chunked, ctype):
    headers = {"Content-Type": ctype}
    data = body
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
        data = chunks()
    try:
        urllib.request.urlopen(urllib.request.Request(base + "/predict", data=data, headers=headers), timeout=60)
        return "answered"
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read())["error"]["code"]]
    except Exception as e:
        return type(e).__name__ + ": " + str(e)
def requests_post(chunked, ctype):
    r = requests.post(base + "/predict", data=chunks() if chunked else body, headers={"Content-Type": ctype}, timeout=60)
    return [r.status_code, r.json()["error"]["code"]]
out = {}
for name, post in [("urllib", urllib_post), ("requests", requests_post)]:
    for chunked in (False, True):
        for ctype in ("image/jpeg", "text/plain"):
            out[f"{name} chunked={chunked} {ctype}"] = [post(chunked, ctype) for _ in range(tries)]
print(json.dumps(out))
"#;
    let out = succeed(std::process::Command::new(python()).args(["-c", script, &base, "10"]));
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = serde_json::json!([413, "payload_too_large"]);
    for (case, answers) in results.as_object().unwrap() {
        for a in answers.as_array().unwrap() {
            assert_eq!(a, &want, "{case}: {answers}");
        }
    }
    assert_eq!(results.as_object().unwrap().len(), 8);

    // curl, with a length and chunked.
    let file = std::env::temp_dir().join(format!("catdog-7mb-{}", std::process::id()));
    std::fs::write(&file, vec![7u8; 7 * 1024 * 1024]).unwrap();
    for extra in [&[][..], &["-H", "Transfer-Encoding: chunked"][..]] {
        let out = succeed(
            std::process::Command::new("curl")
                .args([
                    "-s",
                    "-w",
                    "\n%{http_code}",
                    "-H",
                    "Content-Type: image/jpeg",
                ])
                .args(extra)
                .arg("--data-binary")
                .arg(format!("@{}", file.display()))
                .arg(format!("{base}/predict")),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let (json, code) = text.rsplit_once('\n').unwrap();
        assert_eq!(code, "413", "{extra:?}: {text}");
        let v: Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["error"]["code"], "payload_too_large", "{extra:?}");
    }
    let _ = std::fs::remove_file(&file);
    still_serves(&base).await;
}

/// The nice value of each of `pid`'s threads named `name` (Linux's
/// /proc/PID/task/TID/stat, field 19).
fn nice_of_threads(pid: u32, name: &str) -> Vec<i64> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (head, rest) = stat.rsplit_once(") ").unwrap();
        if head.split_once(" (").unwrap().1 != name {
            continue;
        }
        // Fields from the third (state) on: nice is the 19th.
        nice.push(rest.split(' ').nth(16).unwrap().parse().unwrap());
    }
    nice
}

async fn model_weights(base: &str) -> String {
    let v: Value = reqwest::get(format!("{base}/model"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["weights"].as_str().unwrap().to_string()
}

/// A server's default (`CATDOG_PREPACK=later`): it answers with plain
/// weights as soon as the model is loaded, builds packed ones on a thread of
/// low priority, and swaps them in; the packed model answers the same, and
/// its ONNX Runtime threads run at normal priority. Set, `true` packs at
/// load and `false` never.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_answers_at_once_and_swaps_in_packed_weights_later() {
    let model = fixture("tiny_torch_nchw.onnx");
    let model = model.to_str().unwrap();
    let refused = catdog_command()
        .args(["serve", "--model", model, "--prepack", "soon"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("none of true"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let (server, base) = serve(&["--model", model], &[]).await;
    wait_ready(&base).await;
    let first = model_weights(&base).await;
    assert!(first == "packing" || first == "packed", "{first}");
    let (status, before) = post(&base, "/predict", Some("image/png"), img("red.png")).await;
    assert_eq!(
        (status, before["label"].as_str()),
        (200, Some("cat")),
        "{before}"
    );
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while model_weights(&base).await != "packed" {
        assert!(std::time::Instant::now() < until, "never packed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, after) = post(&base, "/predict", Some("image/png"), img("red.png")).await;
    assert_eq!(status, 200, "{after}");
    for label in ["cat", "dog"] {
        let (b, a) = (
            before["scores"][label].as_f64().unwrap(),
            after["scores"][label].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-4, "{label}: {b} plain, {a} packed");
    }
    // The packed model's threads (ONNX Runtime's pool, the inference
    // thread in front of it) run at the process's priority, not the
    // packing thread's.
    for name in ["ort-intra-op", "catdog-infer"] {
        let nice = nice_of_threads(server.child.id(), name);
        assert!(!nice.is_empty(), "no {name} thread");
        assert!(nice.iter().all(|&n| n == 0), "{name}: {nice:?}");
    }

    for (setting, weights) in [("true", "packed"), ("false", "plain")] {
        let (_server, base) = serve(&["--model", model, "--prepack", setting], &[]).await;
        wait_ready(&base).await;
        assert_eq!(model_weights(&base).await, weights, "--prepack {setting}");
    }
}
