//! The data service's wire protocol (spec §6, §7 #20-25), against the real binary on a real
//! directory: objects, ranges, errors, hostile keys, health, metrics, request-id logging.

mod data_support;

use std::io::Write;
use std::time::Duration;

use data_support::*;

fn server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(&dir.path().join("data"), &[("RUST_LOG", "zenkoctl=debug")]);
    (dir, s)
}

#[test]
fn put_get_delete_round_trip_in_arsenal_layout() {
    let (_dir, s) = server();
    let body: Vec<u8> = (0..52u8).map(|i| b'0' + i % 10).collect();
    let resp = request(
        s.addr,
        "PUT",
        "/DataFile/",
        &[
            ("X-Scal-Request-Uids", "test-uid-7f3a"),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(&body),
    );
    assert_eq!(resp.status, 201);
    assert_eq!(resp.header("content-length"), Some("0"));
    assert_eq!(resp.header("content-type"), None);
    let key = resp.key();

    // Stored where Arsenal's DataFileStore puts it.
    let dir = zenkoctl::server::data::store::folder_of(&key);
    let path = s.path.join(dir.to_string()).join(&key);
    assert_eq!(std::fs::read(&path).unwrap(), body);

    let whole = get(s.addr, &key, None);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, body);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.header("content-length"), Some("52"));
    assert_eq!(whole.header("content-range"), None);

    let del = request(s.addr, "DELETE", &format!("/DataFile/{key}"), &[], None);
    assert_eq!(del.status, 204);
    assert!(!path.exists());
    let gone = get(s.addr, &key, None);
    assert_eq!(gone.status, 404);
    assert_eq!(
        gone.text(),
        "{\"errorType\":\"ObjNotFound\",\"errorMessage\":\"This object does not exist\"}\n"
    );
    let again = request(s.addr, "DELETE", &format!("/DataFile/{key}"), &[], None);
    assert_eq!(
        (again.status, again.error_type().as_str()),
        (404, "ObjNotFound")
    );

    // The request ids reach the logs.
    assert!(
        eventually(Duration::from_secs(5), || s
            .stderr()
            .contains("test-uid-7f3a")),
        "request uids not logged:\n{}",
        s.stderr()
    );
}

#[test]
fn put_without_trailing_slash_empty_object_and_chunked_body() {
    let (_dir, s) = server();
    let key = request(s.addr, "PUT", "/DataFile", &[], Some(b"abc")).key();
    assert_eq!(get(s.addr, &key, None).body, b"abc");

    let empty = put(s.addr, b"");
    let r = get(s.addr, &empty, None);
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header("content-length"), Some("0"));

    // No Content-Length (a chunked body) -> 411.
    let mut c = Conn::connect(s.addr);
    c.send_head("PUT", "/DataFile/", &[("Transfer-Encoding", "chunked")])
        .unwrap();
    c.stream().write_all(b"3\r\nabc\r\n0\r\n\r\n").unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(
        (r.status, r.error_type().as_str()),
        (411, "MissingContentLength")
    );
    assert_eq!(objects_on_disk(&s.path).len(), 2);
}

