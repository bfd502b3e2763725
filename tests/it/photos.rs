//! Real photos (`../shared/data/catsdogs`) through the real binary with the
//! ImageNet MobileNetV2 (int8, torch preset): catdog's cat/dog answers must
//! equal Python onnxruntime's (PIL + numpy preprocessing) on every photo
//! (all 140 of the shared set).
//! JPEG decoding (libjpeg-turbo) and resizing are bit-exact with Pillow, so
//! the answers are the same numbers.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::*;
use serde_json::Value;

#[derive(serde::Deserialize)]
struct RefAnswer {
    cat: f64,
    dog: f64,
}

/// The same rule as catdog's ImageNet head (threshold 0.2, documented).
fn label(cat: f64, dog: f64) -> &'static str {
    if cat + dog < 0.2 {
        "neither"
    } else if cat >= dog {
        "cat"
    } else {
        "dog"
    }
}

#[test]
fn mobilenet_answers_equal_python_onnxruntime_on_every_photo() {
    let Some(data) = shared_data("mobilenet_answers_equal_python_onnxruntime_on_every_photo")
    else {
        return;
    };
    let reference: BTreeMap<String, RefAnswer> =
        serde_json::from_slice(&std::fs::read(fixture("mobilenet_reference.json")).unwrap())
            .unwrap();
    assert_eq!(reference.len(), 140);
    let out = succeed(
        Command::new(catdog_bin())
            .args(["predict", "--json", "--preprocessing", "torch", "--model"])
            .arg(data.join("models/mobilenetv2-12-int8.onnx"))
            .arg(data.join("catsdogs")),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let root = data.join("catsdogs");
    let mut seen = 0;
    let mut max_diff = 0f64;
    let mut right = 0;
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let file = std::path::Path::new(v["file"].as_str().unwrap());
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let want = &reference[&rel];
        let (cat, dog) = (
            v["scores"]["cat"].as_f64().unwrap(),
            v["scores"]["dog"].as_f64().unwrap(),
        );
        assert_eq!(
            cat >= dog,
            want.cat >= want.dog,
            "{rel}: ours {v}, python cat {} dog {}",
            want.cat,
            want.dog
        );
        assert_eq!(
            v["label"],
            label(want.cat, want.dog),
            "{rel}: ours {v}, python cat {} dog {}",
            want.cat,
            want.dog
        );
        for k in ["label", "confidence", "scores", "imagenet_top5", "file"] {
            assert!(v.get(k).is_some(), "--json lacks {k}");
        }
        max_diff = max_diff
            .max((cat - want.cat).abs())
            .max((dog - want.dog).abs());
        if rel.starts_with("test/") && v["label"] == rel.split('/').nth(1).unwrap() {
            right += 1;
        }
        seen += 1;
    }
    assert_eq!(seen, 140, "one line per photo");
    println!(
        "MobileNetV2 int8 vs Python onnxruntime: same label on 140/140 photos; \
         max group-probability difference {max_diff:.2e}; test/ accuracy {right}/46"
    );
    // Same decoder (libjpeg-turbo), same resize (Pillow's), same engine: the
    // same numbers, up to float summation order.
    assert!(max_diff < 1e-4, "group probabilities differ by {max_diff}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_photo_over_http_gets_the_reference_answer() {
    let Some(data) = shared_data("a_real_photo_over_http_gets_the_reference_answer") else {
        return;
    };
    let reference: Value =
        serde_json::from_slice(&std::fs::read(fixture("mobilenet_reference.json")).unwrap())
            .unwrap();
    let model = data.join("models/mobilenetv2-12-int8.onnx");
    let (_p, base) = serve(
        &[
            "--model",
            model.to_str().unwrap(),
            "--preprocessing",
            "torch",
        ],
        &[],
    )
    .await;
    wait_ready(&base).await;
    for rel in ["test/cat/cat.002.jpg", "test/dog/dog.004.jpg"] {
        let bytes = std::fs::read(data.join("catsdogs").join(rel)).unwrap();
        let v: Value = predict_json(&base, bytes, "image/jpeg").await;
        let want = label(
            reference[rel]["cat"].as_f64().unwrap(),
            reference[rel]["dog"].as_f64().unwrap(),
        );
        assert_eq!(v["label"], want, "{rel}: {v}");
        assert_eq!(v["label"], rel.split('/').nth(1).unwrap(), "{rel}: {v}");
    }
}
