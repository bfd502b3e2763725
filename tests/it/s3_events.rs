//! The S3 side of the one bootstrap: the real `catdog` binary as a Lambda
//! function under cargo-lambda's emulator, fed the events in `events/` (S3
//! put, SQS, EventBridge, Batch Operations 1.0 and 2.0) about objects on
//! moto's S3 server (s3s-fs has no object tagging), then the tags and
//! records read back from that server. Also: the loop guard, idempotency,
//! bad objects failing alone with their reasons (not a picture, over the
//! limit, deleted, access denied, throttled: the last two from a proxy in
//! front of moto that answers for S3), and a 500-task Batch Operations job.
//! And `catdog predict s3://bucket/prefix/`: the shared test photos on
//! s3s-fs answered as `catdog predict DIR` answers them, and with
//! `--write-results` the tags and records the function writes (on moto).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use serde_json::{json, Value};

use crate::support::*;

const BUCKET: &str = "uploads";
/// Small, so that an over-limit object is cheap to make.
const MAX_BODY: usize = 200_000;

/// moto, a fault proxy in front of it, the emulator and the bootstrap.
struct Stack {
    _moto: Proc,
    _emulator: Proc,
    _boot: Proc,
    port: u16,
    s3: Client,
    /// The paths of every request the bootstrap sent to S3.
    seen: Seen,
}

type Seen = Arc<std::sync::Mutex<Vec<String>>>;

