//! zenkoctl: run Zenko's storage modules on Docker Swarm.
//!
//! The tree follows the flow of the work:
//! - [`stack`]: parse and render — values files, templates, interpolation, the compose model and
//!   its validation (what `zenkoctl render` does);
//! - [`server`]: the bundled Arsenal-compatible metadata/data server (`zenkoctl serve`);
//! - [`convert`]: the compose model -> Swarm specs, as `docker stack deploy` converts them,
//!   and the client-side spec diff;
//! - [`engine`]: the Swarm controller (Docker Engine API): nodes, deploy, teardown, status;
//! - [`image`]: the module image: build (streamed contexts, the offline FROM scratch image),
//!   push (docker-config credentials, URL-safe registry auth), and its self healthcheck;
//! - [`up`]: `zenkoctl up`/`down`, the module stack on this machine from nothing;
//! - [`cli`]: the thin command layer;
//! - [`output`]: how results reach people (progress, text) and machines (JSON, exit codes).

pub mod cli;
pub mod convert;
pub mod engine;
pub mod image;
pub mod output;
pub mod server;
pub mod stack;
pub mod up;
