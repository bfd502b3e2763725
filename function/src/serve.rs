//! Running the router on a local TCP port in the background, with a clean
//! stop: `catdog serve` and the notebook both start the server this way.
//!
//! The server runs on a tokio runtime of its own, so it keeps serving whatever
//! the caller's runtime does: a notebook kernel (evcxr) drives each cell's
//! `.await`s on a runtime that does not run between cells, which would freeze
//! a server spawned there.

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::tunnel::{Tunnel, TunnelConfig, TunnelError};

/// A router being served on a local port; [`LocalServer::stop`] ends it.
pub struct LocalServer {
    /// Where it listens, e.g. `http://127.0.0.1:8080/`.
    pub url: String,
    pub addr: SocketAddr,
    router: axum::Router,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl LocalServer {
    /// Binds `addr` (`host:port`; port 0 picks a free one) and serves `router`
    /// in the background until stopped. Binding errors (port in use, unknown
    /// host) are returned here, before anything runs.
    pub fn start(router: axum::Router, addr: &str) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .thread_name("catdog-serve")
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router.clone();
        let task = runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(url = %format!("http://{addr}/"), "listening");
        Ok(Self {
            url: format!("http://{addr}/"),
            addr,
            router,
            runtime: Some(runtime),
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Also serves the router on a public ngrok URL (see [`crate::tunnel`]),
    /// on this server's runtime so it lives as long as the server does.
    /// Blocking (at most the config's `connect_timeout`): for async code use
    /// [`crate::tunnel::open`] directly.
    pub fn open_tunnel(&self, config: &TunnelConfig) -> Result<Tunnel, TunnelError> {
        let Some(runtime) = &self.runtime else {
            return Err(TunnelError::Config("the server is stopped".into()));
        };
        runtime.block_on(crate::tunnel::open(config, self.router.clone()))
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
        result
    }
}

impl Drop for LocalServer {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A GET on a runtime of its own, as a client in another process would.
    fn get(url: &str) -> reqwest::Result<String> {
        let url = url.to_string();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move { reqwest::get(&url).await?.text().await })
    }

    fn hello(text: &'static str) -> axum::Router {
        axum::Router::new().route("/", axum::routing::get(move || async move { text }))
    }

    #[test]
    fn serves_until_stopped_then_the_port_is_closed() {
        let server = LocalServer::start(hello("hi"), "127.0.0.1:0").unwrap();
        let addr = server.addr;
        assert_eq!(get(&server.url).unwrap(), "hi");
        // A second caller's runtime coming and going (a notebook cell) changes nothing.
        assert_eq!(get(&server.url).unwrap(), "hi");
        server.stop().unwrap();
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[test]
    fn a_taken_port_is_an_error_at_start() {
        let first = LocalServer::start(axum::Router::new(), "127.0.0.1:0").unwrap();
        let again = LocalServer::start(axum::Router::new(), &first.addr.to_string());
        assert!(again.is_err());
        first.stop().unwrap();
    }

    #[test]
    fn a_tunnel_without_a_token_says_so_and_the_server_keeps_serving() {
        let server = LocalServer::start(hello("local"), "127.0.0.1:0").unwrap();
        let config = TunnelConfig {
            authtoken: None,
            ..TunnelConfig::default()
        };
        let err = server.open_tunnel(&config).err().unwrap();
        assert!(matches!(err, TunnelError::NoToken), "{err}");
        assert_eq!(get(&server.url).unwrap(), "local");
        server.stop().unwrap();
    }

    #[tokio::test]
    async fn from_async_code_it_waits_and_stops_off_the_workers() {
        let mut server = LocalServer::start(hello("async"), "127.0.0.1:0").unwrap();
        let body = reqwest::get(&server.url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "async");
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), server.wait()).await;
        assert!(waited.is_err(), "wait() returns only when the server ends");
        tokio::task::spawn_blocking(move || server.stop())
            .await
            .unwrap()
            .unwrap();
    }
}
