//! The demo incidents a new embedded store starts with: among them `INC0012346` "VPN not
//! working", In Progress, medium urgency, so that the seed's three questions work on a fresh
//! install.

use time::OffsetDateTime;

use super::Error;
use super::model::{
    DEFAULT_CLOSE_CODE, Incident, IncidentNumber, Level, Priority, State, append_work_note,
    new_sys_id,
};

/// One demo incident; times are hours before the store is created.
pub(super) struct Seed {
    number: &'static str,
    opened_hours_ago: i64,
    short_description: &'static str,
    description: &'static str,
    caller: &'static str,
    category: &'static str,
    impact: Level,
    urgency: Level,
    state: State,
    assignment_group: &'static str,
    assigned_to: Option<&'static str>,
    work_notes: &'static [(i64, &'static str)],
    close_notes: Option<&'static str>,
    resolved_hours_ago: Option<i64>,
    updated_hours_ago: i64,
}

pub(super) const SEEDS: &[Seed] = &[
    Seed {
        number: "INC0012340",
        opened_hours_ago: 200,
        short_description: "Access to the Finance shared drive",
        description: "New team member needs read and write access to the Finance shared \
                      drive to prepare the quarterly close.",
        caller: "Abel Tuter",
        category: "inquiry",
        impact: Level::Low,
        urgency: Level::Low,
        state: State::Closed,
        assignment_group: "Service Desk",
        assigned_to: Some("ITIL User"),
        work_notes: &[(190, "Approval requested from the Finance manager.")],
        close_notes: Some(
            "Access granted after approval from the Finance manager; the caller confirmed \
             the share opens.",
        ),
        resolved_hours_ago: Some(180),
        updated_hours_ago: 100,
    },
    Seed {
        number: "INC0012341",
        opened_hours_ago: 150,
        short_description: "Outlook crashes when opening a shared calendar",
        description: "Outlook closes without an error message whenever the caller opens \
                      the Marketing team's shared calendar. Other calendars open fine.",
        caller: "Beth Anglin",
        category: "software",
        impact: Level::Low,
        urgency: Level::Medium,
        state: State::Resolved,
        assignment_group: "Service Desk",
        assigned_to: Some("ITIL User"),
        work_notes: &[(
            148,
            "Reproduced on the caller's laptop; the Office repair tool reports damaged files.",
        )],
        close_notes: Some(
            "Ran an online Office repair and rebuilt the Outlook profile; the shared calendar \
             opens normally.",
        ),
        resolved_hours_ago: Some(120),
        updated_hours_ago: 120,
    },
    Seed {
        number: "INC0012342",
        opened_hours_ago: 96,
        short_description: "Laptop battery swelling",
        description: "The caller's laptop battery is visibly swollen and the touchpad no \
                      longer clicks. The laptop has been powered off for safety.",
        caller: "Fred Luddy",
        category: "hardware",
        impact: Level::Low,
        urgency: Level::High,
        state: State::OnHold,
        assignment_group: "Hardware",
        assigned_to: Some("Bud Richman"),
        work_notes: &[(
            90,
            "Loaner laptop issued. Replacement battery ordered from the vendor, expected in \
             3 business days.",
        )],
        close_notes: None,
        resolved_hours_ago: None,
        updated_hours_ago: 90,
    },
    Seed {
        number: "INC0012343",
        opened_hours_ago: 30,
        short_description: "Email to external recipients delayed",
        description: "Messages sent to addresses outside the company wait 30 to 60 minutes \
                      in the queue before delivery. Internal mail is not affected.",
        caller: "David Miller",
        category: "software",
        impact: Level::Medium,
        urgency: Level::High,
        state: State::InProgress,
        assignment_group: "Messaging",
        assigned_to: Some("Don Goodliffe"),
        work_notes: &[
            (
                28,
                "Outbound queue on the mail relay keeps growing; the latest spam filter \
                 update is suspected.",
            ),
            (20, "Rolled back the filter rule set; monitoring the queue."),
        ],
        close_notes: None,
        resolved_hours_ago: None,
        updated_hours_ago: 20,
    },
    Seed {
        number: "INC0012344",
        opened_hours_ago: 20,
        short_description: "Wi-Fi drops in building B meeting rooms",
        description: "Laptops lose the wireless connection every few minutes in meeting \
                      rooms B1 to B4; wired connections are stable.",
        caller: "Abraham Lincoln",
        category: "network",
        impact: Level::Medium,
        urgency: Level::Low,
        state: State::New,
        assignment_group: "Network",
        assigned_to: None,
        work_notes: &[],
        close_notes: None,
        resolved_hours_ago: None,
        updated_hours_ago: 20,
    },
    Seed {
        number: "INC0012345",
        opened_hours_ago: 8,
        short_description: "Third-floor printer jams on every job",
        description: "The printer next to room 3.14 jams on every print job since the paper \
                      tray was refilled.",
        caller: "Carol Coughlin",
        category: "hardware",
        impact: Level::Low,
        urgency: Level::Medium,
        state: State::New,
        assignment_group: "Hardware",
        assigned_to: None,
        work_notes: &[],
        close_notes: None,
        resolved_hours_ago: None,
        updated_hours_ago: 8,
    },
    Seed {
        number: "INC0012346",
        opened_hours_ago: 3,
        short_description: "VPN not working",
        description: "Users are unable to connect to the corporate VPN since this morning. \
                      The client times out during authentication, for office and remote \
                      staff alike.",
        caller: "Joe Employee",
        category: "network",
        impact: Level::Medium,
        urgency: Level::Medium,
        state: State::InProgress,
        assignment_group: "Network",
        assigned_to: Some("David Loo"),
        work_notes: &[(
            2,
            "Several users affected. The VPN gateway is up but authentication requests time \
             out; checking the RADIUS server with the firewall team.",
        )],
        close_notes: None,
        resolved_hours_ago: None,
        updated_hours_ago: 2,
    },
    Seed {
        number: "INC0012347",
        opened_hours_ago: 2,
        short_description: "Cannot print on the third floor",
        description: "Print jobs sent to the third-floor printer never come out.",
        caller: "Rick Berzle",
        category: "hardware",
        impact: Level::Low,
        urgency: Level::Low,
        state: State::Canceled,
        assignment_group: "Service Desk",
        assigned_to: Some("ITIL User"),
        work_notes: &[],
        close_notes: Some("Duplicate of INC0012345 (same printer)."),
        resolved_hours_ago: None,
        updated_hours_ago: 1,
    },
    Seed {
        number: "INC0012348",
        opened_hours_ago: 1,
        short_description: "Nightly payroll database backup failed",
        description: "The nightly backup of the payroll database ended with 'disk quota \
                      exceeded' on the backup server; no backup exists for last night.",
        caller: "Rick Berzle",
        category: "database",
        impact: Level::High,
        urgency: Level::Medium,
        state: State::New,
        assignment_group: "Database",
        assigned_to: None,
        work_notes: &[],
        close_notes: None,
        resolved_hours_ago: None,
        updated_hours_ago: 1,
    },
];

