//! Backend-agnostic conformance suite for [`Store`]. Every backend runs all of it, through
//! [`storage_conformance_tests!`](crate::storage_conformance_tests) in its own tests/storage_*.rs:
//! ordering, bounds (checked against an in-memory model on random scans), reverse + limit,
//! empty ranges, binary-unsafe-looking keys, large values, batch atomicity against concurrent
//! readers, write ordering, concurrent writers and persistence across a restart.
//!
//! Each check panics with a message naming what differed; they are library code (not `#[cfg(test)]`)
//! so every backend's test file can reuse them.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use super::{collect, Op, Scan, Store, StoreFuture};

/// Opens the store under test. Every call must reach the same data (a reopen after a restart);
/// the store from a previous call has been dropped by then.
pub trait Opener: Send + Sync {
    fn open(&self) -> StoreFuture<'_, Arc<dyn Store>>;
}

fn put(k: &[u8], v: &[u8]) -> Op {
    Op::Put {
        key: k.to_vec(),
        value: v.to_vec(),
    }
}

fn keys_of(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<Vec<u8>> {
    entries.iter().map(|(k, _)| k.clone()).collect()
}

/// Keys that look binary-unsafe: NUL, record separators, level-sublevel's `!`/`#`, bytes that are
/// not UTF-8, UTF-8 above U+FFFF, the empty key.
fn tricky_keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\0".to_vec(),
        b"\0\0".to_vec(),
        b"a".to_vec(),
        b"a\0".to_vec(),
        b"a\0x".to_vec(),
        b"a\x01".to_vec(),
        b"a/".to_vec(),
        b"ab".to_vec(),
        b"!bucket!obj".to_vec(),
        b"!bucket#sub!obj".to_vec(),
        b"!!root".to_vec(),
        b"\x1e\x1e".to_vec(),
        b"\x7f".to_vec(),
        b"\x80".to_vec(),
        b"\xff".to_vec(),
        b"\xff\xff\xff".to_vec(),
        "é".as_bytes().to_vec(),
        "z".as_bytes().to_vec(),
        "\u{FFFF}".as_bytes().to_vec(),
        "😀".as_bytes().to_vec(),
        b"key with spaces and \"quotes\" and \\ backslash".to_vec(),
    ];
    keys.push(vec![b'k'; 4096]);
    keys
}

/// Full scans forward and backward return every key in bytewise order.
pub async fn ordering(o: &dyn Opener) {
    let s = o.open().await.expect("open");
    let mut keys = tricky_keys();
    // Write in a scrambled order, in several batches.
    keys.reverse();
    for chunk in keys.chunks(5) {
        let ops = chunk
            .iter()
            .map(|k| put(k, format!("v{}", k.len()).as_bytes()))
            .collect();
        s.write(ops).await.expect("write");
    }
    keys.sort();
    keys.dedup();
    let got = keys_of(&collect(&*s, Scan::all()).await.expect("scan"));
    assert_eq!(got, keys, "forward scan must be bytewise ordered");
    let mut rev = Scan::all();
    rev.reverse = true;
    let got = keys_of(&collect(&*s, rev).await.expect("scan"));
    let mut expect = keys.clone();
    expect.reverse();
    assert_eq!(got, expect, "reverse scan must be reverse bytewise order");
    for k in &keys {
        let v = s.get(k).await.expect("get");
        assert_eq!(
            v.as_deref(),
            Some(format!("v{}", k.len()).as_bytes()),
            "get {k:?}"
        );
    }
    assert_eq!(s.get(b"absent").await.expect("get"), None, "missing key");
}

/// Random scans (bounds of every kind, reverse, limits) compared with a BTreeMap model.
pub async fn bounds_against_model(o: &dyn Opener) {
    let s = o.open().await.expect("open");
    let mut model = BTreeMap::new();
    let alphabet: &[&[u8]] = &[
        b"",
        b"\0",
        b"\x01",
        b"a",
        b"b",
        b"/",
        b"\xff",
        "é".as_bytes(),
    ];
    let mut ops = Vec::new();
    for a in alphabet {
        for b in alphabet {
            let mut k = a.to_vec();
            k.extend_from_slice(b);
            model.insert(k.clone(), k.clone());
            ops.push(put(&k, &k));
        }
    }
    s.write(ops).await.expect("write");
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..400 {
        let mut pick = || {
            let a = alphabet[(next() % alphabet.len() as u64) as usize];
            let b = alphabet[(next() % alphabet.len() as u64) as usize];
            let k = [a, b].concat();
            match next() % 3 {
                0 => Bound::Unbounded,
                1 => Bound::Included(k),
                _ => Bound::Excluded(k),
            }
        };
        let lower = pick();
        let upper = pick();
        let reverse = next() % 2 == 0;
        let limit = match next() % 4 {
            0 => None,
            n => Some(n * 3 - 3), // 0, 3, 6
        };
        let scan = Scan {
            lower: lower.clone(),
            upper: upper.clone(),
            reverse,
            limit,
        };
        let mut expect: Vec<Vec<u8>> = if scan.is_empty_range() {
            Vec::new()
        } else {
            model
                .range::<Vec<u8>, _>((lower.clone(), upper.clone()))
                .map(|(k, _)| k.clone())
                .collect()
        };
        if reverse {
            expect.reverse();
        }
        if let Some(l) = limit {
            expect.truncate(l as usize);
        }
        let got = keys_of(&collect(&*s, scan.clone()).await.expect("scan"));
        assert_eq!(got, expect, "scan {scan:?}");
    }
}

