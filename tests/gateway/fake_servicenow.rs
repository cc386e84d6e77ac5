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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::{Method, StatusCode};
use poem::listener::TcpAcceptor;
use poem::{Endpoint, Request, Response};
use serde_json::{Map, Value, json};
use switchboard::incidents::model::{format_timestamp, now};
use switchboard::incidents::{Level, Priority, State};

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
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A referenced record: what the field stores (sys_id) and shows (name).
#[derive(Debug, Clone)]
struct Reference {
    sys_id: String,
    name: String,
}

#[derive(Debug, Clone)]
struct Record {
    sys_id: String,
    number: String,
    short_description: String,
    description: String,
    caller: Option<Reference>,
    category: String,
    impact: u8,
    urgency: u8,
    state: u8,
    assignment_group: Option<Reference>,
    assigned_to: Option<Reference>,
    /// `(time, note)`, oldest first.
    work_notes: Vec<(String, String)>,
    close_code: String,
    close_notes: String,
    opened_at: String,
    updated_on: String,
    resolved_at: String,
}

impl Record {
    fn priority(&self) -> u8 {
        let p = self.impact + self.urgency - 1;
        p.clamp(1, 5)
    }

    /// The journal as ServiceNow displays it: newest first.
    fn journal(&self) -> String {
        self.work_notes
            .iter()
            .rev()
            .map(|(at, note)| format!("{at} - System Administrator (Work notes)\n{note}\n\n"))
            .collect()
    }

    /// `(value, display_value)` of a field, `None` for an unknown field.
    fn field(&self, name: &str) -> Option<(String, String)> {
        let same = |s: &str| Some((s.to_owned(), s.to_owned()));
        let reference = |r: &Option<Reference>| {
            Some(r.as_ref().map_or((String::new(), String::new()), |r| {
                (r.sys_id.clone(), r.name.clone())
            }))
        };
        let level = |code: u8| {
            let display = Level::from_code(u64::from(code))
                .map(|l| l.display_value())
                .unwrap_or_default();
            Some((code.to_string(), display))
        };
        // Times display in another format than their value, as for a user with a time zone.
        let time = |t: &str| {
            let display = if t.len() == 19 {
                format!("{}/{}/{} {}", &t[5..7], &t[8..10], &t[0..4], &t[11..])
            } else {
                String::new()
            };
            Some((t.to_owned(), display))
        };
        match name {
            "sys_id" => same(&self.sys_id),
            "number" => same(&self.number),
            "short_description" => same(&self.short_description),
            "description" => same(&self.description),
            "caller_id" => reference(&self.caller),
            "category" => {
                let mut display = self.category.clone();
                if let Some(first) = display.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                Some((self.category.clone(), display))
            }
            "impact" => level(self.impact),
            "urgency" => level(self.urgency),
            "priority" => {
                let p = self.priority();
                let display = Priority::from_code(u64::from(p))
                    .map(|p| p.display_value())
                    .unwrap_or_default();
                Some((p.to_string(), display))
            }
            "state" => {
                let display = State::from_code(u64::from(self.state))
                    .map(|s| s.name().to_owned())
                    .unwrap_or_default();
                Some((self.state.to_string(), display))
            }
            "assignment_group" => reference(&self.assignment_group),
            "assigned_to" => reference(&self.assigned_to),
            // A journal field: its value is empty, its display value the journal.
            "work_notes" => Some((String::new(), self.journal())),
            "close_code" => same(&self.close_code),
            "close_notes" => same(&self.close_notes),
            "opened_at" => time(&self.opened_at),
            "sys_updated_on" => time(&self.updated_on),
            "resolved_at" => time(&self.resolved_at),
            _ => None,
        }
    }
}

const ALL_FIELDS: &[&str] = &[
    "sys_id",
    "number",
    "short_description",
    "description",
    "caller_id",
    "category",
    "impact",
    "urgency",
    "priority",
    "state",
    "assignment_group",
    "assigned_to",
    "work_notes",
    "close_code",
    "close_notes",
    "opened_at",
    "sys_updated_on",
    "resolved_at",
];

const REFERENCE_FIELDS: &[&str] = &["caller_id", "assignment_group", "assigned_to"];
const WRITABLE_TEXT: &[&str] = &[
    "short_description",
    "description",
    "category",
    "close_code",
    "close_notes",
    "work_notes",
];
const QUERYABLE: &[&str] = &[
    "number",
    "short_description",
    "description",
    "work_notes",
    "close_notes",
    "state",
    "priority",
    "opened_at",
];
const SYSPARMS: &[&str] = &[
    "sysparm_query",
    "sysparm_limit",
    "sysparm_fields",
    "sysparm_display_value",
    "sysparm_exclude_reference_link",
    "sysparm_input_display_value",
];

