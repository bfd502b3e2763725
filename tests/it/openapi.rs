//! The OpenAPI document (`GET /openapi.json`, generated from the handlers by
//! utoipa) against the live server: schemathesis (PyPI) generates requests
//! from it and checks every answer (status documented, body matching its
//! schema, no 5xx, content types), with and without an API key. Also: the
//! document lists every route, status and content type, and its example
//! requests (`/predict`, v2 `infer`) are answered.

use crate::support::*;
use serde_json::Value;

const KEY: &str = "openapi-test-key-0123456789";

fn schemathesis() -> std::path::PathBuf {
    let py = python();
    py.parent()
        .map(|d| d.join("schemathesis"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "schemathesis".into())
}

/// The model's version (its digest's first digits), once the server knows
/// it: a local file's digest is computed in the background, on otherwise
/// idle cores, so it may come after the model answers. Without the key
/// (where the route answers 401) there is none to know: `unknown`.
async fn model_version(base: &str, headers: &[&str]) -> String {
    let key = headers
        .iter()
        .find_map(|h| h.strip_prefix("X-API-Key: "))
        .unwrap_or("");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let res = reqwest::Client::new()
            .get(format!("{base}/v2/models/catdog"))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        if res.status() == 401 {
            return "unknown".into();
        }
        let model: Value = res.json().await.unwrap();
        if let Some(version) = model["versions"][0].as_str() {
            return version.to_string();
        }
        assert!(
            std::time::Instant::now() < until,
            "no model version within 60 s: {model}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Runs schemathesis against `base` and panics with its report unless clean.
/// `positive_data_acceptance` is left out: it expects every schema-valid body
/// to be accepted, but random bytes (or random base64) are schema-valid and
/// are not pictures, so the 400 `invalid_image` they get is the right answer.
///
/// The path parameters of the `/v2/models/{name}…` routes are set to the
/// model's name and version (`config`), so that generated requests reach the
/// handlers instead of their 404. Two of schemathesis's warnings are left
/// out: `validation_mismatch` (most schema-valid inference requests are
/// refused: random tensors are not pictures, the same reason as above) and
/// `missing_deserializer` (binary inference answers are
/// application/octet-stream, which it cannot read; tests/it/oip.rs reads them
/// with tritonclient and the kserve SDK).
///
/// `low_valid_rate` is left out too (schemathesis 4.32.5 warned on `POST /`
/// and `/predict`: 7–12 of ~70 fuzzed bodies accepted). The schema states
/// every constraint a schema can (the JSON body is the `Deserialize` type
/// that parses it: required fields, `minItems`, a base64 `pattern`,
/// `contentMediaType: image/*`), but whether bytes are a picture that decodes
/// is not a property JSON Schema can express, so generated bodies stay mostly
/// non-pictures however exact the schema is: the same reason as
/// `positive_data_acceptance` above. Every one of them still gets its
/// documented 4xx, which the checks verify.
///
/// The server has an uploads bucket (moto) with one picture uploaded, whose
/// id is `upload_id`: `/uploads/{id}` is then reached as the `/v2` routes are.
async fn run_schemathesis(
    base: &str,
    headers: &[&str],
    upload_id: &str,
    examples: Examples,
) -> String {
    let version = model_version(base, headers).await;
    let config = std::env::temp_dir().join(format!(
        "catdog-schemathesis-{}-{}.toml",
        std::process::id(),
        base.rsplit(':').next().unwrap()
    ));
    std::fs::write(
        &config,
        format!(
            "[parameters]\n\"path.name\" = \"catdog\"\n\"path.version\" = \"{version}\"\n\"path.id\" = \"{upload_id}\"\n"
        ),
    )
    .unwrap();
    let warnings = "missing_auth,missing_test_data,base_url_mismatch,unused_openapi_auth,\
                    unsupported_regex,method_not_allowed,unmatched_filter,unresolvable_reference,\
                    rate_limited,dictionary_mismatch,timeout_units";
    let mut cmd = tokio::process::Command::new(schemathesis());
    cmd.arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--warnings", warnings])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", examples.0, "--seed", "1", "--no-color"])
        .current_dir(std::env::temp_dir())
        .env("SCHEMATHESIS_HOOKS", "");
    for h in headers {
        cmd.args(["--header", h]);
    }
    let out = cmd
        .output()
        .await
        .expect("run schemathesis (make test installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}"
    );
    assert!(!report.contains("failure"), "{report}");
    report.into_owned()
}

/// How many requests schemathesis generates per operation (`--max-examples`).
struct Examples(&'static str);

/// Where the answers depend on the request: every body and parameter is
/// read, so the handlers see the full range.
const THOROUGH: Examples = Examples("100");

/// Where every protected route must answer 401 before it reads anything (no
/// key): which request it is does not change the answer, and a handful per
/// operation shows that the key is checked first, as 100 would.
const KEYLESS: Examples = Examples("20");

/// Corrections go to the uploads bucket's feedback prefix (as the
/// template sets it up), so `POST /feedback` is reached, not only its 404.
const FEEDBACK: &[&str] = &["--feedback", "s3://uploads/feedback/"];

#[tokio::test(flavor = "multi_thread")]
async fn the_document_describes_the_api_and_the_server_keeps_to_it() {
    let model = fixture("tiny_caffe_nhwc.onnx");
    let (_moto, _p, base, _) = presigned::uploads_stack_with(&model, FEEDBACK, &[]).await;
    let red = std::fs::read(fixture("images/red.jpg")).unwrap();
    let ticket = presigned::upload(&base, &red, "image/jpeg", &[]).await;
    let doc: Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/",
        "/predict",
        "/uploads",
        "/uploads/{id}",
        "/health",
        "/model",
        "/openapi.json",
        "/metrics",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not documented");
    }
    let predict = &doc["paths"]["/predict"]["post"];
    for status in ["200", "400", "401", "413", "415", "422", "500", "503"] {
        assert!(
            predict["responses"].get(status).is_some(),
            "/predict lacks {status}"
        );
    }
    let content = predict["requestBody"]["content"].as_object().unwrap();
    for ctype in [
        "image/jpeg",
        "image/png",
        "application/octet-stream",
        "multipart/form-data",
        "application/json",
    ] {
        assert!(content.contains_key(ctype), "{ctype}");
    }
    // The documented example request is answered, with the documented shape.
    let example = &doc["components"]["schemas"]["JsonPictures"]["example"];
    let res = reqwest::Client::new()
        .post(format!("{base}/predict"))
        .json(example)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["label"], "cat", "{v}");

    // and so is the protocol's
    let example = &doc["components"]["schemas"]["InferRequest"]["example"];
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/v2/models/catdog/infer"))
        .json(example)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["outputs"][1]["data"], serde_json::json!(["cat"]), "{v}");

    let report = run_schemathesis(&base, &[], ticket["id"].as_str().unwrap(), THOROUGH).await;
    assert!(report.contains("No issues found"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_an_api_key_the_document_stays_public_and_true() {
    let model = fixture("tiny_caffe_nhwc.onnx");
    let (_moto, _p, base, _) =
        presigned::uploads_stack_with(&model, FEEDBACK, &[("CATDOG_API_KEY", KEY)]).await;
    let red = std::fs::read(fixture("images/red.jpg")).unwrap();
    let ticket = presigned::upload(&base, &red, "image/jpeg", &[("x-api-key", KEY)]).await;
    let id = ticket["id"].as_str().unwrap();
    assert_eq!(
        reqwest::get(format!("{base}/openapi.json"))
            .await
            .unwrap()
            .status(),
        200
    );
    let header = format!("X-API-Key: {KEY}");
    let report = run_schemathesis(&base, &[&header], id, THOROUGH).await;
    assert!(report.contains("No issues found"), "{report}");
    // without the key: every protected answer is the documented 401, and
    // schemathesis notices it could not get past it
    let report = run_schemathesis(&base, &[], id, KEYLESS).await;
    assert!(
        report.contains("11 operations returned only 401"),
        "{report}"
    );
}
