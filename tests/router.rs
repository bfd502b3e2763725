//! The HTTP contract, in process: the router every host serves, driven with
//! `tower::ServiceExt::oneshot` as axum's own `testing` example does (no port,
//! no process). The spawned-binary tests (http_serve, catalogue, lambda) keep
//! checking the real hosts; these check the router's behaviour case by case,
//! fast. Also: the serve host the notebook calls enforces the API key.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use catdog::host::serve::Server;
use catdog::http::state::AppState;
use catdog::{Classifier, Settings};
use catdog_tests::*;
use serde_json::Value;
use tower::ServiceExt;

const KEY: &str = "router-test-key-0123456789";

/// The tiny torch-style model (red → cat, blue → dog), loaded once, through
/// the settings and loading path every host uses.
fn classifier() -> Arc<Classifier> {
    static MODEL: OnceLock<Arc<Classifier>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let model = fixture("tiny_torch_nchw.onnx");
            let settings = Settings::from_args(["--model", model.to_str().unwrap()]).unwrap();
            // On a thread of its own: the tests calling this run inside a runtime.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                Arc::new(
                    rt.block_on(catdog::model::load::load_classifier(&settings.model_spec()))
                        .unwrap(),
                )
            })
            .join()
            .unwrap()
        })
        .clone()
}

fn settings(args: &[&str]) -> Settings {
    Settings::from_args(args.iter().copied()).unwrap()
}

/// The router over a ready model, with the access settings of `args`.
fn router(args: &[&str]) -> axum::Router {
    let s = settings(args);
    catdog::router(AppState::ready(
        classifier(),
        s.limits(),
        s.access().unwrap(),
    ))
}

async fn call(app: axum::Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 24)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, body)
}

fn post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn png(rgb: [u8; 3]) -> Vec<u8> {
    solid(rgb, 32, 24, image::ImageFormat::Png)
}

/// Every answer is `{"error": {"code", "message"}}` with its status.
fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn one_picture_in_every_form_gets_one_answer() {
    use base64::Engine as _;
    let red = png(RED);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&red);
    let boundary = "XyZ";
    let multipart = [
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"r.png\"\r\nContent-Type: image/png\r\n\r\n").into_bytes(),
        red.clone(),
        format!("\r\n--{boundary}--\r\n").into_bytes(),
    ]
    .concat();
    for req in [
        post("/predict", "image/png", red.clone()),
        post("/predict", "application/octet-stream", red.clone()),
        post(
            "/predict",
            "application/json",
            format!("{{\"image\": \"data:image/png;base64,{b64}\"}}"),
        ),
        post(
            "/predict",
            &format!("multipart/form-data; boundary={boundary}"),
            multipart,
        ),
    ] {
        let (status, _, body) = call(router(&[]), req).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["label"], "cat", "{body}");
        let cat = body["scores"]["cat"].as_f64().unwrap();
        let dog = body["scores"]["dog"].as_f64().unwrap();
        assert!((cat + dog - 1.0).abs() < 1e-5 && cat > 0.5, "{body}");
        assert_eq!(body["confidence"].as_f64().unwrap(), cat);
        // A local model is named by its file name only: no server folders.
        assert_eq!(body["model"]["uri"], "tiny_torch_nchw.onnx", "{body}");
        assert_eq!(body["model"]["kind"], "labels");
        for t in [
            "read",
            "decode",
            "preprocess",
            "inference",
            "queue",
            "total",
        ] {
            assert!(
                body["timings_ms"][t].as_f64().is_some_and(|v| v >= 0.0),
                "{t}: {body}"
            );
        }
        assert_eq!(body["timings_ms"]["batch_images"], 1);
    }
}

