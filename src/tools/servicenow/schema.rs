//! The four tools' definitions: hand-written JSON Schemas, each property described for the
//! model that reads it, text fields with ServiceNow's lengths.

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

use super::*;

const STATE_HELP: &str = "New, In Progress, On Hold, Resolved, Closed or Canceled (or the code \
                          1, 2, 3, 6, 7, 8)";
const LEVEL_HELP: &str = "High, Medium or Low (or the code 1, 2, 3)";

fn object_schema(properties: Value, required: &[&str]) -> JsonObject {
    let mut schema = JsonObject::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), properties);
    schema.insert("required".into(), json!(required));
    schema.insert("additionalProperties".into(), json!(false));
    schema
}

fn text(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

/// A text property of an incident field, with ServiceNow's length for it.
fn field(name: &str, description: &str) -> Value {
    let mut property = text(description);
    if let (Some(limit), Value::Object(map)) = (incidents::model::max_length(name), &mut property) {
        map.insert("maxLength".into(), json!(limit));
    }
    property
}

pub(super) fn definitions() -> Vec<Tool> {
    let number = text("Incident number: INC followed by 7 digits, e.g. INC0012346.");
    let impact = |default: &str| {
        text(&format!(
            "How widely the business is affected: {LEVEL_HELP}.{default} Priority is derived \
             from impact and urgency."
        ))
    };
    let urgency = |default: &str| {
        text(&format!(
            "How soon it must be fixed: {LEVEL_HELP}.{default} Priority is derived from \
             impact and urgency."
        ))
    };
    let category = field(
        "category",
        "Category: inquiry, software, hardware, network or database.",
    );
    let assignment_group = field(
        "assignment_group",
        "Team to assign the incident to, e.g. Network, Service Desk.",
    );
    let assigned_to = field("assigned_to", "Person to assign the incident to.");

    let create = Tool::new(
        CREATE_INCIDENT,
        "Create a ServiceNow incident in state New and return it with its generated number \
         (INC + 7 digits). Only short_description is required; impact and urgency default to \
         Low, and priority is derived from them.",
        object_schema(
            json!({
                "short_description": field("short_description", "One-line summary of the problem (required, not empty)."),
                "description": field("description", "Full description: symptoms, who is affected, since when."),
                "caller": field("caller", "Name of the person reporting the incident."),
                "category": category,
                "impact": impact(" Default Low."),
                "urgency": urgency(" Default Low."),
                "assignment_group": assignment_group,
                "assigned_to": assigned_to,
                "work_notes": field("work_notes", "A first internal work note."),
            }),
            &["short_description"],
        ),
    )
    .with_annotations(
        ToolAnnotations::new()
            .read_only(false)
            .destructive(false)
            .idempotent(false)
            .open_world(false),
    );

    let update = Tool::new(
        UPDATE_INCIDENT,
        "Update an incident by number and return the updated incident; only the fields given \
         change. work_notes is appended to the journal. Setting state to Resolved or Closed \
         requires close_notes (what fixed it) unless the incident already has them.",
        object_schema(
            json!({
                "number": number,
                "short_description": field("short_description", "New one-line summary (not empty)."),
                "description": field("description", "New full description."),
                "state": text(&format!(
                    "New state: {STATE_HELP}. Resolved and Closed require close_notes."
                )),
                "impact": impact(""),
                "urgency": urgency(""),
                "category": category,
                "assignment_group": assignment_group,
                "assigned_to": assigned_to,
                "work_notes": field("work_notes", "Internal note appended to the work notes journal (earlier notes are kept)."),
                "close_code": field("close_code", "How it was closed, e.g. Solved (Permanently), Solved (Work Around), Not Solved (Not Reproducible). Defaults to Solved (Permanently) when resolving."),
                "close_notes": field("close_notes", "What was done to resolve the incident; required to set state Resolved or Closed."),
            }),
            &["number"],
        ),
    )
    .with_annotations(
        ToolAnnotations::new()
            .read_only(false)
            .destructive(true)
            .idempotent(false)
            .open_world(false),
    );

    let search = Tool::new(
        SEARCH_INCIDENT,
        "Search incidents, newest first. query matches case-insensitively within the number, \
         short description, description, work notes and close notes; state and priority \
         filter. Returns {count, incidents}.",
        object_schema(
            json!({
                "query": text("Text to look for, e.g. VPN. Omit to list incidents."),
                "state": text(&format!("Only incidents in this state: {STATE_HELP}.")),
                "priority": text(
                    "Only incidents of this priority: Critical, High, Moderate, Low or \
                     Planning (or the code 1 to 5)."
                ),
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_LIMIT,
                    "default": DEFAULT_LIMIT,
                    "description": "Maximum number of incidents to return, 1 to 100 (default 10).",
                },
            }),
            &[],
        ),
    )
    .with_annotations(ToolAnnotations::new().read_only(true).open_world(false));

    let get = Tool::new(
        GET_INCIDENT,
        "Get one incident by number with all its fields, including the work notes journal.",
        object_schema(json!({ "number": number }), &["number"]),
    )
    .with_annotations(ToolAnnotations::new().read_only(true).open_world(false));

    vec![create, update, search, get]
}
