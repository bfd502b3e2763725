//! The upload page in a real browser (headless Debian Chromium driven through
//! chromedriver by `tests/browser/upload_page.py`): pick a real photo, drop a
//! PNG, pick a non-image. The page must show what the API answers, work with
//! no network, and leave screenshots in target/screenshots/.

use std::process::Command;

use catdog_tests::*;
use serde_json::Value;

async fn api_label(base: &str, file: &std::path::Path, ctype: &str) -> String {
    let v: Value = predict_json(base, std::fs::read(file).unwrap(), ctype).await;
    v["label"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_page_works_in_headless_chromium() {
    // With the shared photos: the ImageNet MobileNetV2 on a real cat photo.
    // Without them: the tiny colour model on a red JPEG.
    let data = shared_data(
        "upload_page_works_in_headless_chromium (real photo part; using a synthetic one)",
    );
    let (args, photo, want): (Vec<String>, std::path::PathBuf, &str) = match &data {
        Some(d) => (
            vec![
                "--model".into(),
                d.join("models/mobilenetv2-12-int8.onnx")
                    .display()
                    .to_string(),
                "--preprocessing".into(),
                "torch".into(),
            ],
            d.join("catsdogs/test/cat/cat.002.jpg"),
            "cat",
        ),
        None => (
            vec![
                "--model".into(),
                fixture("tiny_caffe_nhwc.onnx").display().to_string(),
            ],
            fixture("images/red.jpg"),
            "cat",
        ),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_p, base) = serve(&args, &[]).await;
    wait_ready(&base).await;
    let png = fixture("images/blue.png");
    let shots = workspace().join("target/screenshots");
    let out = tokio::task::spawn_blocking({
        let (base, photo, png, shots) = (base.clone(), photo.clone(), png.clone(), shots.clone());
        move || {
            Command::new(python())
                .arg(workspace().join("tests/browser/upload_page.py"))
                .args([&base])
                .arg(&photo)
                .arg(&png)
                .arg(fixture("images/text.jpg"))
                .arg(&shots)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "browser script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page: Value = serde_json::from_slice(
        out.stdout
            .trim_ascii_end()
            .rsplit(|b| *b == b'\n')
            .next()
            .unwrap(),
    )
    .unwrap();
    println!("page: {page}");
    assert!(page["title"].as_str().unwrap().contains("catdog"));
    assert_eq!(page["photo_label"], want, "{page}");
    assert_eq!(
        page["photo_label"].as_str().unwrap(),
        api_label(&base, &photo, "image/jpeg").await
    );
    assert_eq!(page["preview_loaded"], true);
    assert!(
        page["photo_bars"].as_array().unwrap().len() >= 2,
        "a bar per class: {page}"
    );
    assert_eq!(
        page["drop_label"].as_str().unwrap(),
        api_label(&base, &png, "image/png").await,
        "{page}"
    );
    assert!(
        page["error_text"]
            .as_str()
            .unwrap()
            .contains("not a recognised image"),
        "{page}"
    );
    assert_eq!(page["error_class"], "error");
    assert_eq!(page["result_hidden"], true);
    assert_eq!(
        page["foreign_requests"],
        serde_json::json!([]),
        "the page must load nothing from elsewhere"
    );
    for shot in [
        "upload-page-photo.png",
        "upload-page-drop.png",
        "upload-page-error.png",
    ] {
        let img = image::open(shots.join(shot)).expect("screenshot");
        assert!(img.width() >= 800, "{shot}");
    }
}
