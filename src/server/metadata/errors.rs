//! Errors of the metadata service and their wire encoding: flattened Arsenal errors (§2.4).
//!
//! `type` is always a real Arsenal error name: callers test `err.is.<Name>`, which exists only
//! for known names. The description is the reference text, except for the not-implemented
//! versioning paths where a precise text helps whoever reads CloudServer's logs; the context
//! (which call, which key) goes into `stack`, which the client keeps as the stack string.

use serde_json::{json, Value};

use crate::server::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum MdError {
    #[error("ObjNotFound: {0}")]
    ObjNotFound(String),
    #[error("InvalidArgument: {0}")]
    InvalidArgument(String),
    #[error("NotImplemented: {0}")]
    NotImplemented(String),
    #[error("InternalError: {0}")]
    Internal(String),
    /// A plain (non-Arsenal) error, sent as `{"message": ...}` like the reference does for the
    /// JS exceptions of its versioning layer (e.g. a versioned put of a non-string value, §2.4).
    #[error("{0}")]
    Plain(String),
}

impl From<StorageError> for MdError {
    fn from(e: StorageError) -> Self {
        MdError::Internal(e.to_string())
    }
}

impl MdError {
    pub fn type_name(&self) -> &'static str {
        match self {
            MdError::ObjNotFound(_) => "ObjNotFound",
            MdError::InvalidArgument(_) => "InvalidArgument",
            MdError::NotImplemented(_) => "NotImplemented",
            MdError::Internal(_) => "InternalError",
            MdError::Plain(_) => "Error",
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            MdError::ObjNotFound(_) => 404,
            MdError::InvalidArgument(_) => 400,
            MdError::NotImplemented(_) => 501,
            MdError::Internal(_) | MdError::Plain(_) => 500,
        }
    }

    fn context(&self) -> &str {
        match self {
            MdError::ObjNotFound(c)
            | MdError::InvalidArgument(c)
            | MdError::NotImplemented(c)
            | MdError::Internal(c)
            | MdError::Plain(c) => c,
        }
    }

    pub fn description(&self) -> String {
        match self {
            MdError::ObjNotFound(_) => "This object does not exist".into(),
            MdError::InvalidArgument(_) => "Invalid Argument".into(),
            MdError::NotImplemented(c) if c.is_empty() => {
                "A header you provided implies functionality that is not implemented.".into()
            }
            MdError::NotImplemented(c) => format!(
                "A header you provided implies functionality that is not implemented. ({c})"
            ),
            MdError::Internal(_) => "We encountered an internal error. Please try again.".into(),
            MdError::Plain(m) => m.clone(),
        }
    }

    /// The flattened Arsenal error object sent as the first element of an error ack.
    pub fn to_wire(&self) -> Value {
        if let MdError::Plain(message) = self {
            return json!({ "message": message });
        }
        json!({
            "is_arsenal_error": true,
            "code": self.code(),
            "description": self.description(),
            "type": self.type_name(),
            "stack": format!("Error: {}\n    at zenkoctl metadata service ({})", self.type_name(), self.context()),
        })
    }
}
