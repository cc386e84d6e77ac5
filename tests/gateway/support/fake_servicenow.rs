//! A ServiceNow instance's Table API and OAuth token endpoint, in memory, for tests.
//!
//! It keeps real incident records (sys_id, generated numbers, a work-notes journal, reference
//! fields with sys_ids behind display names, priority derived from impact and urgency,
//! resolution times) and answers the way ServiceNow does: `{"result": [...]}` for lists,
//! `{"result": {...}}` for one record (201 on create), `{"error": {"message", "detail"},
//! "status": "failure"}` for errors, `sysparm_display_value=all` pairs, `sysparm_fields`,
//! `sysparm_limit`, `sysparm_query` with `^`, `^OR`, `=`, `LIKE`, `ORDERBY`/`ORDERBYDESC` and
//! `^^` escapes. It is stricter than a real instance where a client bug would otherwise pass
//! unnoticed: unknown query fields or operators, unknown or read-only body fields, choice
//! values that are not codes and writes without a JSON content type are 400s (a real instance
//! ignores or stores some of them silently).
//!
//! Authentication is checked on every request: the one configured mode only (basic auth, or
//! bearer tokens it issued itself from `POST /oauth_token.do`). Tests can inject faults per
//! request (any status, 429 with `Retry-After`, a slow answer, a body that is not JSON), revoke
//! tokens, change the token lifetime, and read every request received.
//!
//! This file is the HTTP side (routes, credentials, tokens, faults, the request log); the
//! table itself (records, seed, writes, reads, the query language) is in `table`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::{Method, StatusCode};
use poem::listener::TcpAcceptor;
use poem::{Endpoint, Request, Response};
use serde_json::{Value, json};

mod table;

use table::{Refusal, Table, new_sys_id};

const TABLE: &str = "/api/now/table/incident";
const TOKEN: &str = "/oauth_token.do";

/// Which credentials the instance accepts.
#[derive(Debug, Clone)]
pub enum FakeAuth {
    Basic {
        username: &'static str,
        password: &'static str,
    },
    OAuth {
        client_id: &'static str,
        client_secret: &'static str,
    },
}

