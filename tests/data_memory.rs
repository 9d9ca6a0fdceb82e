//! Streaming: a 2 GiB object goes in and out while the server's peak RSS (VmHWM from /proc)
//! stays under 64 MiB.

mod data_support;

use std::io::{Read, Write};
use std::time::Instant;

use data_support::*;

const SIZE: u64 = 2 * 1024 * 1024 * 1024;
const RSS_LIMIT: u64 = 64 * 1024 * 1024;

#[test]
fn two_gib_object_streams_in_constant_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let started = Instant::now();

    let mut c = Conn::connect(server.addr);
    c.send_head(
        "PUT",
        "/DataFile/",
        &[("Content-Length", &SIZE.to_string())],
    )
    .unwrap();
    let mut pattern = Pattern::new(2024);
    let mut buf = vec![0u8; 1024 * 1024];
    let mut sent = 0u64;
    while sent < SIZE {
        pattern.fill(&mut buf);
        c.stream().write_all(&buf).unwrap();
        sent += buf.len() as u64;
    }
    let key = c.read_response(false).unwrap().key();
    let after_put = server.peak_rss();
    eprintln!(
        "PUT 2 GiB in {:?}, peak RSS {} MiB",
        started.elapsed(),
        after_put >> 20
    );

    let started = Instant::now();
    c.send_head("GET", &format!("/DataFile/{key}"), &[])
        .unwrap();
    let (status, headers) = c.read_head().unwrap();
    assert_eq!(status, 200);
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<u64>().unwrap());
    assert_eq!(len, Some(SIZE));
    let mut expected = Pattern::new(2024);
    let mut want = vec![0u8; 1024 * 1024];
    let mut got = vec![0u8; 1024 * 1024];
    let mut received = 0u64;
    while received < SIZE {
        c.reader().read_exact(&mut got).unwrap();
        expected.fill(&mut want);
        assert!(got == want, "content differs at offset {received}");
        received += got.len() as u64;
    }
    let peak = server.peak_rss();
    eprintln!(
        "GET 2 GiB in {:?}, peak RSS {} MiB",
        started.elapsed(),
        peak >> 20
    );
    assert!(peak < RSS_LIMIT, "peak RSS {} MiB >= 64 MiB", peak >> 20);
    // Keep the disk tidy for the rest of the suite.
    let r = c
        .request("DELETE", &format!("/DataFile/{key}"), &[], None)
        .unwrap();
    assert_eq!(r.status, 204);
}
