//! Interop with Arsenal's real client code (npm @scality/arsenal 8.5.16), in one run against
//! BOTH Arsenal's reference MetadataFileServer (which proves the checks) and ours:
//! - tests/arsenal/metadata-checks.js: MetadataFileClient/LevelDbClient, BucketFileInterface as
//!   CloudServer uses it, the record log;
//! - tests/arsenal/metadata-listing-checks.js: createReadStream with every option combination
//!   against a byte-order model, rawListKeys, and BucketFileInterface listings (prefix,
//!   delimiter, marker, maxKeys) through Arsenal's own listing algorithms.
//!
//! Versioning in depth: tests/metadata_versioning.rs.

#[path = "common/arsenal.rs"]
mod arsenal;
mod metadata_support;

use metadata_support::Server;

fn compare(script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let reference = arsenal::start_ref_metadata(
        &dir.path().join("ref"),
        &arsenal::RefMetadataOptions::default(),
    );
    let ours = Server::ours(&dir.path().join("ours"));
    // Against the reference first: that proves the checks.
    let on_ref = arsenal::assert_checks_pass(script, &reference.addr(), &[]);
    let on_ours = arsenal::run_checks(script, &ours.addr.to_string(), &[]);
    if !on_ours.failures().is_empty() {
        panic!(
            "{script}: checks fail against zenkoctl: {:?}\n{}\nserver stderr:\n{}",
            on_ours.failures(),
            on_ours.stdout,
            ours.stderr()
        );
    }
    arsenal::assert_same_outcomes(&on_ref, &on_ours);
}

#[test]
fn metadata_checks_pass_against_the_reference_and_ours() {
    compare("metadata-checks.js");
}

#[test]
fn listing_checks_pass_against_the_reference_and_ours() {
    compare("metadata-listing-checks.js");
}
