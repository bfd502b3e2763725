//! The bounded load test (scripts/loadtest.py) against the real server with a
//! real model: 2000 mixed requests from 32 concurrent clients on loopback.
//! No wrong answer, no unexpected status, nothing lost; more work than the
//! queue holds is shed with 503 + Retry-After (the clients come back after a
//! pause); peak memory is reported. The script runs against any server:
//! `python scripts/loadtest.py --url http://127.0.0.1:8080 --photos DIR --pid PID`.

use crate::support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_mixed_requests_at_concurrency_32() {
    let Some(data) = shared_data("two_thousand_mixed_requests_at_concurrency_32") else {
        return;
    };
    let model = data.join("models/mobilenetv2-12-int8.onnx");
    // A short queue, so 32 clients overrun it and shedding is exercised.
    let (proc, base) = serve(
        &["--model", model.to_str().unwrap(), "--max-queued", "16"],
        &[("MODEL_PREPROCESSING", "torch")],
    )
    .await;
    wait_ready(&base).await;
    let out_json = std::env::temp_dir().join(format!("catdog-load-{}.json", std::process::id()));
    let out = tokio::process::Command::new(python())
        .arg(workspace().join("scripts/loadtest.py"))
        .args(["--url", &base, "--requests", "2000", "--concurrency", "32"])
        .arg("--photos")
        .arg(data.join("catsdogs/test"))
        .args(["--pid", &proc.child.id().to_string()])
        .arg("--json")
        .arg(&out_json)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "load test failed:\n{stdout}");
    let s: Value = serde_json::from_slice(&std::fs::read(&out_json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out_json);
    assert_eq!(s["requests"], 2000);
    assert_eq!(s["wrong"], 0);
    assert_eq!(s["unexpected"], 0);
    assert_eq!(s["lost"], 0);
    let answered = s["answered_right"].as_u64().unwrap();
    let rejected = s["rejected_as_documented"].as_u64().unwrap();
    // every request ends answered right or rejected as documented: none lost
    assert_eq!(answered + rejected, 2000, "{s}");
    assert!(rejected > 300, "the invalid share was not sent: {s}");
    // 32 clients against a queue of 16: the server had to shed, with Retry-After
    assert!(
        s["shed_503_retry_after"].as_u64().unwrap() > 0,
        "nothing was shed: {s}"
    );
    // Bounded memory: MobileNetV2 int8 is 3.5 MB; the queue holds 16 requests.
    let rss = s["peak_rss_mb"].as_f64().expect("peak RSS");
    assert!(rss < 1024.0, "peak RSS {rss} MB");
    // The server is still fine afterwards.
    let (status, _) = health(&base).await;
    assert_eq!(status, 200);
}
