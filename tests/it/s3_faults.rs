//! The S3 model fetch under faults, against moto's S3 server on loopback
//! behind a TCP proxy that cuts connections mid-body: the ranged download
//! resumes where it stopped and the bytes (checked by SHA-256) are exact,
//! with parallel ranges and with one GET. An unreachable server fails fast
//! with a message naming the object. `serve` started while S3 is down
//! answers 503 with the reason, then picks the model up by itself when moto
//! comes back on that port; a server that accepts and never answers times
//! out (`CATDOG_S3_READ_TIMEOUT_S`) and is retried; truncated, garbage, empty
//! and non-image objects are refused for good, with no machine paths in the
//! reason.
//!
//! One test function: it sets the process environment the SDK reads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use catdog::aws::S3Options;
use catdog::model::source::{
    fetch_remote, sha256_hex, FetchOptions, FetchedModel, ModelUri, SourceError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A proxy to `upstream` that drops the first `cuts` connections once more
/// than `after` response bytes went through them. Returns its URL and the
/// number of connections it cut.
async fn cutting_proxy(upstream: String, cuts: usize, after: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let cut = Arc::new(AtomicUsize::new(0));
    let counter = cut.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                let mut sent = 0usize;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    sent += n;
                    if sent > after
                        && counter
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                                (c < cuts).then_some(c + 1)
                            })
                            .is_ok()
                    {
                        break; // drop both halves: the client sees a short body
                    }
                }
                up.abort();
            });
        }
    });
    (url, cut)
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_connections_resume_and_unreachable_servers_fail_fast() {
    let (_moto, endpoint) = moto().await;
    // 40 MiB of varied bytes: three 16 MiB ranges in parallel mode.
    let data: Vec<u8> = (0..40u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    s3_put(&endpoint, "faults", "model.onnx", data.clone()).await;
    let want = sha256_hex(&data);
    let uri: ModelUri = "s3://faults/model.onnx".parse().unwrap();
    let upstream = endpoint.trim_start_matches("http://").to_string();
    // Credentials for the in-process fetch; every endpoint below is explicit.
    in_process_aws_credentials();

    for concurrency in [8, 1] {
        let (proxy, cut) = cutting_proxy(upstream.clone(), 3, 3 << 20).await;
        let opts = FetchOptions {
            s3: S3Options {
                endpoint: Some(proxy),
                ..S3Options::default()
            },
            s3_concurrency: concurrency,
            ..FetchOptions::new(std::env::temp_dir())
        };
        let (fetched, sha256) = fetch_remote(&uri, Some(&want), &opts)
            .await
            .unwrap_or_else(|e| panic!("concurrency {concurrency}: {e}"));
        assert_eq!(sha256, want);
        let FetchedModel {
            path,
            download: Some(guard),
            ..
        } = fetched
        else {
            panic!("a remote model is written into the download folder")
        };
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes == data, "concurrency {concurrency}: bytes differ");
        drop(guard);
        assert!(!path.exists(), "the download goes with the model");
        assert!(
            cut.load(Ordering::SeqCst) >= 1,
            "concurrency {concurrency}: the proxy never cut a connection, so nothing was resumed"
        );
    }

    // In memory (SnapStart): the same bytes, from a memfd, nothing on disk.
    let (proxy, _) = cutting_proxy(upstream.clone(), 3, 3 << 20).await;
    let opts = FetchOptions {
        s3: S3Options {
            endpoint: Some(proxy),
            ..S3Options::default()
        },
        in_memory: true,
        ..FetchOptions::new(std::env::temp_dir().join("catdog-never-written"))
    };
    let (fetched, sha256) = fetch_remote(&uri, Some(&want), &opts).await.unwrap();
    assert_eq!(sha256, want);
    assert!(
        fetched.path.starts_with("/proc/self/fd"),
        "{:?}",
        fetched.path
    );
    assert!(
        std::fs::read(&fetched.path).unwrap() == data,
        "in memory: bytes differ"
    );
    assert!(!opts.download_dir.exists(), "the download folder was used");
    drop(fetched);

    // Nobody listening: a clear error naming the object, in seconds.
    let nobody = FetchOptions {
        s3: S3Options {
            endpoint: Some(format!("http://127.0.0.1:{}", free_port())),
            ..S3Options::default()
        },
        ..FetchOptions::new(std::env::temp_dir())
    };
    let started = Instant::now();
    let err = fetch_remote(&uri, None, &nobody)
        .await
        .err()
        .expect("must fail");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, SourceError::S3 { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("s3://faults/model.onnx") && msg.len() < 600,
        "{msg}"
    );
}

