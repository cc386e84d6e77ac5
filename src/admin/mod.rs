//! The admin REST API (poem-openapi): agents, live sessions, ending sessions, clients and
//! their `[[policies]]`, health.
//!
//! Every `/admin` operation goes through [`AdminAuth`]: with an admin token configured it
//! needs `Authorization: Bearer <token>` (401 otherwise); without one it answers loopback
//! peers only (403 for others). `/healthz` and `/readyz` are open. Errors have one shape,
//! [`dto::ErrorBody`], and every status an operation can answer is in the spec.

pub mod dto;
pub mod spec;

use poem::Request;
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, Tags};

use crate::state::AppState;
use dto::ErrorBody;

#[derive(Tags)]
enum ApiTags {
    /// Agents being served.
    Agents,
    /// Clients (token owners), their limits and usage, and the `[[policies]]` rules.
    Clients,
    /// Live MCP sessions.
    Sessions,
    /// Recent traffic.
    Traffic,
    /// Liveness and readiness probes.
    Health,
    /// Cluster mode: the replicas.
    Cluster,
    /// The audit trail of every tool call.
    Audit,
    /// Calls waiting for an operator's approval.
    Approvals,
    /// Agent runs served as MCP tasks.
    Tasks,
}

/// Admin access, checked per request: the bearer token when one is configured, else a
/// loopback peer.
pub struct AdminAuth;

const SCHEME: &str = "AdminToken";

/// Why [`AdminAuth`] refused a request; turned into the operation's documented 401 or 403
/// by [`handle_error`].
#[derive(Debug, thiserror::Error)]
enum AuthError {
    #[error("missing admin token: send Authorization: Bearer <token>")]
    Missing,
    #[error("the admin token is wrong")]
    Wrong,
    #[error(
        "no admin token is configured, so the admin API answers local requests only; set [admin] token or SWITCHBOARD_ADMIN_TOKEN"
    )]
    NotLocal,
    #[error("internal error")]
    NoState,
}

