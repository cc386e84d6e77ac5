//! The fake instance's incident table: records with ServiceNow's fields, the seed, writes as
//! the instance applies them, reads shaped by the `sysparm_*` parameters, and the encoded
//! query language.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};
use switchboard::incidents::model::{format_timestamp, now};
use switchboard::incidents::{Level, Priority, State};

/// A referenced record: what the field stores (sys_id) and shows (name).
#[derive(Debug, Clone)]
struct Reference {
    sys_id: String,
    name: String,
}

/// One incident as the instance stores it.
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
/// Why the table refused a request: ServiceNow's status, message and detail.
pub struct Refusal(pub u16, pub &'static str, pub String);

fn refuse(status: u16, message: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal(status, message, detail.into())
}

/// The incident table, with the users and groups its reference fields point to.
pub struct Table {
    incidents: Vec<Record>,
    next_sequence: u32,
    /// Users and groups, name → sys_id (created on first mention).
    references: HashMap<String, String>,
}

impl Table {
    /// The table with the seed incidents.
    pub fn seeded() -> Self {
        let mut table = Self {
            incidents: Vec::new(),
            next_sequence: 10_001,
            references: HashMap::new(),
        };
        seed(&mut table);
        table
    }

    /// The user or group named `name`, created on first mention.
    fn reference(&mut self, name: &str) -> Reference {
        let sys_id = self
            .references
            .entry(name.to_owned())
            .or_insert_with(new_sys_id)
            .clone();
        Reference {
            sys_id,
            name: name.to_owned(),
        }
    }

    /// `GET`: the records `sysparm_query` matches, ordered, limited and shaped.
    pub fn list(&self, params: &BTreeMap<String, String>) -> Result<Vec<Value>, Refusal> {
        let query = parse_query(params.get("sysparm_query").map_or("", String::as_str))
            .map_err(|detail| refuse(400, "Invalid query", detail))?;
        let limit = match params.get("sysparm_limit") {
            None => 10_000,
            Some(l) => l
                .parse::<usize>()
                .map_err(|_| refuse(400, "Invalid sysparm_limit", l.as_str()))?,
        };
        let mut found: Vec<&Record> = self.incidents.iter().filter(|r| query.matches(r)).collect();
        for (field, descending) in query.order.iter().rev() {
            found.sort_by(|a, b| {
                let (a, b) = (a.field(field).unwrap().0, b.field(field).unwrap().0);
                if *descending { b.cmp(&a) } else { a.cmp(&b) }
            });
        }
        Ok(found
            .into_iter()
            .take(limit)
            .map(|r| shape(r, params))
            .collect())
    }

    /// `POST` (no `sys_id`) or `PATCH`: applies `body` as the instance would (choices as
    /// codes, or labels with input display values; references by sys_id, or by name with input
    /// display values; work notes appended; resolution time kept; priority derived) and
    /// answers the status and the shaped record.
    pub fn write(
        &mut self,
        body: &Map<String, Value>,
        sys_id: Option<&str>,
        params: &BTreeMap<String, String>,
    ) -> Result<(u16, Value), Refusal> {
        let by_name = params
            .get("sysparm_input_display_value")
            .is_some_and(|v| v == "true");
        let at = format_timestamp(now());
        let mut record = match sys_id {
            Some(id) => match self.incidents.iter().find(|r| r.sys_id == id) {
                Some(r) => r.clone(),
                None => {
                    return Err(refuse(
                        404,
                        "No Record found",
                        "Record doesn't exist or ACL restricts the record retrieval",
                    ));
                }
            },
            None => {
                let number = format!("INC{:07}", self.next_sequence);
                self.next_sequence += 1;
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
        for (key, value) in body {
            let Some(text) = value.as_str() else {
                return Err(refuse(
                    400,
                    "Invalid value",
                    format!("{key} is not a string"),
                ));
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
                        return Err(refuse(400, "Invalid value", format!("{key} {text:?}")));
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
                        Some(self.reference(text))
                    } else {
                        // A value that is not one of the instance's sys_ids shows no name.
                        let name = self
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
                    return Err(refuse(
                        400,
                        "Invalid field",
                        format!("{other} is unknown or read-only"),
                    ));
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
        let shaped = shape(&record, params);
        match self
            .incidents
            .iter_mut()
            .find(|r| r.sys_id == record.sys_id)
        {
            Some(slot) => {
                *slot = record;
                Ok((200, shaped))
            }
            None => {
                self.incidents.push(record);
                Ok((201, shaped))
            }
        }
    }
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

fn seed(table: &mut Table) {
    let ago = |hours: i64| format_timestamp(now() - time::Duration::hours(hours));
    for seed in SEEDS {
        let group = table.reference(seed.group);
        let caller = table.reference("Joe Employee");
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
        table.incidents.push(record);
    }
}

pub fn new_sys_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
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
