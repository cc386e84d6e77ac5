//! Unit tests for the incident record and its rules: numbers, `sys_id`s, timestamps, opening
//! and patching under the rules, and the JSON of display values the tools return. The
//! vocabularies' own parsing is tested in `vocab.rs`.

use super::*;
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
fn display_values_match_the_table_api() {
    assert_eq!(State::InProgress.to_string(), "In Progress");
    assert_eq!(Level::Medium.to_string(), "2 - Medium");
    assert_eq!(Priority::Moderate.to_string(), "3 - Moderate");
    assert_eq!(Priority::Critical.display_value(), "1 - Critical");
    assert_eq!(format_timestamp(T0), "2025-03-04 08:15:30");
    assert_eq!(parse_timestamp("2025-03-04 08:15:30").unwrap(), T0);
}

#[test]
fn timestamps_round_trip_and_malformed_ones_are_refused() {
    // Formatting pads every part; parsing reads exactly what formatting writes.
    for text in [
        "0001-01-01 00:00:00",
        "1999-12-31 23:59:59",
        "2024-02-29 12:05:09",
        "9999-12-31 23:59:59",
    ] {
        let at = parse_timestamp(text).unwrap();
        assert_eq!(format_timestamp(at), text);
    }
    // Another offset is shown in UTC.
    let paris = T0.to_offset(time::UtcOffset::from_hms(1, 0, 0).unwrap());
    assert_eq!(format_timestamp(paris), "2025-03-04 08:15:30");
    for bad in [
        "",
        "2025-03-04",
        "2025-03-04T08:15:30",
        "2025-13-04 08:15:30",
        "2025-02-30 08:15:30",
        "2025-03-04 24:00:00",
        "2025-03-04 08:15:3x",
        "2025-03-04 08:15:30 ",
        "+025-03-04 08:15:30",
    ] {
        assert!(parse_timestamp(bad).is_err(), "{bad:?} parsed");
    }
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

#[test]
fn to_json_is_what_serialize_writes_with_every_field_empty_or_set() {
    // Arrange: one incident with every optional field empty, one with every field set
    // (text with escapes and non-ASCII; resolved, so it has a close code and a time).
    let empty = incident();
    let mut full = incident();
    full.description = Some("VPN \"drops\"\n\tafter 5 min, café ✓".into());
    full.caller = Some("Abel Tuter".into());
    full.category = Some("network".into());
    full.assignment_group = Some("Network".into());
    full.assigned_to = Some("Beth Anglin".into());
    full.work_notes = Some("2025-03-04 09:00:05 - note".into());
    full.close_code = Some(DEFAULT_CLOSE_CODE.into());
    full.close_notes = Some("Rebooted".into());
    full.state = State::Resolved;
    full.resolved_at = Some(T1);
    full.updated_at = T1;

    for incident in [empty, full] {
        // Act
        let ours = incident.to_json();

        // Assert: the same value, and the same text once written.
        let serde = serde_json::to_value(&incident).unwrap();
        assert_eq!(ours, serde);
        assert_eq!(
            serde_json::to_string(&ours).unwrap(),
            serde_json::to_string(&serde).unwrap()
        );
    }
}

#[test]
fn texts_longer_than_servicenow_holds_are_refused_by_the_rules() {
    // Arrange: one character over each limit, and exactly at it (in characters, not bytes).
    for &(field, limit) in FIELD_LIMITS {
        assert_eq!(
            check_length(field, &"é".repeat(limit)),
            Ok(()),
            "{field} at its limit"
        );
        // Surrounding spaces are not kept, so they do not count.
        assert_eq!(
            check_length(field, &format!("  {}  ", "a".repeat(limit))),
            Ok(())
        );
        assert_eq!(
            check_length(field, &"a".repeat(limit + 1)),
            Err(Violation::TooLong {
                field,
                limit,
                given: limit + 1
            }),
            "{field}"
        );
    }
    assert_eq!(max_length("short_description"), Some(160));

    // Act / Assert: opening and patching follow them, whichever store calls.
    let too_long = "s".repeat(161);
    let err = Incident::open(
        IncidentNumber::parse("INC0000101").unwrap(),
        new_sys_id(),
        NewIncident {
            short_description: too_long.clone(),
            ..NewIncident::default()
        },
        T0,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "short_description is too long: 161 characters given, and ServiceNow's incident field \
         holds at most 160"
    );
    let err = incident()
        .patched(
            IncidentPatch {
                close_notes: Some("n".repeat(4001)),
                ..IncidentPatch::default()
            },
            T1,
        )
        .unwrap_err();
    assert_eq!(
        err,
        Violation::TooLong {
            field: "close_notes",
            limit: 4000,
            given: 4001
        }
    );
}
