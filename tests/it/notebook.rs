//! The evcxr notebook, executed headless by Jupyter (`nbconvert --execute`)
//! with the Rust kernel, in local mode with a tiny model: its printed and HTML
//! outputs must hold the answers `catdog predict` gives for the same files,
//! its server must answer a real request, and its last cell must close it.
//!
//! Needs Jupyter and the evcxr kernel (`scripts/setup_notebook.sh`, run by
//! `make test`): without them the test fails, unless the run allows skips
//! (`CATDOG_ALLOW_SKIPS=1`, then it is skipped and listed) and
//! CATDOG_REQUIRE_NOTEBOOK=1 (set by `make test`, which installs them) is not
//! set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use serde_json::Value;

#[track_caller]
fn jupyter() -> Option<PathBuf> {
    let found = std::env::var_os("CATDOG_JUPYTER")
        .map(PathBuf::from)
        .filter(|p| p.exists());
    // `make test` installs the tools, so there a missing Jupyter is a broken
    // setup, never a skip, even where the run allows skips.
    let required = std::env::var("CATDOG_REQUIRE_NOTEBOOK").is_ok_and(|v| v == "1");
    if found.is_none() {
        let test = "the_notebook_runs_headless_and_shows_the_same_answers_as_the_cli";
        let reason = "Jupyter + evcxr not set up: CATDOG_JUPYTER is not set to a jupyter \
                      executable (scripts/setup_notebook.sh installs them; make test runs it)";
        if required {
            panic!("{test}: CATDOG_REQUIRE_NOTEBOOK=1 but {reason}");
        }
        skip_or_fail(test, reason);
    }
    found
}

