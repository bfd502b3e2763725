//! Local model files load "zero-copy": their large initializers become external
//! data references into the file itself, which ONNX Runtime maps instead of
//! parsing and copying (function/src/model/weights.rs). The answers must be
//! exactly those of the plain load, whatever the model's layout on disk.

use std::process::Output;

use crate::support::*;
use serde_json::Value;

/// `catdog predict --json` with debug logs; `zero_copy` = CATDOG_ZERO_COPY.
fn predict(model: &std::path::Path, files: &[String], zero_copy: bool) -> Output {
    // MobileNetV2 from the zoo carries no contract; the tiny models have theirs.
    let preprocessing = if model.ends_with("mobilenetv2-12-int8.onnx") {
        "torch"
    } else {
        ""
    };
    let out = succeed(
        catdog_command()
            .arg("predict")
            .arg("--json")
            .arg("--model")
            .arg(model)
            .args(files)
            .env("RUST_LOG", "catdog=debug")
            .env("CATDOG_ZERO_COPY", zero_copy.to_string())
            .env("MODEL_PREPROCESSING", preprocessing),
    );
    out
}

/// label, confidence and scores per file (timings differ run to run).
fn answers(out: &Output) -> Vec<(String, String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["file"].to_string(),
                v["label"].to_string(),
                format!("{} {}", v["confidence"], v["scores"]),
            )
        })
        .collect()
}

