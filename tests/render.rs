//! Rendering the stock profiles: the structure of what is rendered (placement, ports, secrets,
//! networks, wiring), and an independent validity check with `docker stack config`.

use std::path::Path;
use std::process::Command;

use zenkoctl::stack::model::{ComposeFile, FileReference, Port, Service};
use zenkoctl::stack::validate::parse_port;
use zenkoctl::stack::{self, RenderRequest, Rendered};

const STORAGE: &str = "node.labels.io.zenko.type == storage";

fn no_env(_: &str) -> Option<String> {
    None
}

fn render(profile: &str, sets: &[&str]) -> Rendered {
    let request = RenderRequest {
        profile: Some(profile.into()),
        sets: sets.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    stack::render(&request, &no_env).unwrap_or_else(|e| panic!("render {profile}: {e}"))
}

fn service<'a>(c: &'a ComposeFile, name: &str) -> &'a Service {
    c.services
        .get(name)
        .unwrap_or_else(|| panic!("no service {name} in {:?}", c.services.keys()))
}

fn constraints(s: &Service) -> Vec<String> {
    s.deploy
        .as_ref()
        .and_then(|d| d.placement.as_ref())
        .map(|p| p.constraints.clone())
        .unwrap_or_default()
}

/// (published, target, mode) of every port of a service.
fn ports(s: &Service) -> Vec<(Option<u16>, u16, String)> {
    s.ports
        .iter()
        .flat_map(|p| parse_port(p).unwrap())
        .map(|m| (m.published, m.target, m.mode))
        .collect()
}

fn env(s: &Service) -> Vec<(String, Option<String>)> {
    s.environment
        .as_ref()
        .map(|e| e.entries())
        .unwrap_or_default()
}

fn env_value(s: &Service, key: &str) -> Option<String> {
    env(s)
        .into_iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v)
}

fn argv(s: &Service) -> Vec<String> {
    s.command.as_ref().map(|c| c.to_argv()).unwrap_or_default()
}

fn flag(s: &Service, name: &str) -> Option<String> {
    let args = argv(s);
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn volume_targets(s: &Service) -> Vec<(String, String)> {
    s.volumes
        .iter()
        .map(|v| {
            let (_, source, target, _) = v.parts();
            (source.unwrap_or_default(), target)
        })
        .collect()
}

/// `docker stack config` (the docker client's own compose loader) accepts the file.
fn assert_docker_accepts(rendered: &Rendered) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docker-stack.yml");
    std::fs::write(&file, &rendered.yaml).unwrap();
    let out = Command::new("docker")
        .args(["stack", "config", "-c"])
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .expect("the docker client must be installed (it is on every machine of this project)");
    assert!(
        out.status.success(),
        "docker stack config rejected the rendered file:\n{}\n---\n{}",
        String::from_utf8_lossy(&out.stderr),
        rendered.yaml
    );
}

#[test]
fn module_profile_runs_the_bundled_server_on_the_storage_node() {
    let r = render("module", &[]);
    let c = &r.compose;
    assert_eq!(c.services.keys().collect::<Vec<_>>(), ["s3-dmd"]);
    let dmd = service(c, "s3-dmd");
    assert_eq!(argv(dmd)[0], "serve");
    assert_eq!(
        flag(dmd, "--metadata-addr").as_deref(),
        Some("0.0.0.0:9990")
    );
    assert_eq!(flag(dmd, "--data-addr").as_deref(), Some("0.0.0.0:9991"));
    assert_eq!(flag(dmd, "--metadata-backend").as_deref(), Some("embedded"));
    assert_eq!(flag(dmd, "--only"), None);
    assert_eq!(constraints(dmd), [STORAGE]);
    assert_eq!(
        ports(dmd),
        [
            (Some(9990), 9990, "ingress".to_string()),
            (Some(9991), 9991, "ingress".to_string())
        ]
    );
    assert_eq!(
        volume_targets(dmd),
        [
            (
                "metadata".to_string(),
                "/var/lib/zenko/metadata".to_string()
            ),
            ("data".to_string(), "/var/lib/zenko/data".to_string())
        ]
    );
    assert!(c.volumes.contains_key("metadata") && c.volumes.contains_key("data"));
    assert_eq!(dmd.image.as_deref(), Some("zenkoctl/module:latest"));
    let deploy = dmd.deploy.as_ref().unwrap();
    assert_eq!(deploy.endpoint_mode.as_deref(), Some("vip"));
    assert_eq!(deploy.replicas, Some(1));
    // A single writer per volume: an update must stop the old task first.
    assert_eq!(
        deploy.update_config.as_ref().unwrap().order.as_deref(),
        Some("stop-first")
    );
    let labels = deploy.labels.as_ref().unwrap().entries();
    assert!(labels.contains(&("io.zenko.managed-by".into(), Some("zenkoctl".into()))));
    assert!(c.secrets.is_empty());
    assert_docker_accepts(&r);
}

