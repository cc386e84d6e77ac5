//! The ServiceNow tool kind: `create_incident`, `update_incident`, `search_incident` and
//! `get_incident` over an incident store.
//!
//! This file owns the kind's config ([`ServiceNowToolConfig`]), the four MCP tool definitions
//! (hand-written JSON Schemas, each property described for the model that reads them) and the
//! call path: arguments are parsed into serde structs that refuse unknown properties, the
//! choice fields (state, impact, urgency, priority) accept names, codes and display values
//! through [`crate::incidents::vocab`], and store errors become [`Error::InvalidArguments`]
//! (the caller can fix the call) or [`Error::Failed`] (it failed at run time). Results are the
//! incident JSON of [`Incident`](crate::incidents::Incident)'s `Serialize`, with ServiceNow display values.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Error;
#[cfg(doc)]
use crate::incidents::EmbeddedStore;
use crate::incidents::table_api::{self, Credentials, TableApiSettings};
use crate::incidents::{
    self, IncidentNumber, IncidentPatch, Level, NewIncident, Priority, SearchQuery, State, Store,
    TableApiStore,
};

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

/// A `[[tools]]` entry with `type = "servicenow"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNowToolConfig {
    /// Where the incidents live: `embedded` (the default: SQLite in the gateway's data
    /// directory) or `table_api` (a ServiceNow instance).
    #[serde(default)]
    pub store: StoreKind,
    /// `table_api`: the instance's address, e.g. `https://dev12345.service-now.com`.
    pub instance_url: Option<String>,
    /// `table_api`, basic auth: the ServiceNow user.
    pub username: Option<String>,
    /// `table_api`, basic auth: its password.
    pub password: Option<SecretString>,
    /// `table_api`, OAuth client credentials: the OAuth application's client id.
    pub client_id: Option<String>,
    /// `table_api`, OAuth client credentials: its client secret.
    pub client_secret: Option<SecretString>,
    /// `table_api`: timeout of one request to the instance, in seconds. Default 30.
    pub timeout_secs: Option<u64>,
    /// Not a key of the file: the variables each key's value is read from (`instance_url` →
    /// `["SERVICENOW_INSTANCE_URL"]`), taken from the file's text before interpolation, so
    /// that an unset one is named in the tools' errors. Filled by the agent loader.
    #[serde(skip)]
    pub variables: BTreeMap<String, Vec<String>>,
}

/// The keys that only apply to `store = "table_api"`.
pub const TABLE_API_KEYS: &[&str] = &[
    "instance_url",
    "username",
    "password",
    "client_id",
    "client_secret",
    "timeout_secs",
];

/// Which incident store the ServiceNow tools use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// The embedded SQLite store ([`EmbeddedStore`]), created and seeded on first start.
    #[default]
    Embedded,
    /// A real ServiceNow instance through its Table API (`/api/now/table/incident`).
    TableApi,
}

/// A validated store choice.
#[derive(Debug)]
pub enum StoreSpec {
    /// The embedded store.
    Embedded,
    /// A ServiceNow instance: its settings, or, when a value is empty (an unset variable),
    /// what to set; the tools then answer every call with that.
    TableApi(Result<TableApiSettings, String>),
}

impl ServiceNowToolConfig {
    /// Checks what serde cannot: `(key, message)` pairs. An empty value is not an error (the
    /// agent loads and its tools say what to set); a missing key, a malformed URL or two
    /// kinds of credentials at once are.
    pub fn validate(&self) -> Vec<(String, String)> {
        self.spec().err().unwrap_or_default()
    }

    /// The problems of each value on its own, whatever the store: a zero `timeout_secs`, a
    /// malformed `instance_url`. Used when `store` itself is wrong, so that it does not hide
    /// them.
    pub fn value_errors(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if let Some(url) = self.instance_url.as_deref().map(str::trim)
            && !url.is_empty()
            && let Err(message) = instance_url(url)
        {
            errors.push(("instance_url".to_owned(), message));
        }
        if self.timeout_secs == Some(0) {
            errors.push((
                "timeout_secs".to_owned(),
                "must be at least 1 (seconds)".to_owned(),
            ));
        }
        errors
    }

    /// The validated store choice.
    ///
    /// # Errors
    /// Every `(key, message)` problem: `table_api` keys on the embedded store; for
    /// `table_api`, a missing `instance_url` key or a malformed one, no credential keys, a
    /// username without a password key (or a client id without a secret), values for both
    /// kinds of credentials, a zero timeout.
    pub fn spec(&self) -> Result<StoreSpec, Vec<(String, String)>> {
        match self.store {
            StoreKind::Embedded => {
                let errors: Vec<(String, String)> = self
                    .present_keys()
                    .into_iter()
                    .map(|key| {
                        (
                            key.to_owned(),
                            "only applies to store = \"table_api\"".to_owned(),
                        )
                    })
                    .collect();
                if errors.is_empty() {
                    Ok(StoreSpec::Embedded)
                } else {
                    Err(errors)
                }
            }
            StoreKind::TableApi => self.table_api_spec(),
        }
    }

