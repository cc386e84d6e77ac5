//! ServiceNow's incident record and its rules, as pure code.
//!
//! This module owns what an incident *is*, independently of where it is stored: the fields of
//! ServiceNow's `incident` table, incident numbers and `sys_id`s, timestamps as the Table API
//! shows them, and the rules a change must follow (resolving needs close notes, priority
//! follows impact and urgency, work notes are a journal). The coded choice lists (state,
//! impact, urgency, priority) with their tolerant parsing and display values live in
//! [`super::vocab`] and are re-exported here. Nothing here does I/O; the stores call
//! [`Incident::open`] and [`Incident::patched`] and persist the result.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::Value;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

pub use super::vocab::{Level, Priority, State, UnknownValue};

/// The close code set when an incident is resolved or closed without one.
pub const DEFAULT_CLOSE_CODE: &str = "Solved (Permanently)";

/// A change that breaks one of the incident rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// An incident must have a non-blank short description.
    #[error("short_description must not be empty")]
    EmptyShortDescription,
    /// Resolving or closing needs close notes, given in the same change or already present.
    #[error(
        "close_notes are required to set state {state}: say how the incident was resolved \
         (close_notes), in the same update"
    )]
    CloseNotesRequired {
        /// The state that was asked for (Resolved or Closed).
        state: State,
    },
    /// The text is not an incident number.
    #[error(
        "invalid incident number \"{value}\": expected INC followed by 7 digits, e.g. INC0012346"
    )]
    BadNumber {
        /// The text as given.
        value: String,
    },
    /// An update that changes nothing.
    #[error("nothing to update: give at least one field to change besides the number")]
    NothingToUpdate,
    /// A text longer than ServiceNow's field holds ([`FIELD_LIMITS`]).
    #[error(
        "{field} is too long: {given} characters given, and ServiceNow's incident field holds \
         at most {limit}"
    )]
    TooLong {
        /// The field, as the tools name it.
        field: &'static str,
        /// The most characters it holds.
        limit: usize,
        /// How many characters were given (surrounding spaces aside).
        given: usize,
    },
}

// === Field lengths ===

/// The most characters each text field of an incident holds on ServiceNow, by the tools'
/// field names. Both stores refuse longer texts with [`Violation::TooLong`], so that a call
/// that works on the embedded store works on an instance too.
///
/// Source: the `max_length` of the fields in ServiceNow's base system dictionary
/// (`sys_dictionary`, tables `task` and `incident`): `short_description` 160, `description`
/// 4000, `work_notes` and `close_notes` 4000 (one entry of the journal; the journal itself
/// grows), `category` and `close_code` 40 (choice fields). `caller` (`caller_id`),
/// `assignment_group` and `assigned_to` are references: ServiceNow stores a 32-character
/// `sys_id`, and the tools send a name that the instance resolves
/// (`sysparm_input_display_value=true`), so they are held to the longest name those
/// resolve against, a group's `name` (80; a user ID, `sys_user.user_name`, holds 40:
/// ServiceNow KB2029092). An instance may have been configured with other lengths.
pub const FIELD_LIMITS: &[(&str, usize)] = &[
    ("short_description", 160),
    ("description", 4000),
    ("caller", 80),
    ("category", 40),
    ("assignment_group", 80),
    ("assigned_to", 80),
    ("work_notes", 4000),
    ("close_code", 40),
    ("close_notes", 4000),
];

/// The most characters `field` holds, if it is a text field with a limit.
pub fn max_length(field: &str) -> Option<usize> {
    FIELD_LIMITS
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, limit)| *limit)
}

/// Checks `value` of `field` against [`FIELD_LIMITS`], counting characters (not bytes) of
/// the value as the stores keep it (trimmed).
///
/// # Errors
/// [`Violation::TooLong`] naming the field, its limit and the length given.
pub fn check_length(field: &'static str, value: &str) -> Result<(), Violation> {
    let Some(limit) = max_length(field) else {
        return Ok(());
    };
    let given = value.trim().chars().count();
    if given > limit {
        Err(Violation::TooLong {
            field,
            limit,
            given,
        })
    } else {
        Ok(())
    }
}

fn check_lengths<'a>(
    fields: impl IntoIterator<Item = (&'static str, Option<&'a str>)>,
) -> Result<(), Violation> {
    fields
        .into_iter()
        .filter_map(|(field, value)| value.map(|v| (field, v)))
        .try_for_each(|(field, value)| check_length(field, value))
}

// === Identifiers and timestamps ===

