//! Swarm nodes and the storage label `io.zenko.type=storage`: the node whose volumes hold the
//! module's data (the module's services are constrained to it).

use std::collections::HashMap;

use anyhow::anyhow;
use bollard::models::{Node, NodeSpec};
use bollard::query_parameters::{ListNodesOptions, UpdateNodeOptions};
use serde::Serialize;

use super::{retry_out_of_sequence, Engine, EngineResult};
use crate::output::{coded, Exit};

pub const STORAGE_LABEL: &str = "io.zenko.type";
pub const STORAGE_VALUE: &str = "storage";

/// What people and machines see of a node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    pub role: String,
    pub availability: String,
    pub state: String,
    pub addr: String,
    pub leader: bool,
    pub storage: bool,
    pub labels: HashMap<String, String>,
}

impl NodeInfo {
    pub fn from_node(node: &Node) -> NodeInfo {
        let spec = node.spec.clone().unwrap_or_default();
        let labels = spec.labels.clone().unwrap_or_default();
        let status = node.status.clone().unwrap_or_default();
        let lower = |s: String| s.to_lowercase();
        NodeInfo {
            id: node.id.clone().unwrap_or_default(),
            hostname: node
                .description
                .as_ref()
                .and_then(|d| d.hostname.clone())
                .unwrap_or_default(),
            role: spec.role.map(|r| lower(r.to_string())).unwrap_or_default(),
            availability: spec
                .availability
                .map(|a| lower(a.to_string()))
                .unwrap_or_default(),
            state: status
                .state
                .map(|s| lower(s.to_string()))
                .unwrap_or_default(),
            addr: status.addr.unwrap_or_default(),
            leader: node
                .manager_status
                .as_ref()
                .and_then(|m| m.leader)
                .unwrap_or(false),
            storage: labels.get(STORAGE_LABEL).map(String::as_str) == Some(STORAGE_VALUE),
            labels,
        }
    }

    pub fn is_ready_and_active(&self) -> bool {
        self.state == "ready" && self.availability == "active"
    }

    /// `hostname (id)`, for messages.
    pub fn display(&self) -> String {
        format!("{} ({})", self.hostname, super::short_id(&self.id))
    }
}

pub async fn list(engine: &Engine) -> anyhow::Result<Vec<NodeInfo>> {
    let nodes = engine
        .docker
        .list_nodes(None::<ListNodesOptions>)
        .await
        .map_err(|e| not_a_manager(engine, e))?;
    let mut infos: Vec<NodeInfo> = nodes.iter().map(NodeInfo::from_node).collect();
    infos.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
    Ok(infos)
}

/// Listing nodes fails with 503 on an engine that is not a Swarm manager: say so plainly.
fn not_a_manager(engine: &Engine, e: bollard::errors::Error) -> anyhow::Error {
    if super::status_of(&e) == Some(503) {
        coded(
            Exit::Failure,
            anyhow!(
                "the engine at {} is not a Swarm manager: {} (run `docker swarm init` there, or \
                 point --host at a manager)",
                engine.host,
                super::server_message(&e)
            ),
        )
    } else {
        engine.error(e, "listing the swarm's nodes")
    }
}

fn candidates(nodes: &[NodeInfo]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "{} [{}, {}, {}]",
                n.display(),
                n.role,
                n.state,
                n.availability
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Finds the node meant by `name` (an ID, a unique ID prefix or a hostname); without a name,
/// the only node of a single-node swarm. Ambiguity is refused with the candidates.
pub fn choose<'a>(nodes: &'a [NodeInfo], name: Option<&str>) -> anyhow::Result<&'a NodeInfo> {
    match name {
        Some(name) => {
            if let Some(n) = nodes.iter().find(|n| n.id == name) {
                return Ok(n);
            }
            let by_host: Vec<&NodeInfo> = nodes.iter().filter(|n| n.hostname == name).collect();
            let by_prefix: Vec<&NodeInfo> =
                nodes.iter().filter(|n| n.id.starts_with(name)).collect();
            match (by_host.as_slice(), by_prefix.as_slice()) {
                ([one], _) => Ok(one),
                ([], [one]) => Ok(one),
                ([], []) => Err(coded(
                    Exit::InvalidInput,
                    anyhow!(
                        "no swarm node is named {name:?}; nodes: {}",
                        candidates(nodes)
                    ),
                )),
                _ => Err(coded(
                    Exit::InvalidInput,
                    anyhow!(
                        "{name:?} matches several nodes; use the node ID: {}",
                        candidates(nodes)
                    ),
                )),
            }
        }
        None => {
            if let [only] = nodes {
                return Ok(only);
            }
            Err(coded(
                Exit::InvalidInput,
                anyhow!(
                    "the swarm has {} nodes: name the storage node (by hostname or ID); \
                     candidates: {}",
                    nodes.len(),
                    candidates(nodes)
                ),
            ))
        }
    }
}

/// What a label/unlabel did.
#[derive(Debug, Clone, Serialize)]
pub struct LabelChange {
    pub node: NodeInfo,
    /// False when the node was already as asked (nothing was written).
    pub changed: bool,
    /// Nodes the storage label was removed from (it is on one node at a time).
    pub moved_from: Vec<NodeInfo>,
}

