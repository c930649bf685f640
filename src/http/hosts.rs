//! Where a request says it was sent: the `Host` check against DNS rebinding, and the scheme and
//! host a client reached kterm by (for the Origin check, `websocket_url` and the cookie).
//!
//! Invariants:
//! - Every request, on every route and in every auth mode, passes [`check_host`] before any
//!   handler runs. Accepted hosts: loopback names and addresses (`localhost`, `*.localhost`,
//!   127.0.0.0/8, `::1`), the host of `server.public_url`, the entries of
//!   `server.allowed_hosts`, and, when kterm listens on a non-loopback address, that address,
//!   the machine's own interface addresses and its host name (with and without its domain).
//!   Anything else is 403 with a message naming `server.allowed_hosts`. The host part is
//!   compared case-insensitively, without its port; IPv6 addresses are written in brackets.
//! - A request without any Host (HTTP/1.0) passes: only browsers carry out DNS rebinding, and
//!   they always send one. Such a request has no own origin, so any `Origin` it carries fails.
//! - `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded` are believed only from a peer in
//!   `auth.trusted_proxies`; from anyone else they are ignored. A forwarded host must pass the
//!   same check as `Host`.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::config::Config;
use crate::error::Error;

/// The host names and addresses this server answers to.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    /// Lower-case names (no port); an entry `*.example.com` allows its subdomains.
    names: BTreeSet<String>,
    addrs: BTreeSet<IpAddr>,
    /// `server.allowed_hosts = ["*"]`: the check is off.
    any: bool,
}

impl AllowedHosts {
    /// The hosts of `config`, with the machine's own addresses and name when it listens on a
    /// non-loopback address.
    pub fn for_config(config: &Config) -> AllowedHosts {
        let mut hosts = AllowedHosts::default();
        if let Some(host) = url_host(&config.server.public_url) {
            hosts.add(&host);
        }
        for entry in &config.server.allowed_hosts {
            if entry == "*" {
                hosts.any = true;
            } else {
                hosts.add(entry);
            }
        }
        if let Ok(listen) = config.listen_addr() {
            if !listen.ip().is_loopback() {
                hosts.add_machine(listen);
            }
        }
        hosts
    }

    fn add(&mut self, host: &str) {
        let host = strip_port(host.trim()).to_ascii_lowercase();
        match parse_ip(&host) {
            Some(ip) => {
                self.addrs.insert(ip);
            }
            None if !host.is_empty() => {
                self.names.insert(host.trim_end_matches('.').to_string());
            }
            None => {}
        }
    }

    /// The listen address, every interface address (for a wildcard listen), the host name.
    fn add_machine(&mut self, listen: SocketAddr) {
        if !listen.ip().is_unspecified() {
            self.addrs.insert(listen.ip());
        }
        if let Ok(interfaces) = nix::ifaddrs::getifaddrs() {
            for interface in interfaces {
                let Some(address) = interface.address else { continue };
                if let Some(v4) = address.as_sockaddr_in() {
                    self.addrs.insert(IpAddr::V4(v4.ip()));
                } else if let Some(v6) = address.as_sockaddr_in6() {
                    self.addrs.insert(IpAddr::V6(v6.ip()));
                }
            }
        }
        if let Some(name) = nix::unistd::gethostname().ok().and_then(|n| n.into_string().ok()) {
            let name = name.to_ascii_lowercase();
            if let Some((short, _)) = name.split_once('.') {
                self.names.insert(short.to_string());
            }
            self.names.insert(name);
        }
    }

    /// Whether `host` (a Host header's value: a name or address, with or without a port) is
    /// one of ours.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let host = strip_port(host.trim()).to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        if let Some(ip) = parse_ip(host) {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
                v4 => v4,
            };
            return ip.is_loopback() || self.addrs.contains(&ip);
        }
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        self.names.contains(host)
            || self.names.iter().any(|name| {
                name.strip_prefix("*.").is_some_and(|domain| {
                    host.strip_suffix(domain).is_some_and(|sub| sub.ends_with('.') && sub.len() > 1)
                })
            })
    }
}

/// `host` without a `:port`; `[::1]:8080` is `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        // One colon: a name or IPv4 address with a port. More: a bare IPv6 address.
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// An IP address written as a host: `127.0.0.1`, `[::1]` (or a bare `::1`).
fn parse_ip(host: &str) -> Option<IpAddr> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.parse().ok()
}

/// The host (and port) of an `http(s)://` URL.
pub fn url_host(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    (!authority.is_empty()).then(|| authority.to_ascii_lowercase())
}

