//! ServiceNow's incident record and its vocabulary, as pure code.
//!
//! This module owns what an incident *is*, independently of where it is stored: the fields of
//! ServiceNow's `incident` table, the coded choice lists (state, impact, urgency, priority) with
//! the tolerant parsing an LLM caller needs ("in progress", "2", `2`, "2 - Medium"), the display
//! values the Table API returns with `sysparm_display_value=true`, and the rules a change must
//! follow (resolving needs close notes, priority follows impact and urgency, work notes are a
//! journal). Nothing here does I/O; the stores call [`Incident::open`] and [`Incident::patched`]
//! and persist the result.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use serde_json::Value;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// The close code set when an incident is resolved or closed without one.
pub const DEFAULT_CLOSE_CODE: &str = "Solved (Permanently)";

/// A value that is not part of a choice list (state, impact, urgency, priority).
///
/// Its message names the accepted values, e.g. `unknown state "Done": expected New, In
/// Progress, On Hold, Resolved, Closed, Canceled or a code 1, 2, 3, 6, 7, 8`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} \"{value}\": expected {expected}")]
pub struct UnknownValue {
    /// What was being parsed: `state`, `impact`, `urgency`, `priority` (or `level`).
    pub kind: &'static str,
    /// The value as given (a JSON value other than a string is shown as JSON).
    pub value: String,
    /// The accepted names and codes, in words.
    pub expected: &'static str,
}

impl UnknownValue {
    /// The same error for another field name, e.g. a [`Level`] parsed for `urgency`.
    #[must_use]
    pub fn for_field(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }
}

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
}

// === Choice lists ===

/// What the choice lists have in common, so one parser serves them all.
trait Choice: Copy + 'static {
    /// The field name used in error messages.
    const KIND: &'static str;
    /// The accepted names and codes, in words.
    const EXPECTED: &'static str;
    /// Every value of the list.
    const ALL: &'static [Self];
    /// ServiceNow's numeric code.
    fn code(self) -> u8;
    /// The accepted names, normalized (lowercase, no spaces, underscores or hyphens).
    fn names(self) -> &'static [&'static str];
}

/// Lowercase and drop whitespace, underscores and hyphens: "In_Progress" → "inprogress",
/// "2 - Medium" → "2medium".
fn normalize(input: &str) -> String {
    input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn unknown<T: Choice>(value: String) -> UnknownValue {
    UnknownValue {
        kind: T::KIND,
        value,
        expected: T::EXPECTED,
    }
}

fn choice_from_code<T: Choice>(code: u64) -> Option<T> {
    T::ALL.iter().copied().find(|v| u64::from(v.code()) == code)
}

/// Parses a name ("In Progress"), a code ("2") or a display value ("2 - In Progress"; the code
/// and the name must then agree).
fn parse_choice<T: Choice>(input: &str) -> Result<T, UnknownValue> {
    // A sign would vanish with the hyphens below and turn "-1" into code 1.
    if input.trim_start().starts_with(['-', '+']) {
        return Err(unknown::<T>(input.to_owned()));
    }
    let norm = normalize(input);
    let digits_end = norm
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(norm.len());
    let (digits, name) = norm.split_at(digits_end);
    let by_name = || T::ALL.iter().copied().find(|v| v.names().contains(&name));
    let found = match (digits.is_empty(), name.is_empty()) {
        (true, true) => None,
        (true, false) => by_name(),
        (false, true) => digits.parse().ok().and_then(choice_from_code::<T>),
        (false, false) => digits
            .parse()
            .ok()
            .and_then(choice_from_code::<T>)
            .filter(|v| v.names().contains(&name)),
    };
    found.ok_or_else(|| unknown::<T>(input.to_owned()))
}

/// Parses a JSON string as [`parse_choice`] does, or a JSON integer as a code.
fn choice_from_json<T: Choice>(value: &Value) -> Result<T, UnknownValue> {
    match value {
        Value::String(s) => parse_choice(s),
        Value::Number(n) => n
            .as_u64()
            .and_then(choice_from_code::<T>)
            .ok_or_else(|| unknown::<T>(n.to_string())),
        other => Err(unknown::<T>(other.to_string())),
    }
}

/// The lifecycle state of an incident (ServiceNow `incident.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Logged, not yet worked on (code 1).
    New = 1,
    /// Being worked on (code 2).
    InProgress = 2,
    /// Waiting for something: the caller, a vendor, a change (code 3).
    OnHold = 3,
    /// Fixed; the caller may still reopen it (code 6).
    Resolved = 6,
    /// Finished for good (code 7).
    Closed = 7,
    /// Not an incident after all, or a duplicate (code 8).
    Canceled = 8,
}

