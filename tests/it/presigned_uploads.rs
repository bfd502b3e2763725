//! Pictures over the invoke limit, over HTTP: `POST /uploads` presigns a PUT
//! into the uploads bucket (moto's S3 server), the picture goes there, and
//! `GET /uploads/{id}` answers as `catdog predict` does for the same file;
//! `/predict {"s3": …}` reads allowed buckets only.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::presigned::*;
use crate::support::*;

fn close(a: &Value, b: &Value) {
    assert_eq!(a["label"], b["label"], "{a}\n{b}");
    for (label, p) in b["scores"].as_object().unwrap() {
        let (x, y) = (a["scores"][label].as_f64().unwrap(), p.as_f64().unwrap());
        assert!((x - y).abs() < 1e-6, "{label}: {x} vs {y}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_picture_over_the_invoke_limit_is_answered_through_a_presigned_upload() {
    let dir = std::env::temp_dir().join(format!("catdog-uploads-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("big.png");
    let bytes = big_png(&file);
    let want = cli_answer(&fixture("tiny_torch_nchw.onnx"), &file);
    let (_moto, _server, base, endpoint) = uploads_stack(&[]).await;
    let http = reqwest::Client::new();

    // Too big for one request, as on Lambda.
    let direct = http
        .post(format!("{base}/predict"))
        .header("content-type", "image/png")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 413);

    // 1. The ticket.
    let res = http
        .post(format!("{base}/uploads"))
        .json(&json!({"bytes": bytes.len(), "content_type": "image/png"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let ticket: Value = res.json().await.unwrap();
    let id = ticket["id"].as_str().unwrap().to_string();
    assert!(id.ends_with(".png") && id.len() == 36, "{ticket}");
    assert_eq!(ticket["key"], format!("{PREFIX}{id}"));
    assert_eq!(ticket["bucket"], BUCKET);
    assert_eq!(ticket["method"], "PUT");
    assert_eq!(ticket["expires_in_s"], 300);
    assert_eq!(ticket["headers"]["if-none-match"], "*", "{ticket}");
    assert_eq!(ticket["result"], format!("/uploads/{id}"));
    let url = ticket["url"].as_str().unwrap();
    assert!(
        url.starts_with(&endpoint) && url.contains("X-Amz-Signature="),
        "{url}"
    );
    assert_eq!(ticket["headers"]["content-length"], bytes.len().to_string());

    // Before the PUT: nothing there yet.
    let early = http
        .get(format!("{base}/uploads/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 404);
    let early: Value = early.json().await.unwrap();
    assert_eq!(early["error"]["code"], "no_such_key", "{early}");

    // 2. The PUT, with the signed headers, by another client than catdog's.
    let mut put = http.put(url).body(bytes.clone());
    for (k, v) in ticket["headers"].as_object().unwrap() {
        put = put.header(k, v.as_str().unwrap());
    }
    let put = put.send().await.unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    // The ticket takes one PUT: a second, as signed, is refused by S3
    // (a conditional write, `If-None-Match: *`), so one ticket cannot
    // fill the bucket's versions nor start a second inference.
    let mut twice = http.put(url).body(bytes.clone());
    for (k, v) in ticket["headers"].as_object().unwrap() {
        twice = twice.header(k, v.as_str().unwrap());
    }
    let twice = twice.send().await.unwrap();
    assert_eq!(twice.status(), 412, "{}", twice.text().await.unwrap());

    // 3. The answer: classified now (no event here), then read back.
    let res = http
        .get(format!("{base}/uploads/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["catdog-record"], "written");
    let got: Value = res.json().await.unwrap();
    close(&got, &want);
    assert_eq!(got["key"], format!("{PREFIX}{id}"));
    assert!(got["etag"].is_string(), "{got}");
    let again = http
        .get(format!("{base}/uploads/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["catdog-record"], "existing");
    let mut again: Value = again.json().await.unwrap();
    let mut first = got.clone();
    // The first answer's timings also count writing the record itself.
    for v in [&mut again, &mut first] {
        v.as_object_mut().unwrap().remove("timings_ms");
    }
    assert_eq!(again, first, "the same record, not a second inference");
    // The same tags and record as an S3 event writes.
    let s3 = s3_test_client(&endpoint);
    let tags = s3
        .get_object_tagging()
        .bucket(BUCKET)
        .key(format!("{PREFIX}{id}"))
        .send()
        .await
        .unwrap();
    let label = tags.tag_set().iter().find(|t| t.key() == "catdog-label");
    assert_eq!(label.map(|t| t.value()), want["label"].as_str());
    let stored = s3
        .get_object()
        .bucket(BUCKET)
        .key(format!("catdog-results/{PREFIX}{id}.json"))
        .send()
        .await
        .expect("the record");
    let mut stored: Value =
        serde_json::from_slice(&stored.body.collect().await.unwrap().into_bytes()).unwrap();
    stored.as_object_mut().unwrap().remove("timings_ms");
    assert_eq!(stored, first, "the route answers the record S3 holds");

    // A record written first by the worker S3 events run (here through
    // `catdog predict --write-results`, the same worker) is what the route
    // reads: no second inference.
    let second = upload(&base, &bytes, "image/png", &[]).await;
    let out = Command::new(catdog_bin())
        .args(["predict", "--write-results", "--model"])
        .arg(fixture("tiny_torch_nchw.onnx"))
        .arg(format!("s3://{BUCKET}/{PREFIX}"))
        .envs(s3_env(&endpoint))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = http
        .get(format!("{base}/uploads/{}", second["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["catdog-record"], "existing");
    close(&res.json::<Value>().await.unwrap(), &want);

    // By reference: the uploads bucket and allowed buckets only.
    let by_ref = |s3: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let res = http
                .post(format!("{base}/predict"))
                .json(&json!({ "s3": s3 }))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, answer) = by_ref(format!("s3://{BUCKET}/{PREFIX}{id}")).await;
    assert_eq!(status, 200, "{answer}");
    close(&answer, &want);
    let (status, answer) = by_ref("s3://private-bucket/secret.png".into()).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("s3_not_allowed")),
        "{answer}"
    );
    // A dot-segment key is refused before any S3 call (an HTTP client on
    // the way could resolve it to another key).
    for key in [
        "photos/../secret.png",
        "photos/./a.png",
        "photos/a/../../b.png",
    ] {
        let (status, answer) = by_ref(format!("s3://{key}")).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (403, Some("s3_not_allowed")),
            "{key}: {answer}"
        );
    }
    let (status, answer) = by_ref("s3://photos/missing.png".into()).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("no_such_key")),
        "{answer}"
    );

    // Bad tickets.
    for (body, status, code) in [
        (
            json!({"bytes": 65 * 1024 * 1024, "content_type": "image/png"}),
            413,
            "payload_too_large",
        ),
        (
            json!({"bytes": 10, "content_type": "text/html"}),
            415,
            "unsupported_media_type",
        ),
        // Only the formats catdog decodes: not a page a browser would render.
        (
            json!({"bytes": 10, "content_type": "image/svg+xml"}),
            415,
            "unsupported_media_type",
        ),
        (
            json!({"bytes": 10, "content_type": "image/tiff"}),
            415,
            "unsupported_media_type",
        ),
        (json!({"bytes": 10}), 400, "invalid_json"),
        (
            json!({"bytes": "ten", "content_type": "image/png"}),
            400,
            "invalid_json",
        ),
        (
            json!({"bytes": 0, "content_type": "image/png"}),
            400,
            "empty_body",
        ),
    ] {
        let res = http
            .post(format!("{base}/uploads"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{body}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
    }
    let res = http
        .get(format!("{base}/uploads/..%2F..%2Fsecret"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_uploads_bucket_the_routes_say_so() {
    let model = fixture("tiny_torch_nchw.onnx").display().to_string();
    let (_server, base) = serve(&["--model", &model], &[]).await;
    wait_ready(&base).await;
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{base}/uploads"))
        .json(&json!({"bytes": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "uploads_off", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("CATDOG_UPLOADS"));
    let res = http
        .post(format!("{base}/predict"))
        .json(&json!({"s3": "s3://any/thing.png"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // …and the server keeps serving.
    let v = predict_json(
        &base,
        std::fs::read(fixture("images/red.jpg")).unwrap(),
        "image/jpeg",
    )
    .await;
    assert!(v["label"].is_string(), "{v}");
}
