//! Pod Security admission (`pod-security.kubernetes.io/enforce=baseline|restricted` on the
//! namespace), with the check IDs, order (by ID) and messages of k8s.io/pod-security-admission
//! at v1.24, so kterm's pod spec meets the same verdict as on a real cluster:
//! `pods "x" is forbidden: violates PodSecurity "restricted:v1.24": <reason> (<detail>), ...`.

use std::collections::BTreeSet;

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

/// The level and version a namespace enforces, from its labels.
pub fn enforced(labels: &Value) -> (Level, String) {
    let level = match labels["pod-security.kubernetes.io/enforce"].as_str() {
        Some("restricted") => Level::Restricted,
        Some("baseline") => Level::Baseline,
        _ => Level::Privileged,
    };
    let version = match labels["pod-security.kubernetes.io/enforce-version"].as_str() {
        Some(v) if v != "latest" => v.to_string(),
        _ => "v1.24".to_string(),
    };
    (level, version)
}

/// The 403 message for `pod` at `level`, or `None` if it complies.
pub fn violations(pod: &Value, level: Level, version: &str) -> Option<String> {
    if level == Level::Privileged {
        return None;
    }
    let spec = &pod["spec"];
    let containers = containers(spec);
    let mut checks: Vec<(&str, Option<(String, String)>)> = vec![
        ("appArmorProfile", app_armor(&pod["metadata"]["annotations"])),
        ("hostNamespaces", host_namespaces(spec)),
        ("hostPathVolumes", host_path_volumes(spec)),
        ("hostPorts", host_ports(&containers)),
        ("privileged", privileged(&containers)),
        ("procMount", proc_mount(&containers)),
        ("seLinuxOptions", se_linux(spec, &containers)),
        ("sysctls", sysctls(spec)),
    ];
    if level == Level::Restricted {
        checks.push(("allowPrivilegeEscalation", privilege_escalation(&containers)));
        checks.push(("capabilities_restricted", capabilities_restricted(&containers)));
        checks.push(("restrictedVolumes", restricted_volumes(spec)));
        checks.push(("runAsNonRoot", run_as_non_root(spec, &containers)));
        checks.push(("runAsUser", run_as_user(spec, &containers)));
        checks.push(("seccompProfile_restricted", seccomp_restricted(spec, &containers)));
    } else {
        checks.push(("capabilities_baseline", capabilities_baseline(&containers)));
        checks.push(("seccompProfile_baseline", seccomp_baseline(spec, &containers)));
    }
    checks.sort_by(|a, b| a.0.cmp(b.0));
    let failed: Vec<String> = checks
        .into_iter()
        .filter_map(|(_, r)| r)
        .map(
            |(reason, detail)| {
                if detail.is_empty() {
                    reason
                } else {
                    format!("{reason} ({detail})")
                }
            },
        )
        .collect();
    if failed.is_empty() {
        return None;
    }
    let level = if level == Level::Restricted { "restricted" } else { "baseline" };
    Some(format!("violates PodSecurity \"{level}:{version}\": {}", failed.join(", ")))
}

/// Init, regular and ephemeral containers, in that order (the policy's `visitContainers`).
fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect()
}

fn name(c: &Value) -> String {
    c["name"].as_str().unwrap_or_default().to_string()
}

fn pluralize(singular: &str, plural: &str, n: usize) -> String {
    if n == 1 { singular } else { plural }.to_string()
}

fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    items.iter().map(|s| format!("\"{}\"", s.as_ref())).collect::<Vec<_>>().join(", ")
}

fn containers_phrase(names: &[String]) -> String {
    format!("{} {}", pluralize("container", "containers", names.len()), join_quote(names))
}

type Check = Option<(String, String)>;

fn fail(reason: &str, detail: String) -> Check {
    Some((reason.to_string(), detail))
}

fn app_armor(annotations: &Value) -> Check {
    let mut bad: Vec<String> = annotations
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("container.apparmor.security.beta.kubernetes.io/"))
        .filter_map(|(k, v)| {
            let v = v.as_str().unwrap_or_default();
            let ok = v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
            (!ok).then(|| format!("{k}=\"{v}\""))
        })
        .collect();
    if bad.is_empty() {
        return None;
    }
    bad.sort();
    fail(
        &pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", bad.len()),
        bad.join(", "),
    )
}

