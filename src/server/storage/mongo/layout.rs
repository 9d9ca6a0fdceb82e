//! Where a raw key lives in MongoDB, and how raw scan bounds become `_id` bounds (pure functions).
//!
//! * A raw key in level-sublevel's layout, `!<sublevel>!<key>` (the sublevel name holds no `!`,
//!   so it ends at the second `!`), that is valid UTF-8 goes to the sublevel's collection with
//!   `_id` = `<key>` as a BSON string, verbatim. Every key Arsenal sends is a JavaScript string, so
//!   every key the metadata service writes takes this path.
//! * Anything else (no sublevel prefix, or bytes that are not UTF-8) goes to the [`ROOT`]
//!   collection with `_id` = the raw key mapped byte by byte to the code points U+0000–U+00FF
//!   ([`bytes_to_id`]): ASCII stays as is, and the mapping keeps byte order.
//!
//! Order: MongoDB compares strings without a collation as their UTF-8 bytes (memcmp, then
//! length), which is the embedded engine's order for the verbatim `_id`s; the byte-to-code-point
//! map of the root collection preserves order too (bytes 0x00–0x7F stay one byte, 0x80–0xFF
//! become two-byte sequences 0xC2 0x80..0xC3 0xBF, in the same order). Because sublevel names
//! hold no `!`, the prefixes `!<sublevel>!` are prefix-free: each sublevel collection covers one
//! contiguous interval of raw keys, and the intervals are ordered by their prefixes' bytes.

use std::ops::Bound;

use sha2::{Digest, Sha256};

/// Keys outside any sublevel (and non-UTF-8 keys).
pub const ROOT: &str = "root";
/// Sublevel collection ↔ sublevel name, so hashed names (and every name) can be read back.
pub const REGISTRY: &str = "zenkoctl.sublevels";
/// Standalone servers only: batches being applied (rolled forward at startup).
pub const JOURNAL: &str = "zenkoctl.journal";
/// The deployment's identity: `{_id: "uuid", uuid: "<UUIDv4>"}` (what `getUUID` answers), so
/// every server instance on this database answers the same id wherever it runs.
pub const DEPLOYMENT: &str = "zenkoctl.deployment";
/// Longest escaped sublevel name kept readable. With a database name of at most
/// [`MAX_DATABASE_NAME`] bytes the namespace `db.s.<escaped>` stays within MongoDB's 255 bytes.
pub const MAX_READABLE: usize = 180;
pub const MAX_DATABASE_NAME: usize = 63;

/// Where a raw key is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place<'a> {
    /// In sublevel `sub`'s collection under `_id` = `inner`.
    Sublevel { sub: &'a str, inner: &'a str },
    /// In [`ROOT`] under `_id` = [`bytes_to_id`] of the raw key.
    Root,
}

pub fn route(key: &[u8]) -> Place<'_> {
    if key.first() != Some(&b'!') {
        return Place::Root;
    }
    let Some(end) = key[1..].iter().position(|&b| b == b'!').map(|p| p + 1) else {
        return Place::Root;
    };
    match std::str::from_utf8(key) {
        Ok(s) => Place::Sublevel {
            sub: &s[1..end],
            inner: &s[end + 1..],
        },
        Err(_) => Place::Root,
    }
}

/// True when a key routed to [`ROOT`] still falls inside some sublevel's interval (a non-UTF-8
/// key that starts with `!<name>!`): scans of that sublevel must then merge the root collection.
pub fn is_stray(key: &[u8]) -> bool {
    key.first() == Some(&b'!') && key[1..].contains(&b'!')
}

/// `!<sub>!`: the raw-key prefix of a sublevel.
pub fn prefix_of(sub: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(sub.len() + 2);
    p.push(b'!');
    p.extend_from_slice(sub.as_bytes());
    p.push(b'!');
    p
}

/// Root `_id`: each byte becomes the code point of the same value (order-preserving, reversible).
pub fn bytes_to_id(key: &[u8]) -> String {
    key.iter().map(|&b| char::from(b)).collect()
}

/// Inverse of [`bytes_to_id`]; `None` if a code point is above U+00FF (not written by us).
pub fn id_to_bytes(id: &str) -> Option<Vec<u8>> {
    id.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

/// The collection holding sublevel `sub`: `s.<escaped>`, where bytes other than ASCII letters,
/// digits, `_` and `-` become `%XX` (MongoDB rejects `$`, NUL, empty components such as `..`,
/// and names starting with `system.`), and the empty name is `s.~`. Escaped names longer than
/// [`MAX_READABLE`] become `h.<sha256 hex of the name>`; the [`REGISTRY`] maps every collection
/// back to its sublevel name, so nothing is ever truncated into a collision.
pub fn collection_name(sub: &str) -> String {
    if sub.is_empty() {
        return "s.~".into();
    }
    let mut esc = String::with_capacity(sub.len() + 2);
    for &b in sub.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            esc.push(char::from(b));
        } else {
            esc.push_str(&format!("%{b:02X}"));
        }
        if esc.len() > MAX_READABLE {
            let digest = Sha256::digest(sub.as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            return format!("h.{hex}");
        }
    }
    format!("s.{esc}")
}

