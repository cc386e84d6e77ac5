//! `type = "ask_user"`: a built-in tool that lets the agent's model ask the calling user a
//! question mid-run.
//!
//! The question goes to the user's MCP client as an elicitation request (form mode) with one
//! field, `answer` (a free text, or one of `choices` when the model gives some), the way
//! [`crate::ask`] reaches the client: a server-to-client request on a legacy session, an
//! `input_required` round on 2026-07-28. What the user answers comes back to the model as the
//! tool's result; so does a refusal, a dismissal, silence past `timeout_secs`, or a client that
//! cannot be asked: the model reads what happened and goes on.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{ElicitationSchema, JsonObject, Tool};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CallContext, Error};
use crate::ask::Answer;

/// The tool's name, as the model sees it.
pub const NAME: &str = "ask_user";

/// How long a question waits for its answer when `timeout_secs` is not set.
const DEFAULT_TIMEOUT_SECS: u64 = 300;

/// Most choices the model may offer.
const MAX_CHOICES: usize = 20;

/// Longest question and choice accepted.
const MAX_TEXT: usize = 2000;

/// `[[tools]] type = "ask_user"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskUserConfig {
    /// How long the model's question waits for the user's answer (seconds, default 300).
    pub timeout_secs: Option<u64>,
}

impl AskUserConfig {
    /// Checks the values: `(key, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        match self.timeout_secs {
            Some(0) => vec![("timeout_secs".into(), "must be at least 1".into())],
            Some(t) if t > 86_400 => vec![(
                "timeout_secs".into(),
                format!("{t} is more than a day (86400)"),
            )],
            _ => Vec::new(),
        }
    }
}

/// The built tool.
pub struct AskUser {
    timeout: Duration,
    definition: Tool,
}

impl AskUser {
    /// The tool of `config`.
    pub fn new(config: &AskUserConfig) -> Self {
        let schema = json!({
            "type": "object",
            "properties": {
                "question": {"type": "string", "description": "The question, as the user will read it: one clear question, with what you need and why."},
                "choices": {"type": "array", "items": {"type": "string"}, "description": "Optional: the answers the user may pick from."}
            },
            "required": ["question"],
            "additionalProperties": false
        });
        let schema = match schema {
            Value::Object(map) => map,
            _ => JsonObject::new(),
        };
        Self {
            timeout: Duration::from_secs(config.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS)),
            definition: Tool::new(
                NAME,
                "Ask the user a question and wait for the answer. Use it when you cannot go on \
                 without information only the user has (a detail missing from the task, a \
                 choice between options). The result is the user's answer, or says that they \
                 declined or could not be asked.",
                Arc::new(schema),
            ),
        }
    }

    /// The tool's definition.
    pub fn definition(&self) -> Tool {
        self.definition.clone()
    }

    /// Asks the question of `args` and returns what became of it, as text for the model.
    ///
    /// # Errors
    /// [`Error::InvalidArguments`] for a missing or empty question, or bad choices;
    /// [`Error::Cancelled`] when the call is cancelled while it waits.
    pub async fn call(&self, args: JsonObject, ctx: &CallContext) -> Result<String, Error> {
        let (question, choices) = parse(args)?;
        let Some(user) = ctx.user.as_deref() else {
            return Ok(
                "The user cannot be asked: their MCP client does not support questions \
                       (elicitation). Go on without the answer, and say what you assumed."
                    .to_owned(),
            );
        };
        let schema = match answer_schema(&choices) {
            Ok(schema) => schema,
            Err(e) => {
                return Err(Error::Failed(format!(
                    "the question's form could not be built: {e}"
                )));
            }
        };
        match user
            .elicit("ask_user", &question, schema, self.timeout, &ctx.cancel)
            .await
        {
            Answer::Accept(content) => {
                let answer = content
                    .as_ref()
                    .and_then(|c| c.get("answer"))
                    .map(|a| match a {
                        Value::String(s) => s.trim().to_owned(),
                        other => other.to_string(),
                    })
                    .unwrap_or_default();
                Ok(if answer.is_empty() {
                    "The user accepted the question but gave no answer.".to_owned()
                } else {
                    format!("The user answered: {answer}")
                })
            }
            Answer::Decline(_) => Ok("The user declined to answer.".to_owned()),
            Answer::Cancel => Ok("The user dismissed the question without answering.".to_owned()),
            Answer::TimedOut => Ok(format!(
                "The user did not answer within {} s.",
                self.timeout.as_secs()
            )),
            Answer::Withdrawn => Err(Error::Cancelled),
            Answer::Failed(e) => Ok(format!("The user could not be asked: {e}")),
        }
    }
}

