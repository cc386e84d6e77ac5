//! A liveness probe client: `switchboard healthcheck` GETs the gateway's `/healthz` and exits
//! 0 or 1, so a container image needs no curl for its `HEALTHCHECK`.
//!
//! The probe is plain HTTP to the gateway itself: it ignores `HTTP_PROXY`/`HTTPS_PROXY` (a
//! proxy cannot reach the container's loopback) and does not follow redirects (a health
//! endpoint that redirects is misconfigured, not healthy).

use std::time::Duration;

/// GETs `url` and succeeds on a 2xx answer received within `timeout` (connect included).
///
/// # Errors
/// A short, one-line message: the non-2xx status (`HTTP 503 Service Unavailable from …`),
/// a timeout, or why the connection failed (`connection refused`, …).
pub async fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    // reqwest is built with `rustls-no-provider`: building a client panics without a process
    // crypto provider. The CLI installs it at startup; installing again is harmless.
    crate::net::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {}", crate::net::innermost(&e)))?;
    match client.get(url).send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("HTTP {} from {url}", response.status())),
        Err(e) if e.is_timeout() => Err(format!("no answer from {url} within {timeout:?}")),
        Err(e) if e.is_builder() => Err(format!(
            "invalid URL {url:?}: {}",
            crate::net::innermost(&e)
        )),
        Err(e) => Err(format!("cannot reach {url}: {}", crate::net::innermost(&e))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use poem::http::StatusCode;
    use poem::listener::TcpAcceptor;
    use poem::{Route, Server, get, handler};

    use super::probe;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[handler]
    fn ok() -> &'static str {
        "ok"
    }

    #[handler]
    fn broken() -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    /// A server answering 200 on `/healthz` and 500 on `/broken`; returns its base URL.
    async fn server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let app = Route::new()
            .at("/healthz", get(ok))
            .at("/broken", get(broken));
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn two_hundred_is_healthy() {
        let base = server().await;
        assert_eq!(probe(&format!("{base}/healthz"), TIMEOUT).await, Ok(()));
    }

    #[tokio::test]
    async fn server_error_is_unhealthy_and_names_the_status() {
        let base = server().await;
        let err = probe(&format!("{base}/broken"), TIMEOUT).await.unwrap_err();
        assert!(err.contains("500"), "{err}");
    }

    #[tokio::test]
    async fn not_found_is_unhealthy() {
        let base = server().await;
        let err = probe(&format!("{base}/nowhere"), TIMEOUT)
            .await
            .unwrap_err();
        assert!(err.contains("404"), "{err}");
    }

    #[tokio::test]
    async fn refused_connection_is_unhealthy() {
        // Bind to get a free port, then close it: nothing listens there any more.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = probe(&format!("http://{addr}/healthz"), TIMEOUT)
            .await
            .unwrap_err();
        assert!(err.starts_with("cannot reach"), "{err}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        // The kernel completes the handshake (backlog) but nobody ever answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let err = probe(
            &format!("http://{addr}/healthz"),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(err.contains("within"), "{err}");
        drop(listener);
    }

    #[tokio::test]
    async fn malformed_url_is_an_error_not_a_panic() {
        let err = probe("not a url", TIMEOUT).await.unwrap_err();
        assert!(!err.is_empty());
    }
}
