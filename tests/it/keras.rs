//! `models/keras_to_onnx.py`: a Keras model of the tutorial's shape, converted
//! with tf2onnx, served by `catdog serve`: the same probabilities Keras gives
//! with the tutorial's own preprocessing (load_img + vgg16.preprocess_input).

use std::path::PathBuf;
use std::process::Command;

use crate::support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn converted_keras_model_serves_keras_answers() {
    let python = std::env::var_os("CATDOG_KERAS_PYTHON")
        .map(PathBuf::from)
        .expect("CATDOG_KERAS_PYTHON is not set: run the tests with `make test` (it installs TensorFlow + tf2onnx)");
    let dir = std::env::temp_dir().join(format!("catdog-keras-{}", std::process::id()));
    let mut pictures = vec![
        fixture("images/red.jpg"),
        fixture("images/blue.png"),
        fixture("images/gray.jpg"),
    ];
    if let Some(data) = shared_data("converted_keras_model_serves_keras_answers (real photos part)")
    {
        pictures.push(data.join("catsdogs/test/cat/cat.001.jpg"));
        pictures.push(data.join("catsdogs/test/dog/dog.001.jpg"));
    }
    succeed(
        Command::new(&python)
            .arg(workspace().join("tests/fixtures/keras_fixture.py"))
            .arg(&dir)
            .args(&pictures),
    );
    let onnx = dir.join("tutorial.onnx");
    succeed(
        Command::new(&python)
            .arg(workspace().join("models/keras_to_onnx.py"))
            .arg(dir.join("tutorial.h5"))
            .arg(&onnx)
            .args(["--labels", r#"["cat","dog"]"#]),
    );

    let keras: Value =
        serde_json::from_slice(&std::fs::read(dir.join("keras_answers.json")).unwrap()).unwrap();
    let (_p, base) = serve(&["--model", onnx.to_str().unwrap()], &[]).await;
    wait_ready(&base).await;
    let m: Value = reqwest::get(format!("{base}/model"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["preprocessing"]["preset"], "caffe");
    assert_eq!(m["input"]["layout"], "NHWC");
    assert_eq!(m["output"]["kind"], "probabilities");
    for pic in &pictures {
        let name = pic.file_name().unwrap().to_str().unwrap();
        let ctype = if name.ends_with(".png") {
            "image/png"
        } else {
            "image/jpeg"
        };
        let v: Value = predict_json(&base, std::fs::read(pic).unwrap(), ctype).await;
        let want = &keras[name];
        for (i, label) in ["cat", "dog"].iter().enumerate() {
            let ours = v["scores"][label].as_f64().unwrap();
            let theirs = want[i].as_f64().unwrap();
            assert!(
                (ours - theirs).abs() < 1e-4,
                "{name} {label}: catdog {ours}, keras {theirs}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
