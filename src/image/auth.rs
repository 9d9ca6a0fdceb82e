//! Registry credentials, found as the docker client finds them, and sent the way the Engine
//! decodes them.
//!
//! Lookup (docker/cli `configfile`): the config is `$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`. For a registry host, a `credHelpers[host]` entry names a helper,
//! else `credsStore` names one for every registry; a helper is the program
//! `docker-credential-<name>`, run as `get` with the server address on stdin, answering
//! `{"ServerURL","Username","Secret"}` (a `Username` of `<token>` means `Secret` is an identity
//! token). Without a helper, `auths[host]` gives `auth` (standard base64 of `user:password`)
//! or `username`/`password`, and tokens. Keys are compared as hostnames: `https://host/v1/`,
//! `http://host` and `host` are the same registry. Docker Hub's key is
//! `https://index.docker.io/v1/`.
//!
//! Encoding: `X-Registry-Auth` is base64**url** (RFC 4648 §5, padded) of the JSON auth config.
//! bollard 0.21 encodes it with the *standard* alphabet; the daemon's decoder rejects `+` and
//! `/`, then silently goes on without credentials, so a push fails as unauthorized only for
//! credentials whose encoding happens to contain those characters. [`url_safe_registry_headers`]
//! re-encodes those headers on every request a bollard client sends.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Docker Hub's key in the docker config.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The credentials of one registry, as the Engine API takes them (`X-Registry-Auth`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serveraddress: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identitytoken: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registrytoken: String,
}

impl std::fmt::Debug for AuthConfig {
    // Never print secrets in logs or errors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("serveraddress", &self.serveraddress)
            .field("password", &(!self.password.is_empty()).then_some("<set>"))
            .field(
                "identitytoken",
                &(!self.identitytoken.is_empty()).then_some("<set>"),
            )
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    /// The `X-Registry-Auth` header value: URL-safe base64 of the JSON.
    pub fn header(&self) -> String {
        encode_header(&serde_json::to_vec(self).expect("an auth config serializes"))
    }
}

/// URL-safe base64 (with padding), the encoding the daemon decodes registry headers with.
pub fn encode_header(json: &[u8]) -> String {
    URL_SAFE.encode(json)
}

/// A bollard request modifier (`Docker::with_request_modifier`) that re-encodes the
/// `X-Registry-Auth` and `X-Registry-Config` headers bollard wrote with the standard base64
/// alphabet into the URL-safe one the daemon expects. Headers that are not standard base64
/// (already URL-safe ones, for instance) are left alone.
pub fn url_safe_registry_headers(mut request: bollard::BollardRequest) -> bollard::BollardRequest {
    for name in ["x-registry-auth", "x-registry-config"] {
        let Some(value) = request.headers().get(name) else {
            continue;
        };
        let Some(fixed) = value.to_str().ok().and_then(transcode) else {
            continue;
        };
        if let Ok(value) = http::HeaderValue::from_str(&fixed) {
            request.headers_mut().insert(name, value);
        }
    }
    request
}

/// A copy of `docker` that sends `credentials` as its own URL-safe `X-Registry-Auth` on every
/// request (replacing whatever bollard would encode); `None` leaves the client as is. For the
/// calls that take registry credentials: push, distribution inspect, service create/update.
pub fn with_registry_auth(
    docker: &bollard::Docker,
    credentials: Option<&AuthConfig>,
) -> anyhow::Result<bollard::Docker> {
    let Some(credentials) = credentials else {
        return Ok(docker.clone());
    };
    let value = http::HeaderValue::from_str(&credentials.header())
        .map_err(|e| anyhow::anyhow!("the registry credentials do not fit in a header: {e}"))?;
    Ok(docker.clone().with_request_modifier(move |mut request| {
        request
            .headers_mut()
            .insert("x-registry-auth", value.clone());
        request
    }))
}

/// The credentials the docker config (in `config_dir`, default `$DOCKER_CONFIG` or
/// `~/.docker`) holds for `registry`, with where they came from (for messages).
pub fn credentials_for(
    registry: &str,
    config_dir: Option<&Path>,
) -> anyhow::Result<(Option<AuthConfig>, String)> {
    let dir = match config_dir {
        Some(d) => Some(d.to_path_buf()),
        None => DockerConfig::default_dir(),
    };
    let config = match &dir {
        Some(d) => DockerConfig::load(d)?,
        None => DockerConfig::default(),
    };
    let source = config
        .path
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "no docker config".into());
    Ok((config.credentials(registry, &None)?, source))
}

