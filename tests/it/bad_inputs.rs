//! The one table of bad (and odd but valid) inputs, run by every host: in
//! process through the router (`router.rs`), over real HTTP against `catdog
//! serve` and through the Lambda bootstrap (`catalogue.rs`). Each row is a
//! test of its own on each host (`bad_input_table!` hands the rows to a host's
//! macro), so one failure does not hide the rest. Bad requests get their
//! documented 4xx JSON error; odd pictures get the right answer; and on every
//! host a good request is answered right afterwards.
//!
//! The rows: empty, wrong or missing content type, truncated JPEG/PNG, random
//! bytes, a text file named .jpg, a 50000×50000 PNG bomb, bodies over the
//! limit, malformed multipart, base64 garbage, JSON of the wrong shape, a
//! batch over the limit, unknown routes and methods, a 16 KB URL, `/uploads`
//! with no uploads bucket, an `{"s3": …}` reference to a bucket not allowed;
//! and odd but valid pictures: animated GIF, CMYK, 16-bit, grayscale, 1×1,
//! 10000×10, EXIF-rotated, a PNG/HTML/ZIP polyglot. Smaller body, batch,
//! pixel and memory-budget limits are set per row: a 40-megapixel JPEG over
//! a 64 MiB budget is a 413.

use base64::Engine;
use serde_json::{json, Value};

use crate::support::fixture;

/// Every host serves this model (red → cat, blue → dog).
pub const MODEL: &str = "tiny_caffe_nhwc.onnx";

