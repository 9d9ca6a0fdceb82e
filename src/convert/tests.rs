//! Conversion of the stock stacks and of edge cases, without an engine.

use super::diff::{compare, normalise, subset_differences, Change};
use super::*;
use crate::stack::{self, RenderRequest};

fn render(profile: &str, sets: &[&str]) -> crate::stack::Rendered {
    let req = RenderRequest {
        profile: Some(profile.into()),
        sets: sets.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    stack::render(&req, &|_| None).expect("renders")
}

fn no_files(_: &str) -> std::io::Result<Vec<u8>> {
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "no files in this test",
    ))
}

#[test]
fn module_profile_converts_like_docker_stack_deploy() {
    let r = render("module", &[]);
    let plan = convert(&r.compose, "zenko", &no_files).unwrap();
    assert_eq!(plan.networks.len(), 1);
    let net = &plan.networks[0].request;
    assert_eq!(net.name, "zenko_backend");
    assert_eq!(net.driver.as_deref(), Some("overlay"));
    assert_eq!(net.attachable, Some(true));
    assert_eq!(net.labels.as_ref().unwrap()[NAMESPACE_LABEL], "zenko");
    assert_eq!(plan.volumes, vec!["zenko_data", "zenko_metadata"]);

    let svc = &plan.services[0];
    assert_eq!(svc.name, "zenko_s3-dmd");
    let spec = &svc.spec;
    let labels = spec.labels.as_ref().unwrap();
    assert_eq!(labels[NAMESPACE_LABEL], "zenko");
    assert_eq!(labels[IMAGE_LABEL], "zenkoctl/module:latest");
    assert_eq!(labels[MANAGED_LABEL], MANAGED_VALUE);
    assert!(labels.contains_key(SPEC_HASH_LABEL));
    let task = spec.task_template.as_ref().unwrap();
    let cs = task.container_spec.as_ref().unwrap();
    assert_eq!(cs.args.as_ref().unwrap()[0], "serve");
    assert_eq!(
        cs.command, None,
        "compose command -> Args, entrypoint -> Command"
    );
    assert_eq!(cs.stop_grace_period, Some(30_000_000_000));
    assert_eq!(cs.labels.as_ref().unwrap()[NAMESPACE_LABEL], "zenko");
    let nets = task.networks.as_ref().unwrap();
    assert_eq!(nets[0].target.as_deref(), Some("zenko_backend"));
    assert_eq!(
        nets[0].aliases.as_deref(),
        Some(&["s3-dmd".to_string()][..])
    );
    let rp = task.restart_policy.as_ref().unwrap();
    assert_eq!(rp.delay, Some(5_000_000_000));
    let uc = spec.update_config.as_ref().unwrap();
    assert_eq!(uc.parallelism, Some(1));
    assert_eq!(uc.monitor, Some(10_000_000_000));
    let ports = spec.endpoint_spec.as_ref().unwrap().ports.as_ref().unwrap();
    assert_eq!(
        ports.iter().map(|p| p.published_port).collect::<Vec<_>>(),
        vec![Some(9990), Some(9991)]
    );
    let mounts = cs.mounts.as_ref().unwrap();
    assert_eq!(mounts[0].source.as_deref(), Some("zenko_metadata"));
    let vlabels = mounts[0]
        .volume_options
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(vlabels[NAMESPACE_LABEL], "zenko");
}

