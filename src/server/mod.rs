//! The bundled Arsenal-compatible server (`zenkoctl serve`): the metadata service (socket.io
//! RPC, 9990) and the data service (REST blobs, 9991), in one process by default.
//!
//! - [`metadata`]: the metadata service, over [`storage`];
//! - [`data`]: the data service;
//! - [`observe`]: health, Prometheus metrics and request-id logging, shared by both services;
//! - this module: the orchestration — which services run, readiness, signals, shutdown.

pub mod data;
pub mod metadata;
pub mod observe;
pub mod storage;

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

/// Settings of the metadata service, as `serve` takes them.
#[derive(Debug, Clone)]
pub struct MetadataConfig {
    pub addr: SocketAddr,
    pub path: PathBuf,
    pub replication_group_id: String,
    pub backend: MetadataBackend,
    pub mongodb_uri: Option<String>,
    pub mongodb_database: Option<String>,
    /// Initiate the URI's replica set (single node) at start-up if it is not yet.
    pub mongodb_init_replset: bool,
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

/// Fails early, before anything is bound, when the configuration cannot work.
fn check_buildable(config: &ServeConfig) -> anyhow::Result<()> {
    if config.services != Services::DataOnly
        && config.metadata.backend == MetadataBackend::Mongodb
        && config
            .metadata
            .mongodb_uri
            .as_deref()
            .unwrap_or("")
            .is_empty()
    {
        return Err(coded(
            Exit::InvalidInput,
            anyhow::anyhow!(
                "--metadata-backend mongodb needs --mongodb-uri URI or --mongodb-uri-file FILE"
            ),
        ));
    }
    Ok(())
}

impl MetadataConfig {
    fn service_config(&self) -> metadata::MetadataConfig {
        let mut c = metadata::MetadataConfig::new(self.addr, self.path.clone());
        c.replication_group_id = self.replication_group_id.clone();
        c.backend = match self.backend {
            MetadataBackend::Embedded => metadata::Backend::Embedded,
            MetadataBackend::Mongodb => metadata::Backend::MongoDb {
                uri: self.mongodb_uri.clone().unwrap_or_default(),
                database: self
                    .mongodb_database
                    .clone()
                    .unwrap_or_else(|| metadata::DEFAULT_MONGODB_DATABASE.into()),
                init_replset: self.mongodb_init_replset,
            },
        };
        c
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
    on_ready: impl Fn(&str, SocketAddr),
) -> anyhow::Result<()> {
    check_buildable(&config)?;
    let obs = Observability::new();
    // Bind everything first, so a port in use fails the whole start before anything serves.
    let md = match config.services {
        Services::DataOnly => None,
        _ => Some(
            metadata::MetadataServer::bind(config.metadata.service_config(), obs.clone()).await?,
        ),
    };
    let data = match config.services {
        Services::MetadataOnly => None,
        _ => Some(DataServer::bind(&config.data, obs.clone()).await?),
    };
    // One shutdown fans out to both services.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let md_task = md.map(|md| {
        on_ready("metadata", md.local_addr());
        tokio::spawn(md.serve(stopped()))
    });
    let data_task = match data {
        Some(data) => {
            let addr = data.local_addr()?;
            tracing::info!(%addr, path = %config.data.path.display(), "data service listening");
            on_ready("data", addr);
            Some(tokio::spawn(data.run(stopped())))
        }
        None => None,
    };
    // Run until the signal, or until a service stops on its own (an error): then stop the
    // other one too rather than serving half of the deployment.
    let mut tasks: Vec<ServiceTask> = [("metadata", md_task), ("data", data_task)]
        .into_iter()
        .filter_map(|(name, t)| t.map(|t| (name, t)))
        .collect();
    let early = tokio::select! {
        _ = shutdown => None,
        done = first_finished(&mut tasks) => Some(done),
    };
    let _ = stop_tx.send(true);
    let mut result = Ok(());
    if let Some((i, outcome)) = early {
        let (name, _) = tasks.remove(i);
        result = match outcome {
            Ok(Ok(())) => Err(anyhow::anyhow!("the {name} service stopped unexpectedly")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::Error::new(e).context(format!("the {name} service task failed"))),
        };
    }
    for (name, task) in tasks {
        let r = task
            .await
            .with_context(|| format!("the {name} service task failed"))
            .and_then(|r| r);
        if result.is_ok() {
            result = r;
        }
    }
    result
}

type ServiceTask<'a> = (&'a str, tokio::task::JoinHandle<anyhow::Result<()>>);

/// The index and outcome of the first task of `tasks` to finish (pending forever if none).
async fn first_finished(
    tasks: &mut [ServiceTask<'_>],
) -> (usize, Result<anyhow::Result<()>, tokio::task::JoinError>) {
    use std::future::Future;
    std::future::poll_fn(|cx| {
        for (i, (_, t)) in tasks.iter_mut().enumerate() {
            if let std::task::Poll::Ready(out) = std::pin::Pin::new(t).poll(cx) {
                return std::task::Poll::Ready((i, out));
            }
        }
        std::task::Poll::Pending
    })
    .await
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
