//! Finding and loading the ONNX Runtime shared library.
//!
//! `ort` is built with `load-dynamic`: nothing is downloaded at build time and
//! the library is found at run time, in this order: `--ort-lib` /
//! `ORT_DYLIB_PATH`; next to the executable (how the Lambda zip carries it);
//! `lib/` beside it; `../lib/catdog/` (where `make install` puts it); then
//! catdog's cache, where `make setup` puts it (`onnxruntime-*/`). Without
//! one, the error says how to get it instead of `ort` panicking inside `dlopen`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Why ONNX Runtime could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "the ONNX Runtime library was not found: run `make setup` (it takes it from PyPI's onnxruntime wheel \
         into catdog's cache), or set ORT_DYLIB_PATH / --ort-lib to libonnxruntime.so, or put it next to the catdog binary"
    )]
    NotFound,
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    Load { path: PathBuf, message: String },
}

static ENV: OnceLock<Result<ort::environment::Environment, LoadFailure>> = OnceLock::new();

/// Why ONNX Runtime could not be loaded, as the first try found.
#[derive(Debug, Clone)]
struct LoadFailure(String);
static LIB_PATH: OnceLock<PathBuf> = OnceLock::new();

/// Locates the shared library (see the module docs for the search order).
pub(crate) fn find_library(
    explicit: Option<&Path>,
    cache_dir: &Path,
) -> Result<PathBuf, RuntimeError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    let mut folders: Vec<PathBuf> = exe_dir
        .iter()
        .flat_map(|d| [d.clone(), d.join("lib"), d.join("../lib/catdog")])
        .collect();
    // The cache holds one folder per version (`onnxruntime-1.31.1`): the
    // newest version wins; other names (another CPU's library) are not ours.
    let mut cached: Vec<(Vec<u64>, PathBuf)> =
        library_files(cache_dir, |n| version_of(n).is_some(), true)
            .into_iter()
            .filter_map(|p| Some((version_of(p.file_name()?.to_str()?)?, p)))
            .collect();
    cached.sort();
    folders.extend(cached.into_iter().rev().map(|(_, p)| p));
    folders
        .iter()
        .find_map(|dir| {
            let mut found = library_files(dir, |n| n.starts_with("libonnxruntime.so"), false);
            found.sort();
            found.pop()
        })
        .ok_or(RuntimeError::NotFound)
}

/// The version of a cache folder named `onnxruntime-<numbers and dots>`.
fn version_of(name: &str) -> Option<Vec<u64>> {
    let v = name.strip_prefix("onnxruntime-")?;
    v.split('.').map(|n| n.parse::<u64>().ok()).collect()
}

/// Entries of `dir` whose names pass `keep` (folders or files).
fn library_files(dir: &Path, keep: impl Fn(&str) -> bool, folders: bool) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir() == folders)
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&keep))
                .collect()
        })
        .unwrap_or_default()
}

/// The process-wide ONNX Runtime environment, loading the library on first use.
pub(crate) fn environment(
    explicit: Option<&Path>,
    cache_dir: &Path,
) -> Result<&'static ort::environment::Environment, RuntimeError> {
    if ENV.get().is_none() {
        let path = find_library(explicit, cache_dir)?;
        if !path.exists() {
            return Err(RuntimeError::Load {
                path,
                message: "no such file".into(),
            });
        }
        // Kept as its message: an ONNX Runtime error is no Clone, and every
        // later call reports the same failure.
        let env = ort::init_from(&path)
            .map_err(|e| LoadFailure(e.to_string()))
            .and_then(|b| {
                let built = b.with_name("catdog").build();
                built.map_err(|e| LoadFailure(e.to_string()))
            });
        let _ = LIB_PATH.set(path);
        let _ = ENV.set(env);
    }
    match ENV.get().expect("set above") {
        Ok(env) => Ok(env),
        Err(LoadFailure(message)) => Err(RuntimeError::Load {
            path: LIB_PATH.get().cloned().unwrap_or_default(),
            message: message.clone(),
        }),
    }
}

#[cfg(test)]
// Unit tests make scratch folders in the system's temporary folder; the
// rule that only settings reads the environment is for the running code.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_library_in_the_cache_is_found() {
        let cache = std::env::temp_dir().join(format!("catdog-rt-{}", std::process::id()));
        // 1.9.0 sorts after 1.31.1 as text; another CPU's folder is not ours.
        for v in ["1.9.0", "1.31.1", "1.30.0", "1.31.1-aarch64"] {
            let dir = cache.join(format!("onnxruntime-{v}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("libonnxruntime.so.{v}")), b"").unwrap();
        }
        std::fs::create_dir_all(cache.join("models")).unwrap();
        let found = find_library(None, &cache).unwrap();
        assert!(
            found.ends_with("onnxruntime-1.31.1/libonnxruntime.so.1.31.1"),
            "{}",
            found.display()
        );
        let explicit = Path::new("/x/libonnxruntime.so");
        assert_eq!(find_library(Some(explicit), &cache).unwrap(), explicit);
        assert!(matches!(
            find_library(None, &cache.join("none")),
            Err(RuntimeError::NotFound)
        ));
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