    /// The `table_api` keys this entry has (empty values included).
    fn present_keys(&self) -> Vec<&'static str> {
        let present = [
            self.instance_url.is_some(),
            self.username.is_some(),
            self.password.is_some(),
            self.client_id.is_some(),
            self.client_secret.is_some(),
            self.timeout_secs.is_some(),
        ];
        TABLE_API_KEYS
            .iter()
            .zip(present)
            .filter_map(|(key, present)| present.then_some(*key))
            .collect()
    }

    fn table_api_spec(&self) -> Result<StoreSpec, Vec<(String, String)>> {
        let mut errors: Vec<(String, String)> = Vec::new();
        let mut fail = |key: &str, message: String| errors.push((key.to_owned(), message));
        let text = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let secret = |v: &Option<SecretString>| {
            v.as_ref()
                .filter(|s| !s.expose_secret().trim().is_empty())
                .cloned()
        };

        let instance_url = match self.instance_url.as_deref().map(str::trim) {
            None => {
                fail(
                    "instance_url",
                    "required for store = \"table_api\": the instance's address, e.g. \
                     \"https://dev12345.service-now.com\" or \"${SERVICENOW_INSTANCE_URL:-}\""
                        .to_owned(),
                );
                None
            }
            Some("") => None,
            Some(url) => match instance_url(url) {
                Ok(url) => Some(url),
                Err(message) => {
                    fail("instance_url", message);
                    None
                }
            },
        };

        let (username, password) = (text(&self.username), secret(&self.password));
        let (client_id, client_secret) = (text(&self.client_id), secret(&self.client_secret));
        let basic_keys = self.username.is_some() || self.password.is_some();
        let oauth_keys = self.client_id.is_some() || self.client_secret.is_some();
        let basic_given = username.is_some() || password.is_some();
        let oauth_given = client_id.is_some() || client_secret.is_some();
        if !basic_keys && !oauth_keys {
            fail(
                "username",
                "store = \"table_api\" needs credentials: username and password (basic auth), \
                 or client_id and client_secret (OAuth client credentials)"
                    .to_owned(),
            );
        }
        for (key, present, pair, pair_present) in [
            (
                "password",
                self.password.is_some(),
                "username",
                self.username.is_some(),
            ),
            (
                "username",
                self.username.is_some(),
                "password",
                self.password.is_some(),
            ),
            (
                "client_secret",
                self.client_secret.is_some(),
                "client_id",
                self.client_id.is_some(),
            ),
            (
                "client_id",
                self.client_id.is_some(),
                "client_secret",
                self.client_secret.is_some(),
            ),
        ] {
            if pair_present && !present {
                fail(key, format!("required with {pair}"));
            }
        }
        if basic_given && oauth_given {
            fail(
                "client_id",
                "give either username and password (basic auth) or client_id and client_secret \
                 (OAuth client credentials), not both"
                    .to_owned(),
            );
        }
        if self.timeout_secs == Some(0) {
            fail("timeout_secs", "must be at least 1 (seconds)".to_owned());
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        // Everything written is well formed; what is still empty comes from unset variables.
        let mut missing = Vec::new();
        if instance_url.is_none() {
            missing.push(format!(
                "{} (the instance's address, e.g. https://dev12345.service-now.com)",
                self.setting("instance_url")
            ));
        }
        let credentials = match (username, password, client_id, client_secret) {
            (Some(username), Some(password), None, None) => {
                Some(Credentials::Basic { username, password })
            }
            (None, None, Some(client_id), Some(client_secret)) => Some(Credentials::OAuth {
                client_id,
                client_secret,
            }),
            (username, password, None, None) if basic_given => {
                let unset = [
                    ("username", username.is_none()),
                    ("password", password.is_none()),
                ];
                missing.extend(unset.iter().filter(|u| u.1).map(|u| self.setting(u.0)));
                None
            }
            (None, None, client_id, client_secret) if oauth_given => {
                let unset = [
                    ("client_id", client_id.is_none()),
                    ("client_secret", client_secret.is_none()),
                ];
                missing.extend(unset.iter().filter(|u| u.1).map(|u| self.setting(u.0)));
                None
            }
            _ => {
                let mut ways = Vec::new();
                if basic_keys {
                    ways.push(format!(
                        "{} and {} (basic auth)",
                        self.setting("username"),
                        self.setting("password")
                    ));
                }
                if oauth_keys {
                    ways.push(format!(
                        "{} and {} (OAuth client credentials)",
                        self.setting("client_id"),
                        self.setting("client_secret")
                    ));
                }
                missing.push(ways.join(", or "));
                None
            }
        };
        match (instance_url, credentials) {
            (Some(instance_url), Some(credentials)) if missing.is_empty() => {
                Ok(StoreSpec::TableApi(Ok(TableApiSettings {
                    instance_url,
                    credentials,
                    timeout: self
                        .timeout_secs
                        .map_or(table_api::DEFAULT_TIMEOUT, Duration::from_secs),
                })))
            }
            _ => Ok(StoreSpec::TableApi(Err(format!(
                "set {}",
                missing.join(", and ")
            )))),
        }
    }

    /// What sets `key`: the variables its value reads, or the key itself.
    fn setting(&self, key: &str) -> String {
        match self.variables.get(key) {
            Some(vars) if !vars.is_empty() => vars.join(" or "),
            _ => format!("{key} of the servicenow tool"),
        }
    }

    /// Builds the store this entry names; the embedded one is shared through `resources`.
    ///
    /// # Errors
    /// When the embedded store cannot be opened or the HTTP client cannot be built.
    pub fn build_store(&self, resources: &super::Resources) -> Result<Store, String> {
        // Validation ran before (the agent would not be built otherwise); the spec is pure and
        // cheap, so it is derived again here rather than carried in the config.
        let spec = self.spec().map_err(|errors| {
            errors
                .iter()
                .map(|(key, message)| format!("{key}: {message}"))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok(match spec {
            StoreSpec::Embedded => {
                Store::Embedded(resources.embedded_store().map_err(|e| e.to_string())?)
            }
            StoreSpec::TableApi(Ok(settings)) => {
                let instance = settings.instance_url.clone();
                let store = TableApiStore::new(settings).map_err(|e| e.to_string())?;
                tracing::debug!(instance = %instance, "ServiceNow Table API store ready.");
                Store::TableApi(Arc::new(store))
            }
            StoreSpec::TableApi(Err(hint)) => {
                Store::TableApi(Arc::new(TableApiStore::not_configured(hint)))
            }
        })
    }
}

/// Checks and normalizes `instance_url`: an absolute http(s) URL with a host, without
/// credentials, query or fragment; the trailing `/` is dropped.
fn instance_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        format!("{url:?} is not a valid URL ({e}): write it as https://<instance>.service-now.com")
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Never echo it: it carries credentials.
        return Err(
            "must not carry credentials (user:password@): use username and password, or \
             client_id and client_secret"
                .to_owned(),
        );
    }
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "{url:?} uses the {:?} scheme: a ServiceNow instance is reached over https",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "{url:?} has a query or a fragment: give the instance's address only"
        ));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

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
    pub async fn call(&self, name: &str, args: JsonObject) -> Result<Value, Error> {
        match name {
            CREATE_INCIDENT => self.create(args).await,
            UPDATE_INCIDENT => self.update(args).await,
            SEARCH_INCIDENT => self.search(args).await,
            GET_INCIDENT => self.get(args).await,
            other => Err(Error::InvalidArguments(format!(
                "unknown tool `{other}`: expected {CREATE_INCIDENT}, {UPDATE_INCIDENT}, \
                 {SEARCH_INCIDENT} or {GET_INCIDENT}"
            ))),
        }
    }

    async fn create(&self, args: JsonObject) -> Result<Value, Error> {
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
            work_notes: args.work_notes,
        };
        // Checked here, before either store is reached, so that both answer the same.
        new.check_lengths().map_err(invalid)?;
        let incident = self.store.create(new).await.map_err(store_error)?;
        to_json(&incident)
    }

    async fn update(&self, args: JsonObject) -> Result<Value, Error> {
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
            work_notes: args.work_notes,
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
        to_json(&incident)
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
        Ok(json!({ "count": incidents.len(), "incidents": to_json(&incidents)? }))
    }

    async fn get(&self, args: JsonObject) -> Result<Value, Error> {
        let args: GetArgs = parse_args(args, GetArgs::TEXT)?;
        let number = IncidentNumber::parse(&args.number).map_err(invalid)?;
        match self.store.get(number.as_str()).await.map_err(store_error)? {
            Some(incident) => to_json(&incident),
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

fn to_json(value: &impl serde::Serialize) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|err| Error::Failed(format!("cannot encode result: {err}")))
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
        | incidents::Error::Task(_)) => {
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

const STATE_HELP: &str = "New, In Progress, On Hold, Resolved, Closed or Canceled (or the code \
                          1, 2, 3, 6, 7, 8)";
const LEVEL_HELP: &str = "High, Medium or Low (or the code 1, 2, 3)";

fn object_schema(properties: Value, required: &[&str]) -> JsonObject {
    let mut schema = JsonObject::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), properties);
    schema.insert("required".into(), json!(required));
    schema.insert("additionalProperties".into(), json!(false));
    schema
}

