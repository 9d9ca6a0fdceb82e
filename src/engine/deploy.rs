//! `zenkoctl deploy`: preflight, one Zenko stack at a time, create/update like
//! `docker stack deploy`, convergence, and a failure report (or a rollback).
//!
//! Order (docker/cli `deployCompose`, plus what it lacks):
//! 1. preflight: a manager; the storage node labelled, Ready and Active; fewer than two nodes is
//!    a warning; every image resolved to its registry digest and pinned (see [`super::pin`]),
//!    or, found only on this engine, left unpinned with a warning;
//! 2. any other Zenko stack (found by the marker label, whatever its name) is torn down and
//!    waited for until it is really gone;
//! 3. networks missing from the stack are created (existing ones are never updated, as the CLI);
//!    secrets and configs are created under their content-hash names if missing;
//! 4. in tiers — first the services constrained to the storage node, then the others, each
//!    tier waited for until converged and healthy before the next is touched — each service is
//!    created, updated in place (when the client-side diff finds a change; retried on "update
//!    out of sequence"), recreated (mode change only) or left alone; services of the stack that
//!    the file no longer has are removed;
//! 5. on success, superseded secrets and configs are removed; on failure,
//!    the report, and with `--rollback`, Swarm's rollback of updated services and removal of
//!    what this deploy created.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use bollard::models::{Service, ServiceSpec};
use bollard::query_parameters::{InspectServiceOptions, ListSecretsOptions, UpdateServiceOptions};
use serde::Serialize;

use super::converge::{self, Outcome, Target, WaitOptions};
use super::nodes::{self, NodeInfo};
use super::pin::{self, PinnedImage};
use super::stacks;
use super::teardown::{self, Removal};
use super::{is_not_found, retry_out_of_sequence, server_message, Engine, EngineResult, Progress};
use crate::convert::diff::{self, Change};
use crate::convert::{ServicePlan, StackPlan, MANAGED_LABEL, MANAGED_VALUE};
use crate::output::{coded, Exit};

#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// The storage node (hostname or ID); default: the labelled one, or the only node.
    pub node: Option<String>,
    pub wait: WaitOptions,
    /// Do not wait for convergence.
    pub detach: bool,
    /// On failure, roll updated services back and remove what this deploy created.
    pub rollback: bool,
    /// How long removing an earlier stack may take.
    pub teardown_timeout: Duration,
    /// The docker config directory whose credentials resolve image digests (and, with
    /// `with_registry_auth`, go to the nodes); default `$DOCKER_CONFIG` or `~/.docker`.
    pub docker_config: Option<std::path::PathBuf>,
    /// Send the registry credentials with service create/update, so that every node can pull
    /// from a registry that requires them (`docker stack deploy --with-registry-auth`). Off by
    /// default as in the CLI: the swarm stores them with the service.
    pub with_registry_auth: bool,
    /// Resolve and pin image digests (`--resolve-image always`, the default); `false` deploys
    /// the image names as they are (`never`: `zenkoctl up`'s local, never pushed image).
    pub resolve_images: bool,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            node: None,
            wait: WaitOptions::default(),
            detach: false,
            rollback: false,
            teardown_timeout: Duration::from_secs(120),
            docker_config: None,
            with_registry_auth: false,
            resolve_images: true,
        }
    }
}

/// What preflight found.
#[derive(Debug, Clone, Serialize)]
pub struct Preflight {
    pub storage_node: NodeInfo,
    pub label_changed: bool,
    pub label_moved_from: Vec<String>,
    pub nodes: usize,
    /// Each image of the stack and the digest it was pinned to.
    pub images: Vec<PinnedImage>,
    pub warnings: Vec<String>,
}

/// One service's planned action.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceChange {
    pub service: String,
    #[serde(flatten)]
    pub change: Change,
}

/// What a deploy would do (`zenkoctl plan`) — computed against the engine, changes nothing.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub stack: String,
    /// Other Zenko stacks that would be torn down first.
    pub teardown: Vec<String>,
    pub networks_to_create: Vec<String>,
    pub secrets_to_create: Vec<String>,
    pub configs_to_create: Vec<String>,
    pub services: Vec<ServiceChange>,
    /// Services of the stack that the file no longer has.
    pub services_to_remove: Vec<String>,
}

