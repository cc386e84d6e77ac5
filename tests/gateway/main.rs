//! Integration tests: the real gateway on 127.0.0.1:0, real HTTP, real MCP clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod house;
mod support;

mod admin_api;
mod agent_runtime;
mod approvals;
mod ask_user;
mod audit;
mod audit_pg;
mod binary;
mod clients;
mod cluster;
mod cluster_approvals;
mod cluster_oauth;
mod config_errors;
mod conformance;
mod console;
mod console_approvals;
mod console_audit;

mod default_agent;
mod early_answers;
mod hops;
mod mcp_sse;
mod mcp_streamable;
mod metrics;
mod oauth;
mod oauth_scale;
mod openapi_spec;
mod parking;
mod policies;
mod policies_reload;
mod promises;
mod readme_config;
mod reload;
mod sessions;
mod shipped_agents;
mod stdio;
mod store;
mod table_api;
mod tasks;
mod transport_rules;
mod upstream_auth;
mod upstream_stdio;
mod workflows;
