//! Waiting for services to converge, and saying why when they do not.
//!
//! Modelled on the docker CLI's `ServiceProgress` (poll the service and its `_up-to-date`
//! tasks, ignore tasks on down nodes), with what it lacks: a timeout, `rollback_*` and `paused`
//! update states treated as failures, fail-fast on repeated task failures (a crash loop or a
//! command that cannot start) and on tasks that cannot be scheduled, and a report that names
//! the service, the node, the task error and the last log lines.
//!
//! A task counts as running only once its healthcheck (if any) passed: Swarm holds it in
//! `starting` until then, so "running" here includes "healthy".

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bollard::models::{Service, Task, TaskState};
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;
use serde::Serialize;

use super::stacks;
use super::{short_id, Engine, EngineResult, Progress};

const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct WaitOptions {
    /// Give up after this long.
    pub timeout: Duration,
    /// After convergence, the services must stay converged this long.
    pub stable: Duration,
    /// A service fails once this many of its current tasks failed or were rejected.
    pub max_failures: usize,
    /// A task pending with a scheduling error for this long fails the service.
    pub pending_grace: Duration,
    /// Log lines to show for a failed task.
    pub log_lines: usize,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: Duration::from_secs(300),
            stable: Duration::from_secs(3),
            max_failures: 3,
            pending_grace: Duration::from_secs(15),
            log_lines: 20,
        }
    }
}

/// Why a service did not converge.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceFailure {
    pub service: String,
    pub reason: String,
    pub task: Option<String>,
    pub node: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    pub logs: Vec<String>,
}

impl std::fmt::Display for ServiceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "service {}: {}", self.service, self.reason)?;
        if let Some(node) = &self.node {
            write!(f, "\n    node: {node}")?;
        }
        if let Some(task) = &self.task {
            write!(
                f,
                "\n    task: {task} ({})",
                self.state.as_deref().unwrap_or("?")
            )?;
        }
        if let Some(err) = &self.error {
            write!(f, "\n    error: {err}")?;
        }
        if let Some(code) = self.exit_code {
            write!(f, "\n    exit code: {code}")?;
        }
        if !self.logs.is_empty() {
            write!(f, "\n    last log lines:")?;
            for l in &self.logs {
                write!(f, "\n      | {l}")?;
            }
        }
        Ok(())
    }
}

/// The outcome of a wait.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    Converged,
    Failed { failures: Vec<ServiceFailure> },
    TimedOut { failures: Vec<ServiceFailure> },
}

/// How far one service is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progression {
    pub running: u64,
    pub desired: u64,
    pub converged: bool,
    pub note: String,
}

fn state_name(s: &Option<TaskState>) -> String {
    s.map(|s| s.to_string()).unwrap_or_else(|| "?".into())
}

fn is_running(t: &Task) -> bool {
    t.desired_state == Some(TaskState::RUNNING)
        && t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
}

fn is_complete(t: &Task) -> bool {
    t.status.as_ref().and_then(|s| s.state) == Some(TaskState::COMPLETE)
}

fn is_failed(t: &Task) -> bool {
    matches!(
        t.status.as_ref().and_then(|s| s.state),
        Some(TaskState::FAILED | TaskState::REJECTED)
    )
}

/// Judges one service from its inspect and its current tasks.
pub fn judge(
    service: &Service,
    tasks: &[Task],
    down_nodes: &std::collections::BTreeSet<String>,
) -> Progression {
    let tasks: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.node_id.as_ref().is_none_or(|n| !down_nodes.contains(n)))
        .collect();
    let mode = service
        .spec
        .as_ref()
        .and_then(|s| s.mode.clone())
        .unwrap_or_default();
    let running = tasks.iter().filter(|t| is_running(t)).count() as u64;
    let starting = tasks
        .iter()
        .filter(|t| t.desired_state == Some(TaskState::RUNNING) && !is_running(t))
        .map(|t| state_name(&t.status.as_ref().and_then(|s| s.state)))
        .collect::<Vec<_>>();
    let note = if starting.is_empty() {
        String::new()
    } else {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for s in starting {
            *counts.entry(s).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(s, n)| if n == 1 { s } else { format!("{n} {s}") })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(r) = mode.replicated {
        let desired = r.replicas.unwrap_or(1).max(0) as u64;
        Progression {
            running,
            desired,
            converged: running >= desired,
            note,
        }
    } else if mode.global.is_some() {
        let nodes: std::collections::BTreeSet<&String> = tasks
            .iter()
            .filter(|t| t.desired_state == Some(TaskState::RUNNING))
            .filter_map(|t| t.node_id.as_ref())
            .collect();
        let desired = nodes.len() as u64;
        Progression {
            running,
            desired,
            converged: desired > 0 && running >= desired,
            note: if desired == 0 {
                "waiting for tasks".into()
            } else {
                note
            },
        }
    } else {
        // Jobs: done when enough tasks completed.
        let complete = tasks
            .iter()
            .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::COMPLETE))
            .count() as u64;
        let desired = match &mode.replicated_job {
            Some(j) => j.total_completions.unwrap_or(1).max(0) as u64,
            None => tasks.len().max(1) as u64,
        };
        Progression {
            running: complete,
            desired,
            converged: complete >= desired,
            note: format!("{complete}/{desired} completed"),
        }
    }
}