/// Inverse of [`collection_name`] for readable names (`s.…`); hashed names need the registry.
pub fn sublevel_of_readable(name: &str) -> Option<String> {
    let esc = name.strip_prefix("s.")?;
    if esc == "~" {
        return Some(String::new());
    }
    let b = esc.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Does `key` satisfy the raw bounds? (Every entry a scan yields is checked with this.)
pub fn in_bounds(key: &[u8], lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    let lo = match lower {
        Bound::Unbounded => true,
        Bound::Included(l) => key >= l.as_slice(),
        Bound::Excluded(l) => key > l.as_slice(),
    };
    lo && match upper {
        Bound::Unbounded => true,
        Bound::Included(u) => key <= u.as_slice(),
        Bound::Excluded(u) => key < u.as_slice(),
    }
}

/// An `_id` range for one collection. `exact` is false when a raw bound had to be widened to the
/// nearest UTF-8 string (entries are re-checked against the raw bounds, and the limit is then not
/// pushed down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdRange {
    pub lower: Bound<String>,
    pub upper: Bound<String>,
    pub exact: bool,
}

/// The smallest string greater than every string starting with `p` (`None`: no such string,
/// i.e. `p` is empty or made of U+10FFFF only).
fn utf8_ceiling(p: &str) -> Option<String> {
    let mut chars: Vec<char> = p.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Translate the part of a raw bound past a sublevel prefix into a string bound on `_id`.
/// Non-UTF-8 bytes widen the bound (lower: to the valid prefix, inclusive; upper: to just above
/// every string sharing the valid prefix).
fn inner_bound(rest: &[u8], inclusive: bool, is_lower: bool) -> (Bound<String>, bool) {
    match std::str::from_utf8(rest) {
        Ok(s) if inclusive => (Bound::Included(s.to_string()), true),
        Ok(s) => (Bound::Excluded(s.to_string()), true),
        Err(e) => {
            let valid = std::str::from_utf8(&rest[..e.valid_up_to()]).expect("valid prefix");
            if is_lower {
                (Bound::Included(valid.to_string()), false)
            } else {
                match utf8_ceiling(valid) {
                    Some(c) => (Bound::Excluded(c), false),
                    None => (Bound::Unbounded, false),
                }
            }
        }
    }
}

/// The `_id` range of sublevel `prefix`'s collection that a raw scan covers, or `None` when the
/// scan does not reach that collection's interval `[prefix, prefix with its last "!" → "\"")`.
pub fn sublevel_range(
    prefix: &[u8],
    lower: &Bound<Vec<u8>>,
    upper: &Bound<Vec<u8>>,
) -> Option<IdRange> {
    let mut end = prefix.to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    let mut exact = true;
    let lo = match lower {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(l) | Bound::Excluded(l) => {
            let inclusive = matches!(lower, Bound::Included(_));
            if l.as_slice() >= end.as_slice() {
                return None;
            }
            if let Some(rest) = l.strip_prefix(prefix) {
                let (b, ex) = inner_bound(rest, inclusive, true);
                exact &= ex;
                b
            } else {
                // l < prefix (it cannot be inside the interval without starting with it).
                Bound::Unbounded
            }
        }
    };
    let hi = match upper {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(u) | Bound::Excluded(u) => {
            let inclusive = matches!(upper, Bound::Included(_));
            if u.as_slice() < prefix || (!inclusive && u.as_slice() == prefix) {
                return None;
            }
            if let Some(rest) = u.strip_prefix(prefix) {
                let (b, ex) = inner_bound(rest, inclusive, false);
                exact &= ex;
                b
            } else {
                Bound::Unbounded
            }
        }
    };
    Some(IdRange {
        lower: lo,
        upper: hi,
        exact,
    })
}

/// The root collection's `_id` range for a raw scan (always exact).
pub fn root_range(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> IdRange {
    let map = |b: &Bound<Vec<u8>>| match b {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(k) => Bound::Included(bytes_to_id(k)),
        Bound::Excluded(k) => Bound::Excluded(bytes_to_id(k)),
    };
    IdRange {
        lower: map(lower),
        upper: map(upper),
        exact: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing() {
        assert_eq!(
            route(b"!bucket!obj/a!b"),
            Place::Sublevel {
                sub: "bucket",
                inner: "obj/a!b"
            }
        );
        assert_eq!(
            route(b"!..recordLogs#s3-recordlog!0001"),
            Place::Sublevel {
                sub: "..recordLogs#s3-recordlog",
                inner: "0001"
            }
        );
        assert_eq!(
            route(b"!!k"),
            Place::Sublevel {
                sub: "",
                inner: "k"
            }
        );
        assert_eq!(
            route(b"!b!"),
            Place::Sublevel {
                sub: "b",
                inner: ""
            }
        );
        assert_eq!(route(b"!health-probe"), Place::Root);
        assert_eq!(route(b"plain"), Place::Root);
        assert_eq!(route(b""), Place::Root);
        assert_eq!(route(b"!b!\xff"), Place::Root);
        assert!(is_stray(b"!b!\xff"));
        assert!(!is_stray(b"!health-probe"));
    }

    #[test]
    fn root_ids_keep_byte_order() {
        let mut keys: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\0".to_vec(),
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"\x7f".to_vec(),
            b"\x80".to_vec(),
            b"\xc3\xa9".to_vec(),
            b"\xff".to_vec(),
            b"\xff\xff".to_vec(),
        ];
        keys.sort();
        let ids: Vec<String> = keys.iter().map(|k| bytes_to_id(k)).collect();
        let mut sorted = ids.clone();
        sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        assert_eq!(ids, sorted);
        for k in &keys {
            assert_eq!(id_to_bytes(&bytes_to_id(k)).as_ref(), Some(k));
        }
    }

    #[test]
    fn collection_names() {
        assert_eq!(collection_name("bucket"), "s.bucket");
        assert_eq!(collection_name("my.bucket"), "s.my%2Ebucket");
        assert_eq!(collection_name("users..bucket"), "s.users%2E%2Ebucket");
        assert_eq!(
            collection_name("..recordLogs#s3-recordlog"),
            "s.%2E%2ErecordLogs%23s3-recordlog"
        );
        assert_eq!(collection_name(""), "s.~");
        assert_eq!(collection_name("a$b\0"), "s.a%24b%00");
        assert_eq!(collection_name("system.views"), "s.system%2Eviews");
        assert_eq!(collection_name("~"), "s.%7E");
        assert_eq!(collection_name("%41"), "s.%2541");
        for sub in [
            "bucket",
            "my.bucket",
            "",
            "~",
            "%41",
            "a$b\0",
            "é😀",
            "__metastore",
        ] {
            let name = collection_name(sub);
            assert_eq!(sublevel_of_readable(&name).as_deref(), Some(sub), "{name}");
        }
        // Too long: hashed, fixed length, distinct for names sharing a long prefix.
        let a = "x".repeat(200) + "a";
        let b = "x".repeat(200) + "b";
        let (na, nb) = (collection_name(&a), collection_name(&b));
        assert!(na.starts_with("h.") && na.len() == 66, "{na}");
        assert_ne!(na, nb);
        assert_eq!(sublevel_of_readable(&na), None);
        // Just at the limit stays readable.
        let edge = "y".repeat(MAX_READABLE);
        assert_eq!(collection_name(&edge), format!("s.{edge}"));
        assert!(collection_name(&"é".repeat(40)).starts_with("h."));
    }

    #[test]
    fn ranges() {
        let p = b"!b!".as_slice();
        let inc = |s: &[u8]| Bound::Included(s.to_vec());
        let exc = |s: &[u8]| Bound::Excluded(s.to_vec());
        let r = sublevel_range(p, &inc(b"!b!\0"), &inc("!b!\u{FFFF}".as_bytes())).unwrap();
        assert_eq!(r.lower, Bound::Included("\0".into()));
        assert_eq!(r.upper, Bound::Included("\u{FFFF}".into()));
        assert!(r.exact);
        assert!(sublevel_range(p, &inc(b"!c"), &Bound::Unbounded).is_none());
        assert!(sublevel_range(p, &inc(b"!b\""), &Bound::Unbounded).is_none());
        assert!(sublevel_range(p, &Bound::Unbounded, &exc(b"!b!")).is_none());
        assert!(sublevel_range(p, &Bound::Unbounded, &inc(b"!a~")).is_none());
        let r = sublevel_range(p, &Bound::Unbounded, &inc(b"!b!")).unwrap();
        assert_eq!(r.upper, Bound::Included(String::new()));
        let r = sublevel_range(p, &inc(b"!a"), &inc(b"!c")).unwrap();
        assert_eq!((r.lower, r.upper), (Bound::Unbounded, Bound::Unbounded));
        let r = sublevel_range(p, &exc(b"!b!a\xff"), &inc(b"!b!b\xffz")).unwrap();
        assert!(!r.exact);
        assert_eq!(r.lower, Bound::Included("a".into()));
        assert_eq!(r.upper, Bound::Excluded("c".into()));
        assert_eq!(utf8_ceiling("a\u{D7FF}"), Some("a\u{E000}".into()));
        assert_eq!(utf8_ceiling("a\u{10FFFF}"), Some("b".into()));
        assert_eq!(utf8_ceiling(""), None);
    }
}
