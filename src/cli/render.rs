//! `zenkoctl render`: values + templates -> a validated docker-stack.yml.

use std::path::PathBuf;

use anyhow::Context as _;
use serde_json::json;

use super::Context;
use crate::output::Exit;
use crate::stack::{self, RenderRequest};

/// Which stack to render; shared by every command that renders (render, plan, deploy, up).
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// A profile from stacks/: module, full or lab (default: module).
    #[arg(long, short = 'p')]
    pub profile: Option<String>,
    /// A values file layered over the profile (repeatable; later files win).
    #[arg(long = "values", short = 'f', value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// Override one value: `--set split=true`, `--set image.tag=v2` (repeatable; applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Render a directory of templates instead of the stock ones.
    #[arg(long, value_name = "DIR", env = "ZENKOCTL_TEMPLATES")]
    pub templates: Option<PathBuf>,
    /// Look profiles up in this directory instead of the stock ones.
    #[arg(long, value_name = "DIR", env = "ZENKOCTL_STACKS")]
    pub stacks: Option<PathBuf>,
}

impl StackArgs {
    pub fn request(&self) -> RenderRequest {
        RenderRequest {
            profile: self.profile.clone(),
            values_files: self.values.clone(),
            sets: self.sets.clone(),
            templates_dir: self.templates.clone(),
            stacks_dir: self.stacks.clone(),
        }
    }

    /// Renders with the process environment, warning about unset variables.
    pub fn render(&self, ctx: &Context) -> anyhow::Result<stack::Rendered> {
        let rendered = stack::render(&self.request(), &|k| std::env::var(k).ok())?;
        for var in &rendered.unset_variables {
            ctx.output.warn(format!(
                "the {var} variable is not set; using an empty string"
            ));
        }
        Ok(rendered)
    }
}

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Write here instead of stdout.
    #[arg(long = "out", short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(args: RenderArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let rendered = args.stack.render(ctx)?;
    if let Some(path) = &args.out {
        std::fs::write(path, &rendered.yaml)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let services: Vec<&String> = rendered.compose.services.keys().collect();
    let doc = json!({
        "ok": true,
        "stack": rendered.values.stack,
        "sources": rendered.sources,
        "services": services,
        "unset_variables": rendered.unset_variables,
        "file": args.out.as_ref().map(|p| p.display().to_string()),
        "yaml": if args.out.is_none() { Some(&rendered.yaml) } else { None },
    });
    ctx.output.result(&doc, |w| match &args.out {
        None => {
            let _ = w.write_all(rendered.yaml.as_bytes());
        }
        Some(path) => {
            let _ = writeln!(
                w,
                "wrote {} (stack {}, services: {})",
                path.display(),
                rendered.values.stack,
                services
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    });
    Ok(Exit::Ok)
}
