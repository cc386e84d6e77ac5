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

use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::model::{
    Incident, IncidentNumber, IncidentPatch, Level, NewIncident, Priority, SearchQuery, State,
    Violation, clean, now, parse_timestamp,
};

/// The incident table's path on an instance.
pub const TABLE_PATH: &str = "/api/now/table/incident";

/// The OAuth token endpoint's path on an instance.
pub const TOKEN_PATH: &str = "/oauth_token.do";

/// `timeout_secs` when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long before its expiry a cached OAuth token is replaced (at most; half the token's
/// lifetime when that is shorter).
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The token lifetime assumed when the token endpoint does not say (ServiceNow's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(1800);

/// How long a 429 without a usable `Retry-After` is waited out.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The pause before a read is sent again after a 5xx, a timeout or a connection failure.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// The longest message of the instance quoted in an error.
const MAX_QUOTED: usize = 300;

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
pub struct TableApiSettings {
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
    pub fn new(settings: TableApiSettings) -> Result<Self, Error> {
        // reqwest (rustls, provider chosen by the process) panics when it builds a client
        // without a crypto provider; `app::install_crypto_provider` installs one at startup.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(Error::Client {
                detail: "no TLS crypto provider is installed".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Client {
                detail: e.to_string(),
            })?;
        let base = settings.instance_url.trim_end_matches('/');
        Ok(Self {
            inner: Ok(Connection {
                http,
                table_url: format!("{base}{TABLE_PATH}"),
                token_url: format!("{base}{TOKEN_PATH}"),
                instance_url: base.to_owned(),
                credentials: settings.credentials,
                timeout: settings.timeout,
                token: tokio::sync::Mutex::new(None),
                generations: std::sync::atomic::AtomicU64::new(0),
            }),
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

// === The connection ===

/// One configured instance: the pooled HTTP client, the URLs, the credentials and the cached
/// OAuth token.
struct Connection {
    /// Pooled: connections to the instance are kept alive and reused across calls.
    http: reqwest::Client,
    /// `<instance>`, for messages.
    instance_url: String,
    /// `<instance>/api/now/table/incident`.
    table_url: String,
    /// `<instance>/oauth_token.do`.
    token_url: String,
    credentials: Credentials,
    timeout: Duration,
    /// The OAuth token, once fetched. A tokio mutex, held while a new token is fetched, so
    /// calls that find the token stale at the same time wait for one fetch instead of each
    /// making their own.
    token: tokio::sync::Mutex<Option<CachedToken>>,
    /// Numbers the tokens, so a 401 discards only the token it was answered to.
    generations: std::sync::atomic::AtomicU64,
}

/// An OAuth access token and when to replace it.
struct CachedToken {
    value: SecretString,
    refresh_at: Instant,
    generation: u64,
}

/// How one request authenticates.
enum Auth {
    /// With the configured username and password.
    Basic,
    /// With this token.
    Bearer {
        token: SecretString,
        generation: u64,
    },
}

/// One request to the Table API.
struct Call<'a> {
    method: Method,
    url: &'a str,
    query: &'a [(&'static str, String)],
    body: Option<&'a Value>,
    /// Whether a 5xx, a timeout or a connection failure may be retried once. Reads only: a
    /// create or an update sent twice could be applied twice.
    retry_failures: bool,
}

/// A complete HTTP answer.
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    location: Option<String>,
    content_type: String,
    body: bytes::Bytes,
}

impl Connection {
    /// The incident with `number`, read with the same fields as every other read.
    async fn find(&self, number: &IncidentNumber) -> Result<Option<Incident>, super::Error> {
        let mut params = read_params();
        params.push((
            "sysparm_query",
            format!("number={}", escape(number.as_str())),
        ));
        params.push(("sysparm_limit", "1".to_owned()));
        let answer = self
            .send(Call {
                method: Method::GET,
                url: &self.table_url,
                query: &params,
                body: None,
                retry_failures: true,
            })
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let records = result_list(answer)?;
        Ok(records.first().map(incident_from_record).transpose()?)
    }

