//! Where a model comes from: `s3://bucket/key`, `https://…` (or `http://`), or
//! a local path. A fetched model is always a file, so that ONNX Runtime maps
//! its weights (see `model/session.rs`): remote models are written into a
//! download folder as they arrive (`/tmp` on Lambda: `model/spool.rs`),
//! hashed on the way and verified against an optional SHA-256 before
//! anything is built from them. The default VGG16 is downloaded once into
//! the cache.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::model::spool::{self, Spool, SpoolError, Spooled, SpooledFile};

/// The stock ImageNet VGG16 from the ONNX Model Zoo (opset 7), used when no model is given.
pub const DEFAULT_MODEL_URL: &str =
    "https://github.com/onnx/models/raw/main/validated/vision/classification/vgg/model/vgg16-7.onnx";
/// Size of [`DEFAULT_MODEL_URL`] in bytes.
pub const DEFAULT_MODEL_SIZE: u64 = 553_437_328;
/// SHA-256 of [`DEFAULT_MODEL_URL`].
pub const DEFAULT_MODEL_SHA256: &str =
    "f20805a3ecccaa88647bbab4ad011ff2412a9838485ea844de0fcbce349820b9";

/// Why a model could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid model URI {0:?}: expected s3://bucket/key, https://host/path or a file path")]
    InvalidUri(String),
    #[error("cannot read model file {}: {error}", file_name(path))]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot download model from {url}: {message}")]
    Http { url: String, message: String },
    #[error("cannot fetch model from {uri}: {message}")]
    S3 { uri: String, message: String },
    #[error("model from {uri} has SHA-256 {actual}, expected {expected}: refusing to use it")]
    Sha256Mismatch {
        uri: String,
        expected: String,
        actual: String,
    },
    #[error("MODEL_SHA256 must be 64 hex digits (got {0:?})")]
    BadSha256(String),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot write the model cache {}: {error}", path.display())]
    Cache {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// A parsed model location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    S3 { bucket: String, key: String },
    Http(String),
    File(PathBuf),
}

impl FromStr for ModelUri {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SourceError::InvalidUri(s.into()));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            return match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(Self::S3 {
                    bucket: bucket.into(),
                    key: key.into(),
                }),
                _ => Err(SourceError::InvalidUri(s.into())),
            };
        }
        if s.starts_with("https://") || s.starts_with("http://") {
            return reqwest::Url::parse(s)
                .map(|_| Self::Http(s.into()))
                .map_err(|_| SourceError::InvalidUri(s.into()));
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Self::File(PathBuf::from(path)));
        }
        if s.contains("://") {
            return Err(SourceError::InvalidUri(s.into()));
        }
        Ok(Self::File(PathBuf::from(s)))
    }
}

impl fmt::Display for ModelUri {
    /// Shows the location without secrets: URL credentials and query strings
    /// (pre-signed URLs carry signatures there) are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            Self::Http(url) => match reqwest::Url::parse(url) {
                Ok(mut u) => {
                    let _ = u.set_username("");
                    let _ = u.set_password(None);
                    u.set_query(None);
                    u.set_fragment(None);
                    write!(f, "{u}")
                }
                Err(_) => write!(f, "<invalid url>"),
            },
            // Answers, /health and /model show this: a file name, never
            // the server's folders.
            Self::File(p) => f.write_str(&file_name(p)),
        }
    }
}

/// A model's content: a file ONNX Runtime reads (and maps) itself.
pub enum ModelData {
    File(PathBuf),
}

/// A fetched model and where it came from.
pub struct FetchedModel {
    pub data: ModelData,
    /// A downloaded model's file, removed when the model is dropped (ONNX
    /// Runtime's own mapping of the weights outlives the name).
    pub download: Option<SpooledFile>,
    /// Size of the model in bytes.
    pub size: u64,
    /// Where it came from, as shown to users (no secrets, no folders).
    pub uri: String,
    pub fetch_ms: f64,
}

