//! The pipeline every config file goes through: TOML syntax → `${VAR}` interpolation →
//! serde with key paths, reporting every mismatch rather than the first.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::{Error, Errors, Vars, interpolate};

/// Parses one config file: TOML → interpolation → serde with key paths.
///
/// # Errors
/// The TOML syntax error, or every interpolation error and every type/field mismatch.
pub fn parse_file<T: DeserializeOwned>(file: &Path, text: &str, vars: &Vars) -> Result<T, Errors> {
    parse_file_recovering(file, text, vars).map_err(|(_, errors)| errors)
}

/// [`parse_file`], also giving back, when the file has errors, the value read without the
/// keys that were wrong (when one can be made), so that parts of the file that do not depend
/// on those keys can still be checked and their problems reported in the same run.
///
/// # Errors
/// The value without the wrong keys (if any) and every problem found.
pub fn parse_file_recovering<T: DeserializeOwned>(
    file: &Path,
    text: &str,
    vars: &Vars,
) -> Result<T, (Option<T>, Errors)> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|span| line_col(text, span.start))
            .map(|(l, c)| format!(" (line {l}, column {c})"))
            .unwrap_or_default();
        (
            None,
            Errors(vec![Error::file(
                file,
                format!("invalid TOML{at}: {}", e.message().trim()),
            )]),
        )
    })?;
    let mut errors = Errors::default();
    let mut failed = Vec::new();
    for (key, value) in table.iter_mut() {
        interpolate_value(
            file,
            vec![Step::Key(key.clone())],
            value,
            vars,
            &mut errors,
            &mut failed,
        );
    }
    // A value that could not be interpolated is left out, so that the rest is still read.
    for steps in &failed {
        remove_at(&mut table, steps);
    }
    let recovered = deserialize_recovering::<T>(table, failed);
    errors.extend(
        recovered
            .errors
            .into_iter()
            .map(|(key, message)| Error::key(file, key, message)),
    );
    match recovered.value {
        Some(value) if errors.is_empty() => Ok(value),
        value => Err((value, errors)),
    }
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A key of a table.
    Key(String),
    /// An index into an array.
    Index(usize),
}

/// `tools[0].store`: keys joined by dots, indexes in brackets; empty for the whole file.
pub fn path_string(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(key) if out.is_empty() => out.push_str(key),
            Step::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// What [`deserialize_recovering`] found.
#[derive(Debug)]
pub struct Recovered<T> {
    /// The value read without the keys that were wrong; `None` when even that fails (a
    /// required key is wrong or missing at the top).
    pub value: Option<T>,
    /// Every problem, as `(key path, message)`, in the order found.
    pub errors: Vec<(String, String)>,
}

/// Most keys one table can have wrong before the rest is not looked at.
const MAX_ERRORS_PER_TABLE: usize = 100;

/// Deserializes `table` into `T`, reporting every mismatch rather than the first.
///
/// serde stops at the first error. Each one found is recorded and the key it names is taken
/// out of the table (an error inside an array takes the whole array out, so that the indexes
/// of later errors stay those of the file), then serde runs again. Taking out a required key
/// makes serde say it is missing: that message is not the user's problem and is dropped, and
/// since a struct reports a missing field only after reading all its other keys, the struct
/// itself is taken out next, so its siblings are still read. `removed` lists keys already
/// taken out by the caller (values that could not be interpolated).
pub fn deserialize_recovering<T: DeserializeOwned>(
    mut table: toml::Table,
    mut removed: Vec<Vec<Step>>,
) -> Recovered<T> {
    let mut errors = Vec::new();
    for _ in 0..MAX_ERRORS_PER_TABLE {
        let e = match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(table.clone())) {
            Ok(value) => {
                return Recovered {
                    value: Some(value),
                    errors,
                };
            }
            Err(e) => e,
        };
        let mut steps = Vec::new();
        let mut known = true;
        for segment in e.path().iter() {
            match segment {
                serde_path_to_error::Segment::Map { key } => steps.push(Step::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => steps.push(Step::Index(*index)),
                _ => known = false,
            }
        }
        let message = e.inner().message().trim().to_owned();
        let missing = missing_field(&message);
        let consequence = missing.is_some_and(|field| {
            let mut at = steps.clone();
            at.push(Step::Key(field.to_owned()));
            removed.contains(&at)
        });
        if !consequence {
            errors.push((path_string(&steps), message));
        }
        if !known {
            break;
        }
        // A missing field is reported by its struct once all its keys were read: go on
        // without the struct. Anything else: go on without the key (or the array) it names.
        while matches!(steps.last(), Some(Step::Index(_))) {
            steps.pop();
        }
        if steps.is_empty() || !remove_at(&mut table, &steps) {
            break;
        }
        removed.push(steps);
    }
    Recovered {
        value: None,
        errors,
    }
}

/// The field of serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
}

/// Removes the key at `steps` (which ends with a key); whether it was there.
fn remove_at(table: &mut toml::Table, steps: &[Step]) -> bool {
    let Some((Step::Key(last), parents)) = steps.split_last() else {
        return false;
    };
    let mut current = table;
    let mut rest = parents.iter().peekable();
    while let Some(step) = rest.next() {
        let Step::Key(key) = step else {
            return false;
        };
        let mut value = match current.get_mut(key) {
            Some(value) => value,
            None => return false,
        };
        while let Some(Step::Index(i)) = rest.peek() {
            value = match value {
                toml::Value::Array(items) => match items.get_mut(*i) {
                    Some(item) => item,
                    None => return false,
                },
                _ => return false,
            };
            rest.next();
        }
        current = match value {
            toml::Value::Table(t) => t,
            _ => return false,
        };
    }
    current.remove(last).is_some()
}

/// The variables each string value of a file refers to, by key path as errors name keys
/// (`model.api_key`, `tools[0].instance_url`), read from the text before interpolation. A
/// value that refers to none is left out; text that is not TOML gives an empty map.
pub fn referenced_variables(text: &str) -> BTreeMap<String, Vec<String>> {
    fn walk(path: String, value: &toml::Value, out: &mut BTreeMap<String, Vec<String>>) {
        match value {
            toml::Value::String(s) => {
                let names = interpolate::referenced_vars(s);
                if !names.is_empty() {
                    out.insert(path, names);
                }
            }
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(format!("{path}[{i}]"), item, out);
                }
            }
            toml::Value::Table(t) => {
                for (k, v) in t {
                    walk(format!("{path}.{k}"), v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(table) = toml::from_str::<toml::Table>(text) {
        for (key, value) in &table {
            walk(key.clone(), value, &mut out);
        }
    }
    out
}

fn interpolate_value(
    file: &Path,
    steps: Vec<Step>,
    value: &mut toml::Value,
    vars: &Vars,
    errors: &mut Errors,
    failed: &mut Vec<Vec<Step>>,
) {
    match value {
        toml::Value::String(s) => match interpolate::interpolate(s, vars) {
            Ok(v) => *s = v,
            Err(errs) => {
                let path = path_string(&steps);
                errors.extend(
                    errs.into_iter()
                        .map(|e| Error::key(file, path.clone(), e.to_string())),
                );
                let mut steps = steps;
                while matches!(steps.last(), Some(Step::Index(_))) {
                    steps.pop();
                }
                if !failed.contains(&steps) {
                    failed.push(steps);
                }
            }
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let mut steps = steps.clone();
                steps.push(Step::Index(i));
                interpolate_value(file, steps, item, vars, errors, failed);
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let mut steps = steps.clone();
                steps.push(Step::Key(k.clone()));
                interpolate_value(file, steps, v, vars, errors, failed);
            }
        }
        _ => {}
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}