/// Limits of every case's server unless the case sets its own: `MAX_BATCH=3`,
/// `MAX_PIXELS=50000000`, the default body limit (6 MiB).
const BASE_LIMITS: [(&str, &str); 2] = [("MAX_BATCH", "3"), ("MAX_PIXELS", "50000000")];

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
pub enum Want {
    /// `{"error": {"code", "message"}}` with this status.
    Error(u16, &'static str),
    /// 200 with this label (`None`: any label, probabilities summing to 1).
    Label(Option<&'static str>),
}

pub struct Case {
    pub name: &'static str,
    pub method: &'static str,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// Sent with a `Content-Length` header in process too (over HTTP and
    /// Lambda the length is always declared).
    pub declared_length: bool,
    pub want: Want,
    /// Settings (environment variable names) over [`BASE_LIMITS`].
    pub limits: Vec<(&'static str, String)>,
}

impl Case {
    pub fn limit(mut self, var: &'static str, value: &str) -> Self {
        self.limits.push((var, value.to_string()));
        self
    }

    pub fn declared(mut self) -> Self {
        self.declared_length = true;
        self
    }

    /// The server's settings as environment variables (the Lambda path).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = BASE_LIMITS
            .iter()
            .filter(|(k, _)| !self.limits.iter().any(|(l, _)| l == k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.extend(self.limits.iter().map(|(k, v)| (k.to_string(), v.clone())));
        env
    }

    /// The same settings as flags (`MAX_BATCH` → `--max-batch`,
    /// `CATDOG_MEMORY_BUDGET` → `--memory-budget`).
    pub fn flags(&self) -> Vec<String> {
        self.env()
            .into_iter()
            .flat_map(|(k, v)| {
                let flag = k
                    .trim_start_matches("CATDOG_")
                    .to_lowercase()
                    .replace('_', "-");
                [format!("--{flag}"), v]
            })
            .collect()
    }
}

pub fn img(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("images/{name}"))).unwrap()
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn request(name: &'static str, method: &'static str, path: String, want: Want) -> Case {
    Case {
        name,
        method,
        path,
        content_type: None,
        body: vec![],
        declared_length: false,
        want,
        limits: vec![],
    }
}

pub fn post(name: &'static str, ctype: Option<&str>, body: Vec<u8>, want: Want) -> Case {
    Case {
        content_type: ctype.map(str::to_owned),
        body,
        ..request(name, "POST", "/predict".into(), want)
    }
}

/// The request every case is followed by: blue → dog, 8×8 so that it is
/// within every case's limits (100 pixels, 1024 bytes).
pub fn good() -> Case {
    let blue = crate::support::solid(crate::support::BLUE, 8, 8, image::ImageFormat::Png);
    post("good", Some("image/png"), blue, Want::Label(Some("dog")))
}

pub fn multipart(parts: &str) -> Vec<u8> {
    parts.replace('\n', "\r\n").into_bytes()
}

pub fn file_part(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut b = multipart(&format!(
        "--XYZ\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\nContent-Type: image/jpeg\n\n"
    ));
    b.extend_from_slice(bytes);
    b.extend_from_slice(b"\r\n--XYZ--\r\n");
    b
}

/// A form of `n` empty fields and no file: its refusal names a few of them
/// and the count, not all (it once echoed every name: 700 kB for 100,000).
pub fn many_fields(n: usize) -> Vec<u8> {
    let mut form = String::new();
    for i in 0..n {
        form.push_str(&format!(
            "--XYZ\nContent-Disposition: form-data; name=\"f{i}\"\n\n\n"
        ));
    }
    form.push_str("--XYZ--\n");
    multipart(&form)
}

pub fn polyglot() -> Vec<u8> {
    let mut polyglot = img("red.png");
    polyglot
        .extend_from_slice(b"<html><script>alert(1)</script></html>PK\x03\x04 not really a zip");
    polyglot
}

pub fn solid_png() -> Vec<u8> {
    crate::support::solid(crate::support::RED, 32, 24, image::ImageFormat::Png)
}

/// Checks one answer against the case; `via` names the host in messages.
pub fn check(case: &Case, via: &str, status: u16, body: &Value) {
    let ctx = format!("{via}: {}: {status} {body}", case.name);
    match case.want {
        Want::Error(want_status, code) => {
            assert_eq!(status, want_status, "{ctx}");
            assert_eq!(body["error"]["code"], code, "{ctx}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "{ctx}");
            // Bounded, whatever the request made it say.
            assert!(
                message.chars().count() <= 1025,
                "{via}: {}: a {} byte message",
                case.name,
                message.len()
            );
            // Errors describe the request, never the machine.
            for leak in ["/work/", "/home/", "/tmp/", "target/", ".rs:", "panicked"] {
                assert!(!message.contains(leak), "{ctx}: message leaks {leak:?}");
            }
        }
        Want::Label(label) => {
            assert_eq!(status, 200, "{ctx}");
            if let Some(label) = label {
                assert_eq!(body["label"], label, "{ctx}");
            }
            let sum: f64 = body["scores"]
                .as_object()
                .unwrap_or_else(|| panic!("{ctx}: no scores"))
                .values()
                .filter_map(Value::as_f64)
                .sum();
            assert!((sum - 1.0).abs() < 1e-4, "{ctx}: scores sum to {sum}");
        }
    }
}

/// Hands every row, `test_name => case`, to the host's macro `$host`, which
/// makes one test of each.
macro_rules! bad_input_table {
    ($host:ident) => {
        $host! {
            empty_body => post("empty body", Some("image/jpeg"), vec![], Error(400, "empty_body")),
            wrong_content_type => post("wrong content type", Some("text/plain"), b"hello".to_vec(), Error(415, "unsupported_media_type")),
            missing_content_type => post("missing content type", None, img("red.png"), Error(415, "unsupported_media_type")),
            truncated_jpeg => post("truncated JPEG", Some("image/jpeg"), img("truncated.jpg"), Error(400, "invalid_image")),
            truncated_png => post("truncated PNG", Some("image/png"), img("truncated.png"), Error(400, "invalid_image")),
            random_bytes => post("random bytes", Some("image/jpeg"), (0..2000u32).map(|i| (i * 7919 % 251) as u8).collect(), Error(400, "invalid_image")),
            text_file_named_jpg => post("text file named .jpg", Some("multipart/form-data; boundary=XYZ"), file_part("notes.jpg", &img("text.jpg")), Error(400, "invalid_image")),
            decompression_bomb => post("decompression bomb (PNG declaring 50000x50000)", Some("image/png"), img("bomb_50000x50000.png"), Error(422, "image_too_large")),
            body_over_the_limit => post("body over the limit", Some("image/jpeg"), vec![0xff; 7 * 1024 * 1024], Error(413, "payload_too_large")),
            multipart_without_boundary => post("multipart without boundary", Some("multipart/form-data"), b"--x\r\n".to_vec(), Error(400, "invalid_multipart")),
            unterminated_multipart => post("unterminated multipart", Some("multipart/form-data; boundary=XYZ"), multipart("--XYZ\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\n\nabc"), Error(400, "invalid_multipart")),
            multipart_of_many_fields => post("multipart of 20,000 empty fields (a short refusal)", Some("multipart/form-data; boundary=XYZ"), many_fields(20_000), Error(400, "no_image")),
            multipart_with_no_file => post("multipart with no file", Some("multipart/form-data; boundary=XYZ"), multipart("--XYZ\nContent-Disposition: form-data; name=\"note\"\n\nhello\n--XYZ--\n"), Error(400, "no_image")),
            base64_garbage => post("base64 garbage", Some("application/json"), br#"{"image": "@@not base64@@"}"#.to_vec(), Error(400, "invalid_base64")),
            json_syntax_error => post("JSON syntax error", Some("application/json"), br#"{"image": "#.to_vec(), Error(400, "invalid_json")),
            json_of_the_wrong_shape => post("JSON of the wrong shape", Some("application/json"), br#"{"picture": "x"}"#.to_vec(), Error(400, "invalid_json")),
            json_of_the_wrong_type => post("JSON of the wrong type", Some("application/json"), br#"{"image": 42}"#.to_vec(), Error(400, "invalid_json")),
            json_list_holding_a_number => post("JSON list holding a number", Some("application/json"), br#"{"images": ["aGk=", 7]}"#.to_vec(), Error(400, "invalid_json")),
            json_empty_list => post("JSON empty list", Some("application/json"), br#"{"images": []}"#.to_vec(), Error(400, "no_image")),
            batch_over_the_limit => post("batch over the limit (4 > 3)", Some("application/json"), serde_json::json!({"images": vec![b64(&img("red.png")); 4]}).to_string().into_bytes(), Error(422, "too_many_images")),
            tiff => post("TIFF", Some("image/tiff"), img("red.tiff"), Error(415, "unsupported_image_format")),
            unknown_route => request("unknown route", "GET", "/admin".into(), Error(404, "not_found")),
            wrong_method_on_predict => request("wrong method on /predict", "GET", "/predict".into(), Error(405, "method_not_allowed")),
            delete_model => request("DELETE /model", "DELETE", "/model".into(), Error(405, "method_not_allowed")),
            delete_predict => request("DELETE /predict", "DELETE", "/predict".into(), Error(405, "method_not_allowed")),
            unknown_route_nope => request("GET /nope", "GET", "/nope".into(), Error(404, "not_found")),
            picture_over_the_memory_budget => post("40-megapixel JPEG, memory budget 64 MiB", Some("image/jpeg"), img("red_40mp.jpg"), Error(413, "image_over_memory_budget")).limit("CATDOG_MEMORY_BUDGET", "64MiB"),
            very_long_url => Case { content_type: Some("image/png".into()), body: img("red.png"), ..request("very long URL", "POST", format!("/{}", "a".repeat(16 * 1024)), Error(404, "not_found")) },
            // From the router's former list: smaller limits set per case.
            png_empty_body => post("empty image/png body", Some("image/png"), vec![], Error(400, "empty_body")),
            png_not_a_picture => post("image/png that is not a picture", Some("image/png"), b"not a picture".to_vec(), Error(400, "invalid_image")),
            json_open_brace => post("JSON `{`", Some("application/json"), b"{".to_vec(), Error(400, "invalid_json")),
            json_base64_percent => post("JSON image %%%", Some("application/json"), br#"{"image": "%%%"}"#.to_vec(), Error(400, "invalid_base64")),
            text_plain_x => post("text/plain x", Some("text/plain"), b"x".to_vec(), Error(415, "unsupported_media_type")),
            png_over_a_1024_byte_limit => post("2048-byte PNG body, limit 1024", Some("image/png"), vec![0u8; 2048], Error(413, "payload_too_large")).limit("MAX_BODY_BYTES", "1024"),
            // Over the limit is 413 whatever the Content-Type: streamed and declared.
            text_over_a_1024_byte_limit => post("2048-byte text/plain body, limit 1024", Some("text/plain"), vec![0u8; 2048], Error(413, "payload_too_large")).limit("MAX_BODY_BYTES", "1024"),
            form_declared_over_a_1024_byte_limit => post("2048-byte form body with Content-Length, limit 1024", Some("application/x-www-form-urlencoded"), vec![0u8; 2048], Error(413, "payload_too_large")).limit("MAX_BODY_BYTES", "1024").declared(),
            // Only the tutorial's route reads other Content-Types as JSON.
            form_json_on_predict => post("JSON sent as a form to /predict", Some("application/x-www-form-urlencoded; charset=UTF-8"), br#"{"image": "x"}"#.to_vec(), Error(415, "unsupported_media_type")),
            batch_over_a_limit_of_2 => post("3 pictures, limit 2", Some("application/json"), format!("{{\"images\": [{}]}}", ["\"aGk=\""; 3].join(",")).into_bytes(), Error(422, "too_many_images")).limit("MAX_BATCH", "2"),
            picture_over_100_pixels => post("768 pixels, limit 100", Some("image/png"), solid_png(), Error(422, "image_too_large")).limit("MAX_PIXELS", "100"),
            // Pictures in S3, on a server that names no bucket.
            uploads_without_a_bucket => Case { path: "/uploads".into(), ..post("POST /uploads, no uploads bucket", Some("application/json"), br#"{"bytes": 10}"#.to_vec(), Error(404, "uploads_off")) },
            upload_result_without_a_bucket => request("GET /uploads/{id}, no uploads bucket", "GET", "/uploads/0123456789abcdef0123456789abcdef.png".into(), Error(404, "uploads_off")),
            s3_reference_no_bucket_allowed => post("{\"s3\": …} of a bucket not allowed", Some("application/json"), br#"{"s3": "s3://someone-elses/secret.png"}"#.to_vec(), Error(403, "s3_not_allowed")),
            json_image_and_s3 => post("JSON with image and s3", Some("application/json"), br#"{"image": "aGk=", "s3": "s3://b/k.png"}"#.to_vec(), Error(400, "invalid_json")),
            // Odd but valid pictures: answered, and answered right.
            animated_gif => post("animated GIF (first frame)", Some("image/gif"), img("anim_red_then_blue.gif"), Label(Some("cat"))),
            cmyk_jpeg => post("CMYK JPEG", Some("image/jpeg"), img("red_cmyk.jpg"), Label(Some("cat"))),
            png_16_bit => post("16-bit PNG", Some("image/png"), img("gray16.png"), Label(Some("dog"))),
            grayscale_jpeg => post("grayscale JPEG", Some("image/jpeg"), img("gray.jpg"), Label(None)),
            picture_1x1 => post("1x1 picture", Some("image/png"), img("red_1x1.png"), Label(Some("cat"))),
            picture_10000x10 => post("10000x10 picture", Some("image/png"), img("red_10000x10.png"), Label(Some("cat"))),
            exif_rotated_photo => post("EXIF-rotated photo", Some("image/jpeg"), img("red_exif_rot6.jpg"), Label(Some("cat"))),
            polyglot_png_html_zip => post("polyglot (PNG + HTML + ZIP bytes)", Some("image/png"), polyglot(), Label(Some("cat"))),
            png_sent_as_jpeg => post("PNG sent as image/jpeg", Some("image/jpeg"), img("red.png"), Label(Some("cat"))),
        }
    };
}
pub(crate) use bad_input_table;

/// A Function URL event for `case`, from the recorded sample event.
pub fn function_url_event(case: &Case) -> Value {
    let mut ev = crate::support::lambda_api::event("function-url.json");
    ev["rawPath"] = json!(case.path);
    ev["requestContext"]["http"]["method"] = json!(case.method);
    ev["requestContext"]["http"]["path"] = json!(case.path);
    let headers = ev["headers"].as_object_mut().unwrap();
    match &case.content_type {
        Some(c) => headers.insert("content-type".into(), json!(c)),
        None => headers.remove("content-type"),
    };
    if case.body.is_empty() {
        ev["body"] = json!("");
        ev["isBase64Encoded"] = json!(false);
    } else {
        ev["body"] = json!(b64(&case.body));
        ev["isBase64Encoded"] = json!(true);
    }
    ev
}
