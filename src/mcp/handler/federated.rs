//! The agent's federated servers (`[[servers]]`, see [`crate::federation`]) as its handler
//! reaches them: the session's connections, and the client request an upstream request
//! serves. A child of the handler, which it extends.

use std::sync::Arc;

use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};

use super::{AgentServer, session_of};
use crate::federation;
use crate::mcp::request::origin_of;

impl AgentServer {
    /// The connections of the session of `context` to the agent's `[[servers]]`; `None`
    /// without any.
    pub(super) fn federated(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Option<Arc<federation::Session>> {
        let federation = self.agent.federation()?;
        let session = session_of(context, &origin_of(&context.extensions));
        Some(federation.session(&context.peer, session.as_ref()))
    }

    /// [`Self::federated`], or `-32601` for method `M` (nothing but federated servers
    /// serves it).
    pub(super) fn federated_or_refuse<M: rmcp::model::ConstString + Default>(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Result<Arc<federation::Session>, McpError> {
        self.federated(context)
            .ok_or_else(McpError::method_not_found::<M>)
    }

    /// Whether the agent federates servers, whose messages outside a request (`list_changed`,
    /// resource updates, logs) reach its clients on their sessions' own streams.
    pub fn relays(&self) -> bool {
        self.agent.federation().is_some()
    }
}

/// The client request of `context`, as a federated upstream's request serves it.
pub(super) fn downstream(context: &RequestContext<RoleServer>) -> federation::Downstream<'_> {
    federation::Downstream {
        id: context.id.clone(),
        progress: context.meta.get_progress_token(),
        cancel: &context.ct,
    }
}
