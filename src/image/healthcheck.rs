//! The image's HEALTHCHECK: the binary probes itself, since a scratch image has no shell and
//! no curl (`zenkoctl healthcheck`, hidden from the help).
//!
//! A probe is one plain HTTP/1.1 GET over TCP (no TLS, no proxy, no DNS beyond what the
//! system resolver gives for the host) that must answer 200 within the timeout. With explicit
//! URLs every one must pass. Without, the targets come from the `zenkoctl serve` running as
//! PID 1 in the container (its `--only`, `--data-addr`, `--metadata-addr`, defaults 9991 and
//! 9990), and the first that accepts a connection decides: each service's listener answers the
//! health of the whole process, and a metadata-only container has nothing on the data port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

/// The path the bundled server answers its health on.
pub const HEALTH_PATH: &str = "/_/health";
/// Default ports of `zenkoctl serve`: data, then metadata.
pub const DATA_PORT: u16 = 9991;
pub const METADATA_PORT: u16 = 9990;

/// One HTTP target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` as given.
    pub authority: String,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("{url:?}: only http:// URLs can be probed"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            bail!("{url:?}: no host");
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Target {
            authority,
            path: path.to_string(),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }

    fn local(port: u16) -> Target {
        Target {
            authority: format!("127.0.0.1:{port}"),
            path: HEALTH_PATH.into(),
        }
    }
}

/// What went wrong with one probe.
#[derive(Debug)]
pub enum ProbeError {
    /// Nothing listens there (or it cannot be reached): another target may be the right one.
    Connect(anyhow::Error),
    /// It answered, but not 200, or not HTTP, or too late.
    Unhealthy(anyhow::Error),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Connect(e) | ProbeError::Unhealthy(e) => write!(f, "{e:#}"),
        }
    }
}

/// GETs the target; `Ok` with the status line on 200.
pub fn probe(target: &Target, timeout: Duration) -> Result<String, ProbeError> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = target
        .authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", target.authority))
        .map_err(ProbeError::Connect)?
        .collect();
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(anyhow!(e).context(format!("cannot connect to {addr}"))),
        }
    }
    let mut stream = stream.ok_or_else(|| {
        ProbeError::Connect(
            last.unwrap_or_else(|| anyhow!("{} resolves to nothing", target.authority)),
        )
    })?;
    let unhealthy = |e: anyhow::Error| ProbeError::Unhealthy(e.context(target.url()));
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| unhealthy(e.into()))?;
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| unhealthy(e.into()))?;
    // One write: the whole request in one segment (a `write!` would issue several).
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: zenkoctl-healthcheck\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| unhealthy(anyhow!(e).context("cannot send the request")))?;
    let mut response = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut response)
        .map_err(|e| unhealthy(anyhow!(e).context("no complete answer")))?;
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default().trim().to_string();
    let mut parts = status_line.split_whitespace();
    let (proto, code) = (parts.next().unwrap_or_default(), parts.next());
    if !proto.starts_with("HTTP/") {
        return Err(unhealthy(anyhow!("not an HTTP answer: {status_line:?}")));
    }
    if code == Some("200") {
        Ok(status_line)
    } else {
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
        let body: String = body.chars().take(500).collect();
        Err(unhealthy(anyhow!("{status_line}: {body}")))
    }
}

/// The targets of the `zenkoctl serve` command line `args` (without the program name).
pub fn serve_targets(args: &[String]) -> Vec<Target> {
    let value = |flag: &str| -> Option<&str> {
        args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix(&format!("{flag}=")).or_else(|| {
                (a == flag)
                    .then(|| args.get(i + 1).map(String::as_str))
                    .flatten()
            })
        })
    };
    let port_of = |flag: &str, default: u16| -> u16 {
        value(flag)
            .and_then(|addr| addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
            .unwrap_or(default)
    };
    let data = Target::local(port_of("--data-addr", DATA_PORT));
    let metadata = Target::local(port_of("--metadata-addr", METADATA_PORT));
    match value("--only") {
        Some("data") => vec![data],
        Some("metadata") => vec![metadata],
        _ => vec![data, metadata],
    }
}