/// An incident number: `INC` followed by 7 digits, e.g. `INC0012346`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncidentNumber(String);

impl IncidentNumber {
    /// The largest sequence a number can hold (`INC9999999`).
    pub const MAX_SEQUENCE: u32 = 9_999_999;

    /// Parses a number in any case ("inc0012346" → `INC0012346`), surrounding spaces ignored.
    ///
    /// # Errors
    /// [`Violation::BadNumber`] when it is not `INC` followed by exactly 7 digits.
    pub fn parse(input: &str) -> Result<Self, Violation> {
        let upper = input.trim().to_ascii_uppercase();
        let valid = upper
            .strip_prefix("INC")
            .is_some_and(|digits| digits.len() == 7 && digits.bytes().all(|b| b.is_ascii_digit()));
        if valid {
            Ok(Self(upper))
        } else {
            Err(Violation::BadNumber {
                value: input.to_owned(),
            })
        }
    }

    /// The number for a sequence value (12346 → `INC0012346`), or `None` past
    /// [`Self::MAX_SEQUENCE`].
    pub fn from_sequence(sequence: u32) -> Option<Self> {
        (sequence <= Self::MAX_SEQUENCE).then(|| Self(format!("INC{sequence:07}")))
    }

    /// The numeric part (`INC0012346` → 12346).
    pub fn sequence(&self) -> u32 {
        // Parsing is validated on construction (7 ASCII digits), so this cannot fail; 0 is
        // only a defensive fallback.
        self.0.get(3..).and_then(|d| d.parse().ok()).unwrap_or(0)
    }

    /// The number as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IncidentNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for IncidentNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A new `sys_id`: 32 lowercase hex digits, like ServiceNow's.
pub fn new_sys_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The current UTC time truncated to whole seconds (the precision ServiceNow shows and the
/// stores keep), so a record read back equals the one returned by a write.
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now - time::Duration::nanoseconds(i64::from(now.nanosecond()))
}

/// Formats a timestamp as ServiceNow shows it: `YYYY-MM-DD HH:MM:SS` in UTC.
///
/// Written digit by digit: every incident a search returns has two or three of these, and
/// `format!` of six padded integers cost more than the rest of an incident's fields.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    match u16::try_from(at.year()) {
        Ok(year) if year <= 9999 => {
            let mut text = *b"0000-00-00 00:00:00";
            for (from, width, value) in [
                (0, 4, year),
                (5, 2, u16::from(u8::from(at.month()))),
                (8, 2, u16::from(at.day())),
                (11, 2, u16::from(at.hour())),
                (14, 2, u16::from(at.minute())),
                (17, 2, u16::from(at.second())),
            ] {
                let mut rest = value;
                for digit in text.iter_mut().skip(from).take(width).rev() {
                    *digit = b'0' + (rest % 10) as u8;
                    rest /= 10;
                }
            }
            text.iter().copied().map(char::from).collect()
        }
        _ => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        ),
    }
}

/// Parses a `YYYY-MM-DD HH:MM:SS` UTC timestamp (the inverse of [`format_timestamp`]).
///
/// # Errors
/// When the text is not in that form.
pub fn parse_timestamp(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    // The stores keep exactly this form: read it directly; anything else goes to `time`'s
    // parser, which says what is wrong.
    if let Some(at) = parse_canonical(text.as_bytes()) {
        return Ok(at);
    }
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    Ok(PrimitiveDateTime::parse(text, format)?.assume_utc())
}

/// `YYYY-MM-DD HH:MM:SS` exactly, or `None`.
fn parse_canonical(b: &[u8]) -> Option<OffsetDateTime> {
    if b.len() != 19
        || [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')]
            .iter()
            .any(|&(i, c)| b.get(i) != Some(&c))
    {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u16> {
        b.get(from..to)?.iter().try_fold(0u16, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u16::from(c - b'0'))
        })
    };
    let small = |from: usize| number(from, from + 2).and_then(|n| u8::try_from(n).ok());
    let month = time::Month::try_from(small(5)?).ok()?;
    let date = time::Date::from_calendar_date(i32::from(number(0, 4)?), month, small(8)?).ok()?;
    let clock = time::Time::from_hms(small(11)?, small(14)?, small(17)?).ok()?;
    Some(PrimitiveDateTime::new(date, clock).assume_utc())
}

fn serialize_timestamp<S: Serializer>(at: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_timestamp(*at))
}

fn serialize_optional_timestamp<S: Serializer>(
    at: &Option<OffsetDateTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_str(&format_timestamp(*at)),
        None => s.serialize_str(""),
    }
}

