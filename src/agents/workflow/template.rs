//! Templates of a step's input and arguments: text with `{{input}}` (what the step is given),
//! `{{task}}` (the workflow's task) and `{{steps.<name>}}` (an earlier step's output).
//!
//! Parsed once at load, so that a misspelt placeholder is a config error naming its key;
//! rendering never fails.

use std::collections::BTreeMap;

use serde_json::Value;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Task,
    Input,
    Step(String),
}

/// What placeholders stand for in one rendering.
pub struct Values<'a> {
    /// The workflow's task.
    pub task: &'a str,
    /// The step's input.
    pub input: &'a str,
    /// The outputs of the steps that ran, by step name.
    pub steps: &'a BTreeMap<String, String>,
}

impl Template {
    /// The template that is just the step's input.
    pub fn input() -> Self {
        Self(vec![Part::Input])
    }

    /// Parses `text`.
    ///
    /// # Errors
    /// An unknown placeholder, or `{{` without `}}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err("`{{` without a closing `}}`".into());
            };
            let name = after[..close].trim();
            parts.push(match name {
                "input" => Part::Input,
                "task" => Part::Task,
                _ => match name.strip_prefix("steps.") {
                    Some(step) if !step.is_empty() => Part::Step(step.to_owned()),
                    _ => {
                        return Err(format!(
                            "unknown placeholder `{{{{{name}}}}}`: use {{{{input}}}}, {{{{task}}}} or {{{{steps.<name>}}}}"
                        ));
                    }
                },
            });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self(parts))
    }

    /// The step names `{{steps.<name>}}` refers to.
    pub fn steps(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Step(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The text, placeholders filled in (a step that has not run is empty).
    pub fn render(&self, values: &Values<'_>) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Task => out.push_str(values.task),
                Part::Input => out.push_str(values.input),
                Part::Step(name) => {
                    if let Some(output) = values.steps.get(name) {
                        out.push_str(output);
                    }
                }
            }
        }
        out
    }
}

/// A tool step's `arguments`: JSON whose strings are templates.
#[derive(Debug, Clone, PartialEq)]
pub enum Arguments {
    /// A string: a template.
    Text(Template),
    /// Any other scalar, as is.
    Value(Value),
    /// An array.
    List(Vec<Arguments>),
    /// A table.
    Object(Vec<(String, Arguments)>),
}

impl Arguments {
    /// No arguments: `{}`.
    pub fn empty() -> Self {
        Arguments::Object(Vec::new())
    }

    /// Parses a TOML table; each problem is `(key below `at`, message)`.
    ///
    /// # Errors
    /// Every string that is not a valid template.
    pub fn parse(table: &toml::Table, at: &str) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let parsed = Self::parse_value(&toml::Value::Table(table.clone()), at, &mut errors);
        if errors.is_empty() {
            Ok(parsed)
        } else {
            Err(errors)
        }
    }

    fn parse_value(value: &toml::Value, at: &str, errors: &mut Vec<(String, String)>) -> Self {
        match value {
            toml::Value::String(s) => match Template::parse(s) {
                Ok(t) => Arguments::Text(t),
                Err(e) => {
                    errors.push((at.to_owned(), e));
                    Arguments::Value(Value::Null)
                }
            },
            toml::Value::Integer(i) => Arguments::Value(Value::from(*i)),
            toml::Value::Float(f) => Arguments::Value(
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            ),
            toml::Value::Boolean(b) => Arguments::Value(Value::Bool(*b)),
            toml::Value::Datetime(d) => Arguments::Value(Value::String(d.to_string())),
            toml::Value::Array(items) => Arguments::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Self::parse_value(v, &format!("{at}[{i}]"), errors))
                    .collect(),
            ),
            toml::Value::Table(t) => Arguments::Object(
                t.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            Self::parse_value(v, &format!("{at}.{k}"), errors),
                        )
                    })
                    .collect(),
            ),
        }
    }

    /// The step names its templates refer to.
    pub fn steps(&self) -> Vec<&str> {
        match self {
            Arguments::Text(t) => t.steps().collect(),
            Arguments::Value(_) => Vec::new(),
            Arguments::List(items) => items.iter().flat_map(Arguments::steps).collect(),
            Arguments::Object(fields) => fields.iter().flat_map(|(_, v)| v.steps()).collect(),
        }
    }

    /// The arguments, templates filled in.
    pub fn render(&self, values: &Values<'_>) -> Value {
        match self {
            Arguments::Text(t) => Value::String(t.render(values)),
            Arguments::Value(v) => v.clone(),
            Arguments::List(items) => {
                Value::Array(items.iter().map(|a| a.render(values)).collect())
            }
            Arguments::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.render(values)))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn values<'a>(steps: &'a BTreeMap<String, String>) -> Values<'a> {
        Values {
            task: "the task",
            input: "the input",
            steps,
        }
    }

    #[test]
    fn placeholders_are_filled_in() {
        let steps: BTreeMap<String, String> = [("records".to_owned(), "R".to_owned())].into();
        let t =
            Template::parse("Task: {{task}}; in: {{ input }}; r: {{steps.records}}; {x}").unwrap();
        assert_eq!(
            t.render(&values(&steps)),
            "Task: the task; in: the input; r: R; {x}"
        );
        assert_eq!(t.steps().collect::<Vec<_>>(), ["records"]);
        assert_eq!(
            Template::input().render(&values(&steps)),
            "the input",
            "the default template"
        );
    }

    #[test]
    fn a_misspelt_placeholder_is_refused() {
        assert!(
            Template::parse("{{inptu}}")
                .unwrap_err()
                .starts_with("unknown placeholder `{{inptu}}`: use {{input}}, {{task}}")
        );
        assert!(Template::parse("{{steps.}}").is_err());
        assert_eq!(
            Template::parse("a {{input").unwrap_err(),
            "`{{` without a closing `}}`"
        );
    }

    #[test]
    fn arguments_render_their_strings_and_keep_other_values() {
        let table: toml::Table =
            toml::from_str("query = \"{{input}}\"\nlimit = 3\ntags = [\"{{task}}\"]").unwrap();
        let args = Arguments::parse(&table, "workflow.steps[0].arguments").unwrap();
        let steps = BTreeMap::new();
        assert_eq!(
            args.render(&values(&steps)),
            serde_json::json!({"query": "the input", "limit": 3, "tags": ["the task"]})
        );
        let bad: toml::Table = toml::from_str("q = { deep = \"{{nope}}\" }").unwrap();
        let errors = Arguments::parse(&bad, "workflow.steps[0].arguments").unwrap_err();
        assert_eq!(errors[0].0, "workflow.steps[0].arguments.q.deep");
    }
}
