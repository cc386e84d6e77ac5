//! `[costs]` of `switchboard.toml`: what the models cost, and the budgets of the callers.
//!
//! ```toml
//! [costs]
//! currency = "USD"
//! [costs.models."gpt-4o-mini"]
//! input_per_million = 0.15
//! output_per_million = 0.60
//! [costs.budgets."helpdesk-app"]   # a client's name, an OAuth subject, or "*" (each other caller)
//! tokens_per_day = 200000
//! cost_per_month = 50.0
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::Error;

/// `[costs]`, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostsConfig {
    /// The currency of the prices (a label). Default `USD`.
    pub currency: Option<String>,
    /// Prices per model, by the model's name as `[model] model` gives it.
    pub models: BTreeMap<String, PriceConfig>,
    /// Budgets per caller: a configured client's name, an OAuth subject, or `*` for every
    /// caller without a budget of its own (each on its own account).
    pub budgets: BTreeMap<String, BudgetConfig>,
}

/// One model's price.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// Per million prompt (input) tokens.
    pub input_per_million: f64,
    /// Per million completion (output) tokens.
    pub output_per_million: f64,
}

/// One caller's budget: any of the four limits, per UTC day and calendar month.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// LLM tokens (prompt and completion) per UTC day.
    pub tokens_per_day: Option<u64>,
    /// LLM tokens per UTC calendar month.
    pub tokens_per_month: Option<u64>,
    /// Cost (in `currency`) per UTC day.
    pub cost_per_day: Option<f64>,
    /// Cost per UTC calendar month.
    pub cost_per_month: Option<f64>,
}

/// `[costs]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CostsSpec {
    /// The currency label.
    pub currency: String,
    /// Prices by model.
    pub models: BTreeMap<String, PriceConfig>,
    /// Budgets by caller (`*`: the default).
    pub budgets: BTreeMap<String, BudgetConfig>,
}

impl Default for CostsSpec {
    fn default() -> Self {
        Self {
            currency: "USD".to_owned(),
            models: BTreeMap::new(),
            budgets: BTreeMap::new(),
        }
    }
}

/// Validates `[costs]`.
///
/// # Errors
/// Every invalid value, naming `file` and the key.
pub fn validate(file: &Path, c: CostsConfig) -> Result<CostsSpec, Vec<Error>> {
    let mut errors = Vec::new();
    for (model, price) in &c.models {
        for (key, v) in [
            ("input_per_million", price.input_per_million),
            ("output_per_million", price.output_per_million),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                errors.push(Error::key(
                    file,
                    format!("costs.models.{model}.{key}"),
                    format!("{v} is not a price (a number of at least 0)"),
                ));
            }
        }
    }
    for (who, budget) in &c.budgets {
        if *budget == BudgetConfig::default() {
            errors.push(Error::key(
                file,
                format!("costs.budgets.{who}"),
                "sets no limit: give tokens_per_day, tokens_per_month, cost_per_day or cost_per_month",
            ));
        }
        for (key, v) in [
            ("cost_per_day", budget.cost_per_day),
            ("cost_per_month", budget.cost_per_month),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                errors.push(Error::key(
                    file,
                    format!("costs.budgets.{who}.{key}"),
                    format!("{v} is not an amount (a number of at least 0)"),
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(CostsSpec {
        currency: c
            .currency
            .filter(|c| !c.trim().is_empty())
            .unwrap_or_else(|| "USD".to_owned()),
        models: c.models,
        budgets: c.budgets,
    })
}
