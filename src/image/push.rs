//! `POST /images/{name}/push`: the push runs in the engine, which reports its progress and
//! its failures in the 200 stream; its last status line carries the manifest digest
//! (`<tag>: digest: sha256:... size: N`).

use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures_util::StreamExt as _;
use serde::Serialize;

use super::auth::{self, AuthConfig};
use super::ImageRef;
use crate::engine::{Engine, EngineResult as _, Progress};

/// A push may upload large layers: no short request timeout.
const PUSH_TIMEOUT: Duration = Duration::from_secs(3 * 3600);
/// The least time between two upload progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    /// `registry/repository:tag` as pushed.
    pub reference: String,
    /// The local image id (`sha256:...`).
    pub id: String,
    /// The image's size on the engine, in bytes.
    pub size: i64,
    /// The manifest digest the registry stores (`sha256:...`).
    pub digest: String,
    /// `registry/repository@sha256:...`: what a deploy pins.
    pub pinned: String,
    /// Size of the manifest, in bytes, as the engine reports it.
    pub manifest_size: u64,
    /// Whether credentials were sent.
    pub authenticated: bool,
}

/// Pushes `image` with `credentials` (anonymous when `None`).
pub async fn push(
    engine: &Engine,
    image: &ImageRef,
    credentials: Option<&AuthConfig>,
    progress: Progress<'_>,
) -> anyhow::Result<Pushed> {
    // Our own URL-safe header replaces the one bollard would encode with the standard
    // alphabet (see auth.rs), on this client only.
    let docker = auth::with_registry_auth(&engine.docker, credentials)?.with_timeout(PUSH_TIMEOUT);
    let options = bollard::query_parameters::PushImageOptionsBuilder::new()
        .tag(&image.tag)
        .build();
    let doing = format!("pushing {}", image.reference());
    let mut stream = docker.push_image(&image.repository_with_registry(), Some(options), None);
    let mut last: Option<(String, Instant)> = None;
    let mut digest = None;
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(explain(&error, image, credentials.is_some()));
            }
            Err(e) => return Err(engine.error(e, &doing)),
        };
        if let Some(detail) = info.error_detail {
            return Err(explain(
                &detail.message.unwrap_or_default(),
                image,
                credentials.is_some(),
            ));
        }
        let Some(status) = info.status else { continue };
        if let Some(found) = parse_digest(&status) {
            digest = Some(found);
        }
        // bollard's PushImageInfo has no layer id: show each change of status, and the
        // running upload percentage now and then.
        let line = match (&info.progress_detail, status.as_str()) {
            (Some(d), "Pushing") => match (d.current, d.total) {
                (Some(c), Some(t)) if t > 0 => format!("Pushing {}%", c * 100 / t),
                _ => continue,
            },
            _ => status,
        };
        let now = Instant::now();
        let show = match &last {
            Some((prev, _)) if *prev == line => false,
            Some((prev, at)) if prev.starts_with("Pushing") && line.starts_with("Pushing") => {
                now.duration_since(*at) >= PROGRESS_EVERY
            }
            _ => true,
        };
        if show {
            progress(line.clone());
            last = Some((line, now));
        }
    }
    let (digest, manifest_size) = digest.ok_or_else(|| {
        anyhow!("{doing}: the engine finished without reporting the pushed digest")
    })?;
    // The engine also records it: cross-check, so a digest printed is one the engine agrees on.
    let inspect = engine
        .docker
        .inspect_image(&image.reference())
        .await
        .engine(engine, format!("inspecting {}", image.reference()))?;
    let pinned = format!("{}@{digest}", image.repository_with_registry());
    let recorded = inspect.repo_digests.unwrap_or_default();
    if !recorded.contains(&pinned) {
        tracing::warn!(?recorded, %pinned, "the engine's RepoDigests do not list the pushed digest");
    }
    Ok(Pushed {
        reference: image.reference(),
        id: inspect.id.unwrap_or_default(),
        size: inspect.size.unwrap_or_default(),
        digest,
        pinned,
        manifest_size,
        authenticated: credentials.is_some(),
    })
}

/// `latest: digest: sha256:abc... size: 528` -> (`sha256:abc...`, 528).
pub fn parse_digest(status: &str) -> Option<(String, u64)> {
    let rest = &status[status.find("digest: ")? + "digest: ".len()..];
    let mut words = rest.split_whitespace();
    let digest = words.next()?;
    if !digest.starts_with("sha256:") || digest.len() != 7 + 64 {
        return None;
    }
    let size = match (words.next(), words.next()) {
        (Some("size:"), Some(n)) => n.parse().ok()?,
        _ => 0,
    };
    Some((digest.to_string(), size))
}

/// Turns the engine's push error into one that says what to do.
fn explain(message: &str, image: &ImageRef, sent_credentials: bool) -> anyhow::Error {
    let registry = image.registry();
    let lower = message.to_lowercase();
    let auth_failure = lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("no basic auth credentials")
        || lower.contains("denied");
    let hint = match (auth_failure, sent_credentials) {
        (true, false) => format!(
            "\nthe registry {registry} requires credentials and none were found for it in the \
             docker config (run `docker login {registry}`, or set DOCKER_CONFIG)"
        ),
        (true, true) => format!(
            "\nthe registry {registry} refused the credentials found for it in the docker config"
        ),
        _ if lower.contains("http response to https client")
            || lower.contains("server gave http response") =>
        {
            format!(
                "\nthe registry {registry} speaks plain HTTP: add it to the engine's \
             --insecure-registry list (loopback registries are allowed by default)"
            )
        }
        _ => String::new(),
    };
    anyhow!("pushing {} failed: {message}{hint}", image.reference())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_lines() {
        let d = "sha256:ca927cbb6fb81a3a1532c942d37aacc8957b70bb7e9c2a1ae66bfeda35e098a0";
        assert_eq!(
            parse_digest(&format!("latest: digest: {d} size: 528")),
            Some((d.to_string(), 528))
        );
        assert_eq!(parse_digest("Pushed"), None);
        assert_eq!(parse_digest("digest: sha256:short size: 1"), None);
    }

    #[test]
    fn auth_errors_say_what_to_do() {
        let image = ImageRef::parse("10.99.0.1:5001/zenkoctl/module:v1").unwrap();
        let e = explain("no basic auth credentials", &image, false).to_string();
        assert!(e.contains("docker login 10.99.0.1:5001"), "{e}");
        let e = explain("unauthorized: authentication required", &image, true).to_string();
        assert!(e.contains("refused the credentials"), "{e}");
    }
}