#[derive(Default)]
struct Instance {
    incidents: Vec<Record>,
    next_sequence: u32,
    /// Users and groups, name → sys_id (created on first mention).
    references: HashMap<String, String>,
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
        switchboard::app::install_crypto_provider();
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
                next_sequence: 10_001,
                token_lifetime: 1799,
                ..Instance::default()
            }),
        });
        seed(&mut shared.state.lock().unwrap());
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

/// One seeded incident.
struct Seed {
    number: &'static str,
    opened_hours_ago: i64,
    short_description: &'static str,
    description: &'static str,
    category: &'static str,
    impact: u8,
    urgency: u8,
    state: u8,
    group: &'static str,
    close_notes: &'static str,
}

/// Incidents like the embedded store's seed (the shared scenarios look up INC0012346).
const SEEDS: &[Seed] = &[
    Seed {
        number: "INC0012341",
        opened_hours_ago: 150,
        short_description: "Outlook crashes when opening a shared calendar",
        description: "Outlook closes whenever the caller opens the Marketing calendar.",
        category: "software",
        impact: 3,
        urgency: 2,
        state: 6,
        group: "Service Desk",
        close_notes: "Ran an online Office repair.",
    },
    Seed {
        number: "INC0012343",
        opened_hours_ago: 30,
        short_description: "Email to external recipients delayed",
        description: "Messages to outside addresses wait 30 to 60 minutes.",
        category: "software",
        impact: 2,
        urgency: 1,
        state: 2,
        group: "Messaging",
        close_notes: "",
    },
    Seed {
        number: "INC0012344",
        opened_hours_ago: 20,
        short_description: "Wi-Fi drops in building B meeting rooms",
        description: "Laptops lose the wireless connection every few minutes.",
        category: "network",
        impact: 2,
        urgency: 3,
        state: 1,
        group: "Network",
        close_notes: "",
    },
    Seed {
        number: "INC0012345",
        opened_hours_ago: 8,
        short_description: "Third-floor printer jams on every job",
        description: "The printer next to room 3.14 jams on every print job.",
        category: "hardware",
        impact: 3,
        urgency: 2,
        state: 1,
        group: "Hardware",
        close_notes: "",
    },
    Seed {
        number: "INC0012346",
        opened_hours_ago: 3,
        short_description: "VPN not working",
        description: "Users are unable to connect to the corporate VPN since this morning.",
        category: "network",
        impact: 2,
        urgency: 2,
        state: 2,
        group: "Network",
        close_notes: "",
    },
];

fn seed(state: &mut Instance) {
    let ago = |hours: i64| format_timestamp(now() - time::Duration::hours(hours));
    for seed in SEEDS {
        let group = reference(state, seed.group);
        let caller = reference(state, "Joe Employee");
        let hours = seed.opened_hours_ago;
        let mut record = Record {
            sys_id: new_sys_id(),
            number: seed.number.to_owned(),
            short_description: seed.short_description.to_owned(),
            description: seed.description.to_owned(),
            caller: Some(caller),
            category: seed.category.to_owned(),
            impact: seed.impact,
            urgency: seed.urgency,
            state: seed.state,
            assignment_group: Some(group),
            assigned_to: None,
            work_notes: Vec::new(),
            close_code: String::new(),
            close_notes: seed.close_notes.to_owned(),
            opened_at: ago(hours),
            updated_on: ago(hours - 1),
            resolved_at: String::new(),
        };
        if seed.number == "INC0012346" {
            record.work_notes.push((
                ago(2),
                "Several users affected; checking the RADIUS server.".to_owned(),
            ));
        }
        if seed.state == 6 {
            record.close_code = "Solved (Permanently)".to_owned();
            record.resolved_at = ago(hours - 2);
        }
        state.incidents.push(record);
    }
}

