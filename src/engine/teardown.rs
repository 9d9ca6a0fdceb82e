//! Removing a stack and waiting until it is really gone.
//!
//! `docker stack rm` returns while tasks are still stopping and before its networks are removed,
//! so an immediate redeploy finds the old network, skips creating it, and then fails when the
//! removal completes (`network zenko_backend not found`). Here the order is:
//! services -> wait until every task of the stack has stopped (tasks on down nodes excepted:
//! they only stop when the node returns) -> secrets and configs -> networks -> wait until none
//! of them is listed -> optionally volumes (on this engine's node).
//!
//! A task has stopped once its node reports a terminal state (shutdown, complete, failed...):
//! by then the node has removed the container from the overlay and dropped its copy of the
//! network (observed on the lab: the node's network goes ~0.3 s before the report). Waiting
//! for Swarm's task reaper to delete the task as well would add a reaper tick (~0.25 s) for
//! nothing a redeploy needs.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use bollard::query_parameters::{ListVolumesOptions, RemoveVolumeOptions};
use serde::Serialize;

use super::stacks::{self, StackObjects};
use super::{is_not_found, label_filter, server_message, Engine, EngineResult, Progress};
use crate::convert::{MANAGED_LABEL, MANAGED_VALUE, NAMESPACE_LABEL};
use crate::output::{coded, Exit};

const POLL: Duration = Duration::from_millis(100);

/// What was removed from one stack.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Removal {
    pub stack: String,
    pub services: Vec<String>,
    pub networks: Vec<String>,
    pub secrets: Vec<String>,
    pub configs: Vec<String>,
    pub volumes: Vec<String>,
    /// Volumes that may remain on other nodes (this engine can only remove its own).
    pub volumes_elsewhere: Vec<String>,
    /// Tasks not waited for because their node is down (Swarm removes them when it returns),
    /// one line per node.
    pub left_on_down_nodes: Vec<String>,
    pub seconds: f64,
}

