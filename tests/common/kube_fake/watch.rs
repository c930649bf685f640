//! Watches: one JSON line per event (`{"type":"ADDED","object":{...}}`, as
//! `01-restricted-pod-watch-events.jsonl`) on a chunked 200 response. From a resourceVersion
//! the history is replayed first; without one (or "0") the current objects come as ADDED; a
//! resourceVersion older than the history gets the 410 `Expired` ERROR event and the end of
//! the stream, as from a real server. Selectors are applied to the old and new object, so an
//! object that starts or stops matching arrives as ADDED or DELETED. BOOKMARKs (when allowed)
//! carry the resourceVersion of the last change this watch has seen; `timeoutSeconds` ends it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::respond::{self, Reply};
use super::route::Query;
use super::selector::{FieldSelector, LabelSelector};
use super::state::Shared;
use super::store::{Change, ChangeType, Kind};

struct Filter {
    kind: Kind,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    /// The event this watch sends for `change`, if any.
    fn event(&self, change: &Change) -> Option<(ChangeType, Arc<Value>)> {
        if change.kind != self.kind
            || self.namespace.as_ref().is_some_and(|ns| *ns != change.namespace)
        {
            return None;
        }
        let now = self.matches(&change.object);
        let before = change.previous.as_ref().is_some_and(|p| self.matches(p));
        let kind = match change.change {
            ChangeType::Added if now => ChangeType::Added,
            ChangeType::Modified if now && before => ChangeType::Modified,
            ChangeType::Modified if now => ChangeType::Added,
            ChangeType::Modified if before => ChangeType::Deleted,
            ChangeType::Deleted if before => ChangeType::Deleted,
            _ => return None,
        };
        Some((kind, change.object.clone()))
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    Bytes::from(format!("{{\"type\":\"{kind}\",\"object\":{}}}\n", respond::to_json(object)))
}

/// Starts a watch of `kind` (in `namespace` or all) for the request's query.
pub fn start(
    shared: &Arc<Shared>,
    kind: Kind,
    namespace: Option<String>,
    query: &Query,
    cancel: CancellationToken,
) -> Reply {
    let labels = match LabelSelector::parse(query.get("labelSelector").unwrap_or_default()) {
        Ok(s) => s,
        Err(e) => return respond::bad_request(&e),
    };
    let fields = match FieldSelector::parse(kind, query.get("fieldSelector").unwrap_or_default()) {
        Ok(s) => s,
        Err(e) => return respond::bad_request(&e),
    };
    let filter = Filter { kind, namespace, labels, fields };
    let timeout =
        query.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs);
    let bookmarks = query.flag("allowWatchBookmarks").then_some(shared.fixed.bookmark_interval);
    let requested = query
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0")
        .map(|rv| rv.parse::<u64>().unwrap_or(0));

    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let (first, live, start_rv) = {
        let state = shared.lock();
        match requested {
            Some(rv) => match state.store.watch_from(rv) {
                Ok((past, live)) => {
                    let lines: Vec<Bytes> = past
                        .iter()
                        .filter_map(|c| filter.event(c))
                        .map(|(t, o)| line(t.wire(), &o))
                        .collect();
                    (lines, Some(live), state.store.rv())
                }
                Err(expired) => {
                    let message = format!(
                        "too old resource version: {} ({})",
                        expired.requested, expired.oldest
                    );
                    let status = respond::status_value(410, "Expired", &message, None);
                    (vec![line("ERROR", &status)], None, state.store.rv())
                }
            },
            None => {
                let current: Vec<Bytes> = state
                    .store
                    .list(kind, filter.namespace.as_deref())
                    .filter(|o| filter.matches(o))
                    .map(|o| line("ADDED", o))
                    .collect();
                (current, Some(state.store.subscribe()), state.store.rv())
            }
        }
    };
    shared.rt.spawn(async move {
        for bytes in first {
            if tx.send(bytes).await.is_err() {
                return;
            }
        }
        if let Some(live) = live {
            stream(filter, live, tx, start_rv, timeout, bookmarks, cancel).await;
        }
    });
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), rx))
    }));
    respond::with_headers(200, "application/json", body.boxed())
}

async fn stream(
    filter: Filter,
    mut live: broadcast::Receiver<Arc<Change>>,
    tx: mpsc::Sender<Bytes>,
    mut last_seen: u64,
    timeout: Option<Duration>,
    bookmarks: Option<Duration>,
    cancel: CancellationToken,
) {
    let ends = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(ends);
    let mut ticker = tokio::time::interval(bookmarks.unwrap_or(Duration::from_secs(3600)));
    ticker.tick().await;
    let api_version = filter.kind.api_version();
    loop {
        let bytes = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = &mut ends => return,
            _ = tx.closed() => return,
            _ = ticker.tick(), if bookmarks.is_some() => {
                let object = json!({
                    "kind": filter.kind.kind(),
                    "apiVersion": api_version,
                    "metadata": {"resourceVersion": last_seen.to_string(), "creationTimestamp": null},
                });
                line("BOOKMARK", &object)
            }
            change = live.recv() => match change {
                Ok(change) => {
                    last_seen = change.rv;
                    match filter.event(&change) {
                        Some((kind, object)) => line(kind.wire(), &object),
                        None => continue,
                    }
                }
                // Too slow or the store is gone: end the watch; the client lists again.
                Err(_) => return,
            },
        };
        if tx.send(bytes).await.is_err() {
            return;
        }
    }
}
