//! The fake's etcd: every object by kind, namespace and name, one global resourceVersion, and a
//! bounded history of changes that watches replay from a resourceVersion.
//!
//! Invariants: every change bumps the global resourceVersion by one and stamps it into the
//! object's `metadata.resourceVersion`; the history holds every change with a resourceVersion
//! above `floor`, in order; a change is published to live watchers while the store is locked,
//! so a watcher that reads the history and subscribes under the same lock misses nothing and
//! sees nothing twice.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

/// How many changes a watch can replay (older resourceVersions get 410 Gone).
const HISTORY: usize = 10_000;
/// Changes buffered for a slow watcher before its watch is ended (a real server drops it too).
const LIVE_BUFFER: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Namespace,
    Pod,
    Event,
    NetworkPolicy,
    PersistentVolumeClaim,
}

impl Kind {
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Pod => "pods",
            Kind::Event => "events",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::PersistentVolumeClaim => "persistentvolumeclaims",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Kind::NetworkPolicy => "networking.k8s.io",
            _ => "",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::NetworkPolicy => "networking.k8s.io/v1",
            _ => "v1",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Event => "Event",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
        }
    }

    /// The resource as error messages name it: `pods`, `networkpolicies.networking.k8s.io`.
    pub fn qualified(self) -> String {
        match self.group() {
            "" => self.plural().to_string(),
            group => format!("{}.{group}", self.plural()),
        }
    }

    pub fn from_plural(group: &str, plural: &str) -> Option<Kind> {
        [Kind::Namespace, Kind::Pod, Kind::Event, Kind::NetworkPolicy, Kind::PersistentVolumeClaim]
            .into_iter()
            .find(|k| k.plural() == plural && k.group() == group)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    pub fn wire(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One committed change, as watches stream it.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: Kind,
    pub namespace: String,
    pub change: ChangeType,
    pub object: Arc<Value>,
    /// The object before the change (for selector transitions), if it existed.
    pub previous: Option<Arc<Value>>,
}

/// A watch asked for a resourceVersion the history no longer holds.
pub struct Expired {
    pub requested: u64,
    pub oldest: u64,
}

type Key = (Kind, String, String);

/// The changes a watch replays and its subscription to the ones after.
pub type Replay = (Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>);

pub struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Change>>,
    floor: u64,
    live: broadcast::Sender<Arc<Change>>,
}

impl Store {
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        Store { rv: 0, objects: BTreeMap::new(), history: VecDeque::new(), floor: 0, live }
    }

    pub fn rv(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind, namespace.to_string(), name.to_string()))
    }

    /// Objects of `kind`, in one namespace or all, ordered by namespace and name.
    pub fn list<'a>(
        &'a self,
        kind: Kind,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |((k, ns, _), _)| *k == kind && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v)
    }

    /// Stores `object` (new or replacing one), stamping the next resourceVersion into it.
    pub fn put(&mut self, kind: Kind, mut object: Value) -> Value {
        let (namespace, name) = identity(&object);
        self.rv += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let key = (kind, namespace.clone(), name);
        let previous = self.objects.insert(key, object.clone());
        let change = if previous.is_some() { ChangeType::Modified } else { ChangeType::Added };
        self.record(kind, namespace, change, &object, previous);
        object
    }

    /// Removes an object; the DELETED change carries it with a new resourceVersion.
    pub fn remove(&mut self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let mut object = self.objects.remove(&(kind, namespace.to_string(), name.to_string()))?;
        let previous = object.clone();
        self.rv += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        self.record(kind, namespace.to_string(), ChangeType::Deleted, &object, Some(previous));
        Some(object)
    }

    fn record(
        &mut self,
        kind: Kind,
        namespace: String,
        change: ChangeType,
        object: &Value,
        previous: Option<Value>,
    ) {
        let change = Arc::new(Change {
            rv: self.rv,
            kind,
            namespace,
            change,
            object: Arc::new(object.clone()),
            previous: previous.map(Arc::new),
        });
        self.history.push_back(change.clone());
        while self.history.len() > HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.live.send(change);
    }

    /// The changes after `rv` and a subscription to every later one.
    pub fn watch_from(&self, rv: u64) -> Result<Replay, Expired> {
        if rv < self.floor {
            return Err(Expired { requested: rv, oldest: self.floor });
        }
        let past = self.history.iter().filter(|c| c.rv > rv).cloned().collect();
        Ok((past, self.live.subscribe()))
    }

    /// A subscription to every change after now.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.live.subscribe()
    }

    /// Forgets the history: every watch from an older resourceVersion gets 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.floor = self.rv;
    }
}

/// `(namespace, name)` of an object ("" namespace for cluster-scoped ones).
pub fn identity(object: &Value) -> (String, String) {
    let meta = &object["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (text(&meta["namespace"]), text(&meta["name"]))
}
