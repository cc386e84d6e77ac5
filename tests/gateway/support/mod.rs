//! What the tests share: the stand-ins for what cannot run here (a scripted LLM, a ServiceNow
//! instance), the real programs the tests drive (the gateway binary, Chromium, nginx with the
//! compose file's balancer config, oidc-provider, PostgreSQL), an upstream MCP server recording the tokens it gets, stdio upstreams (the MCP reference server, a tiny one of ours), the MCP scenarios run on both incident stores, and small
//! helpers.

pub mod asking;
pub mod binary;
pub mod browser;
pub mod cut_proxy;
pub mod fake_llm;
pub mod fake_servicenow;
pub mod federation;
pub mod helpers;
pub mod nginx;
pub mod oidc;
pub mod otlp;
pub mod policies;
pub mod postgres;
pub mod scenarios;
pub mod sse_transport;
pub mod stdio_upstream;
pub mod tasks;
pub mod upstream_mcp;
