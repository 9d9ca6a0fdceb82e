//! Interop with Arsenal's real client code (npm @scality/arsenal 8.5.16), in one run against
//! BOTH Arsenal's reference MetadataFileServer (which proves the checks) and ours:
//! - tests/arsenal/metadata-checks.js: MetadataFileClient/LevelDbClient, BucketFileInterface as
//!   CloudServer uses it, the record log;
//! - tests/arsenal/metadata-listing-checks.js: createReadStream with every option combination
//!   against a byte-order model, rawListKeys, and BucketFileInterface listings (prefix,
//!   delimiter, marker, maxKeys) through Arsenal's own listing algorithms.
//!
//! Versioning in depth: tests/metadata_versioning.rs.

mod metadata_support;

use metadata_support::{run_checks, Server};

fn compare(script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let reference = Server::reference(&dir.path().join("ref"));
    let ours = Server::ours(&dir.path().join("ours"));
    let on_ref = run_checks(script, reference.addr, &[]);
    let on_ours = run_checks(script, ours.addr, &[]);
    assert!(
        on_ref.failed.is_empty() && !on_ref.passed.is_empty(),
        "{script} fails against Arsenal's reference server ({}): the harness itself is wrong\n{}",
        on_ref.summary,
        on_ref.output
    );
    if let Some((name, msg)) = on_ours.failed.first() {
        panic!(
            "{script}: check {name:?} fails against zenkoctl: {msg}\n{}\nserver stderr:\n{}",
            on_ours.output,
            ours.stderr()
        );
    }
    let mut ran_ours: Vec<_> = on_ours
        .passed
        .iter()
        .cloned()
        .chain(on_ours.failed.iter().map(|(n, _)| n.clone()))
        .collect();
    let mut ran_ref = on_ref.passed.clone();
    ran_ours.sort();
    ran_ref.sort();
    assert_eq!(
        ran_ours, ran_ref,
        "{script}: not the same checks ran on both servers"
    );
}

#[test]
fn metadata_checks_pass_against_the_reference_and_ours() {
    compare("metadata-checks.js");
}

#[test]
fn listing_checks_pass_against_the_reference_and_ours() {
    compare("metadata-listing-checks.js");
}
