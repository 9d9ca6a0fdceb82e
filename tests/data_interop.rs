//! Interoperability with Arsenal, both ways, in one run:
//! - tests/arsenal/data-checks.js (Arsenal's own RESTClient plus raw wire checks) must pass
//!   against Arsenal's reference data server — which proves the checks — and against ours;
//! - a data directory written by the reference is served by ours, and one written by ours is
//!   served by the reference (the DataFileStore layout, spec §6.3).

#[path = "common/arsenal.rs"]
mod arsenal;
mod data_support;

use std::net::SocketAddr;

use data_support::*;

/// Arsenal's own data server, writing under `data`.
fn reference_on(data: &std::path::Path) -> (arsenal::ServerProcess, SocketAddr) {
    let reference = arsenal::start_ref_data(data);
    let addr = reference.addr().parse().expect("reference address");
    (reference, addr)
}

#[test]
fn data_checks_pass_against_the_reference_and_ours() {
    let dir = tempfile::tempdir().unwrap();
    let reference = arsenal::start_ref_data(&dir.path().join("ref"));
    let ours = Server::start(&dir.path().join("ours"));
    let on_ref = arsenal::run_checks("data-checks.js", &reference.addr(), &[]);
    let on_ours = arsenal::run_checks("data-checks.js", &ours.addr.to_string(), &[]);
    reference.stop();
    // Against Arsenal's own server first: that proves the harness.
    on_ref.assert_passed();
    assert!(
        on_ref.passed >= Some(30),
        "only {:?} data checks ran against the reference",
        on_ref.passed
    );
    on_ours.assert_passed();
    arsenal::assert_same_outcomes(&on_ref, &on_ours);
}

/// Objects of assorted sizes (0 bytes to past our 512 KiB read chunk and 1 MiB write batch).
fn bodies() -> Vec<Vec<u8>> {
    [0usize, 1, 52, 65_536, 524_289, 1_500_000]
        .iter()
        .enumerate()
        .map(|(i, &n)| Pattern::bytes(i as u64 + 100, n))
        .collect()
}

fn check_served(addr: std::net::SocketAddr, objects: &[(String, Vec<u8>)], who: &str) {
    for (key, body) in objects {
        let r = get(addr, key, None);
        assert_eq!(r.status, 200, "{who}: GET {key}");
        assert!(r.body == *body, "{who}: content of {key}");
        if body.len() > 10 {
            let r = get(addr, key, Some("bytes=5-9"));
            assert_eq!(r.status, 206, "{who}: ranged GET {key}");
            assert_eq!(r.body, body[5..10], "{who}: range of {key}");
        }
    }
}

#[test]
fn a_directory_written_by_either_server_is_served_by_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shared");

    // The reference writes; ours serves.
    let (reference, ref_addr) = reference_on(&data);
    let from_ref: Vec<(String, Vec<u8>)> = bodies()
        .into_iter()
        .map(|b| (put(ref_addr, &b), b))
        .collect();
    reference.stop();
    let ours = Server::start(&data);
    check_served(
        ours.addr,
        &from_ref,
        "zenkoctl serving the reference's directory",
    );

    // Ours writes into the same directory; the reference serves everything.
    let from_ours: Vec<(String, Vec<u8>)> = bodies()
        .into_iter()
        .map(|b| (put(ours.addr, &b), b))
        .collect();
    drop(ours);
    let (reference, ref_addr) = reference_on(&data);
    check_served(ref_addr, &from_ours, "reference serving zenkoctl's objects");
    check_served(
        ref_addr,
        &from_ref,
        "reference serving its own objects after zenkoctl",
    );
    // And deletes of our objects by the reference are seen by us.
    let (gone, _) = &from_ours[2];
    let r = request(ref_addr, "DELETE", &format!("/DataFile/{gone}"), &[], None);
    assert_eq!(r.status, 204);
    reference.stop();
    let ours = Server::start(&data);
    assert_eq!(get(ours.addr, gone, None).status, 404);
    let (kept, body) = &from_ref[3];
    assert!(get(ours.addr, kept, None).body == *body);
}
