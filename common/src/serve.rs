//! HTTP/1 serving for both binaries (the operator's probes and metrics, the emulator's
//! API): accept, serve each connection in its own task, and on shutdown stop accepting,
//! let answers in flight finish within a grace period (hyper-util's graceful shutdown),
//! then close whatever is left.
//!
//! A handler that returns `Err` closes its connection without answering: the emulator
//! uses that to imitate a lost response.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The answer a handler gives; `Err` drops the connection without one.
pub type Answer<E = Infallible> = Result<Response<Full<Bytes>>, E>;

/// Serves `listener` with `handler` until `shutdown` resolves, then waits up to `grace`
/// for connections to finish their answers and closes the rest. Accept errors (out of
/// file descriptors, say) are logged and retried, never fatal: a probe endpoint that gave
/// up would get a healthy process restarted.
pub async fn serve<H, Fut, E>(
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Answer<E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let handler = handler.clone();
                    let connection = builder.serve_connection(
                        TokioIo::new(stream),
                        service_fn(handler),
                    );
                    let connection = graceful.watch(connection);
                    connections.spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so that a long-lived server does not keep them.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("closing connections still busy after the grace period");
    }
    // Dropping the set aborts what is left, which closes those sockets.
    connections.shutdown().await;
}