    /// Sends `call`, authenticating, retrying where that is safe, and returns the JSON of a
    /// 2xx answer.
    async fn send(&self, call: Call<'_>) -> Result<Value, Error> {
        let mut retried_failure = false;
        let mut waited_rate_limit = false;
        let mut renewed_token = false;
        loop {
            let auth = self.auth().await?;
            let started = Instant::now();
            let answer = self.attempt(&call, &auth).await;
            match &answer {
                Ok(a) => tracing::debug!(
                    method = %call.method,
                    path = %path_of(call.url),
                    status = a.status.as_u16(),
                    ms = started.elapsed().as_millis() as u64,
                    "ServiceNow request."
                ),
                Err(e) => tracing::debug!(
                    method = %call.method,
                    path = %path_of(call.url),
                    error = %failure_detail(e),
                    "ServiceNow request failed."
                ),
            }
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    if call.retry_failures && !retried_failure {
                        retried_failure = true;
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                    return Err(self.transport_error(e, call.method != Method::GET));
                }
            };
            let status = answer.status;
            if status.is_success() {
                return parse_json(&answer);
            }
            match status.as_u16() {
                401 if !renewed_token && matches!(auth, Auth::Bearer { .. }) => {
                    // The cached token was revoked or expired early: fetch a new one, once.
                    if let Auth::Bearer { generation, .. } = auth {
                        self.forget_token(generation).await;
                    }
                    renewed_token = true;
                }
                401 | 403 => {
                    return Err(Error::CredentialsRefused {
                        status: status.as_u16(),
                        credentials: self.credentials.kind(),
                    });
                }
                404 => {
                    return Err(Error::NotFound {
                        message: error_message(&answer.body),
                    });
                }
                429 => {
                    let wait = retry_after(answer.retry_after.as_deref());
                    if waited_rate_limit || wait > self.timeout {
                        return Err(Error::RateLimited {
                            retry_after: wait.as_secs(),
                            waited: waited_rate_limit,
                        });
                    }
                    waited_rate_limit = true;
                    tracing::debug!(
                        wait_ms = wait.as_millis() as u64,
                        "ServiceNow is rate limiting; waiting as Retry-After asks."
                    );
                    tokio::time::sleep(wait).await;
                }
                500..=599 if call.retry_failures && !retried_failure => {
                    retried_failure = true;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                500..=599 => {
                    return Err(Error::Server {
                        status: status.as_u16(),
                        message: error_message(&answer.body),
                    });
                }
                300..=399 => {
                    return Err(Error::Redirected {
                        status: status.as_u16(),
                        location: answer.location.unwrap_or_default(),
                    });
                }
                other => {
                    return Err(Error::Rejected {
                        status: other,
                        message: error_message(&answer.body),
                    });
                }
            }
        }
    }