fn serialize_optional_text<S: Serializer>(text: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(text.as_deref().unwrap_or(""))
}

/// Appends one timestamped entry to a work-notes journal (oldest entry first, entries
/// separated by a blank line), as ServiceNow keeps `work_notes`: a note never replaces the
/// ones before it.
pub fn append_work_note(journal: Option<&str>, at: OffsetDateTime, note: &str) -> String {
    let entry = format!("{} (Work notes)\n{}", format_timestamp(at), note.trim());
    match journal {
        Some(journal) if !journal.is_empty() => format!("{journal}\n\n{entry}"),
        _ => entry,
    }
}

/// Trims; blank becomes `None`. The stores clean every text they are given with it.
pub(crate) fn clean(text: String) -> Option<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.len() == text.len() {
        Some(text)
    } else {
        Some(trimmed.to_owned())
    }
}

// === Records ===

/// One incident, as ServiceNow's `incident` table holds it.
///
/// It serializes to the JSON the tools return: choice fields as the Table API's display
/// values (`"state": "In Progress"`, `"urgency": "2 - Medium"`, `"priority": "3 - Moderate"`),
/// timestamps as `YYYY-MM-DD HH:MM:SS` UTC, and empty fields as `""`, as the Table API does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    /// `INC` + 7 digits, unique.
    pub number: IncidentNumber,
    /// 32 lowercase hex digits, unique.
    pub sys_id: String,
    /// One-line summary; never blank.
    pub short_description: String,
    /// Full description.
    #[serde(serialize_with = "serialize_optional_text")]
    pub description: Option<String>,
    /// Who reported it (ServiceNow `caller_id`, as a name).
    #[serde(serialize_with = "serialize_optional_text")]
    pub caller: Option<String>,
    /// `inquiry`, `software`, `hardware`, `network`, `database`, ...
    #[serde(serialize_with = "serialize_optional_text")]
    pub category: Option<String>,
    /// How widely it hurts.
    pub impact: Level,
    /// How soon it must be fixed.
    pub urgency: Level,
    /// Derived from impact and urgency ([`Priority::from_impact_urgency`]).
    pub priority: Priority,
    /// Lifecycle state.
    pub state: State,
    /// The team working on it.
    #[serde(serialize_with = "serialize_optional_text")]
    pub assignment_group: Option<String>,
    /// The person working on it.
    #[serde(serialize_with = "serialize_optional_text")]
    pub assigned_to: Option<String>,
    /// The work-notes journal: timestamped entries, oldest first ([`append_work_note`]).
    #[serde(serialize_with = "serialize_optional_text")]
    pub work_notes: Option<String>,
    /// How it was closed, e.g. "Solved (Permanently)".
    #[serde(serialize_with = "serialize_optional_text")]
    pub close_code: Option<String>,
    /// What was done to resolve it; required to resolve or close.
    #[serde(serialize_with = "serialize_optional_text")]
    pub close_notes: Option<String>,
    /// When it was opened.
    #[serde(serialize_with = "serialize_timestamp")]
    pub opened_at: OffsetDateTime,
    /// When it last changed.
    #[serde(serialize_with = "serialize_timestamp")]
    pub updated_at: OffsetDateTime,
    /// When it entered Resolved (or Closed); cleared when reopened.
    #[serde(serialize_with = "serialize_optional_timestamp")]
    pub resolved_at: Option<OffsetDateTime>,
}

/// The fields of an incident to create. Impact and urgency default to Low (ServiceNow's
/// defaults); the state starts at New.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewIncident {
    /// One-line summary; must not be blank.
    pub short_description: String,
    /// Full description.
    pub description: Option<String>,
    /// Who reported it.
    pub caller: Option<String>,
    /// Category, e.g. `network`.
    pub category: Option<String>,
    /// Impact; Low when absent.
    pub impact: Option<Level>,
    /// Urgency; Low when absent.
    pub urgency: Option<Level>,
    /// The team to assign it to.
    pub assignment_group: Option<String>,
    /// The person to assign it to.
    pub assigned_to: Option<String>,
    /// A first work note (becomes the first journal entry).
    pub work_notes: Option<String>,
}