fn new_sys_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The user or group named `name`, created on first mention.
fn reference(state: &mut Instance, name: &str) -> Reference {
    let sys_id = state
        .references
        .entry(name.to_owned())
        .or_insert_with(new_sys_id)
        .clone();
    Reference {
        sys_id,
        name: name.to_owned(),
    }
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
        let query = match parse_query(
            received
                .query
                .get("sysparm_query")
                .map_or("", String::as_str),
        ) {
            Ok(q) => q,
            Err(detail) => return error(400, "Invalid query", &detail),
        };
        let limit = match received.query.get("sysparm_limit") {
            None => 10_000,
            Some(l) => match l.parse::<usize>() {
                Ok(l) => l,
                Err(_) => return error(400, "Invalid sysparm_limit", l),
            },
        };
        let state = self.shared.state.lock().unwrap();
        let mut found: Vec<&Record> = state
            .incidents
            .iter()
            .filter(|r| query.matches(r))
            .collect();
        for (field, descending) in query.order.iter().rev() {
            found.sort_by(|a, b| {
                let (a, b) = (a.field(field).unwrap().0, b.field(field).unwrap().0);
                if *descending { b.cmp(&a) } else { a.cmp(&b) }
            });
        }
        let records: Vec<Value> = found
            .into_iter()
            .take(limit)
            .map(|r| shape(r, &received.query))
            .collect();
        result(200, Value::Array(records))
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
        let by_name = received
            .query
            .get("sysparm_input_display_value")
            .is_some_and(|v| v == "true");
        let mut state = self.shared.state.lock().unwrap();
        let at = format_timestamp(now());
        let mut record = match sys_id {
            Some(id) => match state.incidents.iter().find(|r| r.sys_id == id) {
                Some(r) => r.clone(),
                None => {
                    return error(
                        404,
                        "No Record found",
                        "Record doesn't exist or ACL restricts the record retrieval",
                    );
                }
            },
            None => {
                let number = format!("INC{:07}", state.next_sequence);
                state.next_sequence += 1;
                Record {
                    sys_id: new_sys_id(),
                    number,
                    short_description: String::new(),
                    description: String::new(),
                    caller: None,
                    category: "inquiry".to_owned(),
                    impact: 3,
                    urgency: 3,
                    state: 1,
                    assignment_group: None,
                    assigned_to: None,
                    work_notes: Vec::new(),
                    close_code: String::new(),
                    close_notes: String::new(),
                    opened_at: at.clone(),
                    updated_on: at.clone(),
                    resolved_at: String::new(),
                }
            }
        };
        for (key, value) in &body {
            let Some(text) = value.as_str() else {
                return error(400, "Invalid value", &format!("{key} is not a string"));
            };
            match key.as_str() {
                "impact" | "urgency" | "state" => {
                    let valid = match key.as_str() {
                        "state" => State::parse(text).ok().map(State::code),
                        _ => Level::parse(text).ok().map(Level::code),
                    };
                    // Codes, or (with input display values) labels.
                    let code = text.parse::<u8>().ok().filter(|c| Some(*c) == valid);
                    let code = code.or(if by_name { valid } else { None });
                    let Some(code) = code else {
                        return error(400, "Invalid value", &format!("{key} {text:?}"));
                    };
                    match key.as_str() {
                        "impact" => record.impact = code,
                        "urgency" => record.urgency = code,
                        _ => record.state = code,
                    }
                }
                field if REFERENCE_FIELDS.contains(&field) => {
                    let reference = if text.is_empty() {
                        None
                    } else if by_name {
                        Some(reference(&mut state, text))
                    } else {
                        // A value that is not one of the instance's sys_ids shows no name.
                        let name = state
                            .references
                            .iter()
                            .find(|(_, id)| *id == text)
                            .map(|(n, _)| n.clone())
                            .unwrap_or_default();
                        Some(Reference {
                            sys_id: text.to_owned(),
                            name,
                        })
                    };
                    match field {
                        "caller_id" => record.caller = reference,
                        "assignment_group" => record.assignment_group = reference,
                        _ => record.assigned_to = reference,
                    }
                }
                "work_notes" => {
                    if !text.trim().is_empty() {
                        record.work_notes.push((at.clone(), text.to_owned()));
                    }
                }
                field if WRITABLE_TEXT.contains(&field) => {
                    let slot = match field {
                        "short_description" => &mut record.short_description,
                        "description" => &mut record.description,
                        "category" => &mut record.category,
                        "close_code" => &mut record.close_code,
                        _ => &mut record.close_notes,
                    };
                    *slot = text.to_owned();
                }
                other => {
                    return error(
                        400,
                        "Invalid field",
                        &format!("{other} is unknown or read-only"),
                    );
                }
            }
        }
        if matches!(record.state, 6 | 7) {
            if record.resolved_at.is_empty() {
                record.resolved_at = at.clone();
            }
        } else {
            record.resolved_at.clear();
        }
        record.updated_on = at;
        let shaped = shape(&record, &received.query);
        match state
            .incidents
            .iter_mut()
            .find(|r| r.sys_id == record.sys_id)
        {
            Some(slot) => {
                *slot = record;
                result(200, shaped)
            }
            None => {
                state.incidents.push(record);
                result(201, shaped)
            }
        }
    }
}

