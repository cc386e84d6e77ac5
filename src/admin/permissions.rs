//! The admin operations about `[[policies]]`: the rules in force, and one client with the
//! rules about it and the tools it may call on each agent.

use std::time::SystemTime;

use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;

use super::dto::{
    AgentToolsView, ClientDetailView, DeniedToolView, ErrorBody, PoliciesView, PolicyEffect,
    PolicyView,
};
use super::responses::{GetClientResponse, ListPoliciesResponse};
use super::views::{limits_view, rfc3339, usage_view};
use super::{AdminAuth, ApiTags};
use crate::config::clients::AgentAccess;
use crate::config::policies::{Decision, Effect, Policies, Policy, Who};
use crate::state::AppState;

/// The `[[policies]]` operations.
pub struct PermissionsApi;

#[OpenApi(prefix_path = "/admin")]
impl PermissionsApi {
    /// List the rules
    ///
    /// Every `[[policies]]` rule in force, in file order, with the file they were read from
    /// and when. A reload (a change of `switchboard.toml` or in `agents/`, SIGHUP,
    /// `POST /admin/reload`) re-reads the file: a file that does not validate keeps these
    /// rules and its problems are listed here.
    #[oai(
        path = "/policies",
        method = "get",
        operation_id = "listPolicies",
        tag = "ApiTags::Clients"
    )]
    async fn list_policies(
        &self,
        _auth: AdminAuth,
        state: Data<&AppState>,
    ) -> ListPoliciesResponse {
        let permissions = state.permissions();
        let rules = permissions.load_full();
        let last = permissions.last_reread().unwrap_or_default();
        ListPoliciesResponse::Ok(Json(PoliciesView {
            file: rules.file.as_ref().map(|f| f.display().to_string()),
            loaded_at: rfc3339(rules.loaded_at),
            enforced: !rules.is_empty(),
            rules: rules.rules().iter().map(policy_view).collect(),
            errors: last.errors.clone(),
            warnings: last.warnings.clone(),
            restart_needed: last.restart_needed.clone(),
        }))
    }

    /// Get a client
    ///
    /// A configured client (`[[clients]]`), or an OAuth client id a rule names: the rules
    /// about it, and on each agent the tools it may call (as its `tools/list` shows them)
    /// and those it may not, with the rule that refuses each. Tokens are never shown.
    #[oai(
        path = "/clients/:name",
        method = "get",
        operation_id = "getClient",
        tag = "ApiTags::Clients"
    )]
    async fn get_client(
        &self,
        _auth: AdminAuth,
        state: Data<&AppState>,
        /// The client's name, or an OAuth client id.
        name: Path<String>,
    ) -> GetClientResponse {
        let configured = state
            .clients()
            .named()
            .iter()
            .find(|c| *c.name == *name.0)
            .cloned();
        let rules = state.permissions().load_full();
        let about: Vec<&Policy> = rules
            .rules()
            .iter()
            .filter(|r| r.clients.contains(&name.0))
            .collect();
        if configured.is_none() && about.is_empty() {
            return GetClientResponse::NotFound(Json(ErrorBody::new(
                "unknown_client",
                format!(
                    "no client {:?}: neither a [[clients]] name nor a client id a [[policies]] rule names",
                    name.0
                ),
            )));
        }
        // A configured client calls as itself; another name is an OAuth client id.
        let who = match &configured {
            Some(_) => Who {
                client: Some(&name.0),
                ..Who::default()
            },
            None => Who {
                client_id: Some(&name.0),
                ..Who::default()
            },
        };
        let access = configured.as_ref().map(|c| &c.agents);
        let tools = state
            .agents()
            .all()
            .iter()
            .map(|served| {
                let agent = served.name.as_ref();
                let agent_allowed = access.is_none_or(|a| a.allows(agent));
                let names = served
                    .server
                    .visible_tools()
                    .into_iter()
                    .chain(served.agent.federated_tools())
                    .map(|t| t.name);
                agent_tools(&rules, &who, agent, agent_allowed, names)
            })
            .collect();
        let now = SystemTime::now();
        GetClientResponse::Ok(Json(ClientDetailView {
            name: name.0.clone(),
            configured: configured.is_some(),
            agents: match access {
                None | Some(AgentAccess::All) => vec!["*".to_owned()],
                Some(AgentAccess::Only(names)) => names.clone(),
            },
            limits: configured.as_ref().map(|c| limits_view(&c.limits)),
            usage: configured.as_ref().map(|c| usage_view(&c.usage, now)),
            policies: about.into_iter().map(policy_view).collect(),
            tools,
        }))
    }
}

fn policy_view(p: &Policy) -> PolicyView {
    PolicyView {
        key: p.key.clone(),
        name: p.name.clone(),
        effect: match p.effect {
            Effect::Allow => PolicyEffect::Allow,
            Effect::Deny => PolicyEffect::Deny,
        },
        subjects: p.subjects.clone(),
        clients: p.clients.clone(),
        scopes: p.scopes.clone(),
        groups: p.groups.clone(),
        tools: p.tools.iter().map(|g| g.text.clone()).collect(),
    }
}

/// What `who` may call of `agent`'s `tools`, as the handler decides it.
fn agent_tools(
    policies: &Policies,
    who: &Who<'_>,
    agent: &str,
    agent_allowed: bool,
    tools: impl Iterator<Item = std::borrow::Cow<'static, str>>,
) -> AgentToolsView {
    let mut allowed = Vec::new();
    let mut denied = Vec::new();
    for tool in tools {
        let tool = tool.into_owned();
        if !agent_allowed {
            denied.push(DeniedToolView {
                reason: format!("[[clients]] agents does not include {agent:?}"),
                rule: None,
                tool,
            });
            continue;
        }
        match policies.decide(who, agent, &tool) {
            Decision::Allowed => allowed.push(tool),
            Decision::Denied(rule) => denied.push(DeniedToolView {
                reason: format!("denied by {}", rule.describe()),
                rule: Some(rule.key.clone()),
                tool,
            }),
            Decision::NotAllowed => denied.push(DeniedToolView {
                reason: "no rule allows it".to_owned(),
                rule: None,
                tool,
            }),
        }
    }
    AgentToolsView {
        agent: agent.to_owned(),
        agent_allowed,
        allowed,
        denied,
    }
}
