//! A public HTTPS URL for the local router through ngrok (the Rust SDK): the
//! counterpart of the tutorial's flask-ngrok, used by `catdog serve --ngrok`
//! and the notebook alike. The tunnel serves the *same* router; without
//! network or with a bad token it fails within `connect_timeout` with a clear
//! message and the local server is unaffected.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::TryStreamExt;
use ngrok::config::OauthOptions;
use ngrok::prelude::*;

/// Why the tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("no ngrok authtoken: set NGROK_AUTHTOKEN (https://dashboard.ngrok.com/get-started/your-authtoken)")]
    NoToken,
    #[error("ngrok: {0}")]
    Config(String),
    #[error("ngrok: could not connect within {0:?} (no network, or ngrok unreachable)")]
    Timeout(Duration),
    #[error("ngrok: could not connect: {0}")]
    Connect(String),
    #[error("ngrok: could not open the endpoint: {0}")]
    Listen(String),
}

/// How to open and protect the public endpoint (flags with env fallbacks in the CLI).
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    pub authtoken: Option<String>,
    /// A reserved domain (optional).
    pub domain: Option<String>,
    /// `user:password` pairs; the endpoint asks for one of them.
    pub basic_auth: Vec<(String, String)>,
    /// OAuth provider (`google`, `github`, …) people must log in with.
    pub oauth_provider: Option<String>,
    pub oauth_allow_emails: Vec<String>,
    pub oauth_allow_domains: Vec<String>,
    /// Only these client networks may connect (CIDR), others are refused.
    pub allow_cidrs: Vec<String>,
    pub deny_cidrs: Vec<String>,
    pub connect_timeout: Duration,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        Self {
            authtoken: std::env::var("NGROK_AUTHTOKEN")
                .ok()
                .filter(|s| !s.is_empty()),
            domain: None,
            basic_auth: vec![],
            oauth_provider: None,
            oauth_allow_emails: vec![],
            oauth_allow_domains: vec![],
            allow_cidrs: vec![],
            deny_cidrs: vec![],
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl TunnelConfig {
    /// The configuration from the environment variables `catdog serve --ngrok`
    /// also reads: `NGROK_AUTHTOKEN`, `NGROK_DOMAIN`, `NGROK_BASIC_AUTH`
    /// (`user:password`, comma-separated), `NGROK_OAUTH_PROVIDER`,
    /// `NGROK_OAUTH_ALLOW_EMAILS`, `NGROK_OAUTH_ALLOW_DOMAINS`,
    /// `NGROK_ALLOW_CIDRS`, `NGROK_DENY_CIDRS` (comma-separated lists).
    pub fn from_env() -> Result<Self, TunnelError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`TunnelConfig::from_env`] over any variable lookup (testable without
    /// touching the process environment).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, TunnelError> {
        let one = |name: &str| var(name).filter(|s| !s.trim().is_empty());
        let list = |name: &str| -> Vec<String> {
            one(name)
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Self {
            authtoken: one("NGROK_AUTHTOKEN"),
            domain: one("NGROK_DOMAIN"),
            basic_auth: list("NGROK_BASIC_AUTH")
                .iter()
                .map(|s| Self::parse_basic_auth(s))
                .collect::<Result<_, _>>()?,
            oauth_provider: one("NGROK_OAUTH_PROVIDER"),
            oauth_allow_emails: list("NGROK_OAUTH_ALLOW_EMAILS"),
            oauth_allow_domains: list("NGROK_OAUTH_ALLOW_DOMAINS"),
            allow_cidrs: list("NGROK_ALLOW_CIDRS"),
            deny_cidrs: list("NGROK_DENY_CIDRS"),
            ..Self::default()
        })
    }

    /// Parses a `user:password` credential (ngrok wants 8–128 character passwords).
    pub fn parse_basic_auth(s: &str) -> Result<(String, String), TunnelError> {
        let (user, pass) = s
            .split_once(':')
            .ok_or_else(|| TunnelError::Config("basic auth must be user:password".into()))?;
        if user.is_empty() || !(8..=128).contains(&pass.len()) {
            return Err(TunnelError::Config(
                "basic auth needs a user and a password of 8 to 128 characters".into(),
            ));
        }
        Ok((user.to_string(), pass.to_string()))
    }

    /// Checks what can be checked without the service.
    pub fn validate(&self) -> Result<(), TunnelError> {
        for cidr in self.allow_cidrs.iter().chain(&self.deny_cidrs) {
            let (addr, bits) = cidr
                .split_once('/')
                .ok_or_else(|| TunnelError::Config(format!("{cidr:?} is not a CIDR")))?;
            let ip: std::net::IpAddr = addr
                .parse()
                .map_err(|_| TunnelError::Config(format!("{cidr:?} is not a CIDR")))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            if bits.parse::<u8>().ok().filter(|b| *b <= max).is_none() {
                return Err(TunnelError::Config(format!(
                    "{cidr:?} has a bad prefix length"
                )));
            }
        }
        if self.oauth_provider.is_none()
            && !(self.oauth_allow_emails.is_empty() && self.oauth_allow_domains.is_empty())
        {
            return Err(TunnelError::Config(
                "OAuth allow lists need an OAuth provider".into(),
            ));
        }
        Ok(())
    }

    /// The protections, as applied to the endpoint (also for logs: no secrets).
    pub fn describe(&self) -> Vec<String> {
        let mut d = Vec::new();
        if !self.basic_auth.is_empty() {
            d.push(format!("basic auth ({} user(s))", self.basic_auth.len()));
        }
        if let Some(p) = &self.oauth_provider {
            d.push(format!(
                "oauth {p} (emails {:?}, domains {:?})",
                self.oauth_allow_emails, self.oauth_allow_domains
            ));
        }
        if !self.allow_cidrs.is_empty() {
            d.push(format!("allow {:?}", self.allow_cidrs));
        }
        if !self.deny_cidrs.is_empty() {
            d.push(format!("deny {:?}", self.deny_cidrs));
        }
        d
    }
}

