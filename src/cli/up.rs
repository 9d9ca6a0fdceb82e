//! `zenkoctl up`: the module stack on this machine, from nothing (see src/up/mod.rs).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::deploy::stack_plan;
use super::render::StackArgs;
use super::Context;
use crate::engine::converge::{Outcome, WaitOptions};
use crate::engine::deploy::{self, DeployOptions};
use crate::engine::status::{self, StatusOptions};
use crate::engine::{self, nodes};
use crate::image::{self, ImageRef};
use crate::output::{coded, Exit};
use crate::up;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Start a local dockerd when no engine answers (it keeps running; `down --stop-engine`
    /// stops it).
    #[arg(long)]
    pub start_engine: bool,
    /// Pack this zenkoctl binary instead of the running one.
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Give up waiting for a converged, healthy stack after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// The stack (default: the `module` profile; `up` sets dnsrr endpoints, host-mode ports and
    /// the embedded backend under your own --set).
    #[command(flatten)]
    pub stack: StackArgs,
}

pub fn run(mut args: UpArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let user_sets = std::mem::take(&mut args.stack.sets);
    args.stack.sets = up::SINGLE_NODE_SETS.iter().map(|s| s.to_string()).collect();
    args.stack.sets.extend(user_sets);
    let values = args.stack.render(ctx)?.values;
    let progress = |line: String| ctx.output.progress(line);
    engine::block_on(async {
        let (engine, engine_state) =
            up::reach_engine(ctx.host.as_deref(), args.start_engine, &progress).await?;
        let swarm = up::ensure_swarm(&engine, &progress).await?;
        let label = nodes::label_storage(&engine, None).await?;
        progress(format!("storage node: {}", label.node.display()));

        // The image, tagged by its content too: the service spec changes exactly when the
        // image does, so a second `up` with the same binary changes nothing.
        let binary = match &args.binary {
            Some(b) => b.clone(),
            None => image::offline::current_binary()?,
        };
        let base =
            ImageRef::parse(&values.image.reference()).map_err(|e| coded(Exit::InvalidInput, e))?;
        let (built, _) = image::build_offline(&engine, &binary, &base, false, &progress).await?;
        let content_tag = format!(
            "{}-{}",
            base.tag,
            engine::short_id(built.id.trim_start_matches("sha256:"))
        );
        let options = bollard::query_parameters::TagImageOptionsBuilder::new()
            .repo(&base.name)
            .tag(&content_tag)
            .build();
        engine
            .docker
            .tag_image(&built.id, Some(options))
            .await
            .map_err(|e| engine.error(e, format_args!("tagging {}:{content_tag}", base.name)))?;
        args.stack.sets.push(format!("image.tag={content_tag}"));

        let plan = stack_plan(&args.stack, ctx)?;
        let opts = DeployOptions {
            wait: WaitOptions {
                timeout: Duration::from_secs(args.timeout),
                ..WaitOptions::default()
            },
            // The image was just built on this engine and is never pushed: there is no
            // registry digest to pin (`--resolve-image never`).
            resolve_images: false,
            ..DeployOptions::default()
        };
        let report = deploy::deploy(&engine, &plan, &opts, &progress).await?;
        if let Outcome::Failed { failures } | Outcome::TimedOut { failures } = &report.outcome {
            let lines: Vec<String> = failures.iter().map(|f| format!("{f}")).collect();
            return Err(coded(
                report.exit(),
                anyhow::anyhow!(
                    "the stack {} did not come up:\n  {}",
                    report.stack,
                    lines.join("\n  ")
                ),
            ));
        }
        let health = status::status(
            &engine,
            &StatusOptions {
                stack: Some(report.stack.clone()),
                ..StatusOptions::default()
            },
        )
        .await?;
        // Host-mode ports are published on the node: its swarm address (this machine's for a
        // local engine; the namespace's address for an engine in a network namespace), or
        // loopback when the node has none worth printing.
        let host = match label.node.addr.as_str() {
            "" | "0.0.0.0" => engine.host_address(),
            addr => addr.to_string(),
        };
        let (meta_port, data_port) = (values.module.metadata_port, values.module.data_port);
        let endpoints = json!({
            "metadata": format!("{host}:{meta_port}"),
            "data": format!("http://{host}:{data_port}/DataFile"),
            "health": format!("http://{host}:{data_port}/_/health"),
        });
        let example = up::example(&host, data_port);
        let exit = health.health.exit();
        let doc = json!({
            "ok": exit == Exit::Ok,
            "engine": engine_state,
            "swarm": swarm,
            "storage_node": label.node.display(),
            "image": {"id": built.id, "tag": format!("{}:{content_tag}", base.name), "size": built.size},
            "stack": report.stack,
            "services": report.services,
            "health": health.health,
            "problems": health.problems,
            "endpoints": endpoints,
            "example": example,
        });
        ctx.output.result(&doc, |w| {
            let _ = writeln!(
                w,
                "zenko module stack {} is up ({:?}) on {}",
                report.stack,
                health.health,
                label.node.display()
            );
            let _ = writeln!(
                w,
                "  metadata: {host}:{meta_port} (Arsenal metadata, socket.io)"
            );
            let _ = writeln!(w, "  data:     http://{host}:{data_port}/DataFile");
            let _ = writeln!(w, "  health:   http://{host}:{data_port}/_/health");
            for p in &health.problems {
                let _ = writeln!(w, "  problem: {p}");
            }
            let _ = writeln!(w, "try it:\n  {example}");
        });
        Ok(exit)
    })
}
