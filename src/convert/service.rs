//! One compose service -> a Swarm `ServiceSpec`, following docker/cli's
//! `cli/compose/convert/service.go` field by field (sorted lists "to ensure idempotence",
//! durations in nanoseconds, update/rollback config only when the block exists).

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, Limit, Mount, MountType, MountVolumeOptions,
    MountVolumeOptionsDriverConfig, NetworkAttachmentConfig, ResourceObject, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecModeReplicatedJob,
    ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets, TaskSpecLogDriver, TaskSpecPlacement,
    TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use indexmap::IndexMap;

use super::{
    labels_of, scope, FilePlan, ServicePlan, IMAGE_LABEL, MANAGED_LABEL, MANAGED_VALUE,
    NAMESPACE_LABEL,
};
use crate::stack::model::{parse_bytes, parse_duration, Scalar, Service, UpdateConfig, Volume};
use crate::stack::validate::parse_port;

/// What a service's conversion needs from the rest of the stack.
pub struct Context<'a> {
    pub stack: &'a str,
    /// Compose network key -> name in Swarm.
    pub networks: &'a HashMap<String, String>,
    pub secrets: &'a [FilePlan],
    pub configs: &'a [FilePlan],
    pub volumes: &'a IndexMap<String, Option<Volume>>,
}

/// Problems as (key path under the service, message).
pub type Problems = Vec<(String, String)>;

fn nanos(text: &Option<String>, path: &str, problems: &mut Problems) -> Option<i64> {
    let text = text.as_ref()?;
    match parse_duration(text) {
        Ok(d) => Some(d.as_nanos() as i64),
        Err(e) => {
            problems.push((path.into(), e));
            None
        }
    }
}

/// The full name of every named volume the service mounts.
pub fn volume_names(service: &Service, ctx: &Context) -> Vec<String> {
    service
        .volumes
        .iter()
        .filter_map(|v| {
            let (kind, source, _, _) = v.parts();
            let source = source?;
            (kind == "volume").then(|| volume_name(&source, ctx))
        })
        .collect()
}

fn volume_name(source: &str, ctx: &Context) -> String {
    match ctx.volumes.get(source).cloned().flatten() {
        Some(Volume {
            external: Some(true),
            name,
            ..
        }) => name.unwrap_or_else(|| source.to_string()),
        Some(Volume { name: Some(n), .. }) => n,
        _ => scope(ctx.stack, source),
    }
}

