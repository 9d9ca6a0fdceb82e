//! `zenkoctl teardown [--stack NAME] [--volumes]`: remove and wait until gone.

use std::time::Duration;

use serde_json::json;

use super::Context;
use crate::engine::{self, teardown, Engine};
use crate::output::Exit;

#[derive(Debug, clap::Args)]
pub struct TeardownArgs {
    /// The stack to remove (default: every Zenko stack found by its labels).
    #[arg(long)]
    pub stack: Option<String>,
    /// Also remove the stack's volumes (on this engine's node): THE DATA IS LOST.
    #[arg(long)]
    pub volumes: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

pub fn run(args: TeardownArgs, ctx: &Context) -> anyhow::Result<Exit> {
    engine::block_on(async {
        let engine = Engine::connect(ctx.host.as_deref()).await?;
        let progress = |m: String| ctx.output.progress(m);
        let report = teardown::teardown(
            &engine,
            args.stack.as_deref(),
            args.volumes,
            Duration::from_secs(args.timeout),
            &progress,
        )
        .await?;
        ctx.output.result(&json!({"ok": true, "nothing_to_remove": report.nothing, "removed": report.removed}), |w| {
            if report.nothing {
                let _ = match &args.stack {
                    Some(s) => writeln!(w, "nothing to remove: no stack {s} is deployed"),
                    None => writeln!(w, "nothing to remove: no Zenko stack is deployed"),
                };
            }
            for r in &report.removed {
                let _ = writeln!(
                    w,
                    "removed stack {} in {:.1}s: {} service(s), {} network(s), {} secret(s), {} config(s){}",
                    r.stack,
                    r.seconds,
                    r.services.len(),
                    r.networks.len(),
                    r.secrets.len(),
                    r.configs.len(),
                    if args.volumes { format!(", {} volume(s)", r.volumes.len()) } else { String::new() }
                );
                for v in r.volumes_elsewhere.iter().chain(&r.left_on_down_nodes) {
                    let _ = writeln!(w, "note: {v}");
                }
            }
        });
        Ok(Exit::Ok)
    })
}
