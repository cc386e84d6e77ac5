//! The tools a model is offered, as the Chat Completions API's function definitions
//! (`{"type": "function", "function": {name, description, parameters}}`), serialised once.
//!
//! Every turn of every run sends the agent's tools; their schemas are most of a request's body
//! (the shipped ServiceNow agent: ~4.6 of 5.2 KiB), and escaping them again each turn was
//! about a tenth of an agent run's instructions (callgrind). A tool's JSON depends only on its
//! name, description and schema, and a schema is an `Arc` that changes only when the tool is
//! defined again (a reload, an upstream server's new list), so each client keeps the JSON of
//! the tools it sent, by name, and serialises a tool again only when its schema (by identity)
//! or description differs from the cached one.

use std::sync::Arc;

use dashmap::DashMap;
use rmcp::model::{JsonObject, Tool};
use serde::Serialize;
use serde_json::value::RawValue;

/// More names than this and the cache starts over (an upstream server renaming its tools on
/// every listing must not grow it without end).
const MAX_CACHED: usize = 1024;

/// One agent's function definitions, by tool name.
#[derive(Default)]
pub(super) struct Functions {
    cache: DashMap<Box<str>, Cached>,
}

struct Cached {
    /// Held, so that the schema the entry was made from cannot be freed and its address
    /// reused by another one while the entry stands.
    schema: Arc<JsonObject>,
    description: Option<String>,
    json: Arc<RawValue>,
}

impl Cached {
    fn describes(&self, tool: &Tool) -> bool {
        Arc::ptr_eq(&self.schema, &tool.input_schema)
            && self.description.as_deref() == tool.description.as_deref()
    }
}

impl Functions {
    /// The definitions of `tools`, in their order.
    ///
    /// # Errors
    /// When a schema cannot be serialised (it is JSON already, so only in theory).
    pub(super) fn of(&self, tools: &[Tool]) -> Result<Vec<Arc<RawValue>>, serde_json::Error> {
        tools.iter().map(|tool| self.one(tool)).collect()
    }

    fn one(&self, tool: &Tool) -> Result<Arc<RawValue>, serde_json::Error> {
        if let Some(hit) = self.cache.get(tool.name.as_ref())
            && hit.describes(tool)
        {
            return Ok(hit.json.clone());
        }
        let json: Arc<RawValue> = serde_json::value::to_raw_value(&FunctionTool::of(tool))?.into();
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        self.cache.insert(
            tool.name.as_ref().into(),
            Cached {
                schema: tool.input_schema.clone(),
                description: tool.description.as_deref().map(str::to_owned),
                json: json.clone(),
            },
        );
        Ok(json)
    }
}

/// An MCP tool definition as an OpenAI function tool, borrowing its name, description and
/// schema.
#[derive(Serialize)]
struct FunctionTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionDefinition<'a>,
}

#[derive(Serialize)]
struct FunctionDefinition<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    parameters: &'a JsonObject,
}

impl<'a> FunctionTool<'a> {
    fn of(tool: &'a Tool) -> Self {
        Self {
            kind: "function",
            function: FunctionDefinition {
                name: &tool.name,
                description: tool.description.as_deref(),
                parameters: &tool.input_schema,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(property: &str) -> Arc<JsonObject> {
        let mut properties = JsonObject::new();
        properties.insert(property.into(), serde_json::json!({"type": "string"}));
        let mut schema = JsonObject::new();
        schema.insert("type".into(), "object".into());
        schema.insert("properties".into(), properties.into());
        Arc::new(schema)
    }

    fn text(functions: &Functions, tools: &[Tool]) -> Result<Vec<String>, serde_json::Error> {
        Ok(functions
            .of(tools)?
            .iter()
            .map(|raw| raw.get().to_owned())
            .collect())
    }

    #[test]
    fn a_tool_is_serialised_again_only_when_its_definition_changed() -> Result<(), serde_json::Error>
    {
        let functions = Functions::default();
        let first = Tool::new("search", "Search.", schema("query"));
        let [once] = &functions.of(std::slice::from_ref(&first))?[..] else {
            panic!("one tool in, one definition out");
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(once.get())?,
            serde_json::json!({"type": "function", "function": {"name": "search",
                "description": "Search.", "parameters": {"type": "object",
                "properties": {"query": {"type": "string"}}}}})
        );
        // The same definition again (a clone shares the schema): the same bytes, not re-made.
        let [again] = &functions.of(std::slice::from_ref(&first.clone()))?[..] else {
            panic!("one tool in, one definition out");
        };
        assert!(Arc::ptr_eq(once, again));
        // Redefined under the same name (a reload, an upstream's new list): the new schema.
        let redefined = Tool::new("search", "Search.", schema("text"));
        assert!(text(&functions, &[redefined])?[0].contains("\"text\""));
        // A new description with the same schema is seen too.
        let mut described = first.clone();
        described.description = Some("Find incidents.".into());
        assert!(text(&functions, &[described])?[0].contains("Find incidents."));
        Ok(())
    }

    #[test]
    fn the_cache_starts_over_beyond_its_bound() -> Result<(), serde_json::Error> {
        let functions = Functions::default();
        let shared = schema("q");
        for i in 0..MAX_CACHED + 10 {
            functions.of(&[Tool::new(format!("t{i}"), "d", shared.clone())])?;
        }
        assert!(functions.cache.len() <= MAX_CACHED);
        Ok(())
    }
}
