//! Outbound HTTP helpers shared by every client the gateway makes (ServiceNow, upstream MCP
//! servers, other replicas, the health probe): the TLS provider, the words for network
//! failures, and URL escaping. A leaf: it imports nothing of the crate.

/// Installs the TLS crypto provider (ring) for outbound HTTPS clients. Call once at startup,
/// before any HTTP client is built; later calls are harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client for outbound connections that need no settings of their own (upstream
/// MCP servers: their headers and tokens go on each request), shared: one connection pool,
/// and one load of the platform's trusted certificates, which costs ~18M instructions
/// (milliseconds) and was paid by every MCP session that opened an upstream connection.
///
/// # Errors
/// No TLS crypto provider is installed (see [`install_crypto_provider`]), or the client
/// cannot be built.
pub fn shared_client() -> Result<reqwest::Client, String> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client.clone());
    }
    // reqwest (rustls, provider chosen by the process) panics when building a client
    // without a crypto provider.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        return Err("no TLS crypto provider is installed".to_owned());
    }
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    Ok(CLIENT.get_or_init(|| client).clone())
}

/// The usual network failures, found in an error's `Debug` text (HTTP clients keep the cause
/// out of their message, and wrappers such as rmcp's keep it out of `source()`), in words.
const CAUSES: &[(&str, &str)] = &[
    ("ConnectionRefused", "connection refused"),
    ("dns error", "the host name does not resolve"),
    ("TimedOut", "the connection timed out"),
    ("ConnectionReset", "the connection was reset"),
    ("certificate", "its TLS certificate was not accepted"),
];

/// The usual network failure that `error` is, in words ("connection refused"), if it is one.
pub fn network_cause(error: &dyn std::fmt::Debug) -> Option<&'static str> {
    let debug = format!("{error:?}");
    CAUSES
        .iter()
        .find(|(needle, _)| debug.contains(needle))
        .map(|(_, cause)| *cause)
}

/// The innermost cause of `error` (e.g. `Connection refused (os error 111)`), which says
/// more than an HTTP client's own "error sending request" wrapper.
pub fn innermost<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    let mut inner = error;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner
}

/// `value` for a URL path segment or query (RFC 3986 unreserved characters kept).
pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_usual_failures_and_escapes() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(network_cause(&refused), Some("connection refused"));
        assert_eq!(network_cause(&"something else"), None);
        assert_eq!(percent_encode("a b/c~"), "a%20b%2Fc~");
    }
}
