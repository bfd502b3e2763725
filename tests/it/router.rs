//! The HTTP contract, in process: the router every host serves, driven with
//! `tower::ServiceExt::oneshot` as axum's own `testing` example does (no port,
//! no process). The spawned-binary tests (http_serve, catalogue, lambda) keep
//! checking the real hosts; these check the router's behaviour case by case,
//! fast. Also: the serve host the notebook calls enforces the API key; and
//! the v2 routes case by case: the name from metadata and the digest
//! version, a client's own FP32 tensor (JSON and binary) answered exactly as
//! its picture, every refusal in the protocol's shape and status, readiness
//! while loading.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::support::*;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use catdog::host::serve::Server;
use catdog::http::state::AppState;
use catdog::{Classifier, Settings};
use serde_json::{json, Value};
use tower::ServiceExt;

const KEY: &str = "router-test-key-0123456789";

/// The tiny torch-style model (red → cat, blue → dog), loaded once, through
/// the settings and loading path every host uses.
fn classifier() -> Arc<Classifier> {
    static MODEL: OnceLock<Arc<Classifier>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            // Packed at load: a state made ready with a model that packs
            // later would leave ONNX Runtime building a session on another
            // thread as the test's process exits, which crashes it.
            let model = fixture("tiny_torch_nchw.onnx");
            load(&["--model", model.to_str().unwrap(), "--prepack", "true"])
        })
        .clone()
}

/// A model loaded with the settings of `args`.
fn load(args: &[&str]) -> Arc<Classifier> {
    let settings = settings(args);
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
}

fn settings(args: &[&str]) -> Settings {
    Settings::from_args(args.iter().copied()).unwrap()
}

