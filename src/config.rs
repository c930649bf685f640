//! Configuration: built-in defaults, then the TOML file, then `KTERM_` environment variables
//! (nested keys joined with `__`), then command-line flags, layered with figment.
//!
//! Unknown keys are an error everywhere (`deny_unknown_fields`), and [`Config::validate`] checks
//! what serde cannot, with messages that name the key. Nothing here touches the network or disk
//! beyond reading the config file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod auth;
mod backends;
mod kubernetes;
mod lifecycle;
mod messages;
mod profiles;
mod units;

pub use auth::{is_dns_label, AddrRange, AuditConfig, AuthConfig, AuthMode, TlsConfig, TokenEntry};
pub use backends::{
    DockerConfig, ExecConfig, FilesConfig, LocalConfig, PoolConfig, PullPolicy, UserIds,
    DEFAULT_SANDBOX_IMAGE,
};
pub use kubernetes::{
    EgressRule, ExtraVolume, ImagePullPolicy, KubernetesConfig, TolerationConfig,
};
pub use lifecycle::{OnShutdown, Persistence, RecordingConfig, SandboxesConfig};
pub use profiles::{PoolSize, ProfileConfig, DEFAULT_PROFILE};
pub use units::{ByteSize, HumanDuration};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// A configuration problem; `main` exits with code 2 on it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub(crate) fn key(key: &str, message: impl fmt::Display) -> Self {
        ConfigError(format!("config key `{key}`: {message}"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub state: StateConfig,
    pub backend: BackendConfig,
    pub auth: AuthConfig,
    pub sessions: SessionsConfig,
    pub sandboxes: SandboxesConfig,
    pub recording: RecordingConfig,
    pub local: LocalConfig,
    pub docker: DockerConfig,
    pub pool: PoolConfig,
    pub kubernetes: KubernetesConfig,
    pub files: FilesConfig,
    pub exec: ExecConfig,
    pub tls: TlsConfig,
    pub audit: AuditConfig,
    /// `[[profiles]]`; empty: one `default` profile from the backend's keys.
    pub profiles: Vec<ProfileConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub public_url: String,
    pub allowed_origins: Vec<String>,
    pub shutdown_timeout: HumanDuration,
    pub ping_interval: HumanDuration,
    /// CSP `frame-ancestors` sources: who may embed kterm in a frame; empty: nobody.
    pub frame_ancestors: Vec<String>,
    /// Largest accepted request body (JSON); larger is 413.
    pub max_request_body: ByteSize,
    /// Largest accepted request line plus headers; larger is 431.
    pub max_request_headers: ByteSize,
    /// `Host` names accepted besides loopback, `public_url`'s host and (on a non-loopback
    /// listen address) the machine's own; `*.example.com` for subdomains, `*` for any.
    pub allowed_hosts: Vec<String>,
    /// A bearer token that may read `/metrics` (admins may too; open in auth mode `none`).
    pub metrics_token: String,
    /// Exit (gracefully, sandboxes kept) when no client has been attached and no session active
    /// for this long; for socket activation, which starts kterm again. `0s`: never.
    pub exit_when_idle: HumanDuration,
    /// What a graceful stop does with the users' sandboxes: keep them for the next start, or
    /// remove them.
    pub on_shutdown: OnShutdown,
}

impl ServerConfig {
    /// The path of `public_url` without a trailing slash (`/tools/kterm`), or `""` when kterm
    /// is served at the root: every route is also served under it.
    pub fn base_path(&self) -> &str {
        let Some((_, rest)) = self.public_url.split_once("://") else {
            return "";
        };
        match rest.find('/') {
            Some(i) => rest[i..].trim_end_matches('/'),
            None => "",
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            public_url: String::new(),
            allowed_origins: Vec::new(),
            shutdown_timeout: HumanDuration::secs(10),
            ping_interval: HumanDuration::secs(20),
            frame_ancestors: vec!["'self'".into()],
            max_request_body: ByteSize(64 * 1024),
            max_request_headers: ByteSize(16 * 1024),
            allowed_hosts: Vec::new(),
            metrics_token: String::new(),
            exit_when_idle: HumanDuration::secs(0),
            on_shutdown: OnShutdown::Keep,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `kterm=debug,actix_web=info`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Human, level: "info".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub path: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { path: default_state_dir().join("kterm.db") }
    }
}

/// Where state goes when `state.path` is not set: systemd's `StateDirectory=` (which sets
/// `STATE_DIRECTORY`, possibly a colon-separated list), else the user's data directory
/// (`$XDG_DATA_HOME/kterm`, `~/.local/share/kterm`), else the current directory. Never the
/// current directory when a home is known: a plain start in a source tree leaves it clean.
pub fn default_state_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dirs) = var("STATE_DIRECTORY") {
        let dirs = dirs.to_string_lossy().into_owned();
        return PathBuf::from(dirs.split(':').next().unwrap_or_default());
    }
    if let Some(data) = var("XDG_DATA_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return data.join("kterm");
    }
    if let Some(home) = var("HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return home.join(".local/share/kterm");
    }
    PathBuf::from(".")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Auto,
    Local,
    Docker,
    Kubernetes,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    pub kind: BackendKind,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig { kind: BackendKind::Auto }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachPolicy {
    /// The newest attach wins; the older client gets `detached` and close 4000.
    Takeover,
    /// A second attach while one is attached is refused with 409.
    Reject,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    pub max_per_user: u32,
    /// Sandboxes alive at once, over all users (429 beyond).
    pub max_sandboxes: u32,
    /// Session creations per user per minute (429 with Retry-After beyond).
    pub create_per_minute: u32,
    pub idle_timeout: HumanDuration,
    pub max_lifetime: HumanDuration,
    /// Attached clients are warned this long before an idle timeout or the maximum lifetime
    /// ends their session; 0s: no warnings.
    pub warn_before: HumanDuration,
    /// An attached client that sends no input (while the shell prints nothing) for
    /// `idle_timeout` counts as idle too; off, attached sessions never idle out.
    pub idle_when_attached: bool,
    pub scrollback: ByteSize,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub init: String,
    pub attach: AttachPolicy,
    /// How long an ended session's scrollback stays attachable before it is dropped from memory.
    pub retain_ended: HumanDuration,
    /// How long the store keeps an ended session's row (its history in the session list);
    /// 0s keeps them forever.
    pub retention: HumanDuration,
    /// A session whose sandbox and shell are not ready by then fails, with the reason.
    pub create_timeout: HumanDuration,
    /// Whether shells run inside tmux in the sandbox (and survive a restart of kterm).
    pub persistence: Persistence,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            max_per_user: 3,
            max_sandboxes: 100,
            create_per_minute: 20,
            idle_timeout: HumanDuration::secs(30 * 60),
            max_lifetime: HumanDuration::secs(8 * 3600),
            warn_before: HumanDuration::secs(5 * 60),
            idle_when_attached: false,
            scrollback: ByteSize(256 * 1024),
            command: Vec::new(),
            env: BTreeMap::new(),
            init: String::new(),
            attach: AttachPolicy::Takeover,
            retain_ended: HumanDuration::secs(300),
            retention: HumanDuration::secs(30 * 24 * 3600),
            create_timeout: HumanDuration::secs(120),
            persistence: Persistence::Auto,
        }
    }
}