    /// One HTTP exchange, body included.
    async fn attempt(&self, call: &Call<'_>, auth: &Auth) -> Result<Answer, reqwest::Error> {
        let mut request = self
            .http
            .request(call.method.clone(), call.url)
            .query(call.query)
            .header(ACCEPT, "application/json");
        request = match (auth, &self.credentials) {
            (Auth::Bearer { token, .. }, _) => request.bearer_auth(token.expose_secret()),
            (Auth::Basic, Credentials::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose_secret()))
            }
            // `auth()` gives Basic only for basic credentials.
            (Auth::Basic, Credentials::OAuth { .. }) => request,
        };
        if let Some(body) = call.body {
            request = request.json(body);
        }
        receive(request.send().await?).await
    }

    /// How the next request authenticates: basic auth, or a fresh OAuth token.
    async fn auth(&self) -> Result<Auth, Error> {
        let (client_id, client_secret) = match &self.credentials {
            Credentials::Basic { .. } => return Ok(Auth::Basic),
            Credentials::OAuth {
                client_id,
                client_secret,
            } => (client_id, client_secret),
        };
        let mut slot = self.token.lock().await;
        if let Some(token) = slot.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(Auth::Bearer {
                token: token.value.clone(),
                generation: token.generation,
            });
        }
        let (value, lifetime) = self.fetch_token(client_id, client_secret).await?;
        let generation = self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(
            instance = %self.instance_url,
            lifetime_secs = lifetime.as_secs(),
            "ServiceNow OAuth token obtained."
        );
        *slot = Some(CachedToken {
            value: value.clone(),
            refresh_at: refresh_at(Instant::now(), lifetime),
            generation,
        });
        Ok(Auth::Bearer {
            token: value,
            generation,
        })
    }

    /// Drops the cached token if it is still the one numbered `generation`.
    async fn forget_token(&self, generation: u64) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|t| t.generation == generation) {
            *slot = None;
        }
    }

    /// `POST oauth_token.do` with the client credentials grant: the token and its lifetime.
    async fn fetch_token(
        &self,
        client_id: &str,
        client_secret: &SecretString,
    ) -> Result<(SecretString, Duration), Error> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret.expose_secret()),
        ];
        let sent = self
            .http
            .post(&self.token_url)
            .header(ACCEPT, "application/json")
            .form(&form)
            .send()
            .await;
        let answer = match sent {
            Ok(response) => receive(response).await,
            Err(e) => Err(e),
        }
        .map_err(|e| self.transport_error(e, false))?;
        let status = answer.status.as_u16();
        match status {
            200..=299 => {}
            400 | 401 | 403 => {
                return Err(Error::CredentialsRefused {
                    status,
                    credentials: CredentialKind::OAuth,
                });
            }
            404 => {
                return Err(Error::Rejected {
                    status,
                    message: format!(
                        "the instance has no OAuth token endpoint at {TOKEN_PATH}: check instance_url"
                    ),
                });
            }
            500..=599 => {
                return Err(Error::Server {
                    status,
                    message: error_message(&answer.body),
                });
            }
            _ => {
                return Err(Error::Rejected {
                    status,
                    message: error_message(&answer.body),
                });
            }
        }
        token_from_answer(&parse_json(&answer)?)
    }

    fn transport_error(&self, e: reqwest::Error, write: bool) -> Error {
        if e.is_timeout() {
            Error::Timeout {
                secs: self.timeout.as_secs().max(1),
                write,
            }
        } else {
            Error::Unreachable {
                instance: self.instance_url.clone(),
                detail: failure_detail(&e),
            }
        }
    }
}

/// Reads a whole answer (the body counts against the request's timeout).
async fn receive(response: reqwest::Response) -> Result<Answer, reqwest::Error> {
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = response.status();
    let retry_after = header(RETRY_AFTER);
    let location = header(LOCATION);
    let content_type = header(CONTENT_TYPE).unwrap_or_default();
    let body = response.bytes().await?;
    Ok(Answer {
        status,
        retry_after,
        location,
        content_type,
        body,
    })
}

/// The cause of a transport failure in words. reqwest's own message names the URL (which
/// carries the query) and keeps the cause in its source chain, so the usual network failures
/// are spelled out and anything else is the innermost cause.
fn failure_detail(e: &reqwest::Error) -> String {
    const CAUSES: &[(&str, &str)] = &[
        ("ConnectionRefused", "connection refused"),
        ("dns error", "the host name does not resolve"),
        ("TimedOut", "the connection timed out"),
        ("ConnectionReset", "the connection was reset"),
        ("certificate", "its TLS certificate was not accepted"),
    ];
    let debug = format!("{e:?}");
    if let Some((_, cause)) = CAUSES.iter().find(|(needle, _)| debug.contains(needle)) {
        return (*cause).to_owned();
    }
    let mut innermost = std::error::Error::source(e);
    while let Some(next) = innermost.and_then(std::error::Error::source) {
        innermost = Some(next);
    }
    match innermost {
        Some(cause) => cause.to_string(),
        None => {
            let text = e.to_string();
            match e.url() {
                Some(url) => text.replace(&format!(" for url ({url})"), ""),
                None => text,
            }
        }
    }
}

/// The path of `url`, for logs (no host, no query).
fn path_of(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme
        .find('/')
        .map_or("/", |i| &after_scheme[i..])
        .split('?')
        .next()
        .unwrap_or("/")
}

