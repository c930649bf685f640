//! The `[auth]`, `[tls]` and `[audit]` sections: who may call kterm and how that is recorded.
//! Validation here names the key, as everywhere in the config.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ConfigError, HumanDuration};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    None,
    Token,
    Local,
    Proxy,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub allow_none_remote: bool,
    /// For mode `token`: the users' bearer tokens.
    pub tokens: Vec<TokenEntry>,
    /// For mode `token`: a file of `USER:TOKEN` or `USER:sha256:HEX` lines, read at start.
    pub tokens_file: PathBuf,
    pub admins: Vec<String>,
    /// In mode `none`, the name every request acts as.
    pub none_user: String,
    /// Lifetime of the `kterm_session` cookie.
    pub cookie_ttl: HumanDuration,
    /// Lifetime of a single-use WebSocket ticket.
    pub ticket_ttl: HumanDuration,
    /// For mode `proxy`: the header carrying the user name.
    pub proxy_user_header: String,
    /// For mode `proxy`: an optional header carrying comma-separated groups.
    pub proxy_groups_header: String,
    /// For mode `proxy`: a prefix removed from the user header's value (e.g. `accounts.google.com:`).
    pub proxy_user_prefix: String,
    /// For mode `proxy`: peer addresses (IPs or CIDRs) whose identity headers are believed.
    pub trusted_proxies: Vec<AddrRange>,
    /// Namespaces every user may use; `"*"` means any the backend offers.
    pub namespaces: Vec<String>,
    /// More namespaces per user: `{ alice = ["team-a"] }`.
    pub user_namespaces: BTreeMap<String, Vec<String>>,
    /// More namespaces per group: `{ ml = ["ml-team"] }`.
    pub group_namespaces: BTreeMap<String, Vec<String>>,
    /// Group members, for modes without a groups header: `{ ml = ["alice", "bob"] }`.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Failed password logins per (user name, client) before that pair must wait: this many
    /// make it wait 1s, each further one twice as long.
    pub login_backoff_after: u32,
    /// The longest such wait.
    pub login_backoff_max: HumanDuration,
    /// Failed logins and invalid tokens per client address within `login_failure_window`
    /// before that client's password logins (and further invalid tokens) get 429.
    pub login_max_failures_per_client: u32,
    pub login_failure_window: HumanDuration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::None,
            allow_none_remote: false,
            tokens: Vec::new(),
            tokens_file: PathBuf::new(),
            admins: Vec::new(),
            none_user: "anonymous".into(),
            cookie_ttl: HumanDuration::secs(12 * 3600),
            ticket_ttl: HumanDuration::secs(30),
            proxy_user_header: "kubeflow-userid".into(),
            proxy_groups_header: String::new(),
            proxy_user_prefix: String::new(),
            trusted_proxies: Vec::new(),
            namespaces: vec!["*".into()],
            user_namespaces: BTreeMap::new(),
            group_namespaces: BTreeMap::new(),
            groups: BTreeMap::new(),
            login_backoff_after: 5,
            login_backoff_max: HumanDuration::secs(15 * 60),
            login_max_failures_per_client: 20,
            login_failure_window: HumanDuration::secs(15 * 60),
        }
    }
}

