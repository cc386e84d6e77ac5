//! An authorization server's metadata: where it says its endpoints are. Found by OpenID
//! discovery (`<issuer>/.well-known/openid-configuration`), then RFC 8414
//! (`/.well-known/oauth-authorization-server` inserted before the issuer's path), and used
//! only when its `issuer` is the configured one. The resource server reads its `jwks_uri` and
//! `introspection_endpoint` from it ([`super::jwks`]); the upstream MCP tools, its
//! `token_endpoint` (client credentials and token exchange toward upstream servers).

use serde_json::Value;

/// Where an issuer's metadata may be: `<issuer>/.well-known/openid-configuration`, then
/// RFC 8414's `/.well-known/oauth-authorization-server` inserted before the issuer's path.
pub fn discovery_urls(issuer: &str) -> Vec<String> {
    let trimmed = issuer.trim_end_matches('/');
    let mut urls = vec![format!("{trimmed}/.well-known/openid-configuration")];
    if let Ok(url) = reqwest::Url::parse(trimmed) {
        let path = url.path().trim_end_matches('/');
        let origin = url.origin().ascii_serialization();
        urls.push(format!(
            "{origin}/.well-known/oauth-authorization-server{path}"
        ));
    }
    urls
}

/// The metadata of `issuer` that names at least one of `wanted` (e.g. `["token_endpoint"]`):
/// the first of [`discovery_urls`] that answers with it and whose `issuer` is `issuer`.
///
/// # Errors
/// Every place tried and why it did not do (unreachable, not JSON, another issuer, none of
/// `wanted`), in one message.
pub async fn metadata(
    http: &reqwest::Client,
    issuer: &str,
    wanted: &[&str],
) -> Result<Value, String> {
    let mut failures = Vec::new();
    for url in discovery_urls(issuer) {
        match get_json(http, &url).await {
            Ok(doc) => {
                let named = doc.get("issuer").and_then(|v| v.as_str()).unwrap_or("");
                if named.trim_end_matches('/') != issuer.trim_end_matches('/') {
                    failures.push(format!(
                        "{url} names issuer {named:?}, not the configured {issuer:?}"
                    ));
                    continue;
                }
                if wanted
                    .iter()
                    .any(|k| doc.get(*k).is_some_and(Value::is_string))
                {
                    return Ok(doc);
                }
                failures.push(format!("{url} has no {}", wanted.join(" or ")));
            }
            Err(e) => failures.push(e),
        }
    }
    Err(format!(
        "discovery of {issuer} failed: {}",
        failures.join("; ")
    ))
}

/// A GET of `url` answered with JSON.
///
/// # Errors
/// The URL and what went wrong: the network failure in words, a status that is not a
/// success, a body that is not JSON.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let response = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| {
            let cause = crate::net::network_cause(&e)
                .map_or_else(|| crate::net::innermost(&e).to_string(), str::to_owned);
            format!("{url}: {cause}")
        })?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    response
        .json()
        .await
        .map_err(|e| format!("{url} did not answer JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_looks_in_both_places() {
        assert_eq!(
            discovery_urls("https://idp.example.com/realms/acme/"),
            [
                "https://idp.example.com/realms/acme/.well-known/openid-configuration",
                "https://idp.example.com/.well-known/oauth-authorization-server/realms/acme"
            ]
        );
        assert_eq!(
            discovery_urls("http://127.0.0.1:9000")[1],
            "http://127.0.0.1:9000/.well-known/oauth-authorization-server"
        );
    }
}
