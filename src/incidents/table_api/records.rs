//! Incident records and the Table API's shapes: encoded queries, request bodies, and the
//! records of its answers as [`Incident`]s.

use serde_json::{Map, Value};

use super::{Error, FIELDS, ORDER, TEXT_FIELDS};
use crate::incidents::model::{
    Incident, IncidentNumber, IncidentPatch, Level, NewIncident, Priority, SearchQuery, State,
    clean, parse_timestamp,
};

/// Escapes a value for `sysparm_query`: `^` separates conditions, so a `^` inside a value is
/// written `^^`.
pub fn escape(value: &str) -> String {
    value.replace('^', "^^")
}

/// The parameters of every read: both halves of every field, no reference links.
pub(super) fn read_params() -> Vec<(&'static str, String)> {
    vec![
        ("sysparm_display_value", "all".to_owned()),
        ("sysparm_exclude_reference_link", "true".to_owned()),
        ("sysparm_fields", FIELDS.to_owned()),
    ]
}

/// The parameters of a create or an update: the record comes back as a read shows it, and
/// reference fields are given by name.
pub(super) fn write_params() -> Vec<(&'static str, String)> {
    let mut params = read_params();
    params.push(("sysparm_input_display_value", "true".to_owned()));
    params
}

/// The `sysparm_query` of a search: the filters, then the text as one OR group (a `^OR`
/// condition joins the one before it, so the group stays inside the AND), then the order.
pub fn search_query(query: &SearchQuery) -> String {
    let mut terms = Vec::new();
    if let Some(state) = query.state {
        terms.push(format!("state={}", state.code()));
    }
    if let Some(priority) = query.priority {
        terms.push(format!("priority={}", priority.code()));
    }
    if let Some(text) = query
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let text = escape(text);
        let group: Vec<String> = TEXT_FIELDS
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let or = if i == 0 { "" } else { "OR" };
                format!("{or}{field}LIKE{text}")
            })
            .collect();
        terms.push(group.join("^"));
    }
    terms.push(ORDER.to_owned());
    terms.join("^")
}

/// The body of a create: the given fields, impact and urgency always (Low by default, as on
/// the embedded store and in ServiceNow).
pub(super) fn create_body(new: &NewIncident) -> Map<String, Value> {
    let mut body = Map::new();
    let mut put = |key: &str, value: String| {
        body.insert(key.to_owned(), Value::String(value));
    };
    put("short_description", new.short_description.clone());
    let optional = [
        ("description", &new.description),
        ("caller_id", &new.caller),
        ("category", &new.category),
        ("assignment_group", &new.assignment_group),
        ("assigned_to", &new.assigned_to),
        ("work_notes", &new.work_notes),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            put(key, value.clone());
        }
    }
    put(
        "impact",
        new.impact.unwrap_or(Level::Low).code().to_string(),
    );
    put(
        "urgency",
        new.urgency.unwrap_or(Level::Low).code().to_string(),
    );
    body
}

