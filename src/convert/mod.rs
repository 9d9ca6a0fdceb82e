//! Compose model -> Swarm specs, the way `docker stack deploy` converts them (docker/cli
//! `cli/compose/convert`), so that `docker stack ps|services|rm` keep working on our stacks.
//!
//! - [`service`]: one compose service -> a `ServiceSpec`;
//! - this module: the whole stack -> a [`StackPlan`] (networks, secrets, configs, services,
//!   volumes), with every name scoped `<stack>_<name>` and every object labelled with the stack
//!   namespace and the Zenko marker;
//! - [`diff`]: the client-side comparison of a desired spec with the one the engine holds, so a
//!   redeploy with nothing changed changes nothing.
//!
//! Deviations from the docker CLI, on purpose:
//! - secrets and configs are named by content hash (`<stack>_<key>.<hash>`): Swarm secrets are
//!   immutable, so a changed file becomes a new secret mounted at the same stable target
//!   (`/run/secrets/<target>`), and the superseded one is removed after convergence;
//! - every object carries `io.zenko.managed-by=zenkoctl` even when a template forgot it: that is
//!   how an earlier Zenko stack is found whatever its name;
//! - services carry `io.zenko.spec-hash`, the hash of the converted spec (see [`diff`]).

pub mod diff;
pub mod service;

use std::collections::{BTreeMap, HashMap};

use bollard::models::{ConfigSpec, NetworkCreateRequest, SecretSpec, ServiceSpec};
use sha2::{Digest, Sha256};

use crate::stack::model::{ComposeFile, MapOrList};
use crate::stack::validate::{is_valid_object_name, is_valid_secret_name, MAX_NAME_LEN};
use crate::stack::{StackError, StackErrors};

/// The stack namespace label `docker stack` uses to find a stack's objects.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";
/// The image string as written in the compose file (service labels only).
pub const IMAGE_LABEL: &str = "com.docker.stack.image";
/// The Zenko marker: present on every object zenkoctl creates.
pub const MANAGED_LABEL: &str = "io.zenko.managed-by";
pub const MANAGED_VALUE: &str = "zenkoctl";
/// sha256 of a secret's or config's content.
pub const CONTENT_HASH_LABEL: &str = "io.zenko.content-hash";
/// The compose key a secret or config came from (its name carries a hash suffix).
pub const KEY_LABEL: &str = "io.zenko.key";
/// The hash of the converted service spec, for no-op detection.
pub const SPEC_HASH_LABEL: &str = "io.zenko.spec-hash";
/// Which part of Zenko a service is (set by the templates: module, metadata, data, ...).
pub const COMPONENT_LABEL: &str = "io.zenko.component";

/// swarmkit's limits on secret and config data.
pub const MAX_SECRET_SIZE: usize = 500 * 1024;
pub const MAX_CONFIG_SIZE: usize = 1000 * 1024;

/// Everything a deploy creates, converted and validated before any call to the engine.
#[derive(Debug, Clone)]
pub struct StackPlan {
    pub stack: String,
    pub networks: Vec<NetworkPlan>,
    pub secrets: Vec<FilePlan>,
    pub configs: Vec<FilePlan>,
    pub services: Vec<ServicePlan>,
    /// Full names of the named volumes the services mount (created by each node's engine).
    pub volumes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct NetworkPlan {
    /// The compose key.
    pub key: String,
    pub request: NetworkCreateRequest,
    pub external: bool,
}

/// A secret or a config.
#[derive(Debug, Clone)]
pub struct FilePlan {
    pub key: String,
    /// The name in Swarm: `<stack>_<key>.<hash>` (or `<name>.<hash>` with a compose `name:`).
    pub name: String,
    pub labels: HashMap<String, String>,
    pub data: Vec<u8>,
    pub hash: String,
    /// An external secret: referenced by its name, never created.
    pub external: bool,
}

impl FilePlan {
    pub fn secret_spec(&self) -> SecretSpec {
        use base64::Engine as _;
        SecretSpec {
            name: Some(self.name.clone()),
            labels: Some(self.labels.clone()),
            // The Engine API wants standard base64 here (Go's []byte), not the URL-safe form.
            data: Some(base64::engine::general_purpose::STANDARD.encode(&self.data)),
            ..Default::default()
        }
    }

