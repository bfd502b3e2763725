//! The container image (`make image`: scripts/image.sh, umoci, no container
//! engine). Built from the zip package `sam build` makes, unpacked as an OCI
//! runtime would (`umoci unpack`), its entrypoint run chrooted in its own
//! root filesystem: it answers every event of `events/` as the zip package
//! does, in cargo-lambda's emulator against the model on s3s-fs. An image
//! with the model inside goes through SnapStart's lifecycle on the stand-in
//! Runtime API and answers from the model it carries, with no S3 at all.
//! The Dockerfile for users with Docker says what the image says. The
//! script reads paths from the caller's folder and refuses bad arguments
//! (status 2) before it installs or replaces anything.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::lambda_api::*;
use crate::support::package::{runs, target_dir};
use crate::support::package_run::*;
use crate::support::*;

/// The label that lets Lambda publish a SnapStart version of an image whose
/// runtime may not call `/restore/next` itself.
const SNAPSTART_LABEL: (&str, &str) = ("com.amazonaws.lambda.feature.snapstart", "Allow");

/// Besides what any package run takes, umoci, which builds the image.
fn tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let tools = package_tools(test)?;
    if !runs(Path::new("umoci"), &["--version"]) {
        skip_or_fail(test, "umoci is not installed (make test installs it)");
        return None;
    }
    Some(tools)
}

/// `scripts/image.sh` over the package `pkg` (and `model` inside, checked
/// against its digest), into `out`; then the image unpacked into `out/bundle`.
fn build_image(pkg: &Package, out: &Path, model: Option<(&Path, &str)>) -> (PathBuf, Package) {
    let _ = std::fs::remove_dir_all(out);
    let built = succeed(&mut image_sh(pkg, out, model));
    let reference = String::from_utf8(built.stdout).unwrap();
    assert_eq!(reference.trim(), format!("{}/oci:catdog", out.display()));
    let bundle = out.join("bundle");
    succeed(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(reference.trim())
            .arg(&bundle),
    );
    (out.join("oci"), Package::from_image(pkg.arch, &bundle))
}

/// `scripts/image.sh` over `pkg` into `out`, with `model` and the digest
/// it is said to have.
fn image_sh(pkg: &Package, out: &Path, model: Option<(&Path, &str)>) -> Command {
    let mut cmd = Command::new(workspace().join("scripts/image.sh"));
    cmd.arg("--package")
        .arg(&pkg.dir)
        .arg("--out")
        .arg(out)
        .args(["--arch", pkg.arch]);
    if let Some((file, sha)) = model {
        cmd.arg("--model").arg(file).args(["--model-sha256", sha]);
    }
    cmd
}