/// reverse + limit starts from the top of the range; limit 0 and empty/inverted ranges are empty.
pub async fn reverse_limit_and_empty_ranges(o: &dyn Opener) {
    let s = o.open().await.expect("open");
    let ops = (0..100)
        .map(|i| put(format!("k{i:03}").as_bytes(), b"v"))
        .collect();
    s.write(ops).await.expect("write");
    let scan = Scan {
        lower: Bound::Included(b"k010".to_vec()),
        upper: Bound::Excluded(b"k050".to_vec()),
        reverse: true,
        limit: Some(3),
    };
    let got = keys_of(&collect(&*s, scan).await.expect("scan"));
    assert_eq!(
        got,
        vec![b"k049".to_vec(), b"k048".to_vec(), b"k047".to_vec()]
    );
    let empties = [
        (
            Bound::Included(b"k050".to_vec()),
            Bound::Excluded(b"k050".to_vec()),
        ),
        (
            Bound::Excluded(b"k050".to_vec()),
            Bound::Included(b"k050".to_vec()),
        ),
        (
            Bound::Excluded(b"k050".to_vec()),
            Bound::Excluded(b"k050".to_vec()),
        ),
        (
            Bound::Included(b"k060".to_vec()),
            Bound::Included(b"k010".to_vec()),
        ),
        (Bound::Included(b"x".to_vec()), Bound::Unbounded),
        (Bound::Unbounded, Bound::Excluded(b"k000".to_vec())),
    ];
    for (lower, upper) in empties {
        for reverse in [false, true] {
            let scan = Scan {
                lower: lower.clone(),
                upper: upper.clone(),
                reverse,
                limit: None,
            };
            let got = collect(&*s, scan.clone()).await.expect("scan");
            assert!(got.is_empty(), "scan {scan:?} must be empty, got {got:?}");
        }
    }
    let mut zero = Scan::all();
    zero.limit = Some(0);
    assert!(
        collect(&*s, zero).await.expect("scan").is_empty(),
        "limit 0"
    );
    // The cursor hands out batches of the requested size and then ends.
    let mut cursor = s.scan(Scan::all()).await.expect("scan");
    let mut n = 0;
    loop {
        let b = cursor.next_batch(7).await.expect("batch");
        assert!(b.len() <= 7, "batch larger than asked");
        if b.is_empty() {
            break;
        }
        n += b.len();
    }
    assert_eq!(n, 100);
    assert!(
        cursor.next_batch(7).await.expect("batch").is_empty(),
        "exhausted stays exhausted"
    );
}

/// Large values and long keys round-trip byte for byte.
pub async fn large_values_and_long_keys(o: &dyn Opener) {
    let s = o.open().await.expect("open");
    let big: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let long_key: Vec<u8> = (0..65_536u32).map(|i| b'a' + (i % 26) as u8).collect();
    s.write(vec![put(b"big", &big), put(&long_key, b"long")])
        .await
        .expect("write large");
    assert_eq!(s.get(b"big").await.expect("get").as_deref(), Some(&big[..]));
    assert_eq!(
        s.get(&long_key).await.expect("get").as_deref(),
        Some(&b"long"[..])
    );
    let many: Vec<Op> = (0..64)
        .map(|i| put(format!("m{i:02}").as_bytes(), &big[..100_000]))
        .collect();
    s.write(many).await.expect("write many");
    let got = collect(
        &*s,
        Scan {
            lower: Bound::Included(b"m".to_vec()),
            upper: Bound::Excluded(b"n".to_vec()),
            reverse: false,
            limit: None,
        },
    )
    .await
    .expect("scan");
    assert_eq!(got.len(), 64);
    assert!(got.iter().all(|(_, v)| v[..] == big[..100_000]));
}

