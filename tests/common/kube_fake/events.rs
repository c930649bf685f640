//! core/v1 Events about pods, shaped as the samples show (`02-image-pull-*-events.json`): the
//! scheduler's (events.k8s.io style seen through core/v1: `eventTime`, `action`, no count) and
//! the kubelet's (`source`, `count`, first/last timestamps; a repeat bumps `count`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

use super::state::{now, now_micro, State};
use super::store::Kind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Scheduler,
    Kubelet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

impl Severity {
    fn wire(self) -> &'static str {
        match self {
            Severity::Normal => "Normal",
            Severity::Warning => "Warning",
        }
    }
}

/// One event to record about a pod (or one of its containers, with `container`).
pub struct PodEvent<'a> {
    pub source: Source,
    pub severity: Severity,
    pub reason: &'a str,
    pub message: &'a str,
    pub container: Option<&'a str>,
    /// The scheduler's `action` (Binding, Scheduling).
    pub action: &'a str,
}

impl<'a> PodEvent<'a> {
    pub fn kubelet(
        severity: Severity,
        reason: &'a str,
        message: &'a str,
        container: Option<&'a str>,
    ) -> Self {
        PodEvent { source: Source::Kubelet, severity, reason, message, container, action: "" }
    }

    pub fn scheduler(severity: Severity, reason: &'a str, message: &'a str) -> Self {
        let action = if reason == "Scheduled" { "Binding" } else { "Scheduling" };
        PodEvent { source: Source::Scheduler, severity, reason, message, container: None, action }
    }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn event_name(pod: &str) -> String {
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    format!("{pod}.{:x}", nanos + SEQUENCE.fetch_add(1, Ordering::Relaxed))
}

/// Records `event` about `pod` on `node`.
pub fn record(state: &mut State, node: &str, pod: &Value, event: PodEvent<'_>) {
    let meta = &pod["metadata"];
    let namespace = meta["namespace"].as_str().unwrap_or_default().to_string();
    let pod_name = meta["name"].as_str().unwrap_or_default().to_string();
    let mut involved = json!({
        "kind": "Pod",
        "namespace": namespace,
        "name": pod_name,
        "uid": meta["uid"],
        "apiVersion": "v1",
        "resourceVersion": meta["resourceVersion"],
    });
    if let Some(container) = event.container {
        involved["fieldPath"] = json!(format!("spec.containers{{{container}}}"));
    }
    if event.source == Source::Kubelet {
        let repeat = state
            .store
            .list(Kind::Event, Some(&namespace))
            .find(|e| {
                e["involvedObject"]["uid"] == involved["uid"]
                    && e["involvedObject"]["fieldPath"] == involved["fieldPath"]
                    && e["reason"] == event.reason
                    && e["message"] == event.message
            })
            .cloned();
        if let Some(mut existing) = repeat {
            let count = existing["count"].as_i64().unwrap_or(1) + 1;
            existing["count"] = json!(count);
            existing["lastTimestamp"] = json!(now());
            state.store.put(Kind::Event, existing);
            return;
        }
    }
    let mut object = json!({
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {
            "name": event_name(&pod_name),
            "namespace": namespace,
            "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": now(),
        },
        "involvedObject": involved,
        "reason": event.reason,
        "message": event.message,
        "type": event.severity.wire(),
    });
    match event.source {
        Source::Scheduler => {
            object["source"] = json!({});
            object["firstTimestamp"] = Value::Null;
            object["lastTimestamp"] = Value::Null;
            object["eventTime"] = json!(now_micro());
            object["action"] = json!(event.action);
            object["reportingComponent"] = json!("default-scheduler");
            object["reportingInstance"] = json!(format!("default-scheduler-{node}"));
        }
        Source::Kubelet => {
            object["source"] = json!({"component": "kubelet", "host": node});
            object["firstTimestamp"] = json!(now());
            object["lastTimestamp"] = json!(now());
            object["count"] = json!(1);
            object["eventTime"] = Value::Null;
            object["reportingComponent"] = json!("");
            object["reportingInstance"] = json!("");
        }
    }
    state.store.put(Kind::Event, object);
}