    pub fn config_spec(&self) -> ConfigSpec {
        use base64::Engine as _;
        ConfigSpec {
            name: Some(self.name.clone()),
            labels: Some(self.labels.clone()),
            data: Some(base64::engine::general_purpose::STANDARD.encode(&self.data)),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// The compose key (the short name, also a network alias).
    pub key: String,
    /// `<stack>_<key>`.
    pub name: String,
    pub spec: ServiceSpec,
    /// Compose keys of the secrets and configs it references.
    pub secrets: Vec<String>,
    pub configs: Vec<String>,
}

/// `<stack>_<name>`, as the CLI's `Namespace.Scope`.
pub fn scope(stack: &str, name: &str) -> String {
    format!("{stack}_{name}")
}

/// Labels from a compose `labels:` block (map or list), sorted.
pub fn labels_of(labels: &Option<MapOrList>) -> BTreeMap<String, String> {
    labels
        .as_ref()
        .map(|l| {
            l.entries()
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// The labels every object of the stack carries.
pub fn stack_labels(stack: &str, mut labels: BTreeMap<String, String>) -> HashMap<String, String> {
    labels.insert(NAMESPACE_LABEL.into(), stack.into());
    labels.insert(MANAGED_LABEL.into(), MANAGED_VALUE.into());
    labels.into_iter().collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// How many hex digits of the content hash go into a secret's name.
const NAME_HASH_LEN: usize = 12;

/// Converts a rendered compose file into the objects to create. `read` loads a secret or config
/// file (relative paths are the caller's business: the CLI resolves them against the current
/// directory, as `docker stack deploy -c` does against the compose file's).
pub fn convert(
    compose: &ComposeFile,
    stack: &str,
    read: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
) -> Result<StackPlan, StackErrors> {
    let mut problems = Vec::new();
    let shown = "docker-stack.yml";
    let mut problem = |key: String, message: String| {
        problems.push(StackError::new(shown, message).key(key));
    };
    if !is_valid_object_name(stack) {
        problem(
            "stack".into(),
            format!(
                "stack name {stack:?} is not valid: at most {MAX_NAME_LEN} letters, digits, '-' \
                 or '_', starting and ending with a letter or digit"
            ),
        );
    }

    // Networks used by services; a service without `networks` is on `default`.
    let mut used_networks: Vec<String> = Vec::new();
    for service in compose.services.values() {
        let names: Vec<String> = match &service.networks {
            Some(n) => n.names().into_iter().map(str::to_string).collect(),
            None => vec!["default".into()],
        };
        for n in names {
            if !used_networks.contains(&n) {
                used_networks.push(n);
            }
        }
    }
    used_networks.sort();
    let mut networks = Vec::new();
    let mut network_names: HashMap<String, String> = HashMap::new();
    for key in &used_networks {
        let def = compose
            .networks
            .get(key)
            .cloned()
            .flatten()
            .unwrap_or_default();
        let external = def.external.unwrap_or(false);
        let name = def.name.clone().unwrap_or_else(|| scope(stack, key));
        if !external && !is_valid_object_name(&name) {
            problem(
                format!("networks.{key}"),
                format!("network name {name:?} is not valid for Swarm (at most {MAX_NAME_LEN} letters, digits, '-' or '_')"),
            );
        }
        network_names.insert(key.clone(), name.clone());
        let options: HashMap<String, String> = def.driver_opts.clone().into_iter().collect();
        networks.push(NetworkPlan {
            key: key.clone(),
            external,
            request: NetworkCreateRequest {
                name,
                driver: Some(def.driver.clone().unwrap_or_else(|| "overlay".into())),
                internal: def.internal,
                attachable: def.attachable,
                options: (!options.is_empty()).then_some(options),
                labels: Some(stack_labels(stack, labels_of(&def.labels))),
                ..Default::default()
            },
        });
    }

    let mut files = |kind: &str,
                     defs: &indexmap::IndexMap<String, crate::stack::model::Secret>,
                     max: usize| {
        let mut out = Vec::new();
        for (key, def) in defs {
            let external = def.external.unwrap_or(false);
            let base = def.name.clone().unwrap_or_else(|| scope(stack, key));
            if external {
                out.push(FilePlan {
                    key: key.clone(),
                    name: base,
                    labels: HashMap::new(),
                    data: Vec::new(),
                    hash: String::new(),
                    external: true,
                });
                continue;
            }
            let Some(path) = &def.file else {
                problem(
                    format!("{kind}.{key}"),
                    "needs a file (or external: true)".into(),
                );
                continue;
            };
            let data = match read(path) {
                Ok(d) => d,
                Err(e) => {
                    problem(
                        format!("{kind}.{key}.file"),
                        format!("cannot read {path}: {e}"),
                    );
                    continue;
                }
            };
            if data.is_empty() || data.len() >= max {
                problem(
                    format!("{kind}.{key}.file"),
                    format!(
                        "{path} is {} bytes; Swarm takes {kind} of 1 byte to {} KB",
                        data.len(),
                        max / 1024
                    ),
                );
                continue;
            }
            let hash = sha256_hex(&data);
            let name = format!("{base}.{}", &hash[..NAME_HASH_LEN]);
            if !is_valid_secret_name(&name) {
                problem(
                    format!("{kind}.{key}"),
                    format!("name {name:?} is not valid for Swarm (at most 64 letters, digits, '-', '_' or '.')"),
                );
            }
            let mut labels = labels_of(&def.labels);
            labels.insert(CONTENT_HASH_LABEL.into(), hash.clone());
            labels.insert(KEY_LABEL.into(), key.clone());
            out.push(FilePlan {
                key: key.clone(),
                name,
                labels: stack_labels(stack, labels),
                data,
                hash,
                external: false,
            });
        }
        out
    };
    let secrets = files("secrets", &compose.secrets, MAX_SECRET_SIZE);
    let configs = files("configs", &compose.configs, MAX_CONFIG_SIZE);

    let mut volumes = Vec::new();
    let mut services = Vec::new();
    for (key, svc) in &compose.services {
        let ctx = service::Context {
            stack,
            networks: &network_names,
            secrets: &secrets,
            configs: &configs,
            volumes: &compose.volumes,
        };
        match service::convert(key, svc, &ctx) {
            Ok(plan) => {
                for v in service::volume_names(svc, &ctx) {
                    if !volumes.contains(&v) {
                        volumes.push(v);
                    }
                }
                services.push(plan);
            }
            Err(errors) => {
                for (path, message) in errors {
                    problem(format!("services.{key}{path}"), message);
                }
            }
        }
    }
    volumes.sort();
    if !problems.is_empty() {
        return Err(StackErrors(problems));
    }
    Ok(StackPlan {
        stack: stack.to_string(),
        networks,
        secrets,
        configs,
        services,
        volumes,
    })
}

#[cfg(test)]
mod tests;
