//! The data service: Arsenal's `/DataFile` blob protocol (spec §6) on a data directory in
//! Arsenal's `DataFileStore` layout.
//!
//! - [`store`]: the directory, its layout, durable uploads (the service layer);
//! - [`range`]: `Range` header semantics of the reference;
//! - [`http`]: routing, handlers and Arsenal's error encoding (the protocol edge);
//! - [`body`]: streaming file bodies;
//! - [`zerocopy`]: the connection I/O that sends file chunks with `sendfile`;
//! - [`DataServer`]: the listener, connections and graceful shutdown.

pub mod body;
pub mod http;
pub mod range;
pub mod store;
pub mod zerocopy;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use self::http::DataService;
use self::store::DataStore;
use self::zerocopy::{Slots, ZeroCopyStream};
use crate::server::observe::{HealthCheck, Observability};

/// Idle keep-alive connections are kept at least this long: Arsenal's client agent drops idle
/// sockets after 55 s and the reference server keeps them 60 s (spec §6.1).
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// How the data service runs.
#[derive(Debug, Clone)]
pub struct DataConfig {
    pub addr: SocketAddr,
    pub path: PathBuf,
    /// How long in-flight requests may take to finish after a shutdown request.
    pub drain_timeout: Duration,
    /// Write uploads with `O_DIRECT` where the filesystem supports it.
    pub direct_io: bool,
}

/// A bound, ready data service.
pub struct DataServer {
    listener: TcpListener,
    service: Arc<DataService>,
    drain_timeout: Duration,
}

/// Health of the data service: the data directory accepts a new file right now.
struct Writable(Arc<DataStore>);

impl HealthCheck for Writable {
    fn service(&self) -> &str {
        "data"
    }
    fn check(&self) -> Result<(), String> {
        self.0.check_writable().map_err(|e| e.to_string())
    }
}

impl DataServer {
    /// Opens the data directory (creating the 3511 hash directories, removing leftovers of
    /// interrupted uploads) and binds the listener.
    pub async fn bind(config: &DataConfig, obs: Arc<Observability>) -> anyhow::Result<DataServer> {
        let path = config.path.clone();
        let direct_io = config.direct_io;
        let store = tokio::task::spawn_blocking(move || {
            DataStore::open(path).map(|s| s.with_direct_io(direct_io))
        })
        .await
        .context("data store setup task failed")?
        .with_context(|| {
            format!(
                "data service: cannot use the data directory {}",
                config.path.display()
            )
        })?;
        let store = Arc::new(store);
        obs.add_check(Arc::new(Writable(store.clone())));
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("data service: cannot listen on {}", config.addr))?;
        Ok(DataServer {
            listener,
            service: Arc::new(DataService::new(store, obs)),
            drain_timeout: config.drain_timeout,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
    /// (up to the drain timeout) and returns. Uploads cut by the timeout never become visible.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(KEEP_ALIVE)
            .keep_alive(true)
            // Queue body buffers instead of copying them into one write buffer: file chunks are
            // placeholders that only the connection's I/O may interpret (see `zerocopy`).
            .writev(true);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            tracing::warn!(error = %e, "data service: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let service = self.service.clone();
                    let slots = Slots::new();
                    let conn = builder.serve_connection(
                        TokioIo::new(ZeroCopyStream::new(stream, slots.clone())),
                        service_fn(move |req| {
                            let service = service.clone();
                            let slots = slots.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(service.handle(req, Some(slots)).await)
                            }
                        }),
                    );
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, error = %e, "data connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(self.listener);
        tracing::info!("data service: draining in-flight requests");
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("data service: stopped"),
            () = tokio::time::sleep(self.drain_timeout) => {
                tracing::warn!(timeout = ?self.drain_timeout,
                    "data service: in-flight requests did not finish in time; abandoning them")
            }
        }
        Ok(())
    }
}
