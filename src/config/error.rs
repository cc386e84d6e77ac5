//! Config errors: every one names its file and, where it has one, its key.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The file, as the user named it (e.g. `agents/servicenow.toml`).
    pub file: PathBuf,
    /// The dotted key path (`tools[0].store`), or `None` for file-level problems.
    pub key: Option<String>,
    /// What is wrong, for a human.
    pub message: String,
}

impl Error {
    /// A problem with the file as a whole (unreadable, bad name, TOML syntax).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            key: None,
            message: message.into(),
        }
    }

    /// A problem with one key of the file.
    pub fn key(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        let key = key.into();
        Self {
            file: file.to_path_buf(),
            key: (!key.is_empty()).then_some(key),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}: {key}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for Error {}

/// Every problem found in a set of config files; never empty when returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Errors(pub Vec<Error>);

impl Errors {
    /// Whether no problem was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` if no problem was found, else `Err(self)`.
    ///
    /// # Errors
    /// `self`, when it holds at least one problem.
    pub fn into_result<T>(self, value: T) -> Result<T, Errors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} configuration error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

impl Extend<Error> for Errors {
    fn extend<T: IntoIterator<Item = Error>>(&mut self, iter: T) {
        self.0.extend(iter);
    }
}