impl PlanReport {
    pub fn changes_nothing(&self) -> bool {
        self.teardown.is_empty()
            && self.networks_to_create.is_empty()
            && self.secrets_to_create.is_empty()
            && self.configs_to_create.is_empty()
            && self.services_to_remove.is_empty()
            && self.services.iter().all(|s| s.change == Change::Unchanged)
    }
}

/// What a deploy did.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    pub stack: String,
    pub preflight: Preflight,
    pub torn_down: Vec<Removal>,
    pub networks_created: Vec<String>,
    pub secrets_created: Vec<String>,
    pub configs_created: Vec<String>,
    pub services: Vec<ServiceChange>,
    pub services_removed: Vec<String>,
    pub superseded_removed: Vec<String>,
    pub outcome: Outcome,
    /// With `--rollback` after a failure: what was undone.
    pub rollback: Option<RollbackReport>,
    pub warnings: Vec<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RollbackReport {
    pub rolled_back: Vec<String>,
    pub removed: Vec<String>,
    pub problems: Vec<String>,
}

impl DeployReport {
    pub fn exit(&self) -> Exit {
        match (&self.outcome, &self.rollback) {
            (Outcome::Converged, _) => Exit::Ok,
            (_, Some(r)) if r.problems.is_empty() => Exit::RolledBack,
            (Outcome::TimedOut { .. }, _) => Exit::Timeout,
            (Outcome::Failed { .. }, _) => Exit::DeployFailed,
        }
    }
}

/// Preflight checks and the storage label; pins the plan's images to their digests.
pub async fn preflight(
    engine: &Engine,
    plan: &mut StackPlan,
    node: Option<&str>,
    resolve: Option<Option<&std::path::Path>>,
    progress: Progress<'_>,
) -> anyhow::Result<Preflight> {
    engine.require_manager().await?;
    let mut warnings = Vec::new();
    let label = nodes::label_storage(engine, node).await?;
    let storage = label.node.clone();
    if label.changed {
        progress(format!(
            "labelled {} {}={}",
            storage.display(),
            nodes::STORAGE_LABEL,
            nodes::STORAGE_VALUE
        ));
    }
    for from in &label.moved_from {
        let w = format!(
            "the storage label moved from {} to {}: data in volumes on {} stays there",
            from.display(),
            storage.display(),
            from.hostname
        );
        progress(w.clone());
        warnings.push(w);
    }
    if !storage.is_ready_and_active() {
        return Err(coded(
            Exit::DeployFailed,
            anyhow!(
                "the storage node {} is {} and {}: it must be ready and active; bring it back, \
                 or move the storage label to another node (deploy --node NODE, or zenkoctl \
                 node label NODE): the data in its volumes stays on {}",
                storage.display(),
                storage.state,
                storage.availability,
                storage.hostname
            ),
        ));
    }
    let all = nodes::list(engine).await?;
    if all.len() < 2 {
        warnings.push(format!(
            "the swarm has {} node(s); Zenko's design expects at least two (a storage node and \
             a front node)",
            all.len()
        ));
    }
    // Images: pinned to the digest their registry serves, so that every node runs the same
    // bits; an image only on this engine stays unpinned (a warning), one nowhere is an error.
    // `resolve` is `None` for `--resolve-image never`, else the docker config to use.
    let images = match resolve {
        Some(docker_config) => pin::pin_images(engine, plan, docker_config).await?,
        None => Vec::new(),
    };
    for i in &images {
        match (&i.pinned, &i.warning) {
            (_, Some(w)) => {
                progress(format!("warning: {w}"));
                warnings.push(w.clone());
            }
            (Some(p), None) => progress(format!("image {} pinned to {p}", i.image)),
            (None, None) => {}
        }
    }
    Ok(Preflight {
        storage_node: storage,
        label_changed: label.changed,
        label_moved_from: label.moved_from.iter().map(NodeInfo::display).collect(),
        nodes: all.len(),
        images,
        warnings,
    })
}

