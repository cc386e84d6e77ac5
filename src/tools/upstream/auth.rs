//! Tokens toward an upstream MCP server (`[tools.auth]`): the gateway's own, by the client
//! credentials grant, or one for the caller, by RFC 8693 token exchange of the caller's access
//! token. Both are asked of the authorization server's token endpoint (configured, or found by
//! discovery from the issuer), the gateway authenticating as its client with HTTP Basic
//! (`client_secret_basic`), with the upstream as `resource` (RFC 8707) and the configured
//! scopes.
//!
//! A token lives in a [`TokenSlot`]: one per upstream session, read by the session's HTTP
//! client for every request. It is used until shortly before it expires, then asked for again
//! (one request for all the calls that need it at once); a 401 from the upstream empties the
//! slot. The caller's access token is sent to the token endpoint only, as `subject_token`;
//! no token is logged or shown, and error messages carry only the authorization server's
//! `error` and `error_description`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::Error;
use super::auth_config::AuthKind;
use super::config::UpstreamToolConfig;
use crate::identity::Identity;

/// RFC 8693 §2.1: the grant type of a token exchange.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3: an OAuth access token.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 8693 §3: a JWT (also acceptable as the issued token).
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// How long a token whose answer gives no `expires_in` is used.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// A token is asked for again this long before it expires (at most a quarter of its life).
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// Longest time one token or discovery request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest text of the authorization server's kept in an error message.
const MAX_DETAIL: usize = 300;

/// An access token and when to stop using it.
struct Bearer {
    value: SecretString,
    refresh_at: Instant,
}

/// The token one upstream session's requests carry.
#[derive(Default)]
pub(super) struct TokenSlot {
    /// A `std` mutex: held only to read or swap, never across `.await`.
    current: Mutex<Option<Bearer>>,
    /// Held while a token for this slot is asked for, so concurrent calls ask once.
    refreshing: tokio::sync::Mutex<()>,
    /// How many 401s the upstream answered to this slot's tokens.
    rejections: AtomicU64,
}

impl TokenSlot {
    /// The token to send now, if any (an expiring one too: the next call replaces it).
    pub(super) fn bearer(&self) -> Option<String> {
        self.lock()
            .as_ref()
            .map(|b| b.value.expose_secret().to_owned())
    }

    /// The upstream refused `sent` (HTTP 401): forget it, if it is still the slot's token.
    pub(super) fn rejected(&self, sent: &str) {
        let mut current = self.lock();
        if current
            .as_ref()
            .is_some_and(|b| b.value.expose_secret() == sent)
        {
            *current = None;
        }
        drop(current);
        self.rejections.fetch_add(1, Ordering::SeqCst);
    }

    /// How many 401s so far: a call compares it before and after to know whether its
    /// failure was one.
    pub(super) fn rejections(&self) -> u64 {
        self.rejections.load(Ordering::SeqCst)
    }

    fn fresh(&self) -> bool {
        self.lock()
            .as_ref()
            .is_some_and(|b| Instant::now() < b.refresh_at)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Bearer>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where the token endpoint is.
enum Endpoint {
    /// Found by discovery from this issuer (then kept).
    Issuer(String),
    /// Configured.
    Url(String),
}

/// The gateway as a client of the authorization server, for one upstream.
pub(super) struct UpstreamAuth {
    kind: AuthKind,
    /// The upstream's URL, for messages.
    upstream: String,
    /// The HTTP client, or why it could not be built (said on every request).
    http: Result<reqwest::Client, String>,
    endpoint: Endpoint,
    /// The token endpoint, once discovered.
    discovered: tokio::sync::Mutex<Option<String>>,
    client_id: String,
    client_secret: SecretString,
    /// Space-separated; empty: none asked for.
    scope: String,
    resource: String,
    audience: Option<String>,
}

impl UpstreamAuth {
    /// The authentication `config` asks for (nothing is fetched yet).
    pub(super) fn new(config: &UpstreamToolConfig) -> Self {
        let auth = &config.auth;
        crate::net::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            // Credentials are never sent on to another address.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {}", crate::net::innermost(&e)));
        let endpoint = match (&auth.token_url, &auth.issuer) {
            (Some(url), _) => Endpoint::Url(url.clone()),
            (None, issuer) => Endpoint::Issuer(issuer.clone().unwrap_or_default()),
        };
        Self {
            kind: auth.kind,
            upstream: config.url.clone().unwrap_or_default(),
            http,
            endpoint,
            discovered: tokio::sync::Mutex::new(None),
            client_id: auth.client_id.clone().unwrap_or_default(),
            client_secret: auth
                .client_secret
                .clone()
                .unwrap_or_else(|| SecretString::from(String::new())),
            scope: auth.scopes.join(" "),
            resource: auth
                .resource
                .clone()
                .unwrap_or_else(|| config.url.clone().unwrap_or_default()),
            audience: auth.audience.clone(),
        }
    }

    /// Whether the upstream sees the caller (token exchange): then each caller has its own
    /// session and token.
    pub(super) fn per_caller(&self) -> bool {
        self.kind == AuthKind::TokenExchange
    }

    /// The caller's access token, for a token exchange.
    ///
    /// # Errors
    /// When the caller was not identified by an OAuth access token (a `[[clients]]` token,
    /// or open access).
    pub(super) fn subject_token<'a>(
        &self,
        identity: &'a Identity,
    ) -> Result<&'a SecretString, Error> {
        match (&identity.principal, &identity.token) {
            (Some(_), Some(token)) => Ok(token),
            _ => Err(Error::Failed(format!(
                "this tool acts for the caller and needs an OAuth-identified caller: upstream MCP server {} is reached by token exchange (RFC 8693) of the caller's OAuth access token, and {}; call with an access token of the gateway's [auth.oauth] issuer",
                self.upstream,
                match &identity.client {
                    Some(client) => format!(
                        "client {client:?} called with a [[clients]] token, which cannot be exchanged"
                    ),
                    None => "this call came without an access token".to_owned(),
                }
            ))),
        }
    }

