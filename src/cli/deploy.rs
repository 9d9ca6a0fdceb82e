//! `zenkoctl deploy`: render, convert, preflight, deploy, wait; report (or roll back).

use std::time::Duration;

use serde_json::json;

use super::render::StackArgs;
use super::Context;
use crate::convert::{self, StackPlan};
use crate::engine::converge::{Outcome, WaitOptions};
use crate::engine::deploy::{self, DeployOptions};
use crate::engine::{self, Engine};
use crate::output::Exit;

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// The storage node (hostname or ID). Default: the node that carries the storage label, or
    /// the only node of a single-node swarm.
    #[arg(long)]
    pub node: Option<String>,
    /// Give up waiting for convergence after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// After convergence, tasks must stay up this many seconds.
    #[arg(long, default_value_t = 3.0)]
    pub stable: f64,
    /// A service fails once this many of its current tasks failed.
    #[arg(long, default_value_t = 3)]
    pub max_failures: usize,
    /// On failure, roll updated services back (Swarm's rollback) and remove what this deploy
    /// created.
    #[arg(long)]
    pub rollback: bool,
    /// Do not wait for convergence.
    #[arg(long)]
    pub detach: bool,
    /// `always`: pin every service image to the digest its registry serves, so that every
    /// node runs the same bits (an image found only on this engine stays unpinned, with a
    /// warning); `never`: deploy the image names as they are.
    #[arg(long, value_enum, default_value = "always")]
    pub resolve_image: ResolveImage,
    /// Send the registry credentials of the docker config to the swarm with the services, so
    /// that every node can pull from a registry that requires them (the swarm stores them).
    #[arg(long)]
    pub with_registry_auth: bool,
    /// The docker config directory holding config.json (default: $DOCKER_CONFIG, else ~/.docker).
    #[arg(long, value_name = "DIR")]
    pub docker_config: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResolveImage {
    Always,
    Never,
}

/// Renders and converts the stack (shared with `plan`). Secret and config files are read
/// relative to the current directory.
pub fn stack_plan(args: &StackArgs, ctx: &Context) -> anyhow::Result<StackPlan> {
    let rendered = args.render(ctx)?;
    let read = |path: &str| std::fs::read(path);
    Ok(convert::convert(
        &rendered.compose,
        &rendered.values.stack,
        &read,
    )?)
}

pub fn run(args: DeployArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let plan = stack_plan(&args.stack, ctx)?;
    let opts = DeployOptions {
        node: args.node.clone(),
        wait: WaitOptions {
            timeout: Duration::from_secs(args.timeout),
            stable: Duration::from_secs_f64(args.stable.max(0.0)),
            max_failures: args.max_failures.max(1),
            ..WaitOptions::default()
        },
        detach: args.detach,
        rollback: args.rollback,
        resolve_images: args.resolve_image == ResolveImage::Always,
        with_registry_auth: args.with_registry_auth,
        docker_config: args.docker_config.clone(),
        ..DeployOptions::default()
    };
    engine::block_on(async {
        let engine = Engine::connect(ctx.host.as_deref()).await?;
        let progress = |m: String| ctx.output.progress(m);
        let report = deploy::deploy(&engine, &plan, &opts, &progress).await?;
        let exit = report.exit();
        for w in &report.warnings {
            ctx.output.warn(w);
        }
        let doc = json!({"ok": exit == Exit::Ok, "exit": exit, "exit_code": exit.code(), "deploy": report});
        ctx.output.result(&doc, |w| match &report.outcome {
            Outcome::Converged => {
                let _ = writeln!(
                    w,
                    "stack {} deployed on {} in {:.1}s{}",
                    report.stack,
                    report.preflight.storage_node.display(),
                    report.seconds,
                    if args.detach {
                        " (not waiting for convergence)"
                    } else {
                        ": converged"
                    }
                );
                for s in &report.services {
                    let _ = writeln!(w, "  {}: {}", s.service, change_text(&s.change));
                }
            }
            Outcome::Failed { failures } | Outcome::TimedOut { failures } => {
                let what = if matches!(report.outcome, Outcome::TimedOut { .. }) {
                    "timed out"
                } else {
                    "failed"
                };
                let _ = writeln!(
                    w,
                    "deploy of stack {} {what} after {:.1}s:",
                    report.stack, report.seconds
                );
                for f in failures {
                    let _ = writeln!(w, "  {f}");
                }
                if let Some(r) = &report.rollback {
                    let _ = writeln!(
                        w,
                        "rollback: rolled back [{}], removed [{}]{}",
                        r.rolled_back.join(", "),
                        r.removed.join(", "),
                        if r.problems.is_empty() {
                            String::new()
                        } else {
                            format!("; problems: {}", r.problems.join("; "))
                        }
                    );
                }
            }
        });
        Ok(exit)
    })
}

pub fn change_text(change: &crate::convert::diff::Change) -> String {
    use crate::convert::diff::Change;
    match change {
        Change::Create => "created".into(),
        Change::Unchanged => "unchanged".into(),
        Change::Update { fields } if fields.is_empty() => "updated (settings removed)".into(),
        Change::Update { fields } => format!("updated ({})", fields.join(", ")),
        Change::Recreate { reason } => format!("recreated ({reason})"),
    }
}
