//! Models over https (or http): one GET streamed into a file, hashed on the
//! way. Used for `MODEL_URI=https://…` and for the default VGG16's download.

use std::fs::File;
use std::io::{BufWriter, Write};

use futures_util::TryStreamExt;

use super::digest::HashingWriter;
use super::error::SourceError;
use super::progress;
use crate::messages::with_causes;
use crate::model::spool::{self, SpoolError, Spooled};

/// Streams `url` into a new download file in `dir`, hashing it on the way.
/// `shown` names it in messages (no credentials or query).
pub(crate) async fn fetch(
    url: &str,
    shown: &str,
    at: spool::SpoolAt<'_>,
) -> Result<Spooled, SourceError> {
    let (file, path) = spool::create_file(at)?;
    let (_, sha256) = download_into(url, shown, file, |e| {
        SourceError::Spool(SpoolError::Write(e))
    })
    .await?;
    Ok(Spooled {
        file: path,
        sha256,
        digest_wait_ms: 0.0,
    })
}

/// GETs `url` into `file` (with a progress bar), returning the file and the
/// SHA-256 of what was written; `write_err` says why a write failed.
pub(crate) async fn download_into(
    url: &str,
    shown: &str,
    file: File,
    write_err: impl Fn(std::io::Error) -> SourceError,
) -> Result<(File, String), SourceError> {
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
        .map_err(|e| err(with_causes(&e.without_url())))?;
    if !response.status().is_success() {
        return Err(err(format!("HTTP {}", response.status())));
    }
    let bar = progress::bar(response.content_length(), "downloading model");
    let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| err(with_causes(&e.without_url())))?
    {
        out.write_all(&chunk).map_err(&write_err)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let (buffered, sha256) = out.finish().map_err(&write_err)?;
    let file = buffered
        .into_inner()
        .map_err(|e| write_err(e.into_error()))?;
    Ok((file, sha256))
}
