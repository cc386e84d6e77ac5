//! The ServiceNow tool kind: `create_incident`, `update_incident`, `search_incident` and
//! `get_incident` over an incident store.
//!
//! This file owns the kind's config ([`ServiceNowToolConfig`]), the four MCP tool definitions
//! (hand-written JSON Schemas, each property described for the model that reads them) and the
//! call path: arguments are parsed into serde structs that refuse unknown properties, the
//! choice fields (state, impact, urgency, priority) accept names, codes and display values
//! through [`crate::incidents::vocab`], and store errors become [`Error::InvalidArguments`]
//! (the caller can fix the call) or [`Error::Failed`] (it failed at run time). Results are the
//! incident JSON of [`Incident::to_json`] (what its `Serialize` writes), with ServiceNow display
//! values.

use std::fmt::Display;

use rmcp::model::{JsonObject, Tool};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Error;
use crate::identity::Identity;

mod config;
mod schema;

#[cfg(doc)]
use crate::incidents::EmbeddedStore;
use crate::incidents::table_api::{self, Credentials, TableApiSpec};
use crate::incidents::{
    self, Incident, IncidentNumber, IncidentPatch, Level, NewIncident, Priority, SearchQuery,
    State, Store, TableApiStore,
};
pub use config::{ServiceNowToolConfig, StoreKind, StoreSpec};
use schema::definitions;

/// Name of the tool that creates an incident.
pub const CREATE_INCIDENT: &str = "create_incident";
/// Name of the tool that updates an incident by number.
pub const UPDATE_INCIDENT: &str = "update_incident";
/// Name of the tool that searches incidents.
pub const SEARCH_INCIDENT: &str = "search_incident";
/// Name of the tool that reads one incident by number.
pub const GET_INCIDENT: &str = "get_incident";

/// The names of the four tools, in the order [`ServiceNowTools::definitions`] lists them.
pub const TOOL_NAMES: &[&str] = &[
    CREATE_INCIDENT,
    UPDATE_INCIDENT,
    SEARCH_INCIDENT,
    GET_INCIDENT,
];

/// `search_incident`'s `limit` when none is given.
const DEFAULT_LIMIT: usize = 10;
/// The largest `limit` `search_incident` accepts.
const MAX_LIMIT: usize = 100;

/// The built ServiceNow tool kind: its four definitions and the store they act on.
pub struct ServiceNowTools {
    /// Where incidents are read and written.
    store: Store,
    /// The four definitions, built once; cloning one clones an `Arc`'d schema.
    definitions: Vec<Tool>,
}

