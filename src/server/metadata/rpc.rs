//! The protocol edge: socket.io namespaces `/MDFile/metadata` and `/MDFile/recordLog`, the `call`
//! event with its ack (§2), the manifest, and handing stream results to [`super::stream`].
//!
//! socketioxide (Engine.IO 4 / socket.io 5, polling and websocket) carries the transport. What we
//! rely on, checked by tests/metadata_wire.rs against the spec's transcripts: an ack whose payload
//! is the two-element array `[null, result]` (we send a 2-tuple, which socketioxide spreads into
//! ack arguments), events that request acks with a timeout (`stream-data`/`stream-end`), several
//! namespaces on one Engine.IO session, `\x1e`-batched polling bodies, and `CONNECT_ERROR
//! {"message":"Invalid namespace"}` for unknown namespaces.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use tokio::sync::watch;

use super::errors::MdError;
use super::metrics::Metrics;
use super::service::{uuid_v4, ItemStream, MetadataService};
use super::stream;

pub const METADATA_NS: &str = "/MDFile/metadata";
pub const RECORD_LOG_NS: &str = "/MDFile/recordLog";
const DEFAULT_LOG_NAME: &str = "s3-recordlog";

/// The reference registers synchronous methods first, then asynchronous ones (§2.5).
const METADATA_API: &[&str] = &[
    "createReadStream",
    "rawListKeys",
    "getUUID",
    "put",
    "del",
    "get",
    "getDiskUsage",
];
const RECORD_LOG_API: &[&str] = &["createLogRecordOps", "pruneRecords", "readRecords"];

fn manifest(api: &[&str]) -> Value {
    json!({
        "apiVersion": "1.0",
        "api": api.iter().map(|n| json!({"name": n})).collect::<Vec<_>>(),
    })
}

/// All arguments of an event after its name, whatever their number and types: a wrong shape is
/// answered with an error ack instead of being dropped by the extractor (which would leave the
/// caller waiting 30 s for its timeout).
struct Args(Vec<Value>);

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Args;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("event arguments")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Args, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element::<Value>()? {
                    v.push(x);
                }
                Ok(Args(v))
            }
        }
        // A tuple (not a seq): socketioxide then hands us every argument, not only the first.
        d.deserialize_tuple(usize::MAX, V)
    }
}

/// Streams a socket is producing, by stream id, so `stream-hangup` and disconnects stop them.
#[derive(Default)]
pub struct StreamRegistry(Mutex<HashMap<String, watch::Sender<bool>>>);

impl StreamRegistry {
    fn register(&self, id: &str) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        self.0
            .lock()
            .expect("stream registry")
            .insert(id.to_string(), tx);
        rx
    }

    /// Stop one stream. Unknown or finished ids are ignored quietly (the client hangs up after
    /// every normal end, §3.5).
    pub fn hangup(&self, id: &str) {
        if let Some(tx) = self.0.lock().expect("stream registry").remove(id) {
            let _ = tx.send(true);
        }
    }

    pub fn forget(&self, id: &str) {
        self.0.lock().expect("stream registry").remove(id);
    }

    fn hangup_all(&self) {
        for (_, tx) in self.0.lock().expect("stream registry").drain() {
            let _ = tx.send(true);
        }
    }
}

