//! JavaScript's `JSON.parse` / `JSON.stringify` round trip, for the few places where the
//! reference parses object metadata and writes it back (§5.3, "master re-serialisation").
//!
//! It has to match V8 byte for byte, which `serde_json` does not:
//! * property order: integer-like keys ("0", "17", up to 2^32-2) first in ascending numeric
//!   order, then the other keys in insertion order; a duplicate key keeps its first position and
//!   its last value; a property set later is appended at the end;
//! * strings are UTF-16: `\ud800` escapes parse into lone surrogates and are written back escaped;
//! * numbers are IEEE doubles (integers above 2^53 lose precision, `1e400` is `Infinity` and
//!   becomes `null`) printed with `Number.prototype.toString`'s rules.
//!
//! Plus the JS comparisons the versioning rules apply to parsed values (`>=`, `===`, truthiness,
//! template-string conversion).

use std::cmp::Ordering;

/// A parsed JSON value as JavaScript holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Js {
    Null,
    Bool(bool),
    Num(f64),
    Str(Vec<u16>),
    Arr(Vec<Js>),
    Obj(JsObj),
}

/// An object's own properties in insertion order (see [`JsObj::ordered`] for the JS order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JsObj(Vec<(Vec<u16>, Js)>);

impl JsObj {
    pub fn get(&self, key: &str) -> Option<&Js> {
        let k: Vec<u16> = key.encode_utf16().collect();
        self.0.iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }

    /// `obj[key] = value`: replaces in place, or appends.
    pub fn set(&mut self, key: &str, value: Js) {
        let k: Vec<u16> = key.encode_utf16().collect();
        self.set_units(k, value);
    }

    fn set_units(&mut self, k: Vec<u16>, value: Js) {
        match self.0.iter_mut().find(|(n, _)| *n == k) {
            Some(slot) => slot.1 = value,
            None => self.0.push((k, value)),
        }
    }

    /// Own enumerable keys in ECMAScript order: array indices ascending, then strings in
    /// insertion order.
    fn ordered(&self) -> Vec<&(Vec<u16>, Js)> {
        let mut idx: Vec<(u32, &(Vec<u16>, Js))> = Vec::new();
        let mut rest = Vec::new();
        for e in &self.0 {
            match array_index(&e.0) {
                Some(i) => idx.push((i, e)),
                None => rest.push(e),
            }
        }
        idx.sort_by_key(|(i, _)| *i);
        idx.into_iter().map(|(_, e)| e).chain(rest).collect()
    }
}

/// A canonical array index: "0" or [1-9][0-9]*, below 2^32 - 1.
fn array_index(k: &[u16]) -> Option<u32> {
    if k.is_empty() || k.len() > 10 || (k.len() > 1 && k[0] == u16::from(b'0')) {
        return None;
    }
    let mut n: u64 = 0;
    for &c in k {
        if !(u16::from(b'0')..=u16::from(b'9')).contains(&c) {
            return None;
        }
        n = n * 10 + u64::from(c - u16::from(b'0'));
    }
    (n < u64::from(u32::MAX)).then_some(n as u32)
}

pub fn units(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

/// UTF-16 back to a Rust string the way Node encodes strings to UTF-8 for storage: a lone
/// surrogate becomes U+FFFD.
pub fn lossy(u: &[u16]) -> String {
    String::from_utf16_lossy(u)
}

// ---------------------------------------------------------------------------------------------
// JSON.parse

#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

/// `JSON.parse(text)`.
pub fn parse(text: &str) -> Result<Js, ParseError> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("Unexpected non-whitespace character after JSON"));
    }
    Ok(v)
}

