//! The Swarm controller: everything that talks to the Docker Engine API (bollard).
//!
//! - this module: the connection ([`Engine::connect`]): `--host`/`DOCKER_HOST`, API version
//!   negotiation, error classification (unreachable engine vs. an engine that said no);
//! - [`nodes`]: list, label and unlabel nodes (the storage label);
//! - [`stacks`]: finding stacks and their objects by label;
//! - [`pin`]: service images pinned to their registry digest;
//! - [`deploy`]: preflight, teardown of an earlier Zenko stack, create/update, convergence;
//! - [`converge`]: waiting for services to converge, and failure reports;
//! - [`teardown`]: remove a stack and wait until it is really gone;
//! - [`status`] and [`probe`]: the health check of a deployed stack.

pub mod converge;
pub mod deploy;
pub mod nodes;
pub mod pin;
pub mod probe;
pub mod stacks;
pub mod status;
pub mod teardown;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;
use bollard::{ClientVersion, Docker};

use crate::output::{coded, Exit};

/// The oldest Engine API zenkoctl speaks: 1.41 (Docker 20.10) has jobs and `ServiceStatus`.
pub const MIN_API: ApiVersion = ApiVersion(1, 41);
/// The newest: the API bollard's models were generated from.
pub const MAX_API: ApiVersion = ApiVersion(1, 53);

/// How long a single request may take before the engine is declared unreachable.
const REQUEST_TIMEOUT_SECS: u64 = 60;
/// How long the first contact may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An Engine API version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct ApiVersion(pub u16, pub u16);

impl ApiVersion {
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let (a, b) = text.trim().split_once('.')?;
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The outcome of version negotiation: the version to speak, given what the server supports.
pub fn negotiate(server: ApiVersion, server_min: Option<ApiVersion>) -> Result<ApiVersion, String> {
    if server < MIN_API {
        return Err(format!(
            "the engine speaks API {server}; zenkoctl needs at least {MIN_API} (Docker 20.10)"
        ));
    }
    let chosen = server.min(MAX_API);
    if let Some(min) = server_min {
        if min > chosen {
            return Err(format!(
                "the engine accepts API {min} or newer; zenkoctl speaks at most {MAX_API}"
            ));
        }
    }
    Ok(chosen)
}

/// Where long operations report what they are doing (a line at a time, for people).
pub type Progress<'a> = &'a (dyn Fn(String) + Sync);

/// A connected engine.
#[derive(Debug, Clone)]
pub struct Engine {
    pub docker: Docker,
    /// Where it is, as given (`unix:///var/run/docker.sock`, `tcp://host:2375`).
    pub host: String,
    /// The negotiated API version: features newer than it are not used.
    pub api: ApiVersion,
    /// The server's own API version and minimum.
    pub server_api: ApiVersion,
    pub server_min_api: Option<ApiVersion>,
    pub server_version: String,
}

/// The default engine endpoint when neither `--host` nor `DOCKER_HOST` is set.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

impl Engine {
    /// Connects to `host` (or the local socket), reads `/version` and negotiates the API version.
    ///
    /// A note on bollard 0.21.x: its request builder joins an absolute path onto the
    /// `/v1.xx` prefix, which drops the prefix, so every request is *unversioned* and the daemon
    /// answers at its own newest API version (bollard issue #736). That is why no version is
    /// hard-pinned here: a pinned 1.41 would be refused by Engine 29.0-29.2 (minimum 1.44), and a
    /// pinned 1.53 by Debian's 20.10 (maximum 1.41). We still negotiate, to refuse engines we
    /// cannot drive and to gate features on [`Engine::api`]; and the client is built with the
    /// negotiated version, so a bollard release with the fix sends the right prefix.
    pub async fn connect(host: Option<&str>) -> anyhow::Result<Engine> {
        let host = host
            .filter(|h| !h.trim().is_empty())
            .unwrap_or(DEFAULT_HOST)
            .to_string();
        let docker = client(
            &host,
            &ClientVersion {
                major_version: MAX_API.0 as usize,
                minor_version: MAX_API.1 as usize,
            },
        )?;
        let version = match tokio::time::timeout(CONNECT_TIMEOUT, docker.version()).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(unreachable(&host, e)),
            Err(_) => {
                return Err(coded(
                    Exit::Unreachable,
                    anyhow!(
                        "cannot reach the Docker engine at {host}: no answer within {}s",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                ))
            }
        };
        let server_api = version
            .api_version
            .as_deref()
            .and_then(ApiVersion::parse)
            .ok_or_else(|| {
                coded(
                    Exit::Unreachable,
                    anyhow!("the engine at {host} did not report its API version"),
                )
            })?;
        let server_min_api = version
            .min_api_version
            .as_deref()
            .and_then(ApiVersion::parse);
        let api = negotiate(server_api, server_min_api)
            .map_err(|e| coded(Exit::Unreachable, anyhow!("the engine at {host}: {e}")))?;
        let docker = client(
            &host,
            &ClientVersion {
                major_version: api.0 as usize,
                minor_version: api.1 as usize,
            },
        )?;
        tracing::debug!(%host, %api, %server_api, "connected to the engine");
        Ok(Engine {
            docker,
            host,
            api,
            server_api,
            server_min_api,
            server_version: version.version.unwrap_or_default(),
        })
    }

