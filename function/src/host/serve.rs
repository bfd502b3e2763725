//! The serve host: the router on a local TCP port, for `catdog serve` and
//! the notebook alike. It binds at once, answers 503 while the model loads
//! in the background (retrying fetches that may pass), can open the ngrok
//! tunnel to the same router, and stops cleanly.
//!
//! The server runs on a tokio runtime of its own, so it keeps serving whatever
//! the caller's runtime does: a notebook kernel (evcxr) drives each cell's
//! `.await`s on a runtime that does not run between cells, which would freeze
//! a server spawned there.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::host::tunnel::{self, Tunnel, TunnelError};
use crate::host::{connections, secret_key};
use crate::http::access::{self, AccessError};
use crate::http::state::AppState;
use crate::model::load::{self, LoadError};
use crate::model::Classifier;
use crate::pipeline::ModelState;
use crate::settings::Settings;

/// Why serving could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("access settings: {0}")]
    Access(#[from] AccessError),
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: String, error: std::io::Error },
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
    #[error("the model failed to load: {0}")]
    Failed(String),
    #[error("the new model did not load, so the server keeps the one it had: {0}")]
    Swap(#[source] LoadError),
    #[error("the model was not ready within {0:?}{1}")]
    NotReady(Duration, String),
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
    #[error(
        "refusing to serve {0} without an API key: anyone who can reach it could classify, mint \
         upload tickets signed with this machine's AWS credentials and read /metrics; set \
         CATDOG_API_KEY, or listen on 127.0.0.1 (the default), or pass --public to serve it anyway"
    )]
    Unguarded(SocketAddr),
    #[error(transparent)]
    Feedback(#[from] crate::feedback::Overlap),
}

