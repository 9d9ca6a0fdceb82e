//! Environment interpolation with the compose file semantics:
//!
//! | form | unset | set but empty |
//! |---|---|---|
//! | `$VAR`, `${VAR}` | empty (with a warning) | empty |
//! | `${VAR:-default}` | default | default |
//! | `${VAR-default}` | default | empty |
//! | `${VAR:?message}` | error | error |
//! | `${VAR?message}` | error | empty |
//! | `${VAR:+other}` | empty | empty (`other` when set and non-empty) |
//! | `${VAR+other}` | empty | other |
//!
//! `$$` is a literal `$`. Defaults and messages may themselves contain interpolations
//! (`${A:-${B}}`), as compose-go allows. It is applied to YAML scalar values after parsing, never
//! to raw text, so a variable's value can never inject YAML structure.

use std::fmt;

/// Why interpolation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolationError {
    /// `${VAR:?message}` / `${VAR?message}` with the variable missing.
    Required { variable: String, message: String },
    /// A malformed expression such as `${}` or an unterminated `${VAR`.
    Syntax { expression: String, reason: String },
}

impl fmt::Display for InterpolationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterpolationError::Required { variable, message } if message.is_empty() => {
                write!(f, "required variable {variable} is missing a value")
            }
            InterpolationError::Required { variable, message } => {
                write!(
                    f,
                    "required variable {variable} is missing a value: {message}"
                )
            }
            InterpolationError::Syntax { expression, reason } => {
                write!(
                    f,
                    "invalid interpolation format for {expression:?}: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for InterpolationError {}

/// The result of interpolating one string.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Interpolated {
    pub value: String,
    /// Variables referenced without a default while unset (compose warns and uses "").
    pub unset: Vec<String>,
}

/// Interpolates `input`, looking variables up with `lookup`.
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, InterpolationError> {
    let mut out = Interpolated::default();
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.value.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.value.push('$');
                i += 2;
            }
            Some('{') => {
                let end =
                    matching_brace(&chars, i + 1).ok_or_else(|| InterpolationError::Syntax {
                        expression: input.to_string(),
                        reason: "unterminated ${".into(),
                    })?;
                let body: String = chars[i + 2..end].iter().collect();
                let replaced = braced(&body, input, lookup, &mut out.unset)?;
                out.value.push_str(&replaced);
                i = end + 1;
            }
            Some(n) if is_name_start(*n) => {
                let mut j = i + 1;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                match lookup(&name) {
                    Some(v) => out.value.push_str(&v),
                    None => out.unset.push(name),
                }
                i = j;
            }
            // A lone `$` (end of string, or before a character that cannot start a name) is
            // kept literally, as compose does.
            _ => {
                out.value.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Index of the `}` closing the `{` at `open`, honouring nested `${...}`.
fn matching_brace(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Evaluates the inside of `${...}`.
fn braced(
    body: &str,
    whole: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<String, InterpolationError> {
    let name_len = body
        .char_indices()
        .find(|(_, c)| !is_name_char(*c))
        .map(|(i, _)| i)
        .unwrap_or(body.len());
    let name = &body[..name_len];
    let syntax = |reason: &str| InterpolationError::Syntax {
        expression: whole.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(syntax("expected a variable name after ${"));
    }
    let rest = &body[name_len..];
    let value = lookup(name);
    // Operators: `:-`, `-`, `:?`, `?`, `:+`, `+`. With a colon, empty counts as unset.
    let (colon, op, arg) = if let Some(r) = rest.strip_prefix(':') {
        let mut cs = r.chars();
        match cs.next() {
            Some(op @ ('-' | '?' | '+')) => (true, Some(op), cs.as_str()),
            _ => return Err(syntax("expected one of :- :? :+ after the variable name")),
        }
    } else {
        let mut cs = rest.chars();
        match cs.next() {
            None => (false, None, ""),
            Some(op @ ('-' | '?' | '+')) => (false, Some(op), cs.as_str()),
            Some(_) => return Err(syntax("unexpected character after the variable name")),
        }
    };
    let missing = match &value {
        None => true,
        Some(v) => colon && v.is_empty(),
    };
    let nested = |text: &str, unset: &mut Vec<String>| -> Result<String, InterpolationError> {
        let inner = interpolate(text, lookup)?;
        unset.extend(inner.unset);
        Ok(inner.value)
    };
    match op {
        None => match value {
            Some(v) => Ok(v),
            None => {
                unset.push(name.to_string());
                Ok(String::new())
            }
        },
        Some('-') if missing => nested(arg, unset),
        Some('?') if missing => Err(InterpolationError::Required {
            variable: name.to_string(),
            message: nested(arg, unset)?,
        }),
        Some('+') if missing => Ok(String::new()),
        Some('+') => nested(arg, unset),
        Some(_) => Ok(value.unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn run(input: &str, pairs: &[(&str, &str)]) -> Result<String, InterpolationError> {
        interpolate(input, &env(pairs)).map(|i| i.value)
    }

    #[test]
    fn compose_table() {
        let set = [("A", "x"), ("E", "")];
        assert_eq!(run("${A}", &set).unwrap(), "x");
        assert_eq!(run("$A/b", &set).unwrap(), "x/b");
        assert_eq!(run("${U}", &set).unwrap(), "");
        assert_eq!(run("${U:-d}", &set).unwrap(), "d");
        assert_eq!(run("${E:-d}", &set).unwrap(), "d");
        assert_eq!(run("${E-d}", &set).unwrap(), "");
        assert_eq!(run("${U-d}", &set).unwrap(), "d");
        assert_eq!(run("${A:+r}", &set).unwrap(), "r");
        assert_eq!(run("${E:+r}", &set).unwrap(), "");
        assert_eq!(run("${E+r}", &set).unwrap(), "r");
        assert_eq!(run("$$A", &set).unwrap(), "$A");
        assert_eq!(run("a$", &set).unwrap(), "a$");
        assert_eq!(run("${U:-${A}}", &set).unwrap(), "x");
    }

    #[test]
    fn required_variables_name_themselves() {
        let err = run("${TOKEN:?set the token}", &[]).unwrap_err();
        assert_eq!(
            err,
            InterpolationError::Required {
                variable: "TOKEN".into(),
                message: "set the token".into()
            }
        );
        assert!(err.to_string().contains("TOKEN"));
        assert!(run("${E:?m}", &[("E", "")]).is_err());
        assert_eq!(run("${E?m}", &[("E", "")]).unwrap(), "");
    }

    #[test]
    fn malformed_expressions_are_errors() {
        assert!(matches!(
            run("${", &[]),
            Err(InterpolationError::Syntax { .. })
        ));
        assert!(matches!(
            run("${}", &[]),
            Err(InterpolationError::Syntax { .. })
        ));
        assert!(matches!(
            run("${A:x}", &[]),
            Err(InterpolationError::Syntax { .. })
        ));
        assert!(matches!(
            run("${1A}", &[]),
            Err(InterpolationError::Syntax { .. })
        ));
    }

    #[test]
    fn unset_variables_are_reported() {
        let r = interpolate("${X}-${Y:-y}-$Z", &env(&[])).unwrap();
        assert_eq!(r.value, "-y-");
        assert_eq!(r.unset, vec!["X".to_string(), "Z".to_string()]);
    }
}