/// The router over a ready model, with the access settings of `args`.
fn router(args: &[&str]) -> axum::Router {
    let s = settings(args);
    catdog::router(AppState::ready(
        classifier(),
        s.request_limits(),
        s.access_control().unwrap(),
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

/// A row of the bad-input table (`bad_inputs.rs`, shared with the
/// catalogue's real hosts) through the router, then a good request through
/// the same router.
async fn bad_input(case: crate::bad_inputs::Case) {
    static MODEL: OnceLock<Arc<Classifier>> = OnceLock::new();
    let model = MODEL
        .get_or_init(|| {
            load(&[
                "--model",
                fixture(crate::bad_inputs::MODEL).to_str().unwrap(),
            ])
        })
        .clone();
    let flags = case.flags();
    let s = settings(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let app = catdog::router(AppState::ready(
        model,
        s.request_limits(),
        s.access_control().unwrap(),
    ));
    let mut req = Request::builder().method(case.method).uri(&case.path);
    if let Some(c) = &case.content_type {
        req = req.header(header::CONTENT_TYPE, c);
    }
    if case.declared_length {
        req = req.header(header::CONTENT_LENGTH, case.body.len());
    }
    let (status, _, body) = call(
        app.clone(),
        req.body(Body::from(case.body.clone())).unwrap(),
    )
    .await;
    crate::bad_inputs::check(&case, "router", status.as_u16(), &body);
    let good = crate::bad_inputs::good();
    let req = post("/predict", "image/png", good.body.clone());
    let (status, _, body) = call(app, req).await;
    crate::bad_inputs::check(
        &good,
        &format!("router, after {}", case.name),
        status.as_u16(),
        &body,
    );
}

macro_rules! router_bad_input_tests {
    ($($name:ident => $case:expr),* $(,)?) => {
        /// Each row of the bad-input table, in process.
        mod bad_input {
            use super::bad_input;
            use crate::bad_inputs::Want::*;
            use crate::bad_inputs::*;
            $(
                #[tokio::test]
                async fn $name() {
                    bad_input($case).await;
                }
            )*
        }
    };
}
crate::bad_inputs::bad_input_table!(router_bad_input_tests);

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
            "get /metrics",
            "get /model",
            "get /openapi.json",
            "get /uploads/{id}",
            "get /v2",
            "get /v2/health/live",
            "get /v2/health/ready",
            "get /v2/models/{name}",
            "get /v2/models/{name}/ready",
            "get /v2/models/{name}/versions/{version}",
            "post /",
            "post /feedback",
            "post /predict",
            "post /uploads",
            "post /v2/models/{name}/infer",
            "post /v2/models/{name}/versions/{version}/infer",
        ]
    );
    // The key requirement follows the sub-router: on the protected operations only.
    let secured = |m: &str, p: &str| {
        doc["paths"][p][m]["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    };
    for (m, p) in [
        ("post", "/uploads"),
        ("get", "/uploads/{id}"),
        ("post", "/predict"),
        ("post", "/"),
        ("get", "/model"),
        ("get", "/metrics"),
        ("get", "/v2/models/{name}"),
        ("post", "/v2/models/{name}/infer"),
    ] {
        assert!(secured(m, p), "{m} {p} should list the key");
    }
    for (m, p) in [
        ("get", "/"),
        ("get", "/health"),
        ("get", "/openapi.json"),
        ("get", "/v2/health/ready"),
        ("get", "/v2/models/{name}/ready"),
    ] {
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
        "InferRequest",
        "InferResponse",
        "ModelMetadata",
        "OipErrorBody",
    ] {
        assert!(
            schemas.contains_key(name),
            "{name} missing from {:?}",
            schemas.keys()
        );
    }
}

/// A GET as the serve host passes on a local caller's request.
fn local_get(path: &str) -> Request<Body> {
    Request::get(path)
        .extension(catdog::http::access::LocalCaller)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn health_and_model_follow_the_model_state() {
    let s = settings(&[]);
    let state = AppState::loading(s.request_limits(), s.access_control().unwrap());
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
    // Who asks decides what /health tells: the reason (which may name
    // buckets, keys, S3's words) to a local caller of a keyless loopback
    // server (as the serve host marks them) or one with the key; the status
    // alone to anyone else (the tunnel, a Function URL).
    let (status, headers, body) = call(app.clone(), get("/health")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("retrying"))
    );
    assert!(body.get("reason").is_none(), "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "5");
    let (_, _, body) = call(app.clone(), local_get("/health")).await;
    assert_eq!(body["reason"], "S3 unreachable");
    let (_, headers, body) = call(app.clone(), get("/model")).await;
    assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "model_unavailable",
    );
    assert_eq!(headers[header::RETRY_AFTER], "5");

    state.set_failed("bad bytes".into());
    let (_, _, body) = call(app.clone(), local_get("/health")).await;
    assert_eq!(
        (body["status"].as_str(), body["reason"].as_str()),
        (Some("failed"), Some("bad bytes"))
    );

    state.set_ready(classifier());
    let (status, _, body) = call(app.clone(), get("/health")).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"status": "ok"})));
    let (status, _, body) = call(app.clone(), local_get("/health")).await;
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

/// The tiny model named `kitty` by its metadata, its digest given so its
/// version is known from the start.
fn kitty() -> axum::Router {
    static MODEL: OnceLock<Arc<Classifier>> = OnceLock::new();
    let model = MODEL
        .get_or_init(|| {
            load(&[
                "--model",
                fixture("tiny_named.onnx").to_str().unwrap(),
                "--model-sha256",
                &fixture_sha("tiny_named.onnx"),
            ])
        })
        .clone();
    let s = settings(&["--max-batch", "2"]);
    catdog::router(AppState::ready(
        model,
        s.request_limits(),
        s.access_control().unwrap(),
    ))
}

fn infer(path: &str, body: Value) -> Request<Body> {
    post(path, "application/json", body.to_string())
}

/// Every error under /v2 is the protocol's `{"error": "<message>"}`.
fn assert_oip_error(status: StatusCode, body: &Value, want: StatusCode, says: &str) {
    assert_eq!(status, want, "{body}");
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not a string error: {body}"));
    assert!(message.contains(says), "{body}");
}