#[test]
fn ranges_follow_the_reference() {
    let (_dir, s) = server();
    let body: Vec<u8> = (0..52u8).map(|i| b'0' + i % 10).collect();
    let key = put(s.addr, &body);
    let cases: &[(&str, u16, Option<&str>, std::ops::Range<usize>)] = &[
        ("bytes=3-9", 206, Some("bytes 3-9/52"), 3..10),
        ("bytes=0-0", 206, Some("bytes 0-0/52"), 0..1),
        ("bytes=51-51", 206, Some("bytes 51-51/52"), 51..52),
        ("bytes=-5", 206, Some("bytes 47-51/52"), 47..52),
        ("bytes=-100", 206, Some("bytes 0-51/52"), 0..52),
        ("bytes=40-", 206, Some("bytes 40-51/52"), 40..52),
        ("bytes=40-1000", 206, Some("bytes 40-51/52"), 40..52),
        // Malformed, reversed and multi-ranges are ignored: the whole object.
        ("bytes=5-2", 200, None, 0..52),
        ("bytes=0-1,3-4", 200, None, 0..52),
        ("bytes=-", 200, None, 0..52),
        ("items=0-3", 200, None, 0..52),
        ("bytes=0-1,0-1", 200, None, 0..52),
    ];
    for (range, status, content_range, slice) in cases {
        let r = get(s.addr, &key, Some(range));
        assert_eq!(r.status, *status, "{range}");
        assert_eq!(r.header("content-range"), *content_range, "{range}");
        assert_eq!(r.body, &body[slice.clone()], "{range}");
        assert_eq!(
            r.header("content-length"),
            Some(slice.len().to_string().as_str()),
            "{range}"
        );
        assert_eq!(r.header("accept-ranges"), Some("bytes"), "{range}");
    }
    for range in [
        "bytes=57-62",
        "bytes=52-",
        "bytes=-0",
        "bytes=99999999999999999999999-",
    ] {
        let r = get(s.addr, &key, Some(range));
        assert_eq!(
            (r.status, r.error_type().as_str()),
            (416, "InvalidRange"),
            "{range}"
        );
        assert_eq!(
            r.text(),
            "{\"errorType\":\"InvalidRange\",\"errorMessage\":\"The requested range cannot be satisfied.\"}\n"
        );
    }
    // On an empty object: bytes=0- and bytes=0-0 are unsatisfiable, a suffix is the whole (empty) object.
    let empty = put(s.addr, b"");
    assert_eq!(get(s.addr, &empty, Some("bytes=0-")).status, 416);
    assert_eq!(get(s.addr, &empty, Some("bytes=0-0")).status, 416);
    assert_eq!(get(s.addr, &empty, Some("bytes=-0")).status, 416);
    assert_eq!(get(s.addr, &empty, Some("bytes=-3")).status, 200);
    // A missing key is 404 before the range is looked at.
    let missing = "0".repeat(40);
    assert_eq!(get(s.addr, &missing, Some("bytes=99-")).status, 404);
}

#[test]
fn hostile_keys_never_touch_the_filesystem_outside() {
    let (dir, s) = server();
    // A file next to the data directory that a traversal would reach.
    std::fs::write(dir.path().join("secret"), b"secret").unwrap();
    std::fs::write(s.path.join("0").join("abc"), b"not a key").unwrap();
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/DataFile/../secret", 400, "InvalidURI"),
        ("GET", "/DataFile/%2e%2e/secret", 400, "InvalidURI"),
        ("GET", "/DataFile/%2e%2e%2fsecret", 400, "InvalidURI"),
        ("GET", "/DataFile/..%2fsecret", 400, "InvalidURI"),
        ("DELETE", "/DataFile/../secret", 400, "InvalidURI"),
        ("GET", "/DataFile/abc/def", 400, "InvalidURI"),
        ("GET", "/DataFile//abc", 400, "InvalidURI"),
        ("GET", "/DataFile/ab%00cd", 400, "InvalidURI"),
        (
            "GET",
            "/DataFile/ABCDEF0123456789ABCDEF0123456789ABCDEF01",
            400,
            "InvalidURI",
        ),
        ("GET", "/DataFile/abc?x=1", 400, "InvalidURI"),
        ("GET", "/DataFile/?diskUsage", 400, "InvalidURI"),
        ("GET", "/DataFile?other", 400, "InvalidURI"),
        ("GET", "/DataFile/%zz", 400, "InvalidURI"),
        ("GET", "/Other/abc", 400, "InvalidAction"),
        ("GET", "/DataFile/", 400, "MissingParameter"),
        ("DELETE", "/DataFile", 400, "MissingParameter"),
        ("PUT", "/DataFile/abc", 400, "InvalidURI"),
        // Hex but not a 40-character key: it cannot exist, and is not looked up.
        ("GET", "/DataFile/abc", 404, "ObjNotFound"),
        ("DELETE", "/DataFile/abc", 404, "ObjNotFound"),
        (
            "GET",
            "/DataFile/0000000000000000000000000000000000000000a",
            404,
            "ObjNotFound",
        ),
        ("HEAD", "/DataFile/abc", 405, "MethodNotAllowed"),
        ("POST", "/DataFile/", 405, "MethodNotAllowed"),
        ("OPTIONS", "/DataFile/", 405, "MethodNotAllowed"),
    ];
    for (method, target, status, error_type) in cases {
        let mut c = Conn::connect(s.addr);
        let body: Option<&[u8]> = if *method == "PUT" { Some(b"x") } else { None };
        let r = c.request(method, target, &[], body).unwrap();
        assert_eq!(r.status, *status, "{method} {target}: {}", r.text());
        if *method != "HEAD" {
            assert_eq!(r.error_type(), *error_type, "{method} {target}");
        }
    }
    let overlong = format!("/DataFile/{}", "a".repeat(5000));
    assert_eq!(request(s.addr, "GET", &overlong, &[], None).status, 404);
    assert_eq!(std::fs::read(dir.path().join("secret")).unwrap(), b"secret");
    assert_eq!(
        std::fs::read(s.path.join("0").join("abc")).unwrap(),
        b"not a key"
    );
}