// === Pure helpers: queries, bodies, records ===

/// Escapes a value for `sysparm_query`: `^` separates conditions, so a `^` inside a value is
/// written `^^`.
pub fn escape(value: &str) -> String {
    value.replace('^', "^^")
}

/// The parameters of every read: both halves of every field, no reference links.
fn read_params() -> Vec<(&'static str, String)> {
    vec![
        ("sysparm_display_value", "all".to_owned()),
        ("sysparm_exclude_reference_link", "true".to_owned()),
        ("sysparm_fields", FIELDS.to_owned()),
    ]
}

/// The parameters of a create or an update: the record comes back as a read shows it, and
/// reference fields are given by name.
fn write_params() -> Vec<(&'static str, String)> {
    let mut params = read_params();
    params.push(("sysparm_input_display_value", "true".to_owned()));
    params
}

/// The `sysparm_query` of a search: the filters, then the text as one OR group (a `^OR`
/// condition joins the one before it, so the group stays inside the AND), then the order.
pub fn search_query(query: &SearchQuery) -> String {
    let mut terms = Vec::new();
    if let Some(state) = query.state {
        terms.push(format!("state={}", state.code()));
    }
    if let Some(priority) = query.priority {
        terms.push(format!("priority={}", priority.code()));
    }
    if let Some(text) = query
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let text = escape(text);
        let group: Vec<String> = TEXT_FIELDS
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let or = if i == 0 { "" } else { "OR" };
                format!("{or}{field}LIKE{text}")
            })
            .collect();
        terms.push(group.join("^"));
    }
    terms.push(ORDER.to_owned());
    terms.join("^")
}

/// The body of a create: the given fields, impact and urgency always (Low by default, as on
/// the embedded store and in ServiceNow).
fn create_body(new: &NewIncident) -> Map<String, Value> {
    let mut body = Map::new();
    let mut put = |key: &str, value: String| {
        body.insert(key.to_owned(), Value::String(value));
    };
    put("short_description", new.short_description.clone());
    let optional = [
        ("description", &new.description),
        ("caller_id", &new.caller),
        ("category", &new.category),
        ("assignment_group", &new.assignment_group),
        ("assigned_to", &new.assigned_to),
        ("work_notes", &new.work_notes),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            put(key, value.clone());
        }
    }
    put(
        "impact",
        new.impact.unwrap_or(Level::Low).code().to_string(),
    );
    put(
        "urgency",
        new.urgency.unwrap_or(Level::Low).code().to_string(),
    );
    body
}