/// Removes stack `stack` (which must be a Zenko stack) and waits until it is gone.
pub async fn remove_stack(
    engine: &Engine,
    stack: &str,
    volumes: bool,
    timeout: Duration,
    progress: Progress<'_>,
) -> anyhow::Result<Removal> {
    let started = Instant::now();
    let deadline = started + timeout;
    let objects = stacks::objects(engine, stack).await?;
    refuse_foreign(stack, &objects)?;
    let mut removal = Removal {
        stack: stack.to_string(),
        services: objects.service_names(),
        networks: objects
            .networks
            .iter()
            .filter_map(|n| n.name.clone())
            .collect(),
        secrets: objects
            .secrets
            .iter()
            .filter_map(|s| s.spec.as_ref().and_then(|s| s.name.clone()))
            .collect(),
        configs: objects
            .configs
            .iter()
            .filter_map(|s| s.spec.as_ref().and_then(|s| s.name.clone()))
            .collect(),
        ..Default::default()
    };
    let info = engine.docker.info().await.engine(engine, "reading /info")?;
    let this_node = info
        .swarm
        .as_ref()
        .and_then(|s| s.node_id.clone())
        .unwrap_or_default();
    let mut task_nodes: std::collections::BTreeSet<String> = Default::default();

    // 1. Services.
    if !objects.services.is_empty() {
        progress(format!(
            "removing {} service(s) of stack {stack}: {}",
            objects.services.len(),
            removal.services.join(", ")
        ));
    }
    for service in &objects.services {
        let id = service.id.clone().unwrap_or_default();
        match engine.docker.delete_service(&id).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(engine.error(e, format_args!("removing service {id}"))),
        }
    }

    // 2. Tasks: wait until the reaper has deleted them (their containers are stopped).
    let mut announced = false;
    loop {
        let (nodes, down) = stacks::node_names(engine).await?;
        let hostname = |id: &str| {
            nodes
                .get(id)
                .map(|n| n.hostname.clone())
                .unwrap_or_else(|| super::short_id(id).to_string())
        };
        let tasks = stacks::tasks(engine, stack).await?;
        for t in &tasks {
            if let Some(n) = &t.node_id {
                task_nodes.insert(n.clone());
            }
        }
        let left: Vec<_> = tasks
            .iter()
            .filter(|t| t.node_id.as_ref().is_none_or(|n| !down.contains(n)))
            .filter(|t| !stopped(t))
            .collect();
        if left.is_empty() {
            let mut on_down: std::collections::BTreeMap<String, usize> = Default::default();
            for t in &tasks {
                if let Some(n) = t.node_id.as_ref().filter(|n| down.contains(*n)) {
                    *on_down.entry(hostname(n)).or_default() += 1;
                }
            }
            for (node, n) in on_down {
                let line = format!(
                    "{n} task(s) of stack {stack} on node {node}, which is down: not waited for \
                     (Swarm removes them, and their containers stop, when the node returns)"
                );
                progress(line.clone());
                removal.left_on_down_nodes.push(line);
            }
            break;
        }
        if !announced {
            progress(format!(
                "waiting for {} task(s) of stack {stack} to stop",
                left.len()
            ));
            announced = true;
        }
        if Instant::now() > deadline {
            // Name the nodes that hold them: a node that stopped answering but is not marked
            // down yet, or one whose engine cannot stop its containers.
            let mut by_node: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for t in &left {
                let node = t
                    .node_id
                    .as_deref()
                    .map(|n| {
                        let state = nodes.get(n).map(|i| i.state.clone()).unwrap_or_default();
                        format!("{} ({state})", hostname(n))
                    })
                    .unwrap_or_else(|| "no node (never scheduled)".into());
                by_node
                    .entry(node)
                    .or_default()
                    .push(super::short_id(t.id.as_deref().unwrap_or_default()).to_string());
            }
            let detail: Vec<String> = by_node
                .iter()
                .map(|(node, ids)| format!("on node {node}: {}", ids.join(", ")))
                .collect();
            return Err(coded(
                Exit::Timeout,
                anyhow!(
                    "stack {stack}: {} task(s) still present after {}s, {}",
                    left.len(),
                    timeout.as_secs(),
                    detail.join("; ")
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
    }

    // 3. Secrets and configs, then 4. networks; each retried while still in use (a task that
    // has just been reaped may still hold a reference for an instant).
    let mut remaining = objects.clone();
    remaining.services.clear();
    if !remaining.is_empty() {
        progress(format!(
            "removing stack {stack}: {} secret(s), {} config(s), {} network(s)",
            remaining.secrets.len(),
            remaining.configs.len(),
            remaining.networks.len()
        ));
    }
    loop {
        let mut problems: Vec<String> = Vec::new();
        for s in &remaining.secrets {
            let id = s.id.clone().unwrap_or_default();
            if let Err(e) = engine.docker.delete_secret(&id).await {
                if !is_not_found(&e) {
                    problems.push(format!("secret {id}: {}", server_message(&e)));
                }
            }
        }
        for c in &remaining.configs {
            let id = c.id.clone().unwrap_or_default();
            if let Err(e) = engine.docker.delete_config(&id).await {
                if !is_not_found(&e) {
                    problems.push(format!("config {id}: {}", server_message(&e)));
                }
            }
        }
        for n in &remaining.networks {
            let id = n.id.clone().unwrap_or_default();
            if let Err(e) = engine.docker.remove_network(&id).await {
                if !is_not_found(&e) {
                    problems.push(format!(
                        "network {}: {}",
                        n.name.clone().unwrap_or(id),
                        server_message(&e)
                    ));
                }
            }
        }
        // 5. Gone means: no longer listed.
        let now = stacks::objects(engine, stack).await?;
        if now.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(coded(
                Exit::Timeout,
                anyhow!(
                    "stack {stack} is not gone after {}s: {}",
                    timeout.as_secs(),
                    if problems.is_empty() {
                        describe(&now)
                    } else {
                        problems.join("; ")
                    }
                ),
            ));
        }
        remaining = now;
        tokio::time::sleep(POLL).await;
    }

    // 6. Volumes, on this engine's node only.
    if volumes {
        removal.volumes = remove_volumes(engine, stack, deadline).await?;
        for node in task_nodes.iter().filter(|n| **n != this_node) {
            removal.volumes_elsewhere.push(format!(
                "volumes of stack {stack} on node {} (remove them through that node's engine)",
                super::short_id(node)
            ));
        }
    }
    removal.seconds = started.elapsed().as_secs_f64();
    Ok(removal)
}

/// True once the task's node reported it stopped (or it never got to run).
fn stopped(task: &bollard::models::Task) -> bool {
    use bollard::models::TaskState as S;
    matches!(
        task.status.as_ref().and_then(|s| s.state),
        Some(S::SHUTDOWN | S::COMPLETE | S::FAILED | S::REJECTED | S::REMOVE | S::ORPHANED)
    ) || (task.node_id.is_none()
        && task
            .desired_state
            .is_some_and(|d| d != S::RUNNING && d != S::READY))
}

/// Refuses to remove a stack that zenkoctl does not manage (objects without the marker).
fn refuse_foreign(stack: &str, objects: &StackObjects) -> anyhow::Result<()> {
    let managed = |labels: Option<&std::collections::HashMap<String, String>>| {
        labels
            .and_then(|l| l.get(MANAGED_LABEL))
            .map(String::as_str)
            == Some(MANAGED_VALUE)
    };
    let foreign = objects
        .services
        .iter()
        .any(|s| !managed(s.spec.as_ref().and_then(|s| s.labels.as_ref())));
    if foreign {
        return Err(coded(
            Exit::InvalidInput,
            anyhow!(
                "stack {stack} has services that zenkoctl did not deploy (no {MANAGED_LABEL}={MANAGED_VALUE} \
                 label); remove it with `docker stack rm {stack}`"
            ),
        ));
    }
    Ok(())
}

fn describe(objects: &StackObjects) -> String {
    let mut parts = Vec::new();
    if !objects.services.is_empty() {
        parts.push(format!("services {}", objects.service_names().join(", ")));
    }
    let names: Vec<String> = objects
        .networks
        .iter()
        .filter_map(|n| n.name.clone())
        .collect();
    if !names.is_empty() {
        parts.push(format!("networks {}", names.join(", ")));
    }
    if !objects.secrets.is_empty() {
        parts.push(format!("{} secret(s)", objects.secrets.len()));
    }
    if !objects.configs.is_empty() {
        parts.push(format!("{} config(s)", objects.configs.len()));
    }
    parts.join(", ")
}

/// Removes the stack's volumes on this engine, retrying while a stopping container holds one.
async fn remove_volumes(
    engine: &Engine,
    stack: &str,
    deadline: Instant,
) -> anyhow::Result<Vec<String>> {
    let filters = label_filter(&[(NAMESPACE_LABEL, Some(stack))]);
    let listed = engine
        .docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(filters),
        }))
        .await
        .engine(engine, format_args!("listing the volumes of stack {stack}"))?;
    let names: Vec<String> = listed
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    for name in &names {
        loop {
            match engine
                .docker
                .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
                .await
            {
                Ok(()) => break,
                Err(e) if is_not_found(&e) => break,
                Err(e) if super::status_of(&e) == Some(409) && Instant::now() < deadline => {
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => return Err(engine.error(e, format_args!("removing volume {name}"))),
            }
        }
    }
    Ok(names)
}