/// Exact-name secret/config lookup: the engine's name filter matches prefixes.
async fn secret_id(engine: &Engine, name: &str) -> anyhow::Result<Option<String>> {
    let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
    let found = engine
        .docker
        .list_secrets(Some(ListSecretsOptions {
            filters: Some(filters),
        }))
        .await
        .engine(engine, format_args!("looking up secret {name}"))?;
    Ok(
        stacks::exact(&found, name, |s| s.spec.as_ref()?.name.as_deref())
            .and_then(|s| s.id.clone()),
    )
}

async fn config_id(engine: &Engine, name: &str) -> anyhow::Result<Option<String>> {
    let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
    let found = engine
        .docker
        .list_configs(Some(bollard::query_parameters::ListConfigsOptions {
            filters: Some(filters),
        }))
        .await
        .engine(engine, format_args!("looking up config {name}"))?;
    Ok(
        stacks::exact(&found, name, |s| s.spec.as_ref()?.name.as_deref())
            .and_then(|s| s.id.clone()),
    )
}

/// The engine stores network attachments by network ID; the converted spec names them. Maps
/// the IDs back to names so the two compare.
async fn with_network_names(engine: &Engine, mut spec: ServiceSpec) -> anyhow::Result<ServiceSpec> {
    let Some(nets) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.networks.as_mut())
    else {
        return Ok(spec);
    };
    let all = engine
        .docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .engine(engine, "listing networks")?;
    let names: HashMap<String, String> = all
        .into_iter()
        .filter_map(|n| Some((n.id?, n.name?)))
        .collect();
    for n in nets.iter_mut() {
        if let Some(name) = n.target.as_ref().and_then(|t| names.get(t)) {
            n.target = Some(name.clone());
        }
    }
    Ok(spec)
}

fn service_name(s: &Service) -> String {
    s.spec
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_default()
}

/// Refuses a same-named stack that zenkoctl did not deploy.
fn check_ours(stack: &str, existing: &stacks::StackObjects) -> anyhow::Result<()> {
    for s in &existing.services {
        let managed = s
            .spec
            .as_ref()
            .and_then(|s| s.labels.as_ref())
            .and_then(|l| l.get(MANAGED_LABEL))
            .map(String::as_str)
            == Some(MANAGED_VALUE);
        if !managed {
            return Err(coded(
                Exit::DeployFailed,
                anyhow!(
                    "stack {stack} already exists and was not deployed by zenkoctl (service {} has \
                     no {MANAGED_LABEL} label); choose another stack name or remove it",
                    service_name(s)
                ),
            ));
        }
    }
    Ok(())
}

/// What a deploy of `plan` would change.
pub async fn plan_changes(engine: &Engine, plan: &StackPlan) -> anyhow::Result<PlanReport> {
    let stack = &plan.stack;
    let others: Vec<String> = stacks::zenko_stacks(engine)
        .await?
        .into_iter()
        .filter(|s| s != stack)
        .collect();
    let existing = stacks::objects(engine, stack).await?;
    check_ours(stack, &existing)?;
    let have_networks: BTreeSet<String> = existing
        .networks
        .iter()
        .filter_map(|n| n.name.clone())
        .collect();
    let networks_to_create = plan
        .networks
        .iter()
        .filter(|n| !n.external && !have_networks.contains(&n.request.name))
        .map(|n| n.request.name.clone())
        .collect();
    let mut secrets_to_create = Vec::new();
    for s in plan.secrets.iter().filter(|s| !s.external) {
        if secret_id(engine, &s.name).await?.is_none() {
            secrets_to_create.push(s.name.clone());
        }
    }
    let mut configs_to_create = Vec::new();
    for c in plan.configs.iter().filter(|s| !s.external) {
        if config_id(engine, &c.name).await?.is_none() {
            configs_to_create.push(c.name.clone());
        }
    }
    let by_name: HashMap<String, &Service> = existing
        .services
        .iter()
        .map(|s| (service_name(s), s))
        .collect();
    let mut services = Vec::new();
    for s in &plan.services {
        let change = match by_name.get(&s.name).and_then(|e| e.spec.clone()) {
            None => Change::Create,
            Some(current) => diff::compare(&s.spec, &with_network_names(engine, current).await?),
        };
        services.push(ServiceChange {
            service: s.name.clone(),
            change,
        });
    }
    let wanted: BTreeSet<&String> = plan.services.iter().map(|s| &s.name).collect();
    let services_to_remove = by_name
        .keys()
        .filter(|n| !wanted.contains(n))
        .cloned()
        .collect();
    Ok(PlanReport {
        stack: stack.clone(),
        teardown: others,
        networks_to_create,
        secrets_to_create,
        configs_to_create,
        services,
        services_to_remove,
    })
}

