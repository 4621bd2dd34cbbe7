//! The one stop signal of both binaries: SIGTERM (a pod being stopped) or SIGINT (Ctrl-C).

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Resolves on the first SIGTERM or SIGINT. If a handler cannot be installed (which only
/// happens without signal support), that signal is simply never awaited.
pub async fn stop_requested() {
    let mut term = signal(SignalKind::terminate()).ok();
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    tokio::select! {
        () = received(term.as_mut()) => tracing::debug!("SIGTERM received"),
        () = received(interrupt.as_mut()) => tracing::debug!("SIGINT received"),
    }
}

async fn received(stream: Option<&mut Signal>) {
    match stream {
        Some(stream) => {
            stream.recv().await;
        }
        None => std::future::pending().await,
    }
}