/// A router being served on a local port; [`Server::stop`] ends it.
pub struct Server {
    /// Where it listens, e.g. `http://127.0.0.1:8080/`.
    pub url: String,
    pub addr: SocketAddr,
    state: AppState,
    router: axum::Router,
    settings: Settings,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Binds as `settings` say (port 0 picks a free one), serves the router
    /// with the model loading in the background. Binding errors (port in
    /// use, unknown host) and bad access settings are returned here, before
    /// anything runs.
    pub fn start(settings: &Settings) -> Result<Self, ServeError> {
        let state = AppState::loading(
            settings.request_limits(),
            secret_key::access_blocking(settings)?,
        )
        .with_emf(settings.emf())
        .with_stored_pictures(settings.stored_pictures())
        .with_feedback(settings.feedback_sink()?);
        let server = Self::bind(crate::http::router(state.clone()), state, settings)?;
        let spec = settings.model_spec();
        let policy = settings.retry_policy().unbounded();
        let state = server.state.clone();
        server.runtime().spawn(async move {
            // The pauses double up to a minute; meanwhile requests get 503
            // with the reason.
            let on_retry = |e: &LoadError, attempt: u32, pause: Duration| {
                state.set_retrying(format!(
                    "{e} (try {attempt}; next in {:.1} s)",
                    pause.as_secs_f64()
                ));
            };
            // A bug in loading must not leave the server "loading" for ever.
            let loading = load::load_classifier_with_retries(&spec, policy, on_retry);
            match futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(loading)).await
            {
                Ok(Ok(c)) => state.set_ready(Arc::new(c)),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "model failed to load");
                    state.set_failed(e.to_string());
                }
                Err(_) => {
                    tracing::error!("model loading panicked");
                    state.set_failed(
                        "internal error while loading the model (see the server log)".into(),
                    );
                }
            }
        });
        Ok(server)
    }

    /// Serves `router` on the settings' address in the background until
    /// stopped; `state` is what it answers from.
    pub fn bind(
        router: axum::Router,
        state: AppState,
        settings: &Settings,
    ) -> Result<Self, ServeError> {
        let addr = &settings.bind_address();
        let bind_err = |error| ServeError::Bind {
            addr: addr.to_string(),
            error,
        };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        if !local.ip().is_loopback() && state.access.api_key.is_none() && !settings.tunnel.public {
            return Err(ServeError::Unguarded(local));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .thread_name("catdog-serve")
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = local_only(router.clone(), &local, &state);
        let limits = settings.connection_limits();
        let task = runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            connections::serve(listener, app, limits, async {
                let _ = stopped.await;
            })
            .await
        });
        let url = format!("http://{local}/");
        tracing::info!(url = %url, "listening");
        Ok(Self {
            url,
            addr: local,
            state,
            router,
            settings: settings.clone(),
            runtime: Some(runtime),
            stop: Some(stop),
            task: Some(task),
        })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until stop")
    }

    /// The state the router answers from.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Waits (blocking) until the model is ready and returns it; fails at
    /// once when it failed, or after `timeout` (a fetch still being retried).
    /// Not from async code: use [`Server::ready`] there.
    pub fn wait_ready(&self, timeout: Duration) -> Result<Arc<Classifier>, ServeError> {
        self.runtime().block_on(self.ready(timeout))
    }

    /// [`Server::wait_ready`] for async code.
    pub async fn ready(&self, timeout: Duration) -> Result<Arc<Classifier>, ServeError> {
        let deadline = Instant::now() + timeout;
        loop {
            let why = match self.state.model() {
                ModelState::Ready(r) => return Ok(r.classifier),
                ModelState::Failed(reason) => return Err(ServeError::Failed(reason)),
                ModelState::Retrying(reason) => format!(" (last fetch: {reason})"),
                ModelState::Loading => String::new(),
            };
            if Instant::now() >= deadline {
                return Err(ServeError::NotReady(timeout, why));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Serves another model from now on, without a restart: it is loaded
    /// beside the current one (which keeps answering meanwhile), then takes
    /// its place; requests already in flight finish on the old one. The new
    /// model brings its own contract (labels, preprocessing, `rejection`):
    /// the settings' overrides of those were for the old one. Blocking.
    pub fn swap_model(&self, uri: &str) -> Result<Arc<Classifier>, ServeError> {
        let mut spec = self.settings.model_spec();
        spec.uri = Some(uri.to_string());
        spec.sha256 = None;
        spec.contract.labels = None;
        spec.contract.preprocessing = None;
        let classifier = Arc::new(
            self.runtime()
                .block_on(load::load_classifier(&spec))
                .map_err(ServeError::Swap)?,
        );
        self.state.set_ready(classifier.clone());
        Ok(classifier)
    }

    /// Opens the ngrok tunnel to this server's router, on its runtime so it
    /// lives as long as the server does. Blocking (at most the connect
    /// timeout): from async code use [`Server::spawn_tunnel`].
    pub fn open_tunnel(&self) -> Result<Tunnel, TunnelError> {
        self.runtime().block_on(tunnel::open(
            &self.settings.tunnel,
            self.router.clone(),
            self.keyed(),
            self.settings.connection_limits(),
        ))
    }

    /// Whether the router asks for an API key.
    fn keyed(&self) -> bool {
        self.state.access.api_key.is_some()
    }

    /// Opens the tunnel in the background; its failure never stops the
    /// local server (it is logged and announced).
    fn spawn_tunnel(
        &self,
        announce: impl Fn(Announcement<'_>) + Send + 'static,
    ) -> JoinHandle<Option<Tunnel>> {
        let config = self.settings.tunnel.clone();
        let router = self.router.clone();
        let keyed = self.keyed();
        let limits = self.settings.connection_limits();
        self.runtime().spawn(async move {
            match tunnel::open(&config, router, keyed, limits).await {
                Ok(t) => {
                    let guards = config.describe();
                    announce(Announcement::Public {
                        url: &t.url,
                        guards: &guards,
                    });
                    Some(t)
                }
                Err(e) => {
                    tracing::error!(error = %e, "no public URL; the local server keeps running");
                    announce(Announcement::LocalOnly(&e));
                    None
                }
            }
        })
    }

    /// Waits until the server ends on its own (an I/O error) — for hosts
    /// that serve until a signal: race it with the signal, then [`stop`](Self::stop).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match self.task.as_mut() {
            Some(task) => {
                let r = task.await;
                self.task = None;
                r.unwrap_or_else(|e| Err(std::io::Error::other(e)))
            }
            None => std::future::pending().await,
        }
    }

    /// Stops accepting connections, lets requests in flight finish, and
    /// returns once the port is closed. Blocking: from async code, call it
    /// through `spawn_blocking`.
    pub fn stop(mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let result = match (self.task.take(), &self.runtime) {
            (Some(task), Some(rt)) => rt
                .block_on(task)
                .unwrap_or_else(|e| Err(std::io::Error::other(e))),
            _ => Ok(()),
        };
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        self.state.wait_for_packing(PACKING_AT_STOP);
        result
    }
}

/// How long stopping waits for the weights being packed (seconds for
/// VGG16; the process must not exit under ONNX Runtime's feet).
const PACKING_AT_STOP: std::time::Duration = std::time::Duration::from_secs(30);

/// The router as the local port serves it: on a loopback address without
/// an API key, only for requests that name a local host
/// ([`access::local_hosts_only`]); the tunnel serves the router without it.
fn local_only(router: axum::Router, addr: &SocketAddr, state: &AppState) -> axum::Router {
    if addr.ip().is_loopback() && state.access.api_key.is_none() {
        router.layer(axum::middleware::from_fn(local_hosts_only))
    } else {
        router
    }
}

/// Middleware of a keyless server bound to loopback (`catdog serve` without
/// a key, the notebook): a request addressed to another host name is a web
/// page's DNS rebinding (a name of the attacker's that resolves to
/// 127.0.0.1), so it is refused with 421, as Jupyter's server does; the
/// rest are marked [`access::LocalCaller`]. The ngrok tunnel does not pass
/// here. A request without a `Host` (not a browser's) is this machine's.
async fn local_hosts_only(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if host.is_none_or(access::is_local_host) {
        req.extensions_mut().insert(access::LocalCaller);
        return next.run(req).await;
    }
    let v2 = crate::http::v2::is_v2_path(req.uri().path());
    let res = crate::error::ApiError::new(
        crate::error::ErrorCode::MisdirectedRequest,
        "this server listens on loopback without an API key, so it answers only requests \
         addressed to localhost, 127.0.0.1 or [::1]; to serve other names, set an API key \
         (CATDOG_API_KEY)",
    )
    .into_response();
    if v2 {
        crate::http::error::in_oip_shape(res)
    } else {
        res
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Dropped without stop(): still close the port rather than leak a server.
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(rt) = self.runtime.take() {
            // Dropping a runtime inside async code is refused; this is the sanctioned way.
            rt.shutdown_background();
        }
    }
}

/// Where `catdog serve` can be reached, as it learns it ([`fmt::Display`]:
/// the line to show a user).
pub enum Announcement<'a> {
    /// The local server is up.
    Serving { url: &'a str },
    /// The tunnel is open, with what guards it.
    Public { url: &'a str, guards: &'a [String] },
    /// The tunnel could not open; the local server keeps running.
    LocalOnly(&'a TunnelError),
}

impl fmt::Display for Announcement<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Announcement::Serving { url } => {
                write!(f, "serving on {url} (upload page), POST /predict")
            }
            Announcement::Public { url, guards } => {
                write!(f, "public URL {url} ({})", guards.join(", "))
            }
            Announcement::LocalOnly(e) => write!(f, "{e}; serving locally only"),
        }
    }
}