    /// Puts a token in `slot` unless it holds one still fresh: the gateway's own, or (token
    /// exchange) one for `identity`, whose slot this is.
    ///
    /// # Errors
    /// A message naming the authorization server and what it said; never a token.
    pub(super) async fn authorize(
        &self,
        slot: &TokenSlot,
        identity: &Identity,
    ) -> Result<(), Error> {
        if self.kind == AuthKind::None || slot.fresh() {
            return Ok(());
        }
        let _refreshing = slot.refreshing.lock().await;
        // Another call may have got one while this one waited.
        if slot.fresh() {
            return Ok(());
        }
        let bearer = match self.kind {
            AuthKind::None => return Ok(()),
            AuthKind::ClientCredentials => self.request("client_credentials", None).await,
            AuthKind::TokenExchange => {
                let subject = self.subject_token(identity)?;
                self.request(TOKEN_EXCHANGE, Some(subject)).await
            }
        }
        .map_err(Error::Failed)?;
        *slot.lock() = Some(bearer);
        Ok(())
    }

    /// Asks the token endpoint for a token by `grant` (the exchange's `subject`, if one).
    async fn request(&self, grant: &str, subject: Option<&SecretString>) -> Result<Bearer, String> {
        let what = if subject.is_some() {
            format!(
                "the token exchange for upstream MCP server {} failed",
                self.upstream
            )
        } else {
            format!(
                "cannot get a token for upstream MCP server {}",
                self.upstream
            )
        };
        let http = self.http.as_ref().map_err(|e| format!("{what}: {e}"))?;
        let endpoint = self
            .token_endpoint(http)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let mut form: Vec<(&str, &str)> = vec![("grant_type", grant)];
        if let Some(subject) = subject {
            form.extend([
                ("subject_token", subject.expose_secret()),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
                ("requested_token_type", ACCESS_TOKEN_TYPE),
            ]);
        }
        form.push(("resource", &self.resource));
        if let Some(audience) = &self.audience {
            form.push(("audience", audience));
        }
        if !self.scope.is_empty() {
            form.push(("scope", &self.scope));
        }
        let started = Instant::now();
        let response = http
            .post(&endpoint)
            .basic_auth(
                crate::net::percent_encode(&self.client_id),
                Some(crate::net::percent_encode(
                    self.client_secret.expose_secret(),
                )),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                let cause = crate::net::network_cause(&e)
                    .map_or_else(|| crate::net::innermost(&e).to_string(), str::to_owned);
                format!("{what}: the token endpoint {endpoint} is not reachable: {cause}")
            })?;
        let status = response.status();
        let body: Option<Value> = response.json().await.ok();
        if !status.is_success() {
            let said = body.as_ref().map(oauth_error).unwrap_or_default();
            tracing::warn!(upstream = %self.upstream, %endpoint, %status, error = %said, "The authorization server refused a token for an upstream MCP server.");
            return Err(if said.is_empty() {
                format!("{what}: the token endpoint {endpoint} answered {status}")
            } else {
                format!("{what}: the authorization server answered {status}: {said}")
            });
        }
        let bearer = body
            .ok_or_else(|| "the answer is not JSON".to_owned())
            .and_then(|b| bearer(&b, subject.is_some(), started))
            .map_err(|e| {
                format!("{what}: the token endpoint {endpoint} gave no usable token: {e}")
            })?;
        tracing::debug!(upstream = %self.upstream, grant, "Got a token for an upstream MCP server.");
        Ok(bearer)
    }

    /// The token endpoint: configured, or discovered once from the issuer.
    async fn token_endpoint(&self, http: &reqwest::Client) -> Result<String, String> {
        let issuer = match &self.endpoint {
            Endpoint::Url(url) => return Ok(url.clone()),
            Endpoint::Issuer(issuer) => issuer,
        };
        let mut discovered = self.discovered.lock().await;
        if let Some(url) = discovered.as_ref() {
            return Ok(url.clone());
        }
        let doc = crate::oauth::discovery::metadata(http, issuer, &["token_endpoint"]).await?;
        let url = doc
            .get("token_endpoint")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("the metadata of {issuer} names no token_endpoint"))?;
        *discovered = Some(url.clone());
        Ok(url)
    }
}