impl FetchedModel {
    /// The model file.
    pub fn path(&self) -> &Path {
        match &self.data {
            ModelData::File(p) => p,
        }
    }

    /// The whole model as bytes, mapped.
    pub fn view(&self) -> std::io::Result<memmap2::Mmap> {
        map_file(self.path())
    }

    /// The file name weights are found under by external-data references
    /// (the model file's own name, links resolved).
    pub fn location(&self) -> String {
        let p = self.path();
        std::fs::canonicalize(p)
            .ok()
            .and_then(|r| r.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| file_name(p))
    }
}

/// Maps a model file read-only.
pub fn map_file(path: &Path) -> std::io::Result<memmap2::Mmap> {
    let file = std::fs::File::open(path)?;
    // SAFETY: read-only map. Replacing the file by renaming is safe;
    // truncating it in place while it is used is not (as for any mapped
    // file, including ONNX Runtime's own external data).
    unsafe { memmap2::Mmap::map(&file) }
}

/// The last part of a path, for messages and answers.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// How S3 is reached.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Parallel ranged GETs in flight (1 = one plain GET).
    pub s3_concurrency: usize,
    /// How long to wait for bytes that do not come.
    pub s3_read_timeout: std::time::Duration,
    /// A custom endpoint (MinIO, moto, …), addressed path-style.
    pub s3_endpoint: Option<String>,
    /// Where remote models are written (`/tmp` on Lambda).
    pub download_dir: PathBuf,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            s3_concurrency: S3_CONCURRENCY,
            s3_read_timeout: std::time::Duration::from_secs(30),
            s3_endpoint: None,
            // moved into settings by the source.rs split
            #[allow(clippy::disallowed_methods)]
            download_dir: std::env::temp_dir(),
        }
    }
}

/// Operator names of quantized graphs (QDQ, QOperator and integer ops).
const QUANTIZED_OPS: &[&[u8]] = &[
    b"QuantizeLinear",
    b"QLinear",
    b"MatMulInteger",
    b"ConvInteger",
];

/// Whether ONNX model bytes mention a quantized operator. A byte search, not
/// a parse: it only steers a load-time setting (weight pre-packing), never
/// an answer.
pub fn looks_quantized(bytes: &[u8]) -> bool {
    QUANTIZED_OPS
        .iter()
        .any(|op| memchr::memmem::find(bytes, op).is_some())
}

/// Refuses a model whose digest is not the `expected` one (already normalised).
pub fn verify_sha256(uri: &str, expected: Option<&str>, actual: &str) -> Result<(), SourceError> {
    match expected {
        Some(expected) if expected != actual => Err(SourceError::Sha256Mismatch {
            uri: uri.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks a user-given digest's form, lowercasing it.
pub fn normalize_sha256(s: &str) -> Result<String, SourceError> {
    let t = s.trim().to_ascii_lowercase();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t)
    } else {
        Err(SourceError::BadSha256(s.into()))
    }
}

/// Reads a local model file in 8 MiB blocks, feeding each to `visit`.
fn read_blocks(path: &Path, mut visit: impl FnMut(&[u8])) -> std::io::Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 8 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(size);
        }
        visit(&buf[..n]);
        size += n as u64;
    }
}

/// A local model file's size and whether it holds quantized operators: a
/// quick pass before the session is built (it decides weight pre-packing).
/// ONNX Runtime then reads the file itself, so no copy of the model is held
/// in memory beside the session's own.
pub fn scan_file(path: &Path) -> std::io::Result<(u64, bool)> {
    // Keep the tail of each block so an operator name split by a block edge is seen.
    const KEEP: usize = 16;
    let mut tail: Vec<u8> = Vec::with_capacity(KEEP * 2);
    let mut quantized = false;
    let size = read_blocks(path, |block| {
        if quantized {
            return;
        }
        tail.extend_from_slice(&block[..block.len().min(KEEP)]);
        quantized = looks_quantized(&tail) || looks_quantized(block);
        tail.clear();
        tail.extend_from_slice(&block[block.len().saturating_sub(KEEP)..]);
    })?;
    Ok((size, quantized))
}

