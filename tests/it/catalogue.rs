//! The bad-input catalogue: every case below goes to the real binary twice,
//! over real HTTP (`catdog serve`) and through the Lambda path (the bootstrap
//! under a stand-in Runtime API, Function URL events). Bad requests must get
//! their documented 4xx JSON error; odd but valid pictures must get the right
//! answer; and after every case a good request must still be answered right.

use std::time::Duration;

use crate::support::lambda_api::*;
use crate::support::*;
use base64::Engine;
use serde_json::{json, Value};

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// `{"error": {"code", "message"}}` with this status.
    Error(u16, &'static str),
    /// 200 with this label (`None`: any label, probabilities summing to 1).
    Label(Option<&'static str>),
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<String>,
    body: Vec<u8>,
    want: Want,
}

fn img(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("images/{name}"))).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn post(name: &'static str, ctype: Option<&str>, body: Vec<u8>, want: Want) -> Case {
    Case {
        name,
        method: "POST",
        path: "/predict".into(),
        content_type: ctype.map(str::to_owned),
        body,
        want,
    }
}

fn multipart(parts: &str) -> Vec<u8> {
    parts.replace('\n', "\r\n").into_bytes()
}

/// Limits of the server under test: `MAX_BATCH=3`, default body limit (6 MiB),
/// `MAX_PIXELS=50000000`.
fn cases() -> Vec<Case> {
    use Want::*;
    let random: Vec<u8> = (0..2000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let mut polyglot = img("red.png");
    polyglot
        .extend_from_slice(b"<html><script>alert(1)</script></html>PK\x03\x04 not really a zip");
    let file_part = |name: &str, bytes: &[u8]| {
        let mut b = multipart(&format!(
            "--XYZ\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\nContent-Type: image/jpeg\n\n"
        ));
        b.extend_from_slice(bytes);
        b.extend_from_slice(b"\r\n--XYZ--\r\n");
        b
    };
    vec![
        post(
            "empty body",
            Some("image/jpeg"),
            vec![],
            Error(400, "empty_body"),
        ),
        post(
            "wrong content type",
            Some("text/plain"),
            b"hello".to_vec(),
            Error(415, "unsupported_media_type"),
        ),
        post(
            "missing content type",
            None,
            img("red.png"),
            Error(415, "unsupported_media_type"),
        ),
        post(
            "truncated JPEG",
            Some("image/jpeg"),
            img("truncated.jpg"),
            Error(400, "invalid_image"),
        ),
        post(
            "truncated PNG",
            Some("image/png"),
            img("truncated.png"),
            Error(400, "invalid_image"),
        ),
        post(
            "random bytes",
            Some("image/jpeg"),
            random,
            Error(400, "invalid_image"),
        ),
        post(
            "text file named .jpg",
            Some("multipart/form-data; boundary=XYZ"),
            file_part("notes.jpg", &img("text.jpg")),
            Error(400, "invalid_image"),
        ),
        post(
            "decompression bomb (PNG declaring 50000x50000)",
            Some("image/png"),
            img("bomb_50000x50000.png"),
            Error(422, "image_too_large"),
        ),
        post(
            "body over the limit",
            Some("image/jpeg"),
            vec![0xff; 7 * 1024 * 1024],
            Error(413, "payload_too_large"),
        ),
        post(
            "multipart without boundary",
            Some("multipart/form-data"),
            b"--x\r\n".to_vec(),
            Error(400, "invalid_multipart"),
        ),
        post(
            "unterminated multipart",
            Some("multipart/form-data; boundary=XYZ"),
            multipart(
                "--XYZ\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\n\nabc",
            ),
            Error(400, "invalid_multipart"),
        ),
        post(
            "multipart with no file",
            Some("multipart/form-data; boundary=XYZ"),
            multipart("--XYZ\nContent-Disposition: form-data; name=\"note\"\n\nhello\n--XYZ--\n"),
            Error(400, "no_image"),
        ),
        post(
            "base64 garbage",
            Some("application/json"),
            br#"{"image": "@@not base64@@"}"#.to_vec(),
            Error(400, "invalid_base64"),
        ),
        post(
            "JSON syntax error",
            Some("application/json"),
            br#"{"image": "#.to_vec(),
            Error(400, "invalid_json"),
        ),
        post(
            "JSON of the wrong shape",
            Some("application/json"),
            br#"{"picture": "x"}"#.to_vec(),
            Error(400, "invalid_json"),
        ),
        post(
            "JSON of the wrong type",
            Some("application/json"),
            br#"{"image": 42}"#.to_vec(),
            Error(400, "invalid_json"),
        ),
        post(
            "JSON list holding a number",
            Some("application/json"),
            br#"{"images": ["aGk=", 7]}"#.to_vec(),
            Error(400, "invalid_json"),
        ),
        post(
            "JSON empty list",
            Some("application/json"),
            br#"{"images": []}"#.to_vec(),
            Error(400, "no_image"),
        ),
        post(
            "batch over the limit (4 > 3)",
            Some("application/json"),
            json!({"images": vec![b64(&img("red.png")); 4]})
                .to_string()
                .into_bytes(),
            Error(422, "too_many_images"),
        ),
        post(
            "TIFF",
            Some("image/tiff"),
            img("red.tiff"),
            Error(415, "unsupported_image_format"),
        ),
        Case {
            name: "unknown route",
            method: "GET",
            path: "/admin".into(),
            content_type: None,
            body: vec![],
            want: Error(404, "not_found"),
        },
        Case {
            name: "wrong method on /predict",
            method: "GET",
            path: "/predict".into(),
            content_type: None,
            body: vec![],
            want: Error(405, "method_not_allowed"),
        },
        Case {
            name: "DELETE /model",
            method: "DELETE",
            path: "/model".into(),
            content_type: None,
            body: vec![],
            want: Error(405, "method_not_allowed"),
        },
        Case {
            name: "very long URL",
            method: "POST",
            path: format!("/{}", "a".repeat(16 * 1024)),
            content_type: Some("image/png".into()),
            body: img("red.png"),
            want: Error(404, "not_found"),
        },
        // Odd but valid pictures: answered, and answered right.
        post(
            "animated GIF (first frame)",
            Some("image/gif"),
            img("anim_red_then_blue.gif"),
            Label(Some("cat")),
        ),
        post(
            "CMYK JPEG",
            Some("image/jpeg"),
            img("red_cmyk.jpg"),
            Label(Some("cat")),
        ),
        post(
            "16-bit PNG",
            Some("image/png"),
            img("gray16.png"),
            Label(Some("dog")),
        ),
        post(
            "grayscale JPEG",
            Some("image/jpeg"),
            img("gray.jpg"),
            Label(None),
        ),
        post(
            "1x1 picture",
            Some("image/png"),
            img("red_1x1.png"),
            Label(Some("cat")),
        ),
        post(
            "10000x10 picture",
            Some("image/png"),
            img("red_10000x10.png"),
            Label(Some("cat")),
        ),
        post(
            "EXIF-rotated photo",
            Some("image/jpeg"),
            img("red_exif_rot6.jpg"),
            Label(Some("cat")),
        ),
        post(
            "polyglot (PNG + HTML + ZIP bytes)",
            Some("image/png"),
            polyglot,
            Label(Some("cat")),
        ),
        post(
            "PNG sent as image/jpeg",
            Some("image/jpeg"),
            img("red.png"),
            Label(Some("cat")),
        ),
    ]
}

/// Checks one answer against the case; `via` names the path in messages.
fn check(case: &Case, via: &str, status: u16, body: &Value) {
    let ctx = format!("{via}: {}: {status} {body}", case.name);
    match case.want {
        Want::Error(want_status, code) => {
            assert_eq!(status, want_status, "{ctx}");
            assert_eq!(body["error"]["code"], code, "{ctx}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "{ctx}");
            // Errors describe the request, never the machine.
            for leak in ["/work/", "/home/", "/tmp/", "target/", ".rs:", "panicked"] {
                assert!(!message.contains(leak), "{ctx}: message leaks {leak:?}");
            }
        }
        Want::Label(label) => {
            assert_eq!(status, 200, "{ctx}");
            if let Some(label) = label {
                assert_eq!(body["label"], label, "{ctx}");
            }
            let sum: f64 = body["scores"]
                .as_object()
                .unwrap_or_else(|| panic!("{ctx}: no scores"))
                .values()
                .filter_map(Value::as_f64)
                .sum();
            assert!((sum - 1.0).abs() < 1e-4, "{ctx}: scores sum to {sum}");
        }
    }
}

const SERVER_LIMITS: [(&str, &str); 2] = [("MAX_BATCH", "3"), ("MAX_PIXELS", "50000000")];

#[tokio::test(flavor = "multi_thread")]
async fn catalogue_over_http() {
    let model = fixture("tiny_caffe_nhwc.onnx");
    let (_p, base) = serve(&["--model", model.to_str().unwrap()], &SERVER_LIMITS).await;
    wait_ready(&base).await;
    let client = reqwest::Client::new();
    let send = |method: &str, path: &str, ctype: Option<&str>, body: Vec<u8>| {
        let mut req = client
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .timeout(Duration::from_secs(60));
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        if !body.is_empty() {
            req = req.body(body);
        }
        req.send()
    };
    let good = img("blue.png");
    let cases = cases();
    assert!(cases.len() >= 25, "the catalogue has {} cases", cases.len());
    for case in &cases {
        let (status, text) = if case.body.len() > 6 * 1024 * 1024 {
            // The server answers 413 from Content-Length and may close before
            // the client has sent the body: read its answer regardless.
            raw_post(&base, case).await
        } else {
            let res = send(
                case.method,
                &case.path,
                case.content_type.as_deref(),
                case.body.clone(),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            (res.status().as_u16(), res.text().await.unwrap())
        };
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{}: not JSON ({status}): {text}", case.name));
        check(case, "HTTP", status, &body);
        let res = send("POST", "/predict", Some("image/png"), good.clone())
            .await
            .unwrap();
        let after: Value = res.json().await.unwrap();
        assert_eq!(after["label"], "dog", "HTTP: after {}: {after}", case.name);
        println!("HTTP ok: {}", case.name);
    }

    // Headers over the HTTP layer's limit are refused there (431, no JSON:
    // before any route runs); the server carries on.
    let res = client
        .post(format!("{base}/predict"))
        .header("content-type", "image/png")
        .header("x-junk", "j".repeat(1024 * 1024))
        .body(good.clone())
        .send()
        .await;
    if let Ok(r) = res {
        assert!(r.status().is_client_error(), "1 MiB header: {}", r.status());
    }
    let after: Value = send("POST", "/predict", Some("image/png"), good.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["label"], "dog", "after a 1 MiB header: {after}");
}

/// POSTs over a raw TCP connection, ignoring a failed write (the server may
/// refuse and close early), and returns the status and body it answered.
async fn raw_post(base: &str, case: &Case) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: test\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        case.path,
        case.content_type.as_deref().unwrap_or("image/jpeg"),
        case.body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let _ = tcp.write_all(&case.body).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}: no HTTP answer: {answer:?}", case.name));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// A Function URL event for `case`, from the recorded sample event.
fn function_url_event(case: &Case) -> Value {
    let mut ev = event("function-url.json");
    ev["rawPath"] = json!(case.path);
    ev["requestContext"]["http"]["method"] = json!(case.method);
    ev["requestContext"]["http"]["path"] = json!(case.path);
    let headers = ev["headers"].as_object_mut().unwrap();
    match &case.content_type {
        Some(c) => headers.insert("content-type".into(), json!(c)),
        None => headers.remove("content-type"),
    };
    if case.body.is_empty() {
        ev["body"] = json!("");
        ev["isBase64Encoded"] = json!(false);
    } else {
        ev["body"] = json!(b64(&case.body));
        ev["isBase64Encoded"] = json!(true);
    }
    ev
}

#[tokio::test(flavor = "multi_thread")]
async fn catalogue_through_the_lambda_path() {
    let mut api = Harness::start().await;
    let model = fixture("tiny_caffe_nhwc.onnx");
    let mut env: Vec<(String, String)> = SERVER_LIMITS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("MODEL_URI".into(), model.to_string_lossy().into_owned()));
    let _bootstrap = api.bootstrap(&env);
    let good = post(
        "good",
        Some("image/png"),
        img("blue.png"),
        Want::Label(Some("dog")),
    );
    let cases = cases();
    for (i, case) in cases.iter().enumerate() {
        let id = format!("bad-{i}");
        let (status, body) = http_of(api.invoke(&id, function_url_event(case)).await, &id);
        check(case, "Lambda", status, &body);
        let id = format!("good-{i}");
        let (status, body) = http_of(api.invoke(&id, function_url_event(&good)).await, &id);
        check(
            &good,
            &format!("Lambda, after {}", case.name),
            status,
            &body,
        );
        println!("Lambda ok: {}", case.name);
    }
}
