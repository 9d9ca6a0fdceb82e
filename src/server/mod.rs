//! The bundled Arsenal-compatible server (`zenkoctl serve`): the metadata service (socket.io
//! RPC, 9990) and the data service (REST blobs, 9991), in one process by default.
//!
//! - [`data`]: the data service;
//! - [`observe`]: health, Prometheus metrics and request-id logging, shared by both services;
//! - this module: the orchestration — which services run, readiness, signals, shutdown.

pub mod data;
pub mod observe;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use self::data::{DataConfig, DataServer};
use self::observe::Observability;
use crate::output::{coded, Exit};

/// Which services a `serve` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Services {
    Both,
    MetadataOnly,
    DataOnly,
}

/// Where metadata is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataBackend {
    Embedded,
    Mongodb,
}

/// Settings of the metadata service (accepted now; the service itself is built separately).
#[derive(Debug, Clone)]
pub struct MetadataConfig {
    pub addr: SocketAddr,
    pub path: PathBuf,
    pub replication_group_id: String,
    pub backend: MetadataBackend,
    pub mongodb_uri: Option<String>,
    pub mongodb_database: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub services: Services,
    pub data: DataConfig,
    pub metadata: MetadataConfig,
}

/// Runs the configured services until SIGTERM or SIGINT, then shuts down gracefully.
/// `on_ready(service, addr)` is called once per service when it accepts connections.
pub fn run(config: ServeConfig, on_ready: impl Fn(&str, SocketAddr)) -> anyhow::Result<()> {
    check_buildable(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("zenkoctl-serve")
        .build()
        .context("cannot start the server runtime")?;
    runtime.block_on(async {
        // Signals are watched before the (possibly slow) setup, so an early SIGTERM still
        // means a clean stop rather than the default kill.
        let shutdown = shutdown_signal().context("cannot watch SIGTERM/SIGINT")?;
        serve(config, shutdown, on_ready).await
    })
}

/// Fails early, before anything is bound, when a requested service is not available.
fn check_buildable(config: &ServeConfig) -> anyhow::Result<()> {
    if config.services != Services::DataOnly {
        return Err(coded(
            Exit::NotImplemented,
            anyhow::anyhow!(
                "metadata service not built yet; run the data service alone with `--only data`"
            ),
        ));
    }
    Ok(())
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
    on_ready: impl Fn(&str, SocketAddr),
) -> anyhow::Result<()> {
    check_buildable(&config)?;
    let obs = Observability::new();
    let data = DataServer::bind(&config.data, obs.clone()).await?;
    let addr = data.local_addr()?;
    tracing::info!(%addr, path = %config.data.path.display(), "data service listening");
    on_ready("data", addr);
    data.run(shutdown).await
}

/// Watches SIGTERM (what Docker sends on stop) and SIGINT from now on; the returned future
/// resolves on the first of them. Must be called inside the runtime.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    })
}
