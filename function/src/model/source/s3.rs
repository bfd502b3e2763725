//! Models in S3: the client, and the object fetched into a download file as
//! parallel ranged GETs (pinned to the object's ETag), each range written at
//! its offset as it arrives and resumed from its last byte when its
//! connection is cut.

use std::future::Future;
use std::pin::Pin;

use futures_util::StreamExt;
use indicatif::ProgressBar;

use super::error::SourceError;
use super::options::FetchOptions;
use super::progress;
use crate::aws::{s3_client, sdk_error_message, RetryPolicy, SdkRetries};
use crate::messages::with_causes;
use crate::model::spool::{PartWriter, Spool, Spooled};

/// Ranged GETs of this size are fetched in parallel for large objects.
pub(crate) const S3_PART_BYTES: u64 = 16 << 20;

/// Fetches an S3 object into a file: one GET for small objects (or
/// concurrency 1), else parallel ranged GETs (pinned to the object's ETag, so
/// a replaced object is refused rather than mixed), each written at its
/// offset as it arrives.
pub(crate) async fn fetch(
    bucket: &str,
    key: &str,
    opts: &FetchOptions,
) -> Result<Spooled, SourceError> {
    let uri = format!("s3://{bucket}/{key}");
    let err = |message: String| SourceError::S3 {
        uri: uri.clone(),
        message,
    };
    let client = s3_client(&opts.s3, SdkRetries::Off).await;
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
                _ => sdk_error_message(&e),
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
    let spool = Spool::create(opts.spool_at(), total, part)?;
    let bar = progress::bar(Some(total), "fetching model");
    let range = Range {
        client: &client,
        bucket,
        key,
        etag: etag.as_deref(),
        bar: &bar,
        retry: &opts.s3.retry,
    };
    // Boxed and collected first: a lazy iterator of borrowing closures trips
    // the compiler's Send inference for the spawned loader task.
    let mut jobs = Vec::with_capacity(spool.parts());
    for i in 0..spool.parts() {
        let job: Pin<Box<dyn Future<Output = Result<(), Cut>> + Send + '_>> =
            Box::pin(range.fetch(spool.writer(i)));
        jobs.push(job);
    }
    let mut stream = futures_util::stream::iter(jobs).buffer_unordered(concurrency);
    while let Some(r) = stream.next().await {
        r.map_err(|cut| err(cut.message))?;
    }
    drop(stream);
    bar.finish_and_clear();
    Ok(spool.finish()?)
}

/// What every range of one object shares.
#[derive(Clone, Copy)]
struct Range<'a> {
    client: &'a aws_sdk_s3::Client,
    bucket: &'a str,
    key: &'a str,
    etag: Option<&'a str>,
    bar: &'a ProgressBar,
    retry: &'a RetryPolicy,
}

/// How one GET of a range ended, if not with all its bytes.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Cut {
    message: String,
    /// Worth asking again: a transport failure, not the service's refusal.
    resumable: bool,
}

impl Range<'_> {
    /// Writes one part of the object through `out`. A connection cut after
    /// some bytes came resumes from the last one (at most `retry.attempts`
    /// tries, `retry.first_pause` apart); a try that brought nothing ends
    /// the fetch, for the load to retry (`aws/retry.rs`).
    async fn fetch(self, out: PartWriter<'_>) -> Result<(), Cut> {
        if out.is_empty() {
            return Ok(()); // an empty object: nothing to ask for
        }
        let mut tried = 0u32;
        loop {
            let before = out.written();
            let Err(cut) = self.get(&out).await else {
                return Ok(());
            };
            tried += 1;
            if !cut.resumable || out.written() == before {
                return Err(cut);
            }
            if tried >= self.retry.attempts {
                return Err(Cut {
                    message: format!("{} (gave up after {tried} tries)", cut.message),
                    resumable: false,
                });
            }
            tracing::warn!(
                error = %cut.message, offset = out.start() + out.written(), tried,
                "S3 download interrupted; resuming"
            );
            tokio::time::sleep(self.retry.first_pause).await;
        }
    }

    /// One GET of what `out` still lacks.
    async fn get(&self, out: &PartWriter<'_>) -> Result<(), Cut> {
        let from = out.start() + out.written();
        let to = out.start() + out.len() - 1;
        let mut req = self
            .client
            .get_object()
            .bucket(self.bucket)
            .key(self.key)
            .range(format!("bytes={from}-{to}"));
        if let Some(tag) = self.etag {
            req = req.if_match(tag);
        }
        let mut body = match req.send().await {
            Ok(object) => object.body,
            Err(e) => {
                let message = sdk_error_message(&e);
                // Not worth asking again: the object is gone, replaced or forbidden.
                if message.starts_with("PreconditionFailed") {
                    return Err(Cut {
                        message: "the object changed while it was being downloaded".into(),
                        resumable: false,
                    });
                }
                let resumable = !matches!(e, aws_sdk_s3::error::SdkError::ServiceError(_));
                return Err(Cut { message, resumable });
            }
        };
        loop {
            match body.try_next().await {
                Ok(Some(chunk)) => {
                    out.write(&chunk).map_err(|e| Cut {
                        message: e.to_string(),
                        resumable: false,
                    })?;
                    self.bar.inc(chunk.len() as u64);
                }
                Ok(None) if out.written() == out.len() => return Ok(()),
                Ok(None) => {
                    return Err(Cut {
                        message: format!(
                            "connection closed after {} of {} bytes",
                            out.written(),
                            out.len()
                        ),
                        resumable: true,
                    })
                }
                Err(e) => {
                    return Err(Cut {
                        message: with_causes(&e),
                        resumable: true,
                    })
                }
            }
        }
    }
}