/// Values from command-line flags: the last layer.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub state: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Loads defaults -> `file` -> `KTERM_*` env -> `overrides`, then validates.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError(format!(
                    "config file {} does not exist or is not a file",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only nested keys (`KTERM_SECTION__KEY`) are configuration; variables such as
        // KTERM_SESSION_ID or KTERM_CTX_* (set inside sessions) are not and are left alone.
        let env = Env::prefixed("KTERM_").filter(|key| key.as_str().contains("__")).split("__");
        figment = figment.merge(env);
        if let Some(listen) = &overrides.listen {
            figment = figment.merge(Serialized::default("server.listen", listen));
        }
        if let Some(state) = &overrides.state {
            figment = figment.merge(Serialized::default("state.path", state));
        }
        if let Some(format) = overrides.log_format {
            figment = figment.merge(Serialized::default("log.format", format));
        }
        let config: Config = figment.extract().map_err(|e| ConfigError(messages::describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot; each message names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let listen = self.listen_addr()?;
        if !self.server.public_url.is_empty() {
            let url = &self.server.public_url;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::key(
                    "server.public_url",
                    format!("{url:?} must start with http:// or https://"),
                ));
            }
            if url.contains(['?', '#']) || self.server.base_path().contains("//") {
                return Err(ConfigError::key(
                    "server.public_url",
                    format!("{url:?} must be a URL such as https://dash.example.com/kterm, without a query, fragment or empty path segment"),
                ));
            }
        }
        for host in &self.server.allowed_hosts {
            let valid = !host.is_empty()
                && !host.contains("://")
                && !host.chars().any(|c| c.is_whitespace() || c.is_control() || "/?#@".contains(c));
            if !valid {
                return Err(ConfigError::key(
                    "server.allowed_hosts",
                    format!("{host:?} is not a host name or address such as vm.example.com"),
                ));
            }
        }
        let token = &self.server.metrics_token;
        if !token.is_empty() && token.len() < 16 {
            return Err(ConfigError::key("server.metrics_token", "must be at least 16 characters"));
        }
        for origin in &self.server.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(ConfigError::key(
                    "server.allowed_origins",
                    format!("{origin:?} is not an origin such as https://dash.example.com"),
                ));
            }
        }
        if self.server.ping_interval.0 < Duration::from_secs(1) {
            return Err(ConfigError::key("server.ping_interval", "must be at least 1s"));
        }
        if self.state.path.as_os_str().is_empty() {
            return Err(ConfigError::key("state.path", "must not be empty"));
        }
        self.auth.validate(listen)?;
        self.validate_limits()?;
        if self.tls.cert.as_os_str().is_empty() != self.tls.key.as_os_str().is_empty() {
            return Err(ConfigError::key("tls.cert", "set both tls.cert and tls.key, or neither"));
        }
        if self.recording.max_size.0 < 1024 {
            return Err(ConfigError::key("recording.max_size", "must be at least 1k"));
        }
        if self.sessions.max_per_user == 0 {
            return Err(ConfigError::key("sessions.max_per_user", "must be at least 1"));
        }
        if self.sessions.scrollback.0 < 1024 || self.sessions.scrollback.0 > 64 << 20 {
            return Err(ConfigError::key("sessions.scrollback", "must be between 1k and 64m"));
        }
        if self.sessions.idle_timeout.0.is_zero() || self.sessions.max_lifetime.0.is_zero() {
            return Err(ConfigError::key(
                "sessions.idle_timeout",
                "idle_timeout and max_lifetime must be longer than 0s",
            ));
        }
        let sessions = &self.sessions;
        if sessions.idle_when_attached && sessions.warn_before.0 >= sessions.idle_timeout.0 {
            return Err(ConfigError::key(
                "sessions.warn_before",
                format!(
                    "{} must be shorter than sessions.idle_timeout ({}) when \
                     sessions.idle_when_attached = true, or every keystroke would warn again",
                    humantime::format_duration(sessions.warn_before.0),
                    humantime::format_duration(sessions.idle_timeout.0)
                ),
            ));
        }
        if self.sessions.command.first().is_some_and(|c| c.is_empty()) {
            return Err(ConfigError::key("sessions.command", "the program name must not be empty"));
        }
        if self.sessions.create_timeout.0 < Duration::from_secs(1) {
            return Err(ConfigError::key("sessions.create_timeout", "must be at least 1s"));
        }
        for key in self.sessions.env.keys() {
            if !is_env_name(key) {
                return Err(ConfigError::key(
                    "sessions.env",
                    format!("{key:?} is not a valid environment variable name"),
                ));
            }
        }
        self.validate_docker()?;
        if self.files.max_read.0 == 0 || self.files.max_write.0 == 0 {
            return Err(ConfigError::key(
                "files.max_read",
                "max_read and max_write must be above 0",
            ));
        }
        if self.files.memory.0 < self.files.max_write.0 {
            return Err(ConfigError::key(
                "files.memory",
                "must be at least files.max_write, or no upload of the largest size could start",
            ));
        }
        if self.files.timeout.0 < Duration::from_secs(1) {
            return Err(ConfigError::key("files.timeout", "must be at least 1s"));
        }
        if self.exec.max_output.0 == 0 || self.exec.max_concurrent == 0 || self.exec.per_minute == 0
        {
            return Err(ConfigError::key(
                "exec.max_output",
                "exec.max_output, exec.max_concurrent and exec.per_minute must be above 0",
            ));
        }
        if self.exec.timeout.0 > self.exec.max_timeout.0 || self.exec.timeout.0.is_zero() {
            return Err(ConfigError::key(
                "exec.timeout",
                "must be above 0s and at most exec.max_timeout",
            ));
        }
        if self.pool.min > self.pool.max {
            return Err(ConfigError::key("pool.min", "must not be larger than pool.max"));
        }
        for (namespace, size) in &self.pool.namespaces {
            if !is_dns_label(namespace) {
                return Err(ConfigError::key(
                    "pool.namespaces",
                    format!("{namespace:?} is not a namespace (a DNS label)"),
                ));
            }
            size.validate(&format!("pool.namespaces.{namespace}"))?;
        }
        profiles::validate(&self.profiles)?;
        match self.backend.kind {
            // `auto` may fall back to local; that is checked when the backend is chosen.
            BackendKind::Local if !listen.ip().is_loopback() && !self.local.allow_remote => {
                return Err(ConfigError::key(
                    "backend.kind",
                    format!(
                        "the local backend isolates nothing; it serves only loopback addresses, \
                         not {listen}, unless local.allow_remote = true"
                    ),
                ));
            }
            BackendKind::Kubernetes => self.kubernetes.validate()?,
            _ => {}
        }
        Ok(())
    }

    fn validate_docker(&self) -> Result<(), ConfigError> {
        let docker = &self.docker;
        if docker.image.trim().is_empty() {
            return Err(ConfigError::key("docker.image", "must name an image"));
        }
        if docker.memory.0 < 16 << 20 {
            return Err(ConfigError::key("docker.memory", "must be at least 16m"));
        }
        if !(docker.cpus > 0.0 && docker.cpus <= 1024.0) {
            return Err(ConfigError::key("docker.cpus", "must be a number of CPUs above 0"));
        }
        if docker.pids_limit < 8 {
            return Err(ConfigError::key("docker.pids_limit", "must be at least 8"));
        }
        if docker.network == "host" {
            return Err(ConfigError::key(
                "docker.network",
                "\"host\" would give sandboxes the host's network",
            ));
        }
        if docker.network.starts_with("container:") {
            return Err(ConfigError::key(
                "docker.network",
                format!(
                    "{:?} would put every sandbox in another container's network namespace \
                     (its localhost, its listening services); name a Docker network instead",
                    docker.network
                ),
            ));
        }
        for (key, value) in &docker.labels {
            if key.starts_with("kterm.io/") {
                return Err(ConfigError::key(
                    "docker.labels",
                    format!("{key:?} is reserved for kterm"),
                ));
            }
            if value.contains('\0') {
                return Err(ConfigError::key(
                    "docker.labels",
                    format!("the value of {key:?} has a NUL byte"),
                ));
            }
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        for source in &self.server.frame_ancestors {
            let valid = !source.is_empty()
                && !source
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ';' || c == ',');
            if !valid {
                return Err(ConfigError::key(
                    "server.frame_ancestors",
                    format!(
                        "{source:?} is not a CSP source such as 'self' or https://dash.example.com"
                    ),
                ));
            }
        }
        if self.server.max_request_body.0 < 1024 {
            return Err(ConfigError::key("server.max_request_body", "must be at least 1k"));
        }
        if self.server.max_request_headers.0 < 1024 {
            return Err(ConfigError::key("server.max_request_headers", "must be at least 1k"));
        }
        if self.sessions.max_sandboxes == 0 {
            return Err(ConfigError::key("sessions.max_sandboxes", "must be at least 1"));
        }
        if self.sessions.create_per_minute == 0 {
            return Err(ConfigError::key("sessions.create_per_minute", "must be at least 1"));
        }
        Ok(())
    }

    /// The profiles users may choose: `default` (from the backend's keys) unless a listed one
    /// replaces it, then the listed ones in order.
    pub fn effective_profiles(&self) -> Vec<ProfileConfig> {
        let mut profiles = self.profiles.clone();
        if !profiles.iter().any(|p| p.name == DEFAULT_PROFILE) {
            let default = ProfileConfig {
                name: DEFAULT_PROFILE.into(),
                description: "The standard sandbox".into(),
                ..ProfileConfig::default()
            };
            profiles.insert(0, default);
        }
        profiles
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            ConfigError::key(
                "server.listen",
                format!("{:?} is not an address such as 127.0.0.1:8080", self.server.listen),
            )
        })
    }

    /// The directory that holds per-user working directories of the local backend.
    pub fn local_root(&self) -> PathBuf {
        if !self.local.root.as_os_str().is_empty() {
            return self.local.root.clone();
        }
        let parent = self.state.path.parent().unwrap_or(Path::new(""));
        parent.join("workspaces")
    }

    /// Where session recordings go: `recording.directory`, else `recordings` beside the state
    /// file.
    pub fn recording_dir(&self) -> PathBuf {
        if !self.recording.directory.as_os_str().is_empty() {
            return self.recording.directory.clone();
        }
        let parent = self.state.path.parent().unwrap_or(Path::new(""));
        parent.join("recordings")
    }

    /// The effective configuration as TOML, for `kterm check-config`; secrets are masked.
    pub fn to_toml_masked(&self) -> String {
        let mut shown = self.clone();
        for entry in &mut shown.auth.tokens {
            if entry.token.is_some() {
                entry.token = Some("********".into());
            }
        }
        if !shown.server.metrics_token.is_empty() {
            shown.server.metrics_token = "********".into();
        }
        toml_string(&shown)
    }
}

