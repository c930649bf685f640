//! The labels and names of exec-based sandboxes.
//!
//! Labels say only what is fixed when a sandbox is made: that kterm manages it, which kterm
//! instance (SPEC), its namespace and its profile. Whose it is can change when a warm sandbox is
//! claimed, so it is said where the engine can change it: a Docker container's name (renamed on
//! claim, e.g. `kterm-alice-default-data-3f2a9c81d0b4`), a pod's patched labels
//! ([`owner_labels`]).

use std::collections::BTreeMap;

use super::super::SandboxSpec;

pub const LABEL_MANAGED: &str = "kterm.io/managed";
pub const LABEL_INSTANCE: &str = "kterm.io/instance";
pub const LABEL_NAMESPACE: &str = "kterm.io/namespace";
pub const LABEL_PROFILE: &str = "kterm.io/profile";
pub const LABEL_USER: &str = "kterm.io/user";
pub const LABEL_ROLE: &str = "kterm.io/role";

/// What a sandbox is for, where an engine can say so and change it later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// In the warm pool, bound to nobody.
    Warm,
    /// A user's.
    Sandbox,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Warm => "warm",
            Role::Sandbox => "sandbox",
        }
    }
}

/// The labels fixed at creation: kterm's own (managed, instance, namespace, profile) over
/// `extra` (the operator's; they never override kterm's).
pub fn fixed_labels(
    instance: &str,
    spec: &SandboxSpec,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = managed_labels(instance, extra);
    labels.insert(LABEL_NAMESPACE.into(), spec.namespace.clone());
    labels.insert(LABEL_PROFILE.into(), spec.profile.name.clone());
    labels
}

/// The labels of a user's workspace volume: a volume is only ever that user's.
pub fn volume_labels(
    instance: &str,
    user: &str,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = managed_labels(instance, extra);
    labels.insert(LABEL_USER.into(), label_value(user));
    labels
}

/// The SPEC's labels (managed, instance) over the operator's `extra`.
fn managed_labels(instance: &str, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = extra.clone();
    labels.insert(LABEL_MANAGED.into(), "true".into());
    labels.insert(LABEL_INSTANCE.into(), instance.into());
    labels
}

/// The labels that say whose a sandbox is, for engines that can change labels.
pub fn owner_labels(user: Option<&str>) -> BTreeMap<String, String> {
    let role = if user.is_some() { Role::Sandbox } else { Role::Warm };
    let mut labels = BTreeMap::from([(LABEL_ROLE.to_string(), role.as_str().to_string())]);
    if let Some(user) = user {
        labels.insert(LABEL_USER.into(), label_value(user));
    }
    labels
}

/// A sandbox's name: `kterm-<user>-<namespace>-<profile>-<id>`, or `kterm-warm-…` for one
/// bound to nobody yet. Names allow `[a-zA-Z0-9][a-zA-Z0-9_.-]`; other characters become `_`.
pub fn sandbox_name(user: Option<&str>, namespace: &str, profile: &str, id: &str) -> String {
    let owner = user.map_or_else(|| "warm".to_string(), |u| name_part(u, 32));
    format!("kterm-{owner}-{}-{}-{id}", name_part(namespace, 63), name_part(profile, 32))
}

fn name_part(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect()
}

/// A Kubernetes label value: at most 63 of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
pub fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .take(63)
        .collect();
    mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_whose_and_stay_valid() {
        let name = sandbox_name(Some("al ice/../x"), "default", "data", "3f2a");
        assert_eq!(name, "kterm-al_ice____x-default-data-3f2a");
        assert_eq!(sandbox_name(None, "ml", "default", "9"), "kterm-warm-ml-default-9");
    }

    #[test]
    fn owner_labels_change_with_the_claim() {
        assert_eq!(owner_labels(None)[LABEL_ROLE], "warm");
        let claimed = owner_labels(Some("alice@example.com"));
        assert_eq!(claimed[LABEL_ROLE], "sandbox");
        assert_eq!(claimed[LABEL_USER], "alice_example.com");
        assert_eq!(label_value("-_x_-"), "x");
    }
}
