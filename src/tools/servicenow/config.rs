//! `[[tools]] type = "servicenow"`: which incident store, and for the Table API its
//! instance, credentials and timeout, validated.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::*;

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
    TableApi(Result<TableApiSpec, String>),
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
                Ok(StoreSpec::TableApi(Ok(TableApiSpec {
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
    pub fn build_store(&self, resources: &crate::tools::Resources) -> Result<Store, String> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "config_tests.rs"]
mod tests;
