//! `catdog finetune` on real photos (MobileNetV2 int8 base) and on a
//! VGG16-shaped model: better than zero-shot, only the head changed, the
//! written model serves, bad data is reported.
//!
//! With default flags on the shared photos: ≥ 45/46 on test/, never below
//! zero-shot, and `neither` for ≥ 36 of the 40 shared photos of other
//! things, which the threshold never saw; eval's 3×3 matrix. `--neither DIR`
//! as a class or a threshold, scored on held-out photos, the graph answering
//! as finetune counted; `--no-neither`; other labels with a named rejecting
//! label. The zero-shot start answers as the base on all 140 photos; weak
//! results are refused (and written only with `--allow-weak`); validation
//! from valid/ or a seeded stratified split; same seed, same file; eval's
//! answers equal serve's.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;
use catdog::model::graph;
use image::ImageFormat;
use protobuf::Message;
use serde_json::Value;

fn run(args: &[&str]) -> Output {
    Command::new(catdog_bin())
        .args(args)
        .env_remove("MODEL_URI")
        .output()
        .unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("catdog-ft-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `catdog predict --json` labels by file name.
fn predict(model: &Path, dir: &Path) -> BTreeMap<String, String> {
    let out = run(&[
        "predict",
        "--json",
        "--model",
        model.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["file"].as_str().unwrap().to_string(),
                v["label"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn accuracy(answers: &BTreeMap<String, String>) -> (usize, usize) {
    let right = answers
        .iter()
        .filter(|(f, l)| {
            Path::new(f)
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                == l.as_str()
        })
        .count();
    (right, answers.len())
}

#[test]
fn mobilenet_finetune_beats_zero_shot_changes_only_the_head_and_serves() {
    let Some(data) =
        shared_data("mobilenet_finetune_beats_zero_shot_changes_only_the_head_and_serves")
    else {
        return;
    };
    let base = data.join("models/mobilenetv2-12-int8.onnx");
    let out_dir = tmp("mobilenet");
    let out = out_dir.join("catdog-mobilenet.onnx");
    let args = mobilenet_args(&data, &out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The defaults: no training flag at all.
    let res = run(&args);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("epoch   1: loss") && stderr.contains("valid loss"),
        "per-epoch figures are printed: {stderr}"
    );
    let summary: Value = serde_json::from_slice(&res.stdout).unwrap();
    // "neither" by default: the base's own evidence, under a threshold set
    // from the pets' photos alone (the photos of other things never seen).
    assert_eq!(
        summary["labels"],
        serde_json::json!(["cat", "dog", "neither"])
    );
    let neither = &summary["neither"];
    assert_eq!(neither["mode"], "threshold", "{summary}");
    assert_eq!(neither["other_photos"], 0, "{summary}");
    assert_eq!(
        neither["domain"],
        serde_json::json!([123, "groups"]),
        "the 5 cat and 118 dog classes"
    );
    let threshold = neither["below"].as_f64().unwrap();
    assert!(threshold > 0.0 && threshold <= 0.2, "{summary}");
    // Every photo is kept unless it is a clear outlier (under the fence of
    // their evidence): none of the 94 shared photos is. The summary names
    // each it rejects.
    assert_eq!(neither["photos_rejected"], 0, "{summary}");
    assert_eq!(
        neither["rejected_photos"],
        serde_json::json!([]),
        "{summary}"
    );
    // No valid/ folder: 20% of each class carved from the 94 training photos.
    assert_eq!(summary["valid_source"], "carved");
    assert_eq!(summary["train_images"], 76);
    assert_eq!(summary["valid_images"], 18);
    assert_eq!(summary["init"], "zero-shot");
    assert_eq!(summary["feature_dim"], 1280);
    assert!(
        summary["weak"] == false && summary["valid_accuracy"].as_f64().unwrap() >= 0.9,
        "{summary}"
    );
    let best = summary["best_epoch"].as_u64().unwrap();
    assert!(
        best >= 1 && best as usize <= summary["history"].as_array().unwrap().len(),
        "{summary}"
    );

    // deterministic: same seed, same bytes
    let again = out_dir.join("again.onnx");
    let args2 = mobilenet_args(&data, &again);
    let args2: Vec<&str> = args2.iter().map(String::as_str).collect();
    assert!(run(&args2).status.success());
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&again).unwrap(),
        "--seed makes the model file reproducible"
    );

    // at least as good as zero-shot ImageNet groups on test/
    let test = data.join("catsdogs/test");
    let (tuned, n) = accuracy(&predict(&out, &test));
    let reference: Value =
        serde_json::from_slice(&std::fs::read(fixture("mobilenet_reference.json")).unwrap())
            .unwrap();
    let zero_shot = reference
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| {
            k.starts_with("test/")
                && ((v["cat"].as_f64() >= v["dog"].as_f64()) == k.starts_with("test/cat"))
        })
        .count();
    // `catdog eval` on the ImageNet base answers `neither` where the cat and
    // dog groups together fall below NEITHER_BELOW (as serving does), and a
    // `neither` for a photo of a cat or a dog is wrong: the reference, with
    // the same rule, is what it must score. (On an AVX2-only CPU two cat
    // photos of test/ sum to 0.015 and 0.184: `neither`.)
    let below = catdog::model::imagenet::DEFAULT_NEITHER_BELOW as f64;
    let zero_shot_with_neither = reference
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| {
            let (cat, dog) = (v["cat"].as_f64().unwrap(), v["dog"].as_f64().unwrap());
            k.starts_with("test/")
                && cat + dog >= below
                && ((cat >= dog) == k.starts_with("test/cat"))
        })
        .count();
    // `catdog eval` on the ImageNet base scores the groups the same way
    let base_report = eval_json(
        &base,
        &test,
        &out_dir.join("base.png"),
        &["--preprocessing", "torch"],
    );
    assert_eq!(
        base_report["predicted_labels"],
        serde_json::json!(["cat", "dog", "neither"])
    );
    assert_eq!(
        base_report["correct"].as_u64().unwrap() as usize,
        zero_shot_with_neither,
        "eval of the ImageNet base = reference zero-shot, with its neither rule"
    );
    println!("test/ accuracy: fine-tuned {tuned}/{n}, zero-shot ImageNet groups {zero_shot}/{n}");
    assert_eq!(n, 46);
    assert!(
        tuned >= zero_shot,
        "fine-tuned {tuned}/46 < zero-shot {zero_shot}/46"
    );
    // The issue's bar for the defaults on shared test/: at least 97.8% (45/46).
    assert!(tuned >= 45, "fine-tuned with the defaults: {tuned}/46");

    // only the head changed: every other initializer byte-identical
    let before = graph::parse(&std::fs::read(&base).unwrap()).unwrap();
    let after = graph::parse(&std::fs::read(&out).unwrap()).unwrap();
    let head = graph::find_head(&before).unwrap();
    let head_inputs: HashSet<String> = head
        .nodes
        .iter()
        .flat_map(|&i| before.graph.node[i].input.iter().cloned())
        .collect();
    let after_inits: BTreeMap<&str, Vec<u8>> = after
        .graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t.write_to_bytes().unwrap()))
        .collect();
    let mut kept = 0;
    for t in &before.graph.initializer {
        match after_inits.get(t.name.as_str()) {
            Some(bytes) => {
                assert_eq!(
                    bytes,
                    &t.write_to_bytes().unwrap(),
                    "initializer {} changed",
                    t.name
                );
                kept += 1;
            }
            None => assert!(
                head_inputs.contains(&t.name),
                "{} was removed but is not part of the head",
                t.name
            ),
        }
    }
    assert!(
        kept >= before.graph.initializer.len() - 10,
        "kept {kept} of {}",
        before.graph.initializer.len()
    );
    assert_eq!(
        kept,
        before.graph.initializer.len(),
        "a zero-shot head keeps the base's own head: nothing removed"
    );
    let body_nodes = before.graph.node.len() - head.nodes.len();
    assert_eq!(
        &after.graph.node[..body_nodes],
        &before.graph.node[..body_nodes],
        "the frozen body is untouched"
    );

    // and it serves with the same answers `predict` gave
    let (_p, base_url) = tokio_block(serve(&["--model", out.to_str().unwrap()], &[]));
    tokio_block(wait_ready(&base_url));
    let m: Value = tokio_block(async {
        reqwest::get(format!("{base_url}/model"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(m["labels"], serde_json::json!(["cat", "dog", "neither"]));
    assert_eq!(m["rejection"]["label"], "neither");
    assert_eq!(
        m["rejection"]["below"].as_f64().unwrap() as f32,
        threshold as f32,
        "{m}"
    );
    assert_eq!(m["contract_source"]["preprocessing"], "metadata");
    assert_eq!(m["output"]["kind"], "probabilities");
    // `catdog eval` on test/: its answers are what the server answers, file by file
    let png = out_dir.join("confusion.png");
    let report = eval_json(&out, &test, &png, &[]);
    assert_eq!(
        report["predicted_labels"],
        serde_json::json!(["cat", "dog", "neither"])
    );
    assert_eq!(report["total"], 46);
    assert_eq!(
        report["correct"].as_u64().unwrap() as usize,
        tuned,
        "eval and predict agree"
    );
    assert_eq!(
        report["confusion"].as_array().unwrap().len(),
        2,
        "rows: the folders"
    );

    // The issue's bar: the default model answers `neither` for at least 36
    // of the 40 photos of other things (never used for its threshold) and
    // keeps at least 45 of the 46 pets; eval shows the 3×3 matrix.
    let png3 = out_dir.join("confusion3.png");
    let three = eval_json(
        &out,
        &test,
        &png3,
        &["--neither", data.join("neither").to_str().unwrap()],
    );
    assert_eq!(
        three["labels"],
        serde_json::json!(["cat", "dog", "neither"])
    );
    let confusion = three["confusion"].as_array().unwrap();
    assert!(
        confusion
            .iter()
            .all(|row| row.as_array().unwrap().len() == 3),
        "{three}"
    );
    let said_neither = confusion[2][2].as_u64().unwrap();
    let pets_right = confusion[0][0].as_u64().unwrap() + confusion[1][1].as_u64().unwrap();
    println!(
        "default model: {pets_right}/46 pets, {said_neither}/40 other photos answered neither"
    );
    assert!(
        said_neither >= 36,
        "{said_neither}/40 answered neither: {three}"
    );
    assert!(pets_right >= 45, "{pets_right}/46 pets: {three}");
    assert_eq!(
        pets_right as usize, tuned,
        "the same pets' answers as predict"
    );
    let cm3 = image::open(&png3).expect("3×3 confusion matrix PNG");
    assert!(cm3.width() > 200 && cm3.height() > 150);
    assert_eq!(
        report["misclassified"].as_array().unwrap().len(),
        46 - tuned
    );
    assert!(report["per_class"][0]["recall"].as_f64().is_some());
    let cm = image::open(&png).expect("confusion matrix PNG");
    assert!(cm.width() > 200 && cm.height() > 150);
    let curves = image::open(out.with_extension("training.png"))
        .expect("training curves PNG next to the model");
    assert!(curves.width() > 400);
    for a in report["answers"].as_array().unwrap() {
        let file = a["file"].as_str().unwrap();
        let bytes = std::fs::read(file).unwrap();
        let v: Value = tokio_block(async { predict_json(&base_url, bytes, "image/jpeg").await });
        assert_eq!(v["label"], a["predicted"], "{file}");
        assert!(
            (v["confidence"].as_f64().unwrap() - a["confidence"].as_f64().unwrap()).abs() < 1e-5,
            "{file}"
        );
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// `catdog finetune --base BASE --data DATA --out OUT`, then `more`.
fn finetune_args(base: &Path, data: &str, out: &Path, more: &[&str]) -> Vec<String> {
    let core = ["finetune", "--base", base.to_str().unwrap(), "--data", data];
    let out = ["--out", out.to_str().unwrap()];
    core.iter()
        .chain(&out)
        .chain(more)
        .map(|a| a.to_string())
        .collect()
}

/// `catdog finetune` of the shared MobileNetV2 on `photos` (a folder or an
/// `s3://` prefix) into `out`, with the default training flags and seed 1.
fn mobilenet_args_from(data: &Path, photos: &str, out: &Path) -> Vec<String> {
    let base = data.join("models/mobilenetv2-12-int8.onnx");
    let flags = ["--preprocessing", "torch", "--seed", "1"];
    finetune_args(&base, photos, out, &flags)
}

/// [`mobilenet_args_from`] the shared photos.
fn mobilenet_args(data: &Path, out: &Path) -> Vec<String> {
    mobilenet_args_from(data, data.join("catsdogs").to_str().unwrap(), out)
}

fn tokio_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Reddish "cats" and bluish "dogs" with varied shades and sizes.
fn colour_dataset(root: &Path, per_class: usize, seed: u32) {
    for (label, base) in [("cat", [200u8, 40, 40]), ("dog", [40u8, 40, 200])] {
        let dir = root.join(label);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let k = (i as u32 * 37 + seed * 11) % 50;
            let rgb = [
                base[0].saturating_sub(k as u8),
                base[1] + (k as u8 / 2),
                base[2].saturating_sub((k as u8) / 3),
            ];
            let w = 120 + (i as u32 * 13 % 200);
            std::fs::write(
                dir.join(format!("{label}{i:03}.png")),
                solid(rgb, w, 150, ImageFormat::Png),
            )
            .unwrap();
        }
    }
}

#[test]
fn vgg_shaped_model_goes_through_finetune_predict_and_serve() {
    let root = tmp("vgg");
    colour_dataset(&root.join("train"), 12, 1);
    colour_dataset(&root.join("valid"), 4, 2);
    colour_dataset(&root.join("test"), 6, 3);
    let out = root.join("vgg-catdog.onnx");
    let args = vgg_finetune(&fixture("tiny_vgg.onnx"), &root, &out, &[]);
    let res = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let summary: Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(
        summary["feature_tensor"], "fc2_relu",
        "the tensor feeding the last Gemm: fc2's ReLU output"
    );
    assert_eq!(summary["feature_dim"], 32);
    assert_eq!(summary["valid_images"], 8);
    assert!(
        summary["history"][29]["valid_accuracy"].as_f64().unwrap() >= 0.99,
        "{}",
        summary["history"][29]
    );
    let (right, n) = accuracy(&predict(&out, &root.join("test")));
    assert_eq!((right, n), (12, 12));
    let report = eval_json(&out, &root.join("test"), &root.join("cm.png"), &[]);
    assert_eq!(
        (report["correct"].as_u64(), report["total"].as_u64()),
        (Some(12), Some(12))
    );
    // Rows: the folders; columns: cat, dog and the rejecting `neither`.
    assert_eq!(
        report["confusion"],
        serde_json::json!([[6, 0, 0], [0, 6, 0]])
    );
    let (_p, base_url) = tokio_block(serve(&["--model", out.to_str().unwrap()], &[]));
    tokio_block(wait_ready(&base_url));
    for a in report["answers"].as_array().unwrap() {
        let v: Value = tokio_block(async {
            predict_json(
                &base_url,
                std::fs::read(a["file"].as_str().unwrap()).unwrap(),
                "image/png",
            )
            .await
        });
        assert_eq!(v["label"], a["predicted"]);
    }
    let model = graph::parse(&std::fs::read(&out).unwrap()).unwrap();
    let meta = |k: &str| graph::metadata(&model, k).unwrap();
    assert_eq!(meta("labels"), r#"["cat","dog","neither"]"#);
    assert!(meta("rejection").starts_with(r#"{"label":"neither","below":"#));
    assert!(meta("preprocessing").contains("\"preset\":\"caffe\""));
    assert!(meta("catdog_training").contains("\"history\""));
    // The model explains itself: Grad-CAM through the VGG's dense layers,
    // for the trained labels (never the rejecting one).
    assert_eq!(
        meta("explanation"),
        r#"{"method":"grad-cam","labels":["cat","dog"]}"#
    );
    let info: Value = tokio_block(async {
        reqwest::get(format!("{base_url}/model"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(info["explanation"], "grad-cam");
    let _ = std::fs::remove_dir_all(&root);
}

/// `finetune` of the tiny VGG `base` on the colour folders under `root`
/// into `out` (30 epochs, lr 0.01, batches of 8), then `more`.
fn vgg_finetune(base: &Path, root: &Path, out: &Path, more: &[&str]) -> Vec<String> {
    let training = ["--epochs", "30", "--lr", "1e-2", "--batch", "8"];
    let flags: Vec<&str> = training.iter().chain(more).copied().collect();
    finetune_args(base, root.to_str().unwrap(), out, &flags)
}

/// A QDQ int8 base (`models/quantize.py`'s recipe of the tiny VGG: the
/// final layer behind a QuantizeLinear, its weight behind a
/// DequantizeLinear) fine-tunes as the float one does, and the written
/// model keeps nothing of the old head: no node whose output nothing reads.
#[test]
fn a_qdq_int8_base_fine_tunes_and_leaves_nothing_of_its_old_head() {
    let root = tmp("vgg-int8");
    colour_dataset(&root.join("train"), 12, 1);
    colour_dataset(&root.join("valid"), 4, 2);
    colour_dataset(&root.join("test"), 6, 3);
    let out = root.join("vgg-int8-catdog.onnx");
    let base = fixture("tiny_vgg_recipe_int8.onnx");
    // A head of its own alone: neither a prior nor a rejecting label
    // keeps the base's final layer.
    let own_head = ["--init", "random", "--no-neither"];
    let args = vgg_finetune(&base, &root, &out, &own_head);
    let res = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let (right, n) = accuracy(&predict(&out, &root.join("test")));
    assert_eq!((right, n), (12, 12));
    let model = graph::parse(&std::fs::read(&out).unwrap()).unwrap();
    let g = model.graph.as_ref().unwrap();
    let read: std::collections::HashSet<&String> = g
        .node
        .iter()
        .flat_map(|n| &n.input)
        .chain(g.output.iter().map(|o| &o.name))
        .collect();
    let dead: Vec<&str> = g
        .node
        .iter()
        .filter(|n| n.op_type != "If" && n.output.iter().all(|o| !read.contains(o)))
        .map(|n| n.name.as_str())
        .collect();
    assert!(
        dead.is_empty(),
        "nodes whose outputs nothing reads: {dead:?}"
    );
    let base_model = graph::parse(&std::fs::read(&base).unwrap()).unwrap();
    let head = graph::find_head(&base_model).unwrap();
    let old_weight = &base_model.graph.node[*head.nodes.last().unwrap()].input[1];
    assert!(
        g.node.iter().all(|n| !n.output.contains(old_weight)),
        "the old head's weight ({old_weight}) is still made"
    );
    assert_eq!(
        graph::metadata(&model, "explanation").unwrap(),
        r#"{"method":"grad-cam","labels":["cat","dog"]}"#
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// A MatMul + Softmax head (no Gemm, NHWC, Keras-like) is replaced as well.
#[test]
fn matmul_softmax_head_is_replaced_too() {
    let root = tmp("matmul");
    colour_dataset(&root.join("train"), 10, 4);
    colour_dataset(&root.join("test"), 5, 5);
    let out = root.join("m.onnx");
    let res = run(&[
        "finetune",
        "--base",
        fixture("tiny_caffe_nhwc.onnx").to_str().unwrap(),
        "--data",
        root.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "20",
        "--lr",
        "1e-1",
        "--batch",
        "5",
    ]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let summary: Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(summary["feature_tensor"], "pooled");
    assert_eq!(summary["replaced"], "MatMul (2 nodes)");
    assert_eq!(accuracy(&predict(&out, &root.join("test"))), (10, 10));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_data_gets_clear_messages_and_unusable_files_are_skipped_and_counted() {
    let base = fixture("tiny_vgg.onnx");
    let ft = |root: &Path| {
        run(&[
            "finetune",
            "--base",
            base.to_str().unwrap(),
            "--data",
            root.to_str().unwrap(),
            "--out",
            root.join("m.onnx").to_str().unwrap(),
            "--epochs",
            "2",
            // About the data's messages, not the result: a weak head is written.
            "--allow-weak",
        ])
    };
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let root = tmp("empty");
    colour_dataset(&root.join("train"), 3, 1);
    std::fs::create_dir_all(root.join("train/bird")).unwrap();
    let o = ft(&root);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("class folder")
            && err(&o).contains("bird")
            && err(&o).contains("has no files"),
        "{}",
        err(&o)
    );

    let root = tmp("single");
    colour_dataset(&root.join("train"), 3, 1);
    std::fs::remove_dir_all(root.join("train/dog")).unwrap();
    let o = ft(&root);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("needs at least two class folders"),
        "{}",
        err(&o)
    );

    let root = tmp("nodata");
    let o = ft(&root);
    assert!(err(&o).contains("no such folder"), "{}", err(&o));

    let root = tmp("junk");
    colour_dataset(&root.join("train"), 4, 1);
    // not a picture by name: not taken (the walker `predict` uses too);
    // a picture by name that does not decode: skipped, and said
    std::fs::write(root.join("train/cat/notes.txt"), "not a picture").unwrap();
    let jpg = std::fs::read(fixture("images/red.jpg")).unwrap();
    std::fs::write(root.join("train/dog/corrupt.jpg"), &jpg[..jpg.len() / 2]).unwrap();
    let o = ft(&root);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("skipped 1 file(s)"), "{}", err(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    let skipped = summary["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].to_string().contains("corrupt.jpg"),
        "{skipped:?}"
    );
    assert_eq!(
        summary["train_images"].as_u64().unwrap() + summary["valid_images"].as_u64().unwrap(),
        8
    );

    // every picture of a class unusable: refused, not a silently one-sided model
    let root = tmp("allbad");
    colour_dataset(&root.join("train"), 2, 1);
    for f in std::fs::read_dir(root.join("train/dog")).unwrap() {
        std::fs::write(f.unwrap().path(), b"garbage").unwrap();
    }
    let o = ft(&root);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("class `dog` has no usable pictures"),
        "{}",
        err(&o)
    );
}

/// `catdog finetune` on the tiny VGG-shaped base (1000 outputs, so the head
/// starts from its grouped cat/dog classes), with extra flags.
fn finetune_tiny(root: &Path, extra: &[&str]) -> Output {
    let base = fixture("tiny_vgg.onnx");
    let out = root.join("m.onnx");
    let mut args = vec![
        "finetune",
        "--base",
        base.to_str().unwrap(),
        "--data",
        root.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn a_weak_result_is_refused_unless_allowed() {
    // Both classes hold the same pictures (the dogs' re-encoded as BMP, so
    // their bytes differ and they are not left out as disputed copies):
    // nothing can be learned.
    let root = tmp("weak");
    colour_dataset(&root.join("train/cat"), 6, 1);
    colour_dataset(&root.join("train/dog"), 6, 1);
    for label in ["cat", "dog"] {
        for f in std::fs::read_dir(root.join("train").join(label)).unwrap() {
            let dir = f.unwrap().path();
            for img in std::fs::read_dir(&dir).unwrap() {
                let img = img.unwrap().path();
                let name = format!(
                    "{}_{}",
                    dir.file_name().unwrap().to_str().unwrap(),
                    img.file_name().unwrap().to_str().unwrap()
                );
                let to = root.join("train").join(label).join(name);
                if label == "dog" {
                    image::open(&img)
                        .unwrap()
                        .save(to.with_extension("bmp"))
                        .unwrap();
                    std::fs::remove_file(&img).unwrap();
                } else {
                    std::fs::rename(&img, to).unwrap();
                }
            }
            std::fs::remove_dir(&dir).unwrap();
        }
    }
    let out = root.join("m.onnx");
    let o = finetune_tiny(&root, &["--epochs", "30"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a coin flip must not pass: {err}");
    assert!(
        err.contains("the fine-tuned head is weak, so it was not written"),
        "{err}"
    );
    assert!(
        err.contains("below the floor of 90.0% (--min-accuracy)") && err.contains("--allow-weak"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written");

    let o = finetune_tiny(&root, &["--epochs", "30", "--allow-weak"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("WARNING: writing a weak head (--allow-weak)"),
        "{err}"
    );
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["weak"], true);
    assert!(out.exists());

    // The floor is a setting.
    let o = finetune_tiny(
        &root,
        &[
            "--epochs",
            "30",
            "--min-accuracy",
            "0.0",
            "--init",
            "random",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_dir_all(&root);
}

/// Fine-tunes the tiny base on `root` for 3 epochs; where the validation
/// photos came from, and the training and validation counts, and stderr.
fn split_of(root: &Path) -> ((String, u64, u64), String) {
    let o = finetune_tiny(root, &["--epochs", "3", "--allow-weak"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    let n = |k: &str| s[k].as_u64().unwrap();
    (
        (
            s["valid_source"].as_str().unwrap().to_string(),
            n("train_images"),
            n("valid_images"),
        ),
        err,
    )
}

#[test]
fn validation_comes_from_valid_or_a_seeded_stratified_split() {
    // No valid/: 20% of each class (2 of 10) carved from train/, by the seed.
    let root = tmp("carve");
    colour_dataset(&root.join("train"), 10, 1);
    assert_eq!(split_of(&root).0, ("carved".to_string(), 16, 4));
    let first = std::fs::read(root.join("m.onnx")).unwrap();
    split_of(&root);
    assert!(
        first == std::fs::read(root.join("m.onnx")).unwrap(),
        "same seed, same split, same file"
    );
    // Its own folder when there is one: every train/ photo trains.
    colour_dataset(&root.join("valid"), 3, 2);
    let (split, err) = split_of(&root);
    assert_eq!(split, ("folder".to_string(), 20, 6));
    assert!(err.contains("validation photos (valid/)"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_zero_shot_start_answers_as_the_base_on_real_photos() {
    let Some(data) = shared_data("the_zero_shot_start_answers_as_the_base_on_real_photos") else {
        return;
    };
    let root = tmp("zero-shot");
    let out = root.join("start.onnx");
    let photos = data.join("catsdogs");
    // No training step at all: the head as it starts (the same command as the
    // defaults test, `--seed 1` and all, with no epoch).
    let mut start_args = mobilenet_args(&data, &out);
    start_args.extend(["--epochs", "0", "--allow-weak"].map(String::from));
    let o = run(&start_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    let below = summary["neither"]["below"].as_f64().unwrap();
    // Python onnxruntime's answers of the base (fixtures): summed cat and dog
    // groups; `neither` where they sum to less than the model's threshold
    // (the graph's evidence is the same sum).
    let reference: Value =
        serde_json::from_slice(&std::fs::read(fixture("mobilenet_reference.json")).unwrap())
            .unwrap();
    let mut compared = 0;
    for split in ["train", "test"] {
        let answers = predict(&out, &photos.join(split));
        for (file, label) in &answers {
            let rel = Path::new(file)
                .strip_prefix(&photos)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let r = &reference[&rel];
            let (cat, dog) = (r["cat"].as_f64().unwrap(), r["dog"].as_f64().unwrap());
            if (cat - dog).abs() < 1e-4 || (cat + dog - below).abs() < 1e-4 {
                continue; // a tie within rounding says nothing
            }
            let base_choice = match (cat + dog < below, cat > dog) {
                (true, _) => "neither",
                (false, true) => "cat",
                (false, false) => "dog",
            };
            assert_eq!(label, base_choice, "{rel}: cat {cat} dog {dog}");
            compared += 1;
        }
    }
    assert!(compared >= 135, "compared {compared} photos");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn cross_validation_prints_the_candidates_and_writes_nothing() {
    let root = tmp("cv");
    colour_dataset(&root.join("train"), 10, 3);
    let o = finetune_tiny(&root, &["--cv", "3", "--epochs", "5"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.starts_with("3-fold cross-validation on 20 photos"),
        "{out}"
    );
    assert!(
        out.contains("the base's zero-shot choice, no training: "),
        "{out}"
    );
    // 2 starts × 3 weight decays × 2 label smoothings × (mirror, crops) on or off.
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("| zero-shot |") || l.starts_with("| random |"))
            .count(),
        48,
        "{out}"
    );
    assert!(
        out.contains("/20 = "),
        "each row scores all 20 photos once: {out}"
    );
    assert!(!root.join("m.onnx").exists(), "measuring writes no model");
    let _ = std::fs::remove_dir_all(&root);
}

/// The written model's `rejection` metadata, if any.
fn rejection_of(model: &Path) -> Option<Value> {
    let m = graph::parse(&std::fs::read(model).unwrap()).unwrap();
    graph::metadata(&m, "rejection").map(|v| serde_json::from_str(&v).unwrap())
}

/// `catdog eval --json` of `model` on `dir` (with `extra` flags), the
/// confusion matrix drawn to `png`: its report.
fn eval_json(model: &Path, dir: &Path, png: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["eval", "--json", "--png", png.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend(["--model", model.to_str().unwrap(), dir.to_str().unwrap()]);
    let ev = run(&args);
    assert!(
        ev.status.success(),
        "{}",
        String::from_utf8_lossy(&ev.stderr)
    );
    serde_json::from_slice(&ev.stdout).unwrap()
}

/// `catdog eval --json --neither OTHERS`.
fn eval_with_others(model: &Path, test: &Path, others: &Path, png: &Path) -> Value {
    eval_json(model, test, png, &["--neither", others.to_str().unwrap()])
}

/// With photos of other things (`--neither DIR`), `neither` is a trained
/// third class or a threshold fitted on them; the graph answers as the
/// figures finetune printed; `--no-neither` is the tutorial's forced
/// two-way model. Scored on photos of other things it was not fitted on.
#[test]
fn photos_of_other_things_train_neither_and_no_neither_forces_two_way() {
    let Some(data) =
        shared_data("photos_of_other_things_train_neither_and_no_neither_forces_two_way")
    else {
        return;
    };
    let root = tmp("others");
    let mut others: Vec<PathBuf> = std::fs::read_dir(data.join("neither"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "JPEG"))
        .collect();
    others.sort();
    assert_eq!(others.len(), 40);
    // Fitted on 32, scored on the other 8 (and on test/'s 46 pets).
    let (fit, held) = (root.join("fit"), root.join("held"));
    for (dir, files) in [(&fit, &others[..32]), (&held, &others[32..])] {
        std::fs::create_dir_all(dir).unwrap();
        for f in files {
            std::os::unix::fs::symlink(f, dir.join(f.file_name().unwrap())).unwrap();
        }
    }
    let test = data.join("catsdogs/test");
    let finetune = |name: &str, extra: &[&str]| -> (PathBuf, Value) {
        let out = root.join(format!("{name}.onnx"));
        let mut args = mobilenet_args(&data, &out);
        // One view per photo keeps the test quick; the defaults add six.
        args.extend(["--mirror", "false", "--crop", "false"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let res = run(&args);
        assert!(
            res.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        (out, serde_json::from_slice(&res.stdout).unwrap())
    };
    let fit_arg = fit.to_str().unwrap();
    for mode in ["class", "threshold"] {
        let (model, summary) = finetune(mode, &["--neither", fit_arg, "--neither-mode", mode]);
        assert_eq!(
            summary["labels"],
            serde_json::json!(["cat", "dog", "neither"])
        );
        let n = &summary["neither"];
        assert_eq!(n["mode"], mode, "{summary}");
        assert_eq!(n["other_photos"], 32, "{summary}");
        let rule = rejection_of(&model).expect("the rule is in the model");
        assert_eq!(rule["label"], "neither");
        assert_eq!(rule["below"], n["below"], "{summary}");
        // The graph's answers are the ones finetune counted on its photos.
        let said: Vec<String> = predict(&model, &fit).into_values().collect();
        assert_eq!(
            said.iter().filter(|l| *l == "neither").count() as u64,
            n["other_photos_rejected"].as_u64().unwrap(),
            "{mode}: {said:?} {summary}"
        );
        let report = eval_with_others(&model, &test, &held, &root.join(format!("{mode}.png")));
        let c = report["confusion"].as_array().unwrap();
        let pets = c[0][0].as_u64().unwrap() + c[1][1].as_u64().unwrap();
        let rejected = c[2][2].as_u64().unwrap();
        println!("--neither-mode {mode}: {pets}/46 pets, {rejected}/8 held-out other photos answered neither");
        assert!(pets >= 44, "{mode}: {report}");
        assert!(rejected >= 7, "{mode}: {report}");
    }

    // Refused, not written, when the rule misses the photos of other things:
    // half of these are cats, which no threshold can tell from the labels.
    let mixed = root.join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    let mut cats: Vec<PathBuf> = std::fs::read_dir(test.join("cat"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cats.sort();
    for f in others[32..].iter().chain(&cats[..8]) {
        std::os::unix::fs::symlink(f, mixed.join(f.file_name().unwrap())).unwrap();
    }
    let weak = root.join("weak.onnx");
    let mut args = mobilenet_args(&data, &weak);
    args.extend(
        [
            "--mirror",
            "false",
            "--crop",
            "false",
            "--neither-mode",
            "threshold",
            "--neither",
        ]
        .map(String::from),
    );
    args.push(mixed.to_str().unwrap().to_string());
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("is the answer for only") && err.contains("photos of other things"),
        "{err}"
    );
    assert!(!weak.exists(), "nothing written");

    // The tutorial's forced choice: every photo of other things is a cat or a dog.
    let (forced, summary) = finetune("forced", &["--no-neither"]);
    assert_eq!(summary["labels"], serde_json::json!(["cat", "dog"]));
    assert!(summary["neither"].is_null(), "{summary}");
    assert_eq!(rejection_of(&forced), None);
    let report = eval_with_others(&forced, &test, &held, &root.join("forced.png"));
    assert_eq!(
        report["predicted_labels"],
        serde_json::json!(["cat", "dog"])
    );
    let row: Vec<u64> = report["confusion"][2]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        (row.len(), row.iter().sum::<u64>()),
        (2, 8),
        "each a cat or a dog: {report}"
    );
    assert_eq!(report["per_class"][2]["recall"], 0.0, "{report}");

    // The two ways cannot be asked for at once.
    let both = run(&[
        "finetune",
        "--base",
        "x",
        "--data",
        "y",
        "--out",
        "z",
        "--no-neither",
        "--neither",
        fit_arg,
    ]);
    assert_eq!(both.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Labels other than cat and dog work the same way: `neither` (here named
/// `other` by --neither-label) from the base's evidence for the classes the
/// labels' photos fall in, or as a trained class from photos of other things.
#[test]
fn other_labels_get_a_named_rejecting_label() {
    let root = tmp("other-labels");
    colour_dataset(&root.join("train"), 12, 3);
    for (from, to) in [("cat", "red"), ("dog", "blue")] {
        std::fs::rename(root.join("train").join(from), root.join("train").join(to)).unwrap();
    }
    let greens = root.join("greens");
    std::fs::create_dir_all(&greens).unwrap();
    for i in 0..10u8 {
        std::fs::write(
            greens.join(format!("green{i}.png")),
            solid(
                [30 + i * 3, 200 - i * 2, 40],
                100 + u32::from(i) * 7,
                120,
                ImageFormat::Png,
            ),
        )
        .unwrap();
    }
    // The tiny VGG-shaped base has 1000 outputs, so it gives evidence: a
    // threshold over the classes its first choices for red and blue are.
    let o = finetune_tiny(&root, &["--neither-label", "other", "--allow-weak"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        summary["labels"],
        serde_json::json!(["blue", "red", "other"])
    );
    assert_eq!(summary["neither"]["mode"], "threshold");
    assert_eq!(summary["neither"]["domain"][1], "top1", "{summary}");
    let rule = rejection_of(&root.join("m.onnx")).unwrap();
    assert_eq!(rule["label"], "other");
    // With the greens as a trained class, they are answered `other`.
    let o = finetune_tiny(
        &root,
        &[
            "--neither-label",
            "other",
            "--neither",
            greens.to_str().unwrap(),
            "--allow-weak",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        summary["labels"],
        serde_json::json!(["blue", "red", "other"])
    );
    assert_eq!(summary["neither"]["mode"], "class");
    let said = predict(&root.join("m.onnx"), &greens);
    assert!(said.values().all(|l| l == "other"), "{said:?}");
    let said = predict(&root.join("m.onnx"), &root.join("train/red"));
    assert!(said.values().all(|l| l == "red"), "{said:?}");
    let _ = std::fs::remove_dir_all(&root);
}

/// `catdog` with the environment of a loopback S3 server and its own cache.
fn run_with_s3(args: &[String], endpoint: &str, cache: &Path) -> Output {
    let mut cmd = Command::new(catdog_bin());
    cmd.args(args)
        .env_remove("MODEL_URI")
        .env("CATDOG_CACHE", cache);
    for (k, v) in s3_env(endpoint) {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// The shared training photos uploaded to moto: `finetune --data
/// s3://…` mirrors them and writes the same model as from the folder (the
/// same graph, byte for byte, with the same seed); a second run fetches
/// nothing again, and a photo deleted from S3 leaves the mirror.
#[test]
fn finetune_from_s3_writes_the_same_model_as_from_the_folder() {
    let Some(data) = shared_data("finetune_from_s3_writes_the_same_model_as_from_the_folder")
    else {
        return;
    };
    let dir = tmp("s3-data");
    let cache = dir.join("cache");
    let photos = data.join("catsdogs");
    let (_moto, endpoint) = tokio_block(async {
        let (moto, endpoint) = moto().await;
        let s3 = s3_test_client(&endpoint);
        s3.create_bucket().bucket("photos").send().await.unwrap();
        for rel in files_under(&photos.join("train")) {
            let body = std::fs::read(photos.join("train").join(&rel)).unwrap();
            let key = format!("catsdogs/train/{}", rel.display());
            s3.put_object()
                .bucket("photos")
                .key(key)
                .body(body.into())
                .send()
                .await
                .unwrap();
        }
        (moto, endpoint)
    });
    let fast = ["--mirror", "false", "--crop", "false"].map(String::from);
    let from_folder = dir.join("folder.onnx");
    let mut args = mobilenet_args(&data, &from_folder);
    args.extend(fast.clone());
    let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let from_s3 = dir.join("s3.onnx");
    let mut args = mobilenet_args_from(&data, "s3://photos/catsdogs/", &from_s3);
    args.extend(fast);
    let o = run_with_s3(&args, &endpoint, &cache);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        summary["data"],
        serde_json::json!(["s3://photos/catsdogs/"])
    );
    let mirror = cache.join("data/photos/catsdogs");
    assert_eq!(
        files_under(&mirror.join("train")),
        files_under(&photos.join("train"))
    );
    let graph_of = |m: &Path| {
        graph::parse(&std::fs::read(m).unwrap())
            .unwrap()
            .graph
            .write_to_bytes()
            .unwrap()
    };
    assert!(
        graph_of(&from_folder) == graph_of(&from_s3),
        "the graphs differ"
    );

    // Again: nothing fetched again; a photo deleted from S3 leaves the mirror.
    let gone = files_under(&photos.join("train"))[0].clone();
    tokio_block(async {
        let key = format!("catsdogs/train/{}", gone.display());
        let s3 = s3_test_client(&endpoint);
        s3.delete_object()
            .bucket("photos")
            .key(key)
            .send()
            .await
            .unwrap();
    });
    let stamp = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let kept = files_under(&mirror.join("train"))[1].clone();
    let before = stamp(&mirror.join("train").join(&kept));
    let o = run_with_s3(&args, &endpoint, &cache);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !mirror.join("train").join(&gone).exists(),
        "{gone:?} is still mirrored"
    );
    assert_eq!(
        stamp(&mirror.join("train").join(&kept)),
        before,
        "fetched again"
    );

    // An object replaced at the same size (another photo, padded after its
    // end) has another ETag: fetched again.
    let replaced = same_size_other_photo(&photos.join("train"), &kept, &gone);
    tokio_block(async {
        let key = format!("catsdogs/train/{}", kept.display());
        let s3 = s3_test_client(&endpoint);
        let body = replaced.clone().into();
        s3.put_object()
            .bucket("photos")
            .key(key)
            .body(body)
            .send()
            .await
            .unwrap();
    });
    let o = run_with_s3(&args, &endpoint, &cache);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(mirror.join("train").join(&kept)).unwrap() == replaced,
        "{kept:?}: the mirror kept the old bytes of the same size"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Another photo of `dir` than `kept` and `gone`, smaller than `kept`,
/// padded with zeros after its end to `kept`'s size (decoders stop at the
/// end of a JPEG): the same size, other bytes.
fn same_size_other_photo(dir: &Path, kept: &Path, gone: &Path) -> Vec<u8> {
    let size = |rel: &Path| std::fs::metadata(dir.join(rel)).unwrap().len();
    let kept_size = size(kept);
    let other = files_under(dir)
        .into_iter()
        .find(|rel| rel != kept && rel != gone && size(rel) < kept_size)
        .expect("a photo smaller than the kept one");
    let mut bytes = std::fs::read(dir.join(other)).unwrap();
    bytes.resize(kept_size as usize, 0);
    bytes
}

/// Corrections beside the photos: a second `--data` of class folders (one
/// label only, as a feedback prefix may be), merged by label; the summary
/// finds them by their sidecars and says how the model that answered them
/// and the new one do.
#[test]
fn corrections_merge_in_and_the_summary_reports_them() {
    let root = tmp("corrections");
    colour_dataset(&root.join("photos/train"), 12, 1);
    // Two "dogs" (bluish) that a model had called cat, as POST /feedback
    // stores them, and one without a sidecar (not a correction).
    let feedback = root.join("feedback");
    std::fs::create_dir_all(feedback.join("dog")).unwrap();
    for (i, rgb) in [[40u8, 50, 210], [50, 60, 190], [45, 45, 200]]
        .iter()
        .enumerate()
    {
        let png = solid(*rgb, 140, 150, ImageFormat::Png);
        std::fs::write(feedback.join(format!("dog/{i}.png")), png).unwrap();
        if i < 2 {
            let side = serde_json::json!({"label": "dog", "answered": "cat", "confidence": 0.7,
                "model": "catdog", "model_sha256": "ab".repeat(32), "time": "2026-12-07T05:00:00Z"});
            std::fs::write(feedback.join(format!("dog/{i}.json")), side.to_string()).unwrap();
        }
    }
    // A copy of a photo under its own label (kept once), and one under the
    // other label (people disagree: left out, both copies).
    let photos = root.join("photos/train");
    std::fs::create_dir_all(feedback.join("cat")).unwrap();
    std::fs::copy(
        photos.join("cat/cat000.png"),
        feedback.join("cat/again.png"),
    )
    .unwrap();
    std::fs::copy(
        photos.join("cat/cat001.png"),
        feedback.join("dog/disputed.png"),
    )
    .unwrap();
    let base = fixture("tiny_vgg.onnx");
    let out = root.join("m.onnx");
    let o = run(&[
        "finetune",
        "--base",
        base.to_str().unwrap(),
        "--data",
        root.join("photos").to_str().unwrap(),
        "--data",
        feedback.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "40",
        "--allow-weak",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        summary["train_images"].as_u64().unwrap() + summary["valid_images"].as_u64().unwrap(),
        26,
        "24 photos and 5 from the second source, less a copy and a disputed pair: {summary}"
    );
    assert_eq!(summary["duplicates"], 1, "{summary}");
    let disputed: Vec<&str> = summary["conflicting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(disputed.len(), 2, "{summary}");
    assert!(
        disputed.iter().any(|p| p.ends_with("dog/disputed.png")),
        "{summary}"
    );
    assert!(
        disputed.iter().any(|p| p.ends_with("cat/cat001.png")),
        "{summary}"
    );
    let c = &summary["corrections"];
    assert_eq!(c["pictures"], 2, "{summary}");
    assert_eq!(c["right_before"], 0, "{c}");
    assert_eq!(c["models"], serde_json::json!(["ab".repeat(32)]));
    let after = c["right_after"].as_u64().unwrap();
    assert_eq!(
        after + c["still_wrong"].as_array().unwrap().len() as u64,
        2,
        "{c}"
    );
    assert!(stderr.contains("2 corrected picture(s)"), "{stderr}");
    // Alone, a folder of one class is refused as before.
    let one = root.join("one");
    std::fs::create_dir_all(one.join("dog")).unwrap();
    std::fs::copy(feedback.join("dog/0.png"), one.join("dog/0.png")).unwrap();
    let o = run(&[
        "finetune",
        "--base",
        base.to_str().unwrap(),
        "--data",
        one.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs at least two class folders"));
    let _ = std::fs::remove_dir_all(&root);
}

/// The default rule keeps the user's photos unless they are clear
/// outliers, and names each it rejects; a person's correction of a
/// `neither` answer moves it. A photo of a goose (evidence 0.0019, under
/// the fence of the shared pets' evidence, about 0.004) filed as a cat:
/// without a sidecar it is an outlier the summary names; corrected (its
/// sidecar says the model answered `neither`), the threshold goes under it.
#[test]
fn the_rule_names_the_outliers_and_a_correction_of_neither_moves_it() {
    let Some(data) =
        shared_data("the_rule_names_the_outliers_and_a_correction_of_neither_moves_it")
    else {
        return;
    };
    let dir = tmp("neither-correction");
    let goose = data.join("neither/n01855672_goose.JPEG");
    let extra = dir.join("extra");
    std::fs::create_dir_all(extra.join("cat")).unwrap();
    std::fs::copy(&goose, extra.join("cat/goose.jpg")).unwrap();
    let finetune = |out: &str| {
        let mut args = mobilenet_args(&data, &dir.join(out));
        args.extend(
            [
                "--data",
                extra.to_str().unwrap(),
                "--mirror",
                "false",
                "--crop",
                "false",
            ]
            .map(String::from),
        );
        let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
        (summary, String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (summary, stderr) = finetune("outlier.onnx");
    let n = &summary["neither"];
    let named: Vec<&str> = n["rejected_photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(named.iter().any(|p| p.ends_with("goose.jpg")), "{n}");
    assert_eq!(
        n["photos_rejected"].as_u64().unwrap() as usize,
        named.len(),
        "{n}"
    );
    assert!(
        stderr.contains("answered `neither`: ") && stderr.contains("goose.jpg"),
        "{stderr}"
    );
    let outlier_below = n["below"].as_f64().unwrap();

    let side = serde_json::json!({"label": "cat", "answered": "neither", "confidence": 0.99,
        "model": "catdog", "model_sha256": null, "time": "2026-12-07T05:00:00Z"});
    std::fs::write(extra.join("cat/goose.json"), side.to_string()).unwrap();
    let (summary, _) = finetune("corrected.onnx");
    let n = &summary["neither"];
    let below = n["below"].as_f64().unwrap();
    assert!(below < outlier_below, "{below} !< {outlier_below}");
    assert!(
        !n["rejected_photos"].to_string().contains("goose.jpg"),
        "the corrected photo is kept: {n}"
    );
    assert_eq!(summary["corrections"]["pictures"], 1, "{summary}");
    assert_eq!(summary["corrections"]["right_before"], 0, "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}