#[test]
fn conversion_is_deterministic_and_diff_sees_no_change() {
    let r = render("full", &[]);
    let read = |_: &str| Ok(b"export SCALITY_ACCESS_KEY_ID=x\n".to_vec());
    let a = convert(&r.compose, "zenko", &read).unwrap();
    let b = convert(&r.compose, "zenko", &read).unwrap();
    for (x, y) in a.services.iter().zip(&b.services) {
        assert_eq!(compare(&x.spec, &y.spec), Change::Unchanged, "{}", x.name);
    }
    // Env maps become sorted K=V.
    let front = a.services.iter().find(|s| s.key == "s3-front").unwrap();
    let env = front
        .spec
        .task_template
        .as_ref()
        .unwrap()
        .container_spec
        .as_ref()
        .unwrap()
        .env
        .clone()
        .unwrap();
    let mut sorted = env.clone();
    sorted.sort();
    assert_eq!(env, sorted);
    // The global lb has no replicas; the secret is hashed and mounted at its stable target.
    let lb = a.services.iter().find(|s| s.key == "lb").unwrap();
    assert!(lb.spec.mode.as_ref().unwrap().global.is_some());
    let secret = &a.secrets[0];
    assert!(
        secret.name.starts_with("zenko_s3-credentials."),
        "{}",
        secret.name
    );
    assert_eq!(
        secret.labels[CONTENT_HASH_LABEL],
        sha256_hex(b"export SCALITY_ACCESS_KEY_ID=x\n")
    );
    let sref = &front
        .spec
        .task_template
        .as_ref()
        .unwrap()
        .container_spec
        .as_ref()
        .unwrap()
        .secrets
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        sref.file.as_ref().unwrap().name.as_deref(),
        Some("s3-credentials")
    );
    assert_eq!(sref.secret_name.as_deref(), Some(secret.name.as_str()));
}

#[test]
fn a_changed_setting_is_an_update_and_a_removed_one_too() {
    let before = convert(&render("module", &[]).compose, "zenko", &no_files).unwrap();
    let after = convert(
        &render("module", &["module.log_level=debug"]).compose,
        "zenko",
        &no_files,
    )
    .unwrap();
    match compare(&after.services[0].spec, &before.services[0].spec) {
        Change::Update { fields } => {
            assert!(fields.iter().any(|f| f.contains("/Env/")), "{fields:?}")
        }
        other => panic!("{other:?}"),
    }
    // Removing update_config: no field of the new spec differs, but the hash does.
    let mut removed = before.services[0].spec.clone();
    removed.update_config = None;
    let removed = diff::with_spec_hash(removed);
    assert!(matches!(
        compare(&removed, &before.services[0].spec),
        Change::Update { .. }
    ));
    // A mode change cannot be done in place.
    let mut global = before.services[0].spec.clone();
    global.mode = Some(bollard::models::ServiceSpecMode {
        global: Some(Default::default()),
        ..Default::default()
    });
    assert!(matches!(
        compare(&global, &before.services[0].spec),
        Change::Recreate { .. }
    ));
}

#[test]
fn server_defaults_are_not_differences() {
    let desired = serde_json::json!({"A": "x", "B": [1, 2], "C": {"D": ""}});
    let actual = serde_json::json!({"A": "x", "B": [1, 2], "C": {"E": "default"}, "F": 0});
    assert!(subset_differences(&desired, &actual).is_empty());
    let drifted = serde_json::json!({"A": "y", "B": [1]});
    assert_eq!(subset_differences(&desired, &drifted), vec!["/A", "/B"]);
    assert_eq!(
        normalise(&serde_json::json!({"a": [], "b": false, "c": null})),
        None
    );
}

#[test]
fn oversized_secrets_and_bad_names_are_refused_up_front() {
    let r = render("full", &[]);
    let big = |_: &str| Ok(vec![b'x'; MAX_SECRET_SIZE]);
    let err = convert(&r.compose, "zenko", &big).unwrap_err();
    assert!(
        err.to_string().contains("secrets.s3-credentials.file"),
        "{err}"
    );
    let err = convert(&r.compose, &"z".repeat(60), &|_| Ok(b"x".to_vec())).unwrap_err();
    assert!(err.to_string().contains("not valid for Swarm"), "{err}");
    let missing = convert(&r.compose, "zenko", &no_files).unwrap_err();
    assert!(missing.to_string().contains("cannot read"), "{missing}");
}