/// What `zenkoctl teardown` did.
#[derive(Debug, Clone, Serialize)]
pub struct TeardownReport {
    pub removed: Vec<Removal>,
    /// True when there was nothing to remove.
    pub nothing: bool,
}

/// Removes `stack`, or every Zenko stack when `stack` is `None`.
pub async fn teardown(
    engine: &Engine,
    stack: Option<&str>,
    volumes: bool,
    timeout: Duration,
    progress: Progress<'_>,
) -> anyhow::Result<TeardownReport> {
    engine.require_manager().await?;
    let stacks = match stack {
        Some(s) => vec![s.to_string()],
        None => {
            let mut found = stacks::zenko_stacks(engine).await?;
            if volumes {
                // Stacks removed earlier without --volumes left their volumes behind.
                for s in stacks::zenko_volume_stacks(engine).await? {
                    if !found.contains(&s) {
                        found.push(s);
                    }
                }
            }
            found
        }
    };
    let mut removed = Vec::new();
    for s in &stacks {
        let objects = stacks::objects(engine, s).await?;
        let has_tasks = !stacks::tasks(engine, s).await?.is_empty();
        if objects.is_empty() && !has_tasks && !volumes {
            continue;
        }
        let r = remove_stack(engine, s, volumes, timeout, progress).await?;
        if !(r.services.is_empty()
            && r.networks.is_empty()
            && r.secrets.is_empty()
            && r.configs.is_empty()
            && r.volumes.is_empty())
            || has_tasks
        {
            removed.push(r);
        }
    }
    Ok(TeardownReport {
        nothing: removed.is_empty(),
        removed,
    })
}
