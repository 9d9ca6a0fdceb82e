//! The module image: build it through the Engine API and push it to its registry.
//!
//! - [`context`]: build contexts as streamed tar archives; [`dockerignore`] filters them;
//! - [`offline`]: the offline image's context (templates/Dockerfile.offline): the running
//!   binary, its ELF interpreter and libraries, a minimal /etc, FROM scratch — no pulls;
//! - [`build`]: `POST /build` and its progress stream;
//! - [`auth`]: registry credentials from the docker config and credential helpers, and the
//!   URL-safe `X-Registry-Auth` encoding the daemon expects;
//! - [`push`]: `POST /images/{name}/push`, progress, and the digest a deploy pins;
//! - [`healthcheck`]: the image's HEALTHCHECK, run by the binary itself.

pub mod auth;
pub mod build;
pub mod context;
pub mod dockerignore;
pub mod healthcheck;
pub mod offline;
pub mod push;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context as _};

use crate::engine::{Engine, Progress};
use build::{BuildRequest, Built};
use context::{BuildContext, Source};

/// The Dockerfile of the standard image, compiled in.
pub const STANDARD_DOCKERFILE: &str = include_str!("../../templates/Dockerfile");
/// Where a Dockerfile that is not part of the context is put in the archive.
const INJECTED_DOCKERFILE: &str = ".zenkoctl.Dockerfile";

/// An image reference `[registry/]repository:tag` (digests are not pushed by reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `registry/repository`, or `repository` for Docker Hub.
    pub name: String,
    pub tag: String,
}

impl ImageRef {
    pub fn parse(text: &str) -> anyhow::Result<ImageRef> {
        let text = text.trim();
        if text.is_empty() || text.contains('@') || text.chars().any(char::is_whitespace) {
            bail!("{text:?} is not an image reference of the form [registry/]repository[:tag]");
        }
        let last_slash = text.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match text[last_slash..].rfind(':') {
            Some(i) => (&text[..last_slash + i], &text[last_slash + i + 1..]),
            None => (text, "latest"),
        };
        if name.is_empty() || tag.is_empty() || name.ends_with('/') {
            bail!("{text:?} is not an image reference of the form [registry/]repository[:tag]");
        }
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            bail!("{text:?}: repository names must be lowercase");
        }
        Ok(ImageRef {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }

    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }

    pub fn repository_with_registry(&self) -> String {
        self.name.clone()
    }

    /// The registry host, as the docker client derives it (`docker.io` for Docker Hub).
    pub fn registry(&self) -> String {
        auth::registry_of(&self.name)
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

fn standard_labels(variant: &str) -> HashMap<String, String> {
    HashMap::from([
        ("io.zenko.managed-by".to_string(), "zenkoctl".to_string()),
        ("io.zenko.image.variant".to_string(), variant.to_string()),
    ])
}

fn version_arg() -> HashMap<String, String> {
    HashMap::from([("VERSION".to_string(), env!("CARGO_PKG_VERSION").to_string())])
}

/// Builds the offline image from `binary` (FROM scratch, nothing pulled).
pub async fn build_offline(
    engine: &Engine,
    binary: &Path,
    image: &ImageRef,
    no_cache: bool,
    progress: Progress<'_>,
) -> anyhow::Result<(Built, offline::Runtime)> {
    let (context, runtime) = offline::context(binary)?;
    if offline::has_debug_info(binary) {
        progress(format!(
            "note: {} carries debug info; a release build (cargo build --release, which strips) \
             makes a much smaller image",
            binary.display()
        ));
    }
    progress(format!(
        "packing {} with {} and {} libraries",
        binary.display(),
        runtime
            .interpreter
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "no loader (static)".into()),
        runtime.libraries.len()
    ));
    let built = build::build(
        engine,
        BuildRequest {
            context,
            dockerfile: "Dockerfile".into(),
            tag: image.reference(),
            build_args: version_arg(),
            labels: standard_labels("offline"),
            no_cache,
            pull: false,
        },
        progress,
    )
    .await?;
    Ok((built, runtime))
}

/// Builds from a source directory (its `.dockerignore` applied) with `dockerfile`, or the
/// stock multi-stage Dockerfile when `None`.
pub async fn build_from_dir(
    engine: &Engine,
    dir: &Path,
    dockerfile: Option<&Path>,
    image: &ImageRef,
    no_cache: bool,
    pull: bool,
    progress: Progress<'_>,
) -> anyhow::Result<Built> {
    let ignore = dockerignore::Dockerignore::load(dir)?;
    let mut context = BuildContext::from_dir(dir, &ignore)?;
    // The Dockerfile always travels in the archive (even when .dockerignore leaves it out, as
    // the docker CLI does), under a name of its own.
    let text = match dockerfile {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("cannot read the Dockerfile {}", path.display()))?,
        None => STANDARD_DOCKERFILE.as_bytes().to_vec(),
    };
    context.add(INJECTED_DOCKERFILE, Source::Bytes(text), 0o644);
    progress(format!(
        "sending {} ({} entries{})",
        dir.display(),
        context.entries().len(),
        if ignore.patterns().next().is_some() {
            ", .dockerignore applied"
        } else {
            ""
        }
    ));
    let which = match dockerfile {
        Some(path) => path.display().to_string(),
        None => "the standard templates/Dockerfile".to_string(),
    };
    build::build(
        engine,
        BuildRequest {
            context,
            dockerfile: INJECTED_DOCKERFILE.into(),
            tag: image.reference(),
            build_args: version_arg(),
            labels: standard_labels(if dockerfile.is_some() {
                "custom"
            } else {
                "standard"
            }),
            no_cache,
            pull,
        },
        progress,
    )
    .await
    .with_context(|| format!("with {which}, context {}", dir.display()))
}

