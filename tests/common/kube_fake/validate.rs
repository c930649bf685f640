//! Object validation as kube-apiserver does it before storing (the 422 of
//! `06-error-statuses.json`): names (RFC 1123), labels and annotations, and the parts of a pod
//! spec kterm builds (containers, images, volumes and mounts, env names, deadlines). Messages
//! are the apimachinery ones, word for word.

use std::collections::BTreeSet;

use serde_json::Value;

use super::respond::Cause;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const QUALIFIED_MSG: &str = "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const ENV_MSG: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')";

/// Problems with a DNS-1123 subdomain (object names).
pub fn subdomain(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 253 {
        errors.push("must be no more than 253 characters".to_string());
    }
    if value.is_empty() || !value.split('.').all(is_label_chars) {
        errors.push(SUBDOMAIN_MSG.to_string());
    }
    errors
}

/// Problems with a DNS-1123 label (container and volume names).
pub fn label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push("must be no more than 63 characters".to_string());
    }
    if !is_label_chars(value) {
        errors.push(LABEL_MSG.to_string());
    }
    errors
}

fn is_label_chars(part: &str) -> bool {
    let b = part.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty() && ok(&b[0]) && ok(&b[b.len() - 1]) && b.iter().all(|c| ok(c) || *c == b'-')
}

fn is_name_part(part: &str) -> bool {
    let b = part.as_bytes();
    let ok = |c: &u8| c.is_ascii_alphanumeric();
    !b.is_empty()
        && ok(&b[0])
        && ok(&b[b.len() - 1])
        && b.iter().all(|c| ok(c) || matches!(c, b'-' | b'_' | b'.'))
}

/// Problems with a label or annotation key.
fn qualified_name(key: &str) -> Vec<String> {
    let parts: Vec<&str> = key.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => return vec![QUALIFIED_MSG.to_string()],
    };
    let mut errors = Vec::new();
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errors.push("prefix part must be non-empty".to_string());
        } else {
            errors.extend(subdomain(prefix).into_iter().map(|e| format!("prefix part {e}")));
        }
    }
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errors.push("name part must be no more than 63 characters".to_string());
    }
    if !name.is_empty() && !is_name_part(name) {
        errors.push(NAME_PART_MSG.to_string());
    }
    errors
}

fn label_value(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !is_name_part(value) {
        errors.push(LABEL_VALUE_MSG.to_string());
    }
    errors
}

/// Name (given or generated), labels and annotations.
pub fn metadata(meta: &Value, causes: &mut Vec<Cause>) {
    let name = meta["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required("metadata.name", "name or generateName is required"));
    } else {
        for e in subdomain(name) {
            causes.push(Cause::invalid("metadata.name", name, &e));
        }
    }
    if let Some(labels) = meta["labels"].as_object() {
        for (k, v) in labels {
            for e in qualified_name(k) {
                causes.push(Cause::invalid("metadata.labels", k, &e));
            }
            let value = v.as_str().unwrap_or_default();
            for e in label_value(value) {
                causes.push(Cause::invalid("metadata.labels", value, &e));
            }
        }
    }
    if let Some(annotations) = meta["annotations"].as_object() {
        let mut size = 0;
        for (k, v) in annotations {
            for e in qualified_name(&k.to_lowercase()) {
                causes.push(Cause::invalid("metadata.annotations", k, &e));
            }
            size += k.len() + v.as_str().map_or(0, str::len);
        }
        if size > 262_144 {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                field: "metadata.annotations".into(),
                message: "Too long: must have at most 262144 bytes".into(),
            });
        }
    }
}

/// The pod spec checks (the metadata is checked by [`metadata`]).
pub fn pod_spec(spec: &Value, causes: &mut Vec<Cause>) {
    let mut volumes = BTreeSet::new();
    for (i, volume) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let name = volume["name"].as_str().unwrap_or_default();
        let field = format!("spec.volumes[{i}].name");
        if name.is_empty() {
            causes.push(Cause::required(&field, ""));
        }
        for e in label(name).into_iter().filter(|_| !name.is_empty()) {
            causes.push(Cause::invalid(&field, name, &e));
        }
        if !volumes.insert(name.to_string()) {
            causes.push(Cause::duplicate(&field, name));
        }
    }
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        causes.push(Cause::required("spec.containers", ""));
    }
    let mut names = BTreeSet::new();
    for (i, container) in containers.iter().enumerate() {
        let at = format!("spec.containers[{i}]");
        let name = container["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(&format!("{at}.name"), ""));
        } else {
            for e in label(name) {
                causes.push(Cause::invalid(&format!("{at}.name"), name, &e));
            }
        }
        if !name.is_empty() && !names.insert(name.to_string()) {
            causes.push(Cause::duplicate(&format!("{at}.name"), name));
        }
        if container["image"].as_str().unwrap_or_default().trim().is_empty() {
            causes.push(Cause::required(&format!("{at}.image"), ""));
        }
        let mut paths = BTreeSet::new();
        for (j, mount) in container["volumeMounts"].as_array().into_iter().flatten().enumerate() {
            let vname = mount["name"].as_str().unwrap_or_default();
            if !volumes.contains(vname) {
                causes.push(Cause::not_found(&format!("{at}.volumeMounts[{j}].name"), vname));
            }
            let path = mount["mountPath"].as_str().unwrap_or_default();
            if path.is_empty() {
                causes.push(Cause::required(&format!("{at}.volumeMounts[{j}].mountPath"), ""));
            } else if !paths.insert(path.to_string()) {
                causes.push(Cause::invalid(
                    &format!("{at}.volumeMounts[{j}].mountPath"),
                    path,
                    "must be unique",
                ));
            }
        }
        for (j, env) in container["env"].as_array().into_iter().flatten().enumerate() {
            let ename = env["name"].as_str().unwrap_or_default();
            let field = format!("{at}.env[{j}].name");
            if ename.is_empty() {
                causes.push(Cause::required(&field, ""));
            } else if !is_env_name(ename) {
                causes.push(Cause::invalid(&field, ename, ENV_MSG));
            }
        }
    }
    if let Some(seconds) = spec.get("activeDeadlineSeconds").filter(|v| !v.is_null()) {
        if seconds.as_i64().is_none_or(|s| s < 1) {
            causes.push(Cause::invalid_raw(
                "spec.activeDeadlineSeconds",
                &seconds.to_string(),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    if let Some(seconds) = spec["terminationGracePeriodSeconds"].as_i64().filter(|s| *s < 0) {
        causes.push(Cause::invalid_raw(
            "spec.terminationGracePeriodSeconds",
            &seconds.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(policy) = spec["restartPolicy"].as_str() {
        if !matches!(policy, "Always" | "OnFailure" | "Never") {
            let message = format!(
                "Unsupported value: {}: supported values: \"Always\", \"OnFailure\", \"Never\"",
                super::respond::go_quote(policy)
            );
            causes.push(Cause {
                reason: "FieldValueNotSupported",
                field: "spec.restartPolicy".into(),
                message,
            });
        }
    }
}

fn is_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_');
    !b.is_empty() && !b[0].is_ascii_digit() && b.iter().all(ok)
}
