//! Pinning service images to their registry digest, as `docker stack deploy --resolve-image
//! always` does, so that every node runs the same bits.
//!
//! For each service image (`name:tag`), the manager asks the image's registry for the manifest
//! digest (`GET /distribution/{name}/json`, with the docker config's credentials for that
//! registry, URL-safe) and the spec gets `name:tag@sha256:...` and `Placement.Platforms` from
//! the manifest (docker/cli `resolveContainerSpecImage`). The spec-hash label is recomputed
//! afterwards, so the client-side diff sees "unchanged" while the registry serves the same
//! digest, and an update once a new image is pushed under the same tag.
//!
//! An image the registry cannot resolve:
//! - on the manager's engine: left unpinned with a warning naming the service and the image —
//!   docker/cli's behaviour ("could not be accessed on a registry to record its digest"). That
//!   is what a local image (`zenkoctl up` builds one and never pushes it) needs on a single-node
//!   swarm, and a service placed on the manager runs fine anywhere; nodes without the image
//!   fail to pull it, which the convergence report then names;
//! - nowhere: a preflight error naming the services and the image (the CLI would deploy and
//!   let every task fail to pull; nothing could run, so refusing first is kinder).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::anyhow;
use bollard::models::{Platform, ServiceSpec, TaskSpecPlacement};
use serde::Serialize;

use super::{is_not_found, is_transport, Engine};
use crate::convert::diff;
use crate::convert::StackPlan;
use crate::image::{self, auth, ImageRef};
use crate::output::{coded, Exit};

