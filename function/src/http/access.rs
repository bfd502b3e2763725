//! Who may call the API: an optional API key, and which web origins may call
//! it from a browser (CORS). Both apply on every host, since they are layers
//! of the one router.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;
use crate::error::ErrorCode;

/// Shortest API key accepted: shorter ones are guessable.
pub(crate) const MIN_KEY_CHARS: usize = 16;

/// The header a browser page (or any client) may send the key in, besides
/// `Authorization: Bearer`.
pub(crate) const API_KEY_HEADER: &str = "x-api-key";

/// Why the access settings were refused at start.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("the API key must be at least {MIN_KEY_CHARS} characters (got {0})")]
    ShortKey(usize),
    #[error("CORS origin {0:?} is not an origin like https://example.com (scheme://host[:port], no path)")]
    BadOrigin(String),
    #[error("cannot read the API key from {0}")]
    Source(String),
}

/// Where a key that can change lives (Secrets Manager): read at start, and
/// again when a presented key does not match, at most once per
/// [`REFRESH_EVERY`], so that a rotated key is taken up without a restart
/// and wrong keys cannot make the server hammer the store.
pub(crate) trait KeySource: Send + Sync {
    /// The key's current text.
    fn fetch(&self) -> BoxFuture<'_, Result<String, AccessError>>;
}

/// Least time between two reads of a [`KeySource`].
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// An API key, kept only as its SHA-256 so comparing is constant-time and
/// length-independent; never printed. Cheap to clone (shared).
#[derive(Clone)]
pub struct ApiKey(Arc<KeyState>);

struct KeyState {
    digest: RwLock<[u8; 32]>,
    source: Option<Arc<dyn KeySource>>,
    /// When the source was last read.
    read_at: Mutex<Instant>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Checks a key's length (surrounding blanks do not count).
pub(crate) fn check_key(key: &str) -> Result<(), AccessError> {
    match key.trim().chars().count() {
        n if n < MIN_KEY_CHARS => Err(AccessError::ShortKey(n)),
        _ => Ok(()),
    }
}

/// Checks that `origin` is a web origin: `scheme://host[:port]`, no path.
pub(crate) fn check_origin(origin: &str) -> Result<(), AccessError> {
    let origin = origin.trim();
    if origin == "*" {
        return Ok(());
    }
    let ok = reqwest::Url::parse(origin).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.path() == "/"
            && !origin.ends_with('/')
            && u.query().is_none()
            && u.username().is_empty()
    }) && HeaderValue::from_str(origin).is_ok();
    if ok {
        Ok(())
    } else {
        Err(AccessError::BadOrigin(origin.to_string()))
    }
}

/// A key's digest, once its length is checked.
fn digest_of(key: &str) -> Result<[u8; 32], AccessError> {
    check_key(key)?;
    Ok(Sha256::digest(key.trim().as_bytes()).into())
}

impl ApiKey {
    /// A key given as it is (the env var or flag): it never changes.
    pub(crate) fn new(key: &str) -> Result<Self, AccessError> {
        Ok(Self::with(digest_of(key)?, None))
    }

    /// A key read from `source` now, and again as [`KeySource`] says.
    pub(crate) async fn from_source(source: Arc<dyn KeySource>) -> Result<Self, AccessError> {
        let digest = digest_of(&source.fetch().await?)?;
        Ok(Self::with(digest, Some(source)))
    }

    fn with(digest: [u8; 32], source: Option<Arc<dyn KeySource>>) -> Self {
        Self(Arc::new(KeyState {
            digest: RwLock::new(digest),
            source,
            read_at: Mutex::new(Instant::now()),
        }))
    }

    /// Constant-time check of a presented key against the key held now.
    pub(crate) fn matches(&self, given: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(given).into();
        let current = *self.0.digest.read().unwrap_or_else(|e| e.into_inner());
        current.ct_eq(&digest).into()
    }

    /// [`ApiKey::matches`], and on a mismatch, the key read again from its
    /// source if the last read is older than [`REFRESH_EVERY`] (a rotation).
    pub(crate) async fn check(&self, given: &[u8]) -> bool {
        if self.matches(given) {
            return true;
        }
        let Some(source) = &self.0.source else {
            return false;
        };
        {
            let mut read_at = self.0.read_at.lock().unwrap_or_else(|e| e.into_inner());
            if read_at.elapsed() < REFRESH_EVERY {
                return false;
            }
            *read_at = Instant::now();
        }
        match source.fetch().await.and_then(|key| digest_of(&key)) {
            Ok(digest) => {
                *self.0.digest.write().unwrap_or_else(|e| e.into_inner()) = digest;
                tracing::info!("API key read again from its secret");
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the API key again; keeping the one held")
            }
        }
        self.matches(given)
    }
}

/// Access settings of the router. The default lets everyone in and sends no
/// CORS headers (browsers then only allow same-origin calls: the upload page).
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub(crate) api_key: Option<ApiKey>,
    /// Origins allowed to call the API from a browser; `*` allows any.
    pub(crate) cors_origins: Vec<HeaderValue>,
    pub(crate) cors_any: bool,
}

impl Access {
    /// From the `--api-key` / `--cors-origins` settings (empty = unset).
    pub(crate) fn new(api_key: Option<&str>, cors_origins: &[String]) -> Result<Self, AccessError> {
        let api_key = api_key
            .filter(|k| !k.trim().is_empty())
            .map(ApiKey::new)
            .transpose()?;
        Self::with_key(api_key, cors_origins)
    }