/// SHA-256 (hex) of a local file, streamed; run it while the session builds.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    hash_file_when(path, || true, std::time::Duration::ZERO)
}

/// SHA-256 (hex) of a local file in 1 MiB steps (under a millisecond each),
/// each taken only when `may_run()` says so, checked every `pause`.
pub fn hash_file_when(
    path: &Path,
    may_run: impl Fn() -> bool,
    pause: std::time::Duration,
) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut hasher = Sha256::new();
    loop {
        while !may_run() {
            std::thread::sleep(pause);
        }
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Fetches a remote model (`https://`, `s3://`) into a file in
/// `opts.download_dir`, hashing it on the way, and verifies
/// `expected_sha256` if given before returning it with its digest.
pub async fn fetch_remote(
    uri: &ModelUri,
    expected_sha256: Option<&str>,
    opts: &FetchOptions,
) -> Result<(FetchedModel, String), SourceError> {
    let expected = expected_sha256.map(normalize_sha256).transpose()?;
    let started = Instant::now();
    let spooled = match uri {
        ModelUri::File(path) => {
            return Err(SourceError::File {
                path: path.clone(),
                error: std::io::Error::other("a local file is not downloaded"),
            })
        }
        ModelUri::Http(url) => fetch_http(url, &uri.to_string(), &opts.download_dir).await?,
        ModelUri::S3 { bucket, key } => fetch_s3(bucket, key, opts).await?,
    };
    let fetch_ms = started.elapsed().as_secs_f64() * 1e3;
    let Spooled {
        file,
        sha256,
        digest_wait_ms,
    } = spooled;
    let size = std::fs::metadata(file.path())
        .map_err(|e| SourceError::Spool(SpoolError::Write(e)))?
        .len();
    tracing::info!(
        model = %uri, bytes = size, fetch_ms, digest_wait_ms,
        "model downloaded (SHA-256 computed on the way)"
    );
    // Refused before anything is built from it; the file goes with `file`.
    verify_sha256(&uri.to_string(), expected.as_deref(), &sha256)?;
    let model = FetchedModel {
        data: ModelData::File(file.path().to_path_buf()),
        download: Some(file),
        size,
        uri: uri.to_string(),
        fetch_ms,
    };
    Ok((model, sha256))
}

/// A local model file, not read: ONNX Runtime reads it.
pub fn local_file(path: &Path) -> Result<FetchedModel, SourceError> {
    let size = std::fs::metadata(path)
        .map_err(|error| SourceError::File {
            path: path.to_path_buf(),
            error,
        })?
        .len();
    Ok(FetchedModel {
        data: ModelData::File(path.to_path_buf()),
        download: None,
        size,
        uri: ModelUri::File(path.to_path_buf()).to_string(),
        fetch_ms: 0.0,
    })
}

fn progress_bar(total: Option<u64>, what: &str) -> ProgressBar {
    // indicatif draws to stderr and stays silent when that is not a terminal
    // (Lambda, CI), so no flag is needed.
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

/// Streams an https model into a new file in `dir`, hashing it on the way.
async fn fetch_http(url: &str, shown: &str, dir: &Path) -> Result<Spooled, SourceError> {
    let (file, path) = spool::create_file(dir)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    stream_http(url, shown, |chunk| {
        hasher.update(chunk);
        std::io::Write::write_all(&mut out, chunk).map_err(|e| SpoolError::Write(e).into())
    })
    .await?;
    out.into_inner()
        .map_err(|e| SpoolError::Write(e.into_error()))?;
    Ok(Spooled {
        file: path,
        sha256: hex::encode(hasher.finalize()),
        digest_wait_ms: 0.0,
    })
}

/// GETs `url`, handing each chunk to `sink` (with a progress bar).
async fn stream_http(
    url: &str,
    shown: &str,
    mut sink: impl FnMut(&[u8]) -> Result<(), SourceError>,
) -> Result<(), SourceError> {
    let err = |message: String| SourceError::Http {
        url: shown.to_string(),
        message,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| err(e.to_string()))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| err(error_chain(&e.without_url())))?;
    if !response.status().is_success() {
        return Err(err(format!("HTTP {}", response.status())));
    }
    let bar = progress_bar(response.content_length(), "downloading model");
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| err(error_chain(&e.without_url())))?
    {
        sink(&chunk)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

/// An S3 client from the standard AWS environment (credential chain,
/// `AWS_REGION`, `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`). With a custom
/// endpoint (MinIO, moto, …) path-style addressing is used, as those expect.
pub async fn s3_client(opts: &FetchOptions) -> aws_sdk_s3::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared).timeout_config(
        // A stalled server must not hang start-up for ever; a slow but
        // moving download of a large model is fine (no total deadline).
        // `s3_read_timeout` bounds the wait for bytes that do not come.
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .read_timeout(opts.s3_read_timeout)
            .build(),
    );
    let endpoint = opts
        .s3_endpoint
        .clone()
        .or_else(|| shared.endpoint_url().map(str::to_string));
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// Ranged GETs of this size are fetched in parallel for large objects.
pub const S3_PART_BYTES: u64 = 16 << 20;
/// Default parallel ranged GETs in flight (`CATDOG_S3_CONCURRENCY`; 1 = one
/// plain GET): AWS's guidance is a connection per 85–90 MB/s, so 16 carry a
/// 528 MB model in well under a second where the network allows.
pub const S3_CONCURRENCY: usize = 16;
/// Attempts per range: a dropped connection resumes from the last byte received.
const S3_RANGE_ATTEMPTS: u32 = 4;

/// Fetches an S3 object into a file: one GET for small objects (or
/// concurrency 1), else parallel ranged GETs (pinned to the object's ETag, so
/// a replaced object is refused rather than mixed), each written at its
/// offset as it arrives.
async fn fetch_s3(bucket: &str, key: &str, opts: &FetchOptions) -> Result<Spooled, SourceError> {
    let uri = format!("s3://{bucket}/{key}");
    let err = |message: String| SourceError::S3 {
        uri: uri.clone(),
        message,
    };
    let client = s3_client(opts).await;
    let concurrency = opts.s3_concurrency.max(1);
    let head = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            // HEAD answers carry no error body: name the usual S3 codes.
            let status = e.raw_response().map(|r| r.status().as_u16());
            err(match status {
                Some(404) => "NoSuchKey: the object does not exist".into(),
                Some(403) => "AccessDenied: not allowed to read the object (s3:GetObject)".into(),
                _ => s3_error_message(&e),
            })
        })?;
    let total = head
        .content_length()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| err("the object has no length".into()))?;
    let etag = head.e_tag().map(str::to_string);
    let part = if concurrency <= 1 || total <= S3_PART_BYTES {
        total.max(1)
    } else {
        S3_PART_BYTES
    };
    let spool = Spool::create(&opts.download_dir, total, part)?;
    let bar = progress_bar(Some(total), "fetching model");
    // Boxed and collected first: a lazy iterator of borrowing closures trips
    // the compiler's Send inference for the spawned loader task.
    let mut jobs = Vec::with_capacity(spool.parts());
    for i in 0..spool.parts() {
        let job: std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>,
        > = Box::pin(fetch_s3_range(
            &client,
            bucket,
            key,
            etag.as_deref(),
            spool.writer(i),
            &bar,
        ));
        jobs.push(job);
    }
    let mut stream = futures_util::stream::iter(jobs).buffer_unordered(concurrency);
    while let Some(r) = stream.next().await {
        r.map_err(&err)?;
    }
    drop(stream);
    bar.finish_and_clear();
    Ok(spool.finish()?)
}

