//! Version ids in Arsenal's format (§5.2, `versioning/VersionID.js`), so ids generated here and by
//! an Arsenal metadata server interleave correctly in one bucket.
//!
//! ```text
//! <14 digits: 99999999999999 - epochMillis> <6 digits: 999999 - seq> <rg: 7 chars> <counter>
//! ```
//!
//! Newer ids are smaller strings, so a key's versions list newest first. The generator state
//! (last millisecond, sequence in that millisecond, counter) is process-wide like the reference's
//! module state. Unlike the reference, the timestamp never goes backwards: if the clock does, ids
//! keep using the last millisecond (the sequence keeps ids unique and decreasing), so a version
//! written after a clock step is still newer than every earlier one.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAX_TS: u64 = 99_999_999_999_999; // 10^14 - 1: good until 5138
const MAX_SEQ: u64 = 999_999;
const LENGTH_RG: usize = 7;
const LENGTH_ID: usize = 6;

/// How ids are formatted, chosen like the reference from its process environment
/// (`S3_VERSION_ID_ENCODING_TYPE`, `ENABLE_FORMATTED_VERSION_ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdFormat {
    /// The default: the counter is appended in decimal.
    Hex,
    /// `base62` without the formatted flag: no counter (27 characters).
    Base62Legacy,
    /// `base62` with `ENABLE_FORMATTED_VERSION_ID=true|1`: counter right-padded with `0` to 6
    /// characters, then `?1` (35 characters).
    Base62Formatted,
}

impl IdFormat {
    pub fn from_env() -> Self {
        let enc = std::env::var("S3_VERSION_ID_ENCODING_TYPE").ok();
        let formatted = matches!(
            std::env::var("ENABLE_FORMATTED_VERSION_ID").as_deref(),
            Ok("true") | Ok("1")
        );
        match enc.as_deref() {
            None | Some("hex") => IdFormat::Hex,
            Some(_) if formatted => IdFormat::Base62Formatted,
            Some(_) => IdFormat::Base62Legacy,
        }
    }
}

/// `replicationGroupId` right-padded with spaces and cut to 7 characters (UTF-16 units in the
/// reference; replication group ids are ASCII in practice, cut on a char boundary here).
pub fn pad_rg(rg: &str) -> String {
    let mut out: String = rg.chars().take(LENGTH_RG).collect();
    while out.chars().count() < LENGTH_RG {
        out.push(' ');
    }
    out
}

/// The "infinite" id given to a non-versioned master when it is first copied into the history:
/// it sorts after every real id (it is the oldest).
pub fn inf_vid(rg: &str) -> String {
    format!("{MAX_TS:014}{MAX_SEQ:06}{}", pad_rg(rg))
}

struct GenState {
    last_ms: u64,
    seq: u64,
    counter: u64,
}

static STATE: Mutex<GenState> = Mutex::new(GenState {
    last_ms: 0,
    seq: 0,
    counter: 0,
});

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A new id for replication group `rg`.
pub fn generate(rg: &str, format: IdFormat) -> String {
    let mut st = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if st.last_ms == 0 {
        // The reference waits 1 ms before its first id so that it cannot reuse a millisecond slot
        // (and sequence) of a previous process that just stopped.
        std::thread::sleep(Duration::from_millis(1));
    }
    let info = st.counter;
    st.counter += 1;
    let now = now_ms();
    if now > st.last_ms {
        st.last_ms = now;
        st.seq = 0;
    } else {
        // Same millisecond, or the clock went backwards: stay on the last millisecond.
        st.seq += 1;
        if st.seq > MAX_SEQ {
            // A million ids in one millisecond: borrow the next one rather than wrap.
            st.last_ms += 1;
            st.seq = 0;
        }
    }
    let (ts, seq) = (MAX_TS - st.last_ms.min(MAX_TS), MAX_SEQ - st.seq);
    drop(st);
    let head = format!("{ts:014}{seq:06}{}", pad_rg(rg));
    match format {
        IdFormat::Hex => format!("{head}{info}"),
        IdFormat::Base62Legacy => head,
        IdFormat::Base62Formatted => {
            let mut id: String = info.to_string().chars().take(LENGTH_ID).collect();
            while id.len() < LENGTH_ID {
                id.push('0');
            }
            format!("{head}{id}?1")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_order() {
        let a = generate("RG001", IdFormat::Hex);
        let b = generate("RG001", IdFormat::Hex);
        assert!(b < a, "newer ids sort first: {a} then {b}");
        assert_eq!(&a[20..27], "RG001  ");
        assert!(a[..20].bytes().all(|c| c.is_ascii_digit()));
        let ca: u64 = a[27..].parse().unwrap();
        let cb: u64 = b[27..].parse().unwrap();
        assert!(cb > ca, "the counter increases: {a} {b}");
        let ts = MAX_TS - a[..14].parse::<u64>().unwrap();
        assert!(ts.abs_diff(now_ms()) < 10_000, "timestamp is now: {a}");
    }

    #[test]
    fn padding_and_formats() {
        assert_eq!(inf_vid("RG001"), "99999999999999999999RG001  ");
        assert_eq!(pad_rg("VERYLONGNAME"), "VERYLON");
        assert_eq!(generate("RG001", IdFormat::Base62Legacy).len(), 27);
        let f = generate("RG001", IdFormat::Base62Formatted);
        assert_eq!(f.len(), 35);
        assert!(f.ends_with("?1"));
    }

    #[test]
    fn many_ids_strictly_decrease() {
        let ids: Vec<String> = (0..5000)
            .map(|_| generate("RG001", IdFormat::Hex))
            .collect();
        for w in ids.windows(2) {
            assert!(w[1][..20] < w[0][..20], "{} then {}", w[0], w[1]);
        }
    }
}