impl Parser<'_> {
    fn err(&self, what: &str) -> ParseError {
        ParseError(format!("{what} at position {}", self.i))
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Js, ParseError> {
        if depth > 512 {
            return Err(self.err("JSON nested too deeply"));
        }
        match self.s.get(self.i) {
            None => Err(self.err("Unexpected end of JSON input")),
            Some(b'{') => {
                self.i += 1;
                let mut obj = JsObj::default();
                self.ws();
                if self.eat(b"}") {
                    return Ok(Js::Obj(obj));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(self.err("Expected property name"));
                    }
                    let k = self.string()?;
                    self.ws();
                    if !self.eat(b":") {
                        return Err(self.err("Expected ':' after property name"));
                    }
                    self.ws();
                    let v = self.value(depth + 1)?;
                    obj.set_units(k, v);
                    self.ws();
                    if self.eat(b",") {
                        continue;
                    }
                    if self.eat(b"}") {
                        return Ok(Js::Obj(obj));
                    }
                    return Err(self.err("Expected ',' or '}' after property value"));
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut arr = Vec::new();
                self.ws();
                if self.eat(b"]") {
                    return Ok(Js::Arr(arr));
                }
                loop {
                    self.ws();
                    arr.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(b",") {
                        continue;
                    }
                    if self.eat(b"]") {
                        return Ok(Js::Arr(arr));
                    }
                    return Err(self.err("Expected ',' or ']' after array element"));
                }
            }
            Some(b'"') => Ok(Js::Str(self.string()?)),
            Some(b't') if self.eat(b"true") => Ok(Js::Bool(true)),
            Some(b'f') if self.eat(b"false") => Ok(Js::Bool(false)),
            Some(b'n') if self.eat(b"null") => Ok(Js::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("Unexpected token")),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.s.get(self.i) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Js, ParseError> {
        let start = self.i;
        self.eat(b"-");
        match self.s.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("No number after minus sign")),
        }
        if self.eat(b".") && self.digits() == 0 {
            return Err(self.err("Unterminated fractional number"));
        }
        if let Some(b'e' | b'E') = self.s.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.s.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("Exponent part is missing a number"));
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII digits");
        // Rust's parse is correctly rounded like V8's; out of range gives ±inf like JS.
        text.parse::<f64>()
            .map(Js::Num)
            .map_err(|_| self.err("Bad number"))
    }

    fn hex4(&mut self) -> Result<u16, ParseError> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u16::from_str_radix(h, 16).ok())
            .filter(|_| self.s[self.i..self.i + 4].iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| self.err("Bad Unicode escape"))?;
        self.i += 4;
        Ok(h)
    }

    fn string(&mut self) -> Result<Vec<u16>, ParseError> {
        self.i += 1; // opening quote
        let mut out = Vec::new();
        loop {
            let start = self.i;
            while let Some(&c) = self.s.get(self.i) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            let chunk = std::str::from_utf8(&self.s[start..self.i]).expect("valid UTF-8 input");
            out.extend(chunk.encode_utf16());
            match self.s.get(self.i) {
                None => return Err(self.err("Unterminated string in JSON")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let e = *self
                        .s
                        .get(self.i)
                        .ok_or_else(|| self.err("Unterminated string in JSON"))?;
                    self.i += 1;
                    out.push(match e {
                        b'"' => 0x22,
                        b'\\' => 0x5c,
                        b'/' => 0x2f,
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => 0x0a,
                        b'r' => 0x0d,
                        b't' => 0x09,
                        b'u' => self.hex4()?,
                        _ => return Err(self.err("Bad escaped character")),
                    });
                }
                Some(_) => return Err(self.err("Bad control character in string literal")),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON.stringify

/// `JSON.stringify(value)` (compact), as UTF-16.
pub fn stringify(v: &Js) -> Vec<u16> {
    let mut out = Vec::new();
    write_value(v, &mut out);
    out
}

fn push_ascii(out: &mut Vec<u16>, s: &str) {
    out.extend(s.bytes().map(u16::from));
}

fn write_value(v: &Js, out: &mut Vec<u16>) {
    match v {
        Js::Null => push_ascii(out, "null"),
        Js::Bool(b) => push_ascii(out, if *b { "true" } else { "false" }),
        Js::Num(n) if !n.is_finite() => push_ascii(out, "null"),
        Js::Num(n) => push_ascii(out, &number_to_string(*n)),
        Js::Str(s) => write_string(s, out),
        Js::Arr(items) => {
            out.push(u16::from(b'['));
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(u16::from(b','));
                }
                write_value(item, out);
            }
            out.push(u16::from(b']'));
        }
        Js::Obj(obj) => {
            out.push(u16::from(b'{'));
            for (i, (k, v)) in obj.ordered().into_iter().enumerate() {
                if i > 0 {
                    out.push(u16::from(b','));
                }
                write_string(k, out);
                out.push(u16::from(b':'));
                write_value(v, out);
            }
            out.push(u16::from(b'}'));
        }
    }
}

fn write_string(s: &[u16], out: &mut Vec<u16>) {
    out.push(u16::from(b'"'));
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        match c {
            0x22 => push_ascii(out, "\\\""),
            0x5c => push_ascii(out, "\\\\"),
            0x08 => push_ascii(out, "\\b"),
            0x0c => push_ascii(out, "\\f"),
            0x0a => push_ascii(out, "\\n"),
            0x0d => push_ascii(out, "\\r"),
            0x09 => push_ascii(out, "\\t"),
            c if c < 0x20 => push_ascii(out, &format!("\\u{c:04x}")),
            0xD800..=0xDBFF if matches!(s.get(i + 1), Some(0xDC00..=0xDFFF)) => {
                out.push(c);
                out.push(s[i + 1]);
                i += 1;
            }
            // Well-formed JSON.stringify (ES2019): lone surrogates are escaped.
            0xD800..=0xDFFF => push_ascii(out, &format!("\\u{c:04x}")),
            c => out.push(c),
        }
        i += 1;
    }
    out.push(u16::from(b'"'));
}