/// Pushes `image` with the credentials the docker config (in `config_dir`, default
/// `$DOCKER_CONFIG` or `~/.docker`) has for its registry.
pub async fn push_image(
    engine: &Engine,
    image: &ImageRef,
    config_dir: Option<&Path>,
    progress: Progress<'_>,
) -> anyhow::Result<push::Pushed> {
    let registry = image.registry();
    let (credentials, source) = auth::credentials_for(&registry, config_dir)?;
    match &credentials {
        Some(c) => progress(format!(
            "pushing {image} as {} (credentials for {registry} from {source})",
            if c.username.is_empty() {
                "<token>"
            } else {
                &c.username
            },
        )),
        None => progress(format!(
            "pushing {image} (no credentials for {registry}: anonymous)"
        )),
    }
    push::push(engine, image, credentials.as_ref(), progress).await
}

/// An image as its registry has it: what a deploy pins so that every node runs the same bits.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Resolved {
    /// `registry/repository:tag`
    pub reference: String,
    /// The manifest (or manifest list) digest, `sha256:...`.
    pub digest: String,
    /// `registry/repository:tag@sha256:...`, the form `docker stack deploy` writes.
    pub pinned: String,
    /// `os/architecture` of the platforms the registry lists.
    pub platforms: Vec<String>,
}

/// Asks the registry, through the engine (`GET /distribution/{name}/json`: the engine, a
/// manager for a deploy, contacts the registry), for the digest of `image`, with the docker
/// config's credentials for its registry sent URL-safe.
pub async fn resolve_digest(
    engine: &Engine,
    image: &ImageRef,
    config_dir: Option<&Path>,
) -> anyhow::Result<Resolved> {
    let (credentials, _) = auth::credentials_for(&image.registry(), config_dir)?;
    let docker = auth::with_registry_auth(&engine.docker, credentials.as_ref())?;
    let inspect = docker
        .inspect_registry_image(&image.reference(), None)
        .await
        .map_err(|e| {
            let hint = if credentials.is_none() {
                format!(
                    " (no credentials for {} in the docker config)",
                    image.registry()
                )
            } else {
                String::new()
            };
            engine.error(e, format_args!("looking up {image} in its registry{hint}"))
        })?;
    let digest = inspect.descriptor.digest.unwrap_or_default();
    if !digest.starts_with("sha256:") {
        bail!("the registry gave no digest for {image}");
    }
    let platforms = inspect
        .platforms
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p.os.as_deref().unwrap_or("unknown"),
                p.architecture.as_deref().unwrap_or("unknown")
            )
        })
        .collect();
    Ok(Resolved {
        reference: image.reference(),
        pinned: format!("{}@{digest}", image.reference()),
        digest,
        platforms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        let r = ImageRef::parse("10.99.0.1:5000/zenkoctl/module:v2").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_str()),
            ("10.99.0.1:5000/zenkoctl/module", "v2")
        );
        assert_eq!(r.registry(), "10.99.0.1:5000");
        let r = ImageRef::parse("10.99.0.1:5000/zenkoctl/module").unwrap();
        assert_eq!(r.tag, "latest");
        assert_eq!(r.reference(), "10.99.0.1:5000/zenkoctl/module:latest");
        let r = ImageRef::parse("zenkoctl/module:latest").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert!(ImageRef::parse("x@sha256:abc").is_err());
        assert!(ImageRef::parse("Upper/case").is_err());
        assert!(ImageRef::parse("repo:").is_err());
    }
}
