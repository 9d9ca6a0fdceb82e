//! `zenkoctl down`: remove what `up` deployed, and wait until it is gone.

use std::time::Duration;

use serde_json::json;

use super::render::StackArgs;
use super::Context;
use crate::engine::{self, teardown, Engine};
use crate::output::Exit;
use crate::up;

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Also delete the stack's volumes (its data) on this engine.
    #[arg(long)]
    pub volumes: bool,
    /// Also stop the engine `up --start-engine` started.
    #[arg(long)]
    pub stop_engine: bool,
    /// Give up waiting for the stack to be gone after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    #[command(flatten)]
    pub stack: StackArgs,
}

pub fn run(args: DownArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let stack = args.stack.render(ctx)?.values.stack;
    let progress = |line: String| ctx.output.progress(line);
    let report = engine::block_on(async {
        let engine = Engine::connect(ctx.host.as_deref()).await?;
        teardown::teardown(
            &engine,
            Some(&stack),
            args.volumes,
            Duration::from_secs(args.timeout),
            &progress,
        )
        .await
    })?;
    let stopped = if args.stop_engine {
        up::stop_started_engine(Duration::from_secs(60))?
    } else {
        None
    };
    ctx.output.result(
        &json!({"ok": true, "stack": stack, "teardown": report, "engine_stopped": stopped}),
        |w| {
            let _ = if report.nothing {
                writeln!(w, "stack {stack}: nothing to remove")
            } else {
                writeln!(w, "stack {stack} removed")
            };
            if let Some(pid) = stopped {
                let _ = writeln!(w, "stopped the engine zenkoctl started (pid {pid})");
            }
        },
    );
    Ok(Exit::Ok)
}