/// Writes one part of the object through `out`, resuming after a dropped
/// connection from where it stopped (bounded attempts, backoff).
async fn fetch_s3_range(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    etag: Option<&str>,
    mut out: spool::PartWriter<'_>,
    bar: &ProgressBar,
) -> Result<(), String> {
    if out.is_empty() {
        return Ok(()); // an empty object: nothing to ask for
    }
    let mut attempt = 0u32;
    loop {
        let from = out.start() + out.written();
        let to = out.start() + out.len() - 1;
        let mut req = client
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes={from}-{to}"));
        if let Some(tag) = etag {
            req = req.if_match(tag);
        }
        let failure = match req.send().await {
            Ok(object) => {
                let mut body = object.body;
                loop {
                    match body.try_next().await {
                        Ok(Some(chunk)) => {
                            out.write(&chunk).map_err(|e| e.to_string())?;
                            bar.inc(chunk.len() as u64);
                        }
                        Ok(None) if out.written() == out.len() => return Ok(()),
                        Ok(None) => {
                            break format!(
                                "connection closed after {} of {} bytes",
                                out.written(),
                                out.len()
                            )
                        }
                        Err(e) => break error_chain(&e),
                    }
                }
            }
            Err(e) => {
                let message = s3_error_message(&e);
                // Not worth retrying: the object is gone, replaced or forbidden.
                if message.starts_with("PreconditionFailed") {
                    return Err("the object changed while it was being downloaded".into());
                }
                if matches!(e, aws_sdk_s3::error::SdkError::ServiceError(_)) {
                    return Err(message);
                }
                message
            }
        };
        attempt += 1;
        if attempt >= S3_RANGE_ATTEMPTS {
            return Err(format!("{failure} (gave up after {attempt} attempts)"));
        }
        tracing::warn!(error = %failure, offset = out.start() + out.written(), attempt, "S3 download interrupted; resuming");
        tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
    }
}