/// The body of an update: the fields the patch gives, as the rules left them in `next`
/// (trimmed; blank clears), plus the close code the rules add when resolving. Work notes are
/// sent as the new note alone: the instance keeps the journal. Priority and the resolution
/// time are the instance's to derive.
pub(super) fn update_body(
    current: &Incident,
    next: &Incident,
    patch: IncidentPatch,
) -> Map<String, Value> {
    let mut body = Map::new();
    let mut put = |key: &str, value: String| {
        body.insert(key.to_owned(), Value::String(value));
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    if patch.short_description.is_some() {
        put("short_description", next.short_description.clone());
    }
    let fields = [
        (
            "description",
            patch.description.is_some(),
            &next.description,
        ),
        ("caller_id", patch.caller.is_some(), &next.caller),
        ("category", patch.category.is_some(), &next.category),
        (
            "assignment_group",
            patch.assignment_group.is_some(),
            &next.assignment_group,
        ),
        (
            "assigned_to",
            patch.assigned_to.is_some(),
            &next.assigned_to,
        ),
        (
            "close_notes",
            patch.close_notes.is_some(),
            &next.close_notes,
        ),
        (
            "close_code",
            patch.close_code.is_some() || next.close_code != current.close_code,
            &next.close_code,
        ),
    ];
    for (key, given, value) in fields {
        if given {
            put(key, text(value));
        }
    }
    if let Some(impact) = patch.impact {
        put("impact", impact.code().to_string());
    }
    if let Some(urgency) = patch.urgency {
        put("urgency", urgency.code().to_string());
    }
    if let Some(state) = patch.state {
        put("state", state.code().to_string());
    }
    if let Some(note) = patch.work_notes.and_then(clean) {
        put("work_notes", note);
    }
    body
}

/// `{"result": {...}}` of a create or an update.
pub(super) fn result_object(answer: Value) -> Result<Map<String, Value>, Error> {
    match answer {
        Value::Object(mut map) => match map.remove("result") {
            Some(Value::Object(record)) => Ok(record),
            Some(other) => Err(Error::BadResponse {
                detail: format!("\"result\" is {}, not a record", kind_of(&other)),
            }),
            None => Err(no_result()),
        },
        other => Err(Error::BadResponse {
            detail: format!("the answer is {}, not an object", kind_of(&other)),
        }),
    }
}

/// `{"result": [...]}` of a read.
pub(super) fn result_list(answer: Value) -> Result<Vec<Map<String, Value>>, Error> {
    let list = match answer {
        Value::Object(mut map) => match map.remove("result") {
            Some(Value::Array(list)) => list,
            Some(other) => {
                return Err(Error::BadResponse {
                    detail: format!("\"result\" is {}, not a list of records", kind_of(&other)),
                });
            }
            None => return Err(no_result()),
        },
        other => {
            return Err(Error::BadResponse {
                detail: format!("the answer is {}, not an object", kind_of(&other)),
            });
        }
    };
    list.into_iter()
        .map(|item| match item {
            Value::Object(record) => Ok(record),
            other => Err(Error::BadResponse {
                detail: format!("a result is {}, not a record", kind_of(&other)),
            }),
        })
        .collect()
}

fn no_result() -> Error {
    Error::BadResponse {
        detail: "it has no \"result\"".to_owned(),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Which half of a `sysparm_display_value=all` pair a field is read from.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// `value`: codes, sys_ids, UTC times, plain text.
    Value,
    /// `display_value`: names of referenced records, the work-notes journal.
    Display,
}

/// A field as text: one half of a `{"display_value", "value"}` pair, or the field itself
/// when the instance sent a plain value.
fn field(record: &Map<String, Value>, name: &str, part: Part) -> Option<String> {
    let raw = record.get(name)?;
    let value = match raw {
        Value::Object(pair) => pair.get(match part {
            Part::Value => "value",
            Part::Display => "display_value",
        })?,
        other => other,
    };
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A text field; blank is `None`, as on the embedded store.
fn optional(record: &Map<String, Value>, name: &str, part: Part) -> Option<String> {
    field(record, name, part).and_then(clean)
}

fn coded<T>(
    record: &Map<String, Value>,
    name: &str,
    from_code: fn(u64) -> Option<T>,
) -> Result<T, String> {
    let raw = field(record, name, Part::Value).unwrap_or_default();
    raw.trim()
        .parse::<u64>()
        .ok()
        .and_then(from_code)
        .ok_or_else(|| format!("{name} {raw:?} is not one of its codes"))
}

fn timestamp(
    record: &Map<String, Value>,
    name: &str,
) -> Result<Option<time::OffsetDateTime>, String> {
    match optional(record, name, Part::Value) {
        None => Ok(None),
        Some(text) => parse_timestamp(&text)
            .map(Some)
            .map_err(|_| format!("{name} {text:?} is not a YYYY-MM-DD HH:MM:SS time")),
    }
}

/// An incident record of the Table API as an [`Incident`].
///
/// # Errors
/// [`Error::BadResponse`] naming the field that does not fit.
pub(super) fn incident_from_record(record: &Map<String, Value>) -> Result<Incident, Error> {
    let bad = |detail: String| Error::BadResponse {
        detail: format!("incident record: {detail}"),
    };
    let number = field(record, "number", Part::Value).unwrap_or_default();
    let number = IncidentNumber::parse(&number).map_err(|e| bad(e.to_string()))?;
    // It goes into the path of an update: letters and digits only (ServiceNow's are 32 hex).
    let sys_id = optional(record, "sys_id", Part::Value)
        .filter(|id| id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| bad(format!("{number} has no valid sys_id")))?;
    let impact = coded(record, "impact", Level::from_code).map_err(bad)?;
    let urgency = coded(record, "urgency", Level::from_code).map_err(bad)?;
    let priority = match optional(record, "priority", Part::Value) {
        Some(_) => coded(record, "priority", Priority::from_code).map_err(bad)?,
        None => Priority::from_impact_urgency(impact, urgency),
    };
    let opened_at = timestamp(record, "opened_at")
        .map_err(bad)?
        .ok_or_else(|| bad(format!("{number} has no opened_at")))?;
    Ok(Incident {
        short_description: field(record, "short_description", Part::Value)
            .unwrap_or_default()
            .trim()
            .to_owned(),
        description: optional(record, "description", Part::Value),
        caller: optional(record, "caller_id", Part::Display),
        category: optional(record, "category", Part::Value),
        impact,
        urgency,
        priority,
        state: coded(record, "state", State::from_code).map_err(bad)?,
        assignment_group: optional(record, "assignment_group", Part::Display),
        assigned_to: optional(record, "assigned_to", Part::Display),
        work_notes: optional(record, "work_notes", Part::Display),
        close_code: optional(record, "close_code", Part::Value),
        close_notes: optional(record, "close_notes", Part::Value),
        updated_at: timestamp(record, "sys_updated_on")
            .map_err(bad)?
            .unwrap_or(opened_at),
        resolved_at: timestamp(record, "resolved_at").map_err(bad)?,
        opened_at,
        number,
        sys_id,
    })
}
