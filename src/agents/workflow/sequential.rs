//! `kind = "sequential"`: one step after the other, each step's output the next one's input
//! (the first step's input is the workflow's task); the last step's output is the answer.

use std::collections::BTreeMap;

use super::Run;
use crate::agents::run::Error;

/// Runs the steps in order.
///
/// # Errors
/// The first step that failed (unless it may continue), or cancellation.
pub(super) async fn run(run: &Run<'_>) -> Result<String, Error> {
    let steps = run.steps();
    let mut input = run.task.to_owned();
    let mut outputs = BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        if run.ctx.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        run.report(|| format!("step {}/{} {}", i + 1, steps.len(), step.name));
        let output = match run.call(step, &input, &outputs, run.ctx).await {
            Ok(output) => output,
            Err(e) => run.failed(step, e)?,
        };
        outputs.insert(step.name.clone(), output.clone());
        input = output;
    }
    Ok(input)
}