/// Answers for S3 where a key asks for it: `…forbidden…` gets 403
/// AccessDenied, `…throttled…` 503 SlowDown, `…slow…` is sent on after
/// 60 s; everything else goes to moto. Every request's path is noted.
async fn fault_proxy(upstream: String) -> (String, Seen) {
    let http = reqwest::Client::new();
    let upstream = Arc::new(upstream);
    let seen = Seen::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let http = http.clone();
        let upstream = upstream.clone();
        let log = log.clone();
        async move {
            use axum::response::IntoResponse;
            let path = req.uri().path().to_string();
            log.lock().unwrap().push(path.clone());
            if path.contains("slow") {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            let fault = |status: u16, code: &str| {
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                     <Message>{code} (from the test's proxy)</Message></Error>"
                );
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    [("content-type", "application/xml")],
                    body,
                )
                    .into_response()
            };
            if path.contains("forbidden") {
                return fault(403, "AccessDenied");
            }
            if path.contains("throttled") {
                return fault(503, "SlowDown");
            }
            let url = format!(
                "{upstream}{}",
                req.uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
            );
            let method = req.method().clone();
            let headers = req.headers().clone();
            let body = axum::body::to_bytes(req.into_body(), 64 << 20)
                .await
                .unwrap();
            let mut fwd = http.request(method, url).body(body);
            for (k, v) in &headers {
                if k != "host" && k != "content-length" {
                    fwd = fwd.header(k, v);
                }
            }
            let res = fwd.send().await.unwrap();
            let status = res.status();
            let mut out = axum::http::Response::builder().status(status);
            for (k, v) in res.headers() {
                if k != "transfer-encoding" && k != "content-length" {
                    out = out.header(k, v);
                }
            }
            out.body(axum::body::Body::from(res.bytes().await.unwrap()))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn stack(env: &[(&str, &str)]) -> Stack {
    let (moto, endpoint) = moto().await;
    let (proxy, seen) = fault_proxy(endpoint.clone()).await;
    let s3 = s3_test_client(&endpoint);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let (emulator, port) = crate::support::emulator::start().await;
    let boot = Command::new(catdog_bin())
        .envs(crate::support::emulator::runtime_env(port))
        .envs(s3_env(&proxy))
        .env("MODEL_URI", fixture("tiny_torch_nchw.onnx"))
        .env("CATDOG_MAX_OBJECT_BYTES", MAX_BODY.to_string())
        // Events may name the whole bucket unless a test narrows it.
        .env("CATDOG_UPLOADS", format!("s3://{BUCKET}/"))
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Stack {
        _moto: moto,
        _emulator: emulator,
        _boot: Proc {
            child: boot,
            name: "catdog bootstrap".into(),
        },
        port,
        s3,
        seen,
    }
}

impl Stack {
    /// Lambda's Invoke API on the emulator: the status and the answer (an
    /// invoke that failed answers Lambda's `errorType`/`errorMessage`).
    async fn invoke(&self, event: &Value) -> (u16, Value) {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/_/invocations",
            self.port
        );
        let res = reqwest::Client::new()
            .post(url)
            .json(event)
            .timeout(Duration::from_secs(180))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> String {
        let out = self
            .s3
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
        out.e_tag().unwrap().trim_matches('"').to_string()
    }

    async fn tags(&self, key: &str) -> BTreeMap<String, String> {
        let out = self
            .s3
            .get_object_tagging()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap();
        out.tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()
    }

    async fn record(&self, key: &str) -> Option<Value> {
        let out = self
            .s3
            .get_object()
            .bucket(BUCKET)
            .key(format!("catdog-results/{key}.json"))
            .send()
            .await
            .ok()?;
        let bytes = out.body.collect().await.unwrap().into_bytes();
        Some(serde_json::from_slice(&bytes).unwrap())
    }
}

/// An event file of `events/`.
fn event_file(name: &str) -> Value {
    let path = workspace().join("events").join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// S3 URL-encodes keys in events: a space as `+`, other bytes as `%XX`.
fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The SAM CLI's S3 put event, its one record copied for each `(key, etag)`.
fn s3_put_event(objects: &[(&str, &str)]) -> Value {
    let mut ev = event_file("s3-put.json");
    let template = ev["Records"][0].clone();
    ev["Records"] = objects
        .iter()
        .map(|(key, etag)| {
            let mut r = template.clone();
            r["s3"]["bucket"]["name"] = json!(BUCKET);
            r["s3"]["bucket"]["arn"] = json!(format!("arn:aws:s3:::{BUCKET}"));
            r["s3"]["object"]["key"] = json!(encode_key(key));
            r["s3"]["object"]["eTag"] = json!(etag);
            r
        })
        .collect();
    ev
}

/// The SAM CLI's SQS event, one message per `(message id, key, etag)`,
/// each carrying an S3 put event for its object.
fn sqs_event(messages: &[(&str, &str, &str)]) -> Value {
    let mut ev = event_file("sqs-s3.json");
    let template = ev["Records"][0].clone();
    ev["Records"] = messages
        .iter()
        .map(|(id, key, etag)| {
            let mut m = template.clone();
            m["messageId"] = json!(id);
            m["body"] = json!(s3_put_event(&[(key, etag)]).to_string());
            m
        })
        .collect();
    ev
}

fn red() -> Vec<u8> {
    std::fs::read(fixture("images/red.png")).unwrap()
}

fn blue() -> Vec<u8> {
    solid([0, 0, 255], 64, 48, image::ImageFormat::Png)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_put_tags_the_picture_writes_its_record_and_a_retry_does_no_second_inference() {
    let st = stack(&[]).await;
    let key = "my photos/chat été+1.png";
    let etag = st.put(key, red()).await;
    st.s3
        .put_object_tagging()
        .bucket(BUCKET)
        .key(key)
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .tag_set(
                    aws_sdk_s3::types::Tag::builder()
                        .key("owner")
                        .value("ann")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let event = s3_put_event(&[(key, &etag)]);
    let (status, answer) = st.invoke(&event).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["objects"][0]["status"], "classified", "{answer}");
    assert_eq!(answer["objects"][0]["label"], "cat", "{answer}");

    let tags = st.tags(key).await;
    assert_eq!(
        tags.get("owner").map(String::as_str),
        Some("ann"),
        "{tags:?}"
    );
    assert_eq!(tags["catdog-label"], "cat", "{tags:?}");
    let confidence: f32 = tags["catdog-confidence"].parse().unwrap();
    assert!(confidence > 0.5 && confidence <= 1.0, "{tags:?}");
    let sha = fixture_sha("tiny_torch_nchw.onnx");
    assert!(tags["catdog-model"].contains(&sha[..12]), "{tags:?}");

    let record = st.record(key).await.expect("the record was written");
    assert_eq!(record["key"], key);
    assert_eq!(record["bucket"], BUCKET);
    assert_eq!(record["etag"], etag.as_str());
    assert_eq!(record["label"], "cat");
    assert_eq!(record["model"]["sha256"], sha.as_str());
    assert!(
        record["timings_ms"]["inference"].as_f64().unwrap() > 0.0,
        "{record}"
    );

    // The same event again (S3 delivers at least once): answered from the
    // record, which is left exactly as it was.
    let (status, again) = st.invoke(&event).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["objects"][0]["status"], "reused", "{again}");
    assert_eq!(st.record(key).await.unwrap(), record);

    // The record's own event (a bucket notified of every put): never classified.
    let own = format!("catdog-results/{key}.json");
    let (status, ignored) = st.invoke(&s3_put_event(&[(&own, "0")])).await;
    assert_eq!(status, 200, "{ignored}");
    assert_eq!(ignored["objects"][0]["status"], "ignored", "{ignored}");
    assert!(
        st.record(&own).await.is_none(),
        "a record of a record was written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_objects_fail_alone_with_their_reasons() {
    let st = stack(&[]).await;
    let good = st.put("good.png", blue()).await;
    let text = st.put("notes.png", b"not a picture at all".to_vec()).await;
    let big = st.put("big.png", vec![7u8; MAX_BODY + 1]).await;
    let forbidden = st.put("forbidden.png", red()).await;
    let event = s3_put_event(&[
        ("good.png", &good),
        ("notes.png", &text),
        ("big.png", &big),
        ("deleted.png", "0123"),
        ("forbidden.png", &forbidden),
    ]);
    let (status, answer) = st.invoke(&event).await;
    // Every failure is permanent: the invoke succeeds (a retry would not help).
    assert_eq!(status, 200, "{answer}");
    let objects = answer["objects"].as_array().unwrap();
    let code = |i: usize| {
        objects[i]["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(objects[0]["label"], "dog", "{answer}");
    assert_eq!(code(1), "invalid_image", "{answer}");
    assert_eq!(code(2), "payload_too_large", "{answer}");
    assert_eq!(code(3), "no_such_key", "{answer}");
    assert_eq!(code(4), "access_denied", "{answer}");
    for failed in &objects[1..] {
        assert_eq!(failed["error"]["kind"], "permanent", "{answer}");
    }
    assert_eq!(st.tags("good.png").await["catdog-label"], "dog");
    // The reasons are in the records, where someone looking at the bucket finds them.
    let rec = st.record("notes.png").await.expect("failure record");
    assert_eq!(rec["error"]["code"], "invalid_image", "{rec}");
    assert!(rec.get("label").is_none(), "{rec}");
    assert_eq!(
        st.record("big.png").await.unwrap()["error"]["code"],
        "payload_too_large"
    );
    assert!(
        st.tags("notes.png").await.is_empty(),
        "a failed object is not tagged"
    );
    // The deleted object gets no record (there is nothing to describe).
    assert!(st.record("deleted.png").await.is_none());

    // A failure that may pass (S3 throttling) fails the asynchronous invoke,
    // so that Lambda retries it, and says which object and why.
    let (status, failed) = st
        .invoke(&s3_put_event(&[
            ("good.png", &good),
            ("throttled.png", "0"),
        ]))
        .await;
    assert_ne!(status, 200, "{failed}");
    let text = failed.to_string();
    assert!(text.contains("RetryableFailure"), "{text}");
    assert!(text.contains("throttled"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sqs_messages_come_back_only_when_their_failure_may_pass() {
    let st = stack(&[]).await;
    let good = st.put("in/cat.png", red()).await;
    let text = st.put("in/text.png", b"hello".to_vec()).await;
    let messages = [
        ("m-good", "in/cat.png", good.as_str()),
        ("m-throttled", "in/throttled.png", "0"),
        ("m-text", "in/text.png", text.as_str()),
        ("m-forbidden", "in/forbidden.png", "0"),
    ];
    let ev = sqs_event(&messages);
    let (status, answer) = st.invoke(&ev).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m-throttled"}]})
    );
    assert_eq!(st.tags("in/cat.png").await["catdog-label"], "cat");
    assert_eq!(
        st.record("in/text.png").await.unwrap()["error"]["code"],
        "invalid_image"
    );
    // S3's test message, sent when a notification is set up, is no failure.
    let mut test_event = event_file("sqs-s3.json");
    test_event["Records"][0]["body"] =
        json!(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"uploads"}"#);
    let (status, answer) = st.invoke(&test_event).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"batchItemFailures": []}));
    // A message that is no S3 notification is kept (retried, then moved to
    // the dead-letter queue where someone sees it), not dropped.
    let mut garbled = event_file("sqs-s3.json");
    let m = garbled["Records"][0].clone();
    garbled["Records"] = ["not json at all", r#"{"Records": 3}"#]
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut m = m.clone();
            m["messageId"] = json!(format!("m-garbled-{i}"));
            m["body"] = json!(body);
            m
        })
        .collect();
    let (status, answer) = st.invoke(&garbled).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m-garbled-0"}, {"itemIdentifier": "m-garbled-1"}]})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_outside_the_uploads_area_are_refused_before_any_s3_call() {
    let st = stack(&[("CATDOG_UPLOADS", "s3://uploads/incoming/")]).await;
    let etag = st.put("incoming/cat.png", red()).await;
    st.put("batch/manifests/m.png", red()).await;
    let mut ev = s3_put_event(&[
        ("incoming/cat.png", &etag),
        ("batch/manifests/m.png", "0"),
        ("incoming/../batch/manifests/m.png", "0"),
    ]);
    let mut elsewhere = ev["Records"][0].clone();
    elsewhere["s3"]["bucket"]["name"] = json!("someone-elses");
    elsewhere["s3"]["object"]["key"] = json!("incoming/cat.png");
    ev["Records"].as_array_mut().unwrap().push(elsewhere);
    st.seen.lock().unwrap().clear();
    let (status, answer) = st.invoke(&ev).await;
    assert_eq!(status, 200, "{answer}");
    let objects = answer["objects"].as_array().unwrap();
    assert_eq!(objects[0]["status"], "classified", "{answer}");
    for refused in &objects[1..] {
        assert_eq!(refused["status"], "failed", "{answer}");
        assert_eq!(refused["error"]["code"], "out_of_scope", "{answer}");
    }
    let seen = st.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|p| !p.contains("manifests") && !p.contains("someone-elses")),
        "S3 was asked about objects outside the uploads area: {seen:?}"
    );
    assert!(
        seen.iter().any(|p| p.contains("incoming/cat.png")),
        "{seen:?}"
    );
    // Nothing was written about them either.
    assert!(st.tags("batch/manifests/m.png").await.is_empty());
}

/// The answer to an invoke: a response, never an invocation error (a
/// timed-out invoke is one).
async fn within_deadline(
    api: &mut crate::support::lambda_api::Harness,
    id: &str,
    event: Value,
) -> Value {
    match api.invoke(id, event).await {
        crate::support::lambda_api::Reply::Response(_, v) => v,
        other => panic!("{id}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invoke_answers_before_its_deadline_and_lists_what_it_did_not_finish() {
    // A Runtime API that gives each invoke 12 s, as Lambda does with the
    // function's timeout (cargo-lambda's emulator sends no real deadline);
    // a margin of 2 s leaves 10 s. The slow object's GET takes 60 s: it is
    // left to be delivered again, and the one done keeps its result; the
    // invoke itself answers (without the deadline it would not within the
    // harness's 60 s).
    let (_moto, endpoint) = moto().await;
    let (proxy, _seen) = fault_proxy(endpoint.clone()).await;
    let s3 = s3_test_client(&endpoint);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let put = |key: &'static str| {
        let s3 = s3.clone();
        async move {
            let out = s3
                .put_object()
                .bucket(BUCKET)
                .key(key)
                .body(ByteStream::from(red()));
            out.send()
                .await
                .unwrap()
                .e_tag()
                .unwrap()
                .trim_matches('"')
                .to_string()
        }
    };
    let good = put("in/cat.png").await;
    put("in/slow.png").await;
    let mut api = crate::support::lambda_api::Harness::start().await;
    api.set_timeout(Duration::from_secs(12));
    let mut env = s3_env(&proxy);
    env.extend(
        [
            (
                "MODEL_URI",
                fixture("tiny_torch_nchw.onnx").display().to_string(),
            ),
            ("CATDOG_UPLOADS", format!("s3://{BUCKET}/")),
            ("CATDOG_DEADLINE_MARGIN_MS", "2000".into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let _boot = api.bootstrap(&env);
    let ev = sqs_event(&[
        ("m-good", "in/cat.png", good.as_str()),
        ("m-slow", "in/slow.png", "0"),
    ]);
    let answer = within_deadline(&mut api, "sqs", ev).await;
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m-slow"}]})
    );
    let tags = s3
        .get_object_tagging()
        .bucket(BUCKET)
        .key("in/cat.png")
        .send()
        .await
        .unwrap();
    assert!(tags
        .tag_set()
        .iter()
        .any(|t| t.key() == "catdog-label" && t.value() == "cat"));

    // Batch Operations: the unfinished task is a TemporaryFailure.
    let answer = within_deadline(
        &mut api,
        "batch",
        batch_event("2.0", &["in/cat.png".into(), "in/slow.png".into()]),
    )
    .await;
    let codes: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resultCode"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["Succeeded", "TemporaryFailure"], "{answer}");

    // HTTP: 503 deadline_exceeded with Retry-After, never a timed-out invoke.
    let mut url = event_file("function-url.json");
    url["headers"] = json!({"content-type": "application/json"});
    url["isBase64Encoded"] = json!(false);
    url["body"] = json!(json!({"s3": format!("s3://{BUCKET}/in/slow.png")}).to_string());
    let answer = within_deadline(&mut api, "http", url).await;
    assert_eq!(answer["statusCode"], 503, "{answer}");
    assert_eq!(answer["headers"]["retry-after"], "1", "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "deadline_exceeded", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_eventbridge_object_created_event_is_classified() {
    let st = stack(&[("CATDOG_RESULTS", "tags")]).await;
    let etag = st.put("eb/dog one.png", blue()).await;
    let mut ev = event_file("eventbridge-s3.json");
    ev["detail"]["bucket"]["name"] = json!(BUCKET);
    ev["detail"]["object"]["key"] = json!(encode_key("eb/dog one.png"));
    ev["detail"]["object"]["etag"] = json!(etag);
    ev["detail"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("version-id");
    let (status, answer) = st.invoke(&ev).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["objects"][0]["label"], "dog", "{answer}");
    assert_eq!(st.tags("eb/dog one.png").await["catdog-label"], "dog");
    // CATDOG_RESULTS=tags: no record.
    assert!(st.record("eb/dog one.png").await.is_none());
}

/// Batch Operations tasks for `keys` in schema `version`'s shape.
fn batch_event(version: &str, keys: &[String]) -> Value {
    let mut ev = event_file(&format!("s3-batch-{version}.json"));
    let template = ev["tasks"][0].clone();
    ev["tasks"] = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let mut t = template.clone();
            t["taskId"] = json!(format!("task-{i}"));
            t["s3Key"] = json!(encode_key(key));
            t["s3VersionId"] = Value::Null;
            if version == "1.0" {
                t["s3BucketArn"] = json!(format!("arn:aws:s3:::{BUCKET}"));
            } else {
                t["s3Bucket"] = json!(BUCKET);
            }
            t
        })
        .collect();
    ev
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_operations_answer_every_task_in_both_schemas() {
    let st = stack(&[]).await;
    st.put("b/cat.png", red()).await;
    st.put("b/dog é.png", blue()).await;
    st.put("b/text.png", b"zzz".to_vec()).await;
    let keys: Vec<String> = [
        "b/cat.png",
        "b/dog é.png",
        "b/text.png",
        "b/gone.png",
        "b/throttled.png",
    ]
    .map(String::from)
    .to_vec();
    for version in ["1.0", "2.0"] {
        let (status, answer) = st.invoke(&batch_event(version, &keys)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["invocationSchemaVersion"], version, "{answer}");
        assert_eq!(answer["treatMissingKeysAs"], "PermanentFailure", "{answer}");
        let results = answer["results"].as_array().unwrap();
        let codes: Vec<&str> = results
            .iter()
            .map(|r| r["resultCode"].as_str().unwrap())
            .collect();
        assert_eq!(
            codes,
            [
                "Succeeded",
                "Succeeded",
                "PermanentFailure",
                "PermanentFailure",
                "TemporaryFailure"
            ],
            "{version}: {answer}"
        );
        assert_eq!(results[0]["taskId"], "task-0");
        assert!(
            results[0]["resultString"]
                .as_str()
                .unwrap()
                .starts_with("cat "),
            "{answer}"
        );
        assert!(
            results[1]["resultString"]
                .as_str()
                .unwrap()
                .starts_with("dog "),
            "{answer}"
        );
        assert!(
            results[2]["resultString"]
                .as_str()
                .unwrap()
                .contains("invalid_image"),
            "{answer}"
        );
        assert!(
            results[3]["resultString"]
                .as_str()
                .unwrap()
                .contains("no_such_key"),
            "{answer}"
        );
    }
    assert_eq!(st.tags("b/dog é.png").await["catdog-label"], "dog");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_500_task_batch_mixes_good_and_bad_objects_and_each_gets_its_result() {
    let st = stack(&[("CATDOG_OBJECT_CONCURRENCY", "8")]).await;
    let (red, blue) = (red(), blue());
    let mut keys = Vec::new();
    let mut want = Vec::new();
    for i in 0..500 {
        let (key, expect) = match i % 10 {
            8 => (format!("many/{i}.txt"), "PermanentFailure"),
            9 => (format!("many/missing-{i}.png"), "PermanentFailure"),
            _ => (format!("many/{i} photo.png"), "Succeeded"),
        };
        match i % 10 {
            8 => {
                st.put(&key, format!("text {i}").into_bytes()).await;
            }
            9 => {}
            n => {
                st.put(
                    &key,
                    if n % 2 == 0 {
                        red.clone()
                    } else {
                        blue.clone()
                    },
                )
                .await;
            }
        }
        keys.push(key);
        want.push(expect);
    }
    let (status, answer) = st.invoke(&batch_event("2.0", &keys)).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 500);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["taskId"], format!("task-{i}"), "{r}");
        assert_eq!(r["resultCode"], want[i], "task {i}: {r}");
        if want[i] == "Succeeded" {
            let label = if (i % 10) % 2 == 0 { "cat" } else { "dog" };
            assert!(
                r["resultString"].as_str().unwrap().starts_with(label),
                "task {i}: {r}"
            );
        }
    }
    // Run again (Batch Operations retries, or a second job): every good
    // object is answered from its record.
    let (status, again) = st.invoke(&batch_event("2.0", &keys)).await;
    assert_eq!(status, 200);
    let reused = again["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(results)
        .filter(|(a, b)| a["resultCode"] == "Succeeded" && a["resultString"] == b["resultString"])
        .count();
    assert_eq!(reused, 400, "{again}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_of_no_known_kind_is_refused_by_what_it_holds_and_the_function_keeps_serving() {
    let st = stack(&[]).await;
    let (status, answer) = st.invoke(&json!({"hello": "world", "n": 1})).await;
    assert_ne!(status, 200, "{answer}");
    let text = answer.to_string();
    assert!(text.contains("UnknownEvent"), "{text}");
    assert!(text.contains("fields hello, n"), "{text}");
    // The same bootstrap still answers an HTTP event.
    let mut http = event_file("function-url.json");
    http["rawPath"] = json!("/health");
    http["requestContext"]["http"]["path"] = json!("/health");
    http["requestContext"]["http"]["method"] = json!("GET");
    http["body"] = Value::Null;
    http["isBase64Encoded"] = json!(false);
    let (status, answer) = st.invoke(&http).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["statusCode"], 200, "{answer}");
}

/// `catdog predict --json …` with S3 settings for `endpoint`: answer per
/// name (the part after `strip`), as (label, confidence).
fn predict_answers(
    args: &[&str],
    endpoint: Option<&str>,
    strip: &str,
) -> BTreeMap<String, (String, f64)> {
    let mut cmd = catdog_command();
    cmd.arg("predict").arg("--json").args(args);
    if let Some(endpoint) = endpoint {
        cmd.envs(s3_env(endpoint));
    }
    let out = succeed(&mut cmd);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let file = v["file"].as_str().unwrap();
            let name = file
                .split_once(strip)
                .unwrap_or_else(|| panic!("{file} has no {strip}"))
                .1
                .to_string();
            (
                name,
                (
                    v["label"].as_str().unwrap().to_string(),
                    v["confidence"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn predict_of_an_s3_prefix_answers_as_predict_of_the_folder() {
    let test = "predict_of_an_s3_prefix_answers_as_predict_of_the_folder";
    let Some(data) = shared_data(test) else {
        return;
    };
    let Some((sim, endpoint)) = s3s(test, S3SimOptions::default()).await else {
        return;
    };
    sim.bucket("photos");
    let s3 = s3_test_client(&sim.direct);
    let dir = data.join("catsdogs/test");
    let mut count = 0;
    for class in ["cat", "dog"] {
        for entry in std::fs::read_dir(dir.join(class)).unwrap() {
            let path = entry.unwrap().path();
            let key = format!(
                "set/test/{class}/{}",
                path.file_name().unwrap().to_str().unwrap()
            );
            s3.put_object()
                .bucket("photos")
                .key(key)
                .body(ByteStream::from(std::fs::read(&path).unwrap()))
                .send()
                .await
                .unwrap();
            count += 1;
        }
    }
    // Not pictures by name, and catdog's own records: left out as a folder's
    // notes.txt is.
    for key in ["set/test/notes.txt", "set/test/catdog-results/x.jpg.json"] {
        s3.put_object()
            .bucket("photos")
            .key(key)
            .body(ByteStream::from_static(b"{}"))
            .send()
            .await
            .unwrap();
    }
    let model = data.join("models/mobilenetv2-12-int8.onnx");
    let model = model.to_str().unwrap();
    let common = ["--preprocessing", "torch", "--model", model];
    let from_s3 = predict_answers(
        &[&common[..], &["s3://photos/set/test/"]].concat(),
        Some(&endpoint),
        "set/test/",
    );
    let from_dir = predict_answers(
        &[&common[..], &[dir.to_str().unwrap()]].concat(),
        None,
        "test/",
    );
    assert_eq!(from_s3.len(), count, "{from_s3:?}");
    assert_eq!(from_s3.len(), from_dir.len());
    for (name, (label, confidence)) in &from_dir {
        let (l, c) = &from_s3[name];
        assert_eq!(l, label, "{name}");
        assert!((c - confidence).abs() < 1e-5, "{name}: {c} vs {confidence}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn predict_of_an_s3_prefix_writes_what_the_function_writes_when_asked() {
    let (_moto, endpoint) = moto().await;
    let s3 = s3_test_client(&endpoint);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    for (key, bytes) in [("w/a cat.png", red()), ("w/dog.png", blue())] {
        s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .unwrap();
    }
    let model = fixture("tiny_torch_nchw.onnx");
    let uri = format!("s3://{BUCKET}/w/");
    let tags = |key: &'static str| {
        let s3 = s3.clone();
        async move {
            s3.get_object_tagging()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .unwrap()
                .tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect::<BTreeMap<_, _>>()
        }
    };
    // Without --write-results: answers only.
    let answers = predict_answers(
        &["--model", model.to_str().unwrap(), &uri],
        Some(&endpoint),
        "/w/",
    );
    assert_eq!(answers["a cat.png"].0, "cat");
    assert_eq!(answers["dog.png"].0, "dog");
    assert!(tags("w/dog.png").await.is_empty());
    // With it: the tags and records the function writes.
    predict_answers(
        &["--write-results", "--model", model.to_str().unwrap(), &uri],
        Some(&endpoint),
        "/w/",
    );
    assert_eq!(tags("w/a cat.png").await["catdog-label"], "cat");
    assert_eq!(tags("w/dog.png").await["catdog-label"], "dog");
    let record = s3
        .get_object()
        .bucket(BUCKET)
        .key("catdog-results/w/dog.png.json")
        .send()
        .await
        .expect("the record was written");
    let record: Value =
        serde_json::from_slice(&record.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(record["label"], "dog");
}
