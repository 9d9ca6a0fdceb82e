//! Parse and render: from a values profile and templates to a validated docker-stack.yml.
//!
//! The pipeline, each step in its own module:
//! 1. [`values`]: layers (profile, `--values` files, `--set`) are parsed, interpolated and
//!    type-checked one by one, then merged into typed [`values::Values`];
//! 2. [`template`]: the templates are rendered with those values (minijinja);
//! 3. the rendered YAML is parsed, its string scalars interpolated ([`interpolate`]) and typed
//!    as the compose model ([`model`]);
//! 4. [`validate`] checks what Swarm would refuse; every problem names file, line and key
//!    ([`location`], [`error`]).
//!
//! The result is written back from the model, so what is written is exactly what was validated.

pub mod error;
pub mod interpolate;
pub mod location;
pub mod model;
pub mod template;
pub mod validate;
pub mod values;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use error::{StackError, StackErrors};
use location::{KeyPath, LineIndex};
use model::ComposeFile;
use template::TemplateSet;
use values::{Layer, Values};

/// The profile used when neither `--profile` nor `--values` is given.
pub const DEFAULT_PROFILE: &str = "module";

/// The stock profiles, shipped in stacks/ and compiled in.
const STOCK_PROFILES: &[(&str, &str)] = &[
    ("module", include_str!("../../stacks/module.yml")),
    ("full", include_str!("../../stacks/full.yml")),
    ("lab", include_str!("../../stacks/lab.yml")),
];

/// What to render.
#[derive(Debug, Clone, Default)]
pub struct RenderRequest {
    /// A profile name: `stacks/NAME.yml`.
    pub profile: Option<String>,
    /// Values files layered over the profile, in order.
    pub values_files: Vec<PathBuf>,
    /// `key.path=value` overrides, applied last.
    pub sets: Vec<String>,
    /// A directory of templates to use instead of the stock ones.
    pub templates_dir: Option<PathBuf>,
    /// A directory of profiles to use instead of the stock ones.
    pub stacks_dir: Option<PathBuf>,
}

/// A rendered, validated stack.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub values: Values,
    pub compose: ComposeFile,
    /// The docker-stack.yml text to write.
    pub yaml: String,
    /// Variables that were referenced while unset (replaced by empty strings).
    pub unset_variables: Vec<String>,
    /// Where the values came from, in layer order.
    pub sources: Vec<String>,
}

/// The names of the available profiles.
pub fn profiles(stacks_dir: Option<&Path>) -> Vec<String> {
    match stacks_dir {
        None => STOCK_PROFILES.iter().map(|(n, _)| n.to_string()).collect(),
        Some(dir) => {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    name.strip_suffix(".yml").map(str::to_string)
                })
                .collect();
            names.sort();
            names
        }
    }
}

