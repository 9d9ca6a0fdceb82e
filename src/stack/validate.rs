//! Semantic checks of a compose file beyond its types: what Swarm would reject at deploy time
//! (often half-way, after networks and secrets were already created), checked up front.
//! All problems are collected, each with the key path it is at.

use std::collections::{HashMap, HashSet};

use super::location::KeyPath;
use super::model::{
    parse_bytes, parse_duration, ComposeFile, FileReference, Port, PublishedPort, Scalar, Service,
};

/// One problem: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: KeyPath,
    pub message: String,
}

/// Longest service or network name swarmkit accepts (a DNS label).
pub const MAX_NAME_LEN: usize = 63;
/// Longest secret or config name swarmkit accepts.
pub const MAX_SECRET_NAME_LEN: usize = 64;

/// swarmkit's rule for service and network names: `^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`.
pub fn is_valid_object_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// swarmkit's rule for secret and config names: `^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$`.
pub fn is_valid_secret_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_SECRET_NAME_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// A port mapping after parsing either syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub target: u16,
    pub published: Option<u16>,
    pub protocol: String,
    pub mode: String,
}

fn port_number(text: &str) -> Result<u16, String> {
    match text.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(format!(
            "invalid port {text:?}: must be a number from 1 to 65535"
        )),
    }
}

/// Expands one `ports:` entry into mappings (ranges give several).
pub fn parse_port(port: &Port) -> Result<Vec<PortMapping>, String> {
    match port {
        Port::Number(n) => Ok(vec![PortMapping {
            target: port_number(&n.to_string())?,
            published: None,
            protocol: "tcp".into(),
            mode: "ingress".into(),
        }]),
        Port::Long(long) => {
            let protocol = long.protocol.clone().unwrap_or_else(|| "tcp".into());
            check_protocol(&protocol)?;
            let mode = long.mode.clone().unwrap_or_else(|| "ingress".into());
            if mode != "ingress" && mode != "host" {
                return Err(format!("invalid port mode {mode:?}: use ingress or host"));
            }
            let published = match &long.published {
                None => None,
                Some(PublishedPort::Number(n)) => Some(port_number(&n.to_string())?),
                Some(PublishedPort::String(s)) => Some(port_number(s)?),
            };
            Ok(vec![PortMapping {
                target: port_number(&long.target.to_string())?,
                published,
                protocol,
                mode,
            }])
        }
        Port::Short(text) => {
            let (spec, protocol) = match text.split_once('/') {
                Some((s, p)) => (s, p.to_string()),
                None => (text.as_str(), "tcp".to_string()),
            };
            check_protocol(&protocol)?;
            let parts: Vec<&str> = spec.split(':').collect();
            let (published, target) = match parts.as_slice() {
                [target] => (None, *target),
                [published, target] => (Some(*published), *target),
                [_ip, _, _] => {
                    return Err(format!(
                        "port {text:?} binds a host IP, which Swarm does not support"
                    ))
                }
                _ => return Err(format!("invalid port {text:?}")),
            };
            let targets = port_range(target)?;
            let published = published.map(port_range).transpose()?;
            if let Some(p) = &published {
                if p.len() != targets.len() {
                    return Err(format!("port ranges in {text:?} have different lengths"));
                }
            }
            Ok(targets
                .iter()
                .enumerate()
                .map(|(i, t)| PortMapping {
                    target: *t,
                    published: published.as_ref().map(|p| p[i]),
                    protocol: protocol.clone(),
                    mode: "ingress".into(),
                })
                .collect())
        }
    }
}

fn port_range(text: &str) -> Result<Vec<u16>, String> {
    match text.split_once('-') {
        None => Ok(vec![port_number(text)?]),
        Some((a, b)) => {
            let (a, b) = (port_number(a)?, port_number(b)?);
            if a > b {
                return Err(format!("invalid port range {text:?}"));
            }
            Ok((a..=b).collect())
        }
    }
}

fn check_protocol(protocol: &str) -> Result<(), String> {
    match protocol {
        "tcp" | "udp" | "sctp" => Ok(()),
        other => Err(format!("invalid protocol {other:?}: use tcp, udp or sctp")),
    }
}