/// A record as `sysparm_fields`, `sysparm_display_value` and `sysparm_exclude_reference_link`
/// ask.
fn shape(record: &Record, query: &BTreeMap<String, String>) -> Value {
    let fields: Vec<&str> = match query.get("sysparm_fields") {
        Some(list) => list.split(',').map(str::trim).collect(),
        None => ALL_FIELDS.to_vec(),
    };
    let display = query
        .get("sysparm_display_value")
        .map_or("false", String::as_str);
    let links = query
        .get("sysparm_exclude_reference_link")
        .is_none_or(|v| v != "true");
    let mut out = Map::new();
    for name in fields {
        let Some((value, shown)) = record.field(name) else {
            continue;
        };
        let is_reference = REFERENCE_FIELDS.contains(&name) && !value.is_empty();
        let field = match display {
            "true" => Value::String(shown),
            "all" => {
                let mut pair = json!({"display_value": shown, "value": value});
                if is_reference && links {
                    pair["link"] = json!(format!("https://fake/api/now/table/sys_user/{value}"));
                }
                pair
            }
            _ if is_reference && links => json!({"link": "https://fake/...", "value": value}),
            _ => Value::String(value),
        };
        out.insert(name.to_owned(), field);
    }
    Value::Object(out)
}

/// One condition of an encoded query.
#[derive(Debug)]
struct Condition {
    field: String,
    like: bool,
    value: String,
}

/// An encoded query: AND of OR groups, then the order.
#[derive(Debug, Default)]
struct Query {
    groups: Vec<Vec<Condition>>,
    order: Vec<(String, bool)>,
}

impl Query {
    fn matches(&self, record: &Record) -> bool {
        self.groups.iter().all(|group| {
            group.iter().any(|c| {
                let (value, shown) = record.field(&c.field).unwrap_or_default();
                // Journal fields are searched in their entries.
                let value = if c.field == "work_notes" {
                    shown
                } else {
                    value
                };
                if c.like {
                    value.to_lowercase().contains(&c.value.to_lowercase())
                } else {
                    value == c.value
                }
            })
        })
    }
}

/// Parses `sysparm_query`: `^` separates conditions (`^^` is a literal `^`), `OR` in front of
/// a condition joins it to the one before, `field=value`, `fieldLIKEvalue`,
/// `ORDERBYfield`, `ORDERBYDESCfield`.
fn parse_query(text: &str) -> Result<Query, String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '^' {
            if chars.peek() == Some(&'^') {
                chars.next();
                current.push('^');
            } else {
                parts.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    let mut query = Query::default();
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        if let Some(field) = part.strip_prefix("ORDERBYDESC") {
            query.order.push((known(field)?, true));
        } else if let Some(field) = part.strip_prefix("ORDERBY") {
            query.order.push((known(field)?, false));
        } else if part.starts_with("NQ") {
            return Err("^NQ is not used by this client".into());
        } else if let Some(condition) = part.strip_prefix("OR") {
            let condition = parse_condition(condition)?;
            match query.groups.last_mut() {
                Some(group) => group.push(condition),
                None => return Err(format!("{part:?} has nothing to OR with")),
            }
        } else {
            query.groups.push(vec![parse_condition(&part)?]);
        }
    }
    Ok(query)
}

fn known(field: &str) -> Result<String, String> {
    if QUERYABLE.contains(&field) {
        Ok(field.to_owned())
    } else {
        Err(format!("unknown field {field:?}"))
    }
}

fn parse_condition(text: &str) -> Result<Condition, String> {
    let end = text
        .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
        .unwrap_or(text.len());
    let (field, rest) = text.split_at(end);
    let field = known(field)?;
    if let Some(value) = rest.strip_prefix("LIKE") {
        Ok(Condition {
            field,
            like: true,
            value: value.to_owned(),
        })
    } else if let Some(value) = rest.strip_prefix('=') {
        Ok(Condition {
            field,
            like: false,
            value: value.to_owned(),
        })
    } else {
        Err(format!("unknown operator in {text:?}"))
    }
}

#[test]
fn the_fake_parses_encoded_queries_as_servicenow_does() {
    let q = parse_query("state=2^numberLIKEa^^b^ORshort_descriptionLIKEvpn^ORDERBYDESCopened_at")
        .unwrap();
    assert_eq!(q.groups.len(), 2);
    assert_eq!(q.groups[1].len(), 2);
    assert_eq!(q.groups[1][0].value, "a^b");
    assert_eq!(q.order, vec![("opened_at".to_owned(), true)]);
    assert!(parse_query("colour=red").is_err());
    assert!(parse_query("stateIN1,2").is_err());
    assert!(parse_query("ORstate=1").is_err());
}