fn text(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

/// A text property of an incident field, with ServiceNow's length for it.
fn field(name: &str, description: &str) -> Value {
    let mut property = text(description);
    if let (Some(limit), Value::Object(map)) = (incidents::model::max_length(name), &mut property) {
        map.insert("maxLength".into(), json!(limit));
    }
    property
}

fn definitions() -> Vec<Tool> {
    let number = text("Incident number: INC followed by 7 digits, e.g. INC0012346.");
    let impact = |default: &str| {
        text(&format!(
            "How widely the business is affected: {LEVEL_HELP}.{default} Priority is derived \
             from impact and urgency."
        ))
    };
    let urgency = |default: &str| {
        text(&format!(
            "How soon it must be fixed: {LEVEL_HELP}.{default} Priority is derived from \
             impact and urgency."
        ))
    };
    let category = field(
        "category",
        "Category: inquiry, software, hardware, network or database.",
    );
    let assignment_group = field(
        "assignment_group",
        "Team to assign the incident to, e.g. Network, Service Desk.",
    );
    let assigned_to = field("assigned_to", "Person to assign the incident to.");

    let create = Tool::new(
        CREATE_INCIDENT,
        "Create a ServiceNow incident in state New and return it with its generated number \
         (INC + 7 digits). Only short_description is required; impact and urgency default to \
         Low, and priority is derived from them.",
        object_schema(
            json!({
                "short_description": field("short_description", "One-line summary of the problem (required, not empty)."),
                "description": field("description", "Full description: symptoms, who is affected, since when."),
                "caller": field("caller", "Name of the person reporting the incident."),
                "category": category,
                "impact": impact(" Default Low."),
                "urgency": urgency(" Default Low."),
                "assignment_group": assignment_group,
                "assigned_to": assigned_to,
                "work_notes": field("work_notes", "A first internal work note."),
            }),
            &["short_description"],
        ),
    )
    .with_annotations(
        ToolAnnotations::new()
            .read_only(false)
            .destructive(false)
            .idempotent(false)
            .open_world(false),
    );

    let update = Tool::new(
        UPDATE_INCIDENT,
        "Update an incident by number and return the updated incident; only the fields given \
         change. work_notes is appended to the journal. Setting state to Resolved or Closed \
         requires close_notes (what fixed it) unless the incident already has them.",
        object_schema(
            json!({
                "number": number,
                "short_description": field("short_description", "New one-line summary (not empty)."),
                "description": field("description", "New full description."),
                "state": text(&format!(
                    "New state: {STATE_HELP}. Resolved and Closed require close_notes."
                )),
                "impact": impact(""),
                "urgency": urgency(""),
                "category": category,
                "assignment_group": assignment_group,
                "assigned_to": assigned_to,
                "work_notes": field("work_notes", "Internal note appended to the work notes journal (earlier notes are kept)."),
                "close_code": field("close_code", "How it was closed, e.g. Solved (Permanently), Solved (Work Around), Not Solved (Not Reproducible). Defaults to Solved (Permanently) when resolving."),
                "close_notes": field("close_notes", "What was done to resolve the incident; required to set state Resolved or Closed."),
            }),
            &["number"],
        ),
    )
    .with_annotations(
        ToolAnnotations::new()
            .read_only(false)
            .destructive(true)
            .idempotent(false)
            .open_world(false),
    );

    let search = Tool::new(
        SEARCH_INCIDENT,
        "Search incidents, newest first. query matches case-insensitively within the number, \
         short description, description, work notes and close notes; state and priority \
         filter. Returns {count, incidents}.",
        object_schema(
            json!({
                "query": text("Text to look for, e.g. VPN. Omit to list incidents."),
                "state": text(&format!("Only incidents in this state: {STATE_HELP}.")),
                "priority": text(
                    "Only incidents of this priority: Critical, High, Moderate, Low or \
                     Planning (or the code 1 to 5)."
                ),
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_LIMIT,
                    "default": DEFAULT_LIMIT,
                    "description": "Maximum number of incidents to return, 1 to 100 (default 10).",
                },
            }),
            &[],
        ),
    )
    .with_annotations(ToolAnnotations::new().read_only(true).open_world(false));

    let get = Tool::new(
        GET_INCIDENT,
        "Get one incident by number with all its fields, including the work notes journal.",
        object_schema(json!({ "number": number }), &["number"]),
    )
    .with_annotations(ToolAnnotations::new().read_only(true).open_world(false));

    vec![create, update, search, get]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "servicenow_tests.rs"]
mod tests;
