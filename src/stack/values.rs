//! Values: the typed settings a stack is rendered with.
//!
//! Values come in layers, later ones winning: the profile (`stacks/NAME.yml`), any `--values`
//! files, then `--set key=value` overrides. Each layer is interpolated (compose semantics) and
//! checked against [`Values`] on its own, so a wrong type or an unknown key is reported with the
//! file, line and key it came from; the layers are then deep-merged and typed once more.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_yaml::Value as Yaml;

use super::error::StackError;
use super::interpolate::interpolate;
use super::location::{KeyPath, LineIndex};

/// Everything a template can use. Every field has a default, so a layer may set only a few.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Values {
    /// The stack name: services are named `<stack>_<service>`.
    pub stack: String,
    /// The module image (the bundled server, built by `zenkoctl build`).
    pub image: Image,
    /// Deploy metadata and data as two services from the same image instead of one.
    pub split: bool,
    pub network: NetworkValues,
    pub module: Module,
    pub metadata: Metadata,
    /// The Zenko front end (CloudServer, Redis, load balancer): the `full` profile.
    pub front: Front,
}

impl Default for Values {
    fn default() -> Self {
        Values {
            stack: "zenko".into(),
            image: Image::default(),
            split: false,
            network: NetworkValues::default(),
            module: Module::default(),
            metadata: Metadata::default(),
            front: Front::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Image {
    /// Registry host[:port] the module image is pushed to and pulled from; empty for none.
    pub registry: String,
    pub repository: String,
    pub tag: String,
}

impl Default for Image {
    fn default() -> Self {
        Image {
            registry: String::new(),
            repository: "zenkoctl/module".into(),
            tag: "latest".into(),
        }
    }
}

impl Image {
    /// The full reference: `[registry/]repository:tag`.
    pub fn reference(&self) -> String {
        let registry = self.registry.trim_end_matches('/');
        if registry.is_empty() {
            format!("{}:{}", self.repository, self.tag)
        } else {
            format!("{registry}/{}:{}", self.repository, self.tag)
        }
    }
}

/// How services are reached: production swarms use VIPs and the ingress routing mesh; a
/// kernel without IPVS (this project's lab) needs DNS round robin and host-mode ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkValues {
    pub endpoint_mode: EndpointMode,
    pub publish_mode: PublishMode,
}

impl Default for NetworkValues {
    fn default() -> Self {
        NetworkValues {
            endpoint_mode: EndpointMode::Vip,
            publish_mode: PublishMode::Ingress,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    Vip,
    Dnsrr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    Ingress,
    Host,
}

/// The bundled server (`zenkoctl serve`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Module {
    pub metadata_port: u16,
    pub data_port: u16,
    /// Publish the module's ports outside the swarm (needed when clients run outside it).
    pub publish: bool,
    pub log_level: String,
    /// Replication group id for version ids (Arsenal's default is RG001).
    pub replication_group_id: String,
}

impl Default for Module {
    fn default() -> Self {
        Module {
            metadata_port: 9990,
            data_port: 9991,
            publish: true,
            log_level: "info".into(),
            replication_group_id: "RG001".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metadata {
    pub backend: MetadataBackend,
    pub mongodb: MongoDb,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            backend: MetadataBackend::Embedded,
            mongodb: MongoDb::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataBackend {
    Embedded,
    Mongodb,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MongoDb {
    /// `service`: a MongoDB service on the storage node; `external`: a URI from a secret.
    pub mode: MongoMode,
    pub image: String,
    pub database: String,
    /// With `mode: service`, the replica set the `mongodb` service runs (`mongod --replSet`),
    /// initiated by the metadata server at start-up.
    pub replica_set: String,
    /// With `mode: external`, the file holding the connection URI (becomes a Docker secret).
    pub uri_file: String,
}

impl Default for MongoDb {
    fn default() -> Self {
        MongoDb {
            mode: MongoMode::Service,
            image: "mongo:7.0".into(),
            database: "zenko".into(),
            replica_set: "rs0".into(),
            uri_file: "./mongodb-uri.txt".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MongoMode {
    Service,
    External,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Front {
    pub enabled: bool,
    pub cloudserver_image: String,
    /// Shell lines `export SCALITY_ACCESS_KEY_ID=…` sourced by CloudServer's entrypoint;
    /// delivered as a Docker secret, never as an environment literal.
    pub credentials_file: String,
    /// Hostnames clients use to reach S3 (CloudServer's ENDPOINT).
    pub endpoint: String,
    pub replicas: u64,
    pub cache_image: String,
    pub lb_image: String,
    pub lb_port: u16,
}

impl Default for Front {
    fn default() -> Self {
        Front {
            enabled: false,
            cloudserver_image: "zenko/cloudserver:8.8.35".into(),
            credentials_file: "./secrets.txt".into(),
            endpoint: "zenko".into(),
            replicas: 1,
            cache_image: "redis:7-alpine".into(),
            lb_image: "zenko/loadbalancer:latest".into(),
            lb_port: 80,
        }
    }
}

/// One layer of values: its origin (for errors) and its parsed, interpolated tree.
#[derive(Debug, Clone)]
pub struct Layer {
    pub origin: String,
    pub tree: Yaml,
    /// Variables the layer referenced while they were unset.
    pub unset: Vec<String>,
}

impl Layer {
    /// Parses a values file's text: YAML, then interpolation of every string scalar, then a
    /// type check against [`Values`].
    pub fn from_text(
        origin: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Layer, StackError> {
        let lines = LineIndex::new(text);
        let mut tree: Yaml = serde_yaml::from_str(text).map_err(|e| {
            StackError::new(origin, format!("not valid YAML: {e}"))
                .at(e.location().map(|l| l.line()))
        })?;
        if tree.is_null() {
            tree = Yaml::Mapping(Default::default());
        }
        if !tree.is_mapping() {
            return Err(
                StackError::new(origin, "a values file must be a mapping of keys").at(Some(1)),
            );
        }
        let mut unset = Vec::new();
        interpolate_tree(&mut tree, &KeyPath::root(), env, &mut unset).map_err(
            |(path, message)| {
                StackError::new(origin, message)
                    .at(lines.line_of(&path))
                    .key(&path)
            },
        )?;
        check(&tree).map_err(|(path, message)| {
            StackError::new(origin, message)
                .at(lines.line_of(&path))
                .key(path)
        })?;
        Ok(Layer {
            origin: origin.to_string(),
            tree,
            unset,
        })
    }

    /// A `--set key.path=value` override. The value is read as a YAML scalar, so
    /// `split=true` is a boolean and `module.data_port=9991` a number.
    pub fn from_set(assignment: &str) -> Result<Layer, StackError> {
        let origin = format!("--set {assignment}");
        let (key, raw) = assignment
            .split_once('=')
            .ok_or_else(|| StackError::new(&origin, "expected key=value"))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(StackError::new(
                &origin,
                "expected a dotted key such as module.data_port",
            ));
        }
        let value: Yaml = if raw.is_empty() {
            Yaml::String(String::new())
        } else {
            match serde_yaml::from_str::<Yaml>(raw) {
                Ok(v @ (Yaml::Bool(_) | Yaml::Number(_) | Yaml::String(_))) => v,
                _ => Yaml::String(raw.to_string()),
            }
        };
        let mut tree = value;
        for part in key.rsplit('.') {
            let mut map = serde_yaml::Mapping::new();
            map.insert(Yaml::String(part.to_string()), tree);
            tree = Yaml::Mapping(map);
        }
        check(&tree).map_err(|(path, message)| StackError::new(&origin, message).key(path))?;
        Ok(Layer {
            origin,
            tree,
            unset: Vec::new(),
        })
    }
}

/// Type-checks a (partial) values tree; on failure returns the key path and the message.
fn check(tree: &Yaml) -> Result<Values, (KeyPath, String)> {
    serde_path_to_error::deserialize::<_, Values>(tree.clone()).map_err(|e| {
        let path = KeyPath::parse(&e.path().to_string());
        (path, e.into_inner().to_string())
    })
}

/// Interpolates every string scalar of `tree` in place (values, not keys, as compose does).
/// Variables referenced while unset are added to `unset` (compose warns about them).
pub fn interpolate_tree(
    tree: &mut Yaml,
    path: &KeyPath,
    env: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<(), (KeyPath, String)> {
    match tree {
        Yaml::String(s) => {
            let result = interpolate(s, env).map_err(|e| (path.clone(), e.to_string()))?;
            *s = result.value;
            unset.extend(result.unset);
        }
        Yaml::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &path.index(i), env, unset)?;
            }
        }
        Yaml::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                interpolate_tree(v, &path.key(key), env, unset)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Merges `over` into `base`: mappings merge key by key, anything else is replaced.
fn merge(base: &mut Yaml, over: Yaml) {
    match (base, over) {
        (Yaml::Mapping(b), Yaml::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Merges layers in order and types the result.
pub fn resolve(layers: &[Layer]) -> Result<Values, StackError> {
    let mut tree = Yaml::Mapping(Default::default());
    for layer in layers {
        merge(&mut tree, layer.tree.clone());
    }
    let origins: Vec<&str> = layers.iter().map(|l| l.origin.as_str()).collect();
    check(&tree).map_err(|(path, message)| {
        StackError::new(format!("merged values ({})", origins.join(", ")), message).key(path)
    })
}

/// Reads a values file from disk as a layer.
pub fn load_file(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Layer, StackError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| StackError::new(&origin, format!("cannot read values file: {e}")))?;
    Layer::from_text(&origin, &text, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn empty_layer_gives_defaults() {
        let layer = Layer::from_text("x.yml", "", &no_env).unwrap();
        assert_eq!(resolve(&[layer]).unwrap(), Values::default());
    }

    #[test]
    fn wrong_type_names_file_line_and_key() {
        let text = "stack: zenko\nmodule:\n  data_port: lots\n";
        let err = Layer::from_text("stacks/x.yml", text, &no_env).unwrap_err();
        assert_eq!(err.file, "stacks/x.yml");
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key.as_deref(), Some("module.data_port"));
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = Layer::from_text("v.yml", "modul:\n  x: 1\n", &no_env).unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(err.message.contains("unknown field"), "{err}");
    }

    #[test]
    fn set_overrides_with_typed_scalars() {
        let base = Layer::from_text("v.yml", "split: false\n", &no_env).unwrap();
        let set = Layer::from_set("split=true").unwrap();
        let port = Layer::from_set("module.data_port=19991").unwrap();
        let values = resolve(&[base, set, port]).unwrap();
        assert!(values.split);
        assert_eq!(values.module.data_port, 19991);
        let err = Layer::from_set("split=maybe").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("split"));
        assert!(Layer::from_set("noequals").is_err());
    }

    #[test]
    fn values_are_interpolated() {
        let env = |k: &str| (k == "TAG").then(|| "v2".to_string());
        let layer = Layer::from_text(
            "v.yml",
            "image:\n  tag: ${TAG}\n  registry: ${REG:-r:5000}\n",
            &env,
        )
        .unwrap();
        let values = resolve(&[layer]).unwrap();
        assert_eq!(values.image.reference(), "r:5000/zenkoctl/module:v2");
        let err = Layer::from_text("v.yml", "stack: ${NAME:?stack name}\n", &no_env).unwrap_err();
        assert!(err.message.contains("NAME"));
        assert_eq!(err.line, Some(1));
        assert_eq!(err.key.as_deref(), Some("stack"));
    }
}