/// The default targets: those of the `serve` running as PID 1, else both default ports.
pub fn default_targets() -> Vec<Target> {
    let args: Vec<String> = std::fs::read("/proc/1/cmdline")
        .ok()
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    match args.iter().position(|a| a == "serve") {
        Some(i) if args.first().is_some_and(|p| p.ends_with("zenkoctl")) => {
            serve_targets(&args[i + 1..])
        }
        _ => serve_targets(&[]),
    }
}

/// The outcome of a health check, for the command's report.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub url: String,
    pub status: String,
}

/// Explicit URLs: every one must answer 200.
pub fn check_all(targets: &[Target], timeout: Duration) -> anyhow::Result<Vec<Report>> {
    targets
        .iter()
        .map(|t| {
            probe(t, timeout)
                .map(|status| Report {
                    url: t.url(),
                    status,
                })
                .map_err(|e| anyhow!("unhealthy: {e}"))
        })
        .collect()
}

/// Candidate targets: the first one that accepts a connection decides.
pub fn check_first(targets: &[Target], timeout: Duration) -> anyhow::Result<Report> {
    let mut refused = Vec::new();
    for t in targets {
        match probe(t, timeout) {
            Ok(status) => {
                return Ok(Report {
                    url: t.url(),
                    status,
                })
            }
            Err(ProbeError::Unhealthy(e)) => return Err(anyhow!("unhealthy: {e:#}")),
            Err(ProbeError::Connect(e)) => refused.push(format!("{}: {e:#}", t.url())),
        }
    }
    Err(anyhow!(
        "unhealthy: nothing answers ({})",
        refused.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static str) -> (u16, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // Read the whole request head before answering, as a server does.
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer.as_bytes()).unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        (port, handle)
    }

    #[test]
    fn parses_urls() {
        let t = Target::parse("http://127.0.0.1:9991/_/health").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:9991", "/_/health")
        );
        assert_eq!(
            Target::parse("http://example").unwrap().authority,
            "example:80"
        );
        assert!(Target::parse("https://x/").is_err());
    }

    // One test, so that no other test of this module binds the port found closed below.
    #[test]
    fn real_http_answers_and_first_listening_target_decides() {
        let (port, server) = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let t = Target::parse(&format!("http://127.0.0.1:{port}/_/health")).unwrap();
        let report = check_all(&[t], Duration::from_secs(5)).unwrap();
        assert_eq!(report[0].status, "HTTP/1.1 200 OK");
        assert!(server
            .join()
            .unwrap()
            .starts_with("GET /_/health HTTP/1.1\r\n"));

        let (port, _s) =
            serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n{\"status\":\"unavailable\"}");
        let t = Target::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let err = check_all(&[t], Duration::from_secs(5)).unwrap_err();
        assert!(format!("{err:#}").contains("503"), "{err:#}");

        // A port nobody listens on: bind, note it, close.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (port, _s) = serve_once("HTTP/1.0 200 OK\r\n\r\n");
        let targets = [Target::local(closed), Target::local(port)];
        let report = check_first(&targets, Duration::from_secs(5)).unwrap();
        assert!(report.url.contains(&port.to_string()));
        let err = check_first(&[Target::local(closed)], Duration::from_secs(2)).unwrap_err();
        assert!(format!("{err:#}").contains("nothing answers"), "{err:#}");
    }

    #[test]
    fn targets_of_a_serve_command_line() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            serve_targets(&args("")),
            [Target::local(9991), Target::local(9990)]
        );
        assert_eq!(
            serve_targets(&args("--only metadata --metadata-addr 0.0.0.0:7000")),
            [Target::local(7000)]
        );
        assert_eq!(
            serve_targets(&args("--only=data --data-addr=0.0.0.0:7001")),
            [Target::local(7001)]
        );
    }
}
