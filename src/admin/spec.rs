//! The admin API's `OpenApiService`, shared by the server, `switchboard openapi` and the
//! spec snapshot test (`openapi/admin.yaml`).

use poem_openapi::OpenApiService;

use super::{AdminApi, ApprovalsApi, AuditApi, HealthApi, PermissionsApi, TasksApi};

/// The admin API and the probes, as one OpenAPI service.
#[allow(clippy::type_complexity)]
pub fn service() -> OpenApiService<
    (
        AdminApi,
        PermissionsApi,
        AuditApi,
        ApprovalsApi,
        TasksApi,
        HealthApi,
    ),
    (),
> {
    OpenApiService::new(
        (
            AdminApi,
            PermissionsApi,
            AuditApi,
            ApprovalsApi,
            TasksApi,
            HealthApi,
        ),
        "Switchboard admin API",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Agents and live MCP sessions of a Switchboard gateway: list agents, list, inspect \
             and end sessions of both transports. Errors are `{code, message}`.",
    )
}

/// The spec as YAML, exactly as checked in at `openapi/admin.yaml`.
pub fn yaml() -> String {
    service().spec_yaml()
}
