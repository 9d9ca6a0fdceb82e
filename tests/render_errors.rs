//! Bad input to `zenkoctl render`: every error names the file, line and key, and the binary
//! exits with the invalid-input code (2) without writing anything.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use zenkoctl::stack::{self, RenderRequest, StackError};

const MAIN: &str = include_str!("../templates/docker-stack.yml.j2");

fn zenkoctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zenkoctl"))
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn first_error(request: &RenderRequest) -> StackError {
    match stack::render(request, &no_env) {
        Ok(_) => panic!("render should have failed"),
        Err(errors) => errors.0[0].clone(),
    }
}

/// A template directory holding the stock template with `edit` applied.
fn templates_with(dir: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let tdir = dir.join("templates");
    std::fs::create_dir_all(&tdir).unwrap();
    std::fs::write(tdir.join("docker-stack.yml.j2"), edit(MAIN)).unwrap();
    tdir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn assert_invalid_input(out: &Output, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "nothing is rendered on error");
    for e in expected {
        assert!(stderr.contains(e), "{e:?} not in: {stderr}");
    }
}

#[test]
fn unknown_profile_lists_the_available_ones() {
    let out = zenkoctl().args(["render", "-p", "prod"]).output().unwrap();
    assert_invalid_input(&out, &["unknown profile \"prod\"", "module", "full", "lab"]);
    // A profile name is a name, never a path.
    let e = first_error(&RenderRequest {
        profile: Some("../stacks/module".into()),
        ..Default::default()
    });
    assert!(e.message.contains("unknown profile"), "{e}");
}

#[test]
fn wrong_type_in_a_values_file_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let values = write(
        dir.path(),
        "values.yml",
        "stack: zenko\nmodule:\n  publish: true\n  data_port: ninety\n",
    );
    let out = zenkoctl()
        .args(["render", "-f"])
        .arg(&values)
        .output()
        .unwrap();
    assert_invalid_input(
        &out,
        &["values.yml:4", "key module.data_port", "invalid type"],
    );
}

#[test]
fn wrong_type_in_a_set_names_the_set() {
    let out = zenkoctl()
        .args(["render", "--set", "split=sometimes"])
        .output()
        .unwrap();
    assert_invalid_input(&out, &["--set split=sometimes", "key split"]);
}

#[test]
fn unknown_value_key_is_an_error_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let values = write(dir.path(), "v.yml", "module:\n  data-port: 9991\n");
    let e = first_error(&RenderRequest {
        values_files: vec![values],
        ..Default::default()
    });
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("unknown field `data-port`"), "{e}");
}

#[test]
fn unset_required_variable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let values = write(
        dir.path(),
        "v.yml",
        "stack: zenko\nimage:\n  registry: ${ZENKOCTL_TEST_REGISTRY:?the lab registry}\n",
    );
    let out = zenkoctl()
        .args(["render", "-f"])
        .arg(&values)
        .env_remove("ZENKOCTL_TEST_REGISTRY")
        .output()
        .unwrap();
    assert_invalid_input(
        &out,
        &[
            "v.yml:3",
            "key image.registry",
            "ZENKOCTL_TEST_REGISTRY",
            "the lab registry",
        ],
    );
    // Set, it renders.
    let ok = zenkoctl()
        .args(["render", "-f"])
        .arg(&values)
        .env("ZENKOCTL_TEST_REGISTRY", "10.0.0.1:5000")
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("10.0.0.1:5000/zenkoctl/module"));
}

#[test]
fn template_syntax_error_names_template_and_line() {
    let dir = tempfile::tempdir().unwrap();
    // An `endfor` without a `for`, on the line of `{% if split %}`.
    let line = MAIN
        .lines()
        .position(|l| l.trim() == "{% if split %}")
        .unwrap()
        + 1;
    let tdir = templates_with(dir.path(), |t| {
        t.replacen("{% if split %}", "{% if split %}{% endfor %}", 1)
    });
    let out = zenkoctl()
        .args(["render", "--templates"])
        .arg(&tdir)
        .output()
        .unwrap();
    assert_invalid_input(
        &out,
        &[
            &format!("docker-stack.yml.j2:{line}"),
            "template syntax error",
        ],
    );
}

