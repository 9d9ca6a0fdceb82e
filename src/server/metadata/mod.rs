//! The Arsenal-compatible metadata daemon (what CloudServer reaches as `METADATA_HOST:9990`),
//! specified in shared/docs/arsenal-protocol.md §1–§4.
//!
//! - [`rpc`]: socket.io namespaces, the `call` event, acks, errors, manifests;
//! - [`stream`]: the sio-stream producer (acks, window, timeouts, hangups);
//! - [`service`]: the metadata API and the record log over a [`Store`];
//! - [`versioning`]: S3 versioning semantics (§5) above the storage trait;
//! - [`keys`]: level-sublevel's raw key layout and LevelUP's read-stream options;
//! - [`errors`], [`metrics`].
//!
//! Entry points: [`MetadataServer::bind`] then [`MetadataServer::serve`], or [`run`]. The same
//! port also answers the process-wide `GET /_/health` and `GET /_/metrics` of
//! [`crate::server::observe`] (the metadata series are `zenkoctl_requests_*{service="metadata"}`
//! plus the `zenko_metadata_*` socket and stream counters).
//!
//! # Where we knowingly differ from the reference (all invisible to Arsenal's clients)
//!
//! - Versioning requests (`put` with `versioning`/`versionId`, `get`/`del` with `versionId`)
//!   are refused with `NotImplemented` and write nothing, until issue 8 adds the VRP.
//! - The stream window is exactly 4 unacknowledged `stream-data` (the reference lets a 5th
//!   through before its first ack); batches grow from 16 to 512 items per event.
//! - A failing stream source gets a `stream-error` (the reference sends nothing).
//! - Unknown methods get a flattened `InvalidArgument` (the reference sends the unflattened
//!   `{"InvalidArgument":true}`; the client reads both the same way).
//! - Arguments of the wrong type get an `InvalidArgument` ack (the reference may throw, which
//!   leaves the caller waiting for its 30 s timeout); numbers and booleans used as keys are
//!   coerced with JavaScript's `String()` like the reference.
//! - `createLogRecordOps` (internal to the reference) answers `NotImplemented`.
//! - `keys:false, values:false` gives an empty stream.
//!
//! The default-bound quirk of sublevel scans (`gte "\0"`, `lte "\uFFFF"`, so the empty key and
//! keys above U+FFFF are not listed by default) is reproduced on purpose: S3 listings then
//! match upstream exactly.

pub mod errors;
pub mod keys;
pub mod metrics;
pub mod rpc;
pub mod service;
pub mod stream;
pub mod versioning;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use socketioxide::SocketIo;

use crate::server::observe::{HealthCheck, Observability, HEALTH_PATH, METRICS_PATH};
use crate::server::storage::mongo::{MongoConfig, MongoStore};
use crate::server::storage::redb_store::RedbStore;
use crate::server::storage::Store;
use metrics::Metrics;
use service::MetadataService;

/// Which storage backend holds the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// redb, in `<path>/metadata.redb` (the default).
    Embedded,
    /// MongoDB (src/server/storage/mongo): the connection string and the deployment's database;
    /// `init_replset`: initiate the URI's replica set at start-up if it is not yet.
    MongoDb {
        uri: String,
        database: String,
        init_replset: bool,
    },
}

/// The MongoDB database when `--mongodb-database` is not given (the stack values' default).
pub const DEFAULT_MONGODB_DATABASE: &str = "zenko";

#[derive(Debug, Clone)]
pub struct MetadataConfig {
    /// Listen address (default 0.0.0.0:9990).
    pub addr: SocketAddr,
    /// Directory of the deployment's metadata (`uuid` file, embedded database).
    pub path: PathBuf,
    pub backend: Backend,
    /// Record log name when the record log is enabled (CloudServer's default: `s3-recordlog`).
    pub record_log: Option<String>,
    /// Replication group id for version ids (default `RG001`, like the reference).
    pub replication_group_id: String,
}

impl MetadataConfig {
    pub fn new(addr: SocketAddr, path: PathBuf) -> Self {
        MetadataConfig {
            addr,
            path,
            backend: Backend::Embedded,
            record_log: Some("s3-recordlog".into()),
            replication_group_id: "RG001".into(),
        }
    }
}

/// A bound, not yet serving, metadata server.
pub struct MetadataServer {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    io: SocketIo,
    service: Arc<MetadataService>,
}

#[derive(Clone)]
struct AppState {
    service: Arc<MetadataService>,
    metrics: Arc<Metrics>,
    obs: Arc<Observability>,
}

/// Readiness of the metadata service: its store accepts work.
struct StoreHealth(Arc<dyn Store>);

impl HealthCheck for StoreHealth {
    fn service(&self) -> &str {
        "metadata"
    }
    fn check(&self) -> Result<(), String> {
        self.0.status()
    }
}

