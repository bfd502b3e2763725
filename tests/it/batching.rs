//! Micro-batching and load shedding in `catdog serve`, over real HTTP:
//! concurrent requests share a batch yet each gets its own answer; when more
//! work arrives than the queue holds, the surplus gets 503 + Retry-After at
//! once and the server goes on answering correctly.

use crate::support::*;
use image::ImageFormat;

async fn post_raw(base: &str, body: Vec<u8>) -> (u16, Option<String>, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/predict"))
        .header("content-type", "image/png")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_share_a_batch_and_each_gets_its_own_answer() {
    let model = fixture("tiny_torch_nchw.onnx");
    let (_p, base) = serve(
        &["--model", model.to_str().unwrap()],
        &[("BATCH_WINDOW_MS", "300")],
    )
    .await;
    wait_ready(&base).await;
    let red = solid([220, 20, 20], 64, 48, ImageFormat::Png);
    let blue = solid([20, 20, 220], 48, 64, ImageFormat::Png);
    let jobs: Vec<_> = (0..8)
        .map(|i| {
            let (body, want) = if i % 2 == 0 {
                (red.clone(), "cat")
            } else {
                (blue.clone(), "dog")
            };
            let base = base.clone();
            tokio::spawn(async move { (want, post_raw(&base, body).await) })
        })
        .collect();
    let mut largest = 0;
    for j in jobs {
        let (want, (status, _, v)) = j.await.unwrap();
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["label"], want, "{v}");
        largest = largest.max(v["timings_ms"]["batch_images"].as_u64().unwrap());
    }
    assert!(largest > 1, "8 requests within 300 ms never shared a batch");

    // With batching off every request runs alone.
    let (_p2, base2) = serve(
        &["--model", model.to_str().unwrap()],
        &[("BATCH_WINDOW_MS", "0")],
    )
    .await;
    wait_ready(&base2).await;
    let (status, _, v) = post_raw(&base2, red).await;
    assert_eq!(
        (status, v["timings_ms"]["batch_images"].as_u64()),
        (200, Some(1))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn overload_is_shed_with_503_and_retry_after_then_served_again() {
    let model = fixture("tiny_torch_nchw.onnx");
    let (_p, base) = serve(
        &["--model", model.to_str().unwrap()],
        &[
            ("MAX_QUEUED", "1"),
            ("BATCH_WINDOW_MS", "0"),
            ("MAX_BATCH", "1"),
        ],
    )
    .await;
    wait_ready(&base).await;
    // Large pictures keep the inference thread busy resizing while others arrive.
    let big = solid([220, 20, 20], 2000, 2000, ImageFormat::Png);
    let jobs: Vec<_> = (0..40)
        .map(|_| {
            let (base, body) = (base.clone(), big.clone());
            tokio::spawn(async move { post_raw(&base, body).await })
        })
        .collect();
    let (mut ok, mut shed) = (0, 0);
    for j in jobs {
        let (status, retry, v) = j.await.unwrap();
        match status {
            200 => {
                assert_eq!(v["label"], "cat", "{v}");
                ok += 1;
            }
            503 => {
                assert_eq!(v["error"]["code"], "overloaded", "{v}");
                assert_eq!(retry.as_deref(), Some("1"));
                shed += 1;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert!(ok >= 1 && shed >= 1, "ok {ok}, shed {shed}");
    let (status, _, v) = post_raw(&base, solid([20, 20, 220], 32, 32, ImageFormat::Png)).await;
    assert_eq!((status, v["label"].as_str()), (200, Some("dog")), "{v}");
}
