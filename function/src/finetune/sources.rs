//! Where the photos come from: each `--data` is a folder or
//! `s3://bucket/prefix/`. A prefix is first mirrored into the cache folder
//! (pictures and their sidecars; files gone from S3 are removed from the
//! mirror, so a deleted correction is not trained on), then read as a
//! folder, so one listing ([`super::data`]) reads both. A mirrored file is
//! fresh while S3 lists it with the ETag it was fetched with: a sidecar
//! rewritten at the same size (a picture corrected again) is fetched anew.
//! Where S3 lists no ETag, a file of the listed size is taken as fresh.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::config::{DataFetch, DataSource};
use super::progress::{Event, Progress};
use crate::aws::{s3_client, SdkRetries};
use crate::objects::location::has_dot_segments;
use crate::objects::store::ObjectStore;
use crate::objects::{Failure, ObjectRef};

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("reading {source_uri}: {failure}")]
    S3 {
        source_uri: String,
        failure: Failure,
    },
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// What mirroring one prefix did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Mirrored {
    pub(crate) downloaded: usize,
    pub(crate) kept: usize,
    pub(crate) removed: usize,
}

/// The sources as local folders, in order (prefixes mirrored first).
pub(crate) async fn local_folders(
    sources: &[DataSource],
    fetch: &DataFetch,
    progress: &dyn Progress,
) -> Result<Vec<PathBuf>, MirrorError> {
    let mut store = None;
    let mut folders = Vec::with_capacity(sources.len());
    for source in sources {
        match source {
            DataSource::Folder(dir) => folders.push(dir.clone()),
            DataSource::S3 { bucket, prefix } => {
                if store.is_none() {
                    let client = s3_client(&fetch.fetch.s3, SdkRetries::ThisPolicy).await;
                    store = Some(ObjectStore::new(client));
                }
                let store = store.as_ref().expect("made above");
                // The prefix has no dot segments (settings refuse them), so
                // the mirror stays under `mirrors`, and only its own files go.
                let dir = fetch.mirrors.join(bucket).join(prefix);
                let s3 = |failure| MirrorError::S3 {
                    source_uri: source.to_string(),
                    failure,
                };
                let keys = list(store, bucket, prefix).await.map_err(s3)?;
                let mirrored = mirror(store, bucket, prefix, &keys, &dir, fetch, progress).await?;
                tracing::info!(source = %source, dir = %dir.display(), ?mirrored, "mirrored");
                folders.push(dir);
            }
        }
    }
    Ok(folders)
}

/// The files a mirror takes: pictures and their JSON sidecars, never a
/// hidden one (the mirror's own record is hidden).
fn wanted(relative: &str) -> bool {
    let path = Path::new(relative);
    let hidden = relative.split('/').any(|segment| segment.starts_with('.'));
    !relative.is_empty()
        && !relative.ends_with('/')
        && !has_dot_segments(relative)
        && !hidden
        && (crate::files::is_picture(path) || path.extension().is_some_and(|e| e == "json"))
}

/// One wanted object under a prefix, as S3 lists it.
struct Listed {
    /// Its key, relative to the prefix.
    relative: String,
    size: Option<i64>,
    etag: Option<String>,
}

/// Every wanted key under `prefix`, with its size and ETag.
async fn list(store: &ObjectStore, bucket: &str, prefix: &str) -> Result<Vec<Listed>, Failure> {
    let mut keys = Vec::new();
    let mut next = None;
    loop {
        let (page, token) = store.list_page_sized(bucket, prefix, next).await?;
        for (object, size) in page {
            let relative = object.key[prefix.len()..]
                .trim_start_matches('/')
                .to_string();
            if wanted(&relative) {
                keys.push(Listed {
                    relative,
                    size,
                    etag: object.etag,
                });
            }
        }
        match token {
            Some(t) => next = Some(t),
            None => return Ok(keys),
        }
    }
}

/// The file beside a mirror's folders that records each mirrored file's
/// ETag (hidden: never read as a label's folder).
const ETAGS: &str = ".catdog-etags.json";

/// Each mirrored file's ETag as fetched, by its relative path; empty when
/// none was recorded (an older mirror: its files are fetched again once).
fn recorded_etags(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read(dir.join(ETAGS))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Brings `dir` to the listed keys: downloads what is missing, of another
/// size or of another ETag, removes wanted files that are no longer listed.
async fn mirror(
    store: &ObjectStore,
    bucket: &str,
    prefix: &str,
    keys: &[Listed],
    dir: &Path,
    fetch: &DataFetch,
    progress: &dyn Progress,
) -> Result<Mirrored, MirrorError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| MirrorError::Io { path, error }
    };
    let mut done = Mirrored::default();
    let source = format!("s3://{bucket}/{prefix}");
    progress.event(Event::Fetching {
        source: &source,
        total: keys.len(),
    });
    let recorded = recorded_etags(dir);
    let mut etags = BTreeMap::new();
    for key in keys {
        let path = dir.join(&key.relative);
        let have = std::fs::metadata(&path).ok().map(|m| m.len() as i64);
        let same_etag = key.etag.is_none() || recorded.get(&key.relative) == key.etag.as_ref();
        if have.is_some() && have == key.size && same_etag {
            done.kept += 1;
            if let Some(etag) = &key.etag {
                etags.insert(key.relative.clone(), etag.clone());
            }
        } else {
            let object = ObjectRef::new(bucket, format!("{prefix}{}", key.relative));
            let fetched = store
                .get(&object, fetch.max_object_bytes)
                .await
                .map_err(|failure| MirrorError::S3 {
                    source_uri: source.clone(),
                    failure,
                })?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let partial = path.with_extension("partial");
            std::fs::write(&partial, &fetched.bytes).map_err(io(&partial))?;
            std::fs::rename(&partial, &path).map_err(io(&path))?;
            if let Some(etag) = fetched.etag {
                etags.insert(key.relative.clone(), etag);
            }
            done.downloaded += 1;
        }
        progress.event(Event::Fetched(1));
    }
    progress.event(Event::FetchDone);
    let listed: BTreeSet<PathBuf> = keys.iter().map(|k| dir.join(&k.relative)).collect();
    for stale in walk(dir)? {
        let relative = stale.strip_prefix(dir).unwrap_or(&stale);
        if wanted(&relative.to_string_lossy()) && !listed.contains(&stale) {
            std::fs::remove_file(&stale).map_err(io(&stale))?;
            done.removed += 1;
        }
    }
    let record = dir.join(ETAGS);
    let partial = record.with_extension("partial");
    let json = serde_json::to_vec(&etags).unwrap_or_default();
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::write(&partial, json).map_err(io(&partial))?;
    std::fs::rename(&partial, &record).map_err(io(&record))?;
    Ok(done)
}

/// Every file under `dir` (none when it does not exist).
fn walk(dir: &Path) -> Result<Vec<PathBuf>, MirrorError> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let entry = entry.map_err(|error| MirrorError::Io {
                path: d.clone(),
                error,
            })?;
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push(path);
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_mirror_takes_pictures_and_sidecars_only() {
        for yes in ["dog/ab.jpg", "train/cat/x.PNG", "dog/ab.json"] {
            assert!(super::wanted(yes), "{yes}");
        }
        for no in [
            "",
            "dog/",
            "../x.jpg",
            "a/./b.jpg",
            "notes.txt",
            "model.onnx",
            ".catdog-etags.json",
            "dog/.hidden.jpg",
        ] {
            assert!(!super::wanted(no), "{no}");
        }
    }
}
