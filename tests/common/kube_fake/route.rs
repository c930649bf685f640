//! What a request is about, as kube-apiserver's RequestInfo sees it: the target (discovery, a
//! collection, an object and its subresource, an access review), the Kubernetes verb (get,
//! list, watch, create, update, patch, delete, deletecollection) and the query.

use hyper::Method;

use super::store::Kind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Version,
    Health,
    /// `/api`
    CoreVersions,
    /// `/api/v1`
    CoreResources,
    /// `/apis`
    Groups,
    /// `/apis/<group>/<version>`
    GroupResources(String),
    Collection {
        kind: Kind,
        namespace: Option<String>,
    },
    Object {
        kind: Kind,
        namespace: Option<String>,
        name: String,
        subresource: Option<String>,
    },
    /// `subjectaccessreviews` (false) or `selfsubjectaccessreviews` (true).
    AccessReview {
        own: bool,
    },
    Unknown,
}

pub struct RequestInfo {
    pub target: Target,
    pub verb: &'static str,
    pub query: Query,
}

impl RequestInfo {
    pub fn parse(method: &Method, path: &str, query: Option<&str>) -> RequestInfo {
        let query = Query::parse(query.unwrap_or_default());
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let target = target(&segments);
        let verb = verb(method, &target, &query);
        RequestInfo { target, verb, query }
    }

    /// `(resource with subresource, namespace, name)` for authorization and request counts.
    pub fn resource(&self) -> (String, String, String) {
        match &self.target {
            Target::Collection { kind, namespace } => {
                (kind.plural().to_string(), namespace.clone().unwrap_or_default(), String::new())
            }
            Target::Object { kind: Kind::Namespace, name, .. } => {
                ("namespaces".into(), name.clone(), name.clone())
            }
            Target::Object { kind, namespace, name, subresource } => {
                let resource = match subresource {
                    Some(sub) => format!("{}/{sub}", kind.plural()),
                    None => kind.plural().to_string(),
                };
                (resource, namespace.clone().unwrap_or_default(), name.clone())
            }
            Target::AccessReview { own: false } => {
                ("subjectaccessreviews".into(), String::new(), String::new())
            }
            Target::AccessReview { own: true } => {
                ("selfsubjectaccessreviews".into(), String::new(), String::new())
            }
            _ => (String::new(), String::new(), String::new()),
        }
    }

    /// The API group of the resource (for 403 messages).
    pub fn group(&self) -> &'static str {
        match &self.target {
            Target::Collection { kind, .. } | Target::Object { kind, .. } => kind.group(),
            Target::AccessReview { .. } => "authorization.k8s.io",
            _ => "",
        }
    }

    /// Discovery, version and health paths, which every caller may read.
    pub fn is_public(&self) -> bool {
        matches!(
            self.target,
            Target::Version
                | Target::Health
                | Target::CoreVersions
                | Target::CoreResources
                | Target::Groups
                | Target::GroupResources(_)
        )
    }
}

fn target(segments: &[&str]) -> Target {
    match segments {
        ["version"] => Target::Version,
        ["healthz"] | ["livez"] | ["readyz"] => Target::Health,
        ["api"] => Target::CoreVersions,
        ["api", "v1"] => Target::CoreResources,
        ["apis"] => Target::Groups,
        ["apis", group, "v1"] if known_group(group) => Target::GroupResources(group.to_string()),
        ["api", "v1", rest @ ..] => resource_target("", rest),
        ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"] => {
            Target::AccessReview { own: false }
        }
        ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"] => {
            Target::AccessReview { own: true }
        }
        ["apis", group, "v1", rest @ ..] => resource_target(group, rest),
        _ => Target::Unknown,
    }
}

fn known_group(group: &str) -> bool {
    matches!(group, "networking.k8s.io" | "authorization.k8s.io")
}

fn resource_target(group: &str, rest: &[&str]) -> Target {
    let kind = |plural: &str| Kind::from_plural(group, plural);
    let found = match rest {
        ["namespaces"] if group.is_empty() => {
            Some(Target::Collection { kind: Kind::Namespace, namespace: None })
        }
        ["namespaces", ns] if group.is_empty() => Some(Target::Object {
            kind: Kind::Namespace,
            namespace: None,
            name: ns.to_string(),
            subresource: None,
        }),
        ["namespaces", ns, plural] => kind(plural)
            .filter(|k| *k != Kind::Namespace)
            .map(|kind| Target::Collection { kind, namespace: Some(ns.to_string()) }),
        ["namespaces", ns, plural, name] => {
            kind(plural).filter(|k| *k != Kind::Namespace).map(|kind| Target::Object {
                kind,
                namespace: Some(ns.to_string()),
                name: name.to_string(),
                subresource: None,
            })
        }
        ["namespaces", ns, plural, name, sub] => {
            kind(plural).filter(|k| *k != Kind::Namespace).map(|kind| Target::Object {
                kind,
                namespace: Some(ns.to_string()),
                name: name.to_string(),
                subresource: Some(sub.to_string()),
            })
        }
        [plural] => kind(plural).map(|kind| Target::Collection { kind, namespace: None }),
        _ => None,
    };
    found.unwrap_or(Target::Unknown)
}

fn verb(method: &Method, target: &Target, query: &Query) -> &'static str {
    let collection = matches!(target, Target::Collection { .. });
    match *method {
        Method::GET | Method::HEAD if collection && query.flag("watch") => "watch",
        Method::GET | Method::HEAD if collection => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

/// A decoded query string, keeping repeated keys (`command=sh&command=-c`).
#[derive(Default, Debug)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: &str) -> Query {
        let pairs = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), String::new()),
            })
            .collect();
        Query { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    /// `true`/`1` (how kube and kubectl spell a set boolean).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }
}

/// Percent-decoding of a form value (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}