#[test]
fn undefined_template_variable_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let tdir = templates_with(dir.path(), |t| {
        t.replace("{{ module_image | quote }}", "{{ module.imagee | quote }}")
    });
    let e = first_error(&RenderRequest {
        templates_dir: Some(tdir),
        ..Default::default()
    });
    assert!(e.file.ends_with("docker-stack.yml.j2"), "{e}");
    assert!(e.message.contains("undefined"), "{e}");
    assert!(e.line.is_some());
}

#[test]
fn invalid_port_is_located_in_the_rendered_stack() {
    let e = first_error(&RenderRequest {
        sets: vec!["module.data_port=70000".into()],
        ..Default::default()
    });
    // 70000 does not fit the u16 value type: caught at the --set.
    assert!(e.file.contains("--set module.data_port=70000"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let tdir = templates_with(dir.path(), |t| {
        t.replacen(
            "published: {{ published_port }}",
            "published: {{ published_port + 60000 }}",
            1,
        )
    });
    let e = first_error(&RenderRequest {
        templates_dir: Some(tdir),
        ..Default::default()
    });
    assert!(e.file.contains("rendered from"), "{e}");
    assert_eq!(e.key.as_deref(), Some("services.s3-dmd.ports[0]"));
    assert!(e.message.contains("invalid port \"69990\""), "{e}");
    assert!(e.line.is_some());
}

#[test]
fn invalid_constraint_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let tdir = templates_with(dir.path(), |t| {
        t.replacen(
            "node.labels.io.zenko.type == storage",
            "node.labels.io.zenko.type = storage",
            1,
        )
    });
    let out = zenkoctl()
        .args(["render", "--templates"])
        .arg(&tdir)
        .output()
        .unwrap();
    assert_invalid_input(
        &out,
        &[
            "key services.s3-dmd.deploy.placement.constraints[0]",
            "has no == or != operator",
        ],
    );
}

#[test]
fn secret_referenced_but_not_defined() {
    let dir = tempfile::tempdir().unwrap();
    // Drop the top-level definition of s3-credentials, keep the reference in s3-front.
    let tdir = templates_with(dir.path(), |t| {
        t.replacen("  s3-credentials:\n", "  s3-credentialz:\n", 1)
    });
    let e = first_error(&RenderRequest {
        profile: Some("full".into()),
        templates_dir: Some(tdir),
        ..Default::default()
    });
    assert_eq!(e.key.as_deref(), Some("services.s3-front.secrets[0]"));
    assert!(
        e.message
            .contains("secret \"s3-credentials\" is referenced but not defined"),
        "{e}"
    );
}

#[test]
fn dnsrr_with_ingress_ports_is_refused_before_swarm_does() {
    let e = first_error(&RenderRequest {
        sets: vec!["network.endpoint_mode=dnsrr".into()],
        ..Default::default()
    });
    assert!(e.message.contains("use mode: host"), "{e}");
}

#[test]
fn invalid_stack_name_is_refused() {
    // Dots are not allowed in Swarm object names: caught here, not half-way through a deploy.
    let e = first_error(&RenderRequest {
        sets: vec!["stack=zenko.prod".into()],
        ..Default::default()
    });
    assert!(e.message.contains("zenko.prod"), "{e}");
}

#[test]
fn unknown_compose_key_in_a_template_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let tdir = templates_with(dir.path(), |t| {
        t.replace(
            "    stop_grace_period: 30s\n",
            "    stop_grace_periode: 30s\n",
        )
    });
    let e = first_error(&RenderRequest {
        templates_dir: Some(tdir),
        ..Default::default()
    });
    assert!(
        e.message.contains("unknown field `stop_grace_periode`"),
        "{e}"
    );
    assert!(
        e.key.as_deref().unwrap().starts_with("services.s3-dmd"),
        "{e}"
    );
    assert!(e.line.is_some());
}

#[test]
fn json_output_reports_errors_as_json() {
    let out = zenkoctl()
        .args(["render", "-p", "nope", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["exit_code"], 2);
    assert!(doc["error"].as_str().unwrap().contains("unknown profile"));
}
