//! `catdog upload` against moto's S3 server: multipart with per-part SHA-256,
//! printing the MODEL_URI / MODEL_SHA256 that `catdog serve` then accepts.

use std::process::Command;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn upload_prints_what_serve_needs_and_splits_large_models() {
    let (_moto, endpoint) = moto().await;
    s3_put(&endpoint, "catdog-models", "placeholder", b"x".to_vec()).await; // creates the bucket
    let env = s3_env(&endpoint);
    let upload = |file: &std::path::Path, to: &str| {
        let mut cmd = Command::new(catdog_bin());
        cmd.args(["upload", "--model", file.to_str().unwrap(), "--to", to])
            .env_remove("MODEL_URI");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };

    let model = fixture("tiny_torch_nchw.onnx");
    let out = upload(&model, "s3://catdog-models/v2/model.onnx");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let get = |k: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    assert_eq!(get("MODEL_URI"), "s3://catdog-models/v2/model.onnx");
    let digest = catdog::model::source::sha256_hex(&std::fs::read(&model).unwrap());
    assert_eq!(get("MODEL_SHA256"), digest);

    let mut serve_env: Vec<(&str, &str)> =
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (uri, sha) = (get("MODEL_URI"), get("MODEL_SHA256"));
    serve_env.push(("MODEL_URI", &uri));
    serve_env.push(("MODEL_SHA256", &sha));
    let (_p, base) = serve(&[], &serve_env).await;
    wait_ready(&base).await;
    let v: serde_json::Value = predict_json(
        &base,
        std::fs::read(fixture("images/red.png")).unwrap(),
        "image/png",
    )
    .await;
    assert_eq!(v["label"], "cat", "{v}");

    // 40 MiB: three parts, reassembled byte for byte
    let big = std::env::temp_dir().join(format!("catdog-big-{}.bin", std::process::id()));
    let data: Vec<u8> = (0..40u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&big, &data).unwrap();
    let out = upload(&big, "s3://catdog-models/big.bin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in 3 part(s)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // read it back with the SDK path the server uses, verifying the digest
    // (the endpoint comes from the settings, as the server's does; given as
    // a flag, since the process environment is shared by every test)
    in_process_aws_credentials();
    let uri: catdog::model::source::ModelUri = "s3://catdog-models/big.bin".parse().unwrap();
    let want = catdog::model::source::sha256_hex(&data);
    let opts = catdog::Settings::from_args(["--s3-endpoint", endpoint.as_str()])
        .unwrap()
        .fetch_options();
    let (fetched, sha256) = catdog::model::source::fetch_remote(&uri, Some(&want), &opts)
        .await
        .expect("same bytes back");
    assert_eq!((fetched.size, sha256), (data.len() as u64, want));
    let _ = std::fs::remove_file(&big);

    // a bucket that does not exist: a clear, short error
    let out = upload(&model, "s3://no-such-bucket-here/m.onnx");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NoSuchBucket") && err.len() < 400, "{err}");
    let out = upload(&model, "https://example.test/m.onnx");
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be s3://bucket/key"));
}
