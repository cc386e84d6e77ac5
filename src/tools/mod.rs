//! Tools an agent can use, one file per kind.
//!
//! A `[[tools]]` entry of an agent file is a [`ToolConfig`] (tagged by `type`). Building it
//! gives a [`ToolKind`]: a running object that offers one or more MCP tool definitions and
//! executes calls to them. The same call path serves MCP clients (inner tools exposed
//! directly) and the agent's own LLM loop.

pub mod servicenow;

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool};

/// Why a tool call did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments do not match the tool's input schema or its rules
    /// (missing required field, unknown state name, ...). MCP: JSON-RPC `-32602`.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The call was well formed but failed while running (record not found, store
    /// unavailable, ...). MCP: a tool result with `isError: true` and this message.
    #[error("{0}")]
    Failed(String),
}

/// One `[[tools]]` entry of an agent file, parsed by its `type`.
///
/// Parsed with [`ToolConfig::parse`] rather than a serde-tagged enum: serde's internally
/// tagged enums buffer their content and lose the key path of errors inside the entry.
#[derive(Debug, Clone)]
pub enum ToolConfig {
    /// The ServiceNow incident tools (`create_incident`, `update_incident`,
    /// `search_incident`, `get_incident`).
    Servicenow(servicenow::ServiceNowToolConfig),
}

/// A built tool kind: the definitions it offers and the code that runs them.
#[derive(Clone)]
pub enum ToolKind {
    /// The ServiceNow incident tools.
    ServiceNow(Arc<servicenow::ServiceNowTools>),
}

impl ToolKind {
    /// The MCP tool definitions this kind offers (name, description, input schema).
    pub fn definitions(&self) -> Vec<Tool> {
        match self {
            ToolKind::ServiceNow(tools) => tools.definitions(),
        }
    }

    /// Runs the tool `name` (one of [`Self::definitions`]) with `args`.
    ///
    /// # Errors
    /// [`Error::InvalidArguments`] when `args` do not fit the tool, [`Error::Failed`] when
    /// the call fails at run time.
    pub async fn call(&self, name: &str, args: JsonObject) -> Result<serde_json::Value, Error> {
        match self {
            ToolKind::ServiceNow(tools) => tools.call(name, args).await,
        }
    }
}

/// The `type` values of `[[tools]]`.
pub const TOOL_TYPES: &str = "servicenow";

impl ToolConfig {
    /// Parses one `[[tools]]` table.
    ///
    /// # Errors
    /// `(key within the entry, message)`: a missing or unknown `type`, or the first
    /// mismatch of the kind's own keys.
    pub fn parse(mut table: toml::Table) -> Result<Self, (String, String)> {
        let kind = match table.remove("type") {
            Some(toml::Value::String(kind)) => kind,
            Some(other) => {
                return Err((
                    "type".into(),
                    format!("expected a string, found {}", other.type_str()),
                ));
            }
            None => {
                return Err((
                    "type".into(),
                    format!("missing: every [[tools]] entry needs a type ({TOOL_TYPES})"),
                ));
            }
        };
        match kind.as_str() {
            "servicenow" => parse_kind(table).map(ToolConfig::Servicenow),
            other => Err((
                "type".into(),
                format!("unknown tool type {other:?}, expected one of: {TOOL_TYPES}"),
            )),
        }
    }

    /// The names of the MCP tools this entry provides (known before building).
    pub fn tool_names(&self) -> &'static [&'static str] {
        match self {
            ToolConfig::Servicenow(_) => servicenow::TOOL_NAMES,
        }
    }

    /// Checks what serde cannot: returns `(key relative to this entry, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        match self {
            ToolConfig::Servicenow(c) => match c.store {
                servicenow::StoreKind::Embedded => Vec::new(),
                servicenow::StoreKind::TableApi => vec![(
                    "store".to_owned(),
                    "the table_api store is not available in this version yet; use store = \"embedded\"".to_owned(),
                )],
            },
        }
    }

    /// Builds the running tool kind.
    ///
    /// # Errors
    /// When a shared resource (the embedded incident store) cannot be opened.
    pub fn build(&self, resources: &Resources) -> Result<ToolKind, crate::incidents::Error> {
        match self {
            ToolConfig::Servicenow(_) => Ok(ToolKind::ServiceNow(Arc::new(
                servicenow::ServiceNowTools::new(resources.embedded_store()?),
            ))),
        }
    }
}

fn parse_kind<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.inner().message().trim().to_owned())
    })
}

/// Resources shared by all tools of all agents, opened on first use and kept for the
/// life of the process (so reloading an agent never reopens the store).
pub struct Resources {
    /// Where embedded stores keep their files.
    data_dir: std::path::PathBuf,
    /// The embedded incident store, once opened. A `std` mutex: held only while opening,
    /// never across `.await`.
    embedded: std::sync::Mutex<Option<Arc<crate::incidents::EmbeddedStore>>>,
}

impl Resources {
    /// Resources keeping their files under `data_dir`.
    pub fn new(data_dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            embedded: std::sync::Mutex::new(None),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The embedded incident store, opened (and created and seeded) on first call.
    ///
    /// # Errors
    /// When the store cannot be opened.
    pub fn embedded_store(
        &self,
    ) -> Result<Arc<crate::incidents::EmbeddedStore>, crate::incidents::Error> {
        let mut slot = self
            .embedded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(store) = slot.as_ref() {
            return Ok(store.clone());
        }
        let store = Arc::new(crate::incidents::EmbeddedStore::open(&self.data_dir)?);
        *slot = Some(store.clone());
        Ok(store)
    }
}
