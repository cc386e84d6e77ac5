//! What agent runs cost (`[costs] models`: a price per model) and the callers' budgets
//! (`[costs] budgets`): tokens and cost per UTC day and calendar month.
//!
//! Every completion is counted here by its run ([`Costs::record`]): into the ledger of spend
//! per day, client and agent (the admin API's `GET /admin/costs`), into the metrics, and
//! into the caller's budget account. A run checks its caller's account before each model
//! turn ([`Costs::check`]): over budget at the first turn, the run is refused; later, it
//! stops with its partial answer. On a single node the accounts are exact (in memory); in
//! cluster mode they are Redis counters every replica adds to and reads (a Redis that does
//! not answer lets the run go on, and says so in the log). The clock is injectable
//! ([`Clock`]) so tests can cross a period's end.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use crate::config::costs::{BudgetConfig, CostsSpec};
use crate::identity::Identity;

/// Where the time comes from.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Tokens and cost spent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spent {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost, in `[costs] currency`.
    pub cost: f64,
}

impl Spent {
    /// Prompt and completion tokens.
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    fn add(&mut self, other: Spent) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cost += other.cost;
    }
}

/// A budget's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Day,
    Month,
}

/// The period containing `now`: its key (`2026-12-06`, `2026-12`) and when it ends.
fn window(now: OffsetDateTime, period: Period) -> (String, OffsetDateTime) {
    let date = now.date();
    match period {
        Period::Day => {
            let next = date.next_day().unwrap_or(date);
            (
                format!(
                    "{:04}-{:02}-{:02}",
                    date.year(),
                    u8::from(date.month()),
                    date.day()
                ),
                next.midnight().assume_utc(),
            )
        }
        Period::Month => {
            let (year, month) = match date.month() {
                time::Month::December => (date.year() + 1, time::Month::January),
                m => (date.year(), m.next()),
            };
            let next = time::Date::from_calendar_date(year, month, 1).unwrap_or(date);
            (
                format!("{:04}-{:02}", date.year(), u8::from(date.month())),
                next.midnight().assume_utc(),
            )
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A run refused or stopped: which budget, and when it resets.
#[derive(Debug, Clone, PartialEq)]
pub struct OverBudget {
    /// Whose budget (`client "helpdesk-app"`, `subject "alice@example.com"`).
    pub who: String,
    /// Which limit (`tokens_per_day`, `cost_per_month`, ...).
    pub limit: &'static str,
    /// The limit, as configured.
    pub allowed: String,
    /// What is spent.
    pub spent: String,
    /// When the period ends (RFC 3339, UTC).
    pub resets_at: String,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the budget of {} is used up: {} = {}, spent {}; it resets at {} ([costs.budgets] in switchboard.toml)",
            self.who, self.limit, self.allowed, self.spent, self.resets_at
        )
    }
}

/// The budget account of a caller: the key its spend is counted under, how messages name
/// it, its budget.
struct Account {
    key: String,
    who: String,
    budget: BudgetConfig,
}

/// Costs and budgets of the gateway.
pub struct Costs {
    spec: CostsSpec,
    clock: Arc<dyn Clock>,
    /// Spend per (UTC day, client, agent), the last [`LEDGER_DAYS`] days.
    ledger: Mutex<BTreeMap<(String, String, String), Spent>>,
    /// Spend per account and period (`<account>:<period key>`), on this node.
    accounts: Mutex<HashMap<String, Spent>>,
    /// Cluster mode: the accounts are shared through Redis.
    shared: OnceLock<crate::cluster::Cluster>,
}

/// How many days the ledger keeps.
pub const LEDGER_DAYS: i64 = 92;

impl Default for Costs {
    fn default() -> Self {
        Self::new(CostsSpec::default(), Arc::new(SystemClock))
    }
}

impl Costs {
    /// Costs priced and budgeted by `spec`, on `clock`.
    pub fn new(spec: CostsSpec, clock: Arc<dyn Clock>) -> Self {
        Self {
            spec,
            clock,
            ledger: Mutex::default(),
            accounts: Mutex::default(),
            shared: OnceLock::new(),
        }
    }

    /// The configuration.
    pub fn spec(&self) -> &CostsSpec {
        &self.spec
    }

    /// Cluster mode: the budget accounts live in `cluster`'s Redis from now on.
    pub fn share(&self, cluster: crate::cluster::Cluster) {
        let _ = self.shared.set(cluster);
    }

    /// What `prompt` and `completion` tokens of `model` cost (0 for a model without a price).
    pub fn price(&self, model: &str, prompt: u64, completion: u64) -> f64 {
        self.spec.models.get(model).map_or(0.0, |p| {
            (prompt as f64 * p.input_per_million + completion as f64 * p.output_per_million) / 1e6
        })
    }

    /// The account of `identity`: its OAuth subject's budget, else its client's, else
    /// `*`'s (on an account of its own); `None`: no budget applies.
    fn account(&self, identity: &Identity) -> Option<Account> {
        let budgets = &self.spec.budgets;
        if budgets.is_empty() {
            return None;
        }
        let subject = identity.subject();
        let client = identity.client.as_deref();
        for (kind, name) in [("subject", subject), ("client", client)] {
            if let Some(name) = name
                && let Some(budget) = budgets.get(name)
            {
                return Some(Account {
                    key: format!("{kind}:{name}"),
                    who: format!("{kind} {name:?}"),
                    budget: *budget,
                });
            }
        }
        let budget = *budgets.get("*")?;
        let (key, who) = match (subject, client) {
            (Some(s), _) => (format!("subject:{s}"), format!("subject {s:?}")),
            (None, Some(c)) => (format!("client:{c}"), format!("client {c:?}")),
            (None, None) => ("anonymous".to_owned(), "anonymous callers".to_owned()),
        };
        Some(Account { key, who, budget })
    }

    /// Whether `identity` may start another model turn: `Err` names the budget that is
    /// used up and when it resets.
    ///
    /// # Errors
    /// [`OverBudget`].
    pub async fn check(&self, identity: &Identity) -> Result<(), OverBudget> {
        let Some(account) = self.account(identity) else {
            return Ok(());
        };
        let now = OffsetDateTime::from(self.clock.now());
        let b = account.budget;
        for (period, tokens, cost, names) in [
            (
                Period::Day,
                b.tokens_per_day,
                b.cost_per_day,
                ("tokens_per_day", "cost_per_day"),
            ),
            (
                Period::Month,
                b.tokens_per_month,
                b.cost_per_month,
                ("tokens_per_month", "cost_per_month"),
            ),
        ] {
            if tokens.is_none() && cost.is_none() {
                continue;
            }
            let (key, resets) = window(now, period);
            let spent = self.spent(&format!("{}:{key}", account.key)).await;
            let over = |limit: &'static str, allowed: String, spent: String| OverBudget {
                who: account.who.clone(),
                limit,
                allowed,
                spent,
                resets_at: rfc3339(resets),
            };
            if let Some(max) = tokens
                && spent.tokens() >= max
            {
                return Err(over(
                    names.0,
                    max.to_string(),
                    format!("{} tokens", spent.tokens()),
                ));
            }
            if let Some(max) = cost
                && spent.cost >= max
            {
                let currency = &self.spec.currency;
                return Err(over(
                    names.1,
                    format!("{max} {currency}"),
                    format!("{:.6} {currency}", spent.cost),
                ));
            }
        }
        Ok(())
    }

    /// What account period `key` has spent: Redis's count in cluster mode, else ours.
    async fn spent(&self, key: &str) -> Spent {
        if let Some(cluster) = self.shared.get() {
            match cluster.usage_get(key).await {
                Ok((tokens, micros)) => {
                    return Spent {
                        prompt_tokens: tokens,
                        completion_tokens: 0,
                        cost: micros as f64 / 1e6,
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot read a budget account from Redis; the run goes on.");
                }
            }
        }
        self.accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or_default()
    }

    /// Counts one completion of `model` for `identity`'s run of `agent`; `client` is how
    /// the metrics and the ledger name the caller. Returns its cost.
    pub async fn record(
        &self,
        identity: &Identity,
        client: &str,
        agent: &str,
        model: &str,
        prompt: u64,
        completion: u64,
    ) -> f64 {
        let spent = Spent {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cost: self.price(model, prompt, completion),
        };
        let now = OffsetDateTime::from(self.clock.now());
        let (day, _) = window(now, Period::Day);
        {
            let mut ledger = self.ledger.lock().unwrap_or_else(PoisonError::into_inner);
            ledger
                .entry((day.clone(), client.to_owned(), agent.to_owned()))
                .or_default()
                .add(spent);
            // Days older than the ledger keeps go (keys sort by day first).
            let oldest = window(now - time::Duration::days(LEDGER_DAYS), Period::Day).0;
            while ledger
                .first_key_value()
                .is_some_and(|((d, _, _), _)| *d < oldest)
            {
                ledger.pop_first();
            }
        }
        if let Some(account) = self.account(identity) {
            let (month, _) = window(now, Period::Month);
            for (period, ttl) in [
                (day, Duration::from_secs(2 * 86_400)),
                (month, Duration::from_secs(32 * 86_400)),
            ] {
                let key = format!("{}:{period}", account.key);
                if let Some(cluster) = self.shared.get() {
                    let micros = (spent.cost * 1e6).round() as i64;
                    if let Err(e) = cluster.usage_add(&key, spent.tokens(), micros, ttl).await {
                        tracing::warn!(error = %e, "Cannot count a run's spend in Redis; it is counted on this replica only.");
                    } else {
                        continue;
                    }
                }
                self.accounts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(key)
                    .or_default()
                    .add(spent);
            }
        }
        spent.cost
    }

    /// The ledger of the last `days` UTC days (today included): spend per (day, client,
    /// agent), oldest first.
    pub fn ledger(&self, days: u32) -> Vec<((String, String, String), Spent)> {
        let now = OffsetDateTime::from(self.clock.now());
        let first = window(
            now - time::Duration::days(i64::from(days.max(1)) - 1),
            Period::Day,
        )
        .0;
        self.ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .range((first, String::new(), String::new())..)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::costs::PriceConfig;

    struct Fixed(Mutex<SystemTime>);

    impl Clock for Fixed {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    fn at(rfc: &str) -> SystemTime {
        OffsetDateTime::parse(rfc, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .into()
    }

    #[test]
    fn periods_are_utc_days_and_calendar_months() {
        let t = OffsetDateTime::from(at("2026-12-31T23:59:59Z"));
        let (day, resets) = window(t, Period::Day);
        assert_eq!(
            (day.as_str(), rfc3339(resets).as_str()),
            ("2026-12-31", "2027-01-01T00:00:00Z")
        );
        let (month, resets) = window(t, Period::Month);
        assert_eq!(
            (month.as_str(), rfc3339(resets).as_str()),
            ("2026-12", "2027-01-01T00:00:00Z")
        );
    }

    #[tokio::test]
    async fn a_client_over_its_day_is_refused_until_the_next_day() {
        let mut spec = CostsSpec::default();
        spec.models.insert(
            "m".into(),
            PriceConfig {
                input_per_million: 1.0,
                output_per_million: 2.0,
            },
        );
        spec.budgets.insert(
            "app".into(),
            BudgetConfig {
                tokens_per_day: Some(100),
                ..Default::default()
            },
        );
        let clock = Arc::new(Fixed(Mutex::new(at("2026-12-06T23:00:00Z"))));
        let costs = Costs::new(spec, clock.clone());
        let app = Identity {
            client: Some("app".into()),
            ..Default::default()
        };
        assert_eq!(costs.check(&app).await, Ok(()));
        let cost = costs.record(&app, "app", "a", "m", 60, 50).await;
        assert!((cost - 0.00016).abs() < 1e-12, "{cost}");
        let over = costs.check(&app).await.unwrap_err();
        assert_eq!(over.limit, "tokens_per_day");
        assert_eq!(over.resets_at, "2026-12-07T00:00:00Z");
        assert!(over.to_string().contains("client \"app\""), "{over}");
        // Others have no budget.
        assert_eq!(costs.check(&Identity::default()).await, Ok(()));
        *clock.0.lock().unwrap() = at("2026-12-07T00:00:00Z");
        assert_eq!(costs.check(&app).await, Ok(()));
        let days = costs.ledger(2);
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].0.0, "2026-12-06");
        assert_eq!(days[0].1.tokens(), 110);
    }
}
