//! The client-side spec diff.
//!
//! Every `ServiceUpdate` call makes Swarm overwrite the service's `PreviousSpec` (its one-level
//! rollback target) and reset its update status, even when the spec is identical; so a deploy
//! must not send updates that change nothing.
//!
//! What the engine returns on inspect is not byte-for-byte what was sent: the server fills in
//! defaults (`Isolation: default`, `EndpointSpec.Mode: vip`, empty maps) and the deployer fills in
//! secret IDs. So two checks are combined:
//! - the desired spec carries [`SPEC_HASH_LABEL`], the hash of its own canonical JSON: when the
//!   compose file changes (including a setting that was *removed*), the hash changes;
//! - every field the desired spec sets must have the same value in the engine's spec (a subset
//!   match after normalisation): this catches drift, e.g. a `docker service update` by hand,
//!   which the hash alone would miss.

use serde_json::Value;

use bollard::models::ServiceSpec;

use super::SPEC_HASH_LABEL;

/// Adds the spec-hash label (computed without it) to a spec.
pub fn with_spec_hash(mut spec: ServiceSpec) -> ServiceSpec {
    let hash = spec_hash(&spec);
    spec.labels
        .get_or_insert_with(Default::default)
        .insert(SPEC_HASH_LABEL.into(), hash);
    spec
}

/// The hash of a spec's canonical JSON (object keys sorted, the hash label left out).
pub fn spec_hash(spec: &ServiceSpec) -> String {
    let mut value = serde_json::to_value(spec).unwrap_or(Value::Null);
    if let Some(labels) = value.pointer_mut("/Labels").and_then(Value::as_object_mut) {
        labels.remove(SPEC_HASH_LABEL);
    }
    let canonical = normalise(&value).unwrap_or(Value::Null);
    let text = serde_json::to_string(&canonical).unwrap_or_default();
    super::sha256_hex(text.as_bytes())[..16].to_string()
}

/// Drops what carries no setting: nulls, empty strings, empty lists and maps, zero numbers and
/// `false` (Go's `omitempty` makes them equivalent to absent on the wire). `None` if nothing
/// is left. Object keys come out sorted: bollard's maps are `HashMap`s, and serde_json keeps
/// insertion order once any crate in the build enables its `preserve_order` feature (bson
/// does), so sorting here is what makes the hash deterministic.
pub fn normalise(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Bool(false) => None,
        Value::String(s) if s.is_empty() => None,
        Value::Number(n) if n.as_f64() == Some(0.0) => None,
        Value::Array(items) => {
            let items: Vec<Value> = items
                .iter()
                .map(|v| normalise(v).unwrap_or(Value::Null))
                .collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(map) => {
            let sorted: std::collections::BTreeMap<&String, Value> = map
                .iter()
                .filter_map(|(k, v)| normalise(v).map(|v| (k, v)))
                .collect();
            let map: serde_json::Map<String, Value> =
                sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect();
            (!map.is_empty()).then_some(Value::Object(map))
        }
        other => Some(other.clone()),
    }
}

/// The paths (`/TaskTemplate/ContainerSpec/Env/2`) where `actual` does not have what `desired`
/// sets. Arrays must match in length and order (the converter sorts them).
pub fn subset_differences(desired: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let d = normalise(desired);
    let a = normalise(actual);
    walk(d.as_ref(), a.as_ref(), String::new(), &mut out);
    out
}

fn walk(desired: Option<&Value>, actual: Option<&Value>, path: String, out: &mut Vec<String>) {
    let Some(desired) = desired else { return };
    match (desired, actual) {
        (Value::Object(d), Some(Value::Object(a))) => {
            for (k, v) in d {
                walk(Some(v), a.get(k), format!("{path}/{k}"), out);
            }
        }
        (Value::Array(d), Some(Value::Array(a))) if d.len() == a.len() => {
            for (i, (dv, av)) in d.iter().zip(a).enumerate() {
                walk(Some(dv), Some(av), format!("{path}/{i}"), out);
            }
        }
        (d, Some(a)) if d == a => {}
        _ => out.push(if path.is_empty() { "/".into() } else { path }),
    }
}

/// What a deploy must do with one service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Change {
    Create,
    Unchanged,
    /// Fields that differ (JSON pointers into the spec); empty when only removed settings
    /// changed the spec hash.
    Update {
        fields: Vec<String>,
    },
    /// The mode (replicated/global/job) changed: Swarm refuses that in place.
    Recreate {
        reason: String,
    },
}

/// Compares a desired spec with the engine's current spec of the same service.
pub fn compare(desired: &ServiceSpec, current: &ServiceSpec) -> Change {
    let mode_kind = |s: &ServiceSpec| {
        s.mode.as_ref().map(|m| {
            if m.global.is_some() {
                "global"
            } else if m.replicated_job.is_some() {
                "replicated-job"
            } else if m.global_job.is_some() {
                "global-job"
            } else {
                "replicated"
            }
        })
    };
    let (dm, cm) = (
        mode_kind(desired).unwrap_or("replicated"),
        mode_kind(current).unwrap_or("replicated"),
    );
    if dm != cm {
        return Change::Recreate {
            reason: format!("mode changes from {cm} to {dm}"),
        };
    }
    let d = serde_json::to_value(desired).unwrap_or(Value::Null);
    let c = serde_json::to_value(current).unwrap_or(Value::Null);
    let fields = subset_differences(&d, &c);
    let hash = |s: &ServiceSpec| {
        s.labels
            .as_ref()
            .and_then(|l| l.get(SPEC_HASH_LABEL).cloned())
    };
    if fields.is_empty() && hash(desired) == hash(current) {
        Change::Unchanged
    } else {
        Change::Update { fields }
    }
}
