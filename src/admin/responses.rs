//! The answers of every admin operation, each with the error answers all of them share.

use poem_openapi::ApiResponse;
use poem_openapi::payload::Json;

use super::dto::{
    AgentView, ClientDetailView, ClientsView, ClusterView, CostsView, ErrorBody, Health,
    LoadErrorView, PoliciesView, ReloadView, SessionPage, SessionView, TrafficView,
};
use super::{AdminErrors, handle_error};

admin_response! {
/// `GET /admin/agents`.
pub enum ListAgentsResponse {
    /// Every agent, by name.
    #[oai(status = 200)]
    Ok(Json<Vec<AgentView>>),
}
}

admin_response! {
/// `POST /admin/reload`.
pub enum ReloadResponse {
    /// What the reload did (problems included: a broken file keeps its previous version).
    #[oai(status = 200)]
    Ok(Json<ReloadView>),
}
}

admin_response! {
/// `GET /admin/clients`.
pub enum ListClientsResponse {
    /// The clients with their limits and usage.
    #[oai(status = 200)]
    Ok(Json<ClientsView>),
}
}

admin_response! {
/// `GET /admin/clients/{name}`.
pub enum GetClientResponse {
    /// The client, the rules about it and what it may call.
    #[oai(status = 200)]
    Ok(Json<ClientDetailView>),
    /// No configured client has this name and no rule names it as a client id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}
}

admin_response! {
/// `GET /admin/policies`.
pub enum ListPoliciesResponse {
    /// The rules in force.
    #[oai(status = 200)]
    Ok(Json<PoliciesView>),
}
}

admin_response! {
/// `GET /admin/load-errors`.
pub enum LoadErrorsResponse {
    /// Every file of the agents directory that had problems at the last reload.
    #[oai(status = 200)]
    Ok(Json<Vec<LoadErrorView>>),
}
}

admin_response! {
/// `GET /admin/traffic`.
pub enum TrafficResponse {
    /// The last 15 minutes of every agent.
    #[oai(status = 200)]
    Ok(Json<TrafficView>),
}
}

admin_response! {
/// `GET /admin/costs`.
pub enum CostsResponse {
    /// Spend per day, client and agent, and the totals.
    #[oai(status = 200)]
    Ok(Json<CostsView>),
}
}

admin_response! {
/// `GET /admin/agents/{name}`.
pub enum GetAgentResponse {
    /// The agent.
    #[oai(status = 200)]
    Ok(Json<AgentView>),
    /// No agent has this name.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}
}

admin_response! {
/// `GET /admin/sessions`.
pub enum ListSessionsResponse {
    /// One page of live sessions.
    #[oai(status = 200)]
    Ok(Json<SessionPage>),
}
}

admin_response! {
/// `GET /admin/sessions/{id}`.
#[allow(clippy::large_enum_variant)] // built once per request and returned at once
pub enum GetSessionResponse {
    /// The session.
    #[oai(status = 200)]
    Ok(Json<SessionView>),
    /// No live session has this id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}
}

admin_response! {
/// `DELETE /admin/sessions/{id}`.
pub enum EndSessionResponse {
    /// The session was ended: its stream closed, its running calls were cancelled, and its
    /// id now gets 404.
    #[oai(status = 204)]
    Ended,
    /// No live session has this id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Cluster mode: the session is not on this replica, and Redis does not answer.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before asking again.
        #[oai(header = "Retry-After")]
        u64,
    ),
}
}

admin_response! {
/// `GET /admin/cluster`.
pub enum ClusterResponse {
    /// This replica and the live replicas (a single gateway: itself).
    #[oai(status = 200)]
    Ok(Json<ClusterView>),
    /// Redis, which holds the cluster's membership, does not answer.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before asking again.
        #[oai(header = "Retry-After")]
        u64,
    ),
}
}

/// `GET /healthz`, `GET /readyz`.
#[derive(ApiResponse)]
pub enum HealthResponse {
    /// Alive / ready.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// Shutting down: stop sending traffic here.
    #[oai(status = 503)]
    Unavailable(Json<Health>),
}
