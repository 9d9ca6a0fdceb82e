//! The physical key layout (level-sublevel's, §4.2) and the LevelUP read-stream options (§4.4).
//!
//! A key `k` in sublevel path `[a, b]` is stored as `!a#b!k`; the root path `[]` gives `!!k`.
//! Keeping this layout makes `rawListKeys` (and so CloudServer's `countItems`) see exactly what
//! it sees against the reference.

use std::ops::Bound;

use serde_json::Value;

use super::errors::MdError;
use crate::server::storage::Scan;

/// `"!" + path.join("#") + "!"`.
pub fn sublevel_prefix(path: &[String]) -> Vec<u8> {
    let mut p = Vec::with_capacity(2 + path.iter().map(|s| s.len() + 1).sum::<usize>());
    p.push(b'!');
    for (i, name) in path.iter().enumerate() {
        if i > 0 {
            p.push(b'#');
        }
        p.extend_from_slice(name.as_bytes());
    }
    p.push(b'!');
    p
}

pub fn raw_key(path: &[String], key: &str) -> Vec<u8> {
    let mut k = sublevel_prefix(path);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The versioning layer's database name (`subLevel.join("::")`) back to a path (§4.2).
pub fn db_path(db: &str) -> Vec<String> {
    if db.is_empty() {
        Vec::new()
    } else {
        db.split("::").map(str::to_string).collect()
    }
}

/// JavaScript's `String(v)`, which the reference applies to non-string values (§4.3).
pub fn js_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => js_number(n),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Null => String::new(),
                other => js_string(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".into(),
    }
}

fn js_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

/// What a read stream yields per entry (`keys`/`values` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemShape {
    /// `{"key":k,"value":v}`
    KeyValue,
    /// bare key strings (`values:false`)
    Keys,
    /// bare value strings (`keys:false`)
    Values,
    /// `keys:false, values:false`: LevelUP would push `null`, which ends a Node object stream
    /// at once, so the reference stream is empty; we send no item either.
    Nothing,
}

/// Parsed read-stream options.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub scan: Scan,
    pub shape: ItemShape,
}

fn bound_str(opts: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    match opts.get(name) {
        None | Some(Value::Null) => None,
        Some(v) => Some(js_string(v)),
    }
}

/// Parse `createReadStream`/`rawListKeys` options into a scan over raw keys.
///
/// `prefix` is the sublevel prefix (`None` for `rawListKeys`, which has no default bounds and
/// applies the options to raw keys). With a prefix, the missing-bound defaults are the
/// reference's: lower `gte "\x00"`, upper `lte "\uFFFF"` (§4.4 quirk, reproduced on purpose so S3
/// listings of keys starting above U+FFFF match upstream).
pub fn read_options(opts: Option<&Value>, prefix: Option<&[u8]>) -> Result<ReadOptions, MdError> {
    let empty = serde_json::Map::new();
    let opts = match opts {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(MdError::InvalidArgument(format!(
                "read stream options must be an object, got {other}"
            )))
        }
    };
    let reverse = opts.get("reverse").is_some_and(truthy);
    let (start, end) = (bound_str(opts, "start"), bound_str(opts, "end"));
    let legacy_low = if reverse { end.clone() } else { start.clone() };
    let legacy_high = if reverse { start } else { end };
    let with = |s: String| -> Vec<u8> {
        let mut k = prefix.map(<[u8]>::to_vec).unwrap_or_default();
        k.extend_from_slice(s.as_bytes());
        k
    };
    let lower = if let Some(v) = bound_str(opts, "gt") {
        Bound::Excluded(with(v))
    } else if let Some(v) = bound_str(opts, "gte")
        .or_else(|| bound_str(opts, "min"))
        .or(legacy_low)
    {
        Bound::Included(with(v))
    } else if prefix.is_some() {
        Bound::Included(with("\0".into()))
    } else {
        Bound::Unbounded
    };
    let upper = if let Some(v) = bound_str(opts, "lt") {
        Bound::Excluded(with(v))
    } else if let Some(v) = bound_str(opts, "lte")
        .or_else(|| bound_str(opts, "max"))
        .or(legacy_high)
    {
        Bound::Included(with(v))
    } else if prefix.is_some() {
        Bound::Included(with("\u{FFFF}".into()))
    } else {
        Bound::Unbounded
    };
    // LevelUP: absent or negative = unlimited, 0 = no items.
    let limit = match opts.get("limit") {
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f >= 0.0 => Some(f as u64),
            _ => None,
        },
        _ => None,
    };
    let keys = opts.get("keys") != Some(&Value::Bool(false));
    let values = opts.get("values") != Some(&Value::Bool(false));
    let shape = match (keys, values) {
        (true, true) => ItemShape::KeyValue,
        (true, false) => ItemShape::Keys,
        (false, true) => ItemShape::Values,
        (false, false) => ItemShape::Nothing,
    };
    Ok(ReadOptions {
        scan: Scan {
            lower,
            upper,
            reverse,
            limit,
        },
        shape,
    })
}

/// JavaScript truthiness of a JSON value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layout() {
        assert_eq!(raw_key(&["bucket".into()], "k"), b"!bucket!k");
        assert_eq!(raw_key(&["a".into(), "b".into()], "k"), b"!a#b!k");
        assert_eq!(raw_key(&[], "k"), b"!!k");
        assert_eq!(
            raw_key(
                &["..recordLogs".into(), "s3-recordlog".into()],
                "0000000000000001"
            ),
            b"!..recordLogs#s3-recordlog!0000000000000001"
        );
        assert_eq!(db_path(""), Vec::<String>::new());
        assert_eq!(db_path("a::b"), vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn js_strings() {
        assert_eq!(js_string(&json!({"a":1})), "[object Object]");
        assert_eq!(js_string(&json!(42)), "42");
        assert_eq!(js_string(&json!(1.5)), "1.5");
        assert_eq!(js_string(&json!([1, null, "x"])), "1,,x");
        assert_eq!(js_string(&json!(null)), "null");
    }

    #[test]
    fn option_precedence() {
        let p = b"!b!".as_slice();
        let o = read_options(Some(&json!({"gt":"a","gte":"b","start":"c"})), Some(p)).unwrap();
        assert_eq!(o.scan.lower, Bound::Excluded(b"!b!a".to_vec()));
        assert_eq!(
            o.scan.upper,
            Bound::Included("!b!\u{FFFF}".as_bytes().to_vec())
        );
        let o = read_options(
            Some(&json!({"start":"b","end":"c","reverse":true})),
            Some(p),
        )
        .unwrap();
        assert_eq!(o.scan.lower, Bound::Included(b"!b!c".to_vec()));
        assert_eq!(o.scan.upper, Bound::Included(b"!b!b".to_vec()));
        let o = read_options(Some(&json!({})), None).unwrap();
        assert_eq!(o.scan.lower, Bound::Unbounded);
        assert_eq!(o.scan.limit, None);
        let o = read_options(Some(&json!({"limit":-1,"values":false})), Some(p)).unwrap();
        assert_eq!(o.scan.limit, None);
        assert_eq!(o.shape, ItemShape::Keys);
        assert!(read_options(Some(&json!("x")), Some(p)).is_err());
    }
}