impl poem::error::ResponseError for AuthError {
    fn status(&self) -> poem::http::StatusCode {
        match self {
            AuthError::Missing | AuthError::Wrong => poem::http::StatusCode::UNAUTHORIZED,
            AuthError::NotLocal => poem::http::StatusCode::FORBIDDEN,
            AuthError::NoState => poem::http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn auth_error(e: AuthError) -> poem::Error {
    poem::Error::from(e)
}

/// Every admin response enum has the same error variants; [`handle_error`] fills them.
trait AdminErrors: Sized {
    fn bad_request(body: ErrorBody) -> Self;
    fn unauthorized(body: ErrorBody) -> Self;
    fn forbidden(body: ErrorBody) -> Self;
}

/// The `bad_request_handler` of every admin operation: an auth refusal becomes the
/// documented 401/403, anything else a 400 saying what was malformed.
fn handle_error<R: AdminErrors>(err: poem::Error) -> R {
    match err.downcast_ref::<AuthError>() {
        Some(e @ (AuthError::Missing | AuthError::Wrong)) => {
            R::unauthorized(ErrorBody::new("unauthorized", e.to_string()))
        }
        Some(e @ AuthError::NotLocal) => R::forbidden(ErrorBody::new("forbidden", e.to_string())),
        Some(AuthError::NoState) | None => {
            R::bad_request(ErrorBody::new("bad_request", err.to_string()))
        }
    }
}

/// Why the admin access rule refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// An admin token is configured and the request has none (401).
    MissingToken,
    /// An admin token is configured and the request's is another (401).
    WrongToken,
    /// No admin token is configured and the peer is not on loopback (403).
    NotLocal,
}

/// The admin access rule, for `/admin` and for the endpoints that follow it (`/metrics`):
/// with an admin token configured, the request must carry it; without one, the peer must
/// be on loopback. Cluster mode: another replica's hop is let through.
///
/// # Errors
/// Why the request is refused.
pub fn access(state: &AppState, req: &Request) -> Result<(), Denied> {
    // Cluster mode: another replica asking for this one's part of a cluster-wide view.
    if state.cluster().is_some_and(|c| c.is_hop(req.headers())) {
        return Ok(());
    }
    match &state.settings().admin_token {
        Some(expected) => match crate::auth::bearer(req.headers()) {
            Some(token) if crate::auth::token_matches(token, expected) => Ok(()),
            Some(_) => Err(Denied::WrongToken),
            None => Err(Denied::MissingToken),
        },
        None if crate::auth::from_loopback(req) => Ok(()),
        None => Err(Denied::NotLocal),
    }
}

impl AdminAuth {
    fn check(req: &Request) -> poem::Result<Self> {
        let Some(state) = req.data::<AppState>() else {
            return Err(auth_error(AuthError::NoState));
        };
        access(state, req).map(|()| Self).map_err(|d| {
            auth_error(match d {
                Denied::MissingToken => AuthError::Missing,
                Denied::WrongToken => AuthError::Wrong,
                Denied::NotLocal => AuthError::NotLocal,
            })
        })
    }
}

impl<'a> ApiExtractor<'a> for AdminAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            SCHEME,
            MetaSecurityScheme {
                ty: "http",
                description: Some(
                    "The admin token (`[admin] token` or `SWITCHBOARD_ADMIN_TOKEN`). Without a configured token, the admin API answers loopback peers only and needs no header.",
                ),
                name: None,
                key_in: None,
                scheme: Some("bearer"),
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![SCHEME]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Self::check(req)
    }
}

/// An admin response enum: the operation's own answers, then the error answers every admin
/// operation shares (400, 401, 403), with `Self::from_error` as the handler that turns
/// extractor errors into them.
macro_rules! admin_response {
    ($(#[$meta:meta])* pub enum $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(ApiResponse)]
        #[oai(bad_request_handler = "Self::from_error")]
        pub enum $name {
            $($body)*
            /// A parameter is malformed.
            #[oai(status = 400)]
            BadRequest(Json<ErrorBody>),
            /// The admin token is missing or wrong.
            #[oai(status = 401)]
            Unauthorized(
                Json<ErrorBody>,
                /// `Bearer`.
                #[oai(header = "WWW-Authenticate")]
                String,
            ),
            /// Not a loopback peer, and no admin token is configured.
            #[oai(status = 403)]
            Forbidden(Json<ErrorBody>),
        }

        impl AdminErrors for $name {
            fn bad_request(body: ErrorBody) -> Self {
                Self::BadRequest(Json(body))
            }
            fn unauthorized(body: ErrorBody) -> Self {
                Self::Unauthorized(Json(body), "Bearer".to_owned())
            }
            fn forbidden(body: ErrorBody) -> Self {
                Self::Forbidden(Json(body))
            }
        }

        impl $name {
            fn from_error(err: poem::Error) -> Self {
                handle_error(err)
            }
        }
    };
}

mod api;
mod approvals;
mod audit;
mod health;
mod permissions;
mod responses;
mod tasks;
mod views;

pub use api::AdminApi;
pub use approvals::ApprovalsApi;
pub use audit::AuditApi;
pub use health::HealthApi;
pub use permissions::PermissionsApi;
pub use tasks::TasksApi;

/// The methods a path of this API serves, for the `Allow` header of a 405.
pub fn allowed_methods(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["admin", "agents"]
        | ["admin", "agents", _]
        | ["admin", "sessions"]
        | ["admin", "clients"]
        | ["admin", "clients", _]
        | ["admin", "policies"]
        | ["admin", "load-errors"]
        | ["admin", "traffic"]
        | ["admin", "cluster"]
        | ["admin", "audit"]
        | ["admin", "audit", _]
        | ["admin", "approvals"]
        | ["admin", "tasks"] => Some("GET"),
        ["admin", "approvals", _] | ["admin", "tasks", _, "cancel"] => Some("POST"),
        ["admin", "sessions", _] => Some("GET, DELETE"),
        ["admin", "reload"] => Some("POST"),
        ["healthz"] | ["readyz"] => Some("GET"),
        _ => None,
    }
}