/// Checks a placement constraint: `<attribute> ==|!= <value>`, with the attributes Swarm knows.
pub fn check_constraint(constraint: &str) -> Result<(), String> {
    let (attr, op, value) = ["==", "!="]
        .iter()
        .find_map(|op| {
            constraint
                .split_once(op)
                .map(|(a, v)| (a.trim(), *op, v.trim()))
        })
        .ok_or_else(|| format!("constraint {constraint:?} has no == or != operator"))?;
    let _ = op;
    if value.is_empty() {
        return Err(format!("constraint {constraint:?} has no value"));
    }
    let label_ok = |prefix: &str| {
        attr.strip_prefix(prefix)
            .is_some_and(|l| !l.is_empty() && !l.contains(char::is_whitespace))
    };
    let known = matches!(
        attr,
        "node.id" | "node.hostname" | "node.role" | "node.platform.os" | "node.platform.arch"
    ) || label_ok("node.labels.")
        || label_ok("engine.labels.");
    if !known {
        return Err(format!(
            "constraint {constraint:?}: unknown attribute {attr:?} (use node.id, node.hostname, \
             node.role, node.platform.os, node.platform.arch, node.labels.<label> or \
             engine.labels.<label>)"
        ));
    }
    if attr == "node.role" && value != "manager" && value != "worker" {
        return Err(format!(
            "constraint {constraint:?}: node.role is manager or worker"
        ));
    }
    Ok(())
}

fn one_of(value: &str, allowed: &[&str], what: &str) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} {value:?}: use one of {}",
            allowed.join(", ")
        ))
    }
}

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn check(&mut self, path: KeyPath, result: Result<(), String>) {
        if let Err(message) = result {
            self.problems.push(Problem { path, message });
        }
    }

    fn duration(&mut self, path: KeyPath, value: &Option<String>) {
        if let Some(v) = value {
            self.check(path, parse_duration(v).map(|_| ()));
        }
    }
}

/// Validates `file` as a stack named `stack`. Returns every problem found.
pub fn validate(file: &ComposeFile, stack: &str) -> Vec<Problem> {
    let mut c = Checker {
        problems: Vec::new(),
    };
    let root = KeyPath::root();
    if file.services.is_empty() {
        c.check(
            root.key("services"),
            Err("the stack has no services".into()),
        );
    }
    if !is_valid_object_name(stack) {
        c.check(
            root,
            Err(format!(
                "stack name {stack:?} is not valid: letters, digits, '-' and '_' only, starting \
                 and ending with a letter or digit (no dots)"
            )),
        );
    }
    let mut published: HashMap<(u16, String), String> = HashMap::new();
    for (name, service) in &file.services {
        let path = KeyPath::root().key("services").key(name.clone());
        check_service(&mut c, file, stack, name, service, &path, &mut published);
    }
    for (name, net) in &file.networks {
        let path = KeyPath::root().key("networks").key(name.clone());
        let external = net.as_ref().and_then(|n| n.external).unwrap_or(false);
        let full = net
            .as_ref()
            .and_then(|n| n.name.clone())
            .unwrap_or_else(|| format!("{stack}_{name}"));
        if !external {
            c.check(
                path.clone(),
                if is_valid_object_name(&full) {
                    Ok(())
                } else {
                    Err(format!(
                        "network name {full:?} is not valid for Swarm (at most {MAX_NAME_LEN} \
                         letters, digits, '-' or '_')"
                    ))
                },
            );
        }
    }
    for (kind, entries) in [("secrets", &file.secrets), ("configs", &file.configs)] {
        for (name, def) in entries {
            let path = KeyPath::root().key(kind).key(name.clone());
            let external = def.external.unwrap_or(false);
            match (&def.file, external) {
                (Some(_), true) => c.check(
                    path.clone(),
                    Err("set either file or external, not both".into()),
                ),
                (None, false) => {
                    c.check(path.clone(), Err("needs a file (or external: true)".into()))
                }
                _ => {}
            }
            if !external {
                let full = def
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{stack}_{name}"));
                c.check(
                    path,
                    if is_valid_secret_name(&full) {
                        Ok(())
                    } else {
                        Err(format!(
                            "name {full:?} is not valid for Swarm (at most \
                             {MAX_SECRET_NAME_LEN} letters, digits, '-', '_' or '.')"
                        ))
                    },
                );
            }
        }
    }
    c.problems
}