impl AuthConfig {
    pub(super) fn validate(&self, listen: SocketAddr) -> Result<(), ConfigError> {
        match self.mode {
            AuthMode::None if !listen.ip().is_loopback() && !self.allow_none_remote => {
                return Err(ConfigError::key(
                    "auth.mode",
                    format!(
                        "\"none\" lets anyone who reaches {listen} run a shell; listen on loopback, \
                         choose another auth mode, or set auth.allow_none_remote = true"
                    ),
                ));
            }
            AuthMode::Token
                if self.tokens.is_empty() && self.tokens_file.as_os_str().is_empty() =>
            {
                return Err(ConfigError::key(
                    "auth.tokens",
                    "mode \"token\" needs at least one token (auth.tokens or auth.tokens_file)",
                ));
            }
            AuthMode::Proxy if self.trusted_proxies.is_empty() => {
                return Err(ConfigError::key(
                    "auth.trusted_proxies",
                    "mode \"proxy\" needs the addresses of the proxies whose headers to believe",
                ));
            }
            _ => {}
        }
        for (i, entry) in self.tokens.iter().enumerate() {
            entry.validate().map_err(|m| ConfigError::key(&format!("auth.tokens[{i}]"), m))?;
        }
        if self.none_user.is_empty() {
            return Err(ConfigError::key("auth.none_user", "must not be empty"));
        }
        if self.admins.iter().any(String::is_empty) {
            return Err(ConfigError::key("auth.admins", "user names must not be empty"));
        }
        for (key, header) in [
            ("auth.proxy_user_header", &self.proxy_user_header),
            ("auth.proxy_groups_header", &self.proxy_groups_header),
        ] {
            let optional = key == "auth.proxy_groups_header";
            let valid = (optional && header.is_empty())
                || (!header.is_empty()
                    && header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            if !valid {
                return Err(ConfigError::key(
                    key,
                    format!("{header:?} is not an HTTP header name"),
                ));
            }
        }
        let lists = std::iter::once(("auth.namespaces", &self.namespaces))
            .chain(self.user_namespaces.values().map(|v| ("auth.user_namespaces", v)))
            .chain(self.group_namespaces.values().map(|v| ("auth.group_namespaces", v)));
        for (key, list) in lists {
            if let Some(bad) = list.iter().find(|ns| *ns != "*" && !is_dns_label(ns)) {
                return Err(ConfigError::key(
                    key,
                    format!("{bad:?} is neither \"*\" nor a namespace name (a DNS label)"),
                ));
            }
        }
        let ttl = self.ticket_ttl.0;
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(600) {
            return Err(ConfigError::key("auth.ticket_ttl", "must be between 1s and 10m"));
        }
        if self.cookie_ttl.0 < Duration::from_secs(60) {
            return Err(ConfigError::key("auth.cookie_ttl", "must be at least 1m"));
        }
        if self.login_backoff_after == 0 {
            return Err(ConfigError::key("auth.login_backoff_after", "must be at least 1"));
        }
        if self.login_max_failures_per_client == 0 {
            return Err(ConfigError::key(
                "auth.login_max_failures_per_client",
                "must be at least 1",
            ));
        }
        if self.login_backoff_max.0 < Duration::from_secs(1) {
            return Err(ConfigError::key("auth.login_backoff_max", "must be at least 1s"));
        }
        for range in &self.trusted_proxies {
            if range.prefix_len() == 0 {
                return Err(ConfigError::key(
                    "auth.trusted_proxies",
                    format!(
                        "{range} covers every address: anyone could send the identity and \
                         forwarding headers; list the proxies' own addresses"
                    ),
                ));
            }
        }
        if self.login_failure_window.0 < Duration::from_secs(1) {
            return Err(ConfigError::key("auth.login_failure_window", "must be at least 1s"));
        }
        Ok(())
    }
}

/// A lowercase DNS label: what Kubernetes namespaces and kterm namespaces are.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

impl TokenEntry {
    fn validate(&self) -> Result<(), &'static str> {
        if self.user.is_empty() {
            return Err("`user` must not be empty");
        }
        match (&self.token, &self.token_sha256) {
            (Some(t), None) if t.len() >= 16 => Ok(()),
            (Some(_), None) => Err("`token` must be at least 16 characters"),
            (None, Some(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
            (None, Some(_)) => Err("`token_sha256` must be 64 hex digits"),
            _ => Err("set exactly one of `token` or `token_sha256`"),
        }
    }
}

/// An IP address or a CIDR range such as `10.0.0.0/8`, written as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    addr: IpAddr,
    prefix: u8,
}

impl AddrRange {
    pub fn parse(text: &str) -> Option<AddrRange> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => {
                (addr.parse::<IpAddr>().ok()?, Some(prefix.parse::<u8>().ok()?))
            }
            None => (text.trim().parse::<IpAddr>().ok()?, None),
        };
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        (prefix <= bits).then_some(AddrRange { addr, prefix })
    }

    /// The prefix length (32 or 128 for a single address).
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether this is an IPv4 range.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == bits {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl Serialize for AddrRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for AddrRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        AddrRange::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not an address or range such as 10.0.0.5 or 10.0.0.0/8"
            ))
        })
    }
}

/// TLS served by kterm itself, for a host without a reverse proxy. Both paths or neither;
/// SIGHUP reloads them.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Audit rows older than this are deleted; "0s" keeps them forever.
    pub retention: HumanDuration,
    /// Record what users type into terminals (off by default: it may hold secrets).
    pub record_input: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { retention: HumanDuration::secs(30 * 86400), record_input: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_ranges_match() {
        let net = AddrRange::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = AddrRange::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(AddrRange::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(AddrRange::parse("::1/129").is_none());
        assert!(AddrRange::parse("localhost").is_none());
        assert_eq!(AddrRange::parse("fd00::/8").unwrap().to_string(), "fd00::/8");
    }
}
