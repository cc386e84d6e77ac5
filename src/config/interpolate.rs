//! `${VAR}`, `${VAR:-default}` and `${VAR:?message}` interpolation.
//!
//! A pure function over an explicit map of variables: it never reads the process
//! environment (only `main.rs` does, once). `$$` is a literal `$`. Values containing a
//! newline are refused, so a variable cannot smuggle structure into a config value.

use std::collections::HashMap;

/// Why a string could not be interpolated. Displayed after the key it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `${VAR}` with `VAR` unset.
    #[error("${{{0}}} is not set")]
    Unset(String),
    /// `${VAR:?message}` with `VAR` unset or empty.
    #[error("${{{name}}} is required: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The author's message.
        message: String,
    },
    /// The value of `VAR` contains a newline.
    #[error("${{{0}}} contains a newline, which is not allowed in a config value")]
    Newline(String),
    /// `${` without a matching `}`, or an invalid variable name.
    #[error(
        "malformed variable reference {0:?}: expected ${{NAME}}, ${{NAME:-default}} or ${{NAME:?message}}"
    )]
    Malformed(String),
}

/// Replaces every variable reference in `input` with its value from `vars`.
///
/// # Errors
/// Every problem in `input`, in order (never just the first).
pub fn interpolate(input: &str, vars: &HashMap<String, String>) -> Result<String, Vec<Error>> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut errors = Vec::new();
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                errors.push(Error::Malformed(rest[pos..].to_owned()));
                return Err(errors);
            };
            match expand(&body[..end], vars) {
                Ok(value) => out.push_str(&value),
                Err(e) => errors.push(e),
            }
            rest = &body[end + 1..];
        } else {
            // A lone `$` (e.g. in a password) stays as it is.
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The names of the variables `input` refers to (`${NAME}`, `${NAME:-x}`, `${NAME:?x}`).
pub fn referenced_vars(input: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = input;
    while let Some(pos) = rest.find("${") {
        let body = &rest[pos + 2..];
        let Some(end) = body.find('}') else { break };
        let reference = &body[..end];
        let name = reference
            .split(":-")
            .next()
            .and_then(|n| n.split(":?").next())
            .unwrap_or_default();
        let escaped = pos > 0 && rest[..pos].ends_with('$');
        if !name.is_empty() && !escaped {
            names.push(name.to_owned());
        }
        rest = &body[end + 1..];
    }
    names
}

fn expand(reference: &str, vars: &HashMap<String, String>) -> Result<String, Error> {
    let (name, op) = match reference.find(":-").or_else(|| reference.find(":?")) {
        Some(i) => (
            &reference[..i],
            Some((&reference[i..i + 2], &reference[i + 2..])),
        ),
        None => (reference, None),
    };
    let valid_name = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(Error::Malformed(format!("${{{reference}}}")));
    }
    let value = vars.get(name).map(String::as_str);
    let value = match (value, op) {
        (Some(v), None) => v.to_owned(),
        (None, None) => return Err(Error::Unset(name.to_owned())),
        (Some(v), Some(_)) if !v.is_empty() => v.to_owned(),
        (_, Some((":-", default))) => default.to_owned(),
        (_, Some((_, message))) => {
            return Err(Error::Required {
                name: name.to_owned(),
                message: message.to_owned(),
            });
        }
    };
    if value.contains('\n') || value.contains('\r') {
        return Err(Error::Newline(name.to_owned()));
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars() -> HashMap<String, String> {
        [("KEY", "sk-1"), ("EMPTY", ""), ("NL", "a\nb")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn plain_strings_are_unchanged() {
        assert_eq!(interpolate("gpt-4o-mini", &vars()).unwrap(), "gpt-4o-mini");
        assert_eq!(interpolate("pa$word", &vars()).unwrap(), "pa$word");
    }

    #[test]
    fn variables_defaults_and_escapes_expand() {
        let v = vars();
        assert_eq!(interpolate("Bearer ${KEY}", &v).unwrap(), "Bearer sk-1");
        assert_eq!(interpolate("${MISSING:-x}", &v).unwrap(), "x");
        assert_eq!(interpolate("${EMPTY:-x}", &v).unwrap(), "x");
        assert_eq!(interpolate("${EMPTY}", &v).unwrap(), "");
        assert_eq!(interpolate("${MISSING:-}", &v).unwrap(), "");
        assert_eq!(interpolate("$${KEY}", &v).unwrap(), "${KEY}");
        assert_eq!(interpolate("${KEY:?set it}", &v).unwrap(), "sk-1");
        assert_eq!(
            interpolate("${MISSING:-http://a:1/v1}", &v).unwrap(),
            "http://a:1/v1"
        );
    }

    #[test]
    fn every_error_is_reported() {
        let errors = interpolate("${A} ${B:?needed for x} ${NL} ${1X}", &vars()).unwrap_err();
        assert_eq!(
            errors,
            vec![
                Error::Unset("A".into()),
                Error::Required {
                    name: "B".into(),
                    message: "needed for x".into()
                },
                Error::Newline("NL".into()),
                Error::Malformed("${1X}".into()),
            ]
        );
        assert_eq!(errors[0].to_string(), "${A} is not set");
    }

    #[test]
    fn referenced_variables_are_listed() {
        assert_eq!(
            referenced_vars("${OPENAI_API_KEY:-}"),
            vec!["OPENAI_API_KEY"]
        );
        assert_eq!(referenced_vars("a ${X} b ${Y:?m}"), vec!["X", "Y"]);
        assert!(referenced_vars("sk-plain").is_empty());
    }

    #[test]
    fn unterminated_reference_is_malformed() {
        let errors = interpolate("x ${KEY", &vars()).unwrap_err();
        assert!(matches!(&errors[0], Error::Malformed(s) if s == "${KEY"));
    }
}
