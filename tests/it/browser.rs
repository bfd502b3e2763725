//! The upload page in a real browser (headless Debian Chromium driven through
//! chromedriver by `tests/browser/upload_page.py`): pick a real photo, drop a
//! PNG, pick a non-image. The page must show what the API answers, work with
//! no network (no request leaves the origin), and leave screenshots in
//! target/screenshots/. A 7 MB PNG goes through the uploads path (`POST
//! /uploads`, the presigned PUT, `GET /uploads/{id}`). And the tutorial's own
//! front end (its jQuery 3.3.1 `$.post`, jQuery from npm), served from a
//! second origin allowed by `CATDOG_CORS_ORIGINS`, shows the API's figures
//! for a JPEG and a PNG.

use std::process::Command;

use crate::support::*;
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
    let page: Value = last_json_line(&out.stdout);
    println!("page: {page}");
    assert!(page["title"].as_str().unwrap().contains("catdog"));
    assert_eq!(page["photo_label"], want, "{page}");
    assert_eq!(
        page["photo_label"].as_str().unwrap(),
        api_label(&base, &photo, "image/jpeg").await
    );
    assert_eq!(page["preview_loaded"], true);
    // The explanation is shown over the picture (the overlay PNG, at most
    // 384 a side), says what it shows, and the toggle shows the picture.
    assert_eq!(page["why_shown"], true, "{page}");
    assert_eq!(page["preview_is_overlay"], true, "{page}");
    let side = page["overlay_size"][0]
        .as_u64()
        .unwrap()
        .max(page["overlay_size"][1].as_u64().unwrap());
    assert!(side > 0 && side <= 384, "{page}");
    assert!(page["why_text"].as_str().unwrap().contains(want), "{page}");
    assert_eq!(page["preview_after_toggle"], "blob:", "{page}");
    assert!(
        page["photo_bars"].as_array().unwrap().len() >= 2,
        "a bar per class: {page}"
    );
    assert_eq!(
        page["drop_label"].as_str().unwrap(),
        api_label(&base, &png, "image/png").await,
        "{page}"
    );
    if data.is_some() {
        // A blue square is no cat or dog: the page shows `neither`.
        assert_eq!(page["drop_label"], "neither", "{page}");
    }
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

