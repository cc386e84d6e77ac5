//! The shutdown signal: SIGINT (Ctrl-C) or SIGTERM (docker stop, systemd, Kubernetes).

/// Completes on the first SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "Cannot listen for Ctrl-C.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "Cannot listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received."),
        () = term => tracing::info!("SIGTERM received."),
    }
}

/// Reloads the agents on every SIGHUP, until the returned guard is dropped.
pub fn on_sighup(state: crate::state::AppState) -> Option<SighupGuard> {
    #[cfg(unix)]
    {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot listen for SIGHUP.");
                return None;
            }
        };
        let task = tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP received: reloading agents.");
                state.reload().await;
            }
        });
        Some(SighupGuard(task.abort_handle()))
    }
    #[cfg(not(unix))]
    {
        let _ = state;
        None
    }
}

/// Stops the SIGHUP listener when dropped.
pub struct SighupGuard(tokio::task::AbortHandle);

impl Drop for SighupGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}
