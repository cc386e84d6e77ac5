//! The connection to one instance: the pooled HTTP client, authentication (basic auth, or a
//! cached OAuth token), one request with its retries, and what the instance's answers and
//! failures mean.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::records::{escape, incident_from_record, read_params, result_list};
use super::{
    CredentialKind, Credentials, Error, TABLE_PATH, TOKEN_PATH, TOKEN_REFRESH_MARGIN, TableApiSpec,
};
use crate::incidents::model::{Incident, IncidentNumber};

/// The token lifetime assumed when the token endpoint does not say (ServiceNow's default).
pub(super) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(1800);

/// How long a 429 without a usable `Retry-After` is waited out.
pub(super) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The pause before a read is sent again after a 5xx, a timeout or a connection failure.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// The longest message of the instance quoted in an error.
pub(super) const MAX_QUOTED: usize = 300;

// === The connection ===

/// One configured instance: the pooled HTTP client, the URLs, the credentials and the cached
/// OAuth token.
pub(super) struct Connection {
    /// Pooled: connections to the instance are kept alive and reused across calls.
    http: reqwest::Client,
    /// `<instance>`, for messages.
    pub(super) instance_url: String,
    /// `<instance>/api/now/table/incident`.
    pub(super) table_url: String,
    /// `<instance>/oauth_token.do`.
    token_url: String,
    pub(super) credentials: Credentials,
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
pub(super) struct Call<'a> {
    pub(super) method: Method,
    pub(super) url: &'a str,
    pub(super) query: &'a [(&'static str, String)],
    pub(super) body: Option<&'a Value>,
    /// Whether a 5xx, a timeout or a connection failure may be retried once. Reads only: a
    /// create or an update sent twice could be applied twice.
    pub(super) retry_failures: bool,
}

/// A complete HTTP answer.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) retry_after: Option<String>,
    pub(super) location: Option<String>,
    pub(super) content_type: String,
    pub(super) body: bytes::Bytes,
}

impl Connection {
    /// A connection to the instance of `settings`: the pooled client, built now; no request
    /// is made.
    pub(super) fn new(settings: TableApiSpec) -> Result<Self, Error> {
        // reqwest (rustls, provider chosen by the process) panics when it builds a client
        // without a crypto provider; `net::install_crypto_provider` installs one at startup.
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
            http,
            table_url: format!("{base}{TABLE_PATH}"),
            token_url: format!("{base}{TOKEN_PATH}"),
            instance_url: base.to_owned(),
            credentials: settings.credentials,
            timeout: settings.timeout,
            token: tokio::sync::Mutex::new(None),
            generations: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The incident with `number`, read with the same fields as every other read.
    pub(super) async fn find(
        &self,
        number: &IncidentNumber,
    ) -> Result<Option<Incident>, crate::incidents::Error> {
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
    pub(super) async fn send(&self, call: Call<'_>) -> Result<Value, Error> {
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

    /// One HTTP exchange, body included; with tracing on, in an HTTP client span whose
    /// context goes along as `traceparent`.
    async fn attempt(&self, call: &Call<'_>, auth: &Auth) -> Result<Answer, reqwest::Error> {
        use crate::telemetry::trace;
        if !trace::on() {
            return self.exchange(call, auth, None).await;
        }
        let url = reqwest::Url::parse(call.url).ok();
        let span = tracing::info_span!(
            target: trace::TARGET,
            "http.client",
            otel.name = %call.method,
            otel.kind = "client",
            http.request.method = %call.method,
            url.full = call.url,
            server.address = url.as_ref().and_then(|u| u.host_str()),
            server.port = url.as_ref().and_then(reqwest::Url::port_or_known_default),
            switchboard.backend = "servicenow",
        );
        let context = trace::TraceContext::of(&span);
        let answer = self
            .exchange(call, auth, context.as_ref())
            .instrument(span.clone())
            .await;
        match &answer {
            Ok(a) => {
                trace::set(
                    &span,
                    "http.response.status_code",
                    i64::from(a.status.as_u16()),
                );
                if a.status.as_u16() >= 400 {
                    trace::fail(
                        &span,
                        status_type(a.status),
                        format!("HTTP {}", a.status.as_u16()),
                    );
                }
            }
            Err(e) => trace::fail(&span, "transport", failure_detail(e)),
        }
        answer
    }

    async fn exchange(
        &self,
        call: &Call<'_>,
        auth: &Auth,
        trace: Option<&crate::telemetry::trace::TraceContext>,
    ) -> Result<Answer, reqwest::Error> {
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
        if let Some(trace) = trace {
            let mut headers = reqwest::header::HeaderMap::new();
            trace.add_to(&mut headers);
            request = request.headers(headers);
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

/// `error.type` of an HTTP status (semantic conventions: the status code itself).
fn status_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "401",
        403 => "403",
        404 => "404",
        429 => "429",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The cause of a transport failure in words. reqwest's own message names the URL (which
/// carries the query) and keeps the cause in its source chain, so the usual network failures
/// are spelled out and anything else is the innermost cause.
fn failure_detail(e: &reqwest::Error) -> String {
    if let Some(cause) = crate::net::network_cause(e) {
        return cause.to_owned();
    }
    match std::error::Error::source(e) {
        Some(source) => crate::net::innermost(source).to_string(),
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
pub(super) fn path_of(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme
        .find('/')
        .map_or("/", |i| &after_scheme[i..])
        .split('?')
        .next()
        .unwrap_or("/")
}

/// Parses the JSON of a 2xx answer.
pub(super) fn parse_json(answer: &Answer) -> Result<Value, Error> {
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

/// The instance's own words from an error body
/// (`{"error": {"message", "detail"}, "status": "failure"}`, or OAuth's `error_description`),
/// shortened; empty when the body has none.
pub(super) fn error_message(body: &[u8]) -> String {
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
pub(super) fn token_from_answer(answer: &Value) -> Result<(SecretString, Duration), Error> {
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