/// `catdog serve`: serve until Ctrl-C or SIGTERM, with the tunnel when
/// asked, telling `announce` where it can be reached.
pub async fn run(
    settings: &Settings,
    announce: impl Fn(Announcement<'_>) + Send + 'static,
) -> Result<(), ServeError> {
    // An unguarded tunnel is refused before anything is served.
    if settings.tunnel.ngrok {
        tunnel::check_guarded(&settings.tunnel, settings.keyed())?;
    }
    let mut server = Server::start(settings)?;
    announce(Announcement::Serving { url: &server.url });
    let tunnel = settings.tunnel.ngrok.then(|| server.spawn_tunnel(announce));
    tokio::select! {
        r = server.wait() => r?,
        _ = shutdown_signal() => {}
    }
    if let Some(task) = tunnel {
        task.abort();
        if let Ok(Some(t)) = task.await {
            t.close();
        }
    }
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .map_err(std::io::Error::other)??;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    /// A GET on a runtime of its own, as a client in another process would.
    fn get(url: &str) -> reqwest::Result<(u16, String)> {
        let url = url.to_string();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let r = reqwest::get(&url).await?;
                Ok((r.status().as_u16(), r.text().await?))
            })
    }

    fn hello(text: &'static str) -> (axum::Router, AppState, Settings) {
        let router =
            axum::Router::new().route("/", axum::routing::get(move || async move { text }));
        let mut settings = Settings::from_args(["--host", "127.0.0.1", "--port", "0"]).unwrap();
        settings.tunnel.authtoken = None;
        (
            router,
            AppState::loading(Limits::default(), Default::default()),
            settings,
        )
    }

    #[test]
    fn serves_until_stopped_then_the_port_is_closed() {
        let (router, state, settings) = hello("hi");
        let server = Server::bind(router, state, &settings).unwrap();
        let addr = server.addr;
        assert_eq!(get(&server.url).unwrap().1, "hi");
        // A second caller's runtime coming and going (a notebook cell) changes nothing.
        assert_eq!(get(&server.url).unwrap().1, "hi");
        server.stop().unwrap();
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[test]
    fn a_taken_port_is_an_error_at_start() {
        let (router, state, mut settings) = hello("x");
        let first = Server::bind(router.clone(), state.clone(), &settings).unwrap();
        settings.serve.port = first.addr.port();
        let again = Server::bind(router, state, &settings);
        assert!(matches!(again, Err(ServeError::Bind { .. })));
        first.stop().unwrap();
    }

    #[test]
    fn a_model_that_cannot_load_is_reported_and_the_server_keeps_answering() {
        let settings = Settings::from_args([
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--model",
            "/nonexistent/m.onnx",
        ])
        .unwrap();
        let server = Server::start(&settings).unwrap();
        let err = server.wait_ready(Duration::from_secs(20)).err().unwrap();
        assert!(
            matches!(&err, ServeError::Failed(r) if r.contains("m.onnx") && !r.contains("/nonexistent")),
            "{err}"
        );
        let (status, body) = get(&format!("{}health", server.url)).unwrap();
        assert_eq!(status, 503);
        assert!(body.contains("\"failed\""), "{body}");
        server.stop().unwrap();
    }

    #[test]
    fn a_tunnel_without_a_token_says_so_and_the_server_keeps_serving() {
        let (router, state, settings) = hello("local");
        let server = Server::bind(router, state, &settings).unwrap();
        let err = server.open_tunnel().err().unwrap();
        assert!(matches!(err, TunnelError::NoToken), "{err}");
        assert_eq!(get(&server.url).unwrap().1, "local");
        server.stop().unwrap();
    }

    #[tokio::test]
    async fn from_async_code_it_waits_and_stops_off_the_workers() {
        let (router, state, settings) = hello("async");
        let mut server = Server::bind(router, state, &settings).unwrap();
        let body = reqwest::get(&server.url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "async");
        let waited = tokio::time::timeout(Duration::from_millis(50), server.wait()).await;
        assert!(waited.is_err(), "wait() returns only when the server ends");
        tokio::task::spawn_blocking(move || server.stop())
            .await
            .unwrap()
            .unwrap();
    }
}
