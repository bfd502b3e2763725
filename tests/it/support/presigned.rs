//! The presigned-uploads stack that several test modules drive: moto with the
//! uploads bucket and `catdog serve --uploads` using it, a picture too big
//! for one request, and the client's two steps (`POST /uploads`, then the
//! presigned PUT). tests/it/presigned_uploads.rs tests the routes with it;
//! browser.rs and openapi.rs reuse it.

use std::process::Command;

use serde_json::{json, Value};

use super::*;

pub const BUCKET: &str = "uploads";
pub const PREFIX: &str = "incoming/";

/// A real 7+ MB PNG (over Lambda's 6 MB invoke limit): red, which the tiny
/// test models call cat, with noise so that PNG cannot squeeze it under.
pub fn big_png(path: &std::path::Path) -> Vec<u8> {
    let (w, h) = (1900u32, 1400u32);
    let mut state = 0x2545_f491_u32;
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state & 0x3f) as u8;
        image::Rgb([190 + n, n, n / 2])
    });
    img.save(path).unwrap();
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() > 6 * 1024 * 1024, "{} bytes", bytes.len());
    bytes
}

/// `catdog predict --json FILE` with the same model: what the upload must answer.
pub fn cli_answer(model: &std::path::Path, file: &std::path::Path) -> Value {
    let out = succeed(
        Command::new(catdog_bin())
            .args(["predict", "--json", "--model"])
            .arg(model)
            .arg(file),
    );
    serde_json::from_slice(out.stdout.trim_ascii_end()).unwrap()
}

/// moto with the uploads bucket, and `catdog serve` using it.
pub async fn uploads_stack(extra: &[&str]) -> (Proc, Proc, String, String) {
    uploads_stack_with(&fixture("tiny_torch_nchw.onnx"), extra, &[]).await
}

/// [`uploads_stack`] with another model and more environment.
pub async fn uploads_stack_with(
    model: &std::path::Path,
    extra: &[&str],
    more_env: &[(&str, &str)],
) -> (Proc, Proc, String, String) {
    let (moto, endpoint) = moto().await;
    let s3 = s3_test_client(&endpoint);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    s3.create_bucket().bucket("photos").send().await.unwrap();
    let env = s3_env(&endpoint);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend_from_slice(more_env);
    let uploads = format!("s3://{BUCKET}/{PREFIX}");
    let model = model.display().to_string();
    let mut args = vec![
        "--model",
        &model,
        "--uploads",
        &uploads,
        "--s3-allow",
        "photos",
    ];
    args.extend_from_slice(extra);
    let (server, base) = serve(&args, &env).await;
    wait_ready(&base).await;
    (moto, server, base, endpoint)
}

/// `POST /uploads` then the PUT, as a client does; returns the ticket.
pub async fn upload(
    base: &str,
    bytes: &[u8],
    content_type: &str,
    headers: &[(&str, &str)],
) -> Value {
    let http = reqwest::Client::new();
    let mut post = http
        .post(format!("{base}/uploads"))
        .json(&json!({"bytes": bytes.len(), "content_type": content_type}));
    for (k, v) in headers {
        post = post.header(*k, *v);
    }
    let res = post.send().await.unwrap();
    assert_eq!(res.status(), 201);
    let ticket: Value = res.json().await.unwrap();
    let mut put = http
        .put(ticket["url"].as_str().unwrap())
        .body(bytes.to_vec());
    for (k, v) in ticket["headers"].as_object().unwrap() {
        put = put.header(k, v.as_str().unwrap());
    }
    let put = put.send().await.unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    ticket
}