#[test]
fn disk_usage_health_and_metrics() {
    let (_dir, s) = server();
    let r = request(s.addr, "GET", "/DataFile?diskUsage", &[], None);
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let (avail, free, total) = (
        v["available"].as_u64().unwrap(),
        v["free"].as_u64().unwrap(),
        v["total"].as_u64().unwrap(),
    );
    assert!(total > 0 && free <= total && avail <= free, "{v}");

    let h = request(s.addr, "GET", "/_/health", &[], None);
    assert_eq!(h.status, 200, "{}", h.text());
    let key = put(s.addr, b"hello");
    get(s.addr, &key, None);
    get(s.addr, &"f".repeat(40), None);
    let m = request(s.addr, "GET", "/_/metrics", &[], None);
    assert_eq!(m.status, 200);
    let text = m.text();
    for line in [
        "zenkoctl_requests_total{service=\"data\",op=\"put\",code=\"201\"} 1",
        "zenkoctl_requests_total{service=\"data\",op=\"get\",code=\"200\"} 1",
        "zenkoctl_requests_total{service=\"data\",op=\"get\",code=\"404\"} 1",
        "zenkoctl_request_errors_total{service=\"data\",op=\"get\",kind=\"client\"} 1",
        "zenkoctl_bytes_total{service=\"data\",op=\"put\",direction=\"in\"} 5",
        "zenkoctl_bytes_total{service=\"data\",op=\"get\",direction=\"out\"} 5",
        "zenkoctl_request_duration_seconds_count{service=\"data\",op=\"put\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // The probe used by a `--check` agrees.
    zenkoctl::server::observe::probe(s.addr, Duration::from_secs(5)).unwrap();

    // Not ready when the directory is not writable (skipped as root: root bypasses modes).
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let tmp = s.path.join(".zenkoctl-tmp");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o500)).unwrap();
        let h = request(s.addr, "GET", "/_/health", &[], None);
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(h.status, 503, "{}", h.text());
    }
}