/// The number of initializers the load says it left in the file.
fn moved(out: &Output) -> Option<u64> {
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("weights mapped from the model file"))?;
    let plain = strip_ansi(line);
    let at = plain.find("moved=")? + "moved=".len();
    plain[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn images() -> Vec<String> {
    [
        "red.png",
        "blue.jpg",
        "green.png",
        "red_cmyk.jpg",
        "gray.png",
    ]
    .iter()
    .map(|n| {
        fixture(&format!("images/{n}"))
            .to_string_lossy()
            .into_owned()
    })
    .collect()
}

fn same_answers_both_ways(model: &std::path::Path, files: &[String], want_moved: u64) {
    let mapped = predict(model, files, true);
    let plain = predict(model, files, false);
    assert_eq!(
        moved(&mapped),
        Some(want_moved),
        "the zero-copy path was not taken: {}",
        String::from_utf8_lossy(&mapped.stderr)
    );
    assert_eq!(
        moved(&plain),
        None,
        "CATDOG_ZERO_COPY=false must load plainly"
    );
    let (a, b) = (answers(&mapped), answers(&plain));
    assert_eq!(a.len(), files.len());
    assert_eq!(a, b, "mapped and plain loads answer differently");
}

#[test]
fn mapped_weights_answer_exactly_like_a_plain_load() {
    // fc1.w (200 KB) and fc3.w (128 KB) are moved; the rest stays inline.
    same_answers_both_ways(&fixture("tiny_vgg.onnx"), &images(), 2);
}

#[test]
fn a_model_with_its_own_external_data_keeps_it() {
    // fc1.w already lives in tiny_vgg_external.weights; only fc3.w is moved,
    // and the answers equal those of the single-file model.
    let files = images();
    same_answers_both_ways(&fixture("tiny_vgg_external.onnx"), &files, 1);
    assert_eq!(
        answers(&predict(&fixture("tiny_vgg_external.onnx"), &files, true)),
        answers(&predict(&fixture("tiny_vgg.onnx"), &files, true)),
    );
}

#[test]
fn a_model_reached_through_a_symlink_loads() {
    // ONNX Runtime refuses external data outside the model's folder after
    // resolving links: the mapped load must name the real file.
    let dir = std::env::temp_dir().join(format!("catdog-zc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("model.onnx");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(fixture("tiny_vgg.onnx"), &link).unwrap();
    same_answers_both_ways(&link, &images(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn real_int8_mobilenet_answers_exactly_like_a_plain_load() {
    let Some(data) = shared_data("real_int8_mobilenet_answers_exactly_like_a_plain_load") else {
        return;
    };
    let model = data.join("models/mobilenetv2-12-int8.onnx");
    let mut files: Vec<String> = ["cat", "dog"]
        .iter()
        .flat_map(|c| std::fs::read_dir(data.join("catsdogs/test").join(c)).unwrap())
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .collect();
    files.sort();
    files.truncate(12);
    let mapped = predict(&model, &files, true);
    assert!(
        moved(&mapped).is_some_and(|n| n > 0),
        "no weight was mapped"
    );
    assert_eq!(answers(&mapped), answers(&predict(&model, &files, false)));
}

/// `catdog predict --json` on `uri` with the S3 environment of `endpoint`,
/// downloads going to `dir`.
fn predict_remote(
    uri: &str,
    files: &[String],
    env: &[(String, String)],
    dir: &std::path::Path,
    sha256: Option<&str>,
) -> Output {
    let mut cmd = catdog_command();
    cmd.arg("predict")
        .arg("--json")
        .arg("--model")
        .arg(uri)
        .args(files)
        .env("RUST_LOG", "catdog=debug")
        .env("CATDOG_DOWNLOAD_DIR", dir)
        .envs(env.iter().map(|(k, v)| (k, v)));
    if uri.ends_with("mobilenetv2-12-int8.onnx") {
        cmd.env("MODEL_PREPROCESSING", "torch");
    }
    if let Some(s) = sha256 {
        cmd.env("MODEL_SHA256", s);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_model_is_mapped_from_its_download_and_answers_like_the_local_file() {
    let Some(data) =
        shared_data("an_s3_model_is_mapped_from_its_download_and_answers_like_the_local_file")
    else {
        return;
    };
    // S3 that reads ranges on their own, at 90 MB/s per connection.
    let Some((_s3, endpoint)) = s3s(
        "an_s3_model_is_mapped_from_its_download_and_answers_like_the_local_file",
        S3SimOptions::default(),
    )
    .await
    else {
        return;
    };
    let env = s3_env(&endpoint);
    let dir = std::env::temp_dir().join(format!("catdog-dl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let photos: Vec<String> = ["cat", "dog"]
        .iter()
        .flat_map(|c| std::fs::read_dir(data.join("catsdogs/test").join(c)).unwrap())
        .map(|e| e.unwrap().path().display().to_string())
        .take(12)
        .collect();
    for (local, moved_want) in [
        (fixture("tiny_vgg.onnx"), 2),
        (data.join("models/mobilenetv2-12-int8.onnx"), 0),
    ] {
        let name = local.file_name().unwrap().to_string_lossy().into_owned();
        let files = if name == "tiny_vgg.onnx" {
            images()
        } else {
            photos.clone()
        };
        let bytes = std::fs::read(&local).unwrap();
        s3_put(&endpoint, "models", &name, bytes.clone()).await;
        let uri = format!("s3://models/{name}");

        let from_s3 = predict_remote(&uri, &files, &env, &dir, None);
        let log = String::from_utf8_lossy(&from_s3.stderr);
        assert!(from_s3.status.success(), "{log}");
        let from_file = predict(&local, &files, true);
        assert_eq!(
            answers(&from_s3),
            answers(&from_file),
            "{name}: S3 and the local file answer differently"
        );
        assert_eq!(answers(&from_s3).len(), files.len());
        // The download took the local file's zero-copy path.
        let moved_s3 = moved(&from_s3).unwrap_or_else(|| panic!("{name}: not mapped: {log}"));
        assert_eq!(moved_s3, moved(&from_file).unwrap(), "{name}");
        if moved_want > 0 {
            assert_eq!(moved_s3, moved_want, "{name}");
        }
        assert!(log.contains("SHA-256 computed on the way"), "{log}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "{name}: the download is not left behind"
        );

        // A digest that does not match: refused before anything is built, nothing left.
        let wrong = "0".repeat(64);
        let refused = predict_remote(&uri, &files, &env, &dir, Some(&wrong));
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success());
        assert!(
            err.contains("refusing to use it") && err.contains(&uri),
            "{err}"
        );
        assert!(
            !err.contains("weights mapped from the model file"),
            "built before verifying: {err}"
        );
        assert!(refused.stdout.is_empty());
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "{name}: a refused download is removed"
        );
        // The right digest is accepted.
        let digest = catdog::model::source::sha256_hex(&bytes);
        let ok = predict_remote(&uri, &files, &env, &dir, Some(&digest));
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert_eq!(answers(&ok), answers(&from_file));
    }

    // A download folder that cannot hold the model: a clear refusal saying what to change.
    let out = predict_remote(
        "s3://models/tiny_vgg.onnx",
        &images(),
        &env,
        std::path::Path::new("/proc/catdog-no-such"),
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("CATDOG_DOWNLOAD_DIR") && err.contains("EphemeralStorage"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
