//! `POST /feedback` on the real binary: a correction is stored where
//! `catdog finetune --data` reads a class folder (`<label>/<sha256>.<ext>`
//! and a JSON sidecar), once per picture and label, in a folder and in S3
//! (moto, by an upload's id); refusals; the page's buttons only where
//! corrections are stored; `/metrics` counts (answered, corrected).

use std::path::{Path, PathBuf};

use crate::support::*;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("catdog-fb-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn post(url: &str, body: reqwest::Body, content_type: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn sidecar(root: &Path, label: &str, sha: &str) -> Value {
    let text = std::fs::read(root.join(label).join(format!("{sha}.json"))).unwrap();
    serde_json::from_slice(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_correction_is_stored_once_where_finetune_reads_it() {
    let root = tmp("folder");
    let model = fixture("tiny_torch_nchw.onnx");
    let (_p, base) = serve(
        &[
            "--model",
            model.to_str().unwrap(),
            "--feedback",
            root.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    wait_ready(&base).await;
    // Known before the first correction, so that its sidecar records it.
    let model_sha256 = model_sha(&base).await;
    let red = std::fs::read(fixture("images/red.jpg")).unwrap();
    let sha = sha256(&red);
    let url = format!("{base}/feedback?label=dog");

    // The tiny model calls red "cat"; a person says dog.
    let (status, v) = post(&url, red.clone().into(), "image/jpeg").await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        (v["label"].as_str(), v["answered"].as_str()),
        (Some("dog"), Some("cat")),
        "{v}"
    );
    assert_eq!(v["stored"], format!("dog/{sha}.jpg"));
    assert_eq!(v["new"], true);
    assert_eq!(
        std::fs::read(root.join(format!("dog/{sha}.jpg"))).unwrap(),
        red
    );
    let first = sidecar(&root, "dog", &sha);
    assert_eq!(first["answered"], "cat");
    assert_eq!(first["label"], "dog");
    assert_eq!(first["model_sha256"], model_sha256);
    let time = first["time"].as_str().unwrap();
    assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");

    // Again, as JSON base64: the same picture and label, stored once; the
    // first sidecar stays.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&red);
    let body = json!({ "image": b64 }).to_string();
    let (status, v) = post(&url, body.into(), "application/json").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["new"], false);
    assert_eq!(sidecar(&root, "dog", &sha), first);
    let dog: Vec<_> = std::fs::read_dir(root.join("dog")).unwrap().collect();
    assert_eq!(dog.len(), 2, "the picture and its sidecar only: {dog:?}");

    // Refused, with nothing stored: a label the model does not have, none,
    // a file that is not a picture, two pictures.
    let (status, v) = post(
        &format!("{base}/feedback?label=horse"),
        red.clone().into(),
        "image/jpeg",
    )
    .await;
    assert_eq!((status, code(&v)), (400, "unknown_label"), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("cat, dog"),
        "{v}"
    );
    let (status, v) = post(
        &format!("{base}/feedback"),
        red.clone().into(),
        "image/jpeg",
    )
    .await;
    assert_eq!((status, code(&v)), (400, "invalid_query"), "{v}");
    let (status, v) = post(&url, b"not a picture".to_vec().into(), "image/jpeg").await;
    assert_eq!((status, code(&v)), (400, "invalid_image"), "{v}");
    let two = json!({ "images": [b64, b64] }).to_string();
    let (status, v) = post(&url, two.into(), "application/json").await;
    assert_eq!((status, code(&v)), (422, "too_many_images"), "{v}");
    let (status, v) = post(
        &url,
        json!({"upload": "0123456789abcdef0123456789abcdef.png"})
            .to_string()
            .into(),
        "application/json",
    )
    .await;
    assert_eq!((status, code(&v)), (404, "uploads_off"), "{v}");
    let mut labels: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    labels.sort();
    assert_eq!(labels, ["dog"]);

    // The live confusion matrix counts the stored correction once.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"catdog_corrections_total{answered="cat",corrected="dog"} 1"#),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("correction"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The page offers the buttons.
    let page = reqwest::get(format!("{base}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"data-feedback="true""#));
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_destination_feedback_is_off() {
    let model = fixture("tiny_torch_nchw.onnx");
    let (_p, base) = serve(&["--model", model.to_str().unwrap()], &[]).await;
    wait_ready(&base).await;
    let red = std::fs::read(fixture("images/red.jpg")).unwrap();
    let (status, v) = post(
        &format!("{base}/feedback?label=dog"),
        red.into(),
        "image/jpeg",
    )
    .await;
    assert_eq!((status, code(&v)), (404, "feedback_off"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CATDOG_FEEDBACK"),
        "{v}"
    );
    let page = reqwest::get(format!("{base}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"data-feedback="false""#));
}

/// With an uploads bucket and the feedback prefix in it (as template.yaml
/// sets them up): a correction by an upload's id lands under the prefix,
/// once; `/predict {"upload": id}` answers it too.
#[tokio::test(flavor = "multi_thread")]
async fn a_correction_by_upload_id_lands_in_the_bucket_once() {
    let feedback = format!("s3://{}/feedback/", presigned::BUCKET);
    let (_moto, _server, base, endpoint) =
        presigned::uploads_stack(&["--feedback", &feedback]).await;
    let png = solid([200, 30, 30], 64, 48, image::ImageFormat::Png);
    let sha = sha256(&png);
    let ticket = presigned::upload(&base, &png, "image/png", &[]).await;
    let id = ticket["id"].as_str().unwrap();
    let by_id = json!({ "upload": id }).to_string();
    let (status, v) = post(
        &format!("{base}/predict"),
        by_id.clone().into(),
        "application/json",
    )
    .await;
    assert_eq!((status, v["label"].as_str()), (200, Some("cat")), "{v}");
    let url = format!("{base}/feedback?label=dog");
    let (status, v) = post(&url, by_id.clone().into(), "application/json").await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["stored"], format!("dog/{sha}.png"));
    let get = |key: String| {
        let endpoint = endpoint.clone();
        async move { s3_get(&endpoint, presigned::BUCKET, &key).await }
    };
    let (bytes, content_type) = get(format!("feedback/dog/{sha}.png")).await;
    assert_eq!((bytes == png, content_type.as_str()), (true, "image/png"));
    let (side, _) = get(format!("feedback/dog/{sha}.json")).await;
    let side: Value = serde_json::from_slice(&side).unwrap();
    assert_eq!(
        (side["label"].as_str(), side["answered"].as_str()),
        (Some("dog"), Some("cat"))
    );
    let (status, v) = post(&url, by_id.into(), "application/json").await;
    assert_eq!((status, &v["new"]), (200, &json!(false)), "{v}");
    let listed = s3_test_client(&endpoint)
        .list_objects_v2()
        .bucket(presigned::BUCKET)
        .prefix("feedback/")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), 2, "{listed:?}");
    let missing = json!({ "upload": "0123456789abcdef0123456789abcdef.png" }).to_string();
    let (status, v) = post(&url, missing.into(), "application/json").await;
    assert_eq!((status, code(&v)), (404, "no_such_key"), "{v}");
}
