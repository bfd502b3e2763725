//! Who may call the API: an optional API key, and which web origins may call
//! it from a browser (CORS). Both apply on every host, since they are layers
//! of the one router.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::http::code::ErrorCode;
use crate::http::error::ApiError;

/// Shortest API key accepted: shorter ones are guessable.
pub const MIN_KEY_CHARS: usize = 16;

/// The header a browser page (or any client) may send the key in, besides
/// `Authorization: Bearer`.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Why the access settings were refused at start.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("the API key must be at least {MIN_KEY_CHARS} characters (got {0})")]
    ShortKey(usize),
    #[error("CORS origin {0:?} is not an origin like https://example.com (scheme://host[:port], no path)")]
    BadOrigin(String),
}

/// An API key, kept only as its SHA-256 so comparing is constant-time and
/// length-independent; never printed.
#[derive(Clone)]
pub struct ApiKey([u8; 32]);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Checks a key's length (surrounding blanks do not count).
pub fn check_key(key: &str) -> Result<(), AccessError> {
    match key.trim().chars().count() {
        n if n < MIN_KEY_CHARS => Err(AccessError::ShortKey(n)),
        _ => Ok(()),
    }
}

/// Checks that `origin` is a web origin: `scheme://host[:port]`, no path.
pub fn check_origin(origin: &str) -> Result<(), AccessError> {
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

impl ApiKey {
    pub fn new(key: &str) -> Result<Self, AccessError> {
        check_key(key)?;
        Ok(Self(Sha256::digest(key.trim().as_bytes()).into()))
    }

    /// Constant-time check of a presented key.
    pub fn matches(&self, given: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(given).into();
        self.0.ct_eq(&digest).into()
    }
}

/// Access settings of the router. The default lets everyone in and sends no
/// CORS headers (browsers then only allow same-origin calls: the upload page).
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub api_key: Option<ApiKey>,
    /// Origins allowed to call the API from a browser; `*` allows any.
    pub cors_origins: Vec<HeaderValue>,
    pub cors_any: bool,
}

impl Access {
    /// From the `--api-key` / `--cors-origins` settings (empty = unset).
    pub fn new(api_key: Option<&str>, cors_origins: &[String]) -> Result<Self, AccessError> {
        let api_key = api_key
            .filter(|k| !k.trim().is_empty())
            .map(ApiKey::new)
            .transpose()?;
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
    pub fn cors_layer(&self) -> Option<CorsLayer> {
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

/// Middleware of the protected sub-router (built in `http/mod.rs`):
/// 401 unless the request carries the key.
pub async fn require_key(State(key): State<ApiKey>, req: Request, next: Next) -> Response {
    let error = match presented(req.headers()) {
        Some(given) if key.matches(given) => return next.run(req).await,
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