/// Register both namespaces on `io`.
pub fn attach(io: &SocketIo, svc: Arc<MetadataService>, metrics: Arc<Metrics>) {
    let record_log = svc.record_log_name().is_some();
    for (ns, kind) in [(METADATA_NS, Ns::Metadata), (RECORD_LOG_NS, Ns::RecordLog)] {
        if kind == Ns::RecordLog && !record_log {
            continue; // the reference serves it only when the record log is enabled (§2.1)
        }
        let svc = svc.clone();
        let metrics = metrics.clone();
        // socketioxide replies to a namespace CONNECT before it spawns the connect handler, and
        // socket.io-client flushes the calls it buffered as soon as that reply arrives: a call
        // could reach a socket with no "call" handler yet and be dropped without an ack. The
        // handlers are therefore registered by a middleware, which runs before the reply.
        let register = async move |s: SocketRef| {
            on_connect(s, kind, svc, metrics);
            Ok::<(), std::convert::Infallible>(())
        };
        io.ns(ns, (async || {}).with(register));
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ns {
    Metadata,
    RecordLog,
}

fn on_connect(s: SocketRef, kind: Ns, svc: Arc<MetadataService>, metrics: Arc<Metrics>) {
    metrics.socket_connected();
    let streams = Arc::new(StreamRegistry::default());
    {
        let streams = streams.clone();
        let metrics = metrics.clone();
        s.on(
            "call",
            async move |s: SocketRef, TryData(args): TryData<Args>, ack: AckSender| {
                let args = args.map(|a| a.0).unwrap_or_default();
                let method = args
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or("<none>")
                    .to_string();
                let timer = metrics.call_started(&method);
                let reply = dispatch(kind, &svc, &streams, &args).await;
                let code = reply.as_ref().map_or_else(MdError::code, |_| 200);
                let sent = match reply {
                    Ok(Reply::Value(v)) => ack.send(&(Value::Null, v)).map(|_| None),
                    Ok(Reply::Stream {
                        result,
                        id,
                        items,
                        cancel,
                    }) => ack
                        .send(&(Value::Null, result))
                        .map(|_| Some((id, items, cancel))),
                    Err(e) => {
                        if matches!(e, MdError::Internal(_) | MdError::NotImplemented(_)) {
                            tracing::warn!(ns = s.ns(), method, error = %e, "metadata call failed");
                        }
                        ack.send(&(e.to_wire(),)).map(|_| None)
                    }
                };
                metrics.call_done(timer, code);
                match sent {
                    // The marker is queued before the first stream-data (§3.3).
                    Ok(Some((id, items, cancel))) => {
                        let streams = streams.clone();
                        let metrics = metrics.clone();
                        tokio::spawn(async move {
                            stream::produce(s, &id, items, cancel, &metrics).await;
                            streams.forget(&id);
                        });
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(method, error = %e, "could not send a call ack");
                    }
                }
            },
        );
    }
    {
        let streams = streams.clone();
        s.on(
            "stream-hangup",
            async move |TryData(args): TryData<Args>| {
                let id = args
                    .ok()
                    .and_then(|a| a.0.into_iter().next())
                    .and_then(|v| v.get("streamId").and_then(Value::as_str).map(String::from));
                if let Some(id) = id {
                    streams.hangup(&id);
                }
            },
        );
    }
    s.on_disconnect(async move || {
        streams.hangup_all();
        metrics.socket_disconnected();
    });
}

enum Reply {
    Value(Value),
    Stream {
        result: Value,
        id: String,
        items: ItemStream,
        cancel: watch::Receiver<bool>,
    },
}

fn stream_marker(id: &str) -> Value {
    json!({"$streamId": id, "readable": true, "writable": false})
}

async fn dispatch(
    kind: Ns,
    svc: &Arc<MetadataService>,
    streams: &StreamRegistry,
    args: &[Value],
) -> Result<Reply, MdError> {
    let method = match args.first() {
        Some(Value::String(m)) => m.as_str(),
        other => {
            return Err(MdError::InvalidArgument(format!(
                "call: the method name must be a string, got {}",
                other.map_or("nothing".into(), Value::to_string)
            )))
        }
    };
    let envelope = match args.get(1) {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => &serde_json::Map::new(),
        Some(other) => {
            return Err(MdError::InvalidArgument(format!(
                "call {method}: the envelope must be an object, got {other}"
            )))
        }
    };
    let rpc_args: &[Value] = match envelope.get("rpcArgs") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => &[],
        Some(other) => {
            return Err(MdError::InvalidArgument(format!(
                "call {method}: rpcArgs must be an array, got {other}"
            )))
        }
    };
    let arg = |i: usize| rpc_args.get(i).unwrap_or(&Value::Null);
    let new_stream = |items: ItemStream, wrap: &dyn Fn(Value) -> Value| {
        let id = uuid_v4();
        let cancel = streams.register(&id);
        Reply::Stream {
            result: wrap(stream_marker(&id)),
            id,
            items,
            cancel,
        }
    };
    match kind {
        Ns::Metadata => {
            let path: Vec<String> = match envelope.get("subLevel") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(MdError::InvalidArgument(format!(
                            "call {method}: subLevel elements must be strings, got {other}"
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
                Some(other) => {
                    return Err(MdError::InvalidArgument(format!(
                        "call {method}: subLevel must be an array, got {other}"
                    )))
                }
            };
            Ok(match method {
                "getManifest" => Reply::Value(manifest(METADATA_API)),
                "get" => Reply::Value(svc.get(&path, arg(0), arg(1)).await?),
                "put" => Reply::Value(svc.put(&path, arg(0), arg(1), arg(2)).await?),
                "del" => Reply::Value(svc.del(&path, arg(0), arg(1)).await?),
                "getUUID" => Reply::Value(Value::String(svc.uuid().to_string())),
                "getDiskUsage" => Reply::Value(svc.disk_usage()?),
                "createReadStream" => {
                    let items = svc.create_read_stream(&path, rpc_args.first()).await?;
                    new_stream(items, &|m| m)
                }
                "rawListKeys" => {
                    let items = svc.raw_list_keys(rpc_args.first()).await?;
                    new_stream(items, &|m| m)
                }
                other => return Err(unknown_method(other)),
            })
        }
        Ns::RecordLog => {
            let log_name = envelope
                .get("logName")
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_LOG_NAME);
            Ok(match method {
                "getManifest" => Reply::Value(manifest(RECORD_LOG_API)),
                "readRecords" => {
                    let (info, items) = svc.read_records(log_name, arg(0)).await?;
                    new_stream(items, &move |m| {
                        let mut info = info.clone();
                        info["log"] = m;
                        info
                    })
                }
                "pruneRecords" => return Err(MdError::NotImplemented(String::new())),
                "createLogRecordOps" => {
                    return Err(MdError::NotImplemented(
                        "createLogRecordOps is internal to the server: log records are written with every batch".into(),
                    ))
                }
                other => return Err(unknown_method(other)),
            })
        }
    }
}

fn unknown_method(name: &str) -> MdError {
    MdError::InvalidArgument(format!("unknown method {name:?}"))
}
