//! Validation of what a client asks for: namespaces and context (SPEC.md).

use std::collections::BTreeMap;

use crate::error::{Error, Result};

const MAX_CONTEXT_ENTRIES: usize = 32;
const MAX_CONTEXT_VALUE: usize = 1024;

pub(super) fn validate_namespace(namespace: &str) -> Result<()> {
    let valid = !namespace.is_empty()
        && namespace.len() <= 63
        && namespace.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !namespace.starts_with('-')
        && !namespace.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "namespace {namespace:?} is not a DNS label (lowercase letters, digits, '-', at most 63)"
        )))
    }
}

/// SPEC: keys `[a-z][a-z0-9_]{0,63}`, values at most 1 KiB, at most 32 entries.
pub(super) fn validate_context(context: &BTreeMap<String, String>) -> Result<()> {
    if context.len() > MAX_CONTEXT_ENTRIES {
        return Err(Error::BadRequest(format!(
            "context has {} entries; at most {MAX_CONTEXT_ENTRIES} are allowed",
            context.len()
        )));
    }
    for (key, value) in context {
        let mut chars = key.chars();
        let valid_key = key.len() <= 64
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_key {
            return Err(Error::BadRequest(format!(
                "context key {key:?} must match [a-z][a-z0-9_]{{0,63}}"
            )));
        }
        if value.len() > MAX_CONTEXT_VALUE {
            return Err(Error::BadRequest(format!(
                "context value of {key:?} is {} bytes; at most {MAX_CONTEXT_VALUE} are allowed",
                value.len()
            )));
        }
        if value.contains('\0') {
            return Err(Error::BadRequest(format!("context value of {key:?} contains a NUL byte")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_rules_follow_the_spec() {
        let ok = BTreeMap::from([("run_id".to_string(), "x".repeat(1024))]);
        assert!(validate_context(&ok).is_ok());
        for bad_key in ["Run", "1a", "a-b", "", &"a".repeat(65)] {
            let bad = BTreeMap::from([(bad_key.to_string(), "v".to_string())]);
            assert!(validate_context(&bad).is_err(), "{bad_key:?} accepted");
        }
        let long = BTreeMap::from([("k".to_string(), "x".repeat(1025))]);
        assert!(validate_context(&long).is_err());
        let many: BTreeMap<_, _> = (0..33).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(validate_context(&many).is_err());
    }

    #[test]
    fn namespaces_are_dns_labels() {
        assert!(validate_namespace("team-a").is_ok());
        assert!(validate_namespace("Team").is_err());
        assert!(validate_namespace("../x").is_err());
        assert!(validate_namespace("").is_err());
    }
}
