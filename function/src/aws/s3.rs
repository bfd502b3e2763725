//! The S3 client every part of catdog uses (models, objects, checks, the
//! PreTraffic hook), built one way from the standard AWS environment.

use std::time::Duration;

use super::retry::{RetryPolicy, SdkRetries};

/// How S3 is reached: its endpoint, how long to wait for bytes, and the
/// retry policy its calls follow.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// How long to wait for bytes that do not come.
    pub read_timeout: Duration,
    /// A custom endpoint (MinIO, moto, …), addressed path-style.
    pub endpoint: Option<String>,
    /// Resumes of an S3 range cut mid-body, and an upload's retries (see
    /// [`super::retry`] for who retries what).
    pub retry: RetryPolicy,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            read_timeout: Duration::from_secs(30),
            endpoint: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// An S3 client from the standard AWS environment (credential chain,
/// `AWS_REGION`, `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`), retrying by
/// itself only as `retries` says. With a custom endpoint (MinIO, moto, …)
/// path-style addressing is used, as those expect.
pub async fn s3_client(opts: &S3Options, retries: SdkRetries) -> aws_sdk_s3::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        .timeout_config(
            // A stalled server must not hang start-up for ever; a slow but
            // moving download of a large model is fine (no total deadline).
            // `read_timeout` bounds the wait for bytes that do not come.
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(5))
                .read_timeout(opts.read_timeout)
                .build(),
        )
        .retry_config(opts.retry.sdk_config(retries));
    let endpoint = opts
        .endpoint
        .clone()
        .or_else(|| shared.endpoint_url().map(str::to_string));
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// An S3 client made at its first use, so that a host that never calls S3
/// never looks for credentials; and made again after [`forget_made`] (a
/// SnapStart snapshot), so that a restored environment does not use the
/// credentials and connections of the one that was snapshotted.
pub(crate) struct LazyClient {
    opts: S3Options,
    retries: SdkRetries,
    client: tokio::sync::Mutex<Option<aws_sdk_s3::Client>>,
}

/// Every [`LazyClient`] alive in this process: a snapshot is of the whole
/// process, so the hook must reach them all, wherever they were made.
static MADE: std::sync::Mutex<Vec<std::sync::Weak<LazyClient>>> = std::sync::Mutex::new(Vec::new());

impl LazyClient {
    pub(crate) fn new(opts: S3Options, retries: SdkRetries) -> std::sync::Arc<Self> {
        let lazy = std::sync::Arc::new(Self {
            opts,
            retries,
            client: tokio::sync::Mutex::new(None),
        });
        let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
        made.retain(|w| w.strong_count() > 0);
        made.push(std::sync::Arc::downgrade(&lazy));
        lazy
    }

    /// The client, made now if there is none (callers at first use wait
    /// for the one being made).
    pub(crate) async fn get(&self) -> aws_sdk_s3::Client {
        let mut slot = self.client.lock().await;
        if let Some(client) = &*slot {
            return client.clone();
        }
        let client = s3_client(&self.opts, self.retries).await;
        *slot = Some(client.clone());
        client
    }

    /// Drops the client: its pooled connections close with it, and its
    /// cached credentials are gone. True if there was one.
    async fn forget(&self) -> bool {
        self.client.lock().await.take().is_some()
    }
}

/// Drops every [`LazyClient`]'s client (the next use makes a new one, from
/// the environment as it is then); returns how many there were.
pub(crate) async fn forget_made() -> usize {
    let alive: Vec<_> = MADE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect();
    let mut forgotten = 0;
    for lazy in alive {
        forgotten += usize::from(lazy.forget().await);
    }
    forgotten
}

/// Why no credentials could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoCredentials {
    #[error("the AWS environment names no credentials provider")]
    NoProvider,
    #[error("no AWS credentials: {0}")]
    Provider(String),
}

/// Reads credentials from the standard AWS environment now, through a new
/// provider chain (no client's cache), and forgets them: a check that the
/// clients made next will have some.
pub(crate) async fn read_credentials() -> Result<(), NoCredentials> {
    use aws_sdk_s3::config::ProvideCredentials;
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let provider = shared
        .credentials_provider()
        .ok_or(NoCredentials::NoProvider)?;
    provider
        .provide_credentials()
        .await
        .map(|_| ())
        .map_err(|e| NoCredentials::Provider(crate::messages::with_causes(&e)))
}

/// A client that signs with made-up credentials and never connects (made
/// here, not from the environment): for tests of what needs no S3.
#[cfg(test)]
pub(crate) fn offline_client() -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_client_made_is_dropped_before_a_snapshot() {
        let lazy = LazyClient::new(S3Options::default(), SdkRetries::Off);
        assert!(lazy.client.lock().await.is_none(), "made at first use only");
        *lazy.client.lock().await = Some(offline_client());
        let other = LazyClient::new(S3Options::default(), SdkRetries::Off);
        *other.client.lock().await = Some(offline_client());
        assert_eq!(forget_made().await, 2);
        assert!(lazy.client.lock().await.is_none());
        assert!(other.client.lock().await.is_none());
        // A dropped one leaves the list; the next snapshot finds nothing.
        drop(other);
        assert_eq!(forget_made().await, 0);
    }
}