/// "Code: message" for service errors (NoSuchKey, AccessDenied, …), the
/// cause chain for transport errors — without dumping the raw response.
pub(crate) fn s3_error_message<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        _ => error_chain(e),
    }
}

/// The default VGG16's file in `cache`, and whether it looks whole (right size;
/// its digest is checked while it loads).
pub fn cached_default(cache: &Path) -> (PathBuf, bool) {
    let file = cache.join("vgg16-7.onnx");
    let whole = std::fs::metadata(&file).is_ok_and(|m| m.len() == DEFAULT_MODEL_SIZE);
    (file, whole)
}

/// Downloads the default VGG16 once from `url` (a mirror may be given) into
/// `cache`, hashing it as it arrives: written to a `.part` file, renamed
/// into place only when its SHA-256 is the known one.
pub async fn download_default(url: &str, cache: &Path) -> Result<PathBuf, SourceError> {
    let (file, _) = cached_default(cache);
    let uri: ModelUri = url.parse()?;
    tracing::info!(url = %uri, "downloading the default model (ImageNet VGG16, 553 MB) once");
    let cache_err = |error| SourceError::Cache {
        path: file.clone(),
        error,
    };
    std::fs::create_dir_all(cache).map_err(cache_err)?;
    let part = file.with_extension("onnx.part");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&part).map_err(cache_err)?);
    let mut hasher = Sha256::new();
    let shown = uri.to_string();
    let result = match &uri {
        ModelUri::Http(u) => {
            stream_http(u, &shown, |chunk| {
                hasher.update(chunk);
                std::io::Write::write_all(&mut out, chunk).map_err(cache_err)
            })
            .await
        }
        _ => Err(SourceError::InvalidUri(format!(
            "{shown} (the default model's mirror must be http(s))"
        ))),
    };
    let flushed = out
        .into_inner()
        .map_err(|e| cache_err(e.into_error()))
        .and_then(|f| f.sync_all().map_err(cache_err));
    let verified = result.and(flushed).and_then(|()| {
        verify_sha256(
            &shown,
            Some(DEFAULT_MODEL_SHA256),
            &hex::encode(hasher.finalize()),
        )
    });
    if let Err(e) = verified {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, &file).map_err(cache_err)?;
    Ok(file)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let msg = inner.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = inner.source();
    }
    s
}