/// Ops apply in order inside a batch; batches apply in call order even when awaited later.
pub async fn write_ordering(o: &dyn Opener) {
    let s = o.open().await.expect("open");
    s.write(vec![
        put(b"x", b"1"),
        Op::Del { key: b"x".to_vec() },
        put(b"y", b"1"),
        put(b"y", b"2"),
        Op::Del {
            key: b"never-existed".to_vec(),
        },
    ])
    .await
    .expect("write");
    assert_eq!(s.get(b"x").await.expect("get"), None, "put then del");
    assert_eq!(s.get(b"y").await.expect("get").as_deref(), Some(&b"2"[..]));
    let futs: Vec<_> = (0..50)
        .map(|i| s.write(vec![put(b"order", format!("{i:02}").as_bytes())]))
        .collect();
    for f in futs.into_iter().rev() {
        f.await.expect("write");
    }
    assert_eq!(
        s.get(b"order").await.expect("get").as_deref(),
        Some(&b"49"[..]),
        "batches must apply in call order"
    );
}

/// A reader never sees half a batch, and a cursor keeps its snapshot while writes go on.
pub async fn batch_atomicity(o: &dyn Opener) {
    let s = o.open().await.expect("open");
    const N: usize = 50;
    let gen_ops = |g: usize| -> Vec<Op> {
        let mut ops = Vec::new();
        for i in 0..N {
            if g > 0 {
                ops.push(Op::Del {
                    key: format!("b/{:04}/{i:02}", g - 1).into_bytes(),
                });
            }
            ops.push(put(format!("b/{g:04}/{i:02}").as_bytes(), b"x"));
        }
        ops
    };
    s.write(gen_ops(0)).await.expect("write");
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for g in 1..200 {
                s.write(gen_ops(g)).await.expect("write");
            }
        })
    };
    let mut checks = 0;
    while !writer.is_finished() || checks < 20 {
        let mut cursor = s.scan(Scan::all()).await.expect("scan");
        let mut keys = Vec::new();
        loop {
            let b = cursor.next_batch(9).await.expect("batch");
            if b.is_empty() {
                break;
            }
            keys.extend(keys_of(&b));
            tokio::task::yield_now().await;
        }
        let gens: std::collections::BTreeSet<_> = keys.iter().map(|k| k[2..6].to_vec()).collect();
        assert_eq!(
            keys.len(),
            N,
            "a scan saw a partial batch: {} keys",
            keys.len()
        );
        assert_eq!(gens.len(), 1, "a scan mixed generations: {gens:?}");
        checks += 1;
    }
    writer.await.expect("writer");
}

/// Many concurrent writers: every acknowledged write is there.
pub async fn concurrent_writers(o: &dyn Opener) {
    let s = o.open().await.expect("open");
    let mut tasks = Vec::new();
    for t in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                s.write(vec![
                    put(format!("c/{t:02}/{i:02}").as_bytes(), b"v"),
                    put(format!("d/{t:02}").as_bytes(), format!("{i}").as_bytes()),
                ])
                .await
                .expect("write");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let all = collect(&*s, Scan::all()).await.expect("scan");
    assert_eq!(all.len(), 16 * 25 + 16);
    for t in 0..16 {
        assert_eq!(
            s.get(format!("d/{t:02}").as_bytes())
                .await
                .expect("get")
                .as_deref(),
            Some(&b"24"[..])
        );
    }
}

/// Acknowledged writes survive closing and reopening the store.
pub async fn persistence_across_restart(o: &dyn Opener) {
    {
        let s = o.open().await.expect("open");
        let ops = (0..1000)
            .map(|i| put(format!("p{i:04}").as_bytes(), format!("{i}").as_bytes()))
            .collect();
        s.write(ops).await.expect("write");
        s.write(vec![Op::Del {
            key: b"p0500".to_vec(),
        }])
        .await
        .expect("del");
    }
    let s = o.open().await.expect("reopen");
    let all = collect(&*s, Scan::all()).await.expect("scan");
    assert_eq!(all.len(), 999);
    assert_eq!(
        s.get(b"p0999").await.expect("get").as_deref(),
        Some(&b"999"[..])
    );
    assert_eq!(s.get(b"p0500").await.expect("get"), None);
}

/// Expands to one `#[tokio::test]` per conformance check, given an expression that builds a
/// fresh [`Opener`] (a new, empty instance of the backend) for each test.
#[macro_export]
macro_rules! storage_conformance_tests {
    ($opener:expr) => {
        $crate::storage_conformance_tests!(@each $opener;
            ordering, bounds_against_model, reverse_limit_and_empty_ranges,
            large_values_and_long_keys, write_ordering, batch_atomicity,
            concurrent_writers, persistence_across_restart);
    };
    (@each $opener:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let opener = $opener;
                $crate::server::storage::conformance::$name(&opener).await;
            }
        )*
    };
}