#[tokio::test]
async fn the_model_is_named_by_its_metadata_and_versioned_by_its_digest() {
    let sha = fixture_sha("tiny_named.onnx");
    let (status, _, meta) = call(kitty(), get("/v2/models/kitty")).await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    assert_eq!(meta["name"], "kitty");
    assert_eq!(meta["versions"], json!([&sha[..12]]));
    assert_eq!(meta["platform"], "onnxruntime_onnx");
    for path in [
        format!("/v2/models/kitty/versions/{}", &sha[..12]),
        format!("/v2/models/kitty/versions/{sha}"),
    ] {
        assert_eq!(call(kitty(), get(&path)).await.0, StatusCode::OK, "{path}");
    }
    let (status, _, body) = call(kitty(), get("/v2/models/kitty/versions/1")).await;
    assert_oip_error(status, &body, StatusCode::NOT_FOUND, "no version `1`");
    let (status, _, body) = call(kitty(), get("/v2/models/catdog")).await;
    assert_oip_error(
        status,
        &body,
        StatusCode::NOT_FOUND,
        "this server serves `kitty`",
    );
    let (status, _, body) = call(kitty(), get("/v2/models/catdog/ready")).await;
    assert_oip_error(status, &body, StatusCode::NOT_FOUND, "unknown model");
    let (status, _, body) = call(kitty(), get("/v2/models/kitty/ready")).await;
    assert_eq!((status, &body["ready"]), (StatusCode::OK, &json!(true)));
    // the name and version reach the answer, the /model document and the metrics
    let red = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, png(RED));
    let (status, _, answer) = call(
        kitty(),
        infer(
            &format!("/v2/models/kitty/versions/{}/infer", &sha[..12]),
            json!({"id": "x", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [red]}]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["model_name"], "kitty");
    assert_eq!(answer["model_version"], &sha[..12]);
    assert_eq!(answer["id"], "x");
    assert_eq!(
        answer["outputs"][1],
        json!({"name": "label", "datatype": "BYTES", "shape": [1], "data": ["cat"]})
    );
    let (_, _, info) = call(kitty(), get("/model")).await;
    assert_eq!(
        (&info["name"], &info["contract_source"]["name"]),
        (&json!("kitty"), &json!("metadata"))
    );
}

#[tokio::test]
async fn a_client_s_own_tensor_is_answered_as_its_picture_is() {
    let model = classifier();
    let red = solid(RED, 64, 48, image::ImageFormat::Png);
    let picture = catdog::decode::decode_rgb(&red, Default::default()).unwrap();
    let tensor = model.preprocessor().tensor(&picture);
    let (_, _, want) = call(router(&[]), post("/predict", "image/png", red)).await;
    let want: Vec<f32> = ["cat", "dog"]
        .iter()
        .map(|l| want["scores"][l].as_f64().unwrap() as f32)
        .collect();

    // JSON, nested as [1, 3, 224, 224] (over the default body limit as text: raised here)
    let nested: Vec<Vec<Vec<f32>>> = tensor
        .chunks(224 * 224)
        .map(|p| p.chunks(224).map(<[f32]>::to_vec).collect())
        .collect();
    let app = router(&["--max-body-bytes", "20000000"]);
    let (status, _, json_answer) = call(
        app,
        infer("/v2/models/catdog/infer", json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224], "data": [nested]}],
            "outputs": [{"name": "probabilities"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json_answer}");
    let got: Vec<f32> = serde_json::from_value(json_answer["outputs"][0]["data"].clone()).unwrap();
    assert_eq!(got, want, "same f32 as /predict");
    assert_eq!(
        json_answer["outputs"].as_array().unwrap().len(),
        1,
        "only what was asked"
    );

    // binary: the JSON, then the tensor's little-endian bytes; the answer binary too
    let bytes: Vec<u8> = tensor.iter().flat_map(|f| f.to_le_bytes()).collect();
    let header = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224],
        "parameters": {"binary_data_size": bytes.len()}}], "parameters": {"binary_data_output": true}})
    .to_string();
    let body = [header.as_bytes(), &bytes].concat();
    let req = Request::post("/v2/models/catdog/infer")
        .header("inference-header-content-length", header.len())
        .body(Body::from(body))
        .unwrap();
    let res = router(&[]).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let json_len: usize = res.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    let raw = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let head: Value = serde_json::from_slice(&raw[..json_len]).unwrap();
    assert_eq!(
        head["outputs"][0]["parameters"]["binary_data_size"], 8,
        "{head}"
    );
    let probs: Vec<f32> = raw[json_len..json_len + 8]
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(probs, want);
    // label: one 4-byte length, then "cat"
    assert_eq!(&raw[json_len + 8..], b"\x03\x00\x00\x00cat");

    // not a finite number: refused, naming the picture
    let mut bad = bytes.clone();
    bad[400..404].copy_from_slice(&f32::NAN.to_le_bytes());
    let header = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224],
        "parameters": {"binary_data_size": bad.len()}}]})
    .to_string();
    let req = Request::post("/v2/models/catdog/infer")
        .header("inference-header-content-length", header.len())
        .body(Body::from([header.as_bytes(), &bad].concat()))
        .unwrap();
    let (status, _, body) = call(router(&[]), req).await;
    assert_oip_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "value 100 is not a finite number",
    );
}