#[test]
fn health_fails_when_the_data_directory_is_gone() {
    // Works as root too: the temporary-upload directory is replaced by a file.
    let (_dir, s) = server();
    assert_eq!(request(s.addr, "GET", "/_/health", &[], None).status, 200);
    let tmp = s.path.join(".zenkoctl-tmp");
    std::fs::remove_dir(&tmp).unwrap();
    std::fs::write(&tmp, b"").unwrap();
    let h = request(s.addr, "GET", "/_/health", &[], None);
    assert_eq!(h.status, 503, "{}", h.text());
    assert!(h.text().contains("data:"), "{}", h.text());
    assert!(zenkoctl::server::observe::probe(s.addr, Duration::from_secs(5)).is_err());
    // And a PUT fails cleanly with Arsenal's InternalError.
    let r = request(s.addr, "PUT", "/DataFile/", &[], Some(b"x"));
    assert_eq!(
        (r.status, r.error_type().as_str()),
        (500, "InternalError"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("filesystem error"), "{}", r.text());
}

#[test]
fn keep_alive_and_expect_continue() {
    let (_dir, s) = server();
    let mut c = Conn::connect(s.addr);
    let mut keys = Vec::new();
    for i in 0..20u64 {
        let body = Pattern::bytes(i, 1000 + i as usize * 5000);
        keys.push((
            c.request("PUT", "/DataFile/", &[], Some(&body))
                .unwrap()
                .key(),
            body,
        ));
    }
    for (key, body) in &keys {
        let r = c
            .request("GET", &format!("/DataFile/{key}"), &[], None)
            .unwrap();
        assert_eq!(&r.body, body);
    }
    // Expect: 100-continue gets 100 Continue before the body is sent.
    let mut c = Conn::connect(s.addr);
    c.send_head(
        "PUT",
        "/DataFile/",
        &[("Content-Length", "4"), ("Expect", "100-continue")],
    )
    .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(c.reader(), &mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line}");
    let mut blank = String::new();
    std::io::BufRead::read_line(c.reader(), &mut blank).unwrap();
    c.stream().write_all(b"body").unwrap();
    let key = c.read_response(false).unwrap().key();
    assert_eq!(get(s.addr, &key, None).body, b"body");
}

#[test]
fn large_object_ranges_stream_correctly() {
    let (_dir, s) = server();
    let body = Pattern::bytes(42, 5 * 1024 * 1024 + 123);
    let key = put(s.addr, &body);
    let whole = get(s.addr, &key, None);
    assert!(whole.body == body, "whole body differs");
    let r = get(s.addr, &key, Some("bytes=1000000-4000000"));
    assert_eq!(r.status, 206);
    assert!(r.body == body[1_000_000..=4_000_000], "range body differs");
    let r = get(s.addr, &key, Some("bytes=-700000"));
    assert!(
        r.body == body[body.len() - 700_000..],
        "suffix body differs"
    );
}

#[test]
fn idle_keep_alive_connections_outlive_the_client_agent() {
    // Arsenal's client agent reuses sockets idle for up to 55 s (spec §6.1, §7 #25).
    let (_dir, s) = server();
    let mut c = Conn::connect(s.addr);
    let key = c
        .request("PUT", "/DataFile/", &[], Some(b"idle"))
        .unwrap()
        .key();
    std::thread::sleep(Duration::from_secs(56));
    let r = c
        .request("GET", &format!("/DataFile/{key}"), &[], None)
        .expect("the server closed a keep-alive connection idle for 56 s");
    assert_eq!(r.body, b"idle");
}

#[test]
fn object_truncated_during_a_get_fails_that_response_only() {
    // Objects are immutable, but an operator can still truncate a file under a running server.
    // The response being sent must fail (short body, connection closed: its Content-Length can
    // no longer be met) and the server must keep serving: no SIGBUS from a mapped file.
    let (_dir, mut s) = server();
    let size = 32 * 1024 * 1024;
    let body = Pattern::bytes(7, size);
    let key = put(s.addr, &body);
    let other = put(s.addr, b"still here");
    let path = std::fs::read_dir(&s.path)
        .unwrap()
        .map(|d| d.unwrap().path().join(&key))
        .find(|p| p.exists())
        .expect("object file in its hash directory");

    let mut c = Conn::connect(s.addr);
    c.send_head("GET", &format!("/DataFile/{key}"), &[])
        .unwrap();
    let (status, headers) = c.read_head().unwrap();
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-length") && v == &size.to_string()));
    let mut first = vec![0u8; 1024 * 1024];
    std::io::Read::read_exact(c.reader(), &mut first).unwrap();
    assert!(first == body[..first.len()], "first MiB differs");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(c.reader(), &mut rest);
    assert!(
        first.len() + rest.len() < size,
        "the whole body arrived although the file was truncated"
    );

    assert!(
        s.child.try_wait().unwrap().is_none(),
        "the server died: {}",
        s.stderr()
    );
    assert_eq!(get(s.addr, &other, None).body, b"still here");
}