    /// With a key already made (one read from a [`KeySource`]).
    pub(crate) fn with_key(
        api_key: Option<ApiKey>,
        cors_origins: &[String],
    ) -> Result<Self, AccessError> {
        let mut access = Access {
            api_key,
            ..Default::default()
        };
        for origin in cors_origins
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
        {
            check_origin(origin)?;
            match HeaderValue::from_str(origin) {
                _ if origin == "*" => access.cors_any = true,
                Ok(value) => access.cors_origins.push(value),
                Err(_) => return Err(AccessError::BadOrigin(origin.to_string())),
            }
        }
        Ok(access)
    }

    /// The CORS layer, or `None` when CORS is off.
    pub(crate) fn cors_layer(&self) -> Option<CorsLayer> {
        let origins = if self.cors_any {
            AllowOrigin::any()
        } else if !self.cors_origins.is_empty() {
            AllowOrigin::list(self.cors_origins.clone())
        } else {
            return None;
        };
        Some(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    HeaderName::from_static(API_KEY_HEADER),
                ])
                .expose_headers([header::RETRY_AFTER])
                .max_age(std::time::Duration::from_secs(600)),
        )
    }
}

/// The key presented with a request: `Authorization: Bearer KEY` or `X-API-Key: KEY`.
fn presented(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(API_KEY_HEADER) {
        return Some(v.as_bytes());
    }
    let auth = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = auth.split_at(auth.len().min(7));
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// Whether the request carries the key (false when no key is set).
pub(crate) fn has_key(access: &Access, headers: &HeaderMap) -> bool {
    match (&access.api_key, presented(headers)) {
        (Some(key), Some(given)) => key.matches(given),
        _ => false,
    }
}

/// Set on requests that reached a keyless server bound to loopback and
/// named a local host: the only callers such a server trusts with details
/// (`/health`'s reason), as anyone on this machine could read its log.
#[derive(Debug, Clone, Copy)]
pub struct LocalCaller;

/// Whether `host` (a `Host` header or URI authority, port included or not)
/// names this machine: `localhost`, `*.localhost`, `127.0.0.0/8` or `[::1]`.
pub(crate) fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest)) if rest.is_empty() || rest.starts_with(':') => addr,
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Middleware of the protected sub-router (built in `http/mod.rs`):
/// 401 unless the request carries the key.
pub(crate) async fn require_key(State(key): State<ApiKey>, req: Request, next: Next) -> Response {
    let error = match presented(req.headers()) {
        Some(given) if key.check(given).await => return next.run(req).await,
        Some(_) => ApiError::new(ErrorCode::Unauthorized, "the API key is not valid"),
        None => ApiError::new(
            ErrorCode::Unauthorized,
            "this server requires an API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
        ),
    };
    let mut res = error.into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"catdog\""),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_exactly_and_short_keys_are_refused() {
        let key = ApiKey::new("correct horse battery staple").unwrap();
        assert!(key.matches(b"correct horse battery staple"));
        assert!(!key.matches(b"correct horse battery stapl"));
        assert!(!key.matches(b""));
        assert!(matches!(
            ApiKey::new("short"),
            Err(AccessError::ShortKey(5))
        ));
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
    }

    /// A key store whose key the test rotates, counting its reads.
    struct Rotating {
        key: Mutex<String>,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl KeySource for Rotating {
        fn fetch(&self) -> BoxFuture<'_, Result<String, AccessError>> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let key = self.key.lock().unwrap().clone();
            Box::pin(async move { Ok(key) })
        }
    }

    #[tokio::test]
    async fn a_rotated_key_is_read_again_at_most_once_a_minute() {
        let store = Arc::new(Rotating {
            key: Mutex::new("first-key-0123456789".into()),
            reads: Default::default(),
        });
        let reads = || store.reads.load(std::sync::atomic::Ordering::SeqCst);
        let key = ApiKey::from_source(store.clone()).await.unwrap();
        assert_eq!(reads(), 1);
        assert!(key.check(b"first-key-0123456789").await);
        *store.key.lock().unwrap() = "second-key-0123456789".into();
        // Read at start, under a minute ago: the new key is not fetched yet,
        // however many wrong keys come.
        for _ in 0..100 {
            assert!(!key.check(b"second-key-0123456789").await);
        }
        assert_eq!(reads(), 1);
        // A minute later, one mismatch reads the store once, and the
        // rotated key is taken; the old one is then refused.
        *key.0.read_at.lock().unwrap() = Instant::now().checked_sub(REFRESH_EVERY).unwrap();
        assert!(key.check(b"second-key-0123456789").await);
        assert_eq!(reads(), 2);
        assert!(!key.check(b"first-key-0123456789").await);
        assert_eq!(reads(), 2);
    }

    #[test]
    fn the_key_is_read_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  abc "),
        );
        assert_eq!(presented(&h), Some(&b"abc"[..]));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented(&h), None);
        h.insert(API_KEY_HEADER, HeaderValue::from_static("xyz"));
        assert_eq!(presented(&h), Some(&b"xyz"[..]));
    }

    #[test]
    fn local_hosts_are_told_from_rebound_names() {
        for local in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "app.localhost:3000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_local_host(local), "{local}");
        }
        for remote in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1",
            "[::2]:80",
            "[::1",
            "",
        ] {
            assert!(!is_local_host(remote), "{remote}");
        }
    }

    #[test]
    fn cors_origins_are_checked() {
        assert!(Access::new(None, &[]).unwrap().cors_layer().is_none());
        let a = Access::new(
            None,
            &["https://a.example".into(), "http://localhost:3000".into()],
        )
        .unwrap();
        assert_eq!(a.cors_origins.len(), 2);
        assert!(a.cors_layer().is_some());
        assert!(Access::new(None, &["*".into()]).unwrap().cors_any);
        for bad in [
            "a.example",
            "https://a.example/",
            "https://a.example/x",
            "ftp://a.example",
        ] {
            assert!(Access::new(None, &[bad.into()]).is_err(), "{bad}");
        }
    }
}
