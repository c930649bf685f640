//! `GET /api/v1/namespaces/{ns}/pods/{name}/exec` as a v1.24 API server and kubelet answer it:
//! the option checks (400), the pod's state (404; 400 "does not have a host assigned" before
//! scheduling; the kubelet's 500 `container not found ("main")` in text while the container is
//! not running), then the WebSocket handshake, whose subprotocol is chosen from the offer
//! (`v4.channel.k8s.io` over `v5` unless the fake speaks v5; 403 without upgrade when nothing
//! fits, as `only_v5_offered` shows). The upgraded stream runs in [`session`].

mod frames;
mod session;

pub use frames::{status_json, Outcome, Protocol};

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::options::ExecProtocols;
use super::respond::{self, Reply};
use super::route::Query;
use super::server::Epoch;
use super::state::Shared;
use super::store::Kind;

/// What one exec runs and which streams it has.
pub struct ExecSpec {
    /// The full argv on the host (sandbox entry + the command).
    pub argv: Vec<String>,
    /// The command as the client sent it (for the status message).
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

pub fn handle(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    namespace: &str,
    name: &str,
    query: &Query,
    epoch: &Epoch,
) -> Reply {
    let command = query.all("command");
    let tty = query.flag("tty");
    let (stdin, stdout) = (query.flag("stdin"), query.flag("stdout"));
    // The kubelet drops stderr with a TTY (it is the same stream).
    let stderr = query.flag("stderr") && !tty;
    if command.is_empty() {
        return respond::bad_request("you must specify at least 1 command");
    }
    if !stdin && !stdout && !query.flag("stderr") {
        return respond::bad_request("you must specify at least one of stdin, stdout, stderr");
    }
    let (sandbox, container, protocols) = {
        let state = shared.lock();
        let Some(pod) = state.store.get(Kind::Pod, namespace, name) else {
            return respond::not_found(Kind::Pod, name);
        };
        let names: Vec<String> = super::pod_status::container_names(pod);
        let container = match query.get("container").filter(|c| !c.is_empty()) {
            Some(c) if names.iter().any(|n| n == c) => c.to_string(),
            Some(c) => {
                return respond::bad_request(&format!("container {c} is not valid for pod {name}"))
            }
            None if names.len() == 1 => names[0].clone(),
            None => {
                let message = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                );
                return respond::bad_request(&message);
            }
        };
        if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
            return respond::bad_request(&format!("pod {name} does not have a host assigned"));
        }
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        let running = pod["status"]["phase"] == "Running";
        match state.pods.get(uid).and_then(|r| r.sandbox.clone()).filter(|_| running) {
            Some(sandbox) => (sandbox, container, state.exec_protocols),
            None => return respond::text(500, &format!("container not found (\"{container}\")")),
        }
    };
    if !is_websocket(&req) {
        return respond::bad_request("Upgrade request required");
    }
    let offered: Vec<String> = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    let Some(protocol) = Protocol::choose(&offered, protocols == ExecProtocols::WithV5) else {
        let mut refused = Response::new(respond::full(""));
        *refused.status_mut() = StatusCode::FORBIDDEN;
        refused
            .headers_mut()
            .insert("connection", hyper::header::HeaderValue::from_static("close"));
        return refused;
    };
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| derive_accept_key(k.as_bytes()))
    else {
        return respond::bad_request("Upgrade request required");
    };
    let Some(exec) = sandbox.container(&container).cloned() else {
        return respond::text(500, &format!("container not found (\"{container}\")"));
    };
    let spec = ExecSpec {
        argv: sandbox.argv(&exec, &command),
        command,
        env: exec.env.clone(),
        stdin,
        stdout,
        stderr,
        tty,
    };
    let lose_short = shared.fixed.lose_short_tty_output;
    let (cancel, guard) = (epoch.cancel.clone(), epoch.guard());
    shared.rt.spawn(async move {
        let _guard = guard;
        let upgraded = tokio::select! {
            _ = cancel.cancelled() => return,
            upgraded = hyper::upgrade::on(req) => upgraded,
        };
        if let Ok(upgraded) = upgraded {
            session::run(upgraded, protocol, spec, lose_short, cancel).await;
        }
    });
    let mut switching = Response::new(respond::full(""));
    *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = switching.headers_mut();
    headers.insert("upgrade", hyper::header::HeaderValue::from_static("websocket"));
    headers.insert("connection", hyper::header::HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = key.parse() {
        headers.insert("sec-websocket-accept", accept);
    }
    headers
        .insert("sec-websocket-protocol", hyper::header::HeaderValue::from_static(protocol.name()));
    switching
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    header("upgrade") == "websocket"
        && header("connection").contains("upgrade")
        && header("sec-websocket-version") == "13"
}