/// `catdog serve` with its model in S3 at `endpoint`, quick retry pauses.
async fn serve_from_s3(endpoint: &str, key: &str) -> (Proc, String) {
    let mut env: Vec<(String, String)> = s3_env(endpoint);
    env.push(("MODEL_URI".into(), format!("s3://faults/{key}")));
    env.push(("CATDOG_RETRY_PAUSE_MS".into(), "100".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    serve(&[], &env).await
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_says_why_and_retries_until_s3_comes_back() {
    // S3 is down when the server starts.
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let (_serve, base) = serve_from_s3(&endpoint, "later.onnx").await;
    let reason = wait_failed(&base).await;
    let (status, h) = health(&base).await;
    assert_eq!(
        (status, h["status"].as_str()),
        (503, Some("retrying")),
        "{h}"
    );
    assert!(reason.contains("s3://faults/later.onnx"), "{reason}");
    let res = reqwest::Client::new()
        .post(format!("{base}/predict"))
        .header("content-type", "image/png")
        .body(std::fs::read(fixture("images/red.png")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_unavailable");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("keeps trying"),
        "{v}"
    );

    // S3 comes back with the model: the server picks it up by itself.
    let (_moto, endpoint) = moto_on(port).await;
    s3_put(
        &endpoint,
        "faults",
        "later.onnx",
        std::fs::read(fixture("tiny_caffe_nhwc.onnx")).unwrap(),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, h) = health(&base).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v = predict_json(
        &base,
        std::fs::read(fixture("images/red.png")).unwrap(),
        "image/png",
    )
    .await;
    assert_eq!(v["label"], "cat", "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_model_bytes_in_s3_are_refused_for_good() {
    let (_moto, endpoint) = moto().await;
    let model = std::fs::read(fixture("tiny_vgg.onnx")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.onnx",
            model[..model.len() / 2].to_vec(),
            "not a valid ONNX model",
        ),
        (
            "garbage.onnx",
            std::fs::read(fixture("garbage.onnx")).unwrap(),
            "not a valid ONNX model",
        ),
        (
            "notimage.onnx",
            std::fs::read(fixture("not_an_image.onnx")).unwrap(),
            "not an image classifier",
        ),
        ("empty.onnx", Vec::new(), "not a valid ONNX model"),
    ];
    for (key, bytes, want) in cases {
        s3_put(&endpoint, "faults", key, bytes).await;
        let (_serve, base) = serve_from_s3(&endpoint, key).await;
        let reason = wait_failed(&base).await;
        let (status, h) = health(&base).await;
        assert_eq!(
            (status, h["status"].as_str()),
            (503, Some("failed")),
            "{key}: {h}"
        );
        assert!(reason.contains(want), "{key}: {reason}");
        for leak in ["/work/", "/tmp/", "/root/", "target/"] {
            assert!(
                !reason.contains(leak),
                "{key}: the reason leaks a path: {reason}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_s3_times_out_and_is_retried_in_the_background() {
    // Accepts connections and never answers: a stalled S3.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let _hole = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let mut env: Vec<(String, String)> = s3_env(&endpoint);
    env.push(("MODEL_URI".into(), "s3://faults/stalled.onnx".into()));
    env.push(("CATDOG_S3_READ_TIMEOUT_S".into(), "1".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let started = Instant::now();
    let (_serve, base) = serve(&[], &env).await;
    let reason = wait_failed(&base).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(reason.contains("s3://faults/stalled.onnx"), "{reason}");
    assert!(
        reason.to_lowercase().contains("timeout") || reason.to_lowercase().contains("timed out"),
        "{reason}"
    );
    let (status, h) = health(&base).await;
    assert_eq!(
        (status, h["status"].as_str()),
        (503, Some("retrying")),
        "{h}"
    );
}