/// Standard base64 -> URL-safe base64; `None` when the input is not standard base64 or needs
/// no change.
fn transcode(value: &str) -> Option<String> {
    if !value.contains(['+', '/']) {
        return None;
    }
    let raw = STANDARD.decode(value).ok()?;
    Some(URL_SAFE.encode(raw))
}

/// The registry host of an image reference, as the docker client derives it: the first path
/// component when it looks like a host (has a `.` or a `:`, or is `localhost`), else Docker Hub.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_string(),
        _ => "docker.io".to_string(),
    }
}

/// `https://host:port/v1/` -> `host:port`, as docker's `ConvertToHostname`.
pub fn hostname_of_key(key: &str) -> &str {
    let rest = key
        .strip_prefix("http://")
        .or_else(|| key.strip_prefix("https://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// The parts of the docker config that hold credentials.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    pub auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    pub creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    pub cred_helpers: BTreeMap<String, String>,
    /// Where it was read from (for messages).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Clone, Default, Deserialize)]
pub struct AuthEntry {
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub identitytoken: Option<String>,
    #[serde(default)]
    pub registrytoken: Option<String>,
}

impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthEntry").finish_non_exhaustive()
    }
}

/// Where credential helpers are looked up (`PATH`); `None` means the process's own.
pub type HelperPath = Option<std::ffi::OsString>;

impl DockerConfig {
    /// The directory of the docker config: `$DOCKER_CONFIG`, else `~/.docker`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir));
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker"))
    }

    /// Reads `DIR/config.json`; a missing file is an empty config (anonymous access).
    pub fn load(dir: &Path) -> anyhow::Result<DockerConfig> {
        let path = dir.join("config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DockerConfig {
                    path: Some(path),
                    ..DockerConfig::default()
                })
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mut config: DockerConfig = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid docker config", path.display()))?;
        config.path = Some(path);
        Ok(config)
    }

    /// The credentials for a registry host (`10.99.0.1:5000`, `docker.io`), or `None` for
    /// anonymous access.
    pub fn credentials(
        &self,
        registry: &str,
        helper_path: &HelperPath,
    ) -> anyhow::Result<Option<AuthConfig>> {
        let host = hostname_of_key(registry);
        let hub = is_docker_hub(host);
        // The server address the docker client uses as the key and sends to the daemon.
        let server = if hub {
            DOCKER_HUB_KEY.to_string()
        } else {
            host.to_string()
        };
        let helper = self
            .cred_helpers
            .iter()
            .find(|(k, _)| hostname_of_key(k) == host || (hub && is_docker_hub(hostname_of_key(k))))
            .map(|(_, v)| v)
            .or(self.creds_store.as_ref())
            .filter(|h| !h.is_empty());
        if let Some(helper) = helper {
            return run_helper(helper, &server, helper_path);
        }
        let entry = self.auths.get(&server).or_else(|| {
            self.auths.iter().find_map(|(k, v)| {
                let h = hostname_of_key(k);
                (h == host || (hub && is_docker_hub(h))).then_some(v)
            })
        });
        let Some(entry) = entry else {
            return Ok(None);
        };
        let mut config = AuthConfig {
            serveraddress: server.clone(),
            identitytoken: entry.identitytoken.clone().unwrap_or_default(),
            registrytoken: entry.registrytoken.clone().unwrap_or_default(),
            username: entry.username.clone().unwrap_or_default(),
            password: entry.password.clone().unwrap_or_default(),
            ..AuthConfig::default()
        };
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let (user, password) = decode_auth(auth).with_context(|| {
                format!(
                    "the `auth` of {server} in {}",
                    self.path
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "the docker config".into())
                )
            })?;
            config.username = user;
            config.password = password;
        }
        if config.username.is_empty()
            && config.identitytoken.is_empty()
            && config.registrytoken.is_empty()
        {
            return Ok(None);
        }
        Ok(Some(config))
    }
}

