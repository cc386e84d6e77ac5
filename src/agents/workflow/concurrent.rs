//! `kind = "concurrent"`: every step at once on the workflow's task; the results, in step
//! order, merged by the aggregator step (its `{{input}}`: the results one after the other,
//! each under its step's name) or, without one, that concatenation is the answer.
//!
//! A step that fails (with `on_error = "fail"`) cancels the steps still running and fails the
//! workflow, naming it; their records say they were cancelled.

use std::collections::BTreeMap;

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::{Run, step_error};
use crate::agents::run::Error;
use crate::tools::{self, CallContext};

/// Runs every step at once, then the aggregator.
///
/// # Errors
/// The first step that failed (unless it may continue), the aggregator's failure, or
/// cancellation.
pub(super) async fn run(run: &Run<'_>) -> Result<String, Error> {
    let steps = run.steps();
    // The steps' group: the first failure cancels the others.
    let group = CallContext {
        cancel: run.ctx.cancel.child_token(),
        ..run.ctx.clone()
    };
    let none = BTreeMap::new();
    let mut running: FuturesUnordered<_> = steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let (group, none) = (&group, &none);
            async move {
                run.report(|| format!("step {}/{} {}", i + 1, steps.len(), step.name));
                (i, run.call(step, run.task, none, group).await)
            }
        })
        .collect();
    let mut outputs: Vec<String> = vec![String::new(); steps.len()];
    let mut failure = None;
    while let Some((i, result)) = running.next().await {
        let Some(step) = steps.get(i) else { continue };
        let result = match result {
            Ok(output) => {
                run.report(|| format!("{} done", step.name));
                Ok(output)
            }
            Err(e) => run.failed(step, e),
        };
        match result {
            Ok(output) => {
                if let Some(slot) = outputs.get_mut(i) {
                    *slot = output;
                }
            }
            // Later failures are the cancelled siblings of the first.
            Err(e) if failure.is_none() => {
                group.cancel.cancel();
                failure = Some(e);
            }
            Err(_) => {}
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let merged = steps
        .iter()
        .zip(&outputs)
        .map(|(step, output)| format!("## {}\n\n{output}", step.name))
        .collect::<Vec<_>>()
        .join("\n\n");
    let Some(aggregator) = &run.workflow.spec.aggregator else {
        return Ok(merged);
    };
    if run.ctx.cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    run.report(|| format!("aggregating with {}", aggregator.name));
    let by_name: BTreeMap<String, String> =
        steps.iter().map(|s| s.name.clone()).zip(outputs).collect();
    run.call(aggregator, &merged, &by_name, run.ctx)
        .await
        .map_err(|e| match e {
            tools::Error::Cancelled => Error::Cancelled,
            e => step_error(aggregator, e),
        })
}