/// A fault injected into the next Table API request (of a method, or of any).
#[derive(Debug, Clone)]
pub enum Fault {
    /// This status with a ServiceNow error body.
    Status(u16),
    /// 429 with this `Retry-After` (none: no header).
    RateLimited(Option<&'static str>),
    /// Answer normally, after this delay.
    Slow(Duration),
    /// 200 with an HTML page.
    NotJson,
}

/// A request the instance received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The W3C `traceparent` header (the gateway's tracing).
    pub traceparent: Option<String>,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// The parameters the client may send; any other is a 400 (an instance would ignore it).
const SYSPARMS: &[&str] = &[
    "sysparm_query",
    "sysparm_limit",
    "sysparm_fields",
    "sysparm_display_value",
    "sysparm_exclude_reference_link",
    "sysparm_input_display_value",
];

/// Everything the instance keeps. A `std` mutex guards it: held only to read or change it,
/// never across an `.await`.
struct Instance {
    table: Table,
    faults: VecDeque<(Option<Method>, Fault)>,
    received: Vec<Received>,
    /// Issued tokens and whether they are still valid.
    tokens: HashMap<String, bool>,
    token_lifetime: u64,
    client_secret_override: Option<&'static str>,
}

struct Shared {
    auth: FakeAuth,
    /// The `Authorization` header basic auth must carry.
    basic_header: Option<String>,
    state: Mutex<Instance>,
}

/// The running instance.
pub struct FakeServiceNow {
    pub url: String,
    shared: Arc<Shared>,
    _server: tokio::task::JoinHandle<()>,
}

impl FakeServiceNow {
    /// Starts an instance on 127.0.0.1:0 accepting `auth`, seeded with the incidents the
    /// embedded store is seeded with that the shared scenarios rely on.
    pub async fn start(auth: FakeAuth) -> Self {
        // `expected_basic` builds an HTTP client, which needs the TLS provider.
        switchboard::net::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
        let basic_header = match &auth {
            FakeAuth::Basic { username, password } => Some(expected_basic(username, password)),
            FakeAuth::OAuth { .. } => None,
        };
        let shared = Arc::new(Shared {
            auth,
            basic_header,
            state: Mutex::new(Instance {
                table: Table::seeded(),
                faults: VecDeque::new(),
                received: Vec::new(),
                tokens: HashMap::new(),
                token_lifetime: 1799,
                client_secret_override: None,
            }),
        });
        let ep = FakeEndpoint {
            shared: shared.clone(),
        };
        let server = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(ep).await;
        });
        Self {
            url: format!("http://{addr}"),
            shared,
            _server: server,
        }
    }

    /// Injects `fault` into the next Table API request with `method` (`None`: any).
    pub fn fault(&self, method: Option<Method>, fault: Fault) {
        self.state().faults.push_back((method, fault));
    }

    /// Every request received so far (token requests included).
    pub fn received(&self) -> Vec<Received> {
        self.state().received.clone()
    }

    /// How many requests with `method` reached `path` (a prefix).
    pub fn count(&self, method: Method, path: &str) -> usize {
        self.state()
            .received
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path))
            .count()
    }

    /// How many tokens were requested.
    pub fn token_requests(&self) -> usize {
        self.count(Method::POST, TOKEN)
    }

    /// Every incident record the instance holds, as a `GET` with no parameters answers it.
    pub fn records(&self) -> Vec<Value> {
        self.state()
            .table
            .list(&BTreeMap::new())
            .unwrap_or_else(|Refusal(status, message, _)| panic!("{status} {message}"))
    }

    /// Forgets the requests received so far.
    pub fn clear_received(&self) {
        self.state().received.clear();
    }

    /// Every token issued so far stops working (401).
    pub fn revoke_tokens(&self) {
        for valid in self.state().tokens.values_mut() {
            *valid = false;
        }
    }

    /// The `expires_in` of tokens issued from now on.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.state().token_lifetime = secs;
    }

    /// The client secret the token endpoint accepts from now on.
    pub fn change_client_secret(&self, secret: &'static str) {
        self.state().client_secret_override = Some(secret);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Instance> {
        self.shared.state.lock().unwrap()
    }
}

