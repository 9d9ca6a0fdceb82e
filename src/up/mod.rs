//! `zenkoctl up` / `down`: the module stack on this machine, from nothing.
//!
//! `up` reaches the local engine (or starts one, with `--start-engine`), makes it a one-node
//! swarm when it is not in one, puts the storage label on that node, builds the offline image
//! from the running binary, and deploys the `module` profile with the embedded backend —
//! `dnsrr` endpoints and host-mode published ports, since one node needs no routing mesh (and
//! kernels without IPVS have none) — then waits until it is converged and healthy. Every step
//! first looks at what is already there, so running it twice is safe: an unchanged image and
//! stack change nothing. `down` removes the stack (and, with `--stop-engine`, the engine that
//! `up --start-engine` started).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde::Serialize;

use crate::engine::{Engine, EngineResult as _, Progress};
use crate::output::{coded, exit_of, Exit};

/// Where `up --start-engine` keeps the engine it starts: pid file and log.
pub const STATE_DIR: &str = "/var/lib/zenkoctl";
/// The socket of a started engine (the default Docker socket).
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The values `up` layers under the user's `--set`s: the single-node network settings.
pub const SINGLE_NODE_SETS: &[&str] = &[
    "network.endpoint_mode=dnsrr",
    "network.publish_mode=host",
    "metadata.backend=embedded",
];

/// How `up` reached the engine.
#[derive(Debug, Clone, Serialize)]
pub struct EngineState {
    pub host: String,
    pub version: String,
    /// Started by this `up` (pid), or `None` when it was already running.
    pub started_pid: Option<u32>,
}

fn pid_file() -> PathBuf {
    Path::new(STATE_DIR).join("dockerd.pid")
}

/// Connects to the engine; with `start`, starts a local dockerd first when none answers.
pub async fn reach_engine(
    host: Option<&str>,
    start: bool,
    progress: Progress<'_>,
) -> anyhow::Result<(Engine, EngineState)> {
    match Engine::connect(host).await {
        Ok(engine) => {
            let state = EngineState {
                host: engine.host.clone(),
                version: engine.server_version.clone(),
                started_pid: None,
            };
            return Ok((engine, state));
        }
        Err(e) if !start || exit_of(&e) != Exit::Unreachable => {
            if exit_of(&e) == Exit::Unreachable {
                return Err(
                    e.context("no Docker engine answers; `zenkoctl up --start-engine` starts one")
                );
            }
            return Err(e);
        }
        Err(_) => {}
    }
    let socket = match host {
        None => DEFAULT_SOCKET.to_string(),
        Some(h) if h.starts_with("unix://") => h.trim_start_matches("unix://").to_string(),
        Some(h) => bail!("--start-engine starts a local engine on a unix socket; {h} is not one"),
    };
    let pid = start_dockerd(&socket, progress)?;
    let url = format!("unix://{socket}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Engine::connect(Some(&url)).await {
            Ok(engine) => {
                progress(format!("engine {} started (pid {pid})", engine.server_version));
                let state = EngineState {
                    host: engine.host.clone(),
                    version: engine.server_version.clone(),
                    started_pid: Some(pid),
                };
                return Ok((engine, state));
            }
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!(
                    "the dockerd started by zenkoctl (pid {pid}) did not answer within 60s; see {STATE_DIR}/dockerd.log"
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

fn start_dockerd(socket: &str, progress: Progress<'_>) -> anyhow::Result<u32> {
    std::fs::create_dir_all(STATE_DIR).with_context(|| format!("cannot create {STATE_DIR}"))?;
    let log = std::fs::File::create(Path::new(STATE_DIR).join("dockerd.log"))
        .with_context(|| format!("cannot create {STATE_DIR}/dockerd.log"))?;
    progress(format!(
        "starting dockerd on {socket} (log: {STATE_DIR}/dockerd.log)"
    ));
    let child = Command::new("setsid")
        .arg("dockerd")
        .arg("-H")
        .arg(format!("unix://{socket}"))
        .arg("--pidfile")
        .arg(pid_file())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start dockerd (install docker.io: scripts/deps/swarm-lab.sh)")?;
    // setsid execs dockerd (the child is not a group leader), so this is dockerd's pid.
    Ok(child.id())
}

/// Stops the engine `up --start-engine` started (by its pid file); `None` when there is none.
pub fn stop_started_engine(timeout: Duration) -> anyhow::Result<Option<u32>> {
    let path = pid_file();
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let pid: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} holds no pid", path.display()))?;
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    if alive(pid) {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while alive(pid) {
            if Instant::now() > deadline {
                bail!(
                    "dockerd (pid {pid}) did not stop within {}s",
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(Some(pid))
}

/// The swarm as `up` found or made it.
#[derive(Debug, Clone, Serialize)]
pub struct SwarmState {
    pub node_id: String,
    /// True when this `up` initialized it.
    pub initialized: bool,
}

/// Makes the engine a one-node swarm manager when it is in no swarm; refuses a worker.
pub async fn ensure_swarm(engine: &Engine, progress: Progress<'_>) -> anyhow::Result<SwarmState> {
    use bollard::models::LocalNodeState;
    let info = engine.docker.info().await.engine(engine, "reading /info")?;
    let swarm = info.swarm.unwrap_or_default();
    match swarm.local_node_state {
        Some(LocalNodeState::ACTIVE) if swarm.control_available == Some(true) => {
            return Ok(SwarmState {
                node_id: swarm.node_id.unwrap_or_default(),
                initialized: false,
            })
        }
        Some(LocalNodeState::ACTIVE) => {
            return Err(coded(
                Exit::Failure,
                anyhow!(
                "the engine at {} is a swarm worker; run `zenkoctl up` against a manager (--host)",
                engine.host
            ),
            ))
        }
        Some(LocalNodeState::INACTIVE) | None => {}
        Some(other) => bail!(
            "the engine's swarm state is {other:?}; wait for it to settle, or leave the swarm"
        ),
    }
    progress("initializing a one-node swarm".into());
    let request = |advertise: Option<&str>| bollard::models::SwarmInitRequest {
        listen_addr: Some("0.0.0.0:2377".into()),
        advertise_addr: advertise.map(String::from),
        ..Default::default()
    };
    let node_id = match engine.docker.init_swarm(request(None)).await {
        Ok(id) => id,
        // Several addresses and none chosen: a one-node swarm can advertise loopback.
        Err(e) if crate::engine::server_message(&e).contains("advertise") => {
            progress(
                "the engine has several addresses; advertising 127.0.0.1 (a one-node swarm)".into(),
            );
            engine
                .docker
                .init_swarm(request(Some("127.0.0.1")))
                .await
                .engine(engine, "initializing the swarm")?
        }
        Err(e) => return Err(engine.error(e, "initializing the swarm")),
    };
    Ok(SwarmState {
        node_id,
        initialized: true,
    })
}

/// The one-line example printed by `up`: store an object through the data service and read
/// it back.
pub fn example(host: &str, data_port: u16) -> String {
    format!(
        "key=$(curl -sS -o /dev/null -D - -X PUT --data-binary 'hello zenko' http://{host}:{data_port}/DataFile \
         | tr -d '\\r' | sed -n 's/^[Ll]ocation: //p') && curl -sS http://{host}:{data_port}$key"
    )
}
