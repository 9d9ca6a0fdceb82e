//! Crash safety and shutdown of the data service, on real files: SIGKILL in the middle of
//! uploads, clients that disconnect mid-upload, SIGTERM with uploads in flight.

mod data_support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use data_support::*;

/// An object that says what it should be: 8 bytes id, 8 bytes length, then `Pattern(id)`.
fn self_describing(id: u64, len: usize) -> Vec<u8> {
    assert!(len >= 16);
    let mut v = Pattern::bytes(id, len);
    v[..8].copy_from_slice(&id.to_le_bytes());
    v[8..16].copy_from_slice(&(len as u64).to_le_bytes());
    v
}

/// Whether a file's content is a complete object as built by [`self_describing`].
fn is_complete_object(content: &[u8]) -> bool {
    if content.len() < 16 {
        return false;
    }
    let id = u64::from_le_bytes(content[..8].try_into().unwrap());
    let len = u64::from_le_bytes(content[8..16].try_into().unwrap()) as usize;
    len == content.len() && self_describing(id, len) == content
}

#[test]
fn sigkill_mid_upload_keeps_acknowledged_objects_and_hides_partial_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let addr = server.addr;
    let acked: Arc<Mutex<Vec<(String, u64, usize)>>> = Arc::default();
    let interrupted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sizes = [16usize, 1024, 64 * 1024, 700 * 1024, 3 * 1024 * 1024 + 7];
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let (acked, interrupted, stop) = (acked.clone(), interrupted.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = t * 1_000_000 + seq;
                let len = sizes[(seq as usize + t as usize) % sizes.len()];
                seq += 1;
                let body = self_describing(id, len);
                // Send big bodies in slices with pauses, so the kill often lands mid-body.
                let outcome = (|| -> std::io::Result<String> {
                    let mut c = Conn::try_connect(addr)?;
                    c.send_head("PUT", "/DataFile/", &[("Content-Length", &len.to_string())])?;
                    for piece in body.chunks(256 * 1024) {
                        c.stream().write_all(piece)?;
                        if len > 1024 * 1024 {
                            std::thread::sleep(Duration::from_millis(15));
                        }
                    }
                    let r = c.read_response(false)?;
                    Ok(r.key())
                })();
                match outcome {
                    Ok(key) => acked.lock().unwrap().push((key, id, len)),
                    Err(_) => {
                        interrupted.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    server.signal(libc::SIGKILL);
    let mut server = server;
    server.wait_exit(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 8,
        "too few uploads completed before the kill: {}",
        acked.len()
    );
    assert!(
        interrupted.load(Ordering::Relaxed) >= 1,
        "no upload was in flight at the kill"
    );

    // Restart on the same directory.
    let server = Server::start(&data);
    assert_eq!(temp_files(&data), 0, "temporary files survived the restart");
    for (key, id, len) in &acked {
        let r = get(server.addr, key, None);
        assert_eq!(r.status, 200, "acknowledged object {key} lost");
        assert!(
            r.body == self_describing(*id, *len),
            "acknowledged object {key} corrupted"
        );
    }
    // Every object on disk is complete (acknowledged, or finished just before the kill).
    let on_disk = objects_on_disk(&data);
    assert!(on_disk.len() >= acked.len());
    for (key, path) in on_disk {
        let content = std::fs::read(&path).unwrap();
        assert!(
            is_complete_object(&content),
            "partial object visible as {key}"
        );
        assert_eq!(get(server.addr, &key, None).body, content);
    }
}

#[test]
fn client_disconnect_mid_upload_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    // Before the first disk batch, and after several.
    for sent in [100 * 1024usize, 3 * 1024 * 1024 + 5] {
        let mut c = Conn::connect(server.addr);
        c.send_head(
            "PUT",
            "/DataFile/",
            &[("Content-Length", &(10 * 1024 * 1024).to_string())],
        )
        .unwrap();
        c.stream().write_all(&Pattern::bytes(1, sent)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        c.stream().shutdown(std::net::Shutdown::Both).unwrap();
        drop(c);
        assert!(
            eventually(Duration::from_secs(10), || temp_files(&data) == 0),
            "temporary file left after a disconnect ({sent} bytes sent)"
        );
    }
    assert!(objects_on_disk(&data).is_empty());
    // The server is still fine, and counted the aborts.
    let key = put(server.addr, b"after");
    assert_eq!(get(server.addr, &key, None).body, b"after");
    let metrics = request(server.addr, "GET", "/_/metrics", &[], None).text();
    assert!(
        metrics.contains(
            "zenkoctl_request_errors_total{service=\"data\",op=\"put\",kind=\"aborted\"} 2"
        ) || metrics.contains(
            "zenkoctl_request_errors_total{service=\"data\",op=\"put\",kind=\"server\"} 2"
        ),
        "{metrics}"
    );
}

#[test]
fn sigterm_lets_in_flight_uploads_finish() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let idle = Conn::connect(server.addr);
    let body = Pattern::bytes(9, 4 * 1024 * 1024);
    let mut c = Conn::connect(server.addr);
    c.send_head(
        "PUT",
        "/DataFile/",
        &[("Content-Length", &body.len().to_string())],
    )
    .unwrap();
    c.stream().write_all(&body[..2 * 1024 * 1024]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // No new connections once shutting down.
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "still accepting after SIGTERM"
    );
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited with an upload in flight"
    );
    c.stream().write_all(&body[2 * 1024 * 1024..]).unwrap();
    let key = c.read_response(false).unwrap().key();
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        server.stderr()
    );
    drop(idle);
    let server = Server::start(&data);
    assert!(get(server.addr, &key, None).body == body);
}
