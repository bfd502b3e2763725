//! Finding and loading the ONNX Runtime shared library.
//!
//! `ort` is built with `load-dynamic`: nothing is downloaded at build time and
//! the library is found at run time, in this order: `--ort-lib` /
//! `ORT_DYLIB_PATH`, then next to the executable (how the Lambda zip carries
//! it), then `lib/` beside it. Without one, the error says how to get it
//! instead of `ort` panicking inside `dlopen`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Why ONNX Runtime could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "the ONNX Runtime library was not found: set ORT_DYLIB_PATH to libonnxruntime.so \
         (run `make setup`, which takes it from PyPI's onnxruntime wheel) or put it next to the catdog binary"
    )]
    NotFound,
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    Load { path: PathBuf, message: String },
}

static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
static LIB_PATH: OnceLock<PathBuf> = OnceLock::new();

/// Locates the shared library (see the module docs for the search order).
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    for dir in exe_dir.iter().flat_map(|d| [d.clone(), d.join("lib")]) {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libonnxruntime.so"))
                })
                .collect();
            found.sort();
            if let Some(p) = found.pop() {
                return Ok(p);
            }
        }
    }
    Err(RuntimeError::NotFound)
}

/// The process-wide ONNX Runtime environment, loading the library on first use.
pub fn environment(
    explicit: Option<&Path>,
) -> Result<&'static ort::environment::Environment, RuntimeError> {
    if ENV.get().is_none() {
        let path = find_library(explicit)?;
        if !path.exists() {
            return Err(RuntimeError::Load {
                path,
                message: "no such file".into(),
            });
        }
        let env = ort::init_from(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| b.with_name("catdog").build().map_err(|e| e.to_string()));
        let _ = LIB_PATH.set(path);
        let _ = ENV.set(env);
    }
    match ENV.get().expect("set above") {
        Ok(env) => Ok(env),
        Err(message) => Err(RuntimeError::Load {
            path: LIB_PATH.get().cloned().unwrap_or_default(),
            message: message.clone(),
        }),
    }
}
