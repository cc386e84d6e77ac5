//! The MCP server side: one endpoint per agent, over both transports.
//!
//! # Transports
//! Every agent is served at three URLs:
//! - `GET /agents/<name>/sse` (without `Mcp-Session-Id`): the legacy HTTP+SSE transport
//!   of MCP 2024-11-05 ([`sse`]); the client then POSTs to
//!   `/agents/<name>/messages?session_id=<id>` (202; answers arrive on the stream).
//! - `POST|GET|DELETE /agents/<name>/mcp`: Streamable HTTP ([`streamable`], rmcp's service).
//! - `POST|DELETE /agents/<name>/sse`, and `GET` with an `Mcp-Session-Id` header: Streamable
//!   HTTP too, so a Streamable HTTP client pointed at the seed's `/sse` URL works.
//!
//! The default agent (`[server] default_agent`, else `servicenow` while loaded) is also
//! served at the seed's own URLs, `/sse`, `/messages` and `/mcp`, with the same rules; its
//! legacy `endpoint` event then names `/messages?session_id=<id>`.
//!
//! Before any of them, the edge ([`crate::edge`]) screens the request (`Host` and `Origin`:
//! 403), identifies the caller and checks its limits. Errors outside JSON-RPC
//! are JSON `{code, message}` ([`crate::error`]), rmcp's own plain-text HTTP errors
//! included ([`rmcp_answers`]); a body that is not JSON-RPC gets a JSON-RPC parse error
//! with status 400 on both transports, and the session lives on. Requests rmcp cannot type
//! (params that do not fit the method, unknown methods) get -32602 or -32601 from the
//! handler ([`handler`]). Streamable HTTP sessions older than MCP 2025-11-25 get no SSE
//! priming events ([`rmcp_answers::WithoutPriming`]).
//!
//! `switchboard stdio <agent>` serves one agent to one client over stdin and stdout instead
//! ([`stdio`]): the same handler, no HTTP edge; its one caller is named on the command line.

pub mod handler;
pub mod message;
pub mod request;
pub mod rmcp_answers;
pub mod served;
pub mod sse;
pub mod stdio;
pub mod streamable;
