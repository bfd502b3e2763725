//! Every CPU the function can land on. The arm64 package (`ARCH=arm64 sam
//! build`: cargo-lambda's aarch64 build and PyPI's aarch64 ONNX Runtime) runs
//! under Debian's qemu-aarch64 in cargo-lambda's Lambda emulator, the model
//! on s3s-fs, and answers every event in `events/` as the x86_64 package
//! does. Both packages start and answer with the CPU lists of /sys hidden,
//! as on Lambda arm64, with as many threads as with them. The x86_64
//! package under `qemu-x86_64 -cpu Haswell` (AVX2, no VNNI: x86 Lambda's
//! CPUs) answers fp32 and recipe-int8 models as natively, and `/model` names
//! the u8s8 model that may saturate there.
//!
//! Emulating aarch64 here needs one adjustment the test makes itself: ONNX
//! Runtime's cpuinfo reads this machine's x86 `/proc/cpuinfo` and crashes,
//! so the arm64 package sees an ARM one (a Graviton2's), bind-mounted in a
//! mount namespace of its own (`unshare -m`; the test runs as root).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::package::{package_inputs, runs};
use crate::support::package_run::*;
use crate::support::*;

/// The tools these tests need beyond a package's: qemu and the aarch64
/// runtimes, for the other CPUs.
fn tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let tools = package_tools(test)?;
    if !runs(Path::new("qemu-aarch64"), &["--version"])
        || !runs(Path::new("qemu-x86_64"), &["--version"])
        || !Path::new(ARM_SYSROOT).join("lib/libstdc++.so.6").exists()
    {
        skip_or_fail(
            test,
            "qemu-user and the aarch64 C/C++ runtimes are not installed \
             (make test installs qemu-user, libc6-arm64-cross, libstdc++6-arm64-cross)",
        );
        return None;
    }
    Some(tools)
}

/// Whether Rust's aarch64 standard library is installed (cargo-lambda's
/// `--arm64` build needs it; `make test` adds it), or says why not.
fn aarch64_std(test: &str) -> bool {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let installed = out.is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.trim() == "aarch64-unknown-linux-gnu")
    });
    if !installed {
        skip_or_fail(
            test,
            "Rust's aarch64-unknown-linux-gnu standard library is not installed \
             (`rustup target add aarch64-unknown-linux-gnu`; make test runs it)",
        );
    }
    installed
}

/// Scores of one model on two CPUs: ONNX Runtime's float kernels differ
/// between NEON and AVX in summation order; 1e-4 is the bound.
const ACROSS_CPUS: f32 = 1e-4;

