//! The accept loop every listener of the server shares (the API, the gateway): one task per
//! connection, owned by a `JoinSet` that is reaped as it goes and drained on shutdown.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Accepts connections on `listener` until `shutdown`, running `serve` for each (under a
/// `connection{peer}` span); then waits for every connection to end. `serve` is expected to
/// close its connection gracefully once `shutdown` is cancelled.
pub async fn accept_connections<F, Fut>(
    listener: TcpListener,
    shutdown: CancellationToken,
    mut serve: F,
) where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer): (TcpStream, SocketAddr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                continue;
            }
        };
        connections.spawn(serve(stream).instrument(tracing::debug_span!("connection", %peer)));
        // Reap finished connections so the set does not grow without end.
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// Whether two secrets are equal, compared without an early exit, so that the time taken says
/// nothing about where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
