//! The shutdown signal: SIGINT (Ctrl-C) or SIGTERM (docker stop, systemd, Kubernetes).

/// Completes on the first SIGINT or SIGTERM.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    // Registered now, not when first polled: a SIGTERM that comes as soon as the gateway
    // listens must stop it cleanly rather than kill it.
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => tokio::select! {
                    _ = int.recv() => tracing::info!("SIGINT received."),
                    _ = term.recv() => tracing::info!("SIGTERM received."),
                },
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "Cannot listen for SIGTERM or SIGINT.");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("SIGINT received.");
        } else {
            std::future::pending::<()>().await;
        }
    }
}

/// Reloads the agents and `[[policies]]` on every SIGHUP, until the returned guard is dropped.
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
                tracing::info!(
                    "SIGHUP received: reloading agents and switchboard.toml's [[policies]]."
                );
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

/// Shuts `state` down in order: refuse new MCP requests, let calls in flight finish within
/// `grace`, answer the rest with an error, then end every session (their streams close).
pub async fn drain(state: &crate::state::AppState, grace: std::time::Duration) {
    state.begin_draining();
    let calls = || state.sessions().in_flight_total();
    let finished = wait_until(grace, || calls() == 0).await;
    // Tasks run for minutes: they are not waited for, but end `failed`, saying why.
    state
        .tasks()
        .shut_down(std::time::Duration::from_secs(2))
        .await;
    if !finished {
        tracing::warn!(
            calls = calls(),
            "Grace period over: cancelling calls still running."
        );
        state.stop_calls().cancel();
        // Their error answers go out before the sessions end.
        wait_until(std::time::Duration::from_secs(1), || calls() == 0).await;
    }
    tracing::info!("Ending sessions.");
    state.cancel().cancel();
    state.sessions().remove_parked_streamable();
}

/// Polls `done` every 20 ms until it holds (true) or `limit` passes (false).
async fn wait_until(limit: std::time::Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    true
}
