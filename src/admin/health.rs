//! The probes: `/healthz` and `/readyz`.

use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::payload::Json;

use super::ApiTags;
use super::dto::Health;
use super::responses::HealthResponse;
use crate::state::AppState;

/// The probes.
pub struct HealthApi;

#[OpenApi]
impl HealthApi {
    /// Liveness
    ///
    /// 200 while the process serves requests.
    #[oai(
        path = "/healthz",
        method = "get",
        operation_id = "healthz",
        tag = "ApiTags::Health"
    )]
    async fn healthz(&self) -> HealthResponse {
        HealthResponse::Ok(Json(Health {
            status: "ok".into(),
            agents: None,
        }))
    }

    /// Readiness
    ///
    /// 200 when agents are loaded and the gateway takes traffic; 503 once shutdown began,
    /// and in cluster mode while Redis does not answer this replica's heartbeat.
    #[oai(
        path = "/readyz",
        method = "get",
        operation_id = "readyz",
        tag = "ApiTags::Health"
    )]
    async fn readyz(&self, state: Data<&AppState>) -> HealthResponse {
        let agents = Some(state.agents().len() as u64);
        if state.is_draining() || state.cancel().is_cancelled() {
            HealthResponse::Unavailable(Json(Health {
                status: "shutting_down".into(),
                agents,
            }))
        } else if state.cluster().is_some_and(|c| !c.is_healthy()) {
            HealthResponse::Unavailable(Json(Health {
                status: "redis_unreachable".into(),
                agents,
            }))
        } else {
            HealthResponse::Ok(Json(Health {
                status: "ready".into(),
                agents,
            }))
        }
    }
}
