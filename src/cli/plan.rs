//! `zenkoctl plan`: what a deploy would change, computed against the engine; changes nothing.

use serde_json::json;

use super::deploy::{change_text, stack_plan};
use super::render::StackArgs;
use super::Context;
use crate::engine::{self, deploy, pin, Engine};
use crate::output::Exit;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// As deploy's: compare with the images pinned to their registry digests (`always`), or
    /// with the names as they are (`never`).
    #[arg(long, value_enum, default_value = "always")]
    pub resolve_image: super::deploy::ResolveImage,
    /// The docker config directory holding config.json (default: $DOCKER_CONFIG, else ~/.docker).
    #[arg(long, value_name = "DIR")]
    pub docker_config: Option<std::path::PathBuf>,
}

pub fn run(args: PlanArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let mut plan = stack_plan(&args.stack, ctx)?;
    engine::block_on(async {
        let engine = Engine::connect(ctx.host.as_deref()).await?;
        engine.require_manager().await?;
        // The same pinned images a deploy would send, so that the diff compares like with like.
        if args.resolve_image == super::deploy::ResolveImage::Always {
            for image in pin::pin_images(&engine, &mut plan, args.docker_config.as_deref()).await? {
                if let Some(w) = image.warning {
                    ctx.output.warn(&w);
                }
            }
        }
        let report = deploy::plan_changes(&engine, &plan).await?;
        let nothing = report.changes_nothing();
        ctx.output.result(
            &json!({"ok": true, "changes_nothing": nothing, "plan": report}),
            |w| {
                if nothing {
                    let _ = writeln!(w, "stack {}: nothing to change", report.stack);
                    return;
                }
                let _ = writeln!(w, "stack {}:", report.stack);
                for s in &report.teardown {
                    let _ = writeln!(
                        w,
                        "  tear down the Zenko stack {s} (one Zenko stack at a time)"
                    );
                }
                for n in &report.networks_to_create {
                    let _ = writeln!(w, "  create network {n}");
                }
                for n in &report.secrets_to_create {
                    let _ = writeln!(w, "  create secret {n}");
                }
                for n in &report.configs_to_create {
                    let _ = writeln!(w, "  create config {n}");
                }
                for s in &report.services {
                    let _ = writeln!(
                        w,
                        "  {}: {}",
                        s.service,
                        change_text(&s.change)
                            .replace("created", "create")
                            .replace("updated", "update")
                            .replace("recreated", "recreate")
                    );
                }
                for s in &report.services_to_remove {
                    let _ = writeln!(w, "  remove service {s}");
                }
            },
        );
        Ok(Exit::Ok)
    })
}
