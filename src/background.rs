//! The gateway's background work while it serves: parking and expiring idle sessions,
//! forgetting idle peers' limiter state, and in cluster mode the heartbeat and the watch for
//! sessions ended on other replicas. Started by [`crate::app::run`]; each task stops when the
//! returned guard is dropped.

use std::time::Duration;

use crate::state::{AbortOnDrop, AppState};

/// The running background tasks; dropping it stops them.
pub struct Background(#[allow(dead_code)] Vec<AbortOnDrop>);

/// Starts the background work of `state`.
pub fn start(state: &AppState) -> Background {
    let mut tasks = vec![spawn(sweeper(state.clone())), spawn(pruner(state.clone()))];
    if state.cluster().is_some() {
        tasks.push(spawn(heartbeat(state.clone())));
        let sessions = state.sessions().clone();
        tasks.push(spawn(async move { sessions.watch_ended().await }));
    }
    Background(tasks)
}

fn spawn(task: impl Future<Output = ()> + Send + 'static) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(task).abort_handle())
}

/// Parks idle sessions' engines and ends Streamable HTTP sessions idle past the idle
/// timeout, a few times a second (see [`crate::sessions`]).
async fn sweeper(state: AppState) {
    let settings = state.settings();
    let period = settings
        .session_park_after
        .map_or(Duration::from_secs(1), |d| {
            (d / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
        });
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.is_draining() {
            continue;
        }
        let parked = state
            .sessions()
            .sweep(settings.session_park_after, settings.session_idle_timeout)
            .await;
        if parked > 0 {
            tracing::debug!(parked, "Parked idle sessions' engines.");
        }
    }
}

/// Forgets the limiter state and usage of peers that have been idle, and drops expired
/// tasks, every minute.
async fn pruner(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.limits().prune();
        state.clients().prune();
        state.tasks().sweep().await;
    }
}

/// Cluster mode: renews this replica's registration every heartbeat, with its live session
/// count and each client's sessions here (for `max_sessions` across the cluster).
async fn heartbeat(state: AppState) {
    let Some(cluster) = state.cluster().cloned() else {
        return;
    };
    let mut tick = tokio::time::interval(cluster.heartbeat());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let counts: Vec<(String, u64)> = state
            .clients()
            .session_counts()
            .into_iter()
            .map(|(key, n)| (crate::cluster::sessions::owner_tag(&key), n))
            .collect();
        let beat = cluster.heartbeat_once(state.sessions().len() as u64).await;
        state.metrics().cluster_redis_up(cluster.is_healthy());
        if beat.healthy {
            let _ = cluster.publish_session_counts(&counts).await;
        }
        if beat.must_reannounce() {
            state.sessions().reconcile().await;
        }
    }
}