#[tokio::test]
async fn bad_inference_requests_get_the_protocol_s_error_and_status() {
    let red = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, png(RED));
    let image = |shape: Value, data: Value| json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": shape, "data": data}]});
    let url = "/v2/models/kitty/infer";
    for (body, want, says) in [
        (
            json!({"inputs": []}),
            StatusCode::BAD_REQUEST,
            "0 inputs given",
        ),
        (
            json!({"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [1], "data": [red]}]}),
            StatusCode::BAD_REQUEST,
            "unexpected input `INPUT0`",
        ),
        (
            json!({"inputs": [{"name": "image", "datatype": "INT64", "shape": [1], "data": [1]}]}),
            StatusCode::BAD_REQUEST,
            "is INT64",
        ),
        (
            image(json!([2]), json!([red])),
            StatusCode::BAD_REQUEST,
            "2 elements",
        ),
        (
            image(json!([1]), json!("x")),
            StatusCode::BAD_REQUEST,
            "must be an array",
        ),
        (
            image(json!([1]), json!([7])),
            StatusCode::BAD_REQUEST,
            "not a (base64) string",
        ),
        (
            image(json!([1]), json!(["%%%"])),
            StatusCode::BAD_REQUEST,
            "invalid base64",
        ),
        (
            image(json!([1]), json!(["aGVsbG8="])),
            StatusCode::BAD_REQUEST,
            "image",
        ),
        (
            image(json!([0]), json!([])),
            StatusCode::BAD_REQUEST,
            "no picture",
        ),
        (
            image(json!([3]), json!([red, red, red])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "the limit is 2",
        ),
        (
            image(json!([-1]), json!([red])),
            StatusCode::BAD_REQUEST,
            "negative",
        ),
        (
            json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 2, 2], "data": [0.0]}]}),
            StatusCode::BAD_REQUEST,
            "takes [n, 3, 224, 224]",
        ),
        (
            json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [red]}], "outputs": [{"name": "logits"}]}),
            StatusCode::BAD_REQUEST,
            "unexpected inference output `logits`",
        ),
        (
            json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [red]}], "outputs": [{"name": "label", "parameters": {"classification": 2}}]}),
            StatusCode::BAD_REQUEST,
            "on `probabilities` only",
        ),
        (
            json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [red]}], "outputs": [{"name": "label", "parameters": {"binary_data": "yes"}}]}),
            StatusCode::BAD_REQUEST,
            "true or false",
        ),
        (json!({"inputs": "x"}), StatusCode::BAD_REQUEST, "not valid"),
    ] {
        let (status, _, answer) = call(kitty(), infer(url, body.clone())).await;
        assert_oip_error(status, &answer, want, says);
        let _ = body;
    }
    // the binary extension's framing
    for (len, body, says) in [
        ("999", &b"{}"[..], "not a length within"),
        ("abc", &b"{}"[..], "not a length within"),
    ] {
        let req = Request::post(url)
            .header("inference-header-content-length", len)
            .body(Body::from(body))
            .unwrap();
        let (status, _, answer) = call(kitty(), req).await;
        assert_oip_error(status, &answer, StatusCode::BAD_REQUEST, says);
    }
    let header = r#"{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":7}}]}"#;
    let body = [header.as_bytes(), b"\x03\x00\x00\x00abc", b"extra"].concat();
    let req = Request::post(url)
        .header("inference-header-content-length", header.len())
        .body(Body::from(body))
        .unwrap();
    let (status, _, answer) = call(kitty(), req).await;
    assert_oip_error(
        status,
        &answer,
        StatusCode::BAD_REQUEST,
        "5 bytes follow the JSON that no input claims",
    );
    // compressed bodies, over-limit bodies, unknown routes and methods: same shape
    let req = Request::post(url)
        .header("content-encoding", "gzip")
        .body(Body::from("x"))
        .unwrap();
    let (status, _, answer) = call(kitty(), req).await;
    assert_oip_error(status, &answer, StatusCode::UNSUPPORTED_MEDIA_TYPE, "gzip");
    let app = router(&["--max-body-bytes", "100"]);
    let (status, _, answer) = call(
        app,
        infer("/v2/models/catdog/infer", image(json!([1]), json!([red]))),
    )
    .await;
    assert_oip_error(
        status,
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        "limit of 100 bytes",
    );
    let (status, _, answer) = call(kitty(), get("/v2/nothing")).await;
    assert_oip_error(status, &answer, StatusCode::NOT_FOUND, "no such route");
    let (status, _, answer) = call(kitty(), get(url)).await;
    assert_oip_error(status, &answer, StatusCode::METHOD_NOT_ALLOWED, "method");
    // the key's refusal under /v2 too, while /predict's keeps its own shape
    let (status, headers, answer) = call(
        router(&["--api-key", KEY]),
        infer("/v2/models/catdog/infer", image(json!([1]), json!([red]))),
    )
    .await;
    assert_oip_error(status, &answer, StatusCode::UNAUTHORIZED, "API key");
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, answer) = call(router(&[]), get("/nothing")).await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn v2_readiness_follows_the_model_state() {
    let s = settings(&[]);
    let state = AppState::loading(s.request_limits(), s.access_control().unwrap());
    let app = catdog::router(state.clone());
    let (status, _, body) = call(app.clone(), get("/v2/health/ready")).await;
    assert_eq!(
        (status, &body["ready"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!(false))
    );
    let (status, _, body) = call(app.clone(), get("/v2/models/catdog/ready")).await;
    assert_eq!(
        (status, &body["ready"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!(false))
    );
    let (status, _, body) = call(app.clone(), get("/v2/health/live")).await;
    assert_eq!((status, &body["live"]), (StatusCode::OK, &json!(true)));
    let (status, _, body) = call(app.clone(), infer("/v2/models/catdog/infer", json!({}))).await;
    assert_oip_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "still loading",
    );
    state.set_ready(classifier());
    let (status, _, body) = call(app, get("/v2/health/ready")).await;
    assert_eq!((status, &body["ready"]), (StatusCode::OK, &json!(true)));
}

/// A model with a rejecting label (`neither`, as `catdog finetune` writes
/// it) answers it on every route, with its score: `/predict`, the
/// tutorial's `POST /`, the v2 `label` and `probabilities` outputs, `GET
/// /model` (the rule) and `catdog predict`; `NEITHER_BELOW` moves its
/// threshold.
#[tokio::test]
async fn a_rejecting_label_is_answered_on_every_route() {
    use base64::Engine as _;
    const GREEN: [u8; 3] = [30, 200, 30];
    let model = fixture("tiny_neither.onnx");
    let with = |extra: &[&str]| {
        let mut args = vec!["--model", model.to_str().unwrap()];
        args.extend_from_slice(extra);
        let s = settings(&args);
        catdog::router(AppState::ready(
            load(&args),
            s.request_limits(),
            s.access_control().unwrap(),
        ))
    };
    let app = with(&[]);
    let (status, _, v) = call(app.clone(), post("/predict", "image/png", png(GREEN))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["label"], "neither", "{v}");
    let scores = v["scores"].as_object().unwrap();
    assert_eq!(scores.keys().collect::<Vec<_>>(), ["cat", "dog", "neither"]);
    assert!(v["confidence"].as_f64().unwrap() > 0.9, "{v}");
    let (_, _, v) = call(app.clone(), post("/predict", "image/png", png(RED))).await;
    assert_eq!(v["label"], "cat", "{v}");

    // The tutorial's answer keeps its cat and dog figures, beside neither's.
    let (_, _, one) = call(app.clone(), post("/", "image/png", png(GREEN))).await;
    let p = &one["prediction"];
    assert!(p["cat"].is_number() && p["dog"].is_number(), "{one}");
    assert!(p["neither"].as_f64().unwrap() > 0.9, "{one}");

    // Open Inference Protocol: the label, and a probability per label.
    let b64 = base64::engine::general_purpose::STANDARD.encode(png(GREEN));
    let body =
        json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}]});
    let (status, _, v) = call(
        app.clone(),
        post(
            "/v2/models/catdog/infer",
            "application/json",
            body.to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let output = |name: &str| {
        v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {v}"))
            .clone()
    };
    assert_eq!(output("label")["data"], json!(["neither"]), "{v}");
    assert_eq!(output("probabilities")["shape"], json!([1, 3]), "{v}");

    let (_, _, m) = call(app, get("/model")).await;
    assert_eq!(m["labels"], json!(["cat", "dog", "neither"]));
    assert_eq!(
        m["rejection"],
        json!({"label": "neither", "below": 0.5}),
        "{m}"
    );

    // The threshold is the model's unless NEITHER_BELOW says otherwise: the
    // same green square with cat + dog ≈ 0.03 is then the likelier of them.
    let app = with(&["--neither-below", "0.01"]);
    let (_, _, v) = call(app.clone(), post("/predict", "image/png", png(GREEN))).await;
    assert_eq!(v["label"], "dog", "{v}");
    let (_, _, m) = call(app, get("/model")).await;
    assert_eq!(
        m["rejection"]["below"].as_f64().unwrap() as f32,
        0.01,
        "{m}"
    );

    // The command line says the same.
    let dir = std::env::temp_dir().join(format!("catdog-neither-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("green.png");
    std::fs::write(&file, png(GREEN)).unwrap();
    let out = std::process::Command::new(catdog_bin())
        .args(["predict", "--json", "--model"])
        .arg(&model)
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["label"], "neither", "{v}");
}

/// Path parameters fuzzed with invalid UTF-8, overlong and percent-encoded
/// values: every answer is in its route's error shape (`{"error": "…"}`
/// under /v2, `{"error": {"code", "message"}}` elsewhere), never axum's
/// text/plain, and the router keeps answering.
#[tokio::test]
async fn every_path_parameter_error_is_in_its_route_s_shape() {
    let long = "a".repeat(5000);
    let encoded_long = "%41".repeat(3000);
    let values = [
        "%FF%FE",
        "%C3%28",
        "%ED%A0%80",
        "%F8%88%80%80%80",
        "caf%C3%A9",
        "%00",
        "a%2Fb",
        "..%2F..",
        "%25",
        "%",
        "%G1",
        long.as_str(),
        encoded_long.as_str(),
    ];
    let app = router(&[]);
    for value in values {
        for (method, path) in [
            (Method::GET, format!("/v2/models/{value}")),
            (Method::GET, format!("/v2/models/{value}/ready")),
            (Method::GET, format!("/v2/models/catdog/versions/{value}")),
            (Method::POST, format!("/v2/models/{value}/infer")),
            (
                Method::POST,
                format!("/v2/models/catdog/versions/{value}/infer"),
            ),
            (Method::GET, format!("/uploads/{value}")),
        ] {
            let req = Request::builder()
                .method(method.clone())
                .uri(&path)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let res = app.clone().oneshot(req).await.unwrap();
            let status = res.status();
            let ctype = res
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_string());
            let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .unwrap();
            let what = format!("{method} {}: {status}", &path[..path.len().min(80)]);
            // Refused (4xx), or a real name whose version is not known yet (503).
            assert!(
                status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE,
                "{what}: {}",
                String::from_utf8_lossy(&bytes)
            );
            assert_eq!(ctype.as_deref(), Some("application/json"), "{what}");
            let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{what}: not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            if path.starts_with("/v2/") {
                assert!(body["error"].is_string(), "{what}: {body}");
            } else {
                assert!(
                    body["error"]["code"].is_string() && body["error"]["message"].is_string(),
                    "{what}: {body}"
                );
            }
            if value.starts_with("%FF") && path.starts_with("/v2/models/%FF") {
                assert_eq!(status, StatusCode::BAD_REQUEST, "{what}");
                assert!(
                    body["error"].as_str().unwrap().contains("UTF-8"),
                    "{what}: {body}"
                );
            }
        }
    }
    let (status, _, _) = call(app, post("/predict", "image/png", png(RED))).await;
    assert_eq!(status, StatusCode::OK, "still serving");
}

/// A POST to /predict whose body is `chunks`, each after `pause`, and then
/// never ends.
fn trickle(chunks: usize, pause: Duration) -> Request<Body> {
    let stream = futures_util::stream::unfold(0, move |n| async move {
        if n == chunks {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(pause).await;
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x")),
            n + 1,
        ))
    });
    Request::post("/predict")
        .header(header::CONTENT_TYPE, "image/png")
        .body(Body::from_stream(stream))
        .unwrap()
}