impl MetadataServer {
    /// Open the store and bind the listener (port 0 picks a free port: see [`Self::local_addr`]).
    pub async fn bind(config: MetadataConfig, obs: Arc<Observability>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.path)
            .with_context(|| format!("metadata service: creating {}", config.path.display()))?;
        // The deployment id: a file next to the embedded store; in MongoDB with the mongodb
        // backend, so a server rescheduled to another node (or a second instance) answers the
        // same id.
        let (store, uuid): (Arc<dyn Store>, String) = match &config.backend {
            Backend::Embedded => {
                let file = config.path.join("metadata.redb");
                let store = RedbStore::open(&file).with_context(|| {
                    format!(
                        "metadata service: opening the embedded store {}",
                        file.display()
                    )
                })?;
                let uuid = service::load_or_create_uuid(&config.path)
                    .context("metadata service: the deployment id")?;
                (Arc::new(store), uuid)
            }
            Backend::MongoDb {
                uri,
                database,
                init_replset,
            } => {
                let mut mc = MongoConfig::new(uri.clone(), database.clone());
                mc.init_replset = *init_replset;
                let store = MongoStore::open(mc).await.with_context(|| {
                    format!("metadata service: opening the mongodb store (database {database:?})")
                })?;
                let candidate = match service::read_uuid_file(&config.path)
                    .context("metadata service: the deployment id")?
                {
                    Some(id) => id,
                    None => service::uuid_v4(),
                };
                let uuid = store.deployment_uuid(&candidate).await.with_context(|| {
                    format!("metadata service: the deployment id in MongoDB database {database:?}")
                })?;
                (Arc::new(store), uuid)
            }
        };
        let service = Arc::new(
            MetadataService::open(store, &config.path, uuid, config.record_log.clone())
                .await
                .context("metadata service: opening")?
                .with_replication_group_id(&config.replication_group_id),
        );
        obs.add_check(Arc::new(StoreHealth(service.store().clone())));
        let metrics = Arc::new(Metrics::new(obs.service("metadata")));
        let (layer, io) = SocketIo::builder()
            .req_path("/socket.io")
            .ping_interval(Duration::from_millis(25_000))
            .ping_timeout(Duration::from_millis(20_000))
            // The reference's maxHttpBufferSize (1e8), announced as maxPayload in the handshake;
            // the same bound for websocket messages (socket.io-client sends one frame each).
            .max_payload(100_000_000)
            .ws_max_message_size(100_000_000)
            .ws_max_frame_size(100_000_000)
            // Packets queued per socket before emits fail. socketioxide's default (128) is
            // below what one CloudServer process pipelines on its single socket (every call's
            // ack is a packet); a refused ack would cost the caller its 30 s timeout. Streams
            // add at most their window, so this bounds memory without being reachable in use.
            .max_buffer_size(16_384)
            .ack_timeout(stream::ACK_TIMEOUT)
            .build_layer();
        rpc::attach(&io, service.clone(), metrics.clone());
        let router = axum::Router::new()
            .route(HEALTH_PATH, get(health))
            .route(METRICS_PATH, get(render_metrics))
            .with_state(AppState {
                service: service.clone(),
                metrics,
                obs,
            })
            .layer(layer);
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("metadata service: binding {}", config.addr))?;
        Ok(MetadataServer {
            listener,
            router,
            io,
            service,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener")
    }

    pub fn service(&self) -> &Arc<MetadataService> {
        &self.service
    }

    /// Serve until `shutdown` resolves, then close every socket.io session and return.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        tracing::info!(%addr, "metadata service listening");
        let io = self.io.clone();
        // Without TCP_NODELAY, the small frames of an ack followed by stream events wait for
        // the peer's delayed ACK (~40 ms per exchange).
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "metadata service: cannot set TCP_NODELAY");
            }
        });
        axum::serve(listener, self.router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                io.close().await;
            })
            .await
            .with_context(|| format!("metadata service on {addr}"))
    }
}

/// Bind and serve until `shutdown` resolves (metadata alone, with its own observability).
pub async fn run(
    config: MetadataConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    MetadataServer::bind(config, Observability::new())
        .await?
        .serve(shutdown)
        .await
}

/// The process-wide health, plus an end-to-end read through the metadata store.
async fn health(State(st): State<AppState>) -> impl IntoResponse {
    let answer = st.obs.answer(HEALTH_PATH).expect("health path");
    if answer.status == StatusCode::OK {
        if let Err(e) = st.service.store().check().await {
            let doc = serde_json::json!({
                "status": "unavailable",
                "failures": [format!("metadata: store {}: {e}", st.service.store().backend())],
            });
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [("content-type", "application/json")],
                format!("{doc}\n"),
            );
        }
    }
    (
        answer.status,
        [("content-type", answer.content_type)],
        String::from_utf8_lossy(&answer.body).into_owned(),
    )
}

async fn render_metrics(State(st): State<AppState>) -> impl IntoResponse {
    let answer = st.obs.answer(METRICS_PATH).expect("metrics path");
    let mut body = String::from_utf8_lossy(&answer.body).into_owned();
    body.push_str(&st.metrics.render());
    ([("content-type", answer.content_type)], body)
}