/// A valid environment variable name: letters, digits and `_`, not starting with a digit.
pub(crate) fn is_env_name(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn toml_string(config: &Config) -> String {
    // figment's toml dependency is not re-exported; serialize through its Value type instead.
    let value = figment::value::Value::serialize(config)
        .unwrap_or_else(|_| figment::value::Value::from(""));
    let mut out = String::new();
    let table = |out: &mut String, header: String, body: figment::value::Value| {
        out.push_str(&header);
        if let Some(fields) = body.into_dict() {
            for (key, v) in fields {
                // An unset optional key has no TOML form: it is left out.
                if !matches!(v, figment::value::Value::Empty(..)) {
                    out.push_str(&format!("{key} = {}\n", json_like(&v)));
                }
            }
        }
        out.push('\n');
    };
    if let Some(dict) = value.into_dict() {
        for (section, body) in dict {
            match body {
                // An array of tables ([[profiles]]): one block per entry, none when empty.
                figment::value::Value::Array(_, entries) => {
                    for entry in entries {
                        table(&mut out, format!("[[{section}]]\n"), entry);
                    }
                }
                body => table(&mut out, format!("[{section}]\n"), body),
            }
        }
    }
    out
}

/// Renders a figment value in TOML's inline syntax (strings quoted, arrays and tables inline).
fn json_like(value: &figment::value::Value) -> String {
    use figment::value::Value;
    match value {
        Value::String(_, s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Char(_, c) => serde_json::to_string(&c.to_string()).unwrap_or_default(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_u128()
            .map(|n| n.to_string())
            .or_else(|| n.to_i128().map(|n| n.to_string()))
            .or_else(|| n.to_f64().map(|n| n.to_string()))
            .unwrap_or_default(),
        Value::Empty(..) => "\"\"".into(),
        Value::Dict(_, d) => {
            let items: Vec<String> =
                d.iter().map(|(k, v)| format!("{k} = {}", json_like(v))).collect();
            format!("{{ {} }}", items.join(", "))
        }
        Value::Array(_, a) => {
            let items: Vec<String> = a.iter().map(json_like).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error.
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_are_valid() {
        Jail::expect_with(|_| {
            let config = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(config.server.listen, "127.0.0.1:8080");
            assert_eq!(config.sessions.scrollback, ByteSize(256 * 1024));
            assert_eq!(config.sessions.idle_timeout.0, Duration::from_secs(1800));
            assert_eq!(config.sessions.warn_before.0, Duration::from_secs(300));
            assert!(!config.sessions.idle_when_attached);
            assert_eq!(config.server.base_path(), "");
            Ok(())
        });
    }

    #[test]
    fn layers_file_then_env_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "k.toml",
                "[server]\nlisten = \"127.0.0.1:1111\"\n[sessions]\nmax_per_user = 7\nscrollback = \"1m\"\n",
            )?;
            jail.set_env("KTERM_SESSIONS__MAX_PER_USER", "9");
            jail.set_env("KTERM_SESSION_ID", "not-config");
            let flags = Overrides { listen: Some("127.0.0.1:2222".into()), ..Default::default() };
            let config =
                Config::load(Some(Path::new("k.toml")), &flags).map_err(|e| e.to_string())?;
            assert_eq!(config.server.listen, "127.0.0.1:2222");
            assert_eq!(config.sessions.max_per_user, 9);
            assert_eq!(config.sessions.scrollback, ByteSize(1 << 20));
            Ok(())
        });
    }

    #[test]
    fn unknown_and_bad_keys_are_named() {
        Jail::expect_with(|jail| {
            jail.create_file("k.toml", "[server]\nlisen = \"x\"\n")?;
            let err = Config::load(Some(Path::new("k.toml")), &Overrides::default()).unwrap_err();
            assert!(err.0.contains("lisen"), "{err}");

            jail.create_file("k.toml", "[sessions]\nidle_timeout = \"soon\"\n")?;
            let err = Config::load(Some(Path::new("k.toml")), &Overrides::default()).unwrap_err();
            assert!(err.0.contains("sessions.idle_timeout"), "{err}");

            jail.create_file("k.toml", "[server]\nlisten = \"0.0.0.0:80\"\n")?;
            let err = Config::load(Some(Path::new("k.toml")), &Overrides::default()).unwrap_err();
            assert!(err.0.contains("auth.mode"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn warnings_of_attached_idleness_must_fit_in_the_idle_timeout() {
        Jail::expect_with(|jail| {
            let toml = "[sessions]\nidle_timeout = \"2m\"\nidle_when_attached = true\n";
            jail.create_file("k.toml", toml)?;
            let err = Config::load(Some(Path::new("k.toml")), &Overrides::default()).unwrap_err();
            assert!(err.0.contains("sessions.warn_before"), "{err}");
            jail.create_file("k.toml", &format!("{toml}warn_before = \"30s\"\n"))?;
            let config = Config::load(Some(Path::new("k.toml")), &Overrides::default())
                .map_err(|e| e.to_string())?;
            assert!(config.sessions.idle_when_attached);
            Ok(())
        });
    }

    #[test]
    fn the_base_path_is_public_urls_path() {
        let mut config = Config::default();
        for (url, base) in [
            ("", ""),
            ("https://dash.example.com", ""),
            ("https://dash.example.com/", ""),
            ("https://dash.example.com/tools/kterm", "/tools/kterm"),
            ("http://dash.example.com:8443/tools/kterm/", "/tools/kterm"),
        ] {
            config.server.public_url = url.into();
            assert_eq!(config.server.base_path(), base, "{url}");
            assert!(config.validate().is_ok(), "{url}");
        }
        for url in ["https://dash.example.com/kterm?x=1", "https://dash.example.com//kterm"] {
            config.server.public_url = url.into();
            let err = config.validate().unwrap_err();
            assert!(err.0.contains("server.public_url"), "{err}");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(ByteSize::parse("256k"), Some(ByteSize(262_144)));
        assert_eq!(ByteSize::parse("512MiB"), Some(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("100"), Some(ByteSize(100)));
        assert_eq!(ByteSize::parse("lots"), None);
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod example_tests {
    use super::*;

    /// config.example.toml must list every key with its default: loading it changes nothing.
    #[test]
    fn the_example_file_is_complete_and_says_the_defaults() {
        figment::Jail::expect_with(|_| {
            let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
            let loaded =
                Config::load(Some(&example), &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(loaded.to_toml_masked(), Config::default().to_toml_masked());
            let text = std::fs::read_to_string(&example).map_err(|e| e.to_string())?;
            for line in Config::default().to_toml_masked().lines() {
                if let Some((key, _)) = line.split_once(" = ") {
                    // `state.path`'s default depends on the environment: it is shown commented.
                    let listed = text.contains(&format!("\n{key} = "))
                        || (key == "path" && text.contains(&format!("\n# {key} = ")));
                    assert!(listed, "config.example.toml lacks {key}");
                }
            }
            Ok(())
        });
    }
}