    /// The address to reach ports published through the routing mesh: the engine's host for a
    /// tcp endpoint, else this machine.
    pub fn host_address(&self) -> String {
        let rest = self
            .host
            .strip_prefix("tcp://")
            .or_else(|| self.host.strip_prefix("http://"));
        match rest {
            Some(r) => r
                .rsplit_once(':')
                .map(|(h, _)| h)
                .unwrap_or(r)
                .trim_matches(['[', ']'])
                .to_string(),
            None => "127.0.0.1".into(),
        }
    }

    /// Requires a Swarm manager (stack objects can only be managed there).
    pub async fn require_manager(&self) -> anyhow::Result<()> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| self.error(e, "reading /info"))?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.control_available != Some(true) {
            let state = swarm
                .local_node_state
                .map(|s| format!("{s:?}").to_lowercase())
                .unwrap_or_else(|| "unknown".into());
            return Err(coded(
                Exit::Failure,
                anyhow!(
                    "the engine at {} is not a Swarm manager (swarm state: {state}); run \
                     `docker swarm init` there, or point --host at a manager",
                    self.host
                ),
            ));
        }
        Ok(())
    }

    /// Wraps an engine error with what was being done; transport failures become
    /// [`Exit::Unreachable`].
    pub fn error(
        &self,
        error: bollard::errors::Error,
        doing: impl std::fmt::Display,
    ) -> anyhow::Error {
        if is_transport(&error) {
            coded(
                Exit::Unreachable,
                anyhow!(
                    "lost the Docker engine at {} while {doing}: {error}",
                    self.host
                ),
            )
        } else {
            anyhow!("{doing}: {}", server_message(&error))
        }
    }
}

fn client(host: &str, version: &ClientVersion) -> anyhow::Result<Docker> {
    // For a unix socket, bollard checks that the socket exists: a missing one means no engine.
    let bad = |e: bollard::errors::Error| {
        if host.starts_with("unix://") || host.starts_with('/') {
            coded(
                Exit::Unreachable,
                anyhow!("cannot reach the Docker engine at {host}: {e} (is dockerd running? set --host or DOCKER_HOST)"),
            )
        } else {
            coded(
                Exit::InvalidInput,
                anyhow!("invalid Docker host {host:?}: {e}"),
            )
        }
    };
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, version).map_err(bad)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, version).map_err(bad)
    } else if host.starts_with('/') {
        Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, version).map_err(bad)
    } else {
        Err(coded(
            Exit::InvalidInput,
            anyhow!("unsupported Docker host {host:?}: use unix:///path/to/docker.sock or tcp://host:port"),
        ))
    }?;
    // Every request that carries registry credentials (service create/update with
    // `X-Registry-Auth`, pushes, distribution inspect) gets them URL-safe: bollard encodes them
    // with the standard alphabet, which the daemon cannot decode (see image::auth). A client
    // derived with `image::auth::with_registry_auth` replaces this modifier with one that
    // writes the URL-safe header itself.
    Ok(docker.with_request_modifier(crate::image::auth::url_safe_registry_headers))
}

fn unreachable(host: &str, error: bollard::errors::Error) -> anyhow::Error {
    let hint = if host.starts_with("unix://") || host.starts_with('/') {
        " (is dockerd running, and is the socket path right? set --host or DOCKER_HOST)"
    } else {
        " (is dockerd listening there? set --host or DOCKER_HOST)"
    };
    if is_transport(&error) {
        coded(
            Exit::Unreachable,
            anyhow!("cannot reach the Docker engine at {host}: {error}{hint}"),
        )
    } else {
        coded(
            Exit::Unreachable,
            anyhow!(
                "the Docker engine at {host} refused /version: {}",
                server_message(&error)
            ),
        )
    }
}

