//! Serving the router on accepted connections, for the local port and the
//! ngrok tunnel alike, with the limits a public endpoint needs and
//! `axum::serve` does not set: a deadline for a request's head (a client
//! that sends nothing, or a byte every few seconds, no longer holds a
//! connection forever), and a cap on connections open at once. The body and
//! whole-request timeouts are the router's (`http::deadline`), so they
//! hold on every host.

use std::future::Future;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

pub(crate) use crate::limits::ConnectionLimits;

/// Serves `router` on every connection `listener` accepts until `shutdown`
/// completes, then lets requests in flight finish.
pub(crate) async fn serve<L>(
    mut listener: L,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    // HTTP/1 only, and no upgrades: hyper then reads a request's head from
    // the connection's first poll, under the header timer, so a client
    // that connects and sends nothing is cut off like one that sends a
    // byte at a time (the protocol sniffing of HTTP/1-or-2 waits untimed,
    // and HTTP/2 has no header timer). The timer also bounds the idle time
    // between two requests on a keep-alive connection.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or breaks the protocol ends its own
            // connection only; hyper has answered what can be answered.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