#[tokio::test(flavor = "multi_thread")]
async fn the_arm64_package_answers_every_event_as_the_x86_64_package_does() {
    const TEST: &str = "cpus::the_arm64_package_answers_every_event_as_the_x86_64_package_does";
    let Some((sam, cargo_lambda)) = tools(TEST) else {
        return;
    };
    let Some(data) = shared_data(TEST) else {
        return;
    };
    if !aarch64_std(TEST) {
        return;
    }
    let arm = Package::build(&sam, &cargo_lambda, "arm64", "events");
    let x86 = Package::build(&sam, &cargo_lambda, "x86_64", "events");

    let mobilenet = data.join("models/mobilenetv2-12-int8.onnx");
    let models = [
        (&TINY, fixture("tiny_torch_nchw.onnx")),
        (&MOBILENET, mobilenet),
    ];
    let Some((_s3, endpoint)) = s3_with_models(TEST, &models).await else {
        return;
    };
    let events = events();
    assert!(events.len() >= 7, "events/ holds {} events", events.len());
    put_event_photos(&endpoint, &events).await;
    let url_event = only(events.clone(), "function-url.json");

    for (model, events, what) in [
        (&TINY, &events, "tiny"),
        (&MOBILENET, &url_event, "mobilenetv2-int8"),
    ] {
        let mut runs = Vec::new();
        for pkg in [&x86, &arm] {
            let tag = format!("{}-{what}", pkg.arch);
            runs.push(run_with_records(pkg, &endpoint, model, events, &tag).await);
        }
        for (name, n, diff) in assert_runs_agree(what, &runs[0], &runs[1], ACROSS_CPUS) {
            eprintln!("{what} {name}: {n} prediction(s) alike, largest score difference {diff:e}");
        }
        let x_records = &runs[0].1;
        if what == "tiny" {
            // Every S3 event's object was classified and recorded.
            assert_eq!(x_records.len(), events.len() - 2, "{x_records:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn both_packages_start_and_answer_with_the_cpu_lists_hidden_as_on_lambda_arm64() {
    const TEST: &str =
        "cpus::both_packages_start_and_answer_with_the_cpu_lists_hidden_as_on_lambda_arm64";
    let Some((sam, cargo_lambda)) = tools(TEST) else {
        return;
    };
    if !aarch64_std(TEST) {
        return;
    }
    let models = [(&TINY, fixture("tiny_torch_nchw.onnx"))];
    let Some((_s3, endpoint)) = s3_with_models(TEST, &models).await else {
        return;
    };
    let event = only(events(), "function-url.json");
    for arch in ["x86_64", "arm64"] {
        let pkg = Package::build(&sam, &cargo_lambda, arch, "hidden");
        let seen = run(&pkg, &endpoint, &TINY, &event, false, "r-seen/").await;
        let hidden = run(&pkg, &endpoint, &TINY, &event, true, "r-hidden/").await;
        let (ps, ph) = (
            predictions(&seen.answers[0].1),
            predictions(&hidden.answers[0].1),
        );
        assert_eq!(
            hidden.answers[0].1["statusCode"], 200,
            "{arch} with the CPU lists hidden: {}\nlog:\n{}",
            hidden.answers[0].1, hidden.log
        );
        assert_same_predictions(&format!("{arch}, lists hidden"), &ps, &ph, 0.0);
        // ONNX Runtime's pool is as large as with the lists: one thread per
        // core this process may use, the caller's included (catdog sizes it
        // from the affinity mask, not from /sys; Lambda's mask is its vCPUs).
        assert!(
            !seen.possible.trim().is_empty(),
            "{arch}: {:?}",
            seen.possible
        );
        assert_eq!(hidden.possible, "", "{arch}: the list was not hidden");
        if arch == "arm64" {
            // ONNX Runtime's cpuinfo noticed, and went on.
            assert!(
                hidden
                    .log
                    .contains("Error in cpuinfo: failed to parse the list of possible processors"),
                "{}",
                hidden.log
            );
        }
        let cores = std::thread::available_parallelism().unwrap().get();
        for (run, what) in [(&seen, "seen"), (&hidden, "hidden")] {
            assert_eq!(
                run.threads,
                cores - 1,
                "{arch}, CPU lists {what}: {} ONNX Runtime pool threads for {cores} cores\nlog:\n{}",
                run.threads,
                run.log
            );
        }
        eprintln!(
            "{arch}: {} ONNX Runtime pool threads either way; cpuinfo said: {:?}",
            seen.threads,
            hidden
                .log
                .lines()
                .filter(|l| l.contains("cpuinfo"))
                .collect::<Vec<_>>()
        );
    }
}

/// Scores of one x86 binary on AVX-512/VNNI and on AVX2 kernels, for fp32
/// models and int8 ones made by models/quantize.py: room for the float
/// kernels' summation order (measured: equal bit for bit); 5000× below what
/// saturation did to the shared MobileNetV2 (0.51), 16× below the tiny
/// control's 0.0016.
const ACROSS_X86: f32 = 1e-4;

/// QEMU's Haswell: AVX2, no AVX-512, no VNNI, as published probes of x86
/// Lambda report its CPUs.
const LAMBDA_X86_CPU: &[&str] = &["qemu-x86_64", "-cpu", "Haswell"];

/// Whether this machine's CPU has VNNI (what `/model` must say natively).
fn host_has_vnni() -> bool {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    info.split_whitespace()
        .any(|f| f == "avx512_vnni" || f == "avx_vnni")
}

/// `GET /model` of `bootstrap serve` run by `prefix` (nothing: natively),
/// for the model file `model`.
async fn model_info(pkg: &Package, prefix: &[&str], model: &Path, env: &[(&str, &str)]) -> Value {
    let port = free_port();
    let _serve = Proc {
        child: pkg
            .under(prefix)
            .args(["serve", "--port", &port.to_string(), "--model"])
            .arg(model)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the packaged catdog serve"),
        name: format!("catdog serve {prefix:?}"),
    };
    let base = format!("http://127.0.0.1:{port}");
    wait_http(
        &format!("{base}/health"),
        None,
        std::time::Duration::from_secs(120),
    )
    .await;
    wait_ready(&base).await;
    reqwest::get(format!("{base}/model"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `bootstrap predict --json` of the package run by `prefix` (nothing:
/// natively): each photo's prediction, in order.
fn predict_with(
    pkg: &Package,
    prefix: &[&str],
    model: &Path,
    env: &[(&str, &str)],
    photos: &[PathBuf],
) -> Vec<(String, BTreeMap<String, f32>)> {
    let out = succeed(
        pkg.under(prefix)
            .args(["predict", "--json", "--model"])
            .arg(model)
            .args(photos)
            .envs(env.iter().copied()),
    );
    let preds: Vec<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .flat_map(|line| predictions(&serde_json::from_str(line).unwrap()))
        .collect();
    assert_eq!(preds.len(), photos.len(), "{prefix:?} {}", model.display());
    preds
}

#[tokio::test(flavor = "multi_thread")]
async fn the_x86_64_package_on_lambda_s_avx2_only_cpus_answers_as_here_and_names_the_risky_model() {
    const TEST: &str =
        "cpus::the_x86_64_package_on_lambda_s_avx2_only_cpus_answers_as_here_and_names_the_risky_model";
    let Some((sam, cargo_lambda)) = tools(TEST) else {
        return;
    };
    let Some(data) = shared_data(TEST) else {
        return;
    };
    let pkg = Package::build(&sam, &cargo_lambda, "x86_64", "haswell");
    let mut photos = Vec::new();
    for class in ["cat", "dog"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("catsdogs/test").join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        photos.extend(files.into_iter().take(3));
    }

    // The flat colours include blue, whose score the full-range control
    // below changes on this emulated CPU.
    for colour in ["red", "green", "blue"] {
        photos.push(fixtures().join("calib").join(format!("{colour}.png")));
    }
    let torch = [("MODEL_PREPROCESSING", "torch")];

    // fp32, and int8 made by models/quantize.py's recipe (7-bit weights):
    // the same labels and scores here and there.
    for (model, env) in [
        ("tiny_torch_nchw.onnx", &[][..]),
        ("tiny_vgg.onnx", &[][..]),
        ("tiny_vgg_recipe_int8.onnx", &[][..]),
        ("mobilenetv2_recipe_int8.onnx", &torch[..]),
    ] {
        let here = predict_with(&pkg, &[], &fixture(model), env, &photos);
        let there = predict_with(&pkg, LAMBDA_X86_CPU, &fixture(model), env, &photos);
        let diff = assert_same_predictions(&format!("{model}, Haswell"), &here, &there, ACROSS_X86);
        eprintln!("{model}: largest score difference on Haswell {diff:e}");
    }
    // The control: the same tiny VGG quantized with full 8-bit weights (the
    // recipe before) answers otherwise there, so the emulated CPU really
    // takes ONNX Runtime's saturating path and the equalities above mean
    // something.
    let control = fixture("tiny_vgg_fullrange_int8.onnx");
    let here = predict_with(&pkg, &[], &control, &[], &photos);
    let there = predict_with(&pkg, LAMBDA_X86_CPU, &control, &[], &photos);
    let largest = here
        .iter()
        .zip(&there)
        .flat_map(|((_, h), (_, t))| h.iter().map(|(k, v)| (v - t[k]).abs()))
        .fold(0f32, f32::max);
    eprintln!("tiny_vgg_fullrange_int8: largest score difference on Haswell {largest:e}");
    assert!(
        largest > ACROSS_X86,
        "the full-range int8 control answered alike on Haswell ({largest:e}): \
         is the emulated CPU still without VNNI?"
    );
    let recipe = model_info(
        &pkg,
        LAMBDA_X86_CPU,
        &fixture("tiny_vgg_recipe_int8.onnx"),
        &[],
    )
    .await;
    assert_eq!(recipe["int8"]["scheme"], "u8s8", "{recipe}");
    assert_eq!(recipe["int8"]["weights_within_7_bits"], true, "{recipe}");
    assert_eq!(recipe["int8"]["may_saturate"], false, "{recipe}");
    let full = model_info(&pkg, LAMBDA_X86_CPU, &control, &[]).await;
    assert_eq!(full["int8"]["may_saturate"], true, "{full}");

    // A u8s8 model with 8-bit weights (the shared MobileNetV2 int8): said
    // at load where it may saturate, and only there.
    let shared = data.join("models/mobilenetv2-12-int8.onnx");
    let native = model_info(&pkg, &[], &shared, &torch).await;
    let haswell = model_info(&pkg, LAMBDA_X86_CPU, &shared, &torch).await;
    for info in [&native, &haswell] {
        assert_eq!(info["int8"]["scheme"], "u8s8", "{info}");
        assert_eq!(info["int8"]["weights_within_7_bits"], false, "{info}");
    }
    let vnni = host_has_vnni();
    assert_eq!(native["int8"]["cpu_vnni"], vnni, "{native}");
    assert_eq!(native["int8"]["may_saturate"], !vnni, "{native}");
    assert_eq!(haswell["int8"]["cpu_vnni"], false, "{haswell}");
    assert_eq!(haswell["int8"]["may_saturate"], true, "{haswell}");
    // A float model has nothing to say.
    let fp32 = model_info(&pkg, LAMBDA_X86_CPU, &fixture("tiny_vgg.onnx"), &[]).await;
    assert!(fp32.get("int8").is_none(), "{fp32}");
}

/// What keys the shared packages ([`shared_package`]): the sources, the
/// locks and build files `sam build` reads, the toolchain and the
/// architecture; not the tests, which a package is not built from (an edit
/// to a test reuses the arm64 package; an edit to the code builds a new one).
#[test]
fn the_shared_packages_are_keyed_by_what_the_build_reads() {
    const TEST: &str = "cpus::the_shared_packages_are_keyed_by_what_the_build_reads";
    let cargo_lambda = crate::support::emulator::cargo_lambda();
    if !runs(&cargo_lambda, &["lambda", "--version"]) {
        return skip_or_fail(
            TEST,
            "cargo-lambda is not installed (make test installs it)",
        );
    }
    let inputs = package_inputs(&cargo_lambda, "arm64")
        .expect("a git checkout with rustc and cargo: the package inputs");
    let names = |bytes: &[u8]| -> Vec<String> {
        bytes
            .split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    let listed = names(&inputs);
    let has = |name: &str| listed.iter().any(|n| n == name);
    for read in [
        "Cargo.lock",
        "Cargo.toml",
        "function/Cargo.toml",
        "function/src/lib.rs",
        "function/assets/index.html",
        "resize/Cargo.toml",
        "tests/Cargo.toml",
        "Makefile",
        "template.yaml",
        "samconfig.toml",
        "scripts/setup.sh",
        "scripts/tools.sh",
        "tools/python/onnxruntime.txt",
        "tools/python/tests.txt",
    ] {
        assert!(has(read), "{read} is not among the package's inputs");
    }
    for not_read in [
        "tests/it/cpus.rs",
        "tests/it/main.rs",
        "bench/run.py",
        "README.md",
        "docs/api.md",
        "notebook/catdog.ipynb",
        "events/s3-put.json",
        ".config/nextest.toml",
        "Dockerfile",
        "scripts/image.sh",
        "scripts/test.sh",
    ] {
        assert!(!has(not_read), "{not_read} is among the package's inputs");
    }
    assert!(
        listed.iter().any(|l| l.contains("rustc ")),
        "the toolchain's version is among the inputs"
    );
    // The same checkout gives the same inputs; the other architecture others.
    assert!(package_inputs(&cargo_lambda, "arm64").unwrap() == inputs);
    assert!(package_inputs(&cargo_lambda, "x86_64").unwrap() != inputs);
}