/// The Host a request was sent to: the `Host` header, or the URI's authority (HTTP/2).
fn request_host(req: &HttpRequest) -> Option<String> {
    match req.headers().get(header::HOST) {
        Some(value) => Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        None => req.uri().authority().map(|a| a.to_string()),
    }
}

/// The first element's `name=` parameter of a `Forwarded` header.
fn forwarded_param(req: &HttpRequest, name: &str) -> Option<String> {
    let value = req.headers().get(header::FORWARDED)?.to_str().ok()?;
    let first = value.split(',').next()?;
    first.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim().trim_matches('"').to_string())
    })
}

/// The first value of a comma-separated header.
fn first_value(req: &HttpRequest, name: &str) -> Option<String> {
    let value = req.headers().get(name)?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    (!first.is_empty()).then(|| first.to_string())
}

/// Whether the request's TCP peer is a trusted proxy, whose forwarding headers count.
fn from_trusted_proxy(req: &HttpRequest, state: &AppState) -> bool {
    req.peer_addr().is_some_and(|peer| state.auth.is_trusted_proxy(peer.ip()))
}

/// The host a trusted proxy says the client asked for, if it says one.
fn forwarded_host(req: &HttpRequest, state: &AppState) -> Option<String> {
    if !from_trusted_proxy(req, state) {
        return None;
    }
    forwarded_param(req, "host").or_else(|| first_value(req, "x-forwarded-host"))
}

/// How the client reached us: `https` or `http` (believing a trusted proxy).
pub fn public_scheme(req: &HttpRequest, state: &AppState) -> &'static str {
    if from_trusted_proxy(req, state) {
        let said = forwarded_param(req, "proto").or_else(|| first_value(req, "x-forwarded-proto"));
        if let Some(scheme) = said {
            return if scheme.eq_ignore_ascii_case("https") { "https" } else { "http" };
        }
    }
    if req.app_config().secure() {
        "https"
    } else {
        "http"
    }
}

/// The host (with port) the client asked for: a trusted proxy's forwarded host, else `Host`.
pub fn public_host(req: &HttpRequest, state: &AppState) -> Option<String> {
    forwarded_host(req, state).or_else(|| request_host(req))
}

/// Refuses a request whose Host (or trusted forwarded host) is not one of ours.
pub async fn check_host(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let (http, _) = req.parts();
    let refused = [request_host(http), forwarded_host(http, &state)]
        .into_iter()
        .flatten()
        .find(|host| !state.hosts.allows(host));
    let Some(host) = refused else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let shown: String = host.chars().take(100).collect();
    let message =
        format!("Host {shown:?} is not allowed; add it to server.allowed_hosts (DNS rebinding)");
    let error = Error::Forbidden(message.clone());
    let http = req.request().clone();
    super::auth::record_denial(&state, &http, None, None, &error).await;
    let response = if req.path().starts_with("/api/") {
        actix_web::ResponseError::error_response(&error)
    } else {
        HttpResponse::Forbidden().content_type("text/plain; charset=utf-8").body(message + "\n")
    };
    Ok(req.into_response(response).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(public_url: &str, allowed: &[&str], listen: &str) -> AllowedHosts {
        let mut config = Config::default();
        config.server.public_url = public_url.into();
        config.server.allowed_hosts = allowed.iter().map(|s| s.to_string()).collect();
        config.server.listen = listen.into();
        AllowedHosts::for_config(&config)
    }

    #[test]
    fn loopback_public_url_and_allowed_hosts_pass() {
        let h = hosts("https://Dash.Example.com/tools/kterm", &["vm.lan", "*.corp"], "127.0.0.1:1");
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "app.localhost:1",
            "127.0.0.1",
            "127.9.9.9:80",
            "[::1]:8080",
            "[::ffff:127.0.0.1]",
            "dash.example.com",
            "dash.example.com.:443",
            "VM.lan:8080",
            "a.corp",
            "b.a.corp",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "dash.example.com.evil.example",
            "localhost.evil.example",
            "corp",
            "xcorp",
            "10.0.0.1",
            "[::2]",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!h.allows(bad), "{bad}");
        }
    }

    #[test]
    fn a_non_loopback_listen_adds_the_machine() {
        let h = hosts("", &[], "0.0.0.0:8080");
        let name = nix::unistd::gethostname().unwrap().into_string().unwrap();
        assert!(h.allows(&name), "{name}");
        assert!(h.allows(&format!("{}:8080", name.to_uppercase())));
        assert!(!h.allows("evil.example"));
        let h = hosts("", &["*"], "127.0.0.1:1");
        assert!(h.allows("evil.example"), "\"*\" turns the check off");
        let h = hosts("", &[], "192.0.2.7:1");
        assert!(h.allows("192.0.2.7:1"));
    }
}
