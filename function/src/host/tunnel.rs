//! A public HTTPS URL for the local router through ngrok (the Rust SDK): the
//! counterpart of the tutorial's flask-ngrok, opened by the serve host
//! (`catdog serve --ngrok` and the notebook alike). The tunnel serves the
//! *same* router; without network or with a bad token it fails within the
//! connect timeout with a clear message and the local server is unaffected.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::TryStreamExt;

use crate::host::connections::{self, ConnectionLimits};
use crate::settings::TunnelSettings;
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
    #[error(
        "refusing to open a public URL that nothing guards: anyone could classify, mint upload \
         tickets signed with this machine's AWS credentials and read /metrics; set an API key \
         (CATDOG_API_KEY), or an ngrok protection (--ngrok-basic-auth, --ngrok-oauth with an \
         allow-list, --ngrok-allow-cidr), or pass --public to open it anyway"
    )]
    Unprotected,
    #[error(
        "--ngrok-oauth {0} without --ngrok-oauth-allow-email or --ngrok-oauth-allow-domain \
         lets in anyone with a {0} account; name who may come in, or pass --public"
    )]
    OauthOpen(String),
}

/// Whether the tunnel may open: something must guard it (the router's API
/// key, or an ngrok protection that names who may come in), unless
/// `--public` says an open URL is what is wanted.
pub(crate) fn check_guarded(config: &TunnelSettings, keyed: bool) -> Result<(), TunnelError> {
    if config.public {
        return Ok(());
    }
    if let Some(provider) = &config.oauth_provider {
        if config.oauth_allow_emails.is_empty() && config.oauth_allow_domains.is_empty() {
            return Err(TunnelError::OauthOpen(provider.clone()));
        }
    }
    // An allow-list of every address (`0.0.0.0/0`, `::/0`) guards nothing.
    let allow_list = config.allow_cidrs.iter().any(|c| !c.ends_with("/0"));
    let guarded =
        keyed || !config.basic_auth.is_empty() || config.oauth_provider.is_some() || allow_list;
    if guarded {
        Ok(())
    } else {
        Err(TunnelError::Unprotected)
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

/// The endpoint settings the tunnel's protections turn into: one method per
/// ngrok builder call, so the mapping is tested without the ngrok service.
pub(crate) trait EndpointOptions {
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
pub(crate) fn apply_protections(config: &TunnelSettings, endpoint: &mut impl EndpointOptions) {
    if let Some(d) = &config.domain {
        endpoint.domain(d);
    }
    for auth in &config.basic_auth {
        endpoint.basic_auth(&auth.user, auth.password.expose());
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

/// Opens an HTTPS endpoint and serves `router` on it in the background,
/// once [`check_guarded`] passed (`keyed`: the router asks for an API key).
pub(crate) async fn open(
    config: &TunnelSettings,
    router: axum::Router,
    keyed: bool,
    limits: ConnectionLimits,
) -> Result<Tunnel, TunnelError> {
    let token = config
        .authtoken
        .as_ref()
        .ok_or(TunnelError::NoToken)?
        .expose()
        .to_string();
    check_guarded(config, keyed)?;
    let timeout = config.connect_timeout();
    // Two TLS backends are linked (ring via reqwest, aws-lc-rs via the AWS SDK
    // and ngrok): name the process default, or rustls refuses to choose.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut builder = ngrok::Session::builder();
    builder.authtoken(token);
    let connect = builder.connect();
    let session = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| TunnelError::Timeout(timeout))?
        .map_err(|e| TunnelError::Connect(e.to_string()))?;
    let mut endpoint = session.http_endpoint();
    apply_protections(config, &mut endpoint);
    let tunnel = tokio::time::timeout(timeout, endpoint.listen())
        .await
        .map_err(|_| TunnelError::Timeout(timeout))?
        .map_err(|e| TunnelError::Listen(e.to_string()))?;
    let url = tunnel.url().to_string();
    let task = tokio::spawn(async move {
        let forever = std::future::pending();
        if let Err(e) = connections::serve(NgrokListener(tunnel), router, limits, forever).await {
            tracing::error!(error = %e, "ngrok tunnel stopped");
        }
    });
    tracing::info!(url = %url, protections = ?config.describe(), "public URL open");
    Ok(Tunnel { url, task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn tunnel(args: &[&str]) -> TunnelSettings {
        Settings::from_args(args.iter().copied()).unwrap().tunnel
    }

    fn limits() -> ConnectionLimits {
        Settings::from_args(["serve"; 0])
            .unwrap()
            .connection_limits()
    }

    #[tokio::test]
    async fn without_a_token_it_says_so() {
        let mut c = tunnel(&[]);
        c.authtoken = None;
        let err = open(&c, axum::Router::new(), true, limits())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, TunnelError::NoToken));
    }

    #[tokio::test]
    async fn without_network_it_fails_fast_and_clearly() {
        let c = tunnel(&[
            "--ngrok-authtoken",
            "not-a-real-token",
            "--ngrok-timeout-s",
            "5",
        ]);
        let started = std::time::Instant::now();
        let err = open(&c, axum::Router::new(), true, limits())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, TunnelError::Connect(_) | TunnelError::Timeout(_)),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(6));
    }

    #[tokio::test]
    async fn an_unguarded_tunnel_is_refused_before_ngrok_is_called() {
        let token = ["--ngrok-authtoken", "not-a-real-token"];
        let with = |more: &[&str]| tunnel(&[&token[..], more].concat());
        // Refused at once, before any connection (no network needed).
        let err = open(&with(&[]), axum::Router::new(), false, limits())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, TunnelError::Unprotected), "{err}");
        assert!(err.to_string().contains("--public"), "{err}");
        let err = check_guarded(&with(&["--ngrok-oauth", "google"]), false).unwrap_err();
        assert!(matches!(err, TunnelError::OauthOpen(_)), "{err}");
        // An OAuth without an allow-list is refused even behind a key.
        assert!(check_guarded(&with(&["--ngrok-oauth", "google"]), true).is_err());
        for guarded in [
            &["--ngrok-basic-auth", "ann:correct-horse-1"][..],
            &[
                "--ngrok-oauth",
                "google",
                "--ngrok-oauth-allow-domain",
                "example.org",
            ],
            &["--ngrok-allow-cidr", "10.0.0.0/8"],
            &["--public"],
            &["--ngrok-oauth", "google", "--public"],
        ] {
            check_guarded(&with(guarded), false).unwrap_or_else(|e| panic!("{guarded:?}: {e}"));
        }
        // A deny-list alone leaves everyone else in; so does allowing all.
        assert!(check_guarded(&with(&["--ngrok-deny-cidr", "10.0.0.0/8"]), false).is_err());
        assert!(check_guarded(&with(&["--ngrok-allow-cidr", "0.0.0.0/0"]), false).is_err());
        check_guarded(&with(&[]), true).unwrap();
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
        let config = tunnel(&[
            "--ngrok-domain",
            "cats.ngrok.app",
            "--ngrok-basic-auth",
            "ann:correct-horse-1,bob:battery-staple-2",
            "--ngrok-oauth",
            "google",
            "--ngrok-oauth-allow-email",
            "ann@example.com",
            "--ngrok-oauth-allow-domain",
            "example.org,example.net",
            "--ngrok-allow-cidr",
            "10.0.0.0/8",
            "--ngrok-deny-cidr",
            "10.1.0.0/16",
        ]);
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
        assert!(
            !config.describe().join(" ").contains("correct-horse"),
            "no secrets in the description"
        );
        // nothing configured: an open endpoint, no call at all
        let mut r = Recorder::default();
        let mut bare = tunnel(&[]);
        bare.authtoken = None;
        apply_protections(&bare, &mut r);
        assert!(r.0.is_empty());
    }
}
