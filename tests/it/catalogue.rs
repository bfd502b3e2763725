//! The bad-input catalogue (`bad_inputs.rs`, the table the router tests
//! share): every case goes to the real binary twice, over real HTTP (`catdog
//! serve`) and through the Lambda path (the bootstrap under a stand-in
//! Runtime API, Function URL events), each a test of its own with a server of
//! its own. Bad requests must get their documented 4xx JSON error; odd but
//! valid pictures must get the right answer; and after every case a good
//! request must still be answered right.

use std::time::Duration;

use serde_json::Value;

use crate::bad_inputs::*;
use crate::support::lambda_api::*;
use crate::support::*;

/// `case` against its own `catdog serve`, then a good request.
async fn over_http(case: Case) {
    let model = fixture(MODEL);
    let mut args = vec!["--model".to_string(), model.to_string_lossy().into_owned()];
    args.extend(case.flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_p, base) = serve(&args, &[]).await;
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
    let (status, text) = if case.body.len() > 6 * 1024 * 1024 {
        // The server answers 413 from Content-Length and may close before
        // the client has sent the body: read its answer regardless.
        raw_post(&base, &case).await
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
    check(&case, "HTTP", status, &body);
    let res = send("POST", "/predict", Some("image/png"), good().body)
        .await
        .unwrap();
    let after: Value = res.json().await.unwrap();
    assert_eq!(after["label"], "dog", "HTTP: after {}: {after}", case.name);
}

/// `case` through its own Lambda bootstrap, then a good request.
async fn through_lambda(case: Case) {
    let mut api = Harness::start().await;
    let mut env = case.env();
    env.push((
        "MODEL_URI".into(),
        fixture(MODEL).to_string_lossy().into_owned(),
    ));
    let _bootstrap = api.bootstrap(&env);
    let (status, body) = http_of(api.invoke("bad", function_url_event(&case)).await, "bad");
    check(&case, "Lambda", status, &body);
    let good = good();
    let (status, body) = http_of(api.invoke("good", function_url_event(&good)).await, "good");
    check(
        &good,
        &format!("Lambda, after {}", case.name),
        status,
        &body,
    );
}

macro_rules! catalogue_tests {
    ($($name:ident => $case:expr),* $(,)?) => {
        /// Each case against `catdog serve` over real HTTP.
        mod http {
            use super::over_http;
            use crate::bad_inputs::*;
            use crate::bad_inputs::Want::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    over_http($case).await;
                }
            )*
        }
        /// Each case through the Lambda bootstrap (Function URL events).
        mod lambda {
            use super::through_lambda;
            use crate::bad_inputs::*;
            use crate::bad_inputs::Want::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    through_lambda($case).await;
                }
            )*
        }
    };
}
bad_input_table!(catalogue_tests);

/// Headers over the HTTP layer's limit are refused there (431, no JSON:
/// before any route runs); the server carries on.
#[tokio::test(flavor = "multi_thread")]
async fn a_1_mib_header_is_refused_by_the_http_layer() {
    let model = fixture(MODEL);
    let (_p, base) = serve(&["--model", model.to_str().unwrap()], &[]).await;
    wait_ready(&base).await;
    let client = reqwest::Client::new();
    let good = img("blue.png");
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
    let after: Value = client
        .post(format!("{base}/predict"))
        .header("content-type", "image/png")
        .body(good)
        .send()
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
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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
