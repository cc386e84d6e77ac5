//! Switchboard: a multi-agent orchestration gateway.
//!
//! One binary hosts many LLM agents, each defined by a TOML file in `agents/`, and serves
//! each of them to MCP clients at its own URL, over the legacy HTTP+SSE transport and over
//! Streamable HTTP (see the `# Transports` section of [`mcp`]).
//!
//! # Layout
//! - [`admin`]: the admin REST API (poem-openapi): agents, sessions, health.
//! - [`app`]: composition root: state → poem routes; [`app::run`] until shutdown.
//! - [`state`]: `AppState`, a plain container of the parts every request sees.
//! - [`background`]: the work a serving gateway does besides requests (sweeper, heartbeat).
//! - [`console`]: the admin console at `/ui`, a page over the admin API.
//! - [`config`]: `switchboard.toml` and `agents/*.toml`: parsing, interpolation, errors.
//! - [`agents`]: validated agent specs, built agents, workflows of agents and the registry of
//!   them.
//! - [`llm`]: an agent's model client (async-openai), built only from its `[model]`.
//! - [`federation`]: an agent file's `[[servers]]`: upstream MCP servers served as part of
//!   the agent's own, with full passthrough (prompts, resources, progress, elicitation...).
//! - [`tools`]: tool kinds agents use (`servicenow`, `agent`, `mcp`: over HTTP, or a process over stdio).
//! - [`incidents`]: the incident model and its stores: embedded SQLite, or a ServiceNow
//!   instance through the Table API.
//! - [`edge`]: the HTTP edge of the agents' MCP URLs: screen (Host/Origin guard, sizes),
//!   client address, route, admit (who, limits), then the transport.
//! - [`mcp`]: the MCP server side: the served agents, their handler, Streamable HTTP and
//!   legacy SSE; and one agent over stdio (`switchboard stdio`).
//! - [`metrics`]: Prometheus metrics at `/metrics`.
//! - [`permissions`]: the `[[policies]]` rules in force, swapped whole when a reload re-reads
//!   `switchboard.toml`.
//! - [`traffic`]: the last 15 minutes of calls per agent, for the admin API and console.
//! - [`tasks`]: agent runs served as MCP tasks (the `io.modelcontextprotocol/tasks`
//!   extension): started, polled, answered and cancelled, kept in `tasks.db` or Redis.
//! - [`sessions`]: the registry of live MCP sessions of both transports: ending, parking,
//!   expiring, and sharing them with other replicas in cluster mode.
//! - [`auth`]: constant-time token checks.
//! - [`clients`]: who is calling (bearer tokens), their limits as configured and their usage.
//! - [`ratelimit`]: every limit check (governor; Redis GCRA in cluster mode).
//! - [`net`]: outbound HTTP helpers (TLS provider, network-failure wording, URL escaping).
//! - [`oauth`]: the OAuth resource server: JWT access tokens, the issuer's keys, RFC 9728
//!   metadata.
//! - [`audit`]: the audit trail of every tool call at every hop, in `audit.db` or in a
//!   PostgreSQL database shared by a cluster's replicas.
//! - [`cluster`]: cluster mode (`[cluster]`): replicas sharing state through Redis.
//! - [`healthcheck`]: the probe behind `switchboard healthcheck` (container HEALTHCHECK).
//! - [`error`]: HTTP errors of the request path and their one JSON shape.
//! - [`shutdown`]: the SIGINT/SIGTERM/SIGHUP signals and the drain.
//! - [`telemetry`]: logging setup, and OpenTelemetry traces (`[telemetry]`).
//! - [`costs`]: what agent runs cost (`[costs] models`) and the callers' budgets.

pub mod admin;
pub mod agents;
pub mod app;
pub mod approvals;
pub mod ask;
pub mod audit;
pub mod auth;
pub mod background;
pub mod clients;
pub mod cluster;
pub mod config;
pub mod console;
pub mod costs;
pub mod edge;
pub mod error;
pub mod federation;
pub mod healthcheck;
pub mod identity;
pub mod incidents;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod net;
pub mod oauth;
pub mod permissions;
pub mod ratelimit;
pub mod sessions;
pub mod shutdown;
pub mod state;
pub mod tasks;
pub mod telemetry;
pub mod tools;
pub mod traffic;
