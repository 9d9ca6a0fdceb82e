//! Finding stacks and their objects by label, as `docker stack` does (the namespace label), and
//! Zenko stacks whatever their name (the `io.zenko.managed-by=zenkoctl` marker).

use std::collections::{BTreeMap, BTreeSet};

use bollard::models::{Config, Network, Secret, Service, Task};
use bollard::query_parameters::{
    ListConfigsOptions, ListNetworksOptions, ListSecretsOptions, ListServicesOptions,
    ListTasksOptions,
};

use super::{label_filter, Engine, EngineResult};
use crate::convert::{MANAGED_LABEL, MANAGED_VALUE, NAMESPACE_LABEL};

/// The objects of one stack.
#[derive(Debug, Clone, Default)]
pub struct StackObjects {
    pub services: Vec<Service>,
    pub networks: Vec<Network>,
    pub secrets: Vec<Secret>,
    pub configs: Vec<Config>,
}

impl StackObjects {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.networks.is_empty()
            && self.secrets.is_empty()
            && self.configs.is_empty()
    }

    pub fn service_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .services
            .iter()
            .filter_map(|s| s.spec.as_ref().and_then(|s| s.name.clone()))
            .collect();
        names.sort();
        names
    }
}

/// Lists the objects of stack `stack` (by its namespace label).
pub async fn objects(engine: &Engine, stack: &str) -> anyhow::Result<StackObjects> {
    let filters = label_filter(&[(NAMESPACE_LABEL, Some(stack))]);
    let d = &engine.docker;
    let services = d
        .list_services(Some(ListServicesOptions {
            filters: Some(filters.clone()),
            status: Some(true),
        }))
        .await
        .engine(
            engine,
            format_args!("listing the services of stack {stack}"),
        )?;
    let networks = d
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters.clone()),
        }))
        .await
        .engine(
            engine,
            format_args!("listing the networks of stack {stack}"),
        )?;
    let secrets = d
        .list_secrets(Some(ListSecretsOptions {
            filters: Some(filters.clone()),
        }))
        .await
        .engine(engine, format_args!("listing the secrets of stack {stack}"))?;
    let configs = d
        .list_configs(Some(ListConfigsOptions {
            filters: Some(filters.clone()),
        }))
        .await
        .engine(engine, format_args!("listing the configs of stack {stack}"))?;
    // Label filters on networks also match local networks of the same label on every node;
    // only swarm-scoped ones belong to a stack.
    let networks = networks
        .into_iter()
        .filter(|n| n.scope.as_deref() != Some("local"))
        .collect();
    Ok(StackObjects {
        services,
        networks,
        secrets,
        configs,
    })
}

/// The names of the Zenko stacks present (found by the marker on any of their objects).
pub async fn zenko_stacks(engine: &Engine) -> anyhow::Result<Vec<String>> {
    let filters = label_filter(&[
        (MANAGED_LABEL, Some(MANAGED_VALUE)),
        (NAMESPACE_LABEL, None),
    ]);
    let d = &engine.docker;
    let mut names = BTreeSet::new();
    let mut add = |labels: Option<&std::collections::HashMap<String, String>>| {
        if let Some(ns) = labels.and_then(|l| l.get(NAMESPACE_LABEL)) {
            names.insert(ns.clone());
        }
    };
    for s in d
        .list_services(Some(ListServicesOptions {
            filters: Some(filters.clone()),
            status: None,
        }))
        .await
        .engine(engine, "listing Zenko services")?
    {
        add(s.spec.as_ref().and_then(|s| s.labels.as_ref()));
    }
    for n in d
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters.clone()),
        }))
        .await
        .engine(engine, "listing Zenko networks")?
    {
        if n.scope.as_deref() != Some("local") {
            add(n.labels.as_ref());
        }
    }
    for s in d
        .list_secrets(Some(ListSecretsOptions {
            filters: Some(filters.clone()),
        }))
        .await
        .engine(engine, "listing Zenko secrets")?
    {
        add(s.spec.as_ref().and_then(|s| s.labels.as_ref()));
    }
    for c in d
        .list_configs(Some(ListConfigsOptions {
            filters: Some(filters.clone()),
        }))
        .await
        .engine(engine, "listing Zenko configs")?
    {
        add(c.spec.as_ref().and_then(|s| s.labels.as_ref()));
    }
    Ok(names.into_iter().collect())
}

/// The tasks of a stack (the task label filter matches the service's labels, and keeps
/// matching after the service is removed, until the task is reaped).
pub async fn tasks(engine: &Engine, stack: &str) -> anyhow::Result<Vec<Task>> {
    engine
        .docker
        .list_tasks(Some(ListTasksOptions {
            filters: Some(label_filter(&[(NAMESPACE_LABEL, Some(stack))])),
        }))
        .await
        .engine(engine, format_args!("listing the tasks of stack {stack}"))
}

/// The up-to-date tasks of one service (the CLI's undocumented `_up-to-date` filter: only
/// tasks of the service's current spec version).
pub async fn current_tasks(engine: &Engine, service_id: &str) -> anyhow::Result<Vec<Task>> {
    let filters = std::collections::HashMap::from([
        ("service".to_string(), vec![service_id.to_string()]),
        ("_up-to-date".to_string(), vec!["true".to_string()]),
    ]);
    engine
        .docker
        .list_tasks(Some(ListTasksOptions {
            filters: Some(filters),
        }))
        .await
        .engine(
            engine,
            format_args!("listing the tasks of service {service_id}"),
        )
}

/// Node ID -> hostname, and the IDs of nodes that are down.
pub async fn node_names(
    engine: &Engine,
) -> anyhow::Result<(BTreeMap<String, super::nodes::NodeInfo>, BTreeSet<String>)> {
    let nodes = super::nodes::list(engine).await?;
    let down = nodes
        .iter()
        .filter(|n| n.state == "down")
        .map(|n| n.id.clone())
        .collect();
    Ok((nodes.into_iter().map(|n| (n.id.clone(), n)).collect(), down))
}

/// The exact-name match among objects returned by a (prefix-matching) name filter.
pub fn exact<'a, T>(
    items: &'a [T],
    name: &str,
    name_of: impl Fn(&T) -> Option<&str>,
) -> Option<&'a T> {
    items.iter().find(|i| name_of(i) == Some(name))
}

/// The names of the stacks whose Zenko volumes are on this engine's node (volumes outlive their
/// stack unless removed with `teardown --volumes`).
pub async fn zenko_volume_stacks(engine: &Engine) -> anyhow::Result<Vec<String>> {
    let filters = label_filter(&[
        (MANAGED_LABEL, Some(MANAGED_VALUE)),
        (NAMESPACE_LABEL, None),
    ]);
    let listed = engine
        .docker
        .list_volumes(Some(bollard::query_parameters::ListVolumesOptions {
            filters: Some(filters),
        }))
        .await
        .engine(engine, "listing Zenko volumes")?;
    let names: BTreeSet<String> = listed
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.labels.get(NAMESPACE_LABEL).cloned())
        .collect();
    Ok(names.into_iter().collect())
}
