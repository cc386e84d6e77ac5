//! The DNS-rebinding guard of every MCP route: `Host` must be an allowed host and `Origin`,
//! when present, an allowed origin (MCP transports: servers MUST validate `Origin`).

use poem::Request;

use crate::config::ServerSpec;
use crate::error::Error;

/// Checks `Host` and `Origin` of `req` against `settings`.
///
/// # Errors
/// [`Error::HostNotAllowed`] or [`Error::OriginNotAllowed`].
pub fn check(req: &Request, settings: &ServerSpec) -> Result<(), Error> {
    let host = req
        .headers()
        .get(poem::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default();
    if !settings.allowed_hosts.is_empty() && !host_allowed(host, &settings.allowed_hosts) {
        return Err(Error::HostNotAllowed(host.to_owned()));
    }
    if let Some(origin) = req.headers().get(poem::http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !same_origin(origin, host) && !origin_allowed(origin, &settings.allowed_origins) {
            return Err(Error::OriginNotAllowed(origin.to_owned()));
        }
    }
    Ok(())
}

/// Splits `host[:port]` (IPv6 in brackets) into a lowercase host and an optional port.
fn split_authority(authority: &str) -> (String, Option<&str>) {
    let authority = authority.trim();
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (rest, None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (authority, None),
        }
    };
    (host.to_ascii_lowercase(), port)
}

/// `host` matches an entry with the same host and, if the entry has a port, that port.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let (h, p) = split_authority(host);
    if h.is_empty() {
        return false;
    }
    allowed.iter().any(|entry| {
        let (eh, ep) = split_authority(entry);
        eh == h && ep.is_none_or(|ep| Some(ep) == p)
    })
}

/// A page served by this gateway itself (its origin's authority is the request's `Host`).
fn same_origin(origin: &str, host: &str) -> bool {
    origin.split_once("://").is_some_and(|(scheme, authority)| {
        matches!(scheme, "http" | "https")
            && !host.is_empty()
            && authority.eq_ignore_ascii_case(host)
    })
}

/// `origin` matches an entry exactly (case-insensitive), or an entry without port matches
/// any port of the same scheme and host.
fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    allowed.iter().any(|entry| {
        let entry = entry.trim().trim_end_matches('/').to_ascii_lowercase();
        if entry == origin {
            return true;
        }
        let (Some((es, ea)), Some((os, oa))) = (entry.split_once("://"), origin.split_once("://"))
        else {
            return false;
        };
        let (eh, ep) = split_authority(ea);
        let (oh, _) = split_authority(oa);
        es == os && ep.is_none() && eh == oh
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hosts_match_with_and_without_ports() {
        let allowed = list(&["localhost", "127.0.0.1", "[::1]", "example.com:8443"]);
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:1",
            "127.0.0.1:9",
            "[::1]:80",
            "example.com:8443",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "evil.com",
            "evil.com:8080",
            "example.com",
            "example.com:80",
            "",
            "localhost.evil.com",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    #[test]
    fn origins_match_exactly_or_by_host_when_portless() {
        let allowed = list(&["https://app.example.com", "http://localhost:3000"]);
        assert!(origin_allowed("https://app.example.com", &allowed));
        assert!(origin_allowed("https://app.example.com:444", &allowed));
        assert!(origin_allowed("http://localhost:3000", &allowed));
        assert!(!origin_allowed("http://localhost:3001", &allowed));
        assert!(!origin_allowed("http://app.example.com", &allowed));
        assert!(!origin_allowed("https://evil.com", &allowed));
        assert!(!origin_allowed("null", &allowed));
    }

    #[test]
    fn same_origin_pages_pass() {
        assert!(same_origin("http://localhost:8080", "localhost:8080"));
        assert!(!same_origin("http://localhost:3000", "localhost:8080"));
        assert!(!same_origin("null", "localhost:8080"));
    }
}
