//! `zenkoctl build`: build the module image through the Engine API.
//!
//! By default the offline image (templates/Dockerfile.offline): the running zenkoctl, or
//! `--binary PATH`, packed FROM scratch with its loader and libraries — nothing is pulled.
//! `--source DIR` builds DIR (the zenkoctl source tree, its .dockerignore applied) with the
//! standard multi-stage Dockerfile (templates/Dockerfile), or with `--file`.

use std::path::PathBuf;

use serde_json::json;

use super::render::StackArgs;
use super::Context;
use crate::engine::{self, Engine};
use crate::image::{self, ImageRef};
use crate::output::{coded, Exit};

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Pack this zenkoctl binary instead of the running one (offline image).
    #[arg(long, value_name = "PATH", conflicts_with = "source")]
    pub binary: Option<PathBuf>,
    /// Build from this source directory with the standard Dockerfile (needs registry access
    /// for its base images) instead of packing a binary.
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// With --source: use this Dockerfile instead of the standard one.
    #[arg(long = "file", value_name = "DOCKERFILE", requires = "source")]
    pub dockerfile: Option<PathBuf>,
    /// With --source: ask the engine to pull newer base images.
    #[arg(long, requires = "source")]
    pub pull: bool,
    /// Tag the image with this reference instead of the values' image.registry/repository:tag.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// Do not use the engine's build cache.
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub stack: StackArgs,
}

/// The image reference a command works on: `--image`, else the values' `image`.
pub fn image_ref(
    explicit: Option<&str>,
    stack: &StackArgs,
    ctx: &Context,
) -> anyhow::Result<ImageRef> {
    let text = match explicit {
        Some(r) => r.to_string(),
        None => stack.render(ctx)?.values.image.reference(),
    };
    ImageRef::parse(&text).map_err(|e| coded(Exit::InvalidInput, e))
}

pub fn run(args: BuildArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let image = image_ref(args.image.as_deref(), &args.stack, ctx)?;
    let progress = |line: String| ctx.output.progress(line);
    engine::block_on(async {
        let engine = Engine::connect(ctx.host.as_deref()).await?;
        let (built, variant, extra) = match &args.source {
            Some(dir) => {
                let built = image::build_from_dir(
                    &engine,
                    dir,
                    args.dockerfile.as_deref(),
                    &image,
                    args.no_cache,
                    args.pull,
                    &progress,
                )
                .await?;
                let variant = if args.dockerfile.is_some() {
                    "custom"
                } else {
                    "standard"
                };
                (built, variant, json!({"source": dir}))
            }
            None => {
                let binary = match &args.binary {
                    Some(b) => b.clone(),
                    None => image::offline::current_binary()?,
                };
                let (built, runtime) =
                    image::build_offline(&engine, &binary, &image, args.no_cache, &progress)
                        .await?;
                let files: Vec<PathBuf> = runtime
                    .interpreter
                    .into_iter()
                    .chain(runtime.libraries)
                    .collect();
                (
                    built,
                    "offline",
                    json!({"binary": binary, "runtime_files": files}),
                )
            }
        };
        let doc = json!({
            "ok": true,
            "variant": variant,
            "image": {
                "id": built.id,
                "tag": built.tag,
                "size": built.size,
                "user": built.user,
                "entrypoint": built.entrypoint,
                "cmd": built.cmd,
                "healthcheck": built.healthcheck,
            },
            "context_bytes": built.context_bytes,
            "details": extra,
        });
        ctx.output.result(&doc, |w| {
            let _ = writeln!(
                w,
                "built {} ({}, {} image, {:.1} MB)",
                built.tag,
                engine::short_id(built.id.trim_start_matches("sha256:")),
                variant,
                built.size as f64 / 1e6
            );
        });
        Ok(Exit::Ok)
    })
}
