//! The Table API incident store: the incidents of a real ServiceNow instance, read and written
//! through its REST Table API (`/api/now/table/incident`).
//!
//! It offers the same four operations as the embedded store, on the same domain types, and
//! applies the same rules before it calls the instance (a blank summary, resolving without
//! close notes, an empty update and a malformed number are refused without a request), so the
//! tools behave alike on both stores.
//!
//! # Requests
//!
//! - create: `POST /api/now/table/incident`.
//! - get and search: `GET /api/now/table/incident` with `sysparm_query` (`number=`, text
//!   `LIKE` over the number, descriptions, work notes and close notes, `state=`, `priority=`,
//!   newest first by `opened_at` then `number`, as the embedded store orders), `sysparm_limit`,
//!   `sysparm_fields` and `sysparm_display_value=all`.
//! - update: the record is read by number (its `sys_id`, and the current values the rules are
//!   checked against), then `PATCH /api/now/table/incident/{sys_id}` with only what changes.
//!
//! Reads take codes for the choice fields (state, impact, urgency, priority) and UTC times
//! from each field's `value`, and names for the reference fields (caller, group, assignee)
//! and the work-notes journal from its `display_value`. Writes send choice codes and the
//! reference fields by name, with `sysparm_input_display_value=true` so the instance resolves
//! those names to its records.
//!
//! # Authentication
//!
//! Basic auth, or an OAuth access token from `POST <instance>/oauth_token.do` (client
//! credentials grant). The token is cached and fetched again shortly before it expires (one
//! minute before, or half its lifetime when that is shorter), and once more when the instance
//! answers 401 to a cached token. Credentials are [`SecretString`]s: never logged, never in an
//! error message, never in `Debug` output.
//!
//! # Failures and retries
//!
//! One pooled HTTP client per store, with a timeout per request (`timeout_secs`) and no
//! redirects (a redirect means a wrong `instance_url`, and credentials must not follow it).
//! 401 and 403 say the credentials were refused; 404 means the incident is not there; 429 is
//! retried once after `Retry-After` (when that fits in the timeout); 5xx answers, timeouts and
//! connection failures are retried once for reads only: a create or an update sent twice
//! could create a duplicate incident or a duplicate work note. An answer that is not Table API
//! JSON is an error that says so, without echoing the body.
//!
//! # Layout
//!
//! This file holds the settings, the errors and the four operations; `connection` the HTTP
//! side (client, authentication, one request and its retries, the meaning of answers);
//! `records` the Table API's shapes (encoded queries, request bodies, records as incidents).

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use secrecy::SecretString;
use serde_json::Value;

use super::model::{
    Incident, IncidentNumber, IncidentPatch, NewIncident, SearchQuery, Violation, now,
};

mod connection;
mod records;

use connection::{Call, Connection};
use records::{
    create_body, incident_from_record, read_params, result_list, result_object, update_body,
    write_params,
};
pub use records::{escape, search_query};

/// The incident table's path on an instance.
pub const TABLE_PATH: &str = "/api/now/table/incident";

/// The OAuth token endpoint's path on an instance.
pub const TOKEN_PATH: &str = "/oauth_token.do";

/// `timeout_secs` when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long before its expiry a cached OAuth token is replaced (at most; half the token's
/// lifetime when that is shorter).
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The fields read from the instance (`sysparm_fields`), ServiceNow names.
pub const FIELDS: &str = "number,sys_id,short_description,description,caller_id,category,\
                          impact,urgency,priority,state,assignment_group,assigned_to,work_notes,\
                          close_code,close_notes,opened_at,sys_updated_on,resolved_at";

/// The fields a text search looks in, as on the embedded store.
pub const TEXT_FIELDS: &[&str] = &[
    "number",
    "short_description",
    "description",
    "work_notes",
    "close_notes",
];

/// The order of search results: newest first, as on the embedded store.
pub const ORDER: &str = "ORDERBYDESCopened_at^ORDERBYDESCnumber";

// === Settings ===

/// How the gateway proves who it is to the instance.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// `Authorization: Basic`.
    Basic {
        /// The ServiceNow user.
        username: String,
        /// Its password.
        password: SecretString,
    },
    /// OAuth client credentials: a bearer token from `oauth_token.do`.
    OAuth {
        /// The OAuth application's client id.
        client_id: String,
        /// Its client secret.
        client_secret: SecretString,
    },
}

impl Credentials {
    /// What they are, in words, for error messages.
    fn kind(&self) -> CredentialKind {
        match self {
            Credentials::Basic { .. } => CredentialKind::Basic,
            Credentials::OAuth { .. } => CredentialKind::OAuth,
        }
    }
}

/// Which kind of credentials a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// Username and password.
    Basic,
    /// OAuth client id and secret.
    OAuth,
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialKind::Basic => "username and password",
            CredentialKind::OAuth => "OAuth client_id and client_secret",
        })
    }
}

