//! `zenkoctl push`: push the module image to its registry, with the credentials the docker
//! config has for it, and print the digest a deploy pins.

use std::path::PathBuf;

use serde_json::json;

use super::build::image_ref;
use super::render::StackArgs;
use super::Context;
use crate::engine::{self, Engine};
use crate::image;
use crate::output::Exit;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Push this reference instead of the values' image.registry/repository:tag.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// The docker config directory holding config.json (default: $DOCKER_CONFIG, else ~/.docker).
    #[arg(long, value_name = "DIR")]
    pub docker_config: Option<PathBuf>,
    #[command(flatten)]
    pub stack: StackArgs,
}

pub fn run(args: PushArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let image = image_ref(args.image.as_deref(), &args.stack, ctx)?;
    let progress = |line: String| ctx.output.progress(line);
    engine::block_on(async {
        let engine = Engine::connect(ctx.host.as_deref()).await?;
        let pushed =
            image::push_image(&engine, &image, args.docker_config.as_deref(), &progress).await?;
        let doc = json!({
            "ok": true,
            "image": {
                "id": pushed.id,
                "tag": pushed.reference,
                "size": pushed.size,
                "digest": pushed.digest,
                "pinned": pushed.pinned,
                "manifest_size": pushed.manifest_size,
            },
            "authenticated": pushed.authenticated,
        });
        ctx.output.result(&doc, |w| {
            let _ = writeln!(w, "pushed {}", pushed.reference);
            let _ = writeln!(w, "digest: {}", pushed.digest);
            let _ = writeln!(w, "pinned: {}", pushed.pinned);
        });
        Ok(Exit::Ok)
    })
}
