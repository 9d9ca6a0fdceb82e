//! `zenkoctl up` / `down` on a fresh engine (the lab's manager engine, taken out of its swarm):
//! up builds, deploys and waits until healthy; the printed example stores and reads an object;
//! a second up changes nothing; down removes the stack; up right after works again.

mod lab;

use std::process::{Command, Output};

use lab::Lab;
use serde_json::Value;

const ZENKOCTL: &str = env!("CARGO_BIN_EXE_zenkoctl");

fn zenkoctl(lab: &Lab, args: &[&str]) -> Output {
    Command::new(ZENKOCTL)
        .env("DOCKER_HOST", lab.manager())
        .args(args)
        .output()
        .expect("run zenkoctl")
}

fn json_ok(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

#[test]
fn up_twice_example_down_and_up_again() {
    let lab = Lab::up(1);
    lab.docker_ok(&["swarm", "leave", "--force"]);
    let tmp = tempfile::tempdir().unwrap();
    let binary = lab::stripped_zenkoctl(tmp.path());
    let bin = binary.to_str().unwrap();

    let first = json_ok(
        &zenkoctl(
            &lab,
            &[
                "up",
                "--binary",
                bin,
                "--timeout",
                "120",
                "--output",
                "json",
            ],
        ),
        "up",
    );
    assert_eq!(first["swarm"]["initialized"], true);
    assert_eq!(first["health"], "healthy");
    let example = first["example"].as_str().unwrap().to_string();
    let out = Command::new("sh").args(["-c", &example]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello zenko",
        "{example}: {out:?}"
    );

    let second = json_ok(
        &zenkoctl(&lab, &["up", "--binary", bin, "--output", "json"]),
        "up again",
    );
    assert_eq!(second["swarm"]["initialized"], false);
    assert_eq!(second["image"]["tag"], first["image"]["tag"]);
    for s in second["services"].as_array().unwrap() {
        assert_eq!(s["action"], "unchanged", "a second up changes nothing: {s}");
    }

    json_ok(&zenkoctl(&lab, &["down", "--output", "json"]), "down");
    assert_eq!(lab.docker_ok(&["service", "ls", "-q"]), "");
    let again = json_ok(
        &zenkoctl(&lab, &["up", "--binary", bin, "--output", "json"]),
        "up after down",
    );
    assert_eq!(again["health"], "healthy");
    json_ok(
        &zenkoctl(&lab, &["down", "--volumes", "--output", "json"]),
        "down --volumes",
    );
}