/// `auth` is standard base64 of `user:password`.
fn decode_auth(auth: &str) -> anyhow::Result<(String, String)> {
    let raw = STANDARD.decode(auth.trim()).context("not valid base64")?;
    let text = String::from_utf8(raw).context("not UTF-8 once decoded")?;
    let (user, password) = text
        .split_once(':')
        .context("not of the form user:password once decoded")?;
    Ok((
        user.to_string(),
        password.trim_end_matches('\0').to_string(),
    ))
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get`, as the docker client does.
fn run_helper(
    helper: &str,
    server: &str,
    helper_path: &HelperPath,
) -> anyhow::Result<Option<AuthConfig>> {
    let program = format!("docker-credential-{helper}");
    let mut command = Command::new(&program);
    command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = helper_path {
        command.env("PATH", path);
    }
    let mut child = command.spawn().with_context(|| {
        format!("cannot run the credential helper {program} (configured for {server}): is it installed?")
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .with_context(|| format!("cannot talk to the credential helper {program}"))?;
    }
    let output = child
        .wait_with_output()
        .with_context(|| format!("the credential helper {program} failed"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // The helpers' protocol for "no credentials for this server".
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        bail!(
            "the credential helper {program} failed for {server} ({}): {}",
            output.status,
            format!(
                "{} {}",
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            )
            .trim()
        );
    }
    let answer: HelperAnswer = serde_json::from_str(&stdout).with_context(|| {
        format!("the credential helper {program} answered something that is not its JSON")
    })?;
    let mut config = AuthConfig {
        serveraddress: server.to_string(),
        ..AuthConfig::default()
    };
    if answer.username == "<token>" {
        config.identitytoken = answer.secret;
    } else {
        config.username = answer.username;
        config.password = answer.secret;
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Credentials whose X-Registry-Auth JSON, in standard base64, contains both `+` and `/`
    /// (the lab's protected registry uses the same password).
    pub(crate) const TRICKY_PASSWORD: &str = "lab?pw~x?y~z?q~w";

    fn tricky() -> AuthConfig {
        AuthConfig {
            username: "zenkoctl".into(),
            password: TRICKY_PASSWORD.into(),
            serveraddress: "10.99.0.1:5001".into(),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn header_is_url_safe_base64_of_the_json() {
        let auth = tricky();
        let json = serde_json::to_vec(&auth).unwrap();
        let standard = STANDARD.encode(&json);
        assert!(
            standard.contains('+') && standard.contains('/'),
            "the test credentials must exercise both characters: {standard}"
        );
        let header = auth.header();
        assert!(!header.contains(['+', '/']), "{header}");
        assert!(header.contains(['-', '_']), "{header}");
        assert_eq!(URL_SAFE.decode(&header).unwrap(), json);
        // What the daemon does: URL-safe decoding. The standard encoding fails it.
        assert!(URL_SAFE.decode(&standard).is_err());
        // Empty fields are left out, as the docker client does.
        let text = String::from_utf8(json).unwrap();
        assert!(!text.contains("identitytoken"), "{text}");
    }

    #[test]
    fn request_modifier_fixes_bollards_standard_encoding() {
        // Exactly what bollard 0.21 sends: serde of its DockerCredentials, STANDARD base64.
        let creds = bollard::auth::DockerCredentials {
            username: Some("zenkoctl".into()),
            password: Some(TRICKY_PASSWORD.into()),
            serveraddress: Some("10.99.0.1:5001".into()),
            ..Default::default()
        };
        let json = serde_json::to_string(&creds).unwrap();
        let standard = STANDARD.encode(&json);
        assert!(standard.contains(['+', '/']), "{standard}");
        let request = http::Request::builder()
            .header("X-Registry-Auth", &standard)
            .header("X-Registry-Config", "e30=")
            .body(bollard::body_full(bytes::Bytes::new()))
            .unwrap();
        let fixed = url_safe_registry_headers(request);
        let header = fixed.headers()["x-registry-auth"].to_str().unwrap();
        assert!(!header.contains(['+', '/']));
        assert_eq!(URL_SAFE.decode(header).unwrap(), json.as_bytes());
        // Nothing to fix: left as is.
        assert_eq!(fixed.headers()["x-registry-config"], "e30=");
    }

    #[test]
    fn registry_and_key_forms() {
        assert_eq!(
            registry_of("10.99.0.1:5000/zenkoctl/module:v1"),
            "10.99.0.1:5000"
        );
        assert_eq!(
            registry_of("registry.example.com/a/b"),
            "registry.example.com"
        );
        assert_eq!(registry_of("localhost/x"), "localhost");
        assert_eq!(registry_of("zenkoctl/module:latest"), "docker.io");
        assert_eq!(registry_of("redis"), "docker.io");
        assert_eq!(
            hostname_of_key("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(hostname_of_key("http://10.99.0.1:5000"), "10.99.0.1:5000");
        assert_eq!(hostname_of_key("10.99.0.1:5000"), "10.99.0.1:5000");
    }

    fn config(json: &str) -> DockerConfig {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), json).unwrap();
        DockerConfig::load(dir.path()).unwrap()
    }

    #[test]
    fn auths_entries() {
        let auth = STANDARD.encode(format!("zenkoctl:{TRICKY_PASSWORD}"));
        let cfg = config(&format!(
            r#"{{"auths": {{
                "https://10.99.0.1:5001/v1/": {{"auth": "{auth}"}},
                "https://index.docker.io/v1/": {{"username": "hub", "password": "pw"}},
                "tok.example": {{"identitytoken": "abc"}}
            }}}}"#
        ));
        let got = cfg.credentials("10.99.0.1:5001", &None).unwrap().unwrap();
        assert_eq!(got, tricky());
        let hub = cfg.credentials("docker.io", &None).unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.serveraddress.as_str()),
            ("hub", DOCKER_HUB_KEY)
        );
        let tok = cfg.credentials("tok.example", &None).unwrap().unwrap();
        assert_eq!(tok.identitytoken, "abc");
        assert!(cfg.credentials("10.99.0.1:5000", &None).unwrap().is_none());
        // Missing file: anonymous.
        let empty = DockerConfig::load(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(empty.credentials("x.io", &None).unwrap().is_none());
        // Broken auth: an error naming the registry.
        let bad = config(r#"{"auths": {"x.io": {"auth": "!!"}}}"#);
        let err = bad.credentials("x.io", &None).unwrap_err();
        assert!(format!("{err:#}").contains("x.io"), "{err:#}");
    }

    /// A real helper process: a shell script speaking the credential-helper protocol.
    #[test]
    fn credential_helpers() {
        use std::os::unix::fs::PermissionsExt as _;
        let bin = tempfile::tempdir().unwrap();
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread server\ncase \"$server\" in\n\
             10.99.0.1:5001) printf '{{\"ServerURL\":\"%s\",\"Username\":\"zenkoctl\",\"Secret\":\"{TRICKY_PASSWORD}\"}}' \"$server\" ;;\n\
             tok.example) printf '{{\"ServerURL\":\"%s\",\"Username\":\"<token>\",\"Secret\":\"idtok\"}}' \"$server\" ;;\n\
             *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n"
        );
        for name in ["docker-credential-zktest", "docker-credential-zkother"] {
            let path = bin.path().join(name);
            std::fs::write(&path, &script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path: HelperPath = Some(format!("{}:/usr/bin:/bin", bin.path().display()).into());
        let cfg = config(
            r#"{"credsStore": "zktest", "credHelpers": {"helped.example": "missing-helper"},
                "auths": {"10.99.0.1:5001": {"auth": "aWdub3JlZDppZ25vcmVk"}}}"#,
        );
        // The store wins over auths, as in the docker client.
        assert_eq!(
            cfg.credentials("10.99.0.1:5001", &path).unwrap().unwrap(),
            tricky()
        );
        let tok = cfg.credentials("tok.example", &path).unwrap().unwrap();
        assert_eq!(
            (tok.identitytoken.as_str(), tok.username.as_str()),
            ("idtok", "")
        );
        assert!(cfg.credentials("unknown.example", &path).unwrap().is_none());
        let err = cfg.credentials("helped.example", &path).unwrap_err();
        assert!(
            format!("{err:#}").contains("docker-credential-missing-helper"),
            "{err:#}"
        );
    }
}
