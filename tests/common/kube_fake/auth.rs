//! Authentication by bearer token, authorization by the configured rules (RBAC-like: the first
//! matching rule decides, no match denies, `system:masters` may do anything), the 403 a denied
//! request gets, and SubjectAccessReviews decided by the same rules (`03-subjectaccessreview.json`).

use serde_json::{json, Value};

use super::options::{AccessRule, Decision, FakeUser, Subject};
use super::respond::{self, Cause, Reply};
use super::route::RequestInfo;

pub const MASTERS: &str = "system:masters";

#[derive(Clone, Debug)]
pub struct Identity {
    pub name: String,
    pub groups: Vec<String>,
}

impl Identity {
    pub fn anonymous() -> Self {
        Identity { name: "system:anonymous".into(), groups: vec!["system:unauthenticated".into()] }
    }
}

/// The caller behind an `Authorization` header: `Err` is a token nobody has (401).
pub fn authenticate(users: &[FakeUser], header: Option<&str>) -> Result<Identity, ()> {
    let Some(header) = header else { return Ok(Identity::anonymous()) };
    let token = header.strip_prefix("Bearer ").ok_or(())?.trim();
    let user = users.iter().find(|u| u.token == token).ok_or(())?;
    let mut groups = user.groups.clone();
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    Ok(Identity { name: user.name.clone(), groups })
}

/// What an authorizer answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed(Option<String>),
    /// No rule allowed it (RBAC's answer: no reason).
    NoOpinion,
    /// A rule denied it explicitly.
    Denied(Option<String>),
}

/// Decides `verb` on `resource` (with subresource) in `namespace` ("" = cluster scope).
pub fn decide(
    rules: &[AccessRule],
    user: &str,
    groups: &[String],
    verb: &str,
    resource: &str,
    namespace: &str,
) -> Verdict {
    if groups.iter().any(|g| g == MASTERS) {
        return Verdict::Allowed(None);
    }
    let matches_subject = |s: &Subject| match s {
        Subject::User(u) => u == user,
        Subject::Group(g) => groups.contains(g),
        Subject::Anyone => user != "system:anonymous",
    };
    let matches = |list: &[String], value: &str| list.iter().any(|v| v == "*" || v == value);
    let rule = rules.iter().find(|r| {
        matches_subject(&r.subject)
            && matches(&r.verbs, verb)
            && matches(&r.resources, resource)
            && (r.namespaces.is_empty() || matches(&r.namespaces, namespace))
    });
    match rule {
        Some(r) if r.decision == Decision::Allow => Verdict::Allowed(r.reason.clone()),
        Some(r) => Verdict::Denied(r.reason.clone()),
        None => Verdict::NoOpinion,
    }
}

/// The 403 of a denied request, worded as kube-apiserver's `forbiddenMessage`.
pub fn forbidden(info: &RequestInfo, user: &Identity, reason: Option<&str>) -> Reply {
    let (resource, namespace, name) = info.resource();
    let group = info.group();
    let mut message = match namespace.as_str() {
        "" => format!("User \"{}\" cannot {} resource \"{resource}\" in API group \"{group}\" at the cluster scope", user.name, info.verb),
        ns => format!("User \"{}\" cannot {} resource \"{resource}\" in API group \"{group}\" in the namespace \"{ns}\"", user.name, info.verb),
    };
    if let Some(reason) = reason.filter(|r| !r.is_empty()) {
        message = format!("{message}: {reason}");
    }
    // The GroupResource of the error is the resource without its subresource.
    let base = resource.split('/').next().unwrap_or_default();
    let qualified = if group.is_empty() { base.to_string() } else { format!("{base}.{group}") };
    let full = if name.is_empty() {
        format!("{qualified} is forbidden: {message}")
    } else {
        format!("{qualified} \"{name}\" is forbidden: {message}")
    };
    let mut details = json!({ "kind": base });
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    respond::status(403, "Forbidden", &full, Some(details))
}

/// POST of a SubjectAccessReview (`own = false`, decided for `spec.user`/`spec.groups`) or a
/// SelfSubjectAccessReview (decided for the caller).
pub fn review(rules: &[AccessRule], caller: &Identity, body: &Value, own: bool) -> Reply {
    let spec = &body["spec"];
    let kind = if own { "SelfSubjectAccessReview" } else { "SubjectAccessReview" };
    let (user, groups) = if own {
        (caller.name.clone(), caller.groups.clone())
    } else {
        let groups = spec["groups"]
            .as_array()
            .map(|g| g.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        (spec["user"].as_str().unwrap_or_default().to_string(), groups)
    };
    let resource = &spec["resourceAttributes"];
    let non_resource = &spec["nonResourceAttributes"];
    let mut causes = Vec::new();
    if !own && user.is_empty() && groups.is_empty() {
        causes.push(Cause::invalid(
            "spec.user",
            "",
            "at least one of user or group must be specified",
        ));
    }
    if resource.is_object() == non_resource.is_object() {
        causes.push(Cause::invalid(
            "spec.resourceAttributes",
            "null",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    if !causes.is_empty() {
        return respond::invalid_raw(
            &format!("{kind}.authorization.k8s.io"),
            kind,
            "authorization.k8s.io",
            "",
            &causes,
        );
    }
    let verdict = if resource.is_object() {
        let text = |k: &str| resource[k].as_str().unwrap_or_default().to_string();
        let mut res = text("resource");
        if !text("subresource").is_empty() {
            res = format!("{res}/{}", text("subresource"));
        }
        decide(rules, &user, &groups, &text("verb"), &res, &text("namespace"))
    } else if groups.iter().any(|g| g == MASTERS) {
        Verdict::Allowed(None)
    } else {
        Verdict::NoOpinion
    };
    let status = match verdict {
        Verdict::Allowed(Some(reason)) => json!({"allowed": true, "reason": reason}),
        Verdict::Allowed(None) => json!({"allowed": true}),
        Verdict::NoOpinion => json!({"allowed": false}),
        Verdict::Denied(Some(reason)) => {
            json!({"allowed": false, "denied": true, "reason": reason})
        }
        Verdict::Denied(None) => json!({"allowed": false, "denied": true}),
    };
    // The spec comes back as decoded: empty fields (e.g. `groups: []`) are omitted.
    let mut echoed = spec.clone();
    if let Some(obj) = echoed.as_object_mut() {
        obj.retain(|_, v| {
            !(v.is_null() || v.as_array().is_some_and(|a| a.is_empty()) || v.as_str() == Some(""))
        });
    }
    let reply = json!({
        "kind": kind,
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": echoed,
        "status": status,
    });
    respond::json(201, &reply)
}