/// `Number.prototype.toString()` for a finite double.
pub fn number_to_string(n: f64) -> String {
    if n == 0.0 {
        return "0".into(); // also -0
    }
    if n < 0.0 {
        return format!("-{}", number_to_string(-n));
    }
    // Shortest round-trip digits, as "d.ddde±x".
    let sci = format!("{n:e}");
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp has an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n_exp = exp.parse::<i32>().expect("exponent") + 1; // value = 0.digits × 10^n_exp
    if k <= n_exp && n_exp <= 21 {
        format!("{digits}{}", "0".repeat((n_exp - k) as usize))
    } else if 0 < n_exp && n_exp <= 21 {
        format!(
            "{}.{}",
            &digits[..n_exp as usize],
            &digits[n_exp as usize..]
        )
    } else if -6 < n_exp && n_exp <= 0 {
        format!("0.{}{digits}", "0".repeat((-n_exp) as usize))
    } else {
        let e = n_exp - 1;
        let sign = if e < 0 { '-' } else { '+' };
        if k == 1 {
            format!("{digits}e{sign}{}", e.abs())
        } else {
            format!("{}.{}e{sign}{}", &digits[..1], &digits[1..], e.abs())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JS semantics on parsed values

/// JavaScript truthiness.
pub fn truthy(v: Option<&Js>) -> bool {
    match v {
        None | Some(Js::Null) => false,
        Some(Js::Bool(b)) => *b,
        Some(Js::Num(n)) => *n != 0.0 && !n.is_nan(),
        Some(Js::Str(s)) => !s.is_empty(),
        Some(Js::Arr(_) | Js::Obj(_)) => true,
    }
}

/// `${v}`: template-string conversion.
pub fn to_string(v: Option<&Js>) -> Vec<u16> {
    match v {
        None => units("undefined"),
        Some(Js::Null) => units("null"),
        Some(Js::Bool(b)) => units(if *b { "true" } else { "false" }),
        Some(Js::Num(n)) if n.is_nan() => units("NaN"),
        Some(Js::Num(n)) if n.is_infinite() => {
            units(if *n > 0.0 { "Infinity" } else { "-Infinity" })
        }
        Some(Js::Num(n)) => units(&number_to_string(*n)),
        Some(Js::Str(s)) => s.clone(),
        Some(Js::Arr(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(u16::from(b','));
                }
                if !matches!(item, Js::Null) {
                    out.extend(to_string(Some(item)));
                }
            }
            out
        }
        Some(Js::Obj(_)) => units("[object Object]"),
    }
}

fn to_number(v: Option<&Js>) -> f64 {
    match v {
        None => f64::NAN,
        Some(Js::Null) => 0.0,
        Some(Js::Bool(b)) => f64::from(u8::from(*b)),
        Some(Js::Num(n)) => *n,
        Some(Js::Str(s)) => string_to_number(&lossy(s)),
        Some(other @ (Js::Arr(_) | Js::Obj(_))) => {
            string_to_number(&lossy(&to_string(Some(other))))
        }
    }
}

fn string_to_number(s: &str) -> f64 {
    let t = s.trim();
    if t.is_empty() {
        return 0.0;
    }
    match t {
        "Infinity" | "+Infinity" => return f64::INFINITY,
        "-Infinity" => return f64::NEG_INFINITY,
        _ => {}
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(rest) = t.strip_prefix(prefix) {
            return u64::from_str_radix(rest, radix).map_or(f64::NAN, |n| n as f64);
        }
    }
    if t.bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        t.parse().unwrap_or(f64::NAN)
    } else {
        f64::NAN
    }
}

/// `a >= b` with JavaScript's abstract relational comparison (`undefined` is `None`).
pub fn ge(a: Option<&Js>, b: Option<&Js>) -> bool {
    let prim = |v: Option<&Js>| match v {
        Some(x @ (Js::Arr(_) | Js::Obj(_))) => Some(Js::Str(to_string(Some(x)))),
        other => other.cloned(),
    };
    let (pa, pb) = (prim(a), prim(b));
    if let (Some(Js::Str(x)), Some(Js::Str(y))) = (&pa, &pb) {
        // String comparison is by UTF-16 code units.
        return x.as_slice().cmp(y.as_slice()) != Ordering::Less;
    }
    let (x, y) = (to_number(pa.as_ref()), to_number(pb.as_ref()));
    !x.is_nan() && !y.is_nan() && x >= y
}

/// `a === b` for a parsed value and a request value (objects are never identical).
pub fn strict_eq(a: Option<&Js>, b: Option<&Js>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(Js::Null), Some(Js::Null)) => true,
        (Some(Js::Bool(x)), Some(Js::Bool(y))) => x == y,
        (Some(Js::Num(x)), Some(Js::Num(y))) => x == y,
        (Some(Js::Str(x)), Some(Js::Str(y))) => x == y,
        _ => false,
    }
}