fn parse(mut args: JsonObject) -> Result<(String, Vec<String>), Error> {
    let question = match args.remove("question") {
        Some(Value::String(q)) if !q.trim().is_empty() => q.trim().to_owned(),
        Some(Value::String(_)) => {
            return Err(Error::InvalidArguments("question must not be empty".into()));
        }
        Some(_) => return Err(Error::InvalidArguments("question must be a string".into())),
        None => return Err(Error::InvalidArguments("question is required".into())),
    };
    if question.chars().count() > MAX_TEXT {
        return Err(Error::InvalidArguments(format!(
            "question is longer than {MAX_TEXT} characters"
        )));
    }
    let choices = match args.remove("choices") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut choices = Vec::new();
            for item in items {
                match item {
                    Value::String(s) if !s.trim().is_empty() && s.chars().count() <= MAX_TEXT => {
                        choices.push(s.trim().to_owned());
                    }
                    _ => {
                        return Err(Error::InvalidArguments(
                            "choices must be non-empty strings".into(),
                        ));
                    }
                }
            }
            if choices.len() > MAX_CHOICES {
                return Err(Error::InvalidArguments(format!(
                    "at most {MAX_CHOICES} choices"
                )));
            }
            choices
        }
        Some(_) => {
            return Err(Error::InvalidArguments(
                "choices must be a list of strings".into(),
            ));
        }
    };
    if let Some(key) = args.keys().next() {
        return Err(Error::InvalidArguments(format!(
            "unknown argument {key:?}: ask_user takes question and choices"
        )));
    }
    Ok((question, choices))
}

fn answer_schema(choices: &[String]) -> Result<ElicitationSchema, String> {
    let builder = ElicitationSchema::builder();
    let builder = if choices.is_empty() {
        builder.required_string_with("answer", |s| s.description("Your answer"))
    } else {
        builder.required_enum_schema(
            "answer",
            rmcp::model::EnumSchema::builder(choices.to_vec())
                .untitled()
                .build(),
        )
    };
    builder.build().map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(v: Value) -> JsonObject {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn questions_are_checked_and_choices_kept() {
        assert!(parse(args(json!({}))).is_err());
        assert!(parse(args(json!({"question": "  "}))).is_err());
        assert!(parse(args(json!({"question": "Which?", "choices": [1]}))).is_err());
        assert!(parse(args(json!({"question": "Which?", "extra": 1}))).is_err());
        assert_eq!(
            parse(args(json!({"question": " Which? ", "choices": ["a", "b"]}))).unwrap(),
            ("Which?".to_owned(), vec!["a".to_owned(), "b".to_owned()])
        );
        assert!(answer_schema(&[]).is_ok());
        assert!(answer_schema(&["a".into(), "b".into()]).is_ok());
    }

    #[tokio::test]
    async fn a_user_who_cannot_be_asked_is_said_so_and_the_run_goes_on() {
        let tool = AskUser::new(&AskUserConfig { timeout_secs: None });
        let answer = tool
            .call(
                args(json!({"question": "Which site?"})),
                &CallContext::default(),
            )
            .await
            .unwrap();
        assert!(answer.contains("cannot be asked"), "{answer}");
    }
}
