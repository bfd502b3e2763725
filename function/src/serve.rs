//! Running the router on a local TCP port in the background, with a clean
//! stop: `catdog serve` and the notebook both start the server this way.

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A router being served on a local port; [`LocalServer::stop`] ends it.
pub struct LocalServer {
    /// Where it listens, e.g. `http://127.0.0.1:8080/`.
    pub url: String,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl LocalServer {
    /// Binds `addr` (`host:port`; port 0 picks a free one) and serves `router`
    /// on the current tokio runtime until stopped. Binding errors (port in use,
    /// unknown host) are returned here, before anything runs.
    pub async fn start(router: axum::Router, addr: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(url = %format!("http://{addr}/"), "listening");
        Ok(Self {
            url: format!("http://{addr}/"),
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Waits until the server ends on its own (an I/O error) — for hosts
    /// that serve until a signal, race it with the signal, then [`stop`](Self::stop).
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
    /// returns once the port is closed.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Ok(()),
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        // Dropped without stop(): still close the port rather than leak a server.
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_until_stopped_then_the_port_is_closed() {
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
        let server = LocalServer::start(app, "127.0.0.1:0").await.unwrap();
        let addr = server.addr;
        let body = reqwest::get(&server.url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "hi");
        server.stop().await.unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn a_taken_port_is_an_error_at_start() {
        let first = LocalServer::start(axum::Router::new(), "127.0.0.1:0")
            .await
            .unwrap();
        let again = LocalServer::start(axum::Router::new(), &first.addr.to_string()).await;
        assert!(again.is_err());
        first.stop().await.unwrap();
    }
}