impl ServiceNowTools {
    /// The tools over `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            definitions: definitions(),
        }
    }

    /// What to set before the store can work, if anything (see [`Store::missing_settings`]).
    pub fn missing_settings(&self) -> Option<&str> {
        self.store.missing_settings()
    }

    /// The MCP tool definitions: `create_incident`, `update_incident`, `search_incident`,
    /// `get_incident`.
    pub fn definitions(&self) -> Vec<Tool> {
        self.definitions.clone()
    }

    /// Runs the tool `name` with `args`. create, update and get return the incident object;
    /// search returns `{"count": n, "incidents": [...]}`.
    ///
    /// # Errors
    /// [`Error::InvalidArguments`] for an unknown tool, arguments that do not fit its schema
    /// or a change that breaks an incident rule (resolving without close notes, ...);
    /// [`Error::Failed`] when the incident does not exist or the store fails.
    /// A write records who asked (`for`: the OAuth subject, or the configured client) in
    /// the incident's work notes, on either store.
    pub async fn call(
        &self,
        name: &str,
        args: JsonObject,
        caller: &Identity,
    ) -> Result<Value, Error> {
        let asked_by = caller.attribution();
        match name {
            CREATE_INCIDENT => self.create(args, asked_by.as_deref()).await,
            UPDATE_INCIDENT => self.update(args, asked_by.as_deref()).await,
            SEARCH_INCIDENT => self.search(args).await,
            GET_INCIDENT => self.get(args).await,
            other => Err(Error::InvalidArguments(format!(
                "unknown tool `{other}`: expected {CREATE_INCIDENT}, {UPDATE_INCIDENT}, \
                 {SEARCH_INCIDENT} or {GET_INCIDENT}"
            ))),
        }
    }

    async fn create(&self, args: JsonObject, asked_by: Option<&str>) -> Result<Value, Error> {
        let args: CreateArgs = parse_args(args, CreateArgs::TEXT)?;
        let new = NewIncident {
            short_description: args.short_description,
            description: args.description,
            caller: args.caller,
            category: args.category,
            impact: level("impact", args.impact)?,
            urgency: level("urgency", args.urgency)?,
            assignment_group: args.assignment_group,
            assigned_to: args.assigned_to,
            work_notes: attributed(args.work_notes, "Opened", asked_by),
        };
        // Checked here, before either store is reached, so that both answer the same.
        new.check_lengths().map_err(invalid)?;
        let incident = self.store.create(new).await.map_err(store_error)?;
        Ok(incident.to_json())
    }

    async fn update(&self, args: JsonObject, asked_by: Option<&str>) -> Result<Value, Error> {
        let args: UpdateArgs = parse_args(args, UpdateArgs::TEXT)?;
        let number = IncidentNumber::parse(&args.number).map_err(invalid)?;
        let patch = IncidentPatch {
            short_description: args.short_description,
            description: args.description,
            caller: None,
            category: args.category,
            impact: level("impact", args.impact)?,
            urgency: level("urgency", args.urgency)?,
            state: args
                .state
                .map(|v| State::from_json(&v).map_err(invalid))
                .transpose()?,
            assignment_group: args.assignment_group,
            assigned_to: args.assigned_to,
            work_notes: attributed(args.work_notes, "Updated", asked_by),
            close_code: args.close_code,
            close_notes: args.close_notes,
        };
        // Before either store is reached (the Table API store looks the number up first).
        patch.check_lengths().map_err(invalid)?;
        let incident = self
            .store
            .update(number.as_str(), patch)
            .await
            .map_err(store_error)?;
        Ok(incident.to_json())
    }

    async fn search(&self, args: JsonObject) -> Result<Value, Error> {
        let args: SearchArgs = parse_args(args, SearchArgs::TEXT)?;
        let query = SearchQuery {
            text: args.query,
            state: args
                .state
                .map(|v| State::from_json(&v).map_err(invalid))
                .transpose()?,
            priority: args
                .priority
                .map(|v| Priority::from_json(&v).map_err(invalid))
                .transpose()?,
            limit: limit(args.limit)?,
        };
        let incidents = self.store.search(query).await.map_err(store_error)?;
        // The answer built from its parts: `json!` would turn the incidents' values into a
        // new value through `to_value`, serialising each one again (callgrind: ~13k
        // instructions of a one-incident `search_incident` call).
        let mut answer = serde_json::Map::new();
        answer.insert("count".to_owned(), incidents.len().into());
        answer.insert(
            "incidents".to_owned(),
            Value::Array(incidents.iter().map(Incident::to_json).collect()),
        );
        Ok(Value::Object(answer))
    }

    async fn get(&self, args: JsonObject) -> Result<Value, Error> {
        let args: GetArgs = parse_args(args, GetArgs::TEXT)?;
        let number = IncidentNumber::parse(&args.number).map_err(invalid)?;
        match self.store.get(number.as_str()).await.map_err(store_error)? {
            Some(incident) => Ok(incident.to_json()),
            None => Err(Error::Failed(format!("incident {number} not found"))),
        }
    }
}

// === Arguments ===

/// `create_incident`'s arguments. Choice fields stay JSON until parsed, so strings and
/// numbers are both accepted and errors name the field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateArgs {
    short_description: String,
    description: Option<String>,
    caller: Option<String>,
    category: Option<String>,
    impact: Option<Value>,
    urgency: Option<Value>,
    assignment_group: Option<String>,
    assigned_to: Option<String>,
    work_notes: Option<String>,
}

impl CreateArgs {
    const TEXT: &[&str] = &[
        "short_description",
        "description",
        "caller",
        "category",
        "assignment_group",
        "assigned_to",
        "work_notes",
    ];
}

