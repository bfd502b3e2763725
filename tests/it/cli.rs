//! `catdog predict` and the binary's failure modes, as a user meets them.

use std::process::{Command, Output};

use crate::support::*;
use serde_json::Value;

fn catdog(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(catdog_bin());
    cmd.args(args)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env_remove("MODEL_URI");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn predict_prints_one_answer_per_file_text_and_json() {
    let model = fixture("tiny_torch_nchw.onnx");
    let out = catdog(
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            fixture("images/red.png").to_str().unwrap(),
            fixture("images/blue.jpg").to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].ends_with("red.png\tcat\t1.0000") || lines[0].contains("red.png\tcat\t"),
        "{lines:?}"
    );
    assert!(lines[1].contains("blue.jpg\tdog\t"), "{lines:?}");

    // a folder, --json: one object per line with file/label/confidence/scores;
    // files that are not pictures are reported on stderr and make the exit code 1
    let dir = std::env::temp_dir().join(format!("catdog-cli-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::copy(fixture("images/red.jpg"), dir.join("a.jpg")).unwrap();
    std::fs::copy(fixture("images/blue.png"), dir.join("sub/b.png")).unwrap();
    std::fs::copy(fixture("images/text.jpg"), dir.join("c.jpg")).unwrap();
    std::fs::write(dir.join("notes.txt"), "ignored: not an image extension").unwrap();
    let out = catdog(
        &[
            "predict",
            "--json",
            "--model",
            model.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad file makes the exit code 1"
    );
    assert!(
        text(&out.stderr).contains("c.jpg: the data is not a recognised image"),
        "{}",
        text(&out.stderr)
    );
    let answers: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    let by_file = |suffix: &str| {
        answers
            .iter()
            .find(|a| a["file"].as_str().unwrap().ends_with(suffix))
            .unwrap()
            .clone()
    };
    assert_eq!(by_file("a.jpg")["label"], "cat");
    assert_eq!(by_file("sub/b.png")["label"], "dog");
    for a in &answers {
        assert!(a["confidence"].as_f64().unwrap() > 0.5);
        assert!(a["scores"]["cat"].is_number() && a["scores"]["dog"].is_number());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn clear_errors_for_missing_things() {
    let model = fixture("tiny_torch_nchw.onnx");
    let red = fixture("images/red.png");

    let out = catdog(&[], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("catdog serve"),
        "{}",
        text(&out.stderr)
    );

    let out = catdog(
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "/no/such/picture.jpg",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no such file"),
        "{}",
        text(&out.stderr)
    );

    let out = catdog(
        &[
            "predict",
            "--model",
            "/no/such/model.onnx",
            red.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    // Named by its file name (as on /health: no folders), the cause said once.
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot read model file model.onnx: No such file"),
        "{err}"
    );
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");

    let out = catdog(
        &[
            "predict",
            "--model",
            "ftp://x/y.onnx",
            red.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        text(&out.stderr).contains("invalid model URI"),
        "{}",
        text(&out.stderr)
    );

    // no ONNX Runtime library: a message saying how to get it, not a panic
    let out = catdog(
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            red.to_str().unwrap(),
        ],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot load ONNX Runtime from /nonexistent/libonnxruntime.so"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let out = catdog(
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--model-sha256",
            "abc",
            red.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        text(&out.stderr).contains("MODEL_SHA256 must be 64 hex digits"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn default_model_is_verified_before_use_and_not_cached_when_wrong() {
    // A "mirror" serving the wrong file: the known VGG16 digest refuses it.
    let (_web, url) = static_http(
        "/vgg16-7.onnx",
        std::fs::read(fixture("tiny_imagenet.onnx")).unwrap(),
    )
    .await;
    let cache = std::env::temp_dir().join(format!("catdog-cache-{}", std::process::id()));
    let red = fixture("images/red.png");
    let out = tokio::task::spawn_blocking({
        let cache = cache.clone();
        move || {
            catdog(
                &["predict", red.to_str().unwrap()],
                &[
                    ("DEFAULT_MODEL_URL", &url),
                    ("XDG_CACHE_HOME", cache.to_str().unwrap()),
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("f20805a3ecccaa88647bbab4ad011ff2412a9838485ea844de0fcbce349820b9")
            && err.contains("refusing"),
        "{err}"
    );
    assert!(
        !cache.join("catdog/models/vgg16-7.onnx").exists(),
        "a wrong model must not be cached"
    );
    let _ = std::fs::remove_dir_all(&cache);
}

/// A flag of another command is refused, naming it, not quietly ignored;
/// the same setting from the environment is ambient and stays allowed.
#[test]
fn a_flag_that_means_nothing_to_the_command_is_refused() {
    let model = fixture("tiny_vgg.onnx");
    let picture = fixture("images/blue.jpg");
    let (model, picture) = (model.to_str().unwrap(), picture.to_str().unwrap());
    let out = catdog(
        &[
            "predict",
            "--model",
            model,
            "--ngrok-basic-auth",
            "user:password1",
            picture,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--ngrok-basic-auth means nothing to `catdog predict`"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));

    let out = catdog(
        &["predict", "--model", model, picture],
        &[("NGROK_BASIC_AUTH", "user:password1"), ("PORT", "9000")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("blue.jpg"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn the_lambda_hosts_refuse_clearly_outside_lambda() {
    // Without the Runtime API, the runtime would panic on its first missing
    // variable; each Lambda host says what it needs instead, before any work.
    for host in ["lambda", "pretraffic"] {
        let out = catdog(&[host], &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{host}: {err}");
        assert!(
            err.contains(&format!("`catdog {host}` runs inside AWS Lambda"))
                && err.contains("AWS_LAMBDA_RUNTIME_API is not set")
                && !err.contains("panicked"),
            "{host}: {err}"
        );
    }
}