pub fn convert(key: &str, service: &Service, ctx: &Context) -> Result<ServicePlan, Problems> {
    let mut problems: Problems = Vec::new();
    let stack = ctx.stack;
    let name = scope(stack, key);
    let deploy = service.deploy.clone().unwrap_or_default();
    let image = service.image.clone().unwrap_or_default();

    // Service labels: deploy.labels + namespace + the literal image string.
    let mut labels = labels_of(&deploy.labels);
    labels.insert(NAMESPACE_LABEL.into(), stack.into());
    labels.insert(IMAGE_LABEL.into(), image.clone());
    labels.insert(MANAGED_LABEL.into(), MANAGED_VALUE.into());
    // Container labels: compose labels + namespace.
    let mut container_labels = labels_of(&service.labels);
    container_labels.insert(NAMESPACE_LABEL.into(), stack.into());

    // Environment: sorted K=V, or K alone for a null value.
    let env: Option<Vec<String>> = service.environment.as_ref().map(|e| {
        let map: BTreeMap<String, Option<String>> = e.entries().into_iter().collect();
        map.into_iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k,
            })
            .collect()
    });

    let mut mounts = Vec::new();
    for (i, v) in service.volumes.iter().enumerate() {
        let (kind, source, target, read_only) = v.parts();
        let mut mount = Mount {
            target: Some(target),
            read_only: read_only.then_some(true),
            ..Default::default()
        };
        match kind.as_str() {
            "volume" => {
                mount.typ = Some(MountType::VOLUME);
                if let Some(src) = &source {
                    mount.source = Some(volume_name(src, ctx));
                    let def = ctx.volumes.get(src).cloned().flatten().unwrap_or_default();
                    if !def.external.unwrap_or(false) {
                        let mut vlabels = labels_of(&def.labels);
                        vlabels.insert(NAMESPACE_LABEL.into(), stack.into());
                        vlabels.insert(MANAGED_LABEL.into(), MANAGED_VALUE.into());
                        let driver = def.driver.clone().map(|d| MountVolumeOptionsDriverConfig {
                            name: Some(d),
                            options: (!def.driver_opts.is_empty())
                                .then(|| def.driver_opts.clone().into_iter().collect()),
                        });
                        mount.volume_options = Some(MountVolumeOptions {
                            labels: Some(vlabels.into_iter().collect()),
                            driver_config: driver,
                            ..Default::default()
                        });
                    }
                }
            }
            "bind" => {
                mount.typ = Some(MountType::BIND);
                mount.source = source;
            }
            "tmpfs" => mount.typ = Some(MountType::TMPFS),
            other => problems.push((
                format!(".volumes[{i}]"),
                format!("unknown mount type {other:?}"),
            )),
        }
        mounts.push(mount);
    }

    // Secrets and configs: the hashed name, mounted at the stable target; sorted by name.
    let mut secret_keys = Vec::new();
    let mut secrets = Vec::new();
    for (i, r) in service.secrets.iter().enumerate() {
        let Some(plan) = ctx.secrets.iter().find(|s| s.key == r.source()) else {
            problems.push((
                format!(".secrets[{i}]"),
                format!("secret {:?} is not defined", r.source()),
            ));
            continue;
        };
        let (uid, gid, mode) = file_owner(r);
        secret_keys.push(plan.key.clone());
        secrets.push(TaskSpecContainerSpecSecrets {
            file: Some(TaskSpecContainerSpecFile {
                name: Some(r.target().to_string()),
                uid: Some(uid),
                gid: Some(gid),
                mode: Some(mode),
            }),
            // Resolved to an ID by the deployer once the secret exists.
            secret_id: None,
            secret_name: Some(plan.name.clone()),
        });
    }
    secrets.sort_by(|a, b| a.secret_name.cmp(&b.secret_name));
    let mut config_keys = Vec::new();
    let mut configs = Vec::new();
    for (i, r) in service.configs.iter().enumerate() {
        let Some(plan) = ctx.configs.iter().find(|s| s.key == r.source()) else {
            problems.push((
                format!(".configs[{i}]"),
                format!("config {:?} is not defined", r.source()),
            ));
            continue;
        };
        let (uid, gid, mode) = file_owner(r);
        config_keys.push(plan.key.clone());
        // A short-syntax config is mounted at /<key>, as the CLI does.
        let target = match r {
            crate::stack::model::FileReference::Long(l) if l.target.is_some() => {
                r.target().to_string()
            }
            _ => format!("/{}", r.source()),
        };
        configs.push(TaskSpecContainerSpecConfigs {
            file: Some(TaskSpecContainerSpecFile1 {
                name: Some(target),
                uid: Some(uid),
                gid: Some(gid),
                mode: Some(mode),
            }),
            config_id: None,
            config_name: Some(plan.name.clone()),
            ..Default::default()
        });
    }
    configs.sort_by(|a, b| a.config_name.cmp(&b.config_name));

    let health_check = service.healthcheck.as_ref().map(|h| {
        if h.disable == Some(true) {
            HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            }
        } else {
            let test = h.test.as_ref().map(|t| match t {
                crate::stack::model::StringOrList::List(l) => l.clone(),
                // A string test runs through the shell, as compose does.
                crate::stack::model::StringOrList::String(s) => vec!["CMD-SHELL".into(), s.clone()],
            });
            HealthConfig {
                test,
                interval: nanos(&h.interval, ".healthcheck.interval", &mut problems),
                timeout: nanos(&h.timeout, ".healthcheck.timeout", &mut problems),
                retries: h.retries.map(|r| r as i64),
                start_period: nanos(&h.start_period, ".healthcheck.start_period", &mut problems),
                ..Default::default()
            }
        }
    });

    let container_spec = TaskSpecContainerSpec {
        image: Some(image.clone()),
        labels: Some(container_labels.into_iter().collect()),
        command: service.entrypoint.as_ref().map(|e| e.to_argv()),
        args: service.command.as_ref().map(|c| c.to_argv()),
        hostname: service.hostname.clone(),
        env,
        dir: service.working_dir.clone(),
        user: service.user.clone(),
        read_only: service.read_only,
        mounts: (!mounts.is_empty()).then_some(mounts),
        stop_signal: service.stop_signal.clone(),
        stop_grace_period: nanos(
            &service.stop_grace_period,
            ".stop_grace_period",
            &mut problems,
        ),
        health_check,
        secrets: (!secrets.is_empty()).then_some(secrets),
        configs: (!configs.is_empty()).then_some(configs),
        init: service.init,
        ..Default::default()
    };

    // Restart policy: deploy.restart_policy; nil means the server default (any, 5s).
    let restart_policy = deploy
        .restart_policy
        .as_ref()
        .map(|rp| TaskSpecRestartPolicy {
            condition: rp.condition.as_deref().map(|c| match c {
                "none" => TaskSpecRestartPolicyConditionEnum::NONE,
                "on-failure" => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
                _ => TaskSpecRestartPolicyConditionEnum::ANY,
            }),
            delay: nanos(&rp.delay, ".deploy.restart_policy.delay", &mut problems),
            max_attempts: rp.max_attempts.map(|m| m as i64),
            window: nanos(&rp.window, ".deploy.restart_policy.window", &mut problems),
        });

    let placement = deploy.placement.as_ref().map(|p| TaskSpecPlacement {
        constraints: (!p.constraints.is_empty()).then(|| p.constraints.clone()),
        preferences: (!p.preferences.is_empty()).then(|| {
            p.preferences
                .iter()
                .map(|pref| TaskSpecPlacementPreferences {
                    spread: Some(TaskSpecPlacementSpread {
                        spread_descriptor: Some(pref.spread.clone()),
                    }),
                })
                .collect()
        }),
        max_replicas: p.max_replicas_per_node.map(|m| m as i64),
        ..Default::default()
    });

    let resources = deploy.resources.as_ref().map(|r| {
        let cpus = |s: &Option<Scalar>, path: &str, problems: &mut Problems| -> Option<i64> {
            let s = s.as_ref()?;
            match s.to_string().parse::<f64>() {
                Ok(f) => Some((f * 1e9) as i64),
                Err(_) => {
                    problems.push((path.into(), format!("invalid cpus {s}")));
                    None
                }
            }
        };
        let memory = |s: &Option<Scalar>, path: &str, problems: &mut Problems| -> Option<i64> {
            let s = s.as_ref()?;
            match parse_bytes(&s.to_string()) {
                Ok(b) => Some(b as i64),
                Err(e) => {
                    problems.push((path.into(), e));
                    None
                }
            }
        };
        TaskSpecResources {
            limits: r.limits.as_ref().map(|l| Limit {
                nano_cpus: cpus(&l.cpus, ".deploy.resources.limits.cpus", &mut problems),
                memory_bytes: memory(&l.memory, ".deploy.resources.limits.memory", &mut problems),
                pids: l.pids,
            }),
            reservations: r.reservations.as_ref().map(|l| ResourceObject {
                nano_cpus: cpus(
                    &l.cpus,
                    ".deploy.resources.reservations.cpus",
                    &mut problems,
                ),
                memory_bytes: memory(
                    &l.memory,
                    ".deploy.resources.reservations.memory",
                    &mut problems,
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    });

    // Networks: the Swarm name, aliased with the short service name; sorted by target.
    let network_keys: Vec<String> = match &service.networks {
        Some(n) => n.names().into_iter().map(str::to_string).collect(),
        None => vec!["default".into()],
    };
    let mut networks = Vec::new();
    for net in network_keys {
        let Some(target) = ctx.networks.get(&net) else {
            problems.push((
                format!(".networks.{net}"),
                format!("network {net:?} is not defined"),
            ));
            continue;
        };
        let mut aliases: Vec<String> = match &service.networks {
            Some(crate::stack::model::ServiceNetworks::Map(m)) => m
                .get(&net)
                .cloned()
                .flatten()
                .map(|n| n.aliases)
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        aliases.push(key.to_string());
        networks.push(NetworkAttachmentConfig {
            target: Some(target.clone()),
            aliases: Some(aliases),
            ..Default::default()
        });
    }
    networks.sort_by(|a, b| a.target.cmp(&b.target));

    let log_driver = service.logging.as_ref().and_then(|l| {
        l.driver.as_ref().map(|d| TaskSpecLogDriver {
            name: Some(d.clone()),
            options: (!l.options.is_empty()).then(|| l.options.clone().into_iter().collect()),
        })
    });

    let mode_name = deploy.mode.clone().unwrap_or_else(|| "replicated".into());
    let replicas = deploy.replicas.map(|r| r as i64);
    let mode = match mode_name.as_str() {
        "global" => ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        },
        "replicated-job" => {
            let n = replicas.unwrap_or(1);
            ServiceSpecMode {
                replicated_job: Some(ServiceSpecModeReplicatedJob {
                    max_concurrent: Some(n),
                    total_completions: Some(n),
                }),
                ..Default::default()
            }
        }
        "global-job" => ServiceSpecMode {
            global_job: Some(HashMap::new()),
            ..Default::default()
        },
        "replicated" => ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas }),
            ..Default::default()
        },
        other => {
            problems.push((
                ".deploy.mode".into(),
                format!("unknown deploy mode {other:?}"),
            ));
            ServiceSpecMode::default()
        }
    };

    let mut ports = Vec::new();
    for (i, p) in service.ports.iter().enumerate() {
        match parse_port(p) {
            Err(e) => problems.push((format!(".ports[{i}]"), e)),
            Ok(mappings) => {
                for m in mappings {
                    ports.push(EndpointPortConfig {
                        protocol: Some(match m.protocol.as_str() {
                            "udp" => EndpointPortConfigProtocolEnum::UDP,
                            "sctp" => EndpointPortConfigProtocolEnum::SCTP,
                            _ => EndpointPortConfigProtocolEnum::TCP,
                        }),
                        target_port: Some(m.target as i64),
                        published_port: m.published.map(|p| p as i64),
                        publish_mode: Some(if m.mode == "host" {
                            EndpointPortConfigPublishModeEnum::HOST
                        } else {
                            EndpointPortConfigPublishModeEnum::INGRESS
                        }),
                        ..Default::default()
                    })
                }
            }
        }
    }
    // The CLI sorts ports (by published, then target, then protocol) for idempotence.
    ports.sort_by_key(|p| {
        (
            p.published_port.unwrap_or(0),
            p.target_port.unwrap_or(0),
            format!("{:?}", p.protocol),
        )
    });
    let endpoint_spec = EndpointSpec {
        mode: match deploy.endpoint_mode.as_deref() {
            Some("dnsrr") => Some(EndpointSpecModeEnum::DNSRR),
            Some("vip") => Some(EndpointSpecModeEnum::VIP),
            _ => None,
        },
        ports: (!ports.is_empty()).then_some(ports),
    };

    let update_config = deploy
        .update_config
        .as_ref()
        .map(|u| convert_update_config(u, ".deploy.update_config", &mut problems));
    let rollback_config = deploy.rollback_config.as_ref().map(|u| {
        let c = convert_update_config(u, ".deploy.rollback_config", &mut problems);
        ServiceSpecRollbackConfig {
            parallelism: c.parallelism,
            delay: c.delay,
            failure_action: c.failure_action.map(|f| match f {
                ServiceSpecUpdateConfigFailureActionEnum::CONTINUE => {
                    ServiceSpecRollbackConfigFailureActionEnum::CONTINUE
                }
                _ => ServiceSpecRollbackConfigFailureActionEnum::PAUSE,
            }),
            monitor: c.monitor,
            max_failure_ratio: c.max_failure_ratio,
            order: c.order.map(|o| match o {
                ServiceSpecUpdateConfigOrderEnum::START_FIRST => {
                    ServiceSpecRollbackConfigOrderEnum::START_FIRST
                }
                _ => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            }),
        }
    });

    if !problems.is_empty() {
        return Err(problems);
    }
    let spec = ServiceSpec {
        name: Some(name.clone()),
        labels: Some(labels.into_iter().collect()),
        task_template: Some(TaskSpec {
            container_spec: Some(container_spec),
            resources,
            restart_policy,
            placement,
            networks: (!networks.is_empty()).then_some(networks),
            log_driver,
            ..Default::default()
        }),
        mode: Some(mode),
        update_config,
        rollback_config,
        endpoint_spec: Some(endpoint_spec),
        ..Default::default()
    };
    Ok(ServicePlan {
        key: key.to_string(),
        name,
        spec: super::diff::with_spec_hash(spec),
        secrets: secret_keys,
        configs: config_keys,
    })
}