#[cfg(test)]
// Unit tests make scratch folders in the system's temporary folder; the
// rule that only settings reads the environment is for the running code.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_uri() {
        assert_eq!(
            "s3://models/cats/v1.onnx".parse::<ModelUri>().unwrap(),
            ModelUri::S3 {
                bucket: "models".into(),
                key: "cats/v1.onnx".into()
            }
        );
        assert!(matches!(
            "https://x.test/m.onnx".parse::<ModelUri>().unwrap(),
            ModelUri::Http(_)
        ));
        assert_eq!(
            "file:///m.onnx".parse::<ModelUri>().unwrap(),
            ModelUri::File("/m.onnx".into())
        );
        assert_eq!(
            "./m.onnx".parse::<ModelUri>().unwrap(),
            ModelUri::File("./m.onnx".into())
        );
        for bad in ["", "s3://bucket", "s3:///key", "ftp://x/y"] {
            assert!(bad.parse::<ModelUri>().is_err(), "{bad}");
        }
    }

    #[test]
    fn display_hides_credentials_and_signatures() {
        let uri: ModelUri = "https://user:pw@x.test/m.onnx?X-Amz-Signature=abc"
            .parse()
            .unwrap();
        assert_eq!(uri.to_string(), "https://x.test/m.onnx");
    }

    #[test]
    fn sha256_is_checked_for_form() {
        assert!(normalize_sha256(&"A".repeat(64)).is_ok());
        assert!(normalize_sha256("abc").is_err());
    }

    #[test]
    fn files_are_named_by_their_file_name_only() {
        let dir = std::env::temp_dir().join(format!("catdog-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.bin");
        std::fs::write(&path, b"model").unwrap();
        let model = local_file(&path).unwrap();
        assert_eq!((model.uri.as_str(), model.size), ("m.bin", 5));
        assert_eq!(&*model.view().unwrap(), b"model");
        let missing = local_file(&dir.join("gone.onnx"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            missing.starts_with("cannot read model file gone.onnx: "),
            "{missing}"
        );
        assert!(!missing.contains(dir.to_str().unwrap()), "{missing}");
        assert_eq!(missing.matches("os error 2").count(), 1, "{missing}");
        assert!(verify_sha256("m", Some(&sha256_hex(b"model")), &sha256_hex(b"model")).is_ok());
        assert!(matches!(
            verify_sha256("m", Some(&"0".repeat(64)), &sha256_hex(b"model")),
            Err(SourceError::Sha256Mismatch { .. })
        ));
        // For a session: a quick scan, and a streamed digest.
        let big: Vec<u8> = (0..20_000_000u32).map(|i| (i % 251) as u8).collect();
        let big_path = dir.join("big.bin");
        std::fs::write(&big_path, &big).unwrap();
        assert_eq!(scan_file(&big_path).unwrap(), (big.len() as u64, false));
        assert_eq!(hash_file(&big_path).unwrap(), sha256_hex(&big));

        // An operator name split across two 8 MiB reads is still seen.
        let mut q = vec![0u8; 9 << 20];
        let at = (8 << 20) - 5;
        q[at..at + 14].copy_from_slice(b"QuantizeLinear");
        let q_path = dir.join("q.onnx");
        std::fs::write(&q_path, &q).unwrap();
        assert_eq!(scan_file(&q_path).unwrap(), (q.len() as u64, true));
        assert!(looks_quantized(b"..QLinearConv..") && !looks_quantized(b"Conv Gemm Relu"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