/// The token of a successful answer (RFC 6749 §5.1, RFC 8693 §2.2.1), used until shortly
/// before `expires_in` (counted from `asked`).
fn bearer(body: &Value, exchanged: bool, asked: Instant) -> Result<Bearer, String> {
    let value = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("no access_token")?;
    match body.get("token_type").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        Some(other) => {
            return Err(format!(
                "token_type {:?} is not supported (only Bearer)",
                clip(other)
            ));
        }
        None => return Err("no token_type".to_owned()),
    }
    if exchanged
        && let Some(issued) = body.get("issued_token_type").and_then(Value::as_str)
        && issued != ACCESS_TOKEN_TYPE
        && issued != JWT_TOKEN_TYPE
    {
        return Err(format!(
            "issued_token_type {:?} is not an access token",
            clip(issued)
        ));
    }
    let lifetime = body
        .get("expires_in")
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .map_or(DEFAULT_LIFETIME, Duration::from_secs);
    let margin = REFRESH_MARGIN.min(lifetime / 4);
    Ok(Bearer {
        value: SecretString::from(value.to_owned()),
        refresh_at: asked + lifetime.saturating_sub(margin),
    })
}

/// What an error answer says (RFC 6749 §5.2): `error (error_description)`, clipped; `""`
/// when it says nothing usable.
fn oauth_error(body: &Value) -> String {
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(clip);
    match (field("error"), field("error_description")) {
        (Some(e), Some(d)) => format!("{e} ({d})"),
        (Some(e), None) => e,
        (None, Some(d)) => d,
        (None, None) => String::new(),
    }
}

/// `s` cut to [`MAX_DETAIL`] characters.
fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_DETAIL) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn answers_are_read_and_refused_precisely() {
        let now = Instant::now();
        let b = bearer(
            &json!({"access_token": "t", "token_type": "bearer", "expires_in": 120}),
            false,
            now,
        )
        .unwrap();
        assert_eq!(b.value.expose_secret(), "t");
        assert_eq!(b.refresh_at, now + Duration::from_secs(90));
        let short = bearer(
            &json!({"access_token": "t", "token_type": "Bearer", "expires_in": "8"}),
            false,
            now,
        )
        .unwrap();
        assert_eq!(short.refresh_at, now + Duration::from_secs(6));
        let default = bearer(
            &json!({"access_token": "t", "token_type": "Bearer"}),
            true,
            now,
        );
        assert_eq!(default.unwrap().refresh_at, now + Duration::from_secs(270));
        for (body, refused) in [
            (json!({"token_type": "Bearer"}), "no access_token"),
            (json!({"access_token": "t"}), "no token_type"),
            (
                json!({"access_token": "t", "token_type": "DPoP"}),
                "not supported",
            ),
            (
                json!({"access_token": "t", "token_type": "Bearer", "issued_token_type": "urn:ietf:params:oauth:token-type:id_token"}),
                "not an access token",
            ),
        ] {
            let Err(e) = bearer(&body, true, now) else {
                panic!("{body} must be refused")
            };
            assert!(e.contains(refused), "{e}");
        }
    }

    #[test]
    fn error_answers_say_what_the_server_said_clipped() {
        assert_eq!(
            oauth_error(
                &json!({"error": "invalid_client", "error_description": "client authentication failed"})
            ),
            "invalid_client (client authentication failed)"
        );
        assert_eq!(
            oauth_error(&json!({"error": "invalid_grant"})),
            "invalid_grant"
        );
        assert_eq!(oauth_error(&json!({"other": 1})), "");
        let long = "x".repeat(1000);
        assert_eq!(oauth_error(&json!({ "error": long })).len(), MAX_DETAIL + 3);
    }

    #[test]
    fn a_rejected_token_leaves_the_slot_and_is_counted() {
        let slot = TokenSlot::default();
        *slot.lock() = Some(Bearer {
            value: SecretString::from("current".to_owned()),
            refresh_at: Instant::now() + Duration::from_secs(60),
        });
        assert!(slot.fresh());
        slot.rejected("an older one");
        assert_eq!(
            slot.bearer().as_deref(),
            Some("current"),
            "not the one refused"
        );
        slot.rejected("current");
        assert_eq!(slot.bearer(), None);
        assert_eq!(slot.rejections(), 2);
    }
}
