//! `POST /build` with a streamed context, the build's output shown as progress.
//!
//! The classic builder answers 200 at once and reports everything — including failures — in
//! the JSON stream that follows (`stream` lines, `errorDetail` on failure, `aux.ID` for the
//! image id). A failure is reported with the step that failed and the output lines before it.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use futures_util::StreamExt as _;
use serde::Serialize;

use super::auth;
use super::context::BuildContext;
use crate::engine::{Engine, EngineResult as _, Progress};

/// Output lines kept to explain a failure.
const TAIL_LINES: usize = 15;
/// A build may upload a big context and run long steps: no request timeout that short.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

/// What to build.
#[derive(Debug)]
pub struct BuildRequest {
    pub context: BuildContext,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    /// The reference to tag the image with (`registry/repository:tag`).
    pub tag: String,
    pub build_args: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    pub no_cache: bool,
    /// Ask the engine to pull newer base images (standard Dockerfile only).
    pub pull: bool,
}

/// A built image.
#[derive(Debug, Clone, Serialize)]
pub struct Built {
    /// `sha256:...`
    pub id: String,
    pub tag: String,
    /// Bytes, as the engine reports the image's size.
    pub size: i64,
    /// Bytes of the build context sent.
    pub context_bytes: u64,
    pub user: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub healthcheck: Vec<String>,
}

pub async fn build(
    engine: &Engine,
    request: BuildRequest,
    progress: Progress<'_>,
) -> anyhow::Result<Built> {
    let docker = engine
        .docker
        .clone()
        .with_timeout(BUILD_TIMEOUT)
        .with_request_modifier(auth::url_safe_registry_headers);
    let options = bollard::query_parameters::BuildImageOptionsBuilder::new()
        .dockerfile(&request.dockerfile)
        .t(&request.tag)
        .rm(true)
        .forcerm(true)
        .nocache(request.no_cache)
        .pull(if request.pull { "1" } else { "" })
        .buildargs(&request.build_args)
        .labels(&request.labels)
        .version(bollard::query_parameters::BuilderVersion::BuilderV1)
        .build();
    let (body, writer) = request.context.into_stream();
    let mut stream = docker.build_image(options, None, Some(bollard::body_stream(body)));

    let mut tail: VecDeque<String> = VecDeque::new();
    let mut image_id = None;
    let mut failure: Option<anyhow::Error> = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream.as_deref() {
                    for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
                        progress(line.to_string());
                        if tail.len() == TAIL_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(line.to_string());
                    }
                }
                if let Some(status) = info.status.as_deref() {
                    progress(status.to_string());
                }
                if let Some(id) = info.aux.and_then(|a| a.id) {
                    image_id = Some(id);
                }
                if let Some(detail) = info.error_detail {
                    failure = Some(anyhow!(detail.message.unwrap_or_default()));
                    break;
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                failure = Some(anyhow!(error));
                break;
            }
            Err(e) => {
                failure = Some(engine.error(e, "building the image"));
                break;
            }
        }
    }
    drop(stream);
    // A context that could not be written explains whatever the engine said about it.
    let written = writer.await.context("the build context writer panicked")?;
    let context_bytes = match (written, failure) {
        (Err(e), _) => return Err(e.context(format!("building {}", request.tag))),
        (Ok(_), Some(error)) => {
            let output = if tail.is_empty() {
                String::new()
            } else {
                format!(
                    "\nlast build output:\n  {}",
                    tail.iter().cloned().collect::<Vec<_>>().join("\n  ")
                )
            };
            return Err(anyhow!(
                "building {} failed: {error:#}{output}",
                request.tag
            ));
        }
        (Ok(n), None) => n,
    };
    let inspect = docker.inspect_image(&request.tag).await.engine(
        engine,
        format!("inspecting the built image {}", request.tag),
    )?;
    let id = inspect.id.clone().or(image_id).unwrap_or_default();
    let config = inspect.config.unwrap_or_default();
    Ok(Built {
        id,
        tag: request.tag,
        size: inspect.size.unwrap_or_default(),
        context_bytes,
        user: config.user.unwrap_or_default(),
        entrypoint: config.entrypoint.unwrap_or_default(),
        cmd: config.cmd.unwrap_or_default(),
        healthcheck: config.healthcheck.and_then(|h| h.test).unwrap_or_default(),
    })
}