/// Fills the secret and config IDs into a service spec (they exist by now).
async fn resolve_ids(engine: &Engine, spec: &mut ServiceSpec) -> anyhow::Result<()> {
    let name = spec.name.clone().unwrap_or_default();
    let Some(cs) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    else {
        return Ok(());
    };
    for s in cs.secrets.iter_mut().flatten() {
        let sname = s.secret_name.clone().unwrap_or_default();
        s.secret_id = Some(secret_id(engine, &sname).await?.ok_or_else(|| {
            coded(
                Exit::DeployFailed,
                anyhow!("service {name}: secret {sname} does not exist"),
            )
        })?);
    }
    for c in cs.configs.iter_mut().flatten() {
        let cname = c.config_name.clone().unwrap_or_default();
        c.config_id = Some(config_id(engine, &cname).await?.ok_or_else(|| {
            coded(
                Exit::DeployFailed,
                anyhow!("service {name}: config {cname} does not exist"),
            )
        })?);
    }
    Ok(())
}

/// Deploys `plan` (already converted and validated).
pub async fn deploy(
    engine: &Engine,
    plan: &StackPlan,
    opts: &DeployOptions,
    progress: Progress<'_>,
) -> anyhow::Result<DeployReport> {
    let started = Instant::now();
    let stack = plan.stack.clone();
    progress(format!(
        "preflight for stack {stack} on {} (API {})",
        engine.host, engine.api
    ));
    let mut plan = plan.clone();
    let plan = &mut plan;
    let pre = preflight(
        engine,
        plan,
        opts.node.as_deref(),
        opts.resolve_images.then_some(opts.docker_config.as_deref()),
        progress,
    )
    .await?;
    let mut warnings = pre.warnings.clone();
    // A same-named stack that zenkoctl did not deploy is refused before anything is removed.
    check_ours(&stack, &stacks::objects(engine, &stack).await?)?;

    // One Zenko stack at a time: remove the others, and wait until they are gone.
    let mut torn_down = Vec::new();
    for other in stacks::zenko_stacks(engine).await? {
        if other == stack {
            continue;
        }
        progress(format!("tearing down the earlier Zenko stack {other}"));
        let r =
            teardown::remove_stack(engine, &other, false, opts.teardown_timeout, progress).await?;
        progress(format!("stack {other} is gone ({:.1}s)", r.seconds));
        torn_down.push(r);
    }

    let changes = plan_changes(engine, plan).await?;
    let mut created = Created::default();

    // Networks.
    for net in &plan.networks {
        if net.external {
            let found = engine
                .docker
                .inspect_network(
                    &net.request.name,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await;
            match found {
                Ok(n) if n.scope.as_deref() == Some("swarm") => continue,
                Ok(_) => {
                    return Err(coded(
                        Exit::DeployFailed,
                        anyhow!("external network {} is not swarm-scoped", net.request.name),
                    ))
                }
                Err(e) if is_not_found(&e) => {
                    return Err(coded(
                        Exit::DeployFailed,
                        anyhow!("external network {} does not exist", net.request.name),
                    ))
                }
                Err(e) => {
                    return Err(
                        engine.error(e, format_args!("inspecting network {}", net.request.name))
                    )
                }
            }
        }
        if !changes.networks_to_create.contains(&net.request.name) {
            continue;
        }
        progress(format!("creating network {}", net.request.name));
        engine
            .docker
            .create_network(net.request.clone())
            .await
            .engine(
                engine,
                format_args!("creating network {}", net.request.name),
            )?;
        created.networks.push(net.request.name.clone());
    }
    // Secrets and configs (content-hash names: an existing one has the same content).
    for s in &plan.secrets {
        if s.external {
            if secret_id(engine, &s.name).await?.is_none() {
                return Err(coded(
                    Exit::DeployFailed,
                    anyhow!("external secret {} does not exist", s.name),
                ));
            }
            continue;
        }
        if changes.secrets_to_create.contains(&s.name) {
            progress(format!("creating secret {}", s.name));
            engine
                .docker
                .create_secret(s.secret_spec())
                .await
                .engine(engine, format_args!("creating secret {}", s.name))?;
            created.secrets.push(s.name.clone());
        }
    }
    for c in &plan.configs {
        if c.external {
            if config_id(engine, &c.name).await?.is_none() {
                return Err(coded(
                    Exit::DeployFailed,
                    anyhow!("external config {} does not exist", c.name),
                ));
            }
            continue;
        }
        if changes.configs_to_create.contains(&c.name) {
            progress(format!("creating config {}", c.name));
            engine
                .docker
                .create_config(c.config_spec())
                .await
                .engine(engine, format_args!("creating config {}", c.name))?;
            created.configs.push(c.name.clone());
        }
    }

    // Services, in tiers (Swarm ignores depends_on): first what runs on the storage node (the
    // module, its database), waited for until healthy; then the rest (the S3 front, the load
    // balancer), which need the first tier to answer.
    let (storage_tier, front_tier): (Vec<&ServicePlan>, Vec<&ServicePlan>) =
        plan.services.iter().partition(|s| on_storage_node(&s.spec));
    let mut services = Vec::new();
    let mut outcome = Outcome::Converged;
    for tier in [storage_tier, front_tier] {
        if tier.is_empty() {
            continue;
        }
        let mut targets: Vec<Target> = Vec::new();
        for sp in tier {
            let mut spec = sp.spec.clone();
            resolve_ids(engine, &mut spec).await?;
            let credentials = if opts.with_registry_auth {
                let image = spec
                    .task_template
                    .as_ref()
                    .and_then(|t| t.container_spec.as_ref())
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default();
                pin::registry_auth_for(&image, opts.docker_config.as_deref())?
            } else {
                None
            };
            let change = changes
                .services
                .iter()
                .find(|c| c.service == sp.name)
                .map(|c| c.change.clone())
                .unwrap_or(Change::Create);
            let change = match change {
                Change::Create => {
                    progress(format!("creating service {}", sp.name));
                    let id = create_service(engine, &sp.name, spec, credentials.clone()).await?;
                    created.services.push((sp.name.clone(), id.clone()));
                    targets.push((sp.name.clone(), id));
                    Change::Create
                }
                Change::Recreate { reason } => {
                    progress(format!("recreating service {} ({reason})", sp.name));
                    remove_services(
                        engine,
                        &stack,
                        std::slice::from_ref(&sp.name),
                        opts.teardown_timeout,
                    )
                    .await?;
                    let id = create_service(engine, &sp.name, spec, credentials.clone()).await?;
                    created.services.push((sp.name.clone(), id.clone()));
                    targets.push((sp.name.clone(), id));
                    Change::Recreate { reason }
                }
                Change::Unchanged | Change::Update { .. } => {
                    let (id, change) = update_service(
                        engine,
                        &sp.name,
                        spec,
                        credentials.clone(),
                        progress,
                        &mut warnings,
                    )
                    .await?;
                    if matches!(change, Change::Update { .. }) {
                        created.updated.push((sp.name.clone(), id.clone()));
                    }
                    targets.push((sp.name.clone(), id));
                    change
                }
            };
            services.push(ServiceChange {
                service: sp.name.clone(),
                change,
            });
        }
        if !opts.detach {
            progress(format!(
                "waiting for {} service(s) to converge: {}",
                targets.len(),
                targets
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            outcome = converge::wait(engine, &targets, &opts.wait, progress).await?;
            if !matches!(outcome, Outcome::Converged) {
                break;
            }
        }
    }
    let mut services_removed = Vec::new();
    if !changes.services_to_remove.is_empty() {
        progress(format!(
            "removing services no longer in the stack: {}",
            changes.services_to_remove.join(", ")
        ));
        remove_services(
            engine,
            &stack,
            &changes.services_to_remove,
            opts.teardown_timeout,
        )
        .await?;
        services_removed = changes.services_to_remove.clone();
    }

    let mut rollback = None;
    let mut superseded_removed = Vec::new();
    if matches!(outcome, Outcome::Converged) {
        superseded_removed = remove_superseded(engine, plan, &mut warnings).await?;
    } else if opts.rollback {
        progress("deploy failed: rolling back".into());
        rollback = Some(roll_back(engine, &stack, &created, opts, progress).await);
    }
    Ok(DeployReport {
        stack,
        preflight: pre,
        torn_down,
        networks_created: created.networks,
        secrets_created: created.secrets,
        configs_created: created.configs,
        services,
        services_removed,
        superseded_removed,
        outcome,
        rollback,
        warnings,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// True for a service constrained to the storage node.
fn on_storage_node(spec: &ServiceSpec) -> bool {
    spec.task_template
        .as_ref()
        .and_then(|t| t.placement.as_ref())
        .and_then(|p| p.constraints.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.contains(nodes::STORAGE_LABEL)))
}

/// What this deploy created or updated (for a rollback).
#[derive(Debug, Default)]
struct Created {
    networks: Vec<String>,
    secrets: Vec<String>,
    configs: Vec<String>,
    services: Vec<(String, String)>,
    updated: Vec<(String, String)>,
}

/// Creates a service; `credentials` go along as `X-Registry-Auth` (made URL-safe by the
/// engine client's request modifier) for the nodes to pull with.
async fn create_service(
    engine: &Engine,
    name: &str,
    spec: ServiceSpec,
    credentials: Option<bollard::auth::DockerCredentials>,
) -> anyhow::Result<String> {
    match engine.docker.create_service(spec, credentials).await {
        Ok(r) => {
            for w in r.warnings.unwrap_or_default() {
                tracing::warn!("service {name}: {w}");
            }
            Ok(r.id.unwrap_or_default())
        }
        Err(e) if super::status_of(&e) == Some(409) => Err(coded(
            Exit::DeployFailed,
            anyhow!(
                "service {name} already exists outside the stack ({}); remove it or choose another stack name",
                server_message(&e)
            ),
        )),
        Err(e) => Err(engine.error(e, format_args!("creating service {name}"))),
    }
}

/// Updates a service in place when its spec changed: each attempt inspects the service afresh,
/// compares, keeps its `ForceUpdate`, and sends the whole spec with the version just read.
async fn update_service(
    engine: &Engine,
    name: &str,
    desired: ServiceSpec,
    credentials: Option<bollard::auth::DockerCredentials>,
    progress: Progress<'_>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<(String, Change)> {
    let result = std::sync::Mutex::new((String::new(), Change::Unchanged, Vec::<String>::new()));
    let names = engine
        .docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .engine(engine, "listing networks")?;
    let names: HashMap<String, String> = names
        .into_iter()
        .filter_map(|n| Some((n.id?, n.name?)))
        .collect();
    retry_out_of_sequence("service update", || async {
        let current = engine
            .docker
            .inspect_service(name, None::<InspectServiceOptions>)
            .await?;
        let id = current.id.clone().unwrap_or_default();
        let current_spec = current.spec.clone().unwrap_or_default();
        let mut named = current_spec.clone();
        for n in named
            .task_template
            .as_mut()
            .and_then(|t| t.networks.as_mut())
            .into_iter()
            .flatten()
        {
            if let Some(name) = n.target.as_ref().and_then(|t| names.get(t)) {
                n.target = Some(name.clone());
            }
        }
        let change = diff::compare(&desired, &named);
        *result.lock().unwrap() = (id.clone(), change.clone(), Vec::new());
        if change == Change::Unchanged {
            return Ok(());
        }
        let mut spec = desired.clone();
        if let (Some(t), Some(ct)) = (
            spec.task_template.as_mut(),
            current_spec.task_template.as_ref(),
        ) {
            t.force_update = ct.force_update;
        }
        let version = current.version.and_then(|v| v.index).unwrap_or(0);
        let version = i32::try_from(version).map_err(|_| {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 0,
                message: format!(
                    "service version index {version} does not fit the API client's i32"
                ),
            }
        })?;
        let response = engine
            .docker
            .update_service(
                &id,
                spec,
                UpdateServiceOptions {
                    version,
                    ..Default::default()
                },
                credentials.clone(),
            )
            .await?;
        result.lock().unwrap().2 = response.warnings.unwrap_or_default();
        Ok(())
    })
    .await
    .engine(engine, format_args!("updating service {name}"))?;
    let (id, change, ws) = result.into_inner().unwrap();
    match &change {
        Change::Unchanged => progress(format!("service {name} is unchanged")),
        Change::Update { fields } => progress(format!(
            "updated service {name}{}",
            if fields.is_empty() {
                String::new()
            } else {
                format!(" ({})", fields.join(", "))
            }
        )),
        _ => {}
    }
    for w in ws {
        warnings.push(format!("service {name}: {w}"));
    }
    Ok((id, change))
}

/// Removes services of `stack` by name and waits until they and their tasks are gone (a task
/// of a removed service keeps its service ID, which no live service has any more).
async fn remove_services(
    engine: &Engine,
    stack: &str,
    names: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    for name in names {
        match engine.docker.delete_service(name).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(engine.error(e, format_args!("removing service {name}"))),
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let (_, down) = stacks::node_names(engine).await?;
        let objects = stacks::objects(engine, stack).await?;
        let live: BTreeSet<String> = objects
            .services
            .iter()
            .filter_map(|s| s.id.clone())
            .collect();
        let names_left = objects.service_names().iter().any(|n| names.contains(n));
        let orphans = stacks::tasks(engine, stack)
            .await?
            .into_iter()
            .filter(|t| t.node_id.as_ref().is_none_or(|n| !down.contains(n)))
            .filter(|t| !live.contains(t.service_id.as_deref().unwrap_or_default()))
            .count();
        if !names_left && orphans == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(coded(
                Exit::Timeout,
                anyhow!(
                    "services {} are not gone after {}s",
                    names.join(", "),
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes the stack's secrets and configs that the plan no longer uses (earlier versions).
async fn remove_superseded(
    engine: &Engine,
    plan: &StackPlan,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Vec<String>> {
    let objects = stacks::objects(engine, &plan.stack).await?;
    let wanted_secrets: BTreeSet<&String> = plan.secrets.iter().map(|s| &s.name).collect();
    let wanted_configs: BTreeSet<&String> = plan.configs.iter().map(|s| &s.name).collect();
    let mut removed = Vec::new();
    for s in &objects.secrets {
        let name = s
            .spec
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_default();
        if wanted_secrets.contains(&name) {
            continue;
        }
        match engine
            .docker
            .delete_secret(s.id.as_deref().unwrap_or_default())
            .await
        {
            Ok(()) => removed.push(name),
            Err(e) if is_not_found(&e) => {}
            Err(e) => warnings.push(format!(
                "could not remove the superseded secret {name}: {}",
                server_message(&e)
            )),
        }
    }
    for c in &objects.configs {
        let name = c
            .spec
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_default();
        if wanted_configs.contains(&name) {
            continue;
        }
        match engine
            .docker
            .delete_config(c.id.as_deref().unwrap_or_default())
            .await
        {
            Ok(()) => removed.push(name),
            Err(e) if is_not_found(&e) => {}
            Err(e) => warnings.push(format!(
                "could not remove the superseded config {name}: {}",
                server_message(&e)
            )),
        }
    }
    Ok(removed)
}

/// Undoes a failed deploy: Swarm's rollback (to `PreviousSpec`) for updated services, removal
/// of created services, then of created secrets, configs and networks.
async fn roll_back(
    engine: &Engine,
    stack: &str,
    created: &Created,
    opts: &DeployOptions,
    progress: Progress<'_>,
) -> RollbackReport {
    let mut report = RollbackReport::default();
    for (name, id) in &created.updated {
        // Swarm may have rolled back already (update_config failure_action: rollback): a
        // second rollback would go back to the failed spec.
        if let Ok(current) = engine
            .docker
            .inspect_service(id, None::<InspectServiceOptions>)
            .await
        {
            use bollard::models::ServiceUpdateStatusStateEnum as U;
            let state = current.update_status.and_then(|u| u.state);
            if matches!(state, Some(U::ROLLBACK_STARTED | U::ROLLBACK_COMPLETED)) {
                progress(format!(
                    "Swarm already rolled service {name} back to its previous spec"
                ));
                report.rolled_back.push(name.clone());
                continue;
            }
        }
        let r = retry_out_of_sequence("service rollback", || async {
            let current = engine
                .docker
                .inspect_service(id, None::<InspectServiceOptions>)
                .await?;
            let version = current.version.and_then(|v| v.index).unwrap_or(0) as i32;
            engine
                .docker
                .update_service(
                    id,
                    current.spec.unwrap_or_default(),
                    UpdateServiceOptions {
                        version,
                        rollback: Some("previous".into()),
                        ..Default::default()
                    },
                    None,
                )
                .await
        })
        .await;
        match r {
            Ok(_) => {
                progress(format!("rolled service {name} back to its previous spec"));
                report.rolled_back.push(name.clone());
            }
            Err(e) => report
                .problems
                .push(format!("rolling back {name}: {}", server_message(&e))),
        }
    }
    // Wait until the rolled-back services run their previous spec again.
    let deadline = Instant::now() + opts.wait.timeout;
    for (name, id) in created
        .updated
        .iter()
        .filter(|(n, _)| report.rolled_back.contains(n))
    {
        loop {
            let settled = async {
                let service = engine
                    .docker
                    .inspect_service(id, None::<InspectServiceOptions>)
                    .await
                    .ok()?;
                use bollard::models::ServiceUpdateStatusStateEnum as U;
                let state = service.update_status.as_ref().and_then(|u| u.state);
                if matches!(state, Some(U::ROLLBACK_STARTED)) {
                    return Some(false);
                }
                let tasks = stacks::current_tasks(engine, id).await.ok()?;
                let (_, down) = stacks::node_names(engine).await.ok()?;
                Some(converge::judge(&service, &tasks, &down).converged)
            }
            .await;
            if settled == Some(true) {
                break;
            }
            if Instant::now() > deadline {
                report.problems.push(format!(
                    "service {name} did not converge after its rollback"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let names: Vec<String> = created.services.iter().map(|(n, _)| n.clone()).collect();
    if !names.is_empty() {
        progress(format!(
            "removing services this deploy created: {}",
            names.join(", ")
        ));
        match remove_services(engine, stack, &names, opts.teardown_timeout).await {
            Ok(()) => report.removed.extend(names),
            Err(e) => report.problems.push(format!("{e:#}")),
        }
    }
    for name in &created.secrets {
        match engine.docker.delete_secret(name).await {
            Ok(()) => report.removed.push(name.clone()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => report
                .problems
                .push(format!("removing secret {name}: {}", server_message(&e))),
        }
    }
    for name in &created.configs {
        match engine.docker.delete_config(name).await {
            Ok(()) => report.removed.push(name.clone()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => report
                .problems
                .push(format!("removing config {name}: {}", server_message(&e))),
        }
    }
    // Networks: only once no service uses them (created services are gone by now).
    for name in &created.networks {
        let still_used = stacks::objects(engine, stack)
            .await
            .map(|o| {
                o.services.iter().any(|s| {
                    s.spec
                        .as_ref()
                        .and_then(|s| s.task_template.as_ref())
                        .and_then(|t| t.networks.as_ref())
                        .is_some_and(|n| n.iter().any(|a| a.target.as_deref() == Some(name)))
                })
            })
            .unwrap_or(true);
        if still_used {
            continue;
        }
        let deadline = Instant::now() + opts.teardown_timeout;
        loop {
            match engine.docker.remove_network(name).await {
                Ok(()) => {
                    report.removed.push(name.clone());
                    break;
                }
                Err(e) if is_not_found(&e) => break,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => {
                    report
                        .problems
                        .push(format!("removing network {name}: {}", server_message(&e)));
                    break;
                }
            }
        }
    }
    report
}