/// A service to wait for: (full name, id).
pub type Target = (String, String);

/// Waits until every target service converged and stayed so for `stable`, a failure is
/// certain, or the timeout.
pub async fn wait(
    engine: &Engine,
    targets: &[Target],
    opts: &WaitOptions,
    progress: Progress<'_>,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut last: HashMap<String, Progression> = HashMap::new();
    let mut pending_since: HashMap<String, Instant> = HashMap::new();
    let mut converged_at: Option<Instant> = None;
    // Failed services stay failed; the wait goes on until every other service converged or
    // failed too, so one report covers them all.
    let mut failures: Vec<ServiceFailure> = Vec::new();
    // Tasks that had already failed when the wait began (an unchanged service's history) are
    // not this deploy's failures.
    let mut earlier_failures: std::collections::HashSet<String> = Default::default();
    let mut first_pass = true;
    loop {
        let (names, down) = stacks::node_names(engine).await?;
        let mut all = true;
        let mut lagging = Vec::new();
        for (name, id) in targets {
            if failures.iter().any(|f| &f.service == name) {
                continue;
            }
            let service = engine
                .docker
                .inspect_service(id, None::<bollard::query_parameters::InspectServiceOptions>)
                .await
                .engine(engine, format_args!("inspecting service {name}"))?;
            let tasks = stacks::current_tasks(engine, id).await?;
            // The update state: Swarm's own verdict on an update.
            if let Some(us) = &service.update_status {
                use bollard::models::ServiceUpdateStatusStateEnum as U;
                let msg = us.message.clone().unwrap_or_default();
                let verdict = match us.state {
                    Some(U::PAUSED) => Some(format!("the update paused: {msg}")),
                    Some(U::ROLLBACK_PAUSED) => Some(format!("the rollback paused: {msg}")),
                    Some(U::ROLLBACK_STARTED) | Some(U::ROLLBACK_COMPLETED) => {
                        Some(format!("Swarm rolled the update back: {msg}"))
                    }
                    _ => None,
                };
                if let Some(reason) = verdict {
                    failures.push(
                        failure(engine, name, reason, latest_failed(&tasks), &names, opts).await,
                    );
                    continue;
                }
            }
            // For a long-running service, a task that exited 0 is a failure too (the CLI waits
            // forever on it: docker/cli#5299).
            let is_job = service
                .spec
                .as_ref()
                .and_then(|s| s.mode.as_ref())
                .is_some_and(|m| m.replicated_job.is_some() || m.global_job.is_some());
            let failed: Vec<&Task> = tasks
                .iter()
                .filter(|t| is_failed(t) || (!is_job && is_complete(t)))
                .filter(|t| {
                    let id = t.id.clone().unwrap_or_default();
                    if first_pass {
                        earlier_failures.insert(id);
                        false
                    } else {
                        !earlier_failures.contains(&id)
                    }
                })
                .collect();
            if failed.len() >= opts.max_failures {
                let reason = format!(
                    "{} task(s) failed to start, crashed or exited",
                    failed.len()
                );
                let latest = latest_failed(&tasks).or_else(|| failed.last().map(|t| (*t).clone()));
                failures.push(failure(engine, name, reason, latest, &names, opts).await);
                continue;
            }
            // A task pending with a scheduling error (no suitable node, no such image...).
            let mut stuck = None;
            for t in &tasks {
                let status = t.status.clone().unwrap_or_default();
                let tid = t.id.clone().unwrap_or_default();
                let pending = status.state == Some(TaskState::PENDING)
                    && status.err.as_deref().is_some_and(|e| !e.is_empty());
                if pending {
                    let since = *pending_since
                        .entry(tid.clone())
                        .or_insert_with(Instant::now);
                    if since.elapsed() >= opts.pending_grace {
                        stuck = Some((*t).clone());
                    }
                } else {
                    pending_since.remove(&tid);
                }
            }
            if let Some(t) = stuck {
                let reason = "a task cannot be scheduled".to_string();
                failures.push(failure(engine, name, reason, Some(t), &names, opts).await);
                continue;
            }
            let p = judge(&service, &tasks, &down);
            if !p.converged {
                all = false;
                lagging.push(name.clone());
            }
            if last.get(name) != Some(&p) {
                let note = if p.note.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", p.note)
                };
                progress(format!("{name}: {}/{} running{note}", p.running, p.desired));
                last.insert(name.clone(), p);
            }
        }
        first_pass = false;
        if !failures.is_empty() && all {
            return Ok(Outcome::Failed { failures });
        }
        if all {
            match converged_at {
                None => {
                    if opts.stable.is_zero() {
                        return Ok(Outcome::Converged);
                    }
                    progress(format!(
                        "converged; checking that tasks stay up for {:.1}s",
                        opts.stable.as_secs_f64()
                    ));
                    converged_at = Some(Instant::now());
                }
                Some(at) if at.elapsed() >= opts.stable => return Ok(Outcome::Converged),
                Some(_) => {}
            }
        } else if converged_at.take().is_some() {
            progress("a task failed after convergence; waiting again".into());
        }
        if started.elapsed() >= opts.timeout {
            let failed_before = !failures.is_empty();
            for name in lagging {
                let id = targets
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, i)| i.clone())
                    .unwrap_or_default();
                let tasks = stacks::current_tasks(engine, &id).await.unwrap_or_default();
                let p = last.get(&name).cloned();
                let reason = format!(
                    "not converged after {}s ({} of {} running)",
                    opts.timeout.as_secs(),
                    p.as_ref().map(|p| p.running).unwrap_or(0),
                    p.as_ref().map(|p| p.desired).unwrap_or(0)
                );
                let task = latest_failed(&tasks)
                    .or_else(|| tasks.iter().find(|t| !is_running(t)).cloned());
                failures.push(failure(engine, &name, reason, task, &names, opts).await);
            }
            return Ok(if failed_before {
                Outcome::Failed { failures }
            } else {
                Outcome::TimedOut { failures }
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The most recent failed or rejected task.
fn latest_failed(tasks: &[Task]) -> Option<Task> {
    tasks
        .iter()
        .filter(|t| is_failed(t))
        .max_by_key(|t| {
            t.status
                .as_ref()
                .and_then(|s| s.timestamp.clone())
                .unwrap_or_default()
        })
        .cloned()
}

async fn failure(
    engine: &Engine,
    service: &str,
    reason: String,
    task: Option<Task>,
    nodes: &BTreeMap<String, super::nodes::NodeInfo>,
    opts: &WaitOptions,
) -> ServiceFailure {
    let mut f = ServiceFailure {
        service: service.to_string(),
        reason,
        task: None,
        node: None,
        state: None,
        error: None,
        exit_code: None,
        logs: Vec::new(),
    };
    if let Some(t) = task {
        let id = t.id.clone().unwrap_or_default();
        let status = t.status.clone().unwrap_or_default();
        f.task = Some(short_id(&id).to_string());
        f.node = t.node_id.as_ref().map(|n| match nodes.get(n) {
            Some(info) => info.display(),
            None => short_id(n).to_string(),
        });
        f.state = Some(state_name(&status.state));
        f.error = status.err.filter(|e| !e.is_empty()).or(status.message);
        f.exit_code = status.container_status.and_then(|c| c.exit_code);
        f.logs = task_logs(engine, &id, opts.log_lines).await;
    }
    f
}

/// The last `lines` log lines of a task; empty when there are none (a container that never
/// started has no logs) or they cannot be read.
pub async fn task_logs(engine: &Engine, task_id: &str, lines: usize) -> Vec<String> {
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        tail: lines.to_string(),
        ..Default::default()
    };
    let mut stream = engine.docker.task_logs(task_id, Some(options));
    let mut text = String::new();
    let collect = async {
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk.into_bytes())),
                Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), collect).await;
    let all: Vec<String> = text.lines().map(str::to_string).collect();
    all[all.len().saturating_sub(lines)..].to_vec()
}