/// Sets or removes one label on a node: read the node, merge the labels, write the full spec
/// back with the version just read; on "update out of sequence", read again and retry.
pub async fn set_label(
    engine: &Engine,
    node_id: &str,
    key: &str,
    value: Option<&str>,
) -> anyhow::Result<bool> {
    let changed = std::sync::atomic::AtomicBool::new(false);
    retry_out_of_sequence("node update", || async {
        let node = engine.docker.inspect_node(node_id).await?;
        let mut spec: NodeSpec = node.spec.clone().unwrap_or_default();
        let labels = spec.labels.get_or_insert_with(HashMap::new);
        let current = labels.get(key).cloned();
        if current.as_deref() == value {
            return Ok(());
        }
        match value {
            Some(v) => labels.insert(key.to_string(), v.to_string()),
            None => labels.remove(key),
        };
        let version = node.version.and_then(|v| v.index).unwrap_or(0);
        let version = i64::try_from(version).map_err(|_| {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 0,
                message: format!("node version index {version} overflows"),
            }
        })?;
        // Role and Availability travel with the spec (the engine refuses an empty Role).
        engine
            .docker
            .update_node(node_id, spec, UpdateNodeOptions { version })
            .await?;
        changed.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    })
    .await
    .engine(
        engine,
        format_args!("updating the labels of node {node_id}"),
    )?;
    Ok(changed.into_inner())
}

/// Puts the storage label on the chosen node, and takes it off any other node.
pub async fn label_storage(engine: &Engine, name: Option<&str>) -> anyhow::Result<LabelChange> {
    let nodes = list(engine).await?;
    let chosen = match name {
        None => {
            let labelled: Vec<&NodeInfo> = nodes.iter().filter(|n| n.storage).collect();
            if let [one] = labelled.as_slice() {
                one
            } else {
                choose(&nodes, None)?
            }
        }
        Some(_) => choose(&nodes, name)?,
    }
    .clone();
    let changed = set_label(engine, &chosen.id, STORAGE_LABEL, Some(STORAGE_VALUE)).await?;
    let mut moved_from = Vec::new();
    for other in nodes.iter().filter(|n| n.storage && n.id != chosen.id) {
        set_label(engine, &other.id, STORAGE_LABEL, None).await?;
        moved_from.push(other.clone());
    }
    let node = refreshed(engine, &chosen.id).await?;
    Ok(LabelChange {
        node,
        changed,
        moved_from,
    })
}

pub async fn unlabel_storage(engine: &Engine, name: Option<&str>) -> anyhow::Result<LabelChange> {
    let nodes = list(engine).await?;
    let chosen = match name {
        None => {
            let labelled: Vec<&NodeInfo> = nodes.iter().filter(|n| n.storage).collect();
            match labelled.as_slice() {
                [one] => one,
                [] => choose(&nodes, None)?,
                _ => {
                    return Err(coded(
                        Exit::InvalidInput,
                        anyhow!(
                            "several nodes carry the storage label; name one: {}",
                            candidates(&labelled.into_iter().cloned().collect::<Vec<_>>())
                        ),
                    ))
                }
            }
        }
        Some(_) => choose(&nodes, name)?,
    }
    .clone();
    let changed = set_label(engine, &chosen.id, STORAGE_LABEL, None).await?;
    let node = refreshed(engine, &chosen.id).await?;
    Ok(LabelChange {
        node,
        changed,
        moved_from: Vec::new(),
    })
}

async fn refreshed(engine: &Engine, id: &str) -> anyhow::Result<NodeInfo> {
    let node = engine
        .docker
        .inspect_node(id)
        .await
        .engine(engine, format_args!("inspecting node {id}"))?;
    Ok(NodeInfo::from_node(&node))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, host: &str) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            hostname: host.into(),
            role: "manager".into(),
            availability: "active".into(),
            state: "ready".into(),
            addr: String::new(),
            leader: false,
            storage: false,
            labels: HashMap::new(),
        }
    }

    #[test]
    fn choosing_a_node() {
        let one = [node("abc123", "vm1")];
        assert_eq!(choose(&one, None).unwrap().id, "abc123");
        let two = [node("abc123", "vm1"), node("abd456", "vm2")];
        assert_eq!(choose(&two, Some("vm2")).unwrap().id, "abd456");
        assert_eq!(choose(&two, Some("abc")).unwrap().id, "abc123");
        assert_eq!(choose(&two, Some("abd456")).unwrap().id, "abd456");
        let ambiguous = choose(&two, None).unwrap_err().to_string();
        assert!(
            ambiguous.contains("vm1") && ambiguous.contains("vm2"),
            "{ambiguous}"
        );
        let prefix = choose(&two, Some("ab")).unwrap_err().to_string();
        assert!(prefix.contains("matches several nodes"), "{prefix}");
        let missing = choose(&two, Some("vm3")).unwrap_err();
        assert_eq!(crate::output::exit_of(&missing), Exit::InvalidInput);
    }
}
