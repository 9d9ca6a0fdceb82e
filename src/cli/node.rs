//! `zenkoctl node ls | label [NODE] | unlabel [NODE]`: the storage label io.zenko.type=storage.

use serde_json::json;

use super::Context;
use crate::engine::{self, nodes, Engine};
use crate::output::Exit;

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// List the swarm's nodes and which one carries the storage label.
    Ls,
    /// Put the storage label on NODE (hostname or ID; default: the only node of a single-node
    /// swarm). The label is on one node at a time: it is taken off any other node.
    Label { node: Option<String> },
    /// Take the storage label off NODE (default: the node that carries it).
    Unlabel { node: Option<String> },
}

pub fn run(args: NodeArgs, ctx: &Context) -> anyhow::Result<Exit> {
    engine::block_on(async {
        let engine = Engine::connect(ctx.host.as_deref()).await?;
        match args.command {
            NodeCommand::Ls => {
                let list = nodes::list(&engine).await?;
                ctx.output.result(&json!({"ok": true, "nodes": list}), |w| {
                    let _ = writeln!(
                        w,
                        "{:<26} {:<20} {:<8} {:<8} {:<7} STORAGE",
                        "ID", "HOSTNAME", "ROLE", "STATE", "AVAIL"
                    );
                    for n in &list {
                        let _ = writeln!(
                            w,
                            "{:<26} {:<20} {:<8} {:<8} {:<7} {}",
                            n.id,
                            n.hostname,
                            format!("{}{}", n.role, if n.leader { "*" } else { "" }),
                            n.state,
                            n.availability,
                            if n.storage { "yes" } else { "" }
                        );
                    }
                });
            }
            NodeCommand::Label { node } => {
                let change = nodes::label_storage(&engine, node.as_deref()).await?;
                ctx.output.result(&json!({"ok": true, "label": format!("{}={}", nodes::STORAGE_LABEL, nodes::STORAGE_VALUE), "change": change}), |w| {
                    let _ = if change.changed {
                        writeln!(w, "labelled {} {}={}", change.node.display(), nodes::STORAGE_LABEL, nodes::STORAGE_VALUE)
                    } else {
                        writeln!(w, "{} already carries {}={}", change.node.display(), nodes::STORAGE_LABEL, nodes::STORAGE_VALUE)
                    };
                    for from in &change.moved_from {
                        let _ = writeln!(w, "removed the label from {} (data in its volumes stays there)", from.display());
                    }
                });
            }
            NodeCommand::Unlabel { node } => {
                let change = nodes::unlabel_storage(&engine, node.as_deref()).await?;
                ctx.output.result(
                    &json!({"ok": true, "label": nodes::STORAGE_LABEL, "change": change}),
                    |w| {
                        let _ = if change.changed {
                            writeln!(
                                w,
                                "removed {} from {}",
                                nodes::STORAGE_LABEL,
                                change.node.display()
                            )
                        } else {
                            writeln!(
                                w,
                                "{} does not carry {}; nothing to do",
                                change.node.display(),
                                nodes::STORAGE_LABEL
                            )
                        };
                    },
                );
            }
        }
        Ok(Exit::Ok)
    })
}