impl Choice for State {
    const KIND: &'static str = "state";
    const EXPECTED: &'static str =
        "New, In Progress, On Hold, Resolved, Closed, Canceled or a code 1, 2, 3, 6, 7, 8";
    const ALL: &'static [Self] = &[
        State::New,
        State::InProgress,
        State::OnHold,
        State::Resolved,
        State::Closed,
        State::Canceled,
    ];
    fn code(self) -> u8 {
        self as u8
    }
    fn names(self) -> &'static [&'static str] {
        match self {
            State::New => &["new"],
            State::InProgress => &["inprogress"],
            State::OnHold => &["onhold"],
            State::Resolved => &["resolved"],
            State::Closed => &["closed"],
            State::Canceled => &["canceled", "cancelled"],
        }
    }
}

impl State {
    /// Every state, in code order.
    pub const ALL: &'static [State] = <State as Choice>::ALL;

    /// ServiceNow's numeric code (1, 2, 3, 6, 7, 8).
    pub fn code(self) -> u8 {
        Choice::code(self)
    }

    /// The state with this code, if any.
    pub fn from_code(code: u64) -> Option<Self> {
        choice_from_code(code)
    }

    /// The display value: "New", "In Progress", "On Hold", "Resolved", "Closed", "Canceled".
    pub fn name(self) -> &'static str {
        match self {
            State::New => "New",
            State::InProgress => "In Progress",
            State::OnHold => "On Hold",
            State::Resolved => "Resolved",
            State::Closed => "Closed",
            State::Canceled => "Canceled",
        }
    }

    /// Parses a name (any case; spaces, underscores and hyphens ignored; "Cancelled" too), a
    /// code ("6") or a display value ("6 - Resolved").
    ///
    /// # Errors
    /// [`UnknownValue`] naming the accepted values.
    pub fn parse(input: &str) -> Result<Self, UnknownValue> {
        parse_choice(input)
    }

    /// Parses a JSON string as [`State::parse`] does, or a JSON integer as a code.
    ///
    /// # Errors
    /// [`UnknownValue`] naming the accepted values.
    pub fn from_json(value: &Value) -> Result<Self, UnknownValue> {
        choice_from_json(value)
    }

    /// Resolved or Closed: the states that need close notes and set `resolved_at`.
    pub fn is_resolved(self) -> bool {
        matches!(self, State::Resolved | State::Closed)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for State {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Impact or urgency (ServiceNow `incident.impact`, `incident.urgency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Code 1.
    High = 1,
    /// Code 2.
    Medium = 2,
    /// Code 3; ServiceNow's default for new incidents.
    Low = 3,
}

impl Choice for Level {
    const KIND: &'static str = "level";
    const EXPECTED: &'static str = "High, Medium, Low or a code 1, 2, 3";
    const ALL: &'static [Self] = &[Level::High, Level::Medium, Level::Low];
    fn code(self) -> u8 {
        self as u8
    }
    fn names(self) -> &'static [&'static str] {
        match self {
            Level::High => &["high"],
            Level::Medium => &["medium"],
            Level::Low => &["low"],
        }
    }
}

impl Level {
    /// Every level, in code order.
    pub const ALL: &'static [Level] = <Level as Choice>::ALL;

    /// ServiceNow's numeric code (1, 2, 3).
    pub fn code(self) -> u8 {
        Choice::code(self)
    }

    /// The level with this code, if any.
    pub fn from_code(code: u64) -> Option<Self> {
        choice_from_code(code)
    }

    /// The name: "High", "Medium", "Low".
    pub fn name(self) -> &'static str {
        match self {
            Level::High => "High",
            Level::Medium => "Medium",
            Level::Low => "Low",
        }
    }

    /// The display value: "1 - High", "2 - Medium", "3 - Low".
    pub fn display_value(self) -> String {
        format!("{} - {}", self.code(), self.name())
    }

    /// Parses a name (any case), a code ("2") or a display value ("2 - Medium"). Errors say
    /// `level`; use [`UnknownValue::for_field`] to say `impact` or `urgency`.
    ///
    /// # Errors
    /// [`UnknownValue`] naming the accepted values.
    pub fn parse(input: &str) -> Result<Self, UnknownValue> {
        parse_choice(input)
    }

    /// Parses a JSON string as [`Level::parse`] does, or a JSON integer as a code.
    ///
    /// # Errors
    /// [`UnknownValue`] naming the accepted values.
    pub fn from_json(value: &Value) -> Result<Self, UnknownValue> {
        choice_from_json(value)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} - {}", self.code(), self.name())
    }
}

impl FromStr for Level {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The priority of an incident (ServiceNow `incident.priority`), derived from impact and
/// urgency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Code 1.
    Critical = 1,
    /// Code 2.
    High = 2,
    /// Code 3.
    Moderate = 3,
    /// Code 4.
    Low = 4,
    /// Code 5.
    Planning = 5,
}

impl Choice for Priority {
    const KIND: &'static str = "priority";
    const EXPECTED: &'static str =
        "Critical, High, Moderate, Low, Planning or a code 1, 2, 3, 4, 5";
    const ALL: &'static [Self] = &[
        Priority::Critical,
        Priority::High,
        Priority::Moderate,
        Priority::Low,
        Priority::Planning,
    ];
    fn code(self) -> u8 {
        self as u8
    }
    fn names(self) -> &'static [&'static str] {
        match self {
            Priority::Critical => &["critical"],
            Priority::High => &["high"],
            Priority::Moderate => &["moderate"],
            Priority::Low => &["low"],
            Priority::Planning => &["planning"],
        }
    }
}

impl Priority {
    /// Every priority, in code order.
    pub const ALL: &'static [Priority] = <Priority as Choice>::ALL;

    /// ServiceNow's default priority lookup: `impact + urgency - 1`, so (1, 1) → 1 Critical,
    /// (1, 2) → 2 High, (2, 2) → 3 Moderate, (2, 3) → 4 Low, (3, 3) → 5 Planning.
    pub fn from_impact_urgency(impact: Level, urgency: Level) -> Self {
        match impact.code() + urgency.code() - 1 {
            1 => Priority::Critical,
            2 => Priority::High,
            3 => Priority::Moderate,
            4 => Priority::Low,
            _ => Priority::Planning,
        }
    }

    /// ServiceNow's numeric code (1 to 5).
    pub fn code(self) -> u8 {
        Choice::code(self)
    }

    /// The priority with this code, if any.
    pub fn from_code(code: u64) -> Option<Self> {
        choice_from_code(code)
    }

    /// The name: "Critical", "High", "Moderate", "Low", "Planning".
    pub fn name(self) -> &'static str {
        match self {
            Priority::Critical => "Critical",
            Priority::High => "High",
            Priority::Moderate => "Moderate",
            Priority::Low => "Low",
            Priority::Planning => "Planning",
        }
    }

    /// The display value: "1 - Critical" ... "5 - Planning".
    pub fn display_value(self) -> String {
        format!("{} - {}", self.code(), self.name())
    }

    /// Parses a name (any case), a code ("3") or a display value ("3 - Moderate").
    ///
    /// # Errors
    /// [`UnknownValue`] naming the accepted values.
    pub fn parse(input: &str) -> Result<Self, UnknownValue> {
        parse_choice(input)
    }

    /// Parses a JSON string as [`Priority::parse`] does, or a JSON integer as a code.
    ///
    /// # Errors
    /// [`UnknownValue`] naming the accepted values.
    pub fn from_json(value: &Value) -> Result<Self, UnknownValue> {
        choice_from_json(value)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} - {}", self.code(), self.name())
    }
}

impl FromStr for Priority {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Priority {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
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
pub fn format_timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Parses a `YYYY-MM-DD HH:MM:SS` UTC timestamp (the inverse of [`format_timestamp`]).
///
/// # Errors
/// When the text is not in that form.
pub fn parse_timestamp(text: &str) -> Result<OffsetDateTime, time::error::Parse> {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    Ok(PrimitiveDateTime::parse(text, format)?.assume_utc())
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

/// Trims; blank becomes `None`.
fn clean(text: String) -> Option<String> {
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

impl IncidentPatch {
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
        let short_description =
            clean(new.short_description).ok_or(Violation::EmptyShortDescription)?;
        let impact = new.impact.unwrap_or(Level::Low);
        let urgency = new.urgency.unwrap_or(Level::Low);
        let work_notes = new
            .work_notes
            .and_then(clean)
            .map(|note| append_work_note(None, now, &note));
        Ok(Self {
            number,
            sys_id,
            short_description,
            description: new.description.and_then(clean),
            caller: new.caller.and_then(clean),
            category: new.category.and_then(clean),
            impact,
            urgency,
            priority: Priority::from_impact_urgency(impact, urgency),
            state: State::New,
            assignment_group: new.assignment_group.and_then(clean),
            assigned_to: new.assigned_to.and_then(clean),
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
    /// A [`Violation`] when the patch is empty, blanks the summary, or resolves without close
    /// notes.
    pub fn patched(&self, patch: IncidentPatch, now: OffsetDateTime) -> Result<Self, Violation> {
        if patch.is_empty() {
            return Err(Violation::NothingToUpdate);
        }
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
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2025-03-04 08:15:30 UTC);
    const T1: OffsetDateTime = datetime!(2025-03-04 09:00:05 UTC);

    fn incident() -> Incident {
        Incident::open(
            IncidentNumber::parse("INC0000100").unwrap(),
            new_sys_id(),
            NewIncident {
                short_description: "  Printer jammed  ".into(),
                impact: Some(Level::Medium),
                urgency: Some(Level::Medium),
                ..NewIncident::default()
            },
            T0,
        )
        .unwrap()
    }

    #[test]
    fn state_parses_names_in_any_spelling() {
        let cases = [
            ("new", State::New),
            ("New", State::New),
            ("in progress", State::InProgress),
            ("In_Progress", State::InProgress),
            ("inprogress", State::InProgress),
            ("IN-PROGRESS", State::InProgress),
            ("On Hold", State::OnHold),
            (" resolved ", State::Resolved),
            ("Closed", State::Closed),
            ("Canceled", State::Canceled),
            ("Cancelled", State::Canceled),
        ];
        for (input, expected) in cases {
            assert_eq!(State::parse(input), Ok(expected), "case {input:?}");
        }
    }

    #[test]
    fn state_parses_codes_and_display_values() {
        let cases = [
            ("1", State::New),
            ("2", State::InProgress),
            ("3", State::OnHold),
            ("6", State::Resolved),
            ("7", State::Closed),
            ("8", State::Canceled),
            ("6 - Resolved", State::Resolved),
            ("2 - In Progress", State::InProgress),
        ];
        for (input, expected) in cases {
            assert_eq!(State::parse(input), Ok(expected), "case {input:?}");
        }
        assert_eq!(State::from_json(&json!(6)), Ok(State::Resolved));
        assert_eq!(State::from_json(&json!("3")), Ok(State::OnHold));
    }

    #[test]
    fn state_rejects_unknown_values_naming_the_accepted_ones() {
        let err = State::parse("Done").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown state \"Done\": expected New, In Progress, On Hold, Resolved, Closed, \
             Canceled or a code 1, 2, 3, 6, 7, 8"
        );
        for bad in [
            "4",
            "0",
            "-1",
            "+2",
            "",
            "6 - Closed",
            "99999999999999999999999",
            "progress",
        ] {
            assert!(State::parse(bad).is_err(), "case {bad:?}");
        }
        let err = State::from_json(&json!(5)).unwrap_err();
        assert_eq!(err.value, "5");
        assert!(State::from_json(&json!(true)).is_err());
        assert!(State::from_json(&json!(2.5)).is_err());
    }

    #[test]
    fn level_and_priority_parse_names_codes_numbers_and_display_values() {
        assert_eq!(Level::parse("HIGH"), Ok(Level::High));
        assert_eq!(Level::parse("2"), Ok(Level::Medium));
        assert_eq!(Level::parse("2 - Medium"), Ok(Level::Medium));
        assert_eq!(Level::from_json(&json!(3)), Ok(Level::Low));
        assert_eq!(Priority::parse("1 - Critical"), Ok(Priority::Critical));
        assert_eq!(Priority::parse("moderate"), Ok(Priority::Moderate));
        assert_eq!(Priority::parse("5"), Ok(Priority::Planning));
        assert_eq!(Priority::from_json(&json!(4)), Ok(Priority::Low));
    }

    #[test]
    fn level_errors_can_name_the_field() {
        let err = Level::parse("urgent").unwrap_err().for_field("urgency");
        assert_eq!(
            err.to_string(),
            "unknown urgency \"urgent\": expected High, Medium, Low or a code 1, 2, 3"
        );
        assert!(Level::parse("4").is_err());
        assert!(Level::parse("2 - High").is_err());
        let err = Priority::parse("6").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown priority \"6\": expected Critical, High, Moderate, Low, Planning or a code \
             1, 2, 3, 4, 5"
        );
    }

    #[test]
    fn priority_follows_servicenow_matrix() {
        use Level::{High as H, Low as L, Medium as M};
        let cases = [
            (H, H, 1),
            (H, M, 2),
            (M, H, 2),
            (H, L, 3),
            (L, H, 3),
            (M, M, 3),
            (M, L, 4),
            (L, M, 4),
            (L, L, 5),
        ];
        for (impact, urgency, code) in cases {
            assert_eq!(
                Priority::from_impact_urgency(impact, urgency).code(),
                code,
                "case impact {impact}, urgency {urgency}"
            );
        }
    }

    #[test]
    fn display_values_match_the_table_api() {
        assert_eq!(State::InProgress.to_string(), "In Progress");
        assert_eq!(Level::Medium.to_string(), "2 - Medium");
        assert_eq!(Priority::Moderate.to_string(), "3 - Moderate");
        assert_eq!(Priority::Critical.display_value(), "1 - Critical");
        assert_eq!(format_timestamp(T0), "2025-03-04 08:15:30");
        assert_eq!(parse_timestamp("2025-03-04 08:15:30").unwrap(), T0);
    }

    #[test]
    fn incident_numbers_are_validated_case_insensitively() {
        assert_eq!(
            IncidentNumber::parse(" inc0012346 ").unwrap().as_str(),
            "INC0012346"
        );
        assert_eq!(
            IncidentNumber::parse("INC0012346").unwrap().sequence(),
            12346
        );
        for bad in [
            "INC123",
            "INC00123456",
            "12346",
            "INCabcdefg",
            "CHG0012346",
            "",
        ] {
            let err = IncidentNumber::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains("INC followed by 7 digits"),
                "case {bad:?}: {err}"
            );
        }
        assert_eq!(
            IncidentNumber::from_sequence(12347).unwrap().as_str(),
            "INC0012347"
        );
        assert!(IncidentNumber::from_sequence(10_000_000).is_none());
    }

    #[test]
    fn sys_ids_are_32_lowercase_hex_digits() {
        let id = new_sys_id();
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }

    #[test]
    fn open_defaults_and_trims() {
        let inc = incident();
        assert_eq!(inc.short_description, "Printer jammed");
        assert_eq!(inc.state, State::New);
        assert_eq!(inc.priority, Priority::Moderate);
        assert_eq!(inc.opened_at, T0);
        let low = Incident::open(
            IncidentNumber::parse("INC0000101").unwrap(),
            new_sys_id(),
            NewIncident {
                short_description: "x".into(),
                ..NewIncident::default()
            },
            T0,
        )
        .unwrap();
        assert_eq!((low.impact, low.urgency), (Level::Low, Level::Low));
        assert_eq!(low.priority, Priority::Planning);
        let blank = Incident::open(
            IncidentNumber::parse("INC0000102").unwrap(),
            new_sys_id(),
            NewIncident {
                short_description: "   ".into(),
                ..NewIncident::default()
            },
            T0,
        );
        assert_eq!(blank, Err(Violation::EmptyShortDescription));
    }

    #[test]
    fn changing_urgency_recomputes_priority_and_refreshes_updated_at() {
        let inc = incident();
        let next = inc
            .patched(
                IncidentPatch {
                    urgency: Some(Level::High),
                    state: Some(State::InProgress),
                    ..IncidentPatch::default()
                },
                T1,
            )
            .unwrap();
        assert_eq!(next.priority, Priority::High);
        assert_eq!(next.state, State::InProgress);
        assert_eq!(next.updated_at, T1);
        assert_eq!(next.opened_at, T0);
    }

    #[test]
    fn resolving_needs_close_notes() {
        let inc = incident();
        let err = inc
            .patched(
                IncidentPatch {
                    state: Some(State::Resolved),
                    ..IncidentPatch::default()
                },
                T1,
            )
            .unwrap_err();
        assert_eq!(
            err,
            Violation::CloseNotesRequired {
                state: State::Resolved
            }
        );
        assert!(err.to_string().contains("close_notes"));
        let resolved = inc
            .patched(
                IncidentPatch {
                    state: Some(State::Resolved),
                    close_notes: Some("VPN config fixed".into()),
                    ..IncidentPatch::default()
                },
                T1,
            )
            .unwrap();
        assert_eq!(resolved.resolved_at, Some(T1));
        assert_eq!(resolved.close_code.as_deref(), Some(DEFAULT_CLOSE_CODE));
        // Closing later keeps the first resolution time; notes already present suffice.
        let closed = resolved
            .patched(
                IncidentPatch {
                    state: Some(State::Closed),
                    ..IncidentPatch::default()
                },
                T1 + time::Duration::hours(1),
            )
            .unwrap();
        assert_eq!(closed.resolved_at, Some(T1));
        // Reopening clears the resolution time.
        let reopened = closed
            .patched(
                IncidentPatch {
                    state: Some(State::InProgress),
                    ..IncidentPatch::default()
                },
                T1,
            )
            .unwrap();
        assert_eq!(reopened.resolved_at, None);
    }

    #[test]
    fn clearing_close_notes_of_a_resolved_incident_is_rejected() {
        let resolved = incident()
            .patched(
                IncidentPatch {
                    state: Some(State::Resolved),
                    close_notes: Some("fixed".into()),
                    close_code: Some("Solved (Work Around)".into()),
                    ..IncidentPatch::default()
                },
                T1,
            )
            .unwrap();
        assert_eq!(resolved.close_code.as_deref(), Some("Solved (Work Around)"));
        let err = resolved.patched(
            IncidentPatch {
                close_notes: Some(String::new()),
                ..IncidentPatch::default()
            },
            T1,
        );
        assert!(matches!(err, Err(Violation::CloseNotesRequired { .. })));
    }

    #[test]
    fn work_notes_are_appended_not_replaced() {
        let first = incident()
            .patched(
                IncidentPatch {
                    work_notes: Some("Called the caller.".into()),
                    ..IncidentPatch::default()
                },
                T0,
            )
            .unwrap();
        let second = first
            .patched(
                IncidentPatch {
                    work_notes: Some("Replaced the toner.".into()),
                    ..IncidentPatch::default()
                },
                T1,
            )
            .unwrap();
        assert_eq!(
            second.work_notes.as_deref(),
            Some(
                "2025-03-04 08:15:30 (Work notes)\nCalled the caller.\n\n\
                 2025-03-04 09:00:05 (Work notes)\nReplaced the toner."
            )
        );
    }

    #[test]
    fn empty_patches_and_blank_summaries_are_rejected() {
        let inc = incident();
        assert_eq!(
            inc.patched(IncidentPatch::default(), T1),
            Err(Violation::NothingToUpdate)
        );
        assert_eq!(
            inc.patched(
                IncidentPatch {
                    short_description: Some(" ".into()),
                    ..IncidentPatch::default()
                },
                T1
            ),
            Err(Violation::EmptyShortDescription)
        );
        let cleared = inc
            .patched(
                IncidentPatch {
                    assigned_to: Some("Beth Anglin".into()),
                    ..IncidentPatch::default()
                },
                T1,
            )
            .unwrap()
            .patched(
                IncidentPatch {
                    assigned_to: Some(String::new()),
                    ..IncidentPatch::default()
                },
                T1,
            )
            .unwrap();
        assert_eq!(cleared.assigned_to, None);
    }

    #[test]
    fn incident_serializes_to_display_values() {
        let value = serde_json::to_value(incident()).unwrap();
        assert_eq!(value["number"], "INC0000100");
        assert_eq!(value["state"], "New");
        assert_eq!(value["impact"], "2 - Medium");
        assert_eq!(value["urgency"], "2 - Medium");
        assert_eq!(value["priority"], "3 - Moderate");
        assert_eq!(value["opened_at"], "2025-03-04 08:15:30");
        assert_eq!(value["resolved_at"], "");
        assert_eq!(value["description"], "");
        assert_eq!(value.as_object().unwrap().len(), 18);
    }
}
