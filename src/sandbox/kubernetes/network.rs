//! `kubernetes.network_policy`: one NetworkPolicy per namespace kterm makes pods in, selecting
//! this instance's sandboxes: no ingress at all; egress only to DNS (UDP and TCP 53) and the
//! configured `kubernetes.egress` blocks and ports. Made (or brought up to date) before the
//! first pod of each namespace, once per run.

use std::collections::HashSet;
use std::sync::Mutex;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::client::{within, CALL_TIMEOUT};
use crate::config::KubernetesConfig;
use crate::error::{Error, Result};
use crate::sandbox::container::labels::{LABEL_INSTANCE, LABEL_MANAGED};

/// The policy's name in each namespace.
pub const POLICY_NAME: &str = "kterm-sandboxes";

pub struct NetworkPolicies {
    client: kube::Client,
    instance: String,
    egress: Vec<Value>,
    done: Mutex<HashSet<String>>,
}

impl NetworkPolicies {
    pub fn new(client: kube::Client, config: &KubernetesConfig, instance: &str) -> NetworkPolicies {
        let mut egress = vec![json!({"ports": [
            {"protocol": "UDP", "port": 53},
            {"protocol": "TCP", "port": 53},
        ]})];
        for rule in &config.egress {
            let mut entry = json!({"to": [{"ipBlock": {"cidr": rule.cidr}}]});
            if !rule.ports.is_empty() {
                let ports: Vec<Value> =
                    rule.ports.iter().map(|p| json!({"protocol": "TCP", "port": p})).collect();
                entry["ports"] = Value::Array(ports);
            }
            egress.push(entry);
        }
        NetworkPolicies { client, instance: instance.into(), egress, done: Mutex::default() }
    }

    fn body(&self) -> Value {
        let selector = json!({LABEL_MANAGED: "true", LABEL_INSTANCE: self.instance});
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": POLICY_NAME, "labels": selector},
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": self.egress,
            }
        })
    }

    /// Makes sure `namespace` has the policy (once per run).
    pub async fn ensure(&self, namespace: &str) -> Result<()> {
        if self.done.lock().unwrap_or_else(|p| p.into_inner()).contains(namespace) {
            return Ok(());
        }
        let policies: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), namespace);
        let body = self.body();
        let policy: NetworkPolicy = serde_json::from_value(body.clone())
            .map_err(|e| Error::Internal(format!("building the network policy: {e}")))?;
        let what = format!("creating the network policy in namespace {namespace}");
        match within(&what, CALL_TIMEOUT, policies.create(&PostParams::default(), &policy)).await {
            Ok(_) => {}
            Err(e) if e.status() == Some(409) => {
                let what = format!("updating the network policy in namespace {namespace}");
                let patch = json!({"spec": body["spec"]});
                let params = PatchParams::default();
                within(
                    &what,
                    CALL_TIMEOUT,
                    policies.patch(POLICY_NAME, &params, &Patch::Merge(&patch)),
                )
                .await?;
            }
            Err(e) => return Err(e.into_error()),
        }
        self.done.lock().unwrap_or_else(|p| p.into_inner()).insert(namespace.to_string());
        Ok(())
    }
}