/// A change to an incident. `None` leaves a field as it is; for text fields `Some("")` clears
/// it (except `short_description`, which cannot be blank). `work_notes` is appended to the
/// journal as a new timestamped entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentPatch {
    /// New summary; must not be blank.
    pub short_description: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New caller.
    pub caller: Option<String>,
    /// New category.
    pub category: Option<String>,
    /// New impact (priority is recomputed).
    pub impact: Option<Level>,
    /// New urgency (priority is recomputed).
    pub urgency: Option<Level>,
    /// New state; Resolved and Closed need close notes.
    pub state: Option<State>,
    /// New assignment group.
    pub assignment_group: Option<String>,
    /// New assignee.
    pub assigned_to: Option<String>,
    /// A note appended to the work-notes journal.
    pub work_notes: Option<String>,
    /// New close code; "Solved (Permanently)" is used when resolving without one.
    pub close_code: Option<String>,
    /// New close notes.
    pub close_notes: Option<String>,
}

impl NewIncident {
    /// Checks every text against ServiceNow's field lengths ([`FIELD_LIMITS`]).
    ///
    /// # Errors
    /// [`Violation::TooLong`] for the first text that is too long, in field order.
    pub fn check_lengths(&self) -> Result<(), Violation> {
        check_lengths([
            ("short_description", Some(self.short_description.as_str())),
            ("description", self.description.as_deref()),
            ("caller", self.caller.as_deref()),
            ("category", self.category.as_deref()),
            ("assignment_group", self.assignment_group.as_deref()),
            ("assigned_to", self.assigned_to.as_deref()),
            ("work_notes", self.work_notes.as_deref()),
        ])
    }

    /// The same fields trimmed, blank ones dropped, after checking the rules every new
    /// incident follows (a non-blank summary, ServiceNow's field lengths). Both stores
    /// create from this form.
    ///
    /// # Errors
    /// [`Violation::EmptyShortDescription`] when the summary is blank,
    /// [`Violation::TooLong`] when a text is longer than its field holds.
    pub fn cleaned(self) -> Result<Self, Violation> {
        self.check_lengths()?;
        Ok(Self {
            short_description: clean(self.short_description)
                .ok_or(Violation::EmptyShortDescription)?,
            description: self.description.and_then(clean),
            caller: self.caller.and_then(clean),
            category: self.category.and_then(clean),
            impact: self.impact,
            urgency: self.urgency,
            assignment_group: self.assignment_group.and_then(clean),
            assigned_to: self.assigned_to.and_then(clean),
            work_notes: self.work_notes.and_then(clean),
        })
    }
}

impl IncidentPatch {
    /// Checks every text against ServiceNow's field lengths ([`FIELD_LIMITS`]).
    ///
    /// # Errors
    /// [`Violation::TooLong`] for the first text that is too long, in field order.
    pub fn check_lengths(&self) -> Result<(), Violation> {
        check_lengths([
            ("short_description", self.short_description.as_deref()),
            ("description", self.description.as_deref()),
            ("caller", self.caller.as_deref()),
            ("category", self.category.as_deref()),
            ("assignment_group", self.assignment_group.as_deref()),
            ("assigned_to", self.assigned_to.as_deref()),
            ("work_notes", self.work_notes.as_deref()),
            ("close_code", self.close_code.as_deref()),
            ("close_notes", self.close_notes.as_deref()),
        ])
    }

    /// True when the patch would change nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What to search for. Every given filter must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Case-insensitive substring of the number, short description, description, work notes
    /// or close notes. `None` or blank matches everything.
    pub text: Option<String>,
    /// Only incidents in this state.
    pub state: Option<State>,
    /// Only incidents of this priority.
    pub priority: Option<Priority>,
    /// At most this many results, newest first.
    pub limit: usize,
}

impl Default for SearchQuery {
    fn default() -> Self {
        Self {
            text: None,
            state: None,
            priority: None,
            limit: 10,
        }
    }
}