fn profile_layer(
    name: &str,
    stacks_dir: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Layer, StackError> {
    let unknown = || {
        StackError::new(
            format!("--profile {name}"),
            format!(
                "unknown profile {name:?}; available: {}",
                profiles(stacks_dir).join(", ")
            ),
        )
    };
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name {
        return Err(unknown());
    }
    match stacks_dir {
        None => {
            let (_, text) = STOCK_PROFILES
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(unknown)?;
            Layer::from_text(&format!("stacks/{name}.yml"), text, env)
        }
        Some(dir) => {
            let path = dir.join(format!("{name}.yml"));
            if !path.is_file() {
                return Err(unknown());
            }
            values::load_file(&path, env)
        }
    }
}

/// The variables a template sees: the values plus what is derived from them.
///
/// Values were interpolated already, and the rendered text is interpolated once more (for the
/// `${VAR}` a template writes itself), so every `$` in a value is escaped as `$$` here: a
/// value is interpolated exactly once.
#[derive(Serialize)]
struct TemplateContext {
    #[serde(flatten)]
    values: serde_json::Value,
    /// `[registry/]repository:tag` of the module image.
    module_image: String,
}

impl TemplateContext {
    fn new(values: &Values) -> Self {
        fn escape(value: &mut serde_json::Value) {
            match value {
                serde_json::Value::String(s) => *s = s.replace('$', "$$"),
                serde_json::Value::Array(items) => items.iter_mut().for_each(escape),
                serde_json::Value::Object(map) => map.values_mut().for_each(escape),
                _ => {}
            }
        }
        let mut tree = serde_json::to_value(values).unwrap_or_default();
        escape(&mut tree);
        TemplateContext {
            values: tree,
            module_image: values.image.reference().replace('$', "$$"),
        }
    }
}

/// Renders and validates a stack. `env` resolves `${VAR}` (the process environment in the CLI).
pub fn render(
    request: &RenderRequest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Rendered, StackErrors> {
    let one = |e: StackError| StackErrors(vec![e]);
    let mut layers = Vec::new();
    let profile = match (&request.profile, request.values_files.is_empty()) {
        (Some(p), _) => Some(p.as_str()),
        (None, true) => Some(DEFAULT_PROFILE),
        (None, false) => None,
    };
    if let Some(p) = profile {
        layers.push(profile_layer(p, request.stacks_dir.as_deref(), env).map_err(one)?);
    }
    for file in &request.values_files {
        layers.push(values::load_file(file, env).map_err(one)?);
    }
    for set in &request.sets {
        layers.push(Layer::from_set(set).map_err(one)?);
    }
    let values = values::resolve(&layers).map_err(one)?;
    let mut unset: Vec<String> = layers.iter().flat_map(|l| l.unset.clone()).collect();

    let templates = match &request.templates_dir {
        Some(dir) => TemplateSet::from_dir(dir).map_err(one)?,
        None => TemplateSet::stock(),
    };
    let context = TemplateContext::new(&values);
    let text = templates.render(&context).map_err(one)?;

    let shown = format!(
        "docker-stack.yml (rendered from {}/{})",
        templates.dir.trim_end_matches('/'),
        template::MAIN_TEMPLATE
    );
    let compose = parse_rendered(&shown, &text, env, &mut unset)?;
    let lines = LineIndex::new(&text);
    let problems = validate::validate(&compose, &values.stack);
    if !problems.is_empty() {
        return Err(StackErrors(
            problems
                .into_iter()
                .map(|p| located(&shown, &text, &lines, &p.path, p.message))
                .collect(),
        ));
    }
    unset.sort();
    unset.dedup();
    let sources: Vec<String> = layers.iter().map(|l| l.origin.clone()).collect();
    let body = to_compose_text(&compose)
        .map_err(|e| one(StackError::new(&shown, format!("cannot serialise: {e}"))))?;
    let yaml = format!(
        "# Rendered by zenkoctl from {}/{} with {}.\n# Edit the values or templates, not this file.\n{body}",
        templates.dir.trim_end_matches('/'),
        template::MAIN_TEMPLATE,
        sources.join(", ")
    );
    Ok(Rendered {
        values,
        compose,
        yaml,
        unset_variables: unset,
        sources,
    })
}

/// Writes the model as compose text. Interpolation already happened, so every `$` left in a
/// value is literal and is written as `$$`: `docker stack deploy` (or our own parser) reading
/// the file back gets the same value instead of interpolating it a second time.
pub fn to_compose_text(compose: &ComposeFile) -> Result<String, serde_yaml::Error> {
    fn escape(value: &mut serde_yaml::Value) {
        match value {
            serde_yaml::Value::String(s) if s.contains('$') => *s = s.replace('$', "$$"),
            serde_yaml::Value::Sequence(items) => items.iter_mut().for_each(escape),
            serde_yaml::Value::Mapping(map) => map.iter_mut().for_each(|(_, v)| escape(v)),
            _ => {}
        }
    }
    let mut tree = serde_yaml::to_value(compose)?;
    escape(&mut tree);
    serde_yaml::to_string(&tree)
}

/// Parses rendered text into the compose model, interpolating its string values first.
pub fn parse_rendered(
    shown: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    unset: &mut Vec<String>,
) -> Result<ComposeFile, StackErrors> {
    let one = |e: StackError| StackErrors(vec![e]);
    let lines = LineIndex::new(text);
    let mut tree: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        one(StackError::new(shown, format!("rendered text is not valid YAML: {e}")).at(line))
    })?;
    values::interpolate_tree(&mut tree, &KeyPath::root(), env, unset)
        .map_err(|(path, message)| one(located(shown, text, &lines, &path, message)))?;
    serde_path_to_error::deserialize::<_, ComposeFile>(tree).map_err(|e| {
        let path = KeyPath::parse(&e.path().to_string());
        one(located(
            shown,
            text,
            &lines,
            &path,
            e.into_inner().to_string(),
        ))
    })
}

/// A problem at `path` in `text`, with its line and the line's content.
fn located(
    shown: &str,
    text: &str,
    lines: &LineIndex,
    path: &KeyPath,
    message: String,
) -> StackError {
    let line = lines.line_of(path);
    let near = line
        .and_then(|n| text.lines().nth(n - 1))
        .map(|l| format!(" (near `{}`)", l.trim()))
        .unwrap_or_default();
    StackError::new(shown, format!("{message}{near}"))
        .at(line)
        .key(path)
}

impl From<StackError> for StackErrors {
    fn from(e: StackError) -> Self {
        StackErrors(vec![e])
    }
}