#[test]
fn full_profile_wires_cloudserver_to_the_module() {
    let r = render("full", &[]);
    let c = &r.compose;
    for name in ["s3-metadata", "s3-data", "s3-front", "cache", "lb"] {
        service(c, name);
    }
    // The original design's two module containers, both on the storage node.
    let md = service(c, "s3-metadata");
    let data = service(c, "s3-data");
    assert_eq!(flag(md, "--only").as_deref(), Some("metadata"));
    assert_eq!(flag(data, "--only").as_deref(), Some("data"));
    assert_eq!(constraints(md), [STORAGE]);
    assert_eq!(constraints(data), [STORAGE]);
    assert_eq!(md.image, data.image);
    // Reached inside the swarm only.
    assert!(md.ports.is_empty() && data.ports.is_empty());

    let front = service(c, "s3-front");
    assert_eq!(
        env_value(front, "METADATA_HOST").as_deref(),
        Some("s3-metadata")
    );
    assert_eq!(env_value(front, "DATA_HOST").as_deref(), Some("s3-data"));
    assert_eq!(env_value(front, "S3METADATA").as_deref(), Some("file"));
    assert_eq!(env_value(front, "S3DATA").as_deref(), Some("file"));
    assert_eq!(env_value(front, "REDIS_HOST").as_deref(), Some("cache"));
    assert_eq!(env_value(front, "ENDPOINT").as_deref(), Some("zenko"));
    // Credentials come from a Docker secret mounted where CloudServer's entrypoint sources
    // it, never from an environment literal.
    assert!(env(front).iter().all(|(k, _)| !k.contains("ACCESS_KEY")));
    assert_eq!(front.secrets.len(), 1);
    assert_eq!(front.secrets[0].source(), "s3-credentials");
    assert_eq!(front.secrets[0].target(), "s3-credentials");
    assert!(matches!(front.secrets[0], FileReference::Long(_)));
    assert_eq!(
        c.secrets["s3-credentials"].file.as_deref(),
        Some("./secrets.txt")
    );
    // Front and module share the backend network; the module stays off the others.
    let nets = |s: &Service| s.networks.as_ref().unwrap().names().join(",");
    assert_eq!(nets(front), "backend,frontend");
    assert_eq!(nets(md), "backend");
    assert_eq!(nets(service(c, "lb")), "frontend,frontend-dmz");
    assert_eq!(
        c.networks.keys().collect::<Vec<_>>(),
        ["backend", "frontend", "frontend-dmz"]
    );
    let lb = service(c, "lb");
    assert_eq!(lb.deploy.as_ref().unwrap().mode.as_deref(), Some("global"));
    assert_eq!(ports(lb), [(Some(80), 80, "ingress".to_string())]);
    assert_docker_accepts(&r);
}

#[test]
fn lab_profile_uses_dnsrr_host_ports_and_the_local_registry() {
    let r = render("lab", &[]);
    let dmd = service(&r.compose, "s3-dmd");
    let deploy = dmd.deploy.as_ref().unwrap();
    assert_eq!(deploy.endpoint_mode.as_deref(), Some("dnsrr"));
    assert!(ports(dmd).iter().all(|(_, _, mode)| mode == "host"));
    assert_eq!(ports(dmd).len(), 2);
    assert_eq!(
        dmd.image.as_deref(),
        Some("10.99.0.1:5000/zenkoctl/module:latest")
    );
    assert_eq!(constraints(dmd), [STORAGE]);
    assert_docker_accepts(&r);
}

#[test]
fn split_deploys_metadata_and_data_as_two_services_of_one_image() {
    let r = render("module", &["split=true"]);
    let c = &r.compose;
    assert_eq!(
        c.services.keys().collect::<Vec<_>>(),
        ["s3-metadata", "s3-data"]
    );
    let md = service(c, "s3-metadata");
    let data = service(c, "s3-data");
    assert_eq!(md.image, data.image);
    assert_eq!(ports(md), [(Some(9990), 9990, "ingress".to_string())]);
    assert_eq!(ports(data), [(Some(9991), 9991, "ingress".to_string())]);
    assert_eq!(volume_targets(md)[0].0, "metadata");
    assert_eq!(volume_targets(data)[0].0, "data");
    assert_eq!(flag(data, "--metadata-addr"), None);
    assert_eq!(flag(md, "--data-addr"), None);
    assert_docker_accepts(&r);
}

#[test]
fn mongodb_backend_as_a_service_on_the_storage_node() {
    let r = render("module", &["metadata.backend=mongodb"]);
    let c = &r.compose;
    let mongo = service(c, "mongodb");
    assert_eq!(constraints(mongo), [STORAGE]);
    assert_eq!(
        volume_targets(mongo),
        [("mongodb".to_string(), "/data/db".to_string())]
    );
    assert!(c.volumes.contains_key("mongodb"));
    assert!(
        mongo.ports.is_empty(),
        "MongoDB must not be published outside the swarm"
    );
    // A single-node replica set (transactions, majority writes), with nothing in the image but
    // mongod: the server initiates it, naming the member as the servers reach it.
    assert_eq!(argv(mongo), ["mongod", "--replSet", "rs0", "--bind_ip_all"]);
    assert_eq!(
        mongo.hostname.as_deref(),
        Some("mongodb"),
        "the member host resolves to the container itself inside it"
    );
    let dmd = service(c, "s3-dmd");
    assert_eq!(flag(dmd, "--metadata-backend").as_deref(), Some("mongodb"));
    assert_eq!(
        flag(dmd, "--mongodb-uri").as_deref(),
        Some("mongodb://mongodb:27017/?replicaSet=rs0")
    );
    assert!(argv(dmd).iter().any(|a| a == "--mongodb-init-replset"));
    assert_docker_accepts(&r);
}

