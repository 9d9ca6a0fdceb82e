//! Rendering docker-stack.yml from templates with minijinja (Jinja2 syntax).
//!
//! The stock templates are compiled into the binary so `zenkoctl` works from any directory;
//! `--templates DIR` renders a user's own copy instead. Every file of the template set is
//! loaded, so the main template can `{% include %}` or `{% import %}` the others. Undefined
//! variables are errors (strict mode): a typo in a template must not render as an empty string.

use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use super::error::StackError;

/// The template rendered into docker-stack.yml.
pub const MAIN_TEMPLATE: &str = "docker-stack.yml.j2";

/// The stock templates shipped in templates/.
const STOCK: &[(&str, &str)] = &[(
    MAIN_TEMPLATE,
    include_str!("../../templates/docker-stack.yml.j2"),
)];

/// A set of templates: (file name, source), with the directory they are reported from.
#[derive(Debug, Clone)]
pub struct TemplateSet {
    /// Shown in errors: `templates/` for the stock set, the directory otherwise.
    pub dir: String,
    pub files: Vec<(String, String)>,
}

impl TemplateSet {
    pub fn stock() -> Self {
        TemplateSet {
            dir: "templates".into(),
            files: STOCK
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect(),
        }
    }

    /// Loads every `*.j2` file of `dir`; the main template must be among them.
    pub fn from_dir(dir: &Path) -> Result<Self, StackError> {
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| StackError::new(&shown, format!("cannot read template directory: {e}")))?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| StackError::new(&shown, e.to_string()))?
                .path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !name.ends_with(".j2") {
                continue;
            }
            let source = std::fs::read_to_string(&path).map_err(|e| {
                StackError::new(
                    path.display().to_string(),
                    format!("cannot read template: {e}"),
                )
            })?;
            files.push((name.to_string(), source));
        }
        if !files.iter().any(|(n, _)| n == MAIN_TEMPLATE) {
            return Err(StackError::new(
                &shown,
                format!("no {MAIN_TEMPLATE} in the template directory"),
            ));
        }
        files.sort();
        Ok(TemplateSet { dir: shown, files })
    }

    fn shown(&self, name: &str) -> String {
        format!("{}/{name}", self.dir.trim_end_matches('/'))
    }

    /// Renders the main template with `context`.
    pub fn render<C: Serialize>(&self, context: &C) -> Result<String, StackError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .map_err(|e| self.error(e))?;
        env.set_syntax(syntax);
        // `quote`: a JSON string literal, which is also a valid YAML double-quoted scalar.
        env.add_filter("quote", |v: String| {
            serde_json::to_string(&v).unwrap_or_default()
        });
        for (name, source) in &self.files {
            env.add_template_owned(name.clone(), source.clone())
                .map_err(|e| self.error(e))?;
        }
        let template = env.get_template(MAIN_TEMPLATE).map_err(|e| self.error(e))?;
        template
            .render(minijinja::value::Serde(context))
            .map_err(|e| self.error(e))
    }

    fn error(&self, e: minijinja::Error) -> StackError {
        let file = self.shown(e.name().unwrap_or(MAIN_TEMPLATE));
        let mut message = match e.kind() {
            minijinja::ErrorKind::SyntaxError => "template syntax error".to_string(),
            minijinja::ErrorKind::UndefinedError => "undefined value in template".to_string(),
            _ => "template error".to_string(),
        };
        if let Some(detail) = e.detail() {
            message.push_str(": ");
            message.push_str(detail);
        }
        StackError::new(file, message).at(e.line())
    }
}
