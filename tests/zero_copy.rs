//! Local model files load "zero-copy": their large initializers become external
//! data references into the file itself, which ONNX Runtime maps instead of
//! parsing and copying (function/src/model/weights.rs). The answers must be
//! exactly those of the plain load, whatever the model's layout on disk.

use std::process::Output;

use catdog_tests::*;
use serde_json::Value;

/// `catdog predict --json` with debug logs; `zero_copy` = CATDOG_ZERO_COPY.
fn predict(model: &std::path::Path, files: &[String], zero_copy: bool) -> Output {
    // MobileNetV2 from the zoo carries no contract; the tiny models have theirs.
    let preprocessing = if model.ends_with("mobilenetv2-12-int8.onnx") {
        "torch"
    } else {
        ""
    };
    let out = catdog_command()
        .arg("predict")
        .arg("--json")
        .arg("--model")
        .arg(model)
        .args(files)
        .env("RUST_LOG", "catdog=debug")
        .env("CATDOG_ZERO_COPY", zero_copy.to_string())
        .env("MODEL_PREPROCESSING", preprocessing)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