#[test]
fn mongodb_replica_set_name_is_a_value() {
    let r = render(
        "module",
        &[
            "metadata.backend=mongodb",
            "metadata.mongodb.replica_set=zenko-rs",
        ],
    );
    let c = &r.compose;
    assert_eq!(
        argv(service(c, "mongodb")),
        ["mongod", "--replSet", "zenko-rs", "--bind_ip_all"]
    );
    assert_eq!(
        flag(service(c, "s3-dmd"), "--mongodb-uri").as_deref(),
        Some("mongodb://mongodb:27017/?replicaSet=zenko-rs")
    );
    // Split: only the metadata service talks to MongoDB, and it initiates the set.
    let r = render("module", &["metadata.backend=mongodb", "split=true"]);
    let md = service(&r.compose, "s3-metadata");
    assert!(argv(md).iter().any(|a| a == "--mongodb-init-replset"));
    assert!(!argv(service(&r.compose, "s3-data"))
        .iter()
        .any(|a| a.starts_with("--mongodb")));
    assert_docker_accepts(&r);
}

#[test]
fn mongodb_backend_external_reads_its_uri_from_a_secret() {
    let r = render(
        "module",
        &["metadata.backend=mongodb", "metadata.mongodb.mode=external"],
    );
    let c = &r.compose;
    assert!(!c.services.contains_key("mongodb"));
    let dmd = service(c, "s3-dmd");
    assert_eq!(
        flag(dmd, "--mongodb-uri-file").as_deref(),
        Some("/run/secrets/mongodb-uri")
    );
    assert_eq!(dmd.secrets[0].source(), "mongodb-uri");
    assert!(c.secrets.contains_key("mongodb-uri"));
    // The URI itself is never in the service's command or environment.
    assert_eq!(flag(dmd, "--mongodb-uri"), None);
    // An external MongoDB is the operator's: never initiated by us.
    assert!(!argv(dmd).iter().any(|a| a == "--mongodb-init-replset"));
    assert_docker_accepts(&r);
}

#[test]
fn values_reach_the_template_through_environment_interpolation() {
    let env = |k: &str| match k {
        "ZENKO_REGISTRY" => Some("registry.example:5000".to_string()),
        "ZENKO_TAG" => Some("1.2.3".to_string()),
        "ENDPOINT" => Some("s3.example.com".to_string()),
        _ => None,
    };
    let request = RenderRequest {
        profile: Some("full".into()),
        ..Default::default()
    };
    let r = stack::render(&request, &env).unwrap();
    assert_eq!(
        service(&r.compose, "s3-data").image.as_deref(),
        Some("registry.example:5000/zenkoctl/module:1.2.3")
    );
    // `${ENDPOINT:-zenko}` in the template itself.
    assert_eq!(
        env_value(service(&r.compose, "s3-front"), "ENDPOINT").as_deref(),
        Some("s3.example.com")
    );
}

#[test]
fn literal_dollars_survive_a_round_trip_through_docker() {
    let r = render("module", &["module.log_level=a$b"]);
    assert!(
        r.yaml.contains("a$$b"),
        "a literal $ must be written escaped"
    );
    // Reading the written file back (as `docker stack deploy` would) gives the value again.
    let reparsed = stack::parse_rendered("x", &r.yaml, &no_env, &mut Vec::new()).unwrap();
    assert_eq!(reparsed, r.compose);
    assert_docker_accepts(&r);
}

#[test]
fn stock_files_on_disk_match_the_compiled_in_copies() {
    // `--templates`/`--stacks` on the repository's own directories must render the same
    // stack as the copies compiled into the binary.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for profile in stack::profiles(None) {
        let from_disk = stack::render(
            &RenderRequest {
                profile: Some(profile.clone()),
                templates_dir: Some(root.join("templates")),
                stacks_dir: Some(root.join("stacks")),
                ..Default::default()
            },
            &no_env,
        )
        .unwrap();
        assert_eq!(
            from_disk.compose,
            render(&profile, &[]).compose,
            "{profile}"
        );
    }
    assert_eq!(
        stack::profiles(Some(&root.join("stacks"))),
        ["full", "lab", "module"]
    );
}

#[test]
fn every_published_port_is_valid() {
    for profile in stack::profiles(None) {
        let r = render(&profile, &[]);
        for (name, s) in &r.compose.services {
            for p in &s.ports {
                assert!(
                    matches!(p, Port::Long(_)),
                    "{profile}/{name}: long syntax expected"
                );
                parse_port(p).unwrap();
            }
        }
    }
}