#[tokio::test]
async fn a_batch_is_answered_in_order_and_the_tutorial_route_keeps_its_shape() {
    use base64::Engine as _;
    let b = |rgb| base64::engine::general_purpose::STANDARD.encode(png(rgb));
    let json = format!(
        "{{\"images\": [\"{}\", \"{}\", \"{}\"]}}",
        b(RED),
        b(BLUE),
        b(RED)
    );
    let (status, _, body) = call(
        router(&[]),
        post("/predict", "application/json", json.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let labels: Vec<&str> = body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["cat", "dog", "cat"]);
    assert!(
        body.get("label").is_none(),
        "a batch has no top-level label: {body}"
    );

    let (status, _, one) = call(router(&[]), post("/", "image/png", png(BLUE))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        one.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["prediction"],
        "{one}"
    );
    assert!(one["prediction"]["dog"].as_f64().unwrap() > 0.5, "{one}");
    let (_, _, many) = call(router(&[]), post("/", "application/json", json)).await;
    assert_eq!(many["predictions"].as_array().unwrap().len(), 3, "{many}");

    // The tutorial's jQuery page: `$.post(url, JSON.stringify({image}))` sends
    // jQuery's default form Content-Type (or none at all from other clients);
    // PNG arrives with its data: URL prefix.
    for ctype in [
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        Some("text/plain"),
        None,
    ] {
        for (rgb, prefix, want) in [(BLUE, "data:image/png;base64,", "dog"), (RED, "", "cat")] {
            let mut req = Request::post("/");
            if let Some(c) = ctype {
                req = req.header(header::CONTENT_TYPE, c);
            }
            let body = format!("{{\"image\": \"{prefix}{}\"}}", b(rgb));
            let (status, _, v) = call(router(&[]), req.body(Body::from(body)).unwrap()).await;
            assert_eq!(status, StatusCode::OK, "{ctype:?}: {v}");
            let p = &v["prediction"];
            let other = if want == "cat" { "dog" } else { "cat" };
            assert!(
                p[want].as_f64().unwrap() > p[other].as_f64().unwrap(),
                "{ctype:?} {prefix:?}: {v}"
            );
        }
    }
}

#[tokio::test]
async fn bad_requests_get_their_code_and_status() {
    let too_many = format!("{{\"images\": [{}]}}", ["\"aGk=\""; 3].join(","));
    let cases: Vec<(Request<Body>, StatusCode, &str, &[&str])> = vec![
        (
            post("/predict", "image/png", Vec::<u8>::new()),
            StatusCode::BAD_REQUEST,
            "empty_body",
            &[],
        ),
        (
            post("/predict", "image/png", b"not a picture".to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid_image",
            &[],
        ),
        (
            post("/predict", "application/json", "{"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            &[],
        ),
        (
            post("/predict", "application/json", "{\"image\": \"%%%\"}"),
            StatusCode::BAD_REQUEST,
            "invalid_base64",
            &[],
        ),
        (
            post("/predict", "text/plain", "x"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            &[],
        ),
        (
            post("/predict", "image/png", vec![0u8; 2048]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &["--max-body-bytes", "1024"],
        ),
        // Over the limit is 413 whatever the Content-Type: streamed (no
        // length) and declared.
        (
            post("/predict", "text/plain", vec![0u8; 2048]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &["--max-body-bytes", "1024"],
        ),
        (
            Request::post("/predict")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::CONTENT_LENGTH, "2048")
                .body(Body::from(vec![0u8; 2048]))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &["--max-body-bytes", "1024"],
        ),
        // Only the tutorial's route reads other Content-Types as JSON.
        (
            post(
                "/predict",
                "application/x-www-form-urlencoded; charset=UTF-8",
                "{\"image\": \"x\"}",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            &[],
        ),
        (
            post("/predict", "application/json", too_many),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_images",
            &["--max-batch", "2"],
        ),
        (
            post("/predict", "image/png", png(RED)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "image_too_large",
            &["--max-pixels", "100"],
        ),
        (get("/nope"), StatusCode::NOT_FOUND, "not_found", &[]),
        (
            Request::delete("/predict").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &[],
        ),
    ];
    for (req, want, code, args) in cases {
        let (status, _, body) = call(router(args), req).await;
        assert_error(status, &body, want, code);
    }
}

#[tokio::test]
async fn the_protected_sub_router_alone_needs_the_key() {
    let app = || router(&["--api-key", KEY]);
    // Protected: refused without the key or with another, served with it in either header.
    for (method, path) in [
        (Method::POST, "/predict"),
        (Method::POST, "/"),
        (Method::GET, "/model"),
    ] {
        for bad in [None, Some("Bearer wrong-key-0123456789")] {
            let mut req = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(header::CONTENT_TYPE, "image/png");
            if let Some(v) = bad {
                req = req.header(header::AUTHORIZATION, v);
            }
            let (status, headers, body) =
                call(app(), req.body(Body::from(png(RED))).unwrap()).await;
            assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
            assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer realm=\"catdog\"");
        }
        for (name, value) in [
            ("authorization", format!("Bearer {KEY}")),
            ("x-api-key", KEY.to_string()),
        ] {
            let req = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(header::CONTENT_TYPE, "image/png")
                .header(name, value)
                .body(Body::from(png(RED)))
                .unwrap();
            let (status, _, body) = call(app(), req).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{method} {path} with {name}: {body}"
            );
        }
    }
    // Public: the page, the health check and the API description.
    for path in ["/", "/health", "/openapi.json"] {
        let (status, _, _) = call(app(), get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    // Unknown routes and methods tell nothing, key or not.
    let (status, _, body) = call(app(), get("/admin")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, _, body) =
        call(app(), Request::put("/predict").body(Body::empty()).unwrap()).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn the_api_description_comes_from_the_same_routes() {
    let (status, _, doc) = call(router(&[]), get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    let mut listed: Vec<String> = paths
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{m} {p}"))
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "get /",
            "get /health",
            "get /model",
            "get /openapi.json",
            "post /",
            "post /predict"
        ]
    );
    // The key requirement follows the sub-router: on the protected operations only.
    let secured = |m: &str, p: &str| {
        doc["paths"][p][m]["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    };
    for (m, p) in [("post", "/predict"), ("post", "/"), ("get", "/model")] {
        assert!(secured(m, p), "{m} {p} should list the key");
    }
    for (m, p) in [("get", "/"), ("get", "/health"), ("get", "/openapi.json")] {
        assert!(!secured(m, p), "{m} {p} is public");
    }
    // The answer schemas are the wire types themselves.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "PredictAnswer",
        "SingleAnswer",
        "BatchAnswer",
        "HealthAnswer",
        "ErrorBody",
        "LegacyAnswer",
        "ModelInfo",
    ] {
        assert!(
            schemas.contains_key(name),
            "{name} missing from {:?}",
            schemas.keys()
        );
    }
}

#[tokio::test]
async fn health_and_model_follow_the_model_state() {
    let s = settings(&[]);
    let state = AppState::loading(s.limits(), s.access().unwrap());
    let app = catdog::router(state.clone());
    let (status, _, body) = call(app.clone(), get("/health")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("loading"))
    );
    let (status, _, body) = call(app.clone(), post("/predict", "image/png", png(RED))).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "model_unavailable",
    );

    state.set_retrying("S3 unreachable".into());
    let (status, headers, body) = call(app.clone(), get("/health")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("retrying"))
    );
    assert_eq!(body["reason"], "S3 unreachable");
    assert_eq!(headers[header::RETRY_AFTER], "5");
    let (_, headers, body) = call(app.clone(), get("/model")).await;
    assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "model_unavailable",
    );
    assert_eq!(headers[header::RETRY_AFTER], "5");

    state.set_failed("bad bytes".into());
    let (_, _, body) = call(app.clone(), get("/health")).await;
    assert_eq!(
        (body["status"].as_str(), body["reason"].as_str()),
        (Some("failed"), Some("bad bytes"))
    );

    state.set_ready(classifier());
    let (status, _, body) = call(app.clone(), get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["model"]["uri"], "tiny_torch_nchw.onnx");
    assert!(body.get("reason").is_none(), "{body}");
    let (status, _, info) = call(app, get("/model")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        info["uri"], "tiny_torch_nchw.onnx",
        "no folders in /model: {info}"
    );
    assert_eq!(info["labels"], serde_json::json!(["cat", "dog"]));
    assert_eq!(info["contract_source"]["preprocessing"], "metadata");
}

/// The entry the notebook calls (`Server::start` over `Settings`): with an
/// API key set, its server refuses requests without it.
#[test]
fn the_notebook_s_server_enforces_the_api_key() {
    let model = fixture("tiny_torch_nchw.onnx");
    let s = settings(&[
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--api-key",
        KEY,
        "--model",
        model.to_str().unwrap(),
    ]);
    let server = Server::start(&s).unwrap();
    server.wait_ready(Duration::from_secs(60)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (without, with) = rt.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("{}predict", server.url);
        let without = client
            .post(&url)
            .header("content-type", "image/png")
            .body(png(RED))
            .send()
            .await
            .unwrap();
        let with = client
            .post(&url)
            .header("content-type", "image/png")
            .header("x-api-key", KEY)
            .body(png(RED))
            .send()
            .await
            .unwrap();
        (
            without.status().as_u16(),
            with.json::<Value>().await.unwrap(),
        )
    });
    assert_eq!(without, 401);
    assert_eq!(with["label"], "cat", "{with}");
    server.stop().unwrap();
}