/// True when the request never got an answer from the engine.
pub fn is_transport(error: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    !matches!(
        error,
        E::DockerResponseServerError { .. } | E::JsonDataError { .. } | E::JsonSerdeError { .. }
    )
}

/// The server's message for an error the engine returned, else the error itself.
pub fn server_message(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => {
            format!("{message} (HTTP {status_code})")
        }
        other => other.to_string(),
    }
}

/// The HTTP status of an error the engine returned.
pub fn status_of(error: &bollard::errors::Error) -> Option<u16> {
    match error {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub fn is_not_found(error: &bollard::errors::Error) -> bool {
    status_of(error) == Some(404)
}

/// Swarm's optimistic-concurrency conflict: someone updated the object since we read it.
pub fn is_out_of_sequence(error: &bollard::errors::Error) -> bool {
    matches!(error, bollard::errors::Error::DockerResponseServerError { message, .. }
        if message.contains("out of sequence"))
}

/// A label filter: `{"label": ["k=v", ...]}`.
pub fn label_filter(labels: &[(&str, Option<&str>)]) -> HashMap<String, Vec<String>> {
    let values = labels
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.to_string(),
        })
        .collect();
    HashMap::from([("label".to_string(), values)])
}

/// Runs an async command body on a runtime of its own (commands are synchronous).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// Retries `op` while it fails with "update out of sequence" (each attempt re-reads the object
/// itself), with a short backoff.
pub async fn retry_out_of_sequence<T, F, Fut>(
    what: &str,
    mut op: F,
) -> Result<T, bollard::errors::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, bollard::errors::Error>>,
{
    let mut delay = Duration::from_millis(50);
    for attempt in 1.. {
        match op().await {
            Err(e) if is_out_of_sequence(&e) && attempt < 10 => {
                tracing::debug!("{what}: update out of sequence (attempt {attempt}); retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
    unreachable!()
}

/// Context for `anyhow` results of engine calls.
pub trait EngineResult<T> {
    fn engine(self, engine: &Engine, doing: impl std::fmt::Display) -> anyhow::Result<T>;
}

impl<T> EngineResult<T> for Result<T, bollard::errors::Error> {
    fn engine(self, engine: &Engine, doing: impl std::fmt::Display) -> anyhow::Result<T> {
        self.map_err(|e| engine.error(e, doing))
    }
}

/// A short id for people.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Sleeps between polls.
pub async fn pause(d: Duration) {
    tokio::time::sleep(d).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_negotiation() {
        let v = |s: &str| ApiVersion::parse(s).unwrap();
        // Debian's 20.10.
        assert_eq!(negotiate(v("1.41"), Some(v("1.12"))).unwrap(), v("1.41"));
        // Engine 29.0 with its raised minimum: we speak its version, capped at ours.
        assert_eq!(negotiate(v("1.52"), Some(v("1.44"))).unwrap(), v("1.52"));
        assert_eq!(negotiate(v("1.56"), Some(v("1.40"))).unwrap(), MAX_API);
        assert!(negotiate(v("1.40"), None)
            .unwrap_err()
            .contains("at least 1.41"));
        assert!(negotiate(v("1.60"), Some(v("1.55")))
            .unwrap_err()
            .contains("1.55 or newer"));
        assert!(ApiVersion::parse("1.x").is_none());
        assert!(v("1.9") < v("1.41"));
    }

    fn out_of_sequence() -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "rpc error: code = Unknown desc = update out of sequence".into(),
        }
    }

    #[test]
    fn out_of_sequence_updates_are_retried() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let r: Result<usize, _> = block_on(retry_out_of_sequence("test", || async {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n < 3 {
                Err(out_of_sequence())
            } else {
                Ok(n)
            }
        }));
        assert_eq!(r.unwrap(), 3);
        // Other errors are not retried.
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let r: Result<(), _> = block_on(retry_out_of_sequence("test", || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                message: "no such service".into(),
            })
        }));
        assert!(r.is_err());
        assert_eq!(calls.into_inner(), 1);
    }

    #[test]
    fn host_addresses() {
        let e = |host: &str| {
            Engine {
                docker: Docker::connect_with_http("tcp://127.0.0.1:1", 1, API_DEFAULT).unwrap(),
                host: host.into(),
                api: MIN_API,
                server_api: MIN_API,
                server_min_api: None,
                server_version: String::new(),
            }
            .host_address()
        };
        assert_eq!(e("tcp://10.99.0.1:2375"), "10.99.0.1");
        assert_eq!(e("unix:///var/run/docker.sock"), "127.0.0.1");
    }

    const API_DEFAULT: &ClientVersion = bollard::API_DEFAULT_VERSION;
}
