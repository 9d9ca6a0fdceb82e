//! `zenkoctl status [--watch]`: health of the deployed stack; exit 0 healthy, 10 degraded,
//! 11 down.

use std::time::Duration;

use super::Context;
use crate::engine::status::{self, StatusOptions, StatusReport};
use crate::engine::{self, Engine};
use crate::output::Exit;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The stack (default: the deployed Zenko stack, found by its labels).
    #[arg(long)]
    pub stack: Option<String>,
    /// Keep reporting every --interval seconds (JSON: one document per line) until interrupted.
    #[arg(long)]
    pub watch: bool,
    #[arg(long, default_value_t = 5)]
    pub interval: u64,
    /// Address to probe published ports at (default: the node running the task for host-mode
    /// ports, the engine's host for ingress ports).
    #[arg(long)]
    pub probe_host: Option<String>,
    /// Skip the application probes.
    #[arg(long)]
    pub no_probe: bool,
}

fn print(report: &StatusReport, ctx: &Context, watch: bool) {
    if ctx.output.is_json() && watch {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
        return;
    }
    ctx.output.result(report, |w| {
        let _ = writeln!(
            w,
            "stack {}: {:?}",
            report.stack.as_deref().unwrap_or("(none)"),
            report.health
        );
        for s in &report.services {
            let _ = writeln!(
                w,
                "  {} {}/{} running  {}  {}",
                s.name,
                s.running,
                s.desired,
                s.image,
                s.ports.join(", ")
            );
            if let Some(u) = &s.update_state {
                let _ = writeln!(
                    w,
                    "    update: {u} {}",
                    s.update_message.clone().unwrap_or_default()
                );
            }
            for t in &s.tasks {
                let _ = writeln!(
                    w,
                    "    task {} on {}: {} (desired {}){}",
                    t.id,
                    t.node,
                    t.state,
                    t.desired_state,
                    t.error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            }
        }
        for p in &report.probes {
            let _ = writeln!(
                w,
                "  probe {}: {:?} {} {}",
                p.target, p.state, p.url, p.detail
            );
        }
        for p in &report.problems {
            let _ = writeln!(w, "  problem: {p}");
        }
        for n in &report.notes {
            let _ = writeln!(w, "  note: {n}");
        }
    });
}

pub fn run(args: StatusArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let opts = StatusOptions {
        stack: args.stack.clone(),
        probe_host: args.probe_host.clone(),
        no_probe: args.no_probe,
    };
    engine::block_on(async {
        let engine = Engine::connect(ctx.host.as_deref()).await?;
        loop {
            let report = status::status(&engine, &opts).await?;
            print(&report, ctx, args.watch);
            if !args.watch {
                return Ok(report.health.exit());
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(args.interval.max(1))) => {}
                _ = tokio::signal::ctrl_c() => return Ok(report.health.exit()),
            }
        }
    })
}
