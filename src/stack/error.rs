//! Errors for bad stack input. Every one names where the problem is (file, line, key) so the
//! user can go straight to it.

use std::fmt;

/// A problem in a values file, a `--set`, a template or a rendered stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackError {
    /// The file (or `--set key=value`) the problem is in.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key path (`services.s3-dmd.ports[0]`), when known.
    pub key: Option<String>,
    pub message: String,
}

impl StackError {
    pub fn new(file: impl Into<String>, message: impl Into<String>) -> Self {
        StackError {
            file: file.into(),
            line: None,
            key: None,
            message: message.into(),
        }
    }

    pub fn at(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }

    pub fn key(mut self, key: impl fmt::Display) -> Self {
        let key = key.to_string();
        self.key = (!key.is_empty() && key != ".").then_some(key);
        self
    }
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for StackError {}

/// Several problems found in one pass (validation reports all of them at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackErrors(pub Vec<StackError>);

impl fmt::Display for StackErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} in the stack",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StackErrors {}