/// What happened to one image of the stack.
#[derive(Debug, Clone, Serialize)]
pub struct PinnedImage {
    /// As the stack names it.
    pub image: String,
    /// The services that run it.
    pub services: Vec<String>,
    /// `name:tag@sha256:...`, or `None` when left unpinned (see `warning`).
    pub pinned: Option<String>,
    pub digest: Option<String>,
    pub platforms: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

fn image_of(spec: &ServiceSpec) -> Option<&str> {
    spec.task_template
        .as_ref()?
        .container_spec
        .as_ref()?
        .image
        .as_deref()
}

/// Resolves every service image of `plan` and pins the specs in place (credentials from the
/// docker config in `config_dir`, default `$DOCKER_CONFIG` or `~/.docker`).
pub async fn pin_images(
    engine: &Engine,
    plan: &mut StackPlan,
    config_dir: Option<&Path>,
) -> anyhow::Result<Vec<PinnedImage>> {
    let mut by_image: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &plan.services {
        if let Some(image) = image_of(&s.spec) {
            by_image
                .entry(image.to_string())
                .or_default()
                .push(s.name.clone());
        }
    }
    let mut report = Vec::new();
    for (image, services) in by_image {
        let entry = resolve_one(engine, &image, &services, config_dir).await?;
        if let Some(pinned) = &entry.pinned {
            let platforms = platforms(&entry.platforms);
            for s in plan
                .services
                .iter_mut()
                .filter(|s| image_of(&s.spec) == Some(image.as_str()))
            {
                let mut spec = std::mem::take(&mut s.spec);
                let task = spec.task_template.get_or_insert_with(Default::default);
                if let Some(cs) = task.container_spec.as_mut() {
                    cs.image = Some(pinned.clone());
                }
                if !platforms.is_empty() {
                    task.placement
                        .get_or_insert_with(TaskSpecPlacement::default)
                        .platforms = Some(platforms.clone());
                }
                s.spec = diff::with_spec_hash(spec);
            }
        }
        report.push(entry);
    }
    Ok(report)
}

async fn resolve_one(
    engine: &Engine,
    image: &str,
    services: &[String],
    config_dir: Option<&Path>,
) -> anyhow::Result<PinnedImage> {
    let mut entry = PinnedImage {
        image: image.to_string(),
        services: services.to_vec(),
        pinned: None,
        digest: None,
        platforms: Vec::new(),
        warning: None,
    };
    let who = format!("service {}", services.join(", "));
    if image.contains('@') {
        // Already pinned by the values (`image: name@sha256:...`): nothing to resolve.
        entry.pinned = Some(image.to_string());
        entry.digest = image.split_once('@').map(|(_, d)| d.to_string());
        return Ok(entry);
    }
    let reference =
        ImageRef::parse(image).map_err(|e| coded(Exit::InvalidInput, anyhow!("{who}: {e:#}")))?;
    let lookup = image::resolve_digest(engine, &reference, config_dir).await;
    let registry_error = match lookup {
        Ok(resolved) => {
            entry.pinned = Some(resolved.pinned);
            entry.digest = Some(resolved.digest);
            entry.platforms = resolved.platforms;
            return Ok(entry);
        }
        Err(e) => e,
    };
    // Lost the engine: not a question of the image.
    if crate::output::exit_of(&registry_error) == Exit::Unreachable {
        return Err(registry_error);
    }
    match engine.docker.inspect_image(image).await {
        Ok(_) => {
            entry.warning = Some(format!(
                "{who}: image {image} could not be resolved in its registry ({registry_error:#}); \
                 it is deployed unpinned from the engine at {}: a node without it cannot pull \
                 it (zenkoctl push it to pin every node to the same bits)",
                engine.host
            ));
            Ok(entry)
        }
        Err(e) if is_not_found(&e) => Err(coded(
            Exit::DeployFailed,
            anyhow!(
                "{who}: image {image} is neither on the engine at {} nor in its registry \
                 ({registry_error:#}); build it (zenkoctl build) and push it (zenkoctl push) first",
                engine.host
            ),
        )),
        Err(e) if is_transport(&e) => {
            Err(engine.error(e, format_args!("inspecting image {image}")))
        }
        Err(e) => Err(engine.error(e, format_args!("{who}: inspecting image {image}"))),
    }
}

/// `os/arch` strings (from [`image::Resolved::platforms`]) as Swarm placement platforms, the
/// way docker/cli fills them in: `unknown` entries (attestation manifests) are skipped, the
/// list is deduplicated.
fn platforms(list: &[String]) -> Vec<Platform> {
    let mut out: Vec<Platform> = Vec::new();
    for p in list {
        let Some((os, arch)) = p.split_once('/') else {
            continue;
        };
        if os == "unknown" || arch == "unknown" {
            continue;
        }
        // docker/cli blanks `arm` (its variants would not match the node's reported arch).
        let arch = if arch == "arm" { "" } else { arch };
        let platform = Platform {
            os: Some(os.to_string()),
            architecture: (!arch.is_empty()).then(|| arch.to_string()),
        };
        if !out.contains(&platform) {
            out.push(platform);
        }
    }
    out
}

/// The registry credentials (`X-Registry-Auth`) to send with the create/update of a service
/// running `image`, so that the swarm's nodes can pull it (`--with-registry-auth`).
pub fn registry_auth_for(
    image: &str,
    config_dir: Option<&Path>,
) -> anyhow::Result<Option<bollard::auth::DockerCredentials>> {
    let name = image.split('@').next().unwrap_or(image);
    let (credentials, _) = auth::credentials_for(&auth::registry_of(name), config_dir)?;
    Ok(credentials.map(|c| bollard::auth::DockerCredentials {
        username: Some(c.username).filter(|s| !s.is_empty()),
        password: Some(c.password).filter(|s| !s.is_empty()),
        auth: Some(c.auth).filter(|s| !s.is_empty()),
        serveraddress: Some(c.serveraddress).filter(|s| !s.is_empty()),
        identitytoken: Some(c.identitytoken).filter(|s| !s.is_empty()),
        registrytoken: Some(c.registrytoken).filter(|s| !s.is_empty()),
        email: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_like_docker_cli() {
        let p = platforms(&[
            "linux/amd64".into(),
            "unknown/unknown".into(),
            "linux/amd64".into(),
            "linux/arm".into(),
        ]);
        assert_eq!(
            p,
            vec![
                Platform {
                    os: Some("linux".into()),
                    architecture: Some("amd64".into())
                },
                Platform {
                    os: Some("linux".into()),
                    architecture: None
                }
            ]
        );
    }
}
