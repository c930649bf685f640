//! The HTTPS front: a listener on 127.0.0.1, TLS, HTTP/1.1 with upgrades (hyper), and the
//! request pipeline of kube-apiserver: authentication (401), authorization (403), then the
//! handler for the route. A serving [`Epoch`] owns the listener and every connection; ending it
//! (pause) closes them all, and a new epoch serves the same state on the same port.
//!
//! Invariant: every task that holds a socket of an epoch holds one of its [`AliveGuard`]s, so
//! [`Epoch::stop`] returns only once the port refuses connections and no connection is open.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::auth::{self, Verdict};
use super::patch::PatchType;
use super::pods::{self, DeleteOptions};
use super::respond::{self, Reply};
use super::route::{RequestInfo, Target};
use super::state::{RequestRecord, Shared};
use super::store::Kind;
use super::{discovery, exec, rest, watch};

/// The request body limit of kube-apiserver (3 MiB).
const BODY_LIMIT: usize = 3 * 1024 * 1024;

/// One period of serving, from start (or resume) to pause (or drop).
#[derive(Clone)]
pub struct Epoch {
    pub cancel: CancellationToken,
    alive: Arc<AtomicUsize>,
}

/// Counts a task holding a socket of the epoch.
pub struct AliveGuard(Arc<AtomicUsize>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Epoch {
    pub fn guard(&self) -> AliveGuard {
        self.alive.fetch_add(1, Ordering::SeqCst);
        AliveGuard(self.alive.clone())
    }

    /// Closes the listener and every connection; waits (up to 5 s) until they are closed.
    pub fn stop(&self) {
        self.cancel.cancel();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.alive.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Serves `listener` until the returned epoch is stopped.
pub fn serve(
    shared: Arc<Shared>,
    tls: Arc<rustls::ServerConfig>,
    listener: std::net::TcpListener,
) -> std::io::Result<Epoch> {
    listener.set_nonblocking(true)?;
    let epoch = Epoch { cancel: CancellationToken::new(), alive: Arc::new(AtomicUsize::new(0)) };
    let guard = epoch.guard();
    let accept_epoch = epoch.clone();
    let rt = shared.rt.clone();
    let _enter = rt.enter();
    let listener = tokio::net::TcpListener::from_std(listener)?;
    rt.spawn(async move {
        let _guard = guard;
        let acceptor = TlsAcceptor::from(tls);
        loop {
            let accepted = tokio::select! {
                _ = accept_epoch.cancel.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else { continue };
            let conn_guard = accept_epoch.guard();
            let (shared, epoch, acceptor) =
                (shared.clone(), accept_epoch.clone(), acceptor.clone());
            tokio::spawn(async move {
                let _guard = conn_guard;
                let cancel = epoch.cancel.clone();
                let tls = tokio::select! {
                    _ = cancel.cancelled() => return,
                    tls = acceptor.accept(stream) => match tls { Ok(t) => t, Err(_) => return },
                };
                let service = service_fn(move |req| {
                    let (shared, epoch) = (shared.clone(), epoch.clone());
                    async move { Ok::<_, Infallible>(handle(shared, epoch, req).await) }
                });
                let connection = http1::Builder::new()
                    .title_case_headers(true)
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades();
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = connection => {}
                }
            });
        }
        // The listener drops here: the port refuses connections.
    });
    Ok(epoch)
}

async fn handle(shared: Arc<Shared>, epoch: Epoch, req: Request<Incoming>) -> Reply {
    let info = RequestInfo::parse(req.method(), req.uri().path(), req.uri().query());
    let header = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(String::from);
    let authenticated = auth::authenticate(&shared.lock().users, header.as_deref());
    let (user, reply) = match authenticated {
        Err(()) => ("".to_string(), respond::unauthorized()),
        Ok(user) => {
            let reply = match authorize(&shared, &info, &user) {
                Some(denied) => denied,
                None => route(&shared, &epoch, &info, &user, req).await,
            };
            (user.name, reply)
        }
    };
    let (resource, namespace, name) = info.resource();
    let record = RequestRecord {
        verb: info.verb.to_string(),
        resource,
        namespace,
        name,
        user,
        code: reply.status().as_u16(),
    };
    shared.lock().requests.push(record);
    reply
}

fn authorize(shared: &Shared, info: &RequestInfo, user: &auth::Identity) -> Option<Reply> {
    if info.is_public() {
        return None;
    }
    let (resource, namespace, _) = info.resource();
    if matches!(info.target, Target::AccessReview { own: true }) && user.name != "system:anonymous"
    {
        return None;
    }
    let verdict = auth::decide(
        &shared.lock().rules,
        &user.name,
        &user.groups,
        info.verb,
        &resource,
        &namespace,
    );
    match verdict {
        Verdict::Allowed(_) => None,
        Verdict::NoOpinion => Some(auth::forbidden(info, user, None)),
        Verdict::Denied(reason) => Some(auth::forbidden(info, user, reason.as_deref())),
    }
}

async fn body_of(req: Request<Incoming>) -> Result<(Option<String>, Vec<u8>), Box<Reply>> {
    let content_type =
        req.headers().get("content-type").and_then(|v| v.to_str().ok()).map(String::from);
    match Limited::new(req.into_body(), BODY_LIMIT).collect().await {
        Ok(body) => Ok((content_type, body.to_bytes().to_vec())),
        Err(_) => Err(Box::new(respond::status(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
            None,
        ))),
    }
}

fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, Box<Reply>> {
    serde_json::from_slice(bytes).map_err(|e| {
        Box::new(respond::bad_request(&format!("error decoding the request body: {e}")))
    })
}

async fn route(
    shared: &Arc<Shared>,
    epoch: &Epoch,
    info: &RequestInfo,
    user: &auth::Identity,
    req: Request<Incoming>,
) -> Reply {
    let method = req.method().clone();
    let query = &info.query;
    let dry_run = query.get("dryRun") == Some("All");
    match (&info.target, &method) {
        (Target::Health, &Method::GET) => respond::text(200, "ok"),
        (
            t @ (Target::Version
            | Target::CoreVersions
            | Target::CoreResources
            | Target::Groups
            | Target::GroupResources(_)),
            &Method::GET,
        ) => match discovery::document(t, shared.fixed.port) {
            Some(doc) => respond::json(200, &doc),
            None => respond::no_route(),
        },
        (Target::Collection { kind, namespace }, &Method::GET) => {
            if info.verb == "watch" {
                return watch::start(shared, *kind, namespace.clone(), query, epoch.cancel.clone());
            }
            rest::list(&shared.lock().store, *kind, namespace.as_deref(), query)
        }
        (Target::Object { kind: Kind::Namespace, name, .. }, &Method::GET) => {
            rest::get(&shared.lock().store, Kind::Namespace, "", name)
        }
        (Target::Object { kind, namespace: Some(ns), name, subresource: None }, &Method::GET) => {
            rest::get(&shared.lock().store, *kind, ns, name)
        }
        (
            Target::Object { kind: Kind::Pod, namespace: Some(ns), name, subresource: Some(sub) },
            &Method::GET | &Method::POST,
        ) if sub == "exec" => {
            let (ns, name) = (ns.clone(), name.clone());
            exec::handle(shared, req, &ns, &name, query, epoch)
        }
        (Target::Collection { kind, namespace: Some(ns) }, &Method::POST)
            if *kind != Kind::Event =>
        {
            let body = match body_of(req).await.and_then(|(_, b)| parse_json(&b)) {
                Ok(b) => b,
                Err(reply) => return *reply,
            };
            match kind {
                Kind::Pod => pods::create(shared, ns, body, dry_run),
                kind => rest::create(shared, *kind, ns, body, dry_run),
            }
        }
        (Target::Collection { kind: Kind::Pod, namespace: Some(ns) }, &Method::DELETE) => {
            let (_, bytes) = match body_of(req).await {
                Ok(b) => b,
                Err(reply) => return *reply,
            };
            pods::delete_collection(shared, ns, query, &DeleteOptions::parse(&bytes, query))
        }
        (
            Target::Object { kind, namespace: Some(ns), name, subresource: None },
            m @ (&Method::PUT | &Method::PATCH),
        ) if matches!(kind, Kind::Pod | Kind::NetworkPolicy | Kind::PersistentVolumeClaim) => {
            let (content_type, bytes) = match body_of(req).await {
                Ok(b) => b,
                Err(reply) => return *reply,
            };
            let patch_type = if *m == Method::PATCH {
                match PatchType::from_content_type(content_type.as_deref().unwrap_or_default()) {
                    Some(t) => Some(t),
                    None => return unsupported_media(),
                }
            } else {
                None
            };
            if patch_type == Some(PatchType::Apply)
                && query.get("fieldManager").is_none_or(str::is_empty)
            {
                return respond::bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
            }
            let mut body = match parse_json(&bytes) {
                Ok(b) => b,
                Err(reply) => return *reply,
            };
            // Server-side apply creates what does not exist yet.
            let exists = shared.lock().store.get(*kind, ns, name).is_some();
            if patch_type == Some(PatchType::Apply) && !exists {
                body["metadata"]["name"] = serde_json::json!(name);
                return match kind {
                    Kind::Pod => pods::create(shared, ns, body, dry_run),
                    kind => rest::create(shared, *kind, ns, body, dry_run),
                };
            }
            match kind {
                Kind::Pod => pods::update(shared, ns, name, body, patch_type),
                kind => rest::update(shared, *kind, ns, name, body, patch_type),
            }
        }
        (
            Target::Object { kind, namespace: Some(ns), name, subresource: None },
            &Method::DELETE,
        ) if matches!(kind, Kind::Pod | Kind::NetworkPolicy | Kind::PersistentVolumeClaim) => {
            let (_, bytes) = match body_of(req).await {
                Ok(b) => b,
                Err(reply) => return *reply,
            };
            match kind {
                Kind::Pod => pods::delete(shared, ns, name, &DeleteOptions::parse(&bytes, query)),
                kind => rest::delete(shared, *kind, ns, name),
            }
        }
        (Target::AccessReview { own }, &Method::POST) => {
            let body = match body_of(req).await.and_then(|(_, b)| parse_json(&b)) {
                Ok(b) => b,
                Err(reply) => return *reply,
            };
            auth::review(&shared.lock().rules, user, &body, *own)
        }
        (Target::Unknown, _) | (Target::Object { subresource: Some(_), .. }, _) => {
            respond::no_route()
        }
        _ => respond::method_not_allowed(),
    }
}

fn unsupported_media() -> Reply {
    let message = "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";
    respond::status(415, "UnsupportedMediaType", message, None)
}
