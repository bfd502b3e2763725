//! The API key where secrets live: AWS Secrets Manager
//! (`CATDOG_API_KEY_SECRET`). The function's environment then holds only
//! the secret's ARN, so `lambda:GetFunctionConfiguration` (ReadOnlyAccess)
//! no longer reveals the key; the secret's string is the key. The key is
//! read at start and again on a failed match at most once a minute
//! ([`crate::http::access::KeySource`]), so a rotation needs no restart. A
//! plain key (`CATDOG_API_KEY`) stays possible for local use.

use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use futures_util::future::BoxFuture;

use crate::aws::sdk_error_message;
use crate::aws::{RetryPolicy, SdkRetries};
use crate::http::access::{Access, AccessError, ApiKey, KeySource};
use crate::settings::{Secret, Settings};

/// A secret in Secrets Manager, by ARN or name. The client is made for each
/// read (at most one a minute), on the runtime of the caller, so a key read
/// at start on one runtime is read again on the server's.
pub(crate) struct SecretsManagerKey {
    secret_id: String,
    retry: RetryPolicy,
}

impl SecretsManagerKey {
    pub(crate) fn new(secret_id: &str, retry: RetryPolicy) -> Self {
        Self {
            secret_id: secret_id.to_string(),
            retry,
        }
    }

    async fn read(&self) -> Result<String, AccessError> {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let conf = aws_sdk_secretsmanager::config::Builder::from(&shared)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(10))
                    .build(),
            )
            .retry_config(self.retry.sdk_config(SdkRetries::ThisPolicy))
            .build();
        let client = aws_sdk_secretsmanager::Client::from_conf(conf);
        let what = || format!("Secrets Manager secret {}", self.secret_id);
        let out = client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| AccessError::Source(format!("{}: {}", what(), sdk_error_message(&e))))?;
        out.secret_string()
            .map(str::to_string)
            .ok_or_else(|| AccessError::Source(format!("{}: it holds no SecretString", what())))
    }
}

impl KeySource for SecretsManagerKey {
    fn fetch(&self) -> BoxFuture<'_, Result<String, AccessError>> {
        Box::pin(self.read())
    }
}

/// The router's access settings, the key read from its secret when one is
/// named (a secret that cannot be read stops the start, with its reason).
pub(crate) async fn access(settings: &Settings) -> Result<Access, AccessError> {
    match secret(settings) {
        Some(source) => {
            let key = ApiKey::from_source(Arc::new(source)).await?;
            Access::with_key(Some(key), &settings.access.cors_origins)
        }
        None => settings.access_control(),
    }
}

/// The secret the settings name. Reads are tried twice at most: a read
/// again after a mismatch happens while a request waits.
fn secret(settings: &Settings) -> Option<SecretsManagerKey> {
    let retry = RetryPolicy {
        attempts: settings.retry_policy().attempts.min(2),
        ..settings.retry_policy()
    };
    Some(SecretsManagerKey::new(settings.api_key_secret()?, retry))
}

/// The key's text, for a caller of the classifier (the PreTraffic hook).
pub(crate) async fn key_text(settings: &Settings) -> Result<Option<String>, AccessError> {
    match secret(settings) {
        Some(source) => source.read().await.map(|k| Some(k.trim().to_string())),
        None => Ok(settings
            .access
            .api_key
            .as_ref()
            .map(|k| Secret::expose(k).to_string())),
    }
}

/// [`access`] from code that is not async (the serve host starts before
/// its runtime does): on a thread and runtime of its own, so it may be
/// called inside another runtime (a notebook cell).
pub(crate) fn access_blocking(settings: &Settings) -> Result<Access, AccessError> {
    if settings.api_key_secret().is_none() {
        return settings.access_control();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| AccessError::Source(format!("a runtime to read the secret: {e}")))?
                    .block_on(access(settings))
            })
            .join()
            .unwrap_or_else(|_| Err(AccessError::Source("the secret's reader panicked".into())))
    })
}
