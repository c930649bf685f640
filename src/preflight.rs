//! What is checked before kterm serves (and by `kterm check-config`), beyond the config's own
//! validation: the files it names (tokens, TLS certificate), and settings that work but are
//! risky, which are warned about at start and by `check-config`.
//!
//! Refused outright (exit 2, the message naming the key) are the clearly wrong ones, in
//! [`crate::config`] and [`crate::auth::TokenTable`]: one token for two users,
//! `auth.trusted_proxies` covering every address, `docker.network = "container:…"`, uid 0.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::auth::TokenTable;
use crate::config::{AuthMode, Config, ConfigError};
use crate::http::tls::TlsCertificate;

/// Checks the files the config names, so that `check-config` and a start fail alike (exit 2);
/// returns the warnings about risky settings.
pub fn preflight(config: &Config) -> Result<Vec<String>, ConfigError> {
    TokenTable::load(&config.auth)?;
    if config.tls.enabled() {
        TlsCertificate::load(&config.tls)?;
    }
    Ok(warnings(config))
}

/// The risky settings of `config`, one sentence each, naming the key.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let server = &config.server;
    let auth = &config.auth;
    let public_is_remote = crate::http::hosts::url_host(&server.public_url)
        .is_some_and(|host| !is_loopback_host(&host));
    if auth.mode == AuthMode::None && public_is_remote {
        out.push(format!(
            "auth.mode is \"none\" but server.public_url ({}) is reached through a proxy: \
             everyone who reaches that URL gets a shell; choose another auth.mode",
            server.public_url
        ));
    }
    if crate::http::security::anonymous_remote(config) {
        out.push(format!(
            "auth.mode is \"none\" on the non-loopback address {} (auth.allow_none_remote): \
             anyone who reaches this port gets a shell",
            server.listen
        ));
    }
    let listen_remote = config.listen_addr().is_ok_and(|a| !a.ip().is_loopback());
    if listen_remote
        && !config.tls.enabled()
        && !server.public_url.starts_with("https://")
        && auth.mode != AuthMode::None
    {
        out.push(format!(
            "server.listen {} is not loopback and kterm serves plain HTTP: tokens, passwords and \
             cookies cross the network in clear unless a TLS proxy is in front (set [tls], or \
             server.public_url to the proxy's https:// URL)",
            server.listen
        ));
    }
    if server.allowed_hosts.iter().any(|h| h == "*") {
        out.push(
            "server.allowed_hosts contains \"*\": any Host is accepted, so a web page whose \
             name is pointed at this server (DNS rebinding) can use it"
                .into(),
        );
    }
    for range in &auth.trusted_proxies {
        let broad = if range.is_ipv4() { range.prefix_len() < 8 } else { range.prefix_len() < 32 };
        if broad {
            out.push(format!(
                "auth.trusted_proxies entry {range} is very broad: every address in it may set \
                 the identity and forwarding headers"
            ));
        }
    }
    if !auth.tokens_file.as_os_str().is_empty() {
        match mode_of(&auth.tokens_file) {
            Some(mode) if mode & 0o002 != 0 => out.push(format!(
                "auth.tokens_file {} is writable by every local user (mode {mode:04o}): anyone \
                 on this machine can add a token; chmod 600 it",
                auth.tokens_file.display()
            )),
            Some(mode) if mode & 0o044 != 0 => out.push(format!(
                "auth.tokens_file {} is readable by other local users (mode {mode:04o}); \
                 chmod 600 it",
                auth.tokens_file.display()
            )),
            _ => {}
        }
    }
    out.extend(state_file_warnings(&config.state.path));
    out
}

/// The state file (and its `-wal`, `-shm`) hold password hashes and the audit log: warn when
/// others may read them.
pub fn state_file_warnings(path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        if let Some(mode) = mode_of(file).filter(|mode| mode & 0o077 != 0) {
            out.push(format!(
                "the state file {} (state.path) is open to other local users (mode {mode:04o}): \
                 it holds password hashes and the audit log; chmod 600 it",
                file.display()
            ));
        }
    }
    out
}

fn mode_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
}

/// `localhost`, `*.localhost`, 127.0.0.0/8 or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risky_settings_are_named() {
        let mut config = Config::default();
        config.state.path = "/nonexistent/kterm.db".into();
        assert!(warnings(&config).is_empty(), "{:?}", warnings(&config));
        config.server.public_url = "https://dash.example.com/kterm".into();
        config.server.allowed_hosts = vec!["*".into()];
        let text = warnings(&config).join("\n");
        assert!(text.contains("server.public_url") && text.contains("allowed_hosts"), "{text}");
        config.server.public_url = "http://localhost:8080".into();
        config.server.allowed_hosts.clear();
        assert!(warnings(&config).is_empty());
    }

    #[test]
    fn open_files_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "alice:alice-token-0123456789\n").unwrap();
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o666)).unwrap();
        let state = dir.path().join("kterm.db");
        std::fs::write(&state, "").unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut config = Config::default();
        config.auth.tokens_file = tokens.clone();
        config.state.path = state.clone();
        let text = warnings(&config).join("\n");
        assert!(text.contains("auth.tokens_file") && text.contains("writable"), "{text}");
        assert!(text.contains("state.path") && text.contains("0644"), "{text}");
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(warnings(&config).is_empty(), "{:?}", warnings(&config));
    }
}