#[tokio::test]
async fn a_body_that_stops_coming_is_a_408_after_the_body_timeout() {
    let app = router(&["--body-timeout-s", "0.3"]);
    let (status, _, body) = call(app.clone(), trickle(2, Duration::from_millis(50))).await;
    assert_error(
        status,
        &body,
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("0.3 s"),
        "{body}"
    );
    // The server goes on.
    let (status, _, body) = call(app, post("/predict", "image/png", png(RED))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_body_that_trickles_past_the_request_timeout_is_a_408() {
    // One byte every 100 ms never pauses long enough for the body timeout,
    // yet the whole request has its own.
    let app = router(&["--body-timeout-s", "5", "--request-timeout-s", "0.8"]);
    let (status, _, body) = call(app, trickle(usize::MAX, Duration::from_millis(100))).await;
    assert_error(
        status,
        &body,
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
    );
    // The request timeout's refusal, not the body timeout's.
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("within the request timeout"), "{message}");
}

#[tokio::test]
async fn v2_data_past_the_shape_is_refused_before_it_is_read() {
    // Six MiB of `0,` for a [1, …] tensor: refused at the shape's count.
    let mut data = String::from("[");
    data.push_str(&"0,".repeat(3 << 20));
    data.push_str("0]");
    let body = format!(
        r#"{{"inputs": [{{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224], "data": {data}}}]}}"#
    );
    let app = router(&["--max-body-bytes", "8000000"]);
    let (status, _, answer) = call(
        app,
        post("/v2/models/catdog/infer", "application/json", body),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("more than the shape's"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_form_of_many_fields_gets_a_short_refusal() {
    let mut form = String::new();
    for i in 0..100_000 {
        form.push_str(&format!(
            "--b\r\ncontent-disposition: form-data; name=\"f{i}\"\r\n\r\n\r\n"
        ));
    }
    form.push_str("--b--\r\n");
    let app = router(&["--max-body-bytes", "16000000"]);
    let (status, _, body) = call(
        app,
        post("/predict", "multipart/form-data; boundary=b", form),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "no_image");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.len() <= 1100, "a {} byte message", message.len());
    assert!(message.contains("100000 fields"), "{message}");
}
