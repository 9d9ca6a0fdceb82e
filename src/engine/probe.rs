//! Application probes of the bundled server through its published ports.
//!
//! - data (port 9991): `GET /_/health` must answer 200;
//! - metadata (port 9990): `GET /_/health` answering 200, or else a socket.io (Engine.IO v4)
//!   polling handshake `GET /socket.io/?EIO=4&transport=polling` answering `0{...}` — what
//!   Arsenal's metadata client does first, so it works against any Arsenal-compatible server.
//!
//! A server that answers but has no such route is reported `unknown` (with what it answered),
//! not `failed`: the endpoint may simply not exist in that version. No answer at all (refused,
//! timed out) is `failed`.

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeState {
    Ok,
    Failed,
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// `data` or `metadata`.
    pub target: String,
    pub url: String,
    pub state: ProbeState,
    pub detail: String,
}

/// A minimal HTTP/1.1 GET: (status, body prefix). Enough for health routes, without an HTTP
/// client dependency.
pub async fn http_get(host: &str, port: u16, path: &str) -> Result<(u16, String), String> {
    let attempt = async {
        let mut stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: zenkoctl\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > 64 * 1024 {
                        break;
                    }
                }
                Err(e) if buf.is_empty() => return Err(format!("cannot read: {e}")),
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&buf).to_string();
        let status_line = text.lines().next().unwrap_or_default();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|_| status_line.starts_with("HTTP/"))
            .ok_or_else(|| format!("not an HTTP answer: {:?}", truncate(status_line, 60)))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    };
    match tokio::time::timeout(TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {}s", TIMEOUT.as_secs())),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

/// Probes the data server.
pub async fn probe_data(host: &str, port: u16) -> ProbeResult {
    let url = format!("http://{host}:{port}/_/health");
    let (state, detail) = match http_get(host, port, "/_/health").await {
        Ok((200, _)) => (ProbeState::Ok, "HTTP 200".to_string()),
        Ok((404, _)) => (
            ProbeState::Unknown,
            "the server answers but has no /_/health route (HTTP 404); its health is unknown"
                .into(),
        ),
        Ok((status, body)) if status >= 500 => (
            ProbeState::Failed,
            format!("HTTP {status}: {}", truncate(body.trim(), 120)),
        ),
        Ok((status, _)) => (
            ProbeState::Unknown,
            format!("unexpected HTTP {status} on /_/health; its health is unknown"),
        ),
        Err(e) => (ProbeState::Failed, e),
    };
    ProbeResult {
        target: "data".into(),
        url,
        state,
        detail,
    }
}

/// Probes the metadata server: its health route, else a socket.io handshake.
pub async fn probe_metadata(host: &str, port: u16) -> ProbeResult {
    let health_url = format!("http://{host}:{port}/_/health");
    let health = http_get(host, port, "/_/health").await;
    let (state, detail, url) = match health {
        Ok((200, _)) => (ProbeState::Ok, "HTTP 200".to_string(), health_url),
        Err(e) => (ProbeState::Failed, e, health_url),
        Ok((status, _)) if status >= 500 => (
            ProbeState::Failed,
            format!("HTTP {status} on /_/health"),
            health_url,
        ),
        Ok((status, _)) => {
            let path = "/socket.io/?EIO=4&transport=polling";
            let url = format!("http://{host}:{port}{path}");
            match http_get(host, port, path).await {
                Ok((200, body)) if body.trim_start().starts_with("0{") => (
                    ProbeState::Ok,
                    format!("no /_/health (HTTP {status}), but the socket.io handshake succeeded"),
                    url,
                ),
                Ok((s, _)) => (
                    ProbeState::Unknown,
                    format!(
                        "the server answers (HTTP {status} on /_/health, HTTP {s} on the socket.io \
                         handshake) but exposes no health endpoint zenkoctl knows; its health is unknown"
                    ),
                    url,
                ),
                Err(e) => (ProbeState::Failed, e, url),
            }
        }
    };
    ProbeResult {
        target: "metadata".into(),
        url,
        state,
        detail,
    }
}