/// The body of an update: the fields the patch gives, as the rules left them in `next`
/// (trimmed; blank clears), plus the close code the rules add when resolving. Work notes are
/// sent as the new note alone: the instance keeps the journal. Priority and the resolution
/// time are the instance's to derive.
fn update_body(current: &Incident, next: &Incident, patch: IncidentPatch) -> Map<String, Value> {
    let mut body = Map::new();
    let mut put = |key: &str, value: String| {
        body.insert(key.to_owned(), Value::String(value));
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    if patch.short_description.is_some() {
        put("short_description", next.short_description.clone());
    }
    let fields = [
        (
            "description",
            patch.description.is_some(),
            &next.description,
        ),
        ("caller_id", patch.caller.is_some(), &next.caller),
        ("category", patch.category.is_some(), &next.category),
        (
            "assignment_group",
            patch.assignment_group.is_some(),
            &next.assignment_group,
        ),
        (
            "assigned_to",
            patch.assigned_to.is_some(),
            &next.assigned_to,
        ),
        (
            "close_notes",
            patch.close_notes.is_some(),
            &next.close_notes,
        ),
        (
            "close_code",
            patch.close_code.is_some() || next.close_code != current.close_code,
            &next.close_code,
        ),
    ];
    for (key, given, value) in fields {
        if given {
            put(key, text(value));
        }
    }
    if let Some(impact) = patch.impact {
        put("impact", impact.code().to_string());
    }
    if let Some(urgency) = patch.urgency {
        put("urgency", urgency.code().to_string());
    }
    if let Some(state) = patch.state {
        put("state", state.code().to_string());
    }
    if let Some(note) = patch.work_notes.and_then(clean) {
        put("work_notes", note);
    }
    body
}

/// Parses the JSON of a 2xx answer.
fn parse_json(answer: &Answer) -> Result<Value, Error> {
    serde_json::from_slice(&answer.body).map_err(|e| Error::BadResponse {
        detail: format!(
            "HTTP {} with {} bytes of {} that are not JSON ({e})",
            answer.status.as_u16(),
            answer.body.len(),
            if answer.content_type.is_empty() {
                "an unnamed type"
            } else {
                answer.content_type.as_str()
            }
        ),
    })
}

/// `{"result": {...}}` of a create or an update.
fn result_object(answer: Value) -> Result<Map<String, Value>, Error> {
    match answer {
        Value::Object(mut map) => match map.remove("result") {
            Some(Value::Object(record)) => Ok(record),
            Some(other) => Err(Error::BadResponse {
                detail: format!("\"result\" is {}, not a record", kind_of(&other)),
            }),
            None => Err(no_result()),
        },
        other => Err(Error::BadResponse {
            detail: format!("the answer is {}, not an object", kind_of(&other)),
        }),
    }
}

/// `{"result": [...]}` of a read.
fn result_list(answer: Value) -> Result<Vec<Map<String, Value>>, Error> {
    let list = match answer {
        Value::Object(mut map) => match map.remove("result") {
            Some(Value::Array(list)) => list,
            Some(other) => {
                return Err(Error::BadResponse {
                    detail: format!("\"result\" is {}, not a list of records", kind_of(&other)),
                });
            }
            None => return Err(no_result()),
        },
        other => {
            return Err(Error::BadResponse {
                detail: format!("the answer is {}, not an object", kind_of(&other)),
            });
        }
    };
    list.into_iter()
        .map(|item| match item {
            Value::Object(record) => Ok(record),
            other => Err(Error::BadResponse {
                detail: format!("a result is {}, not a record", kind_of(&other)),
            }),
        })
        .collect()
}

fn no_result() -> Error {
    Error::BadResponse {
        detail: "it has no \"result\"".to_owned(),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Which half of a `sysparm_display_value=all` pair a field is read from.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// `value`: codes, sys_ids, UTC times, plain text.
    Value,
    /// `display_value`: names of referenced records, the work-notes journal.
    Display,
}

/// A field as text: one half of a `{"display_value", "value"}` pair, or the field itself
/// when the instance sent a plain value.
fn field(record: &Map<String, Value>, name: &str, part: Part) -> Option<String> {
    let raw = record.get(name)?;
    let value = match raw {
        Value::Object(pair) => pair.get(match part {
            Part::Value => "value",
            Part::Display => "display_value",
        })?,
        other => other,
    };
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A text field; blank is `None`, as on the embedded store.
fn optional(record: &Map<String, Value>, name: &str, part: Part) -> Option<String> {
    field(record, name, part).and_then(clean)
}

fn coded<T>(
    record: &Map<String, Value>,
    name: &str,
    from_code: fn(u64) -> Option<T>,
) -> Result<T, String> {
    let raw = field(record, name, Part::Value).unwrap_or_default();
    raw.trim()
        .parse::<u64>()
        .ok()
        .and_then(from_code)
        .ok_or_else(|| format!("{name} {raw:?} is not one of its codes"))
}

fn timestamp(
    record: &Map<String, Value>,
    name: &str,
) -> Result<Option<time::OffsetDateTime>, String> {
    match optional(record, name, Part::Value) {
        None => Ok(None),
        Some(text) => parse_timestamp(&text)
            .map(Some)
            .map_err(|_| format!("{name} {text:?} is not a YYYY-MM-DD HH:MM:SS time")),
    }
}

/// An incident record of the Table API as an [`Incident`].
///
/// # Errors
/// [`Error::BadResponse`] naming the field that does not fit.
fn incident_from_record(record: &Map<String, Value>) -> Result<Incident, Error> {
    let bad = |detail: String| Error::BadResponse {
        detail: format!("incident record: {detail}"),
    };
    let number = field(record, "number", Part::Value).unwrap_or_default();
    let number = IncidentNumber::parse(&number).map_err(|e| bad(e.to_string()))?;
    // It goes into the path of an update: letters and digits only (ServiceNow's are 32 hex).
    let sys_id = optional(record, "sys_id", Part::Value)
        .filter(|id| id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| bad(format!("{number} has no valid sys_id")))?;
    let impact = coded(record, "impact", Level::from_code).map_err(bad)?;
    let urgency = coded(record, "urgency", Level::from_code).map_err(bad)?;
    let priority = match optional(record, "priority", Part::Value) {
        Some(_) => coded(record, "priority", Priority::from_code).map_err(bad)?,
        None => Priority::from_impact_urgency(impact, urgency),
    };
    let opened_at = timestamp(record, "opened_at")
        .map_err(bad)?
        .ok_or_else(|| bad(format!("{number} has no opened_at")))?;
    Ok(Incident {
        short_description: field(record, "short_description", Part::Value)
            .unwrap_or_default()
            .trim()
            .to_owned(),
        description: optional(record, "description", Part::Value),
        caller: optional(record, "caller_id", Part::Display),
        category: optional(record, "category", Part::Value),
        impact,
        urgency,
        priority,
        state: coded(record, "state", State::from_code).map_err(bad)?,
        assignment_group: optional(record, "assignment_group", Part::Display),
        assigned_to: optional(record, "assigned_to", Part::Display),
        work_notes: optional(record, "work_notes", Part::Display),
        close_code: optional(record, "close_code", Part::Value),
        close_notes: optional(record, "close_notes", Part::Value),
        updated_at: timestamp(record, "sys_updated_on")
            .map_err(bad)?
            .unwrap_or(opened_at),
        resolved_at: timestamp(record, "resolved_at").map_err(bad)?,
        opened_at,
        number,
        sys_id,
    })
}

/// The instance's own words from an error body
/// (`{"error": {"message", "detail"}, "status": "failure"}`, or OAuth's `error_description`),
/// shortened; empty when the body has none.
fn error_message(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let message = text(value.pointer("/error/message"))
        .or_else(|| text(value.get("error_description")))
        .or_else(|| text(value.get("error")));
    let detail = text(value.pointer("/error/detail"));
    let full = match (message, detail) {
        (Some(m), Some(d)) if m != d => format!("{m} ({d})"),
        (Some(m), _) => m,
        (None, Some(d)) => d,
        (None, None) => String::new(),
    };
    if full.chars().count() > MAX_QUOTED {
        let short: String = full.chars().take(MAX_QUOTED).collect();
        format!("{short}...")
    } else {
        full
    }
}

/// The wait a `Retry-After` header asks for: whole seconds (an HTTP date or anything else
/// counts as one second).
pub fn retry_after(header: Option<&str>) -> Duration {
    header
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs)
}

/// When a token issued at `issued` for `lifetime` is replaced: [`TOKEN_REFRESH_MARGIN`]
/// before it expires, or half way through when its lifetime is shorter than two margins.
pub fn refresh_at(issued: Instant, lifetime: Duration) -> Instant {
    issued + lifetime - TOKEN_REFRESH_MARGIN.min(lifetime / 2)
}

/// The token and its lifetime from the token endpoint's answer.
fn token_from_answer(answer: &Value) -> Result<(SecretString, Duration), Error> {
    let bad = |detail: &str| Error::BadResponse {
        detail: format!("OAuth token answer: {detail}"),
    };
    let token = answer
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("it has no access_token"))?;
    if let Some(kind) = answer.get("token_type").and_then(Value::as_str)
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(bad("its token_type is not Bearer"));
    }
    let lifetime = match answer.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_TOKEN_LIFETIME,
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| bad("expires_in is not a whole number of seconds"))?,
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| bad("expires_in is not a whole number of seconds"))?,
        Some(_) => return Err(bad("expires_in is not a whole number of seconds")),
    };
    Ok((SecretString::from(token.to_owned()), lifetime))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "table_api_tests.rs"]
mod tests;
