//! `zenkoctl status`: the health of the deployed Zenko stack — per service: desired and running
//! replicas, current tasks (state, error, node), Swarm's update state; and the application
//! probes of the bundled server through its published ports ([`super::probe`]).

use bollard::models::{EndpointPortConfigPublishModeEnum, Service, TaskState};
use bollard::query_parameters::ListServicesOptions;
use serde::Serialize;

use super::probe::{self, ProbeResult, ProbeState};
use super::{label_filter, short_id, stacks, Engine, EngineResult};
use crate::convert::NAMESPACE_LABEL;
use crate::output::Exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    Healthy,
    Degraded,
    Down,
}

impl Health {
    pub fn exit(self) -> Exit {
        match self {
            Health::Healthy => Exit::Ok,
            Health::Degraded => Exit::Degraded,
            Health::Down => Exit::Down,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    pub id: String,
    pub slot: Option<i64>,
    pub node: String,
    pub state: String,
    pub desired_state: String,
    pub error: Option<String>,
    pub since: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceHealth {
    pub name: String,
    pub image: String,
    pub desired: u64,
    pub running: u64,
    pub update_state: Option<String>,
    pub update_message: Option<String>,
    pub tasks: Vec<TaskInfo>,
    /// Published ports, `published->target/protocol (mode)`.
    pub ports: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub stack: Option<String>,
    pub health: Health,
    pub services: Vec<ServiceHealth>,
    pub probes: Vec<ProbeResult>,
    /// Swarm nodes that are down and matter to the stack: they carry the storage label or run
    /// (ran) one of its current tasks. Hostnames.
    pub nodes_down: Vec<String>,
    /// Why the health is not `healthy`.
    pub problems: Vec<String>,
    /// Things worth knowing that do not change the health (e.g. an unknown probe).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct StatusOptions {
    pub stack: Option<String>,
    /// Where to reach published ports (default: the node running the task for host-mode
    /// ports, the engine's host for ingress ports).
    pub probe_host: Option<String>,
    pub no_probe: bool,
}

/// The module's ports as its `serve` command line declares them: (metadata, data) target ports.
fn module_ports(service: &Service) -> (Option<u16>, Option<u16>) {
    let args = service
        .spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.args.clone())
        .unwrap_or_default();
    if args.first().map(String::as_str) != Some("serve") {
        return (None, None);
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let port = |flag: &str, default: u16| {
        value(flag)
            .and_then(|a| a.rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
            .unwrap_or(default)
    };
    match value("--only").as_deref() {
        Some("metadata") => (Some(port("--metadata-addr", 9990)), None),
        Some("data") => (None, Some(port("--data-addr", 9991))),
        _ => (
            Some(port("--metadata-addr", 9990)),
            Some(port("--data-addr", 9991)),
        ),
    }
}

pub async fn status(engine: &Engine, opts: &StatusOptions) -> anyhow::Result<StatusReport> {
    engine.require_manager().await?;
    let stack = match &opts.stack {
        Some(s) => Some(s.clone()),
        None => {
            let found = stacks::zenko_stacks(engine).await?;
            match found.as_slice() {
                [] => None,
                [one] => Some(one.clone()),
                many => {
                    // Only one Zenko stack should ever run; report the first, say so.
                    let mut r = Box::pin(status(
                        engine,
                        &StatusOptions {
                            stack: Some(many[0].clone()),
                            ..opts.clone()
                        },
                    ))
                    .await?;
                    r.problems.push(format!(
                        "several Zenko stacks are deployed: {}",
                        many.join(", ")
                    ));
                    r.health = Health::Degraded.max_with(r.health);
                    return Ok(r);
                }
            }
        }
    };
    let Some(stack) = stack else {
        return Ok(StatusReport {
            stack: None,
            health: Health::Down,
            services: Vec::new(),
            probes: Vec::new(),
            nodes_down: Vec::new(),
            problems: vec!["no Zenko stack is deployed".into()],
            notes: Vec::new(),
        });
    };
    let services = engine
        .docker
        .list_services(Some(ListServicesOptions {
            filters: Some(label_filter(&[(NAMESPACE_LABEL, Some(&stack))])),
            status: Some(true),
        }))
        .await
        .engine(
            engine,
            format_args!("listing the services of stack {stack}"),
        )?;
    let (nodes, down) = stacks::node_names(engine).await?;
    // Down nodes that matter, with what they held (node ID -> task descriptions).
    let mut down_nodes: std::collections::BTreeMap<String, Vec<String>> = down
        .iter()
        .filter(|id| nodes.get(*id).is_some_and(|n| n.storage))
        .map(|id| (id.clone(), vec!["the storage label".to_string()]))
        .collect();
    // Every task of the stack, not only the up-to-date ones: the task a down node last ran
    // may no longer count as up to date, and Swarm still counts it as running.
    let all_tasks = stacks::tasks(engine, &stack).await?;
    let node_label = |id: &str| {
        nodes
            .get(id)
            .map(|n| n.hostname.clone())
            .unwrap_or_else(|| short_id(id).to_string())
    };
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut out = Vec::new();
    let mut probes = Vec::new();
    let mut sorted = services.clone();
    sorted.sort_by_key(|s| s.spec.as_ref().and_then(|s| s.name.clone()));
    for service in &sorted {
        let spec = service.spec.clone().unwrap_or_default();
        let name = spec.name.clone().unwrap_or_default();
        let id = service.id.clone().unwrap_or_default();
        let st = service.service_status.clone().unwrap_or_default();
        let tasks = stacks::current_tasks(engine, &id).await?;
        // Swarm still counts a task on a node that went down as running (its last report),
        // although it has already set it to shut down and queued a replacement: those do not
        // serve anything.
        let of_service = || {
            all_tasks
                .iter()
                .filter(|t| t.service_id.as_deref() == Some(id.as_str()))
        };
        let lost = of_service()
            .filter(|t| {
                t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
                    && t.node_id.as_ref().is_some_and(|n| down.contains(n))
            })
            .count() as u64;
        for t in of_service() {
            if let Some(n) = t.node_id.as_ref().filter(|n| down.contains(*n)) {
                if t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING) {
                    down_nodes.entry(n.clone()).or_default().push(format!(
                        "task {} of {name}",
                        short_id(t.id.as_deref().unwrap_or_default())
                    ));
                }
            }
        }
        let (desired, running) = (
            st.desired_tasks.unwrap_or(0),
            st.running_tasks.unwrap_or(0).saturating_sub(lost),
        );
        let mut infos: Vec<TaskInfo> = tasks
            .iter()
            .filter(|t| {
                t.desired_state == Some(TaskState::RUNNING)
                    || t.status.as_ref().and_then(|s| s.err.as_ref()).is_some()
            })
            .map(|t| {
                let status = t.status.clone().unwrap_or_default();
                TaskInfo {
                    id: short_id(t.id.as_deref().unwrap_or_default()).to_string(),
                    slot: t.slot,
                    node: t.node_id.as_deref().map(node_label).unwrap_or_default(),
                    state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                    desired_state: t.desired_state.map(|s| s.to_string()).unwrap_or_default(),
                    error: status.err.filter(|e| !e.is_empty()),
                    since: status.timestamp,
                }
            })
            .collect();
        infos.sort_by(|a, b| b.since.cmp(&a.since));
        infos.truncate(10);
        let update_state = service
            .update_status
            .as_ref()
            .and_then(|u| u.state)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty());
        let update_message = service
            .update_status
            .as_ref()
            .and_then(|u| u.message.clone());
        if running < desired {
            let err = infos.iter().find_map(|t| t.error.clone());
            problems.push(format!(
                "{name}: {running}/{desired} running{}",
                err.map(|e| format!(" (last task error: {e})"))
                    .unwrap_or_default()
            ));
        }
        if let Some(s) = &update_state {
            if s.contains("paused") || s.starts_with("rollback") {
                problems.push(format!(
                    "{name}: update {s}: {}",
                    update_message.clone().unwrap_or_default()
                ));
            }
        }
        let ports_cfg = spec
            .endpoint_spec
            .as_ref()
            .and_then(|e| e.ports.clone())
            .unwrap_or_default();
        let ports = ports_cfg
            .iter()
            .map(|p| {
                format!(
                    "{}->{}/{} ({})",
                    p.published_port
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "*".into()),
                    p.target_port.unwrap_or(0),
                    p.protocol
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "tcp".into()),
                    p.publish_mode
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "ingress".into())
                )
            })
            .collect();