fn file_owner(r: &crate::stack::model::FileReference) -> (String, String, u32) {
    match r {
        crate::stack::model::FileReference::Long(l) => (
            l.uid.clone().unwrap_or_else(|| "0".into()),
            l.gid.clone().unwrap_or_else(|| "0".into()),
            l.mode.unwrap_or(0o444),
        ),
        _ => ("0".into(), "0".into(), 0o444),
    }
}

/// `update_config`/`rollback_config`: when the block exists, parallelism defaults to 1 (the raw
/// API's 0 would update every task at once), the rest to the server's defaults.
fn convert_update_config(
    u: &UpdateConfig,
    path: &str,
    problems: &mut Problems,
) -> ServiceSpecUpdateConfig {
    ServiceSpecUpdateConfig {
        parallelism: Some(u.parallelism.unwrap_or(1) as i64),
        delay: nanos(&u.delay, &format!("{path}.delay"), problems),
        failure_action: u.failure_action.as_deref().map(|f| match f {
            "continue" => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
            "rollback" => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
            _ => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
        }),
        monitor: nanos(&u.monitor, &format!("{path}.monitor"), problems),
        max_failure_ratio: u.max_failure_ratio,
        order: u.order.as_deref().map(|o| match o {
            "start-first" => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
            _ => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
        }),
    }
}