/// All text a cell printed or displayed, by output kind.
fn outputs(cell: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for o in cell["outputs"].as_array().into_iter().flatten() {
        let kind = o["output_type"].as_str().unwrap_or("").to_string();
        let join = |v: &Value| match v {
            Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect::<String>(),
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        match kind.as_str() {
            "stream" => out.push((
                format!("stream:{}", o["name"].as_str().unwrap_or("")),
                join(&o["text"]),
            )),
            "display_data" | "execute_result" => {
                for (mime, v) in o["data"].as_object().into_iter().flatten() {
                    out.push((mime.clone(), join(v)));
                }
            }
            "error" => out.push((
                "error".into(),
                format!(
                    "{}: {}\n{}",
                    join(&o["ename"]),
                    join(&o["evalue"]),
                    join(&o["traceback"])
                ),
            )),
            _ => {}
        }
    }
    out
}

/// `catdog predict --json` over the same files: file name → (label, confidence).
fn reference(model: &Path, dir: &Path) -> BTreeMap<String, (String, f64)> {
    let out = Command::new(catdog_bin())
        .args(["predict", "--json", "--model"])
        .arg(model)
        .arg(dir)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let file = PathBuf::from(v["file"].as_str().unwrap());
            (
                file.file_name().unwrap().to_string_lossy().into_owned(),
                (
                    v["label"].as_str().unwrap().to_string(),
                    v["confidence"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

/// The API key the notebook's server is started with.
const NOTEBOOK_KEY: &str = "notebook-key-0123456789";

#[test]
fn the_notebook_runs_headless_and_shows_the_same_answers_as_the_cli() {
    let Some(jupyter) = jupyter() else { return };
    let work = std::env::temp_dir().join(format!("catdog-notebook-{}", std::process::id()));
    let photos = work.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::copy(fixture("images/red.jpg"), photos.join("red.jpg")).unwrap();
    std::fs::copy(fixture("images/blue.png"), photos.join("blue.png")).unwrap();
    std::fs::copy(fixture("images/text.jpg"), photos.join("notes.jpg")).unwrap();
    let mut real = Vec::new();
    if let Some(data) = shared_data("notebook (real photos)") {
        for class in ["cat", "dog"] {
            let dir = data.join("catsdogs/test").join(class);
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            let name = format!(
                "{class}_{}",
                files[0].file_name().unwrap().to_string_lossy()
            );
            std::fs::copy(&files[0], photos.join(&name)).unwrap();
            real.push(name);
        }
    }
    let model = fixture("tiny_torch_nchw.onnx");
    let expected = reference(&model, &photos);
    assert_eq!(expected["red.jpg"].0, "cat");
    assert_eq!(expected["blue.png"].0, "dog");

    let notebook_dir = workspace().join("notebook");
    let status = Command::new(&jupyter)
        .args([
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--ExecutePreprocessor.kernel_name=rust",
            "--ExecutePreprocessor.timeout=1800",
            "--output-dir",
        ])
        .arg(&work)
        .args(["--output", "executed.ipynb", "catdog.ipynb"])
        .current_dir(&notebook_dir)
        .env("MODEL_URI", &model)
        .env("CATDOG_PHOTOS", &photos)
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("CATDOG_API_KEY", NOTEBOOK_KEY)
        .env_remove("NGROK_AUTHTOKEN")
        .env_remove("MODEL_SHA256")
        .env_remove("MODEL_LABELS")
        .env_remove("MODEL_PREPROCESSING")
        .status()
        .unwrap();
    assert!(status.success(), "nbconvert failed");
    let executed: Value =
        serde_json::from_slice(&std::fs::read(work.join("executed.ipynb")).unwrap()).unwrap();

    let code_cells: Vec<&Value> = executed["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["cell_type"] == "code")
        .collect();
    let mut all: Vec<(String, String)> = Vec::new();
    for c in &code_cells {
        assert!(
            c["execution_count"].is_number(),
            "a code cell did not run: {}",
            c["source"]
        );
        all.extend(outputs(c));
    }
    if let Some((_, e)) = all.iter().find(|(k, _)| k == "error") {
        panic!("the notebook raised an error: {e}");
    }
    let stdout: String = all
        .iter()
        .filter(|(k, _)| k == "stream:stdout")
        .map(|(_, t)| t.as_str())
        .collect();
    let html: String = all
        .iter()
        .filter(|(k, _)| k == "text/html")
        .map(|(_, t)| t.as_str())
        .collect();

    // The model cell names the model it loaded.
    assert!(
        stdout.contains("ready: ") && stdout.contains("[\"cat\", \"dog\"]"),
        "{stdout}"
    );

    // One text line per file, the same label and confidence as `catdog predict`.
    for (name, (label, conf)) in &expected {
        let line = format!("{name} → {label} ({conf:.4})");
        assert!(stdout.contains(&line), "missing {line:?} in:\n{stdout}");
    }
    assert!(stdout.contains("notes.jpg → skipped:"), "{stdout}");
    assert_eq!(expected.len(), 2 + real.len());

    // One card per picture with a thumbnail, its label and a bar per class.
    assert_eq!(
        html.matches("data:image/jpeg;base64,").count(),
        expected.len(),
        "{html}"
    );
    for (label, _) in expected.values() {
        assert!(html.contains(&format!("data-label=\"{label}\"")));
    }
    assert_eq!(html.matches("catdog-bar").count(), 2 * expected.len());
    assert!(
        html.contains("Upload page: <a href=\"http://127.0.0.1:"),
        "{html}"
    );

    // The notebook's server is the serve host, with its access settings: no key, no answer.
    assert!(
        stdout.contains("GET /model without the key -> 401"),
        "{stdout}"
    );
    assert!(!stdout.contains(NOTEBOOK_KEY), "the key is never printed");

    // The background server answered a real POST /predict (with the key) for the first file (blue.png).
    let post = stdout
        .lines()
        .find(|l| l.starts_with("POST /predict blue.png -> 200 "))
        .unwrap_or_else(|| panic!("no answer from the served router in:\n{stdout}"));
    let body: Value = serde_json::from_str(post.split_once(" -> 200 ").unwrap().1).unwrap();
    assert_eq!(body["label"], "dog", "{body}");
    let served = body["confidence"].as_f64().unwrap();
    assert!((served - expected["blue.png"].1).abs() < 1e-6, "{served}");

    // Local mode, said plainly; the last cell closed the port.
    assert!(stdout.contains(
        "NGROK_AUTHTOKEN is not set: no public URL; the upload page is at http://127.0.0.1:"
    ));
    let stopped = stdout
        .lines()
        .find(|l| l.starts_with("stopped: "))
        .unwrap_or_else(|| panic!("the last cell did not report:\n{stdout}"));
    assert!(stopped.ends_with("closed = true"), "{stopped}");
    let _ = std::fs::remove_dir_all(&work);
}