/// The tutorial's own page (its jQuery 3.3.1 `$.post` of the JSON text, sent
/// as `application/x-www-form-urlencoded`), served from another origin
/// allowed by `CATDOG_CORS_ORIGINS`, shows catdog's figures for a JPEG and
/// for a PNG (which keeps its `data:image/png;base64,` prefix).
#[tokio::test(flavor = "multi_thread")]
async fn the_tutorials_own_page_shows_predictions_from_another_origin() {
    const TEST: &str = "browser::the_tutorials_own_page_shows_predictions_from_another_origin";
    let Some(jquery) = std::env::var_os("CATDOG_JQUERY")
        .map(std::path::PathBuf::from)
        .filter(|p| p.exists())
    else {
        skip_or_fail(
            TEST,
            "jQuery 3.3.1 from npm is missing (scripts/setup.sh --test-tools installs it)",
        );
        return;
    };
    // The page's own origin: a plain static server on another port.
    let dir = std::env::temp_dir().join(format!("catdog-tutorial-page-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        workspace().join("tests/browser/tutorial_page/index.html"),
        dir.join("index.html"),
    )
    .unwrap();
    std::fs::copy(&jquery, dir.join("jquery.min.js")).unwrap();
    let page_port = free_port();
    let _page = Proc {
        child: Command::new(python())
            .args([
                "-m",
                "http.server",
                &page_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
        name: "page server".into(),
    };
    let origin = format!("http://127.0.0.1:{page_port}");
    wait_http(
        &format!("{origin}/index.html"),
        Some(200),
        std::time::Duration::from_secs(20),
    )
    .await;

    let model = fixture("tiny_caffe_nhwc.onnx");
    let (_p, base) = serve(
        &["--model", model.to_str().unwrap()],
        &[("CATDOG_CORS_ORIGINS", origin.as_str())],
    )
    .await;
    wait_ready(&base).await;
    let (jpeg, png) = (fixture("images/red.jpg"), fixture("images/blue.png"));
    let out = tokio::task::spawn_blocking({
        let (page, backend) = (format!("{origin}/index.html"), format!("{base}/"));
        let (jpeg, png) = (jpeg.clone(), png.clone());
        move || {
            succeed(
                Command::new(python())
                    .arg(workspace().join("tests/browser/tutorial_page.py"))
                    .args([&page, &backend])
                    .arg(&jpeg)
                    .arg(&png),
            )
        }
    })
    .await
    .unwrap();
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (picture, ctype, want) in [(&jpeg, "image/jpeg", "cat"), (&png, "image/png", "dog")] {
        let name = picture.file_name().unwrap().to_string_lossy().into_owned();
        let page = &shown[&name];
        let api = predict_json(&base, std::fs::read(picture).unwrap(), ctype).await;
        assert_eq!(api["label"], want, "{api}");
        for label in ["cat", "dog"] {
            let (on_page, from_api) =
                (page[label].as_f64(), api["scores"][label].as_f64().unwrap());
            assert!(
                on_page.is_some_and(|p| (p - from_api).abs() < 1e-6),
                "{name}: the page shows {page}, the API says {}",
                api["scores"]
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A picture over the body limit (a real 7+ MB PNG, over Lambda's 6 MB): the
/// page sends it to S3 (moto, which answers CORS as a bucket with a CORS
/// rule does) through `POST uploads` and the presigned PUT, then shows
/// `GET uploads/{id}`'s answer, equal to `catdog predict` of the file.
#[tokio::test(flavor = "multi_thread")]
async fn a_picture_over_the_body_limit_reaches_the_page_through_s3() {
    let dir = std::env::temp_dir().join(format!("catdog-big-page-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("big.png");
    presigned::big_png(&file);
    let model = fixture("tiny_torch_nchw.onnx");
    let want = presigned::cli_answer(&model, &file);
    let (_moto, _server, base, endpoint) = presigned::uploads_stack(&[]).await;
    let shots = workspace().join("target/screenshots");
    let out = tokio::task::spawn_blocking({
        let (base, file, shots) = (base.clone(), file.clone(), shots.clone());
        move || {
            Command::new(python())
                .arg(workspace().join("tests/browser/big_upload.py"))
                .arg(&base)
                .arg(&file)
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
    let page: Value = last_json_line(&out.stdout);
    println!("page: {page}");
    assert_eq!(page["max_body"], (6 * 1024 * 1024).to_string(), "{page}");
    assert_eq!(page["status"], "", "no error shown: {page}");
    assert_eq!(page["label"], want["label"], "{page}");
    let pct = format!("{:.1}%", want["confidence"].as_f64().unwrap() * 100.0);
    assert!(
        page["confidence"].as_str().unwrap().starts_with(&pct),
        "{page} vs {pct}"
    );
    let urls: Vec<&str> = page["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r[1].as_str())
        .collect();
    assert!(urls.iter().any(|u| u.ends_with("/uploads")), "{urls:?}");
    assert!(
        urls.iter()
            .any(|u| u.starts_with(&format!("{endpoint}/{}/", presigned::BUCKET))),
        "the PUT to S3: {urls:?}"
    );
    assert!(
        !urls.iter().any(|u| u.ends_with("/predict")),
        "over the limit, /predict is not tried: {urls:?}"
    );
    let img = image::open(shots.join("upload-page-big.png")).expect("screenshot");
    assert!(img.width() >= 800);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The loop from the page: a real cat photo shows its overlay; pressing
/// "Wrong? It is a dog" stores it under `dog/` in the S3 test server (the
/// uploads bucket's feedback prefix, as template.yaml sets it up), with its
/// sidecar; and `catdog finetune --data … --data s3://…/feedback/` reads it.
#[tokio::test(flavor = "multi_thread")]
async fn pressing_wrong_stores_the_picture_where_the_next_finetune_reads_it() {
    let Some(data) =
        shared_data("pressing_wrong_stores_the_picture_where_the_next_finetune_reads_it")
    else {
        return;
    };
    let model = data.join("models/mobilenetv2-12-int8.onnx");
    let feedback = format!("s3://{}/feedback/", presigned::BUCKET);
    let (_moto, _server, base, endpoint) = presigned::uploads_stack_with(
        &model,
        &["--preprocessing", "torch", "--feedback", &feedback],
        &[],
    )
    .await;
    let photo = data.join("catsdogs/test/cat/cat.002.jpg");
    let shots = workspace().join("target/screenshots");
    let out = tokio::task::spawn_blocking({
        let (base, photo, shots) = (base.clone(), photo.clone(), shots.clone());
        move || {
            Command::new(python())
                .arg(workspace().join("tests/browser/feedback.py"))
                .arg(&base)
                .arg(&photo)
                .arg("dog")
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
    let page: Value = last_json_line(&out.stdout);
    println!("page: {page}");
    assert_eq!(page["label"], "cat", "{page}");
    assert_eq!(page["preview_is_overlay"], true, "{page}");
    assert_eq!(page["wrong_shown"], true, "{page}");
    assert_eq!(
        page["buttons"],
        serde_json::json!(["dog", "neither"]),
        "{page}"
    );
    assert!(
        page["wrong_status"]
            .as_str()
            .unwrap()
            .contains("kept as dog"),
        "{page}"
    );

    let bytes = std::fs::read(&photo).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let read = |key: String| {
        let endpoint = endpoint.clone();
        async move { s3_get(&endpoint, presigned::BUCKET, &key).await.0 }
    };
    assert!(read(format!("feedback/dog/{sha}.jpg")).await == bytes);
    let side: Value =
        serde_json::from_slice(&read(format!("feedback/dog/{sha}.json")).await).unwrap();
    assert_eq!(
        (side["label"].as_str(), side["answered"].as_str()),
        (Some("dog"), Some("cat"))
    );

    let dir = std::env::temp_dir().join(format!("catdog-page-loop-{}", free_port()));
    let out = tokio::process::Command::new(catdog_bin())
        .args(["finetune", "--base"])
        .arg(&model)
        .args(["--preprocessing", "torch", "--data"])
        .arg(data.join("catsdogs"))
        .args(["--data", &feedback, "--out"])
        .arg(dir.join("m.onnx"))
        .args(["--mirror", "false", "--crop", "false"])
        .env("CATDOG_CACHE", dir.join("cache"))
        .env_remove("MODEL_URI")
        .envs(s3_env(&endpoint))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["corrections"]["pictures"], 1, "{summary}");
    assert_eq!(summary["corrections"]["right_before"], 0, "{summary}");
    assert!(dir
        .join(format!(
            "cache/data/{}/feedback/dog/{sha}.jpg",
            presigned::BUCKET
        ))
        .exists());
    let _ = std::fs::remove_dir_all(&dir);
}