/// A request argument (decoded by serde_json from the wire) as a JS value.
pub fn from_serde(v: &serde_json::Value) -> Js {
    use serde_json::Value;
    match v {
        Value::Null => Js::Null,
        Value::Bool(b) => Js::Bool(*b),
        Value::Number(n) => Js::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Js::Str(units(s)),
        Value::Array(items) => Js::Arr(items.iter().map(from_serde).collect()),
        Value::Object(m) => {
            let mut o = JsObj::default();
            for (k, v) in m {
                o.set(k, from_serde(v));
            }
            Js::Obj(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(s: &str) -> String {
        lossy(&stringify(&parse(s).unwrap()))
    }

    #[test]
    fn round_trips_like_v8() {
        assert_eq!(
            rt(r#"{ "a" : 1 , "b":[1, 2.50, -0, 1e21, 1e-7, 123456789012345678901] }"#),
            r#"{"a":1,"b":[1,2.5,0,1e+21,1e-7,123456789012345680000]}"#
        );
        assert_eq!(
            rt(r#"{"b":1,"2":2,"a":3,"1":4,"01":5,"b":6}"#),
            r#"{"1":4,"2":2,"b":6,"a":3,"01":5}"#
        );
        assert_eq!(
            rt(r#""\u00e9\ud83d\ude00\ud800\/\u0001\u007f""#),
            "\"é😀\\ud800/\\u0001\u{7f}\""
        );
        assert_eq!(rt("1e400"), "null");
        assert_eq!(rt("0.000001"), "0.000001");
        assert_eq!(rt("1.5e300"), "1.5e+300");
        assert_eq!(rt("9007199254740993"), "9007199254740992");
        assert_eq!(rt("[]"), "[]");
        assert_eq!(rt("{}"), "{}");
        for bad in [
            "", "{", "{a:1}", "[1,]", "01", "1.", "\"\t\"", "tru", "{} x", "'a'",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn set_keeps_order() {
        let Js::Obj(mut o) = parse(r#"{"a":0,"versionId":"x","z":1}"#).unwrap() else {
            panic!()
        };
        o.set("versionId", Js::Str(units("y")));
        o.set("isNull", Js::Bool(true));
        assert_eq!(
            lossy(&stringify(&Js::Obj(o))),
            r#"{"a":0,"versionId":"y","z":1,"isNull":true}"#
        );
    }

    #[test]
    fn comparisons() {
        let s = |x: &str| Js::Str(units(x));
        assert!(ge(Some(&s("b")), Some(&s("a"))));
        assert!(ge(Some(&s("a")), Some(&s("a"))));
        assert!(!ge(Some(&s("a")), Some(&s("b"))));
        assert!(!ge(Some(&Js::Null), Some(&s("x"))));
        assert!(ge(Some(&Js::Num(5.0)), Some(&s("4"))));
        assert!(strict_eq(Some(&s("a")), Some(&s("a"))));
        assert!(!strict_eq(Some(&Js::Num(1.0)), Some(&s("1"))));
        assert_eq!(lossy(&to_string(Some(&Js::Num(12.0)))), "12");
        assert_eq!(number_to_string(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(number_to_string(1e21), "1e+21");
        assert_eq!(number_to_string(123e-20), "1.23e-18");
    }
}