impl Incident {
    /// The JSON the tools return: what [`Serialize`] writes, as a `serde_json` value.
    ///
    /// `serde_json::to_value` inserts field after field into the object's B-tree, searching
    /// it and comparing keys each time; here the entries are made in key order and the
    /// object is built from them in one pass (callgrind, a `search_incident` answer of five
    /// incidents: ~15k instructions through `to_value`). A test holds the two equal.
    pub fn to_json(&self) -> Value {
        let text = |t: &Option<String>| Value::String(t.as_deref().unwrap_or("").to_owned());
        let entries = [
            ("assigned_to", text(&self.assigned_to)),
            ("assignment_group", text(&self.assignment_group)),
            ("caller", text(&self.caller)),
            ("category", text(&self.category)),
            ("close_code", text(&self.close_code)),
            ("close_notes", text(&self.close_notes)),
            ("description", text(&self.description)),
            ("impact", Value::String(self.impact.to_string())),
            ("number", Value::String(self.number.as_str().to_owned())),
            ("opened_at", Value::String(format_timestamp(self.opened_at))),
            ("priority", Value::String(self.priority.to_string())),
            (
                "resolved_at",
                Value::String(self.resolved_at.map(format_timestamp).unwrap_or_default()),
            ),
            (
                "short_description",
                Value::String(self.short_description.clone()),
            ),
            ("state", Value::String(self.state.to_string())),
            ("sys_id", Value::String(self.sys_id.clone())),
            (
                "updated_at",
                Value::String(format_timestamp(self.updated_at)),
            ),
            ("urgency", Value::String(self.urgency.to_string())),
            ("work_notes", text(&self.work_notes)),
        ];
        // `Map`'s `FromIterator` sorts (entries already in order: one comparison each) and
        // builds the tree from the sorted run.
        Value::Object(
            entries
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        )
    }

    /// Builds a new incident in state New from `new`, opened at `now`.
    ///
    /// # Errors
    /// [`Violation::EmptyShortDescription`] when the summary is blank.
    pub fn open(
        number: IncidentNumber,
        sys_id: String,
        new: NewIncident,
        now: OffsetDateTime,
    ) -> Result<Self, Violation> {
        let new = new.cleaned()?;
        let impact = new.impact.unwrap_or(Level::Low);
        let urgency = new.urgency.unwrap_or(Level::Low);
        let work_notes = new
            .work_notes
            .map(|note| append_work_note(None, now, &note));
        Ok(Self {
            number,
            sys_id,
            short_description: new.short_description,
            description: new.description,
            caller: new.caller,
            category: new.category,
            impact,
            urgency,
            priority: Priority::from_impact_urgency(impact, urgency),
            state: State::New,
            assignment_group: new.assignment_group,
            assigned_to: new.assigned_to,
            work_notes,
            close_code: None,
            close_notes: None,
            opened_at: now,
            updated_at: now,
            resolved_at: None,
        })
    }

    /// This incident with `patch` applied at `now`, following the rules: priority follows
    /// impact and urgency; entering Resolved or Closed needs close notes (in the patch or
    /// already present), sets `resolved_at` and defaults the close code to
    /// [`DEFAULT_CLOSE_CODE`]; reopening clears `resolved_at`; work notes are appended;
    /// `updated_at` becomes `now`. `self` is left unchanged.
    ///
    /// # Errors
    /// A [`Violation`] when the patch is empty, has a text longer than its field holds,
    /// blanks the summary, or resolves without close notes.
    pub fn patched(&self, patch: IncidentPatch, now: OffsetDateTime) -> Result<Self, Violation> {
        if patch.is_empty() {
            return Err(Violation::NothingToUpdate);
        }
        patch.check_lengths()?;
        let touches_resolution = patch.state.is_some() || patch.close_notes.is_some();
        let mut next = self.clone();
        if let Some(summary) = patch.short_description {
            next.short_description = clean(summary).ok_or(Violation::EmptyShortDescription)?;
        }
        let text_fields = [
            (patch.description, &mut next.description),
            (patch.caller, &mut next.caller),
            (patch.category, &mut next.category),
            (patch.assignment_group, &mut next.assignment_group),
            (patch.assigned_to, &mut next.assigned_to),
            (patch.close_code, &mut next.close_code),
            (patch.close_notes, &mut next.close_notes),
        ];
        for (given, field) in text_fields {
            if let Some(value) = given {
                *field = clean(value);
            }
        }
        if let Some(impact) = patch.impact {
            next.impact = impact;
        }
        if let Some(urgency) = patch.urgency {
            next.urgency = urgency;
        }
        next.priority = Priority::from_impact_urgency(next.impact, next.urgency);
        if let Some(state) = patch.state {
            next.state = state;
        }
        if next.state.is_resolved() {
            if touches_resolution && next.close_notes.is_none() {
                return Err(Violation::CloseNotesRequired { state: next.state });
            }
            if next.resolved_at.is_none() {
                next.resolved_at = Some(now);
            }
            if next.close_code.is_none() {
                next.close_code = Some(DEFAULT_CLOSE_CODE.to_owned());
            }
        } else {
            next.resolved_at = None;
        }
        if let Some(note) = patch.work_notes.and_then(clean) {
            next.work_notes = Some(append_work_note(next.work_notes.as_deref(), now, &note));
        }
        next.updated_at = now;
        Ok(next)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "model_tests.rs"]
mod tests;
