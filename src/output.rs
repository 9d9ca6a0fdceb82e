//! How results and failures reach people and machines.
//!
//! People get progress and messages on stderr and results on stdout; machines ask for
//! `--output json` and get exactly one JSON document on stdout, and an exit code from [`Exit`]
//! that tells the kind of outcome apart without parsing text.

use std::fmt;
use std::io::Write;
use std::time::Instant;

use serde::Serialize;

/// Process exit codes. They are part of the CLI's contract with CI jobs and monitors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exit {
    /// Success; for `status`, healthy.
    Ok = 0,
    /// A runtime failure not covered below.
    Failure = 1,
    /// Bad input: usage, values, templates, a rendered stack that does not validate.
    InvalidInput = 2,
    /// The command exists in the command tree but is not built yet.
    NotImplemented = 3,
    /// The Docker engine (or another required endpoint) could not be reached.
    Unreachable = 4,
    /// A deploy failed: a task was rejected, crashed, or the stack could not be created.
    DeployFailed = 5,
    /// Waiting for convergence or removal ran out of time.
    Timeout = 6,
    /// A deploy failed and was rolled back.
    RolledBack = 7,
    /// `status`: running, but not every service is at its desired state or healthy.
    Degraded = 10,
    /// `status`: nothing of the stack is serving.
    Down = 11,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// An error that carries the exit code it must end the process with.
#[derive(Debug)]
pub struct CodedError {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl fmt::Display for CodedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for CodedError {}

/// Wraps an error with the exit code it maps to.
pub fn coded(exit: Exit, error: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(CodedError {
        exit,
        error: error.into(),
    })
}

/// The exit code an error maps to: the innermost [`CodedError`] wins, then known error types,
/// else [`Exit::Failure`].
pub fn exit_of(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if let Some(c) = cause.downcast_ref::<CodedError>() {
            return c.exit;
        }
        if cause.downcast_ref::<crate::stack::StackError>().is_some()
            || cause.downcast_ref::<crate::stack::StackErrors>().is_some()
        {
            return Exit::InvalidInput;
        }
    }
    Exit::Failure
}

/// Output format chosen with `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Progress and messages for people.
    #[default]
    Human,
    /// One JSON document on stdout; progress is silent.
    Json,
}

/// The channel commands report through.
#[derive(Debug, Clone)]
pub struct Output {
    pub format: Format,
    started: Instant,
}

impl Output {
    pub fn new(format: Format) -> Self {
        Output {
            format,
            started: Instant::now(),
        }
    }

    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// A progress line for people (stderr, with elapsed time); silent in JSON mode.
    pub fn progress(&self, message: impl fmt::Display) {
        if !self.is_json() {
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!("[{secs:6.1}s] {message}");
        }
    }

    /// A warning: stderr for people; in JSON mode it is kept for the final document by the
    /// caller, and also logged so it is never lost.
    pub fn warn(&self, message: impl fmt::Display) {
        if self.is_json() {
            tracing::warn!("{message}");
        } else {
            eprintln!("warning: {message}");
        }
    }

    /// Prints a command's result: `human` for people, `json` for machines.
    pub fn result<T: Serialize>(&self, json: &T, human: impl FnOnce(&mut dyn Write)) {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        match self.format {
            Format::Json => {
                let _ = serde_json::to_writer_pretty(&mut out, json);
                let _ = writeln!(out);
            }
            Format::Human => human(&mut out),
        }
    }

    /// Reports a failure in the chosen format.
    pub fn error(&self, error: &anyhow::Error, exit: Exit) {
        match self.format {
            Format::Json => {
                let doc = serde_json::json!({
                    "ok": false,
                    "exit": exit,
                    "exit_code": exit.code(),
                    "error": format!("{error:#}"),
                });
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            }
            Format::Human => eprintln!("error: {error:#}"),
        }
    }
}