/// What a reqwest client sends for these credentials (the same encoding every client uses).
fn expected_basic(username: &str, password: &str) -> String {
    let request = reqwest::Client::new()
        .get("http://localhost/")
        .basic_auth(username, Some(password))
        .build()
        .unwrap();
    request.headers()["authorization"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn error(status: u16, message: &str, detail: &str) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(
            json!({"error": {"message": message, "detail": detail}, "status": "failure"})
                .to_string(),
        )
}

fn result(status: u16, result: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .content_type("application/json;charset=UTF-8")
        .body(json!({ "result": result }).to_string())
}

fn pairs(text: &str) -> BTreeMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{text}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

struct FakeEndpoint {
    shared: Arc<Shared>,
}

impl Endpoint for FakeEndpoint {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let body = req.take_body().into_vec().await.unwrap_or_default();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let received = Received {
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            query: pairs(req.uri().query().unwrap_or_default()),
            authorization: header("authorization"),
            content_type: header("content-type"),
            traceparent: header("traceparent"),
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let fault = {
            let mut state = self.shared.state.lock().unwrap();
            state.received.push(received.clone());
            if received.path.starts_with(TABLE) {
                let at = state
                    .faults
                    .iter()
                    .position(|(m, _)| m.as_ref().is_none_or(|m| *m == received.method));
                at.and_then(|i| state.faults.remove(i)).map(|(_, f)| f)
            } else {
                None
            }
        };
        if received.path == TOKEN {
            return Ok(self.token(&received));
        }
        match fault {
            Some(Fault::Status(status)) => {
                return Ok(error(status, "Injected failure", "The test asked for it"));
            }
            Some(Fault::RateLimited(retry_after)) => {
                let mut resp = error(429, "Too many requests", "Rate limit exceeded");
                if let Some(value) = retry_after {
                    resp.headers_mut()
                        .insert("retry-after", value.parse().unwrap());
                }
                return Ok(resp);
            }
            Some(Fault::NotJson) => {
                return Ok(Response::builder()
                    .content_type("text/html")
                    .body("<html><body>Instance hibernating</body></html>"));
            }
            Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
            None => {}
        }
        if let Some(refused) = self.authenticate(&received) {
            return Ok(refused);
        }
        Ok(self.table(&received))
    }
}

impl FakeEndpoint {
    /// `None` when the request carries the accepted credentials, else the 401.
    fn authenticate(&self, received: &Received) -> Option<Response> {
        let given = received.authorization.as_deref().unwrap_or_default();
        let ok = match &self.shared.auth {
            FakeAuth::Basic { .. } => Some(given) == self.shared.basic_header.as_deref(),
            FakeAuth::OAuth { .. } => given.strip_prefix("Bearer ").is_some_and(|token| {
                self.shared.state.lock().unwrap().tokens.get(token) == Some(&true)
            }),
        };
        (!ok).then(|| {
            error(
                401,
                "User Not Authenticated",
                "Required to provide Auth information",
            )
        })
    }

    /// `POST /oauth_token.do`, client credentials grant.
    fn token(&self, received: &Received) -> Response {
        let FakeAuth::OAuth {
            client_id,
            client_secret,
        } = &self.shared.auth
        else {
            return error(404, "Not found", "OAuth is not enabled on this instance");
        };
        let denied = || {
            Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .content_type("application/json")
                .body(
                    json!({"error_description": "access_denied", "error": "server_error"})
                        .to_string(),
                )
        };
        if received.method != Method::POST
            || received.content_type.as_deref() != Some("application/x-www-form-urlencoded")
        {
            return denied();
        }
        let form = pairs(&received.body);
        let mut state = self.shared.state.lock().unwrap();
        let secret = state.client_secret_override.unwrap_or(client_secret);
        let good = form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id").map(String::as_str) == Some(*client_id)
            && form.get("client_secret").map(String::as_str) == Some(secret);
        if !good {
            return denied();
        }
        let token = format!("tok-{}", new_sys_id());
        state.tokens.insert(token.clone(), true);
        Response::builder().content_type("application/json").body(
            json!({
                "access_token": token,
                "refresh_token": "unused",
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": state.token_lifetime,
            })
            .to_string(),
        )
    }

    fn table(&self, received: &Received) -> Response {
        if let Some(unknown) = received
            .query
            .keys()
            .find(|k| !SYSPARMS.contains(&k.as_str()))
        {
            return error(400, "Invalid parameter", &format!("unknown {unknown}"));
        }
        let sys_id = received
            .path
            .strip_prefix(TABLE)
            .map(|rest| rest.trim_start_matches('/').to_owned());
        match (&received.method, sys_id.as_deref()) {
            (&Method::GET, Some("")) => self.list(received),
            (&Method::POST, Some("")) => self.write(received, None),
            (&Method::PATCH, Some(id)) if !id.is_empty() && !id.contains('/') => {
                self.write(received, Some(id))
            }
            _ => error(
                400,
                "Requested URI does not represent any resource",
                &received.path,
            ),
        }
    }

    fn list(&self, received: &Received) -> Response {
        let state = self.shared.state.lock().unwrap();
        match state.table.list(&received.query) {
            Ok(records) => result(200, Value::Array(records)),
            Err(Refusal(status, message, detail)) => error(status, message, &detail),
        }
    }

    fn write(&self, received: &Received, sys_id: Option<&str>) -> Response {
        if !received
            .content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return error(415, "Unsupported Media Type", "send application/json");
        }
        let Ok(Value::Object(body)) = serde_json::from_str::<Value>(&received.body) else {
            return error(400, "Exception while reading request", "not a JSON object");
        };
        let mut state = self.shared.state.lock().unwrap();
        match state.table.write(&body, sys_id, &received.query) {
            Ok((status, record)) => result(status, record),
            Err(Refusal(status, message, detail)) => error(status, message, &detail),
        }
    }
}
