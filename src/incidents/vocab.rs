//! ServiceNow's coded vocabularies for incidents: state, impact and urgency ([`Level`]), and
//! priority.
//!
//! Each vocabulary is a small enum whose discriminants are ServiceNow's codes. They share one
//! tolerant parser, since an LLM caller may write a name in any spelling ("in progress",
//! "In_Progress"), a code ("2" or the JSON number `2`) or a display value ("2 - Medium"), and
//! one [`UnknownValue`] error that names the accepted values. Each displays and serializes as
//! the Table API's display value with `sysparm_display_value=true`. The `vocabulary!` macro
//! writes that shared API; the names, codes and display values of each variant are spelled out
//! below, next to the enum.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use serde_json::Value;

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

// === Shared parsing ===

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

/// Writes what every vocabulary shares, for an enum whose discriminants are ServiceNow codes
/// and that has a `name(self) -> &'static str` of its own.
///
/// Given the field name used in errors (`kind`), the accepted values in words (`expected`,
/// the tail of the [`UnknownValue`] message), the codes as the docs list them (`codes`), how
/// the value displays (`name`: "In Progress"; `code_and_name`: "2 - Medium") and the accepted
/// names of every variant (normalized, in code order), it implements [`Choice`], the inherent
/// `ALL`, `code`, `from_code`, `parse` (documented by the doc comment written before `parse`)
/// and `from_json`, and `Display`, `FromStr` and `Serialize` (as the display value). The
/// `names` table must list every variant: the generated `match` is exhaustive.
macro_rules! vocabulary {
    (@display $ty:ident, name) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
    (@display $ty:ident, code_and_name) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} - {}", self.code(), self.name())
            }
        }
    };
    (
        $ty:ident {
            kind: $kind:literal,
            expected: $expected:literal,
            codes: $codes:literal,
            display: $display:ident,
            names: {
                $($variant:ident => [$($name:literal),+ $(,)?]),+ $(,)?
            },
            $(#[$parse_doc:meta])*
            parse $(,)?
        }
    ) => {
        impl Choice for $ty {
            const KIND: &'static str = $kind;
            const EXPECTED: &'static str = $expected;
            const ALL: &'static [Self] = &[$($ty::$variant),+];
            fn code(self) -> u8 {
                self as u8
            }
            fn names(self) -> &'static [&'static str] {
                match self {
                    $($ty::$variant => &[$($name),+],)+
                }
            }
        }

        impl $ty {
            #[doc = concat!("Every ", $kind, ", in code order.")]
            pub const ALL: &'static [$ty] = <$ty as Choice>::ALL;

            #[doc = concat!("ServiceNow's numeric code (", $codes, ").")]
            pub fn code(self) -> u8 {
                Choice::code(self)
            }

            #[doc = concat!("The ", $kind, " with this code, if any.")]
            pub fn from_code(code: u64) -> Option<Self> {
                choice_from_code(code)
            }

            $(#[$parse_doc])*
            pub fn parse(input: &str) -> Result<Self, UnknownValue> {
                parse_choice(input)
            }

            #[doc = concat!(
                "Parses a JSON string as [`", stringify!($ty), "::parse`] does, or a JSON ",
                "integer as a code.\n\n# Errors\n[`UnknownValue`] naming the accepted values."
            )]
            pub fn from_json(value: &Value) -> Result<Self, UnknownValue> {
                choice_from_json(value)
            }
        }

        vocabulary!(@display $ty, $display);

        impl FromStr for $ty {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}

// === State ===

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

vocabulary! {
    State {
        kind: "state",
        expected: "New, In Progress, On Hold, Resolved, Closed, Canceled or a code 1, 2, 3, 6, 7, 8",
        codes: "1, 2, 3, 6, 7, 8",
        display: name,
        names: {
            New => ["new"],
            InProgress => ["inprogress"],
            OnHold => ["onhold"],
            Resolved => ["resolved"],
            Closed => ["closed"],
            Canceled => ["canceled", "cancelled"],
        },
        /// Parses a name (any case; spaces, underscores and hyphens ignored; "Cancelled" too), a
        /// code ("6") or a display value ("6 - Resolved").
        ///
        /// # Errors
        /// [`UnknownValue`] naming the accepted values.
        parse,
    }
}

impl State {
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

    /// Resolved or Closed: the states that need close notes and set `resolved_at`.
    pub fn is_resolved(self) -> bool {
        matches!(self, State::Resolved | State::Closed)
    }
}

// === Level (impact, urgency) ===

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

vocabulary! {
    Level {
        kind: "level",
        expected: "High, Medium, Low or a code 1, 2, 3",
        codes: "1, 2, 3",
        display: code_and_name,
        names: {
            High => ["high"],
            Medium => ["medium"],
            Low => ["low"],
        },
        /// Parses a name (any case), a code ("2") or a display value ("2 - Medium"). Errors say
        /// `level`; use [`UnknownValue::for_field`] to say `impact` or `urgency`.
        ///
        /// # Errors
        /// [`UnknownValue`] naming the accepted values.
        parse,
    }
}

impl Level {
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
}

// === Priority ===

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

vocabulary! {
    Priority {
        kind: "priority",
        expected: "Critical, High, Moderate, Low, Planning or a code 1, 2, 3, 4, 5",
        codes: "1 to 5",
        display: code_and_name,
        names: {
            Critical => ["critical"],
            High => ["high"],
            Moderate => ["moderate"],
            Low => ["low"],
            Planning => ["planning"],
        },
        /// Parses a name (any case), a code ("3") or a display value ("3 - Moderate").
        ///
        /// # Errors
        /// [`UnknownValue`] naming the accepted values.
        parse,
    }
}

impl Priority {
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
