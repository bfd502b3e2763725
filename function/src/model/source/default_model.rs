//! The model used when none is given: the ONNX Model Zoo's ImageNet VGG16,
//! downloaded once into catdog's cache and verified by its known digest.

use std::path::{Path, PathBuf};

use super::digest::verify_sha256;
use super::error::SourceError;
use super::http;
use super::uri::ModelUri;

/// The stock ImageNet VGG16 from the ONNX Model Zoo (opset 7), used when no model is given.
pub(crate) const DEFAULT_MODEL_URL: &str =
    "https://github.com/onnx/models/raw/main/validated/vision/classification/vgg/model/vgg16-7.onnx";
/// Size of [`DEFAULT_MODEL_URL`] in bytes.
pub(crate) const DEFAULT_MODEL_SIZE: u64 = 553_437_328;
/// SHA-256 of [`DEFAULT_MODEL_URL`].
pub(crate) const DEFAULT_MODEL_SHA256: &str =
    "f20805a3ecccaa88647bbab4ad011ff2412a9838485ea844de0fcbce349820b9";

/// The default VGG16's file in `cache`, and whether it looks whole (right size;
/// its digest is checked while it loads).
pub(crate) fn cached_default(cache: &Path) -> (PathBuf, bool) {
    let file = cache.join("vgg16-7.onnx");
    let whole = std::fs::metadata(&file).is_ok_and(|m| m.len() == DEFAULT_MODEL_SIZE);
    (file, whole)
}

/// Downloads the default VGG16 once from `url` (a mirror may be given) into
/// `cache`, hashing it as it arrives: written to a `.part` file, renamed
/// into place only when its SHA-256 is the known one.
pub(crate) async fn download_default(url: &str, cache: &Path) -> Result<PathBuf, SourceError> {
    let (file, _) = cached_default(cache);
    let uri: ModelUri = url.parse()?;
    let shown = uri.to_string();
    let ModelUri::Http(url) = &uri else {
        return Err(SourceError::InvalidUri(format!(
            "{shown} (the default model's mirror must be http(s))"
        )));
    };
    tracing::info!(url = %uri, "downloading the default model (ImageNet VGG16, 553 MB) once");
    let cache_err = |error| SourceError::Cache {
        path: file.clone(),
        error,
    };
    std::fs::create_dir_all(cache).map_err(cache_err)?;
    let part = file.with_extension("onnx.part");
    let out = std::fs::File::create(&part).map_err(cache_err)?;
    let verified = async {
        let (out, sha256) = http::download_into(url, &shown, out, cache_err).await?;
        out.sync_all().map_err(cache_err)?;
        verify_sha256(&shown, Some(DEFAULT_MODEL_SHA256), &sha256)
    }
    .await;
    if let Err(e) = verified {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, &file).map_err(cache_err)?;
    Ok(file)
}