/// The demo incidents, dated relative to `now`.
pub(super) fn incidents(now: OffsetDateTime) -> Result<Vec<Incident>, Error> {
    let ago = |hours: i64| now - time::Duration::hours(hours);
    SEEDS
        .iter()
        .map(|seed| {
            let work_notes = seed.work_notes.iter().fold(None, |journal, (hours, note)| {
                Some(append_work_note(journal.as_deref(), ago(*hours), note))
            });
            Ok(Incident {
                number: IncidentNumber::parse(seed.number)?,
                sys_id: new_sys_id(),
                short_description: seed.short_description.to_owned(),
                description: Some(seed.description.to_owned()),
                caller: Some(seed.caller.to_owned()),
                category: Some(seed.category.to_owned()),
                impact: seed.impact,
                urgency: seed.urgency,
                priority: Priority::from_impact_urgency(seed.impact, seed.urgency),
                state: seed.state,
                assignment_group: Some(seed.assignment_group.to_owned()),
                assigned_to: seed.assigned_to.map(str::to_owned),
                work_notes,
                close_code: seed
                    .state
                    .is_resolved()
                    .then(|| DEFAULT_CLOSE_CODE.to_owned()),
                close_notes: seed.close_notes.map(str::to_owned),
                opened_at: ago(seed.opened_hours_ago),
                updated_at: ago(seed.updated_hours_ago),
                resolved_at: seed.resolved_hours_ago.map(ago),
            })
        })
        .collect()
}
