//! The command line as users and machines see it: outputs, files, exit codes.

use std::process::Command;

fn zenkoctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zenkoctl"))
}

#[test]
fn render_writes_the_file_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docker-stack.yml");
    let out = zenkoctl()
        .args(["render", "-p", "lab", "-o"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("endpoint_mode: dnsrr"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("wrote"));
}

#[test]
fn render_json_output_is_one_document() {
    let out = zenkoctl()
        .args(["render", "-p", "full", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["stack"], "zenko");
    let services: Vec<&str> = doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        ["s3-metadata", "s3-data", "s3-front", "cache", "lb"]
    );
    assert!(doc["yaml"].as_str().unwrap().contains("services:"));
}

#[test]
fn unset_variables_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("v.yml");
    std::fs::write(&values, "image:\n  tag: ${ZENKOCTL_TEST_UNSET_TAG}x\n").unwrap();
    let out = zenkoctl()
        .args(["render", "-f"])
        .arg(&values)
        .env_remove("ZENKOCTL_TEST_UNSET_TAG")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ZENKOCTL_TEST_UNSET_TAG"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let out = zenkoctl().args(["render", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