fn host_namespaces(spec: &Value) -> Check {
    let set: Vec<&str> = [
        ("hostNetwork", "hostNetwork=true"),
        ("hostPID", "hostPID=true"),
        ("hostIPC", "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(k, _)| spec[*k].as_bool() == Some(true))
    .map(|(_, s)| s)
    .collect();
    (!set.is_empty()).then(|| ("host namespaces".to_string(), set.join(", ")))
}

fn host_path_volumes(spec: &Value) -> Check {
    let names: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["hostPath"].is_object())
        .map(name)
        .collect();
    if names.is_empty() {
        return None;
    }
    fail(
        "hostPath volumes",
        format!("{} {}", pluralize("volume", "volumes", names.len()), join_quote(&names)),
    )
}

fn host_ports(containers: &[&Value]) -> Check {
    let mut bad = Vec::new();
    let mut ports = BTreeSet::new();
    for c in containers {
        let used: Vec<i64> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["hostPort"].as_i64())
            .filter(|p| *p != 0)
            .collect();
        if !used.is_empty() {
            bad.push(name(c));
            ports.extend(used.into_iter().map(|p| p.to_string()));
        }
    }
    if bad.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    let detail = format!(
        "{} {} {} {}",
        containers_phrase(&bad),
        pluralize("uses", "use", bad.len()),
        pluralize("hostPort", "hostPorts", ports.len()),
        ports.join(", ")
    );
    fail("hostPort", detail)
}

fn privileged(containers: &[&Value]) -> Check {
    let bad: Vec<String> = containers
        .iter()
        .filter(|c| c["securityContext"]["privileged"].as_bool() == Some(true))
        .map(|c| name(c))
        .collect();
    if bad.is_empty() {
        return None;
    }
    fail(
        "privileged",
        format!("{} must not set securityContext.privileged=true", containers_phrase(&bad)),
    )
}

fn proc_mount(containers: &[&Value]) -> Check {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in containers {
        if let Some(t) = c["securityContext"]["procMount"].as_str().filter(|t| *t != "Default") {
            bad.push(name(c));
            types.insert(t.to_string());
        }
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    fail(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&types)
        ),
    )
}

fn se_linux(spec: &Value, containers: &[&Value]) -> Check {
    let mut types = BTreeSet::new();
    let (mut user, mut role) = (false, false);
    let mut valid = |opts: &Value| -> bool {
        if !opts.is_object() {
            return true;
        }
        let mut ok = true;
        let t = opts["type"].as_str().unwrap_or_default();
        if !matches!(t, "" | "container_t" | "container_init_t" | "container_kvm_t") {
            ok = false;
            types.insert(t.to_string());
        }
        if !opts["user"].as_str().unwrap_or_default().is_empty() {
            ok = false;
            user = true;
        }
        if !opts["role"].as_str().unwrap_or_default().is_empty() {
            ok = false;
            role = true;
        }
        ok
    };
    let mut setters = Vec::new();
    if !valid(&spec["securityContext"]["seLinuxOptions"]) {
        setters.push("pod".to_string());
    }
    let bad: Vec<String> = containers
        .iter()
        .filter(|c| !valid(&c["securityContext"]["seLinuxOptions"]))
        .map(|c| name(c))
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !types.is_empty() {
        let types: Vec<String> = types.into_iter().collect();
        data.push(format!("{} {}", pluralize("type", "types", types.len()), join_quote(&types)));
    }
    if user {
        data.push("user may not be set".to_string());
    }
    if role {
        data.push("role may not be set".to_string());
    }
    fail(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(", "),
            data.join("; ")
        ),
    )
}

fn sysctls(spec: &Value) -> Check {
    const ALLOWED: [&str; 5] = [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
    ];
    let bad: Vec<String> = spec["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !ALLOWED.contains(n))
        .map(String::from)
        .collect();
    (!bad.is_empty()).then(|| ("forbidden sysctls".to_string(), bad.join(", ")))
}

fn privilege_escalation(containers: &[&Value]) -> Check {
    let bad: Vec<String> = containers
        .iter()
        .filter(|c| c["securityContext"]["allowPrivilegeEscalation"].as_bool() != Some(false))
        .map(|c| name(c))
        .collect();
    if bad.is_empty() {
        return None;
    }
    fail(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

fn capability_list<'a>(c: &'a Value, which: &str) -> Vec<&'a str> {
    c["securityContext"]["capabilities"][which]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn capabilities_restricted(containers: &[&Value]) -> Check {
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in containers {
        if !capability_list(c, "drop").contains(&"ALL") {
            missing_drop.push(name(c));
        }
        let added: Vec<&str> =
            capability_list(c, "add").into_iter().filter(|a| *a != "NET_BIND_SERVICE").collect();
        if !added.is_empty() {
            adding.push(name(c));
            forbidden.extend(added.into_iter().map(String::from));
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        let caps: Vec<String> = forbidden.into_iter().collect();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&caps)
        ));
    }
    (!details.is_empty()).then(|| ("unrestricted capabilities".to_string(), details.join("; ")))
}