        // Application probes of the bundled server.
        if !opts.no_probe {
            let (meta, data) = module_ports(service);
            let running_node = tasks
                .iter()
                .find(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
                .and_then(|t| t.node_id.clone());
            for (target, port) in [("metadata", meta), ("data", data)] {
                let Some(port) = port else { continue };
                let published = ports_cfg
                    .iter()
                    .find(|p| p.target_port == Some(port as i64));
                let Some(published) =
                    published.and_then(|p| p.published_port.map(|pp| (pp, p.publish_mode)))
                else {
                    notes.push(format!(
                        "{name}: the {target} port {port} is not published; not probed"
                    ));
                    probes.push(ProbeResult {
                        target: target.into(),
                        url: String::new(),
                        state: ProbeState::Unknown,
                        detail: format!("{name}: port {port} is not published"),
                    });
                    continue;
                };
                let (published_port, mode) = published;
                let host = match (&opts.probe_host, mode) {
                    (Some(h), _) => h.clone(),
                    (None, Some(EndpointPortConfigPublishModeEnum::HOST)) => running_node
                        .as_ref()
                        .and_then(|n| nodes.get(n))
                        .map(|n| n.addr.clone())
                        .filter(|a| !a.is_empty() && a != "0.0.0.0")
                        .unwrap_or_else(|| "127.0.0.1".into()),
                    (None, _) => engine.host_address(),
                };
                let mut result = if target == "data" {
                    probe::probe_data(&host, published_port as u16).await
                } else {
                    probe::probe_metadata(&host, published_port as u16).await
                };
                result.target = format!("{name} {target}");
                match result.state {
                    ProbeState::Failed => problems.push(format!(
                        "{}: {} ({})",
                        result.target, result.detail, result.url
                    )),
                    ProbeState::Unknown => {
                        notes.push(format!("{}: {}", result.target, result.detail))
                    }
                    ProbeState::Ok => {}
                }
                probes.push(result);
            }
        }
        out.push(ServiceHealth {
            name,
            image: spec
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::convert::IMAGE_LABEL).cloned())
                .unwrap_or_default(),
            desired,
            running,
            update_state,
            update_message,
            tasks: infos,
            ports,
        });
    }
    let mut nodes_down = Vec::new();
    for (id, held) in &down_nodes {
        let (hostname, addr) = nodes
            .get(id)
            .map(|n| (n.hostname.clone(), n.addr.clone()))
            .unwrap_or_else(|| (short_id(id).to_string(), String::new()));
        problems.push(format!(
            "node {hostname}{} is down (it holds {})",
            if addr.is_empty() {
                String::new()
            } else {
                format!(" ({addr})")
            },
            held.join(", ")
        ));
        nodes_down.push(hostname);
    }
    let health = if out.is_empty() {
        problems.push(format!("stack {stack} has no services"));
        Health::Down
    } else if out.iter().all(|s| s.running == 0)
        || (!probes.is_empty() && probes.iter().all(|p| p.state == ProbeState::Failed))
    {
        // Nothing runs, or nothing of what runs answers.
        Health::Down
    } else if problems.is_empty() {
        Health::Healthy
    } else {
        Health::Degraded
    };
    Ok(StatusReport {
        stack: Some(stack),
        health,
        services: out,
        probes,
        nodes_down,
        problems,
        notes,
    })
}

impl Health {
    /// The worse of two.
    fn max_with(self, other: Health) -> Health {
        let rank = |h: Health| match h {
            Health::Healthy => 0,
            Health::Degraded => 1,
            Health::Down => 2,
        };
        if rank(self) >= rank(other) {
            self
        } else {
            other
        }
    }
}