/// A blob of an OCI layout, by its digest (`sha256:…`), as JSON.
fn blob(layout: &Path, digest: &Value) -> Value {
    let hex = digest.as_str().unwrap().strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// The image configuration of the layout's `catdog` tag.
fn image_config(layout: &Path) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let tagged = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "catdog")
        .unwrap_or_else(|| panic!("no catdog tag in {index}"));
    let manifest = blob(layout, &tagged["digest"]);
    blob(layout, &manifest["config"]["digest"])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_answers_every_event_as_the_zip_package_does() {
    const TEST: &str = "image::the_image_answers_every_event_as_the_zip_package_does";
    let Some((sam, cargo_lambda)) = tools(TEST) else {
        return;
    };
    let zip = Package::build(&sam, &cargo_lambda, "x86_64", "image");
    let out = target_dir().join(format!("image-test-{}", std::process::id()));
    let (layout, image) = build_image(&zip, &out.join("plain"), None);

    // What Lambda reads of the image: the label, the entrypoint, the CPU.
    let config = image_config(&layout);
    assert_eq!(config["architecture"], "amd64", "{config}");
    assert_eq!(config["os"], "linux", "{config}");
    let (label, value) = SNAPSTART_LABEL;
    assert_eq!(config["config"]["Labels"][label], value, "{config}");
    assert_eq!(
        config["config"]["Entrypoint"],
        json!(["/var/runtime/bootstrap"])
    );
    // The zip's two files, byte for byte, and the runtimes they need.
    for (inside, from) in [
        ("/var/runtime/bootstrap", zip.bootstrap()),
        (
            &format!(
                "/var/runtime/{}",
                zip.library().file_name().unwrap().to_str().unwrap()
            )[..],
            zip.library(),
        ),
    ] {
        let got = std::fs::read(image.image.as_ref().unwrap().path(inside)).unwrap();
        assert!(got == std::fs::read(&from).unwrap(), "{inside} differs");
    }
    let root = &image.image.as_ref().unwrap().root;
    let certs = std::fs::read_to_string(root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(
        certs.matches("BEGIN CERTIFICATE").count() > 100,
        "the CA bundle the AWS SDK's TLS reads"
    );

    let models = [(&TINY, fixture("tiny_torch_nchw.onnx"))];
    let Some((_s3, endpoint)) = s3_with_models(TEST, &models).await else {
        return;
    };
    let events = events();
    assert!(events.len() >= 7, "events/ holds {} events", events.len());
    put_event_photos(&endpoint, &events).await;
    let zipped = run_with_records(&zip, &endpoint, &TINY, &events, "zip").await;
    let imaged = run_with_records(&image, &endpoint, &TINY, &events, "image").await;
    // The image's bootstrap ran in the image's root, with its libraries.
    assert_eq!(zipped.0.root, Path::new("/"));
    assert_eq!(imaged.0.root, image.image.as_ref().unwrap().root);
    // The same binary and library on the same CPU: the same numbers.
    assert_runs_agree("image", &zipped, &imaged, 0.0);
    assert_eq!(zipped.1.len(), events.len() - 2, "{:?}", zipped.1);
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_with_the_model_inside_restores_and_answers_without_s3() {
    const TEST: &str = "image::an_image_with_the_model_inside_restores_and_answers_without_s3";
    let Some((sam, cargo_lambda)) = tools(TEST) else {
        return;
    };
    let zip = Package::build(&sam, &cargo_lambda, "x86_64", "image-model");
    let model = fixture("tiny_torch_nchw.onnx");
    let sha = catdog::model::source::sha256_hex(&std::fs::read(&model).unwrap());
    let out = target_dir().join(format!("image-model-test-{}", std::process::id()));
    // A digest that is not the model's is refused before anything is built.
    let wrong = image_sh(&zip, &out, Some((&model, &"0".repeat(64))))
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(said.contains("is not the digest of"), "{said}");
    let (_, image) = build_image(&zip, &out, Some((&model, &sha)));
    let inside = image.image.as_ref().unwrap();
    assert!(
        inside.env.contains(&("MODEL_SHA256".into(), sha.clone())),
        "{:?}",
        inside.env
    );
    assert!(
        inside
            .env
            .contains(&("MODEL_URI".into(), "/opt/catdog/model.onnx".into())),
        "{:?}",
        inside.env
    );

    // SnapStart, and no S3 anywhere: an endpoint nothing listens on.
    let mut harness = Harness::start().await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let env: Vec<(String, String)> = [
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start"),
        ("AWS_ENDPOINT_URL_S3", closed.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIAIMAGETEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret-of-the-test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let scratch = out.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut cmd = image.command(&scratch, false);
    cmd.env_clear().envs(image.image_env());
    let mut boot = harness.bootstrap_command(cmd, &env, Stdio::null());
    harness.snapshotted().await;
    harness.restore();
    let red = std::fs::read(fixture("images/red.png")).unwrap();
    let reply = harness
        .invoke(
            "r1",
            with_body(event("function-url.json"), &red, "image/png"),
        )
        .await;
    let (status, body) = http_of(reply, "r1");
    let _ = boot.child.kill();
    let log = boot.child.wait_with_output_ref();
    // Nothing of the model went through the image's /tmp.
    let tmp: Vec<_> = std::fs::read_dir(inside.path("/tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    assert_eq!(status, 200, "{body}\nlog:\n{log}");
    // A local file is named by its file name alone (no paths in answers).
    assert_eq!(body["model"]["uri"], "model.onnx", "{body}");
    assert_eq!(body["model"]["sha256"], sha.as_str(), "{body}");
    assert!(body["label"].is_string(), "{body}");
    let _ = std::fs::remove_dir_all(&out);
}

/// Users with Docker build the same image on AWS's provided.al2023 base:
/// the Dockerfile copies what `make image` packs, from where it puts it, to
/// the folder the image's entrypoint is in, and carries the image's labels.
#[tokio::test(flavor = "multi_thread")]
async fn the_dockerfile_builds_what_make_image_makes_on_provided_al2023() {
    const TEST: &str = "image::the_dockerfile_builds_what_make_image_makes_on_provided_al2023";
    let Some((sam, cargo_lambda)) = tools(TEST) else {
        return;
    };
    let zip = Package::build(&sam, &cargo_lambda, "x86_64", "image-docker");
    let out = target_dir().join(format!("image-docker-test-{}", std::process::id()));
    let (layout, image) = build_image(&zip, &out, None);
    let config = image_config(&layout)["config"].clone();

    let dockerfile = std::fs::read_to_string(workspace().join("Dockerfile")).unwrap();
    let instructions: Vec<(&str, &str)> = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(' '))
        .collect();
    let all = |word: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(w, _)| *w == word)
            .map(|(_, rest)| rest.trim())
            .collect()
    };
    assert_eq!(all("FROM"), ["public.ecr.aws/lambda/provided:al2023"]);
    let labels: Vec<String> = config["Labels"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("com.amazonaws.lambda."))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(all("LABEL"), labels, "{config}");
    // The base image's entrypoint runs /var/runtime/bootstrap with the
    // handler as its argument; ours is that file.
    assert_eq!(all("CMD"), ["[\"bootstrap\"]"]);
    assert_eq!(config["Entrypoint"], json!(["/var/runtime/bootstrap"]));
    let package = all("ARG")
        .iter()
        .find_map(|a| a.strip_prefix("PACKAGE="))
        .expect("ARG PACKAGE=… names the package folder")
        .to_string();
    // Where `make image` (no --out) puts the package.
    let made = succeed(
        Command::new(workspace().join("scripts/image.sh"))
            .args(["--arch", "x86_64", "--where"])
            .current_dir(workspace()),
    );
    let default_out = String::from_utf8(made.stdout).unwrap();
    assert_eq!(format!("{}/package", default_out.trim()), package);
    // ... a copy of the package the image holds, whichever went in.
    for file in [zip.bootstrap(), zip.library()] {
        let copied = out.join("package").join(file.file_name().unwrap());
        assert!(
            std::fs::read(&copied).unwrap() == std::fs::read(&file).unwrap(),
            "{copied:?}"
        );
    }
    let copy = all("COPY");
    assert_eq!(copy.len(), 1, "{copy:?}");
    let (sources, target) = copy[0].rsplit_once(' ').unwrap();
    assert_eq!(target, "/var/runtime/");
    // Every file of the image's /var/runtime comes from the package.
    let runtime: Vec<String> = std::fs::read_dir(image.image.as_ref().unwrap().path(target))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for file in &runtime {
        let copied = sources.split_whitespace().any(|pattern| {
            let pattern = pattern.replace("${PACKAGE}/", "");
            match pattern.strip_suffix('*') {
                Some(prefix) => file.starts_with(prefix),
                None => *file == pattern,
            }
        });
        assert!(
            copied,
            "{file} of the image is not in the Dockerfile's COPY {sources}"
        );
    }
    let ignore = std::fs::read_to_string(workspace().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "!target/image/*/package/"),
        "the build context is the package alone: {ignore}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// `scripts/image.sh` run from `dir` with `args`, expected to refuse them
/// (exit status 2, as for any usage error); what it said.
fn refused(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(workspace().join("scripts/image.sh"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
    said
}

#[test]
fn the_script_reads_paths_from_the_callers_folder_and_refuses_before_it_replaces() {
    let caller = target_dir().join(format!("image-args-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&caller);
    std::fs::create_dir_all(caller.join("out/package")).unwrap();

    // A flag without its value says which value it needs.
    for (args, needs) in [
        (&["--arch"][..], "--arch needs x86_64 or arm64"),
        (&["--arch", "--where"][..], "--arch needs x86_64 or arm64"),
        (&["--package"][..], "--package needs a folder"),
        (&["--out", "--arch", "x86_64"][..], "--out needs a folder"),
    ] {
        let said = refused(&caller, args);
        assert!(said.contains(needs), "{args:?}: {said}");
    }

    // Relative paths are the caller's: --out, --where ...
    let made = succeed(
        Command::new(workspace().join("scripts/image.sh"))
            .args(["--out", "out", "--where"])
            .current_dir(&caller),
    );
    let said_out = String::from_utf8(made.stdout).unwrap();
    assert_eq!(Path::new(said_out.trim()), caller.join("out"));
    // ... and --model: the file in the caller's folder is found and read.
    std::fs::write(caller.join("m.onnx"), b"not a model, but a file").unwrap();
    let zeros = "0".repeat(64);
    let said = refused(&caller, &["--model", "m.onnx", "--model-sha256", &zeros]);
    let expected = format!("is not the digest of {}", caller.join("m.onnx").display());
    assert!(said.contains(&expected), "{said}");

    // A package without a bootstrap is refused before OUT's package is
    // replaced with it.
    let kept = caller.join("out/package/bootstrap");
    std::fs::write(&kept, b"the package OUT held").unwrap();
    std::fs::create_dir_all(caller.join("empty")).unwrap();
    let said = refused(&caller, &["--package", "empty", "--out", "out"]);
    assert!(
        said.contains(&format!(
            "{} must hold an executable bootstrap",
            caller.join("empty").display()
        )),
        "{said}"
    );
    assert_eq!(std::fs::read(&kept).unwrap(), b"the package OUT held");
    let said = refused(&caller, &["--package", "nowhere"]);
    assert!(said.contains("no such folder"), "{said}");
    let _ = std::fs::remove_dir_all(&caller);
}