/// A validated Table API store configuration.
#[derive(Debug, Clone)]
pub struct TableApiSpec {
    /// The instance's base URL without a trailing slash, e.g.
    /// `https://dev12345.service-now.com`.
    pub instance_url: String,
    /// How to authenticate.
    pub credentials: Credentials,
    /// The timeout of one HTTP request (the connection timeout is the smaller of it and 10 s).
    pub timeout: Duration,
}

// === Errors ===

/// Why a call to the instance failed. Messages say what to do and never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The instance URL or the credentials are not set (an unset variable, typically).
    #[error("ServiceNow is not configured: {hint}")]
    NotConfigured {
        /// What to set, e.g. "set SERVICENOW_INSTANCE_URL".
        hint: String,
    },
    /// 401 or 403 (from the Table API or the token endpoint).
    #[error("{}", refused_message(*status, *credentials))]
    CredentialsRefused {
        /// 401 or 403 (or 400 from the token endpoint).
        status: u16,
        /// Which credentials were refused.
        credentials: CredentialKind,
    },
    /// 429, still after one wait, or with a wait longer than the timeout.
    #[error("{}", rate_limited_message(*retry_after, *waited))]
    RateLimited {
        /// What `Retry-After` asked for, in seconds.
        retry_after: u64,
        /// Whether that wait was made once already.
        waited: bool,
    },
    /// 404 where no incident number was being looked up.
    #[error("ServiceNow answered 404 Not Found{}", quoted(message))]
    NotFound {
        /// The instance's error message.
        message: String,
    },
    /// 5xx.
    #[error("the ServiceNow instance failed (HTTP {status}){}", quoted(message))]
    Server {
        /// The status.
        status: u16,
        /// The instance's error message.
        message: String,
    },
    /// Another 4xx, e.g. a data policy refusing a value.
    #[error("ServiceNow rejected the request (HTTP {status}){}", quoted(message))]
    Rejected {
        /// The status.
        status: u16,
        /// The instance's error message.
        message: String,
    },
    /// 3xx: the URL is not the Table API's (http instead of https, a login page, ...).
    #[error(
        "ServiceNow answered HTTP {status} redirecting to {location:?}: check instance_url \
         (the instance's own https:// address)"
    )]
    Redirected {
        /// The status.
        status: u16,
        /// Where it pointed.
        location: String,
    },
    /// No answer within the timeout.
    #[error(
        "the ServiceNow instance did not answer within {secs} s (timeout_secs){}",
        if *write { "; the change may still have been made: look the incident up before \
                     repeating it" } else { "" }
    )]
    Timeout {
        /// The timeout.
        secs: u64,
        /// Whether the request was a create or an update (which is never sent twice).
        write: bool,
    },
    /// The connection failed.
    #[error("cannot reach the ServiceNow instance {instance}: {detail}")]
    Unreachable {
        /// The instance URL.
        instance: String,
        /// Why, in words.
        detail: String,
    },
    /// The answer is not what the Table API sends.
    #[error("the ServiceNow instance sent an answer that is not a Table API response: {detail}")]
    BadResponse {
        /// What was wrong with it (never the body itself).
        detail: String,
    },
    /// The HTTP client could not be built (at startup).
    #[error("cannot build the HTTP client for ServiceNow: {detail}")]
    Client {
        /// Why.
        detail: String,
    },
}

fn refused_message(status: u16, credentials: CredentialKind) -> String {
    match status {
        403 => format!(
            "ServiceNow refused the credentials for this operation (HTTP 403 Forbidden): the \
             account behind the {credentials} lacks the roles or ACLs for the incident table \
             (e.g. itil)"
        ),
        _ => format!(
            "ServiceNow refused the credentials (HTTP {status}): check the {credentials} of the \
             servicenow tool"
        ),
    }
}

fn rate_limited_message(retry_after: u64, waited: bool) -> String {
    if waited {
        format!(
            "ServiceNow is rate limiting this account (HTTP 429), still after waiting \
             {retry_after} s as its Retry-After asked: try again later"
        )
    } else {
        format!(
            "ServiceNow is rate limiting this account (HTTP 429) and asks to wait {retry_after} \
             s, longer than timeout_secs: try again later"
        )
    }
}

fn quoted(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

// === The store ===

/// The Table API store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct TableApiStore {
    /// The connection, or what to set when the configuration is incomplete.
    inner: Result<Connection, String>,
}

impl fmt::Debug for TableApiStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Ok(c) => f
                .debug_struct("TableApiStore")
                .field("instance_url", &c.instance_url)
                .field("credentials", &c.credentials.kind())
                .finish(),
            Err(hint) => f
                .debug_struct("TableApiStore")
                .field("not_configured", hint)
                .finish(),
        }
    }
}

