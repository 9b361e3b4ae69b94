use tokio_util::sync::CancellationToken;

/// Cancels `token` on SIGINT or SIGTERM, so the server drains in-flight requests
/// and background loops stop at a batch boundary. The handlers are in place when
/// this returns: a signal that arrives right after is not the default (an exit on
/// the spot).
pub fn on_signal(token: CancellationToken) {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    tokio::spawn(async move {
        #[cfg(unix)]
        let (ctrl_c, terminate) = {
            async fn recv(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            (recv(interrupt), recv(terminate))
        };
        #[cfg(not(unix))]
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
            () = terminate => tracing::info!("SIGTERM received, shutting down"),
        }
        token.cancel();
    });
}
