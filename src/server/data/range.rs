//! `Range` header handling, exactly as Arsenal's data server does it (protocol spec §6.4,
//! `network/http/utils.js` `parseRangeSpec` + `getByteRangeFromSpec`).
//!
//! A header that does not match `^bytes=(\d+)?-(\d+)?$`, or has `start > end`, is ignored (the
//! whole object is sent with 200). A syntactically valid but unsatisfiable range gives 416.

/// A parsed `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=-N`: the last N bytes.
    Suffix(u64),
    /// `bytes=S-` or `bytes=S-E`.
    From { start: u64, end: Option<u64> },
}

/// What to send for a given object size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// 200 with the whole object.
    Whole,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416 `InvalidRange`.
    Unsatisfiable,
}

/// Parses a header value; `None` means "ignore the header" (invalid syntax).
pub fn parse(value: &[u8]) -> Option<RangeSpec> {
    let rest = value.strip_prefix(b"bytes=")?;
    let dash = rest.iter().position(|&b| b == b'-')?;
    let (first, second) = (&rest[..dash], &rest[dash + 1..]);
    let first = digits(first)?;
    let second = digits(second)?;
    match (first, second) {
        (None, None) => None,
        (None, Some(n)) => Some(RangeSpec::Suffix(n)),
        (Some(start), None) => Some(RangeSpec::From { start, end: None }),
        (Some(start), Some(end)) if start <= end => Some(RangeSpec::From {
            start,
            end: Some(end),
        }),
        (Some(_), Some(_)) => None,
    }
}

/// `Some(None)` for an empty field, `Some(Some(n))` for digits, `None` for anything else.
/// Numbers too large for u64 saturate: they compare the same way against any real size as
/// the reference's floating-point values do.
fn digits(s: &[u8]) -> Option<Option<u64>> {
    if s.is_empty() {
        return Some(None);
    }
    if !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = s.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Some(Some(n))
}

/// Applies a range to an object of `size` bytes.
pub fn resolve(spec: RangeSpec, size: u64) -> Resolved {
    match spec {
        // A zero-length suffix is always invalid, even on an empty object.
        RangeSpec::Suffix(0) => Resolved::Unsatisfiable,
        RangeSpec::Suffix(_) if size == 0 => Resolved::Whole,
        RangeSpec::Suffix(n) => Resolved::Partial {
            start: size.saturating_sub(n),
            end: size - 1,
        },
        RangeSpec::From { start, end } if start < size => Resolved::Partial {
            start,
            end: match end {
                Some(e) if e < size => e,
                _ => size - 1,
            },
        },
        RangeSpec::From { .. } => Resolved::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(header: &str, size: u64) -> Option<Resolved> {
        parse(header.as_bytes()).map(|s| resolve(s, size))
    }

    #[test]
    fn satisfiable_ranges() {
        let p = |start, end| Some(Resolved::Partial { start, end });
        assert_eq!(r("bytes=3-9", 52), p(3, 9));
        assert_eq!(r("bytes=0-0", 52), p(0, 0));
        assert_eq!(r("bytes=51-51", 52), p(51, 51));
        assert_eq!(r("bytes=51-", 52), p(51, 51));
        assert_eq!(r("bytes=10-", 52), p(10, 51));
        assert_eq!(r("bytes=10-1000", 52), p(10, 51));
        assert_eq!(r("bytes=-5", 52), p(47, 51));
        assert_eq!(r("bytes=-52", 52), p(0, 51));
        assert_eq!(r("bytes=-1000", 52), p(0, 51));
        assert_eq!(r("bytes=0-99999999999999999999999", 52), p(0, 51));
        assert_eq!(r("bytes=-99999999999999999999999", 52), p(0, 51));
    }

    #[test]
    fn unsatisfiable_ranges() {
        let u = Some(Resolved::Unsatisfiable);
        assert_eq!(r("bytes=57-62", 52), u);
        assert_eq!(r("bytes=52-", 52), u);
        assert_eq!(r("bytes=-0", 52), u);
        assert_eq!(r("bytes=-0", 0), u);
        assert_eq!(r("bytes=0-", 0), u);
        assert_eq!(r("bytes=0-0", 0), u);
        assert_eq!(r("bytes=99999999999999999999999-", 52), u);
    }

    #[test]
    fn suffix_on_empty_object_is_whole() {
        assert_eq!(r("bytes=-5", 0), Some(Resolved::Whole));
    }

    #[test]
    fn invalid_syntax_is_ignored() {
        for h in [
            "bytes=5-2",
            "bytes=0-1,3-4",
            "bytes=-",
            "bytes=",
            "bytes 0-1",
            "items=0-1",
            "Bytes=0-1",
            "bytes= 0-1",
            "bytes=0-1 ",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=--1",
            "bytes=1-2-3",
            "",
        ] {
            assert_eq!(parse(h.as_bytes()), None, "{h:?} must be ignored");
        }
    }
}