/// An open tunnel serving the router; dropping it (or [`Tunnel::close`]) stops it.
pub struct Tunnel {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Tunnel {
    pub fn close(self) {
        self.task.abort();
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Adapts an ngrok endpoint to axum's `Listener`, so `axum::serve` runs the router on it.
struct NgrokListener(ngrok::tunnel::HttpTunnel);

impl axum::serve::Listener for NgrokListener {
    type Io = ngrok::conn::EndpointConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.try_next().await {
                Ok(Some(conn)) => {
                    let addr = conn.remote_addr();
                    return (conn, addr);
                }
                Ok(None) => std::future::pending::<()>().await,
                Err(e) => {
                    tracing::warn!(error = %e, "ngrok accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

/// Opens an HTTPS endpoint and serves `router` on it in the background.
/// The endpoint settings the tunnel's protections turn into: one method per
/// ngrok builder call, so the mapping is tested without the ngrok service.
pub trait EndpointOptions {
    fn domain(&mut self, domain: &str);
    fn basic_auth(&mut self, user: &str, password: &str);
    fn oauth(&mut self, provider: &str, allow_emails: &[String], allow_domains: &[String]);
    fn allow_cidr(&mut self, cidr: &str);
    fn deny_cidr(&mut self, cidr: &str);
}

impl EndpointOptions for ngrok::config::HttpTunnelBuilder {
    fn domain(&mut self, domain: &str) {
        ngrok::config::HttpTunnelBuilder::domain(self, domain);
    }
    fn basic_auth(&mut self, user: &str, password: &str) {
        ngrok::config::HttpTunnelBuilder::basic_auth(self, user, password);
    }
    fn oauth(&mut self, provider: &str, allow_emails: &[String], allow_domains: &[String]) {
        let mut o = OauthOptions::new(provider);
        for e in allow_emails {
            o.allow_email(e);
        }
        for d in allow_domains {
            o.allow_domain(d);
        }
        ngrok::config::HttpTunnelBuilder::oauth(self, o);
    }
    fn allow_cidr(&mut self, cidr: &str) {
        ngrok::config::HttpTunnelBuilder::allow_cidr(self, cidr);
    }
    fn deny_cidr(&mut self, cidr: &str) {
        ngrok::config::HttpTunnelBuilder::deny_cidr(self, cidr);
    }
}

/// Applies the configured protections to an endpoint builder.
pub fn apply_protections(config: &TunnelConfig, endpoint: &mut impl EndpointOptions) {
    if let Some(d) = &config.domain {
        endpoint.domain(d);
    }
    for (user, pass) in &config.basic_auth {
        endpoint.basic_auth(user, pass);
    }
    if let Some(provider) = &config.oauth_provider {
        endpoint.oauth(
            provider,
            &config.oauth_allow_emails,
            &config.oauth_allow_domains,
        );
    }
    for c in &config.allow_cidrs {
        endpoint.allow_cidr(c);
    }
    for c in &config.deny_cidrs {
        endpoint.deny_cidr(c);
    }
}

pub async fn open(config: &TunnelConfig, router: axum::Router) -> Result<Tunnel, TunnelError> {
    config.validate()?;
    let token = config.authtoken.clone().ok_or(TunnelError::NoToken)?;
    // Two TLS backends are linked (ring via reqwest, aws-lc-rs via the AWS SDK
    // and ngrok): name the process default, or rustls refuses to choose.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut builder = ngrok::Session::builder();
    builder.authtoken(token);
    let connect = builder.connect();
    let session = tokio::time::timeout(config.connect_timeout, connect)
        .await
        .map_err(|_| TunnelError::Timeout(config.connect_timeout))?
        .map_err(|e| TunnelError::Connect(e.to_string()))?;
    let mut endpoint = session.http_endpoint();
    apply_protections(config, &mut endpoint);
    let tunnel = tokio::time::timeout(config.connect_timeout, endpoint.listen())
        .await
        .map_err(|_| TunnelError::Timeout(config.connect_timeout))?
        .map_err(|e| TunnelError::Listen(e.to_string()))?;
    let url = tunnel.url().to_string();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(NgrokListener(tunnel), router).await {
            tracing::error!(error = %e, "ngrok tunnel stopped");
        }
    });
    tracing::info!(url = %url, protections = ?config.describe(), "public URL open");
    Ok(Tunnel { url, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protections_are_checked_before_connecting() {
        assert!(TunnelConfig::parse_basic_auth("me:long-enough").is_ok());
        assert!(TunnelConfig::parse_basic_auth("me:short").is_err());
        assert!(TunnelConfig::parse_basic_auth("nopassword").is_err());
        let mut c = TunnelConfig {
            authtoken: Some("t".into()),
            ..TunnelConfig::default()
        };
        c.allow_cidrs = vec!["10.0.0.0/8".into(), "2001:db8::/32".into()];
        assert!(c.validate().is_ok());
        c.deny_cidrs = vec!["10.0.0.0/40".into()];
        assert!(c.validate().is_err());
        let c = TunnelConfig {
            oauth_allow_emails: vec!["a@b.c".into()],
            ..TunnelConfig::default()
        };
        assert!(c.validate().is_err(), "allow lists without a provider");
    }

    #[test]
    fn the_environment_gives_the_same_settings_as_the_flags() {
        let env = |name: &str| -> Option<String> {
            match name {
                "NGROK_AUTHTOKEN" => Some("tok".into()),
                "NGROK_BASIC_AUTH" => Some("ann:longpassword, bob:otherpassword".into()),
                "NGROK_OAUTH_PROVIDER" => Some("github".into()),
                "NGROK_OAUTH_ALLOW_DOMAINS" => Some("example.com".into()),
                "NGROK_ALLOW_CIDRS" => Some("10.0.0.0/8,192.168.0.0/16".into()),
                "NGROK_DOMAIN" => Some(" ".into()),
                _ => None,
            }
        };
        let c = TunnelConfig::from_vars(env).unwrap();
        assert_eq!(c.authtoken.as_deref(), Some("tok"));
        assert_eq!(c.domain, None, "blank means unset");
        assert_eq!(
            c.basic_auth,
            vec![
                ("ann".to_string(), "longpassword".to_string()),
                ("bob".to_string(), "otherpassword".to_string())
            ]
        );
        assert_eq!(c.oauth_provider.as_deref(), Some("github"));
        assert_eq!(c.oauth_allow_domains, ["example.com"]);
        assert_eq!(c.allow_cidrs, ["10.0.0.0/8", "192.168.0.0/16"]);
        assert!(c.validate().is_ok());
        let weak = TunnelConfig::from_vars(|n| (n == "NGROK_BASIC_AUTH").then(|| "a:b".into()));
        assert!(weak.is_err(), "a short password is refused");
    }

    #[tokio::test]
    async fn without_a_token_it_says_so() {
        let c = TunnelConfig {
            authtoken: None,
            ..TunnelConfig::default()
        };
        let err = open(&c, axum::Router::new()).await.err().unwrap();
        assert!(matches!(err, TunnelError::NoToken));
    }

    /// Records the builder calls the protections turn into.
    #[derive(Default)]
    struct Recorder(Vec<String>);

    impl EndpointOptions for Recorder {
        fn domain(&mut self, domain: &str) {
            self.0.push(format!("domain {domain}"));
        }
        fn basic_auth(&mut self, user: &str, password: &str) {
            self.0.push(format!("basic_auth {user}:{password}"));
        }
        fn oauth(&mut self, provider: &str, emails: &[String], domains: &[String]) {
            self.0
                .push(format!("oauth {provider} {emails:?} {domains:?}"));
        }
        fn allow_cidr(&mut self, cidr: &str) {
            self.0.push(format!("allow_cidr {cidr}"));
        }
        fn deny_cidr(&mut self, cidr: &str) {
            self.0.push(format!("deny_cidr {cidr}"));
        }
    }

    #[test]
    fn settings_become_the_matching_builder_calls() {
        let vars = |name: &str| {
            match name {
                "NGROK_DOMAIN" => Some("cats.ngrok.app"),
                "NGROK_BASIC_AUTH" => Some("ann:correct-horse-1,bob:battery-staple-2"),
                "NGROK_OAUTH_PROVIDER" => Some("google"),
                "NGROK_OAUTH_ALLOW_EMAILS" => Some("ann@example.com"),
                "NGROK_OAUTH_ALLOW_DOMAINS" => Some("example.org,example.net"),
                "NGROK_ALLOW_CIDRS" => Some("10.0.0.0/8"),
                "NGROK_DENY_CIDRS" => Some("10.1.0.0/16"),
                _ => None,
            }
            .map(str::to_string)
        };
        let config = TunnelConfig::from_vars(vars).unwrap();
        config.validate().unwrap();
        let mut r = Recorder::default();
        apply_protections(&config, &mut r);
        assert_eq!(
            r.0,
            [
                "domain cats.ngrok.app",
                "basic_auth ann:correct-horse-1",
                "basic_auth bob:battery-staple-2",
                "oauth google [\"ann@example.com\"] [\"example.org\", \"example.net\"]",
                "allow_cidr 10.0.0.0/8",
                "deny_cidr 10.1.0.0/16",
            ]
        );
        // nothing configured: an open endpoint, no call at all
        let mut r = Recorder::default();
        apply_protections(&TunnelConfig::from_vars(|_| None).unwrap(), &mut r);
        assert!(r.0.is_empty());
    }
}