/// `update_incident`'s arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateArgs {
    number: String,
    short_description: Option<String>,
    description: Option<String>,
    state: Option<Value>,
    impact: Option<Value>,
    urgency: Option<Value>,
    category: Option<String>,
    assignment_group: Option<String>,
    assigned_to: Option<String>,
    work_notes: Option<String>,
    close_code: Option<String>,
    close_notes: Option<String>,
}

impl UpdateArgs {
    const TEXT: &[&str] = &[
        "number",
        "short_description",
        "description",
        "category",
        "assignment_group",
        "assigned_to",
        "work_notes",
        "close_code",
        "close_notes",
    ];
}

/// `search_incident`'s arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    query: Option<String>,
    state: Option<Value>,
    priority: Option<Value>,
    limit: Option<Value>,
}

impl SearchArgs {
    const TEXT: &[&str] = &["query"];
}

/// `get_incident`'s arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetArgs {
    number: String,
}

impl GetArgs {
    const TEXT: &[&str] = &["number"];
}

/// The work note of a write done for `asked_by`: the caller's own note with a line naming
/// who asked, or that line alone (`Opened via Switchboard for alice@example.com`). An
/// anonymous caller's note is left as it is.
fn attributed(note: Option<String>, done: &str, asked_by: Option<&str>) -> Option<String> {
    let Some(who) = asked_by else {
        return note;
    };
    Some(match note.as_deref().map(str::trim) {
        Some(note) if !note.is_empty() => format!("{note}\n\n(via Switchboard for {who})"),
        _ => format!("{done} via Switchboard for {who}"),
    })
}

fn invalid(err: impl Display) -> Error {
    Error::InvalidArguments(err.to_string())
}

/// Parses `args` into `T`. Text fields are checked first, so a wrong type names its field
/// (serde's own message would not).
fn parse_args<T: DeserializeOwned>(args: JsonObject, text_fields: &[&str]) -> Result<T, Error> {
    for (key, value) in &args {
        if text_fields.contains(&key.as_str()) && !(value.is_string() || value.is_null()) {
            return Err(Error::InvalidArguments(format!(
                "{key} must be a string, got {value}"
            )));
        }
    }
    serde_json::from_value(Value::Object(args))
        .map_err(|err| Error::InvalidArguments(err.to_string()))
}

fn level(field: &'static str, value: Option<Value>) -> Result<Option<Level>, Error> {
    value
        .map(|v| Level::from_json(&v).map_err(|err| invalid(err.for_field(field))))
        .transpose()
}

/// `limit`: an integer (or a string of digits) from 1 to [`MAX_LIMIT`].
fn limit(value: Option<Value>) -> Result<usize, Error> {
    let Some(value) = value else {
        return Ok(DEFAULT_LIMIT);
    };
    let parsed = match &value {
        Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
        Value::String(s) => s.trim().parse::<usize>().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(Error::InvalidArguments(format!(
            "limit must be an integer from 1 to {MAX_LIMIT}, got {value}"
        ))),
    }
}

/// Maps a store error to a tool error: rule violations are the caller's to fix, the rest
/// failed at run time and is logged.
fn store_error(err: incidents::Error) -> Error {
    match err {
        incidents::Error::Invalid(violation) => invalid(violation),
        incidents::Error::NotFound { number } => {
            Error::Failed(format!("incident {number} not found"))
        }
        err @ (incidents::Error::Storage(_)
        | incidents::Error::Io { .. }
        | incidents::Error::UnsupportedSchema { .. }
        | incidents::Error::NumbersExhausted
        | incidents::Error::Commit(_)
        | incidents::Error::WritePanicked
        | incidents::Error::WriterStopped
        | incidents::Error::WriterThread(_)) => {
            tracing::error!(error = %err, "Incident store failed.");
            Error::Failed(format!("incident store error: {err}"))
        }
        // Already in words for the caller, and free of credentials.
        incidents::Error::TableApi(err) => {
            if !matches!(err, incidents::table_api::Error::NotConfigured { .. }) {
                tracing::warn!(error = %err, "ServiceNow call failed.");
            }
            Error::Failed(err.to_string())
        }
    }
}

// === Definitions ===

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
