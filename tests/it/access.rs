//! Access control on the real binary: the API key (`CATDOG_API_KEY`) over
//! HTTP and through the Lambda path (401s, both headers, the public page and
//! /health, a short key refused, the key never logged), and CORS (off unless
//! origins are given; allowed origins, preflight without the key).

use crate::support::lambda_api::*;
use crate::support::*;
use serde_json::{json, Value};

const KEY: &str = "k3y-for-tests-0123456789";

fn img(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("images/{name}"))).unwrap()
}

async fn predict_with(base: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/predict"))
        .header("content-type", "image/png")
        .body(img("red.png"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// `catdog serve` with the key, its log (info level) going to a file.
async fn serve_with_key_logged() -> (Proc, String, std::path::PathBuf) {
    let port = free_port();
    let log = std::env::temp_dir().join(format!("catdog-access-{}.log", std::process::id()));
    let mut cmd = catdog_command();
    cmd.args(["serve", "--port", &port.to_string(), "--model"])
        .arg(fixture("tiny_caffe_nhwc.onnx"))
        .env("CATDOG_API_KEY", KEY)
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "text")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let proc = Proc {
        child: cmd.spawn().unwrap(),
        name: "catdog serve".into(),
    };
    let base = format!("http://127.0.0.1:{port}");
    wait_http(
        &format!("{base}/health"),
        None,
        std::time::Duration::from_secs(20),
    )
    .await;
    (proc, base, log)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_key_is_required_and_checked() {
    let (mut proc, base, log_file) = serve_with_key_logged().await;
    wait_ready(&base).await; // /health stays public (probes, load balancers)

    let res = predict_with(&base, &[]).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"catdog\"");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthorized");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("X-API-Key"));

    for wrong in [
        "Bearer nope",
        "Bearer k3y-for-tests-012345678",
        "Basic azN5",
    ] {
        let res = predict_with(&base, &[("authorization", wrong)]).await;
        assert_eq!(res.status(), 401, "{wrong}");
    }
    let res = predict_with(&base, &[("x-api-key", "k3y-for-tests-01234567890")]).await;
    assert_eq!(res.status(), 401);

    let auth = format!("Bearer {KEY}");
    for headers in [[("authorization", auth.as_str())], [("x-api-key", KEY)]] {
        let res = predict_with(&base, &headers).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.unwrap()["label"], "cat");
    }

    // the page is public (it asks for the key itself), /model is not
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("X-API-Key"));
    assert_eq!(
        reqwest::get(format!("{base}/model"))
            .await
            .unwrap()
            .status(),
        401
    );
    let model_info = reqwest::Client::new()
        .get(format!("{base}/model"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(model_info.status(), 200);

    // refused requests are logged; the key never is
    let _ = proc.child.kill();
    let _ = proc.child.wait();
    let log = std::fs::read_to_string(&log_file).unwrap();
    let _ = std::fs::remove_file(&log_file);
    assert!(log.contains("401"), "refused requests are logged: {log}");
    assert!(!log.contains(KEY), "the API key was logged");
}

#[test]
fn a_short_api_key_is_refused_at_start() {
    let out = catdog_command()
        .args(["serve", "--port", "0", "--model"])
        .arg(fixture("tiny_caffe_nhwc.onnx"))
        .env("CATDOG_API_KEY", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16 characters"), "{err}");
    assert!(!err.contains("short\""), "the key is not echoed: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_is_off_by_default_and_follows_the_allowed_origins() {
    let model = fixture("tiny_caffe_nhwc.onnx");
    let (_a, off) = serve(&["--model", model.to_str().unwrap()], &[]).await;
    let (_b, on) = serve(
        &["--model", model.to_str().unwrap()],
        &[
            (
                "CATDOG_CORS_ORIGINS",
                "https://app.example, http://localhost:3000",
            ),
            ("CATDOG_API_KEY", KEY),
        ],
    )
    .await;
    wait_ready(&off).await;
    wait_ready(&on).await;
    let client = reqwest::Client::new();
    let preflight = |base: &str, origin: &str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{base}/predict"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key, content-type")
            .send()
    };

    // off: no CORS header at all, for any origin
    let res = predict_with(&off, &[("origin", "https://app.example")]).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = preflight(&off, "https://app.example").await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());

    // on: the preflight needs no key and names the origin and the key header
    let res = preflight(&on, "https://app.example").await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let allowed = res.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("x-api-key"), "{allowed}");
    let res = predict_with(
        &on,
        &[("origin", "http://localhost:3000"), ("x-api-key", KEY)],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    // a 401 carries the CORS header too, so the page can read the message
    let res = predict_with(&on, &[("origin", "https://app.example")]).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    // another origin is not allowed
    let res = preflight(&on, "https://evil.example").await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

#[test]
fn a_malformed_cors_origin_is_refused_at_start() {
    let out = catdog_command()
        .args(["serve", "--port", "0", "--model"])
        .arg(fixture("tiny_caffe_nhwc.onnx"))
        .env("CATDOG_CORS_ORIGINS", "https://app.example/path")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://app.example/path"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_key_guards_the_lambda_path_too() {
    let mut api = Harness::start().await;
    let env = vec![
        (
            "MODEL_URI".to_string(),
            fixture("tiny_caffe_nhwc.onnx")
                .to_string_lossy()
                .into_owned(),
        ),
        ("CATDOG_API_KEY".to_string(), KEY.to_string()),
    ];
    let _bootstrap = api.bootstrap(&env);
    let base = with_body(event("function-url.json"), &img("red.png"), "image/png");
    let (status, body) = http_of(api.invoke("no-key", base.clone()).await, "no-key");
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthorized"))
    );
    let mut keyed = base.clone();
    keyed["headers"]["x-api-key"] = json!(KEY);
    let (status, body) = http_of(api.invoke("key", keyed).await, "key");
    assert_eq!((status, &body["label"]), (200, &json!("cat")), "{body}");
}

/// A GET with its `Host` header set to `host` (as a rebinding web page's
/// request arrives: to 127.0.0.1, naming the attacker's domain).
async fn get_as(base: &str, path: &str, host: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("host", host);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A local file's digest is computed in the background once the model
/// answers (null until then, docs/api.md): wait for it, so every detail of
/// /health is there.
async fn wait_for_digest(base: &str, host: &str, key: Option<&str>) {
    let digest_known = async {
        while !get_as(base, "/health", host, key).await.1["model"]["sha256"].is_string() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), digest_known)
        .await
        .expect("the model's digest within 60 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keyless_loopback_server_answers_only_requests_for_a_local_name() {
    let model = fixture("tiny_caffe_nhwc.onnx");
    let (_p, base) = serve(&["--model", model.to_str().unwrap()], &[]).await;
    wait_ready(&base).await;
    let port = base.rsplit(':').next().unwrap().to_string();
    // DNS rebinding: the attacker's name, resolving to 127.0.0.1.
    for path in ["/model", "/health", "/metrics", "/"] {
        let (status, body) = get_as(&base, path, &format!("evil.example:{port}"), None).await;
        assert_eq!(status, 421, "{path}: {body}");
        assert_eq!(
            body["error"]["code"], "misdirected_request",
            "{path}: {body}"
        );
    }
    // Under /v2, in the protocol's shape.
    let (status, body) = get_as(&base, "/v2/models/catdog", "evil.example", None).await;
    assert_eq!(status, 421, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("CATDOG_API_KEY"),
        "{body}"
    );
    // The machine's own names pass, and see /health's details.
    wait_for_digest(&base, &format!("127.0.0.1:{port}"), None).await;
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "[::1]".into(),
    ] {
        let (status, body) = get_as(&base, "/health", &host, None).await;
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body["model"]["sha256"].is_string(), "{host}: {body}");
        let (status, _) = get_as(&base, "/model", &host, None).await;
        assert_eq!(status, 200, "{host}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_key_health_tells_details_only_to_the_keyed_and_logs_hold_no_upload_id() {
    let (mut proc, base, log_file) = serve_with_key_logged().await;
    wait_ready(&base).await;
    // A key guards the server: any name may be asked for (a reverse proxy's).
    let (status, _) = get_as(&base, "/model", "catdog.example.com", Some(KEY)).await;
    assert_eq!(status, 200);
    // /health: the status for anyone, which model only with the key.
    let (status, anonymous) = get_as(&base, "/health", "catdog.example.com", None).await;
    assert_eq!((status, &anonymous), (200, &json!({"status": "ok"})));
    wait_for_digest(&base, "catdog.example.com", Some(KEY)).await;
    let (_, keyed) = get_as(&base, "/health", "catdog.example.com", Some(KEY)).await;
    assert!(keyed["model"]["sha256"].is_string(), "{keyed}");
    // An upload id is the capability to read its answer: the log names the
    // route, never the id.
    let id = "0123456789abcdef0123456789abcdef.png";
    let (status, _) = get_as(&base, &format!("/uploads/{id}"), "localhost", Some(KEY)).await;
    assert_eq!(status, 404);
    let _ = proc.child.kill();
    let _ = proc.child.wait();
    let log = std::fs::read_to_string(&log_file).unwrap();
    let _ = std::fs::remove_file(&log_file);
    assert!(
        log.contains("/uploads/{id}"),
        "the route template is logged: {log}"
    );
    assert!(
        !log.contains("0123456789abcdef"),
        "an upload id was logged: {log}"
    );
}

#[test]
fn an_unguarded_tunnel_is_refused_before_anything_is_served() {
    let port = free_port();
    let run = |extra: &[&str]| {
        catdog_command()
            .args(["serve", "--port", &port.to_string(), "--ngrok", "--model"])
            .arg(fixture("tiny_caffe_nhwc.onnx"))
            .args(extra)
            .env("NGROK_AUTHTOKEN", "not-a-real-token")
            .env_remove("CATDOG_API_KEY")
            .env_remove("CATDOG_PUBLIC")
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to open a public URL"), "{err}");
    assert!(err.contains("--public"), "{err}");
    // Refused before the local server started, not after.
    assert!(!err.contains("serving on"), "{err}");
    let out = run(&["--ngrok-oauth", "google"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ngrok-oauth-allow-email"), "{err}");
}

/// A secret on moto's Secrets Manager, made with boto3 (another client than
/// the one under test); returns its ARN.
fn put_secret(endpoint: &str, name: &str, value: &str) -> String {
    let script = r#"
import sys, boto3
c = boto3.client("secretsmanager", endpoint_url=sys.argv[1], region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing")
print(c.create_secret(Name=sys.argv[2], SecretString=sys.argv[3])["ARN"])
"#;
    let out =
        succeed(std::process::Command::new(python()).args(["-c", script, endpoint, name, value]));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_key_can_live_in_secrets_manager() {
    let (_moto, endpoint) = moto().await;
    let arn = put_secret(&endpoint, "catdog/api-key", KEY);
    let mut env = s3_env(&endpoint);
    env.push(("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), endpoint.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let model = fixture("tiny_caffe_nhwc.onnx");
    let mut with_secret = env.clone();
    with_secret.push(("CATDOG_API_KEY_SECRET", &arn));
    let (_p, base) = serve(&["--model", model.to_str().unwrap()], &with_secret).await;
    wait_ready(&base).await;
    assert_eq!(predict_with(&base, &[]).await.status(), 401);
    assert_eq!(
        predict_with(&base, &[("x-api-key", "not-the-key-0123456")])
            .await
            .status(),
        401
    );
    let res = predict_with(&base, &[("x-api-key", KEY)]).await;
    assert_eq!(res.status(), 200);

    // A secret that cannot be read stops the start, saying which and why.
    let out = catdog_command()
        .args(["serve", "--port", "0", "--model"])
        .arg(&model)
        .envs(env.iter().copied())
        .env("CATDOG_API_KEY_SECRET", "catdog/no-such-secret")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("catdog/no-such-secret") && err.contains("ResourceNotFound"),
        "{err}"
    );
    // Both a key and a secret: which one would be meant? Refused.
    let out = catdog_command()
        .args(["serve", "--port", "0", "--model"])
        .arg(&model)
        .env("CATDOG_API_KEY", KEY)
        .env("CATDOG_API_KEY_SECRET", &arn)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keyless_server_on_the_network_is_refused_unless_public() {
    let model = fixture("tiny_caffe_nhwc.onnx");
    let port = free_port();
    let out = catdog_command()
        .args([
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            &port.to_string(),
            "--model",
        ])
        .arg(&model)
        .env_remove("CATDOG_API_KEY")
        .env_remove("CATDOG_PUBLIC")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without an API key") && err.contains("--public"),
        "{err}"
    );
    assert!(!err.contains("serving on"), "{err}");
    // On purpose it serves, and no Host check applies (anyone may reach it).
    let (_p, base) = serve(
        &[
            "--host",
            "0.0.0.0",
            "--public",
            "--model",
            model.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    wait_ready(&base).await;
    let (status, _) = get_as(&base, "/model", "catdog.lan", None).await;
    assert_eq!(status, 200);
    // With a key it serves too, the key guarding it.
    let (_p, base) = serve(
        &["--host", "0.0.0.0", "--model", model.to_str().unwrap()],
        &[("CATDOG_API_KEY", KEY)],
    )
    .await;
    wait_ready(&base).await;
    let (status, _) = get_as(&base, "/model", "catdog.lan", None).await;
    assert_eq!(status, 401);
}