impl TableApiStore {
    /// A store on the instance of `settings`. No request is made until the first call.
    ///
    /// # Errors
    /// [`Error::Client`] when the HTTP client cannot be built (no TLS crypto provider is
    /// installed, say).
    pub fn new(settings: TableApiSpec) -> Result<Self, Error> {
        Ok(Self {
            inner: Ok(Connection::new(settings)?),
        })
    }

    /// A store whose configuration is incomplete: every call fails with
    /// [`Error::NotConfigured`] carrying `hint` (e.g. "set SERVICENOW_INSTANCE_URL").
    pub fn not_configured(hint: impl Into<String>) -> Self {
        Self {
            inner: Err(hint.into()),
        }
    }

    /// What to set, when the configuration is incomplete (every call then fails with it).
    pub fn missing_settings(&self) -> Option<&str> {
        self.inner.as_ref().err().map(String::as_str)
    }

    /// The instance URL, when configured.
    pub fn instance_url(&self) -> Option<&str> {
        self.inner.as_ref().ok().map(|c| c.instance_url.as_str())
    }

    fn connection(&self) -> Result<&Connection, Error> {
        self.inner
            .as_ref()
            .map_err(|hint| Error::NotConfigured { hint: hint.clone() })
    }

    /// Creates an incident in state New; the instance gives it its number.
    ///
    /// # Errors
    /// [`super::Error::Invalid`] when the short description is blank (nothing is sent);
    /// [`super::Error::TableApi`] when the instance refuses or fails. A create is never sent
    /// twice.
    pub async fn create(&self, new: NewIncident) -> Result<Incident, super::Error> {
        let new = new.cleaned()?;
        let conn = self.connection()?;
        let body = Value::Object(create_body(&new));
        let answer = conn
            .send(Call {
                method: Method::POST,
                url: &conn.table_url,
                query: &write_params(),
                body: Some(&body),
                retry_failures: false,
            })
            .await?;
        Ok(incident_from_record(&result_object(answer)?)?)
    }

    /// The incident with this number (any case), or `None`.
    ///
    /// # Errors
    /// [`super::Error::Invalid`] when `number` is not `INC` + 7 digits (nothing is sent);
    /// [`super::Error::TableApi`] when the instance refuses or fails.
    pub async fn get(&self, number: &str) -> Result<Option<Incident>, super::Error> {
        let number = IncidentNumber::parse(number)?;
        self.connection()?.find(&number).await
    }

    /// Applies `patch` to the incident with this number, following the same rules as the
    /// embedded store ([`Incident::patched`]), and returns the record as the instance has it
    /// afterwards.
    ///
    /// # Errors
    /// [`super::Error::Invalid`] when the number is malformed or the patch breaks a rule
    /// (nothing is written), [`super::Error::NotFound`] when no incident has this number,
    /// [`super::Error::TableApi`] when the instance refuses or fails. An update is never sent
    /// twice.
    pub async fn update(
        &self,
        number: &str,
        patch: IncidentPatch,
    ) -> Result<Incident, super::Error> {
        let number = IncidentNumber::parse(number)?;
        if patch.is_empty() {
            return Err(Violation::NothingToUpdate.into());
        }
        let conn = self.connection()?;
        let current = conn
            .find(&number)
            .await?
            .ok_or_else(|| super::Error::NotFound {
                number: number.clone(),
            })?;
        // The rules are checked on the record as it is now; what the instance keeps is what it
        // answers with.
        let next = current.patched(patch.clone(), now())?;
        let body = Value::Object(update_body(&current, &next, patch));
        let url = format!("{}/{}", conn.table_url, current.sys_id);
        let answer = conn
            .send(Call {
                method: Method::PATCH,
                url: &url,
                query: &write_params(),
                body: Some(&body),
                retry_failures: false,
            })
            .await;
        match answer {
            Ok(answer) => Ok(incident_from_record(&result_object(answer)?)?),
            // Deleted between the lookup and the update.
            Err(Error::NotFound { .. }) => Err(super::Error::NotFound { number }),
            Err(e) => Err(e.into()),
        }
    }

    /// The incidents matching `query`, newest first, at most `query.limit`.
    ///
    /// # Errors
    /// [`super::Error::TableApi`] when the instance refuses or fails.
    pub async fn search(&self, query: SearchQuery) -> Result<Vec<Incident>, super::Error> {
        let conn = self.connection()?;
        let mut params = read_params();
        params.push(("sysparm_query", search_query(&query)));
        params.push(("sysparm_limit", query.limit.to_string()));
        let answer = conn
            .send(Call {
                method: Method::GET,
                url: &conn.table_url,
                query: &params,
                body: None,
                retry_failures: true,
            })
            .await?;
        let records = result_list(answer)?;
        let incidents = records
            .iter()
            .take(query.limit)
            .map(incident_from_record)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(incidents)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "table_api_tests.rs"]
mod tests;