fn capabilities_baseline(containers: &[&Value]) -> Check {
    const DEFAULT: [&str; 14] = [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
        "",
    ];
    let mut bad = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers {
        let added: Vec<&str> =
            capability_list(c, "add").into_iter().filter(|a| !DEFAULT.contains(a)).collect();
        if !added.is_empty() {
            bad.push(name(c));
            caps.extend(added.into_iter().map(String::from));
        }
    }
    if bad.is_empty() {
        return None;
    }
    let caps: Vec<String> = caps.into_iter().collect();
    fail(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(&caps)
        ),
    )
}

fn restricted_volumes(spec: &Value) -> Check {
    const ALLOWED: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let Some(obj) = v.as_object() else { continue };
        let sources: Vec<&String> = obj.keys().filter(|k| *k != "name").collect();
        if sources.iter().any(|s| ALLOWED.contains(&s.as_str())) {
            continue;
        }
        bad.push(name(v));
        types.insert(sources.first().map_or("unknown".to_string(), |s| s.to_string()));
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    let detail = format!(
        "{} {} {} {} {}",
        pluralize("volume", "volumes", bad.len()),
        join_quote(&bad),
        pluralize("uses", "use", bad.len()),
        pluralize("restricted volume type", "restricted volume types", types.len()),
        join_quote(&types)
    );
    fail("restricted volume types", detail)
}

fn run_as_non_root(spec: &Value, containers: &[&Value]) -> Check {
    let mut setters = Vec::new();
    let pod = spec["securityContext"]["runAsNonRoot"].as_bool();
    if pod == Some(false) {
        setters.push("pod".to_string());
    }
    let pod_ok = pod == Some(true);
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in containers {
        match c["securityContext"]["runAsNonRoot"].as_bool() {
            Some(false) => explicit.push(name(c)),
            Some(true) => {}
            None if !pod_ok => implicit.push(name(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        return fail(
            "runAsNonRoot != true",
            format!("{} must not set securityContext.runAsNonRoot=false", setters.join(" and ")),
        );
    }
    if !implicit.is_empty() {
        return fail(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

fn run_as_user(spec: &Value, containers: &[&Value]) -> Check {
    let mut setters = Vec::new();
    if spec["securityContext"]["runAsUser"].as_i64() == Some(0) {
        setters.push("pod".to_string());
    }
    let bad: Vec<String> = containers
        .iter()
        .filter(|c| c["securityContext"]["runAsUser"].as_i64() == Some(0))
        .map(|c| name(c))
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    (!setters.is_empty()).then(|| {
        ("runAsUser=0".to_string(), format!("{} must not set runAsUser=0", setters.join(" and ")))
    })
}

fn seccomp_type(v: &Value) -> Option<&str> {
    v["securityContext"]["seccompProfile"]
        .is_object()
        .then(|| v["securityContext"]["seccompProfile"]["type"].as_str().unwrap_or_default())
}

fn seccomp_restricted(spec: &Value, containers: &[&Value]) -> Check {
    let valid = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    let mut pod_set = false;
    if let Some(t) = seccomp_type(spec) {
        if valid(t) {
            pod_set = true;
        } else {
            setters.push("pod".to_string());
            values.insert(t.to_string());
        }
    }
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in containers {
        match seccomp_type(c) {
            Some(t) if !valid(t) => {
                explicit.push(name(c));
                values.insert(t.to_string());
            }
            Some(_) => {}
            None if !pod_set => implicit.push(name(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        let values: Vec<String> = values.into_iter().collect();
        return fail(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&values)
            ),
        );
    }
    if !implicit.is_empty() {
        return fail(
            "seccompProfile",
            format!("pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"", containers_phrase(&implicit)),
        );
    }
    None
}

fn seccomp_baseline(spec: &Value, containers: &[&Value]) -> Check {
    let mut setters = Vec::new();
    if seccomp_type(spec) == Some("Unconfined") {
        setters.push("pod".to_string());
    }
    let bad: Vec<String> = containers
        .iter()
        .filter(|c| seccomp_type(c) == Some("Unconfined"))
        .map(|c| name(c))
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    (!setters.is_empty()).then(|| {
        (
            "seccompProfile".to_string(),
            format!(
                "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                setters.join(" and ")
            ),
        )
    })
}
