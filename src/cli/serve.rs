//! `zenkoctl serve`: run the bundled metadata (9990) and data (9991) services.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use super::Context;
use crate::output::Exit;
use crate::server::data::DataConfig;
use crate::server::{self, MetadataBackend, MetadataConfig, ServeConfig, Services};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    Metadata,
    Data,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Embedded,
    Mongodb,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Run only one of the two services (default: both in one process).
    #[arg(long, value_enum)]
    pub only: Option<Only>,
    /// Address of the metadata service (socket.io RPC).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9990")]
    pub metadata_addr: SocketAddr,
    /// Address of the data service (REST `/DataFile`).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9991")]
    pub data_addr: SocketAddr,
    /// Directory of the embedded metadata store.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/zenko/metadata")]
    pub metadata_path: PathBuf,
    /// Data directory, in Arsenal's DataFileStore layout (an existing one is served as is).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/zenko/data")]
    pub data_path: PathBuf,
    /// Replication group id used in version ids.
    #[arg(long, value_name = "ID", default_value = "RG001")]
    pub replication_group_id: String,
    /// Where metadata is kept.
    #[arg(long, value_enum, default_value_t = Backend::Embedded)]
    pub metadata_backend: Backend,
    /// MongoDB connection string (mongodb backend).
    #[arg(long, value_name = "URI", conflicts_with = "mongodb_uri_file")]
    pub mongodb_uri: Option<String>,
    /// File holding the MongoDB connection string, e.g. a Docker secret.
    #[arg(long, value_name = "FILE")]
    pub mongodb_uri_file: Option<PathBuf>,
    /// MongoDB database name.
    #[arg(long, value_name = "NAME")]
    pub mongodb_database: Option<String>,
    /// Initiate the replica set named in the MongoDB URI (`?replicaSet=NAME`) as a single-node
    /// set on the URI's host if it is not initiated yet, then wait for its primary (the stack's
    /// bundled `mongod --replSet` service). Already initiated: nothing is done.
    #[arg(long)]
    pub mongodb_init_replset: bool,
    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub drain_timeout: u64,
    /// Write uploads with O_DIRECT (no copy into the page cache before the fsync); `false`
    /// writes through the page cache. Durability is the same either way.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub data_direct_io: bool,
}

pub fn run(args: ServeArgs, ctx: &Context) -> anyhow::Result<Exit> {
    let mongodb_uri = match (&args.mongodb_uri, &args.mongodb_uri_file) {
        (Some(uri), _) => Some(uri.clone()),
        (None, Some(file)) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the MongoDB URI file {}", file.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    let config = ServeConfig {
        services: match args.only {
            None => Services::Both,
            Some(Only::Metadata) => Services::MetadataOnly,
            Some(Only::Data) => Services::DataOnly,
        },
        data: DataConfig {
            addr: args.data_addr,
            path: args.data_path,
            drain_timeout: Duration::from_secs(args.drain_timeout),
            direct_io: args.data_direct_io,
        },
        metadata: MetadataConfig {
            addr: args.metadata_addr,
            path: args.metadata_path,
            replication_group_id: args.replication_group_id,
            backend: match args.metadata_backend {
                Backend::Embedded => MetadataBackend::Embedded,
                Backend::Mongodb => MetadataBackend::Mongodb,
            },
            mongodb_uri,
            mongodb_database: args.mongodb_database,
            mongodb_init_replset: args.mongodb_init_replset,
        },
    };
    let output = ctx.output.clone();
    server::run(config, move |service, addr| {
        // One line per service on stdout once it accepts connections: scripts and tests wait
        // for it (and learn the port when they asked for port 0).
        if output.is_json() {
            println!(
                "{}",
                json!({"event": "listening", "service": service, "addr": addr.to_string()})
            );
        } else {
            println!("{service} service listening on {addr}");
        }
    })?;
    Ok(Exit::Ok)
}