fn check_service(
    c: &mut Checker,
    file: &ComposeFile,
    stack: &str,
    name: &str,
    service: &Service,
    path: &KeyPath,
    published: &mut HashMap<(u16, String), String>,
) {
    let full = format!("{stack}_{name}");
    if !is_valid_object_name(&full) {
        c.check(
            path.clone(),
            Err(format!(
                "service name {full:?} is not valid for Swarm (at most {MAX_NAME_LEN} letters, \
                 digits, '-' or '_', starting and ending with a letter or digit)"
            )),
        );
    }
    if service.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        c.check(
            path.key("image"),
            Err("every service needs an image".into()),
        );
    }
    let deploy = service.deploy.clone().unwrap_or_default();
    let dpath = path.key("deploy");
    let endpoint_mode = deploy.endpoint_mode.clone().unwrap_or_else(|| "vip".into());
    c.check(
        dpath.key("endpoint_mode"),
        one_of(&endpoint_mode, &["vip", "dnsrr"], "endpoint_mode"),
    );
    let mode = deploy.mode.clone().unwrap_or_else(|| "replicated".into());
    c.check(
        dpath.key("mode"),
        one_of(
            &mode,
            &["replicated", "global", "replicated-job", "global-job"],
            "deploy mode",
        ),
    );
    if mode.starts_with("global") && deploy.replicas.is_some() {
        c.check(
            dpath.key("replicas"),
            Err("replicas cannot be set on a global service".into()),
        );
    }
    for (i, port) in service.ports.iter().enumerate() {
        let ppath = path.key("ports").index(i);
        match parse_port(port) {
            Err(e) => c.check(ppath, Err(e)),
            Ok(mappings) => {
                for m in mappings {
                    if endpoint_mode == "dnsrr" && m.mode == "ingress" {
                        c.check(
                            ppath.clone(),
                            Err(format!(
                                "port {} is published in ingress mode, which Swarm refuses with \
                                 endpoint_mode dnsrr: use mode: host",
                                m.target
                            )),
                        );
                    }
                    if let Some(p) = m.published {
                        let key = (p, m.protocol.clone());
                        if let Some(other) = published.insert(key, name.to_string()) {
                            if other != name || m.mode == "ingress" {
                                c.check(
                                    ppath.clone(),
                                    Err(format!(
                                        "published port {p}/{} is also published by service \
                                         {other}",
                                        m.protocol
                                    )),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(placement) = &deploy.placement {
        for (i, constraint) in placement.constraints.iter().enumerate() {
            c.check(
                dpath.key("placement").key("constraints").index(i),
                check_constraint(constraint),
            );
        }
        for (i, pref) in placement.preferences.iter().enumerate() {
            let ok = pref.spread.starts_with("node.") || pref.spread.starts_with("engine.");
            c.check(
                dpath.key("placement").key("preferences").index(i),
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "spread preference {:?} must name a node attribute",
                        pref.spread
                    ))
                },
            );
        }
    }
    if let Some(resources) = &deploy.resources {
        for (kind, spec) in [
            ("limits", &resources.limits),
            ("reservations", &resources.reservations),
        ] {
            let Some(spec) = spec else { continue };
            let rpath = dpath.key("resources").key(kind);
            if let Some(cpus) = &spec.cpus {
                let ok = match cpus {
                    Scalar::Int(n) => *n > 0,
                    Scalar::Float(f) => *f > 0.0,
                    Scalar::String(s) => s.parse::<f64>().is_ok_and(|f| f > 0.0),
                    Scalar::Bool(_) => false,
                };
                c.check(
                    rpath.key("cpus"),
                    if ok {
                        Ok(())
                    } else {
                        Err(format!("invalid cpus {cpus}"))
                    },
                );
            }
            if let Some(memory) = &spec.memory {
                c.check(
                    rpath.key("memory"),
                    parse_bytes(&memory.to_string()).map(|_| ()),
                );
            }
        }
    }
    if let Some(rp) = &deploy.restart_policy {
        let rpath = dpath.key("restart_policy");
        if let Some(cond) = &rp.condition {
            c.check(
                rpath.key("condition"),
                one_of(cond, &["none", "on-failure", "any"], "restart condition"),
            );
        }
        c.duration(rpath.key("delay"), &rp.delay);
        c.duration(rpath.key("window"), &rp.window);
    }
    for (key, uc) in [
        ("update_config", &deploy.update_config),
        ("rollback_config", &deploy.rollback_config),
    ] {
        let Some(uc) = uc else { continue };
        let upath = dpath.key(key);
        if let Some(fa) = &uc.failure_action {
            let allowed: &[&str] = if key == "update_config" {
                &["continue", "rollback", "pause"]
            } else {
                &["continue", "pause"]
            };
            c.check(
                upath.key("failure_action"),
                one_of(fa, allowed, "failure_action"),
            );
        }
        if let Some(order) = &uc.order {
            c.check(
                upath.key("order"),
                one_of(order, &["stop-first", "start-first"], "order"),
            );
        }
        c.duration(upath.key("delay"), &uc.delay);
        c.duration(upath.key("monitor"), &uc.monitor);
    }
    if let Some(hc) = &service.healthcheck {
        let hpath = path.key("healthcheck");
        c.duration(hpath.key("interval"), &hc.interval);
        c.duration(hpath.key("timeout"), &hc.timeout);
        c.duration(hpath.key("start_period"), &hc.start_period);
        if hc.disable != Some(true) && hc.test.is_none() {
            c.check(hpath.key("test"), Err("a healthcheck needs a test".into()));
        }
    }
    c.duration(path.key("stop_grace_period"), &service.stop_grace_period);

    check_references(c, "secrets", &service.secrets, &file.secrets, path);
    check_references(c, "configs", &service.configs, &file.configs, path);
    if let Some(networks) = &service.networks {
        for net in networks.names() {
            if net != "default" && !file.networks.contains_key(net) {
                c.check(
                    path.key("networks").key(net),
                    Err(format!(
                        "network {net:?} is not defined in the top-level networks"
                    )),
                );
            }
        }
    }
    for (i, volume) in service.volumes.iter().enumerate() {
        let (kind, source, target, _) = volume.parts();
        let vpath = path.key("volumes").index(i);
        if !target.starts_with('/') {
            c.check(
                vpath.clone(),
                Err(format!("mount target {target:?} must be an absolute path")),
            );
        }
        c.check(
            vpath.clone(),
            one_of(&kind, &["volume", "bind", "tmpfs"], "mount type"),
        );
        if kind == "volume" {
            if let Some(src) = source {
                if !file.volumes.contains_key(&src) {
                    c.check(
                        vpath,
                        Err(format!(
                            "volume {src:?} is not defined in the top-level volumes"
                        )),
                    );
                }
            }
        }
    }
}

fn check_references<T>(
    c: &mut Checker,
    kind: &str,
    refs: &[FileReference],
    defined: &indexmap::IndexMap<String, T>,
    path: &KeyPath,
) {
    let mut targets = HashSet::new();
    for (i, r) in refs.iter().enumerate() {
        let rpath = path.key(kind).index(i);
        if !defined.contains_key(r.source()) {
            c.check(
                rpath.clone(),
                Err(format!(
                    "{} {:?} is referenced but not defined in the top-level {kind}",
                    &kind[..kind.len() - 1],
                    r.source()
                )),
            );
        }
        if !targets.insert(r.target().to_string()) {
            c.check(rpath, Err(format!("duplicate target {:?}", r.target())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_in_both_syntaxes() {
        let p = parse_port(&Port::Short("9990:9991/udp".into())).unwrap();
        assert_eq!(p[0].published, Some(9990));
        assert_eq!(p[0].target, 9991);
        assert_eq!(p[0].protocol, "udp");
        assert_eq!(
            parse_port(&Port::Short("8000-8002:9000-9002".into()))
                .unwrap()
                .len(),
            3
        );
        assert!(parse_port(&Port::Short("99999:1".into())).is_err());
        assert!(parse_port(&Port::Short("0".into())).is_err());
        assert!(parse_port(&Port::Short("127.0.0.1:80:80".into())).is_err());
        assert!(parse_port(&Port::Short("80:80/xyz".into())).is_err());
        assert!(parse_port(&Port::Short("8000-8001:9000".into())).is_err());
    }

    #[test]
    fn constraints() {
        assert!(check_constraint("node.labels.io.zenko.type == storage").is_ok());
        assert!(check_constraint("node.role!=manager").is_ok());
        assert!(check_constraint("node.role == boss").is_err());
        assert!(check_constraint("node.labels.x = y").is_err());
        assert!(check_constraint("nodes.labels.x == y").is_err());
        assert!(check_constraint("node.hostname ==").is_err());
    }

    #[test]
    fn names() {
        assert!(is_valid_object_name("zenko_s3-dmd"));
        assert!(!is_valid_object_name("zenko.prod_s3"));
        assert!(!is_valid_object_name(&"a".repeat(64)));
        assert!(is_valid_secret_name("zenko_s3-credentials.0123abcd"));
        assert!(!is_valid_secret_name("-x"));
    }
}
