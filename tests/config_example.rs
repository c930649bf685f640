//! config.example.toml cannot drift from the configuration kterm reads: its keys are exactly
//! the config structs' keys (both ways: none missing, none unknown), and `kterm check-config`
//! accepts it. (src/config.rs checks that its values are the defaults.)

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Dotted paths of the leaves of `value`: a table with entries is descended into; anything
/// else (a value, an array, an empty table such as a map with no entries, an unset option) is
/// a key.
fn leaf_keys(prefix: &str, value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (key, value) in fields {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                leaf_keys(&path, value, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// Every key kterm's config structs have: `Config`'s, and a profile's under `profiles.`.
fn struct_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    leaf_keys("", &serde_json::to_value(kterm::Config::default()).unwrap(), &mut keys);
    keys.remove("profiles");
    let profile = serde_json::to_value(kterm::config::ProfileConfig::default()).unwrap();
    leaf_keys("profiles", &profile, &mut keys);
    keys
}

/// Every key config.example.toml lists: set ones, and commented ones (`# key = …`: a default
/// that depends on the environment, or the `[[profiles]]` example).
fn example_keys(text: &str) -> BTreeSet<String> {
    use figment::providers::{Format, Toml};
    let value: Value = figment::Figment::from(Toml::string(text)).extract().unwrap();
    let mut keys = BTreeSet::new();
    leaf_keys("", &value, &mut keys);
    let mut section = String::new();
    for line in text.lines() {
        let header = line.trim_start_matches("# ").trim();
        if let Some(name) = header.strip_prefix("[[").and_then(|h| h.strip_suffix("]]")) {
            section = name.to_string();
        } else if let Some(name) = header.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some(commented) = line.strip_prefix("# ") {
            let key = commented.split(" = ").next().unwrap_or_default();
            let is_key = commented.contains(" = ")
                && !key.is_empty()
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if is_key {
                keys.insert(format!("{section}.{key}"));
            }
        }
    }
    // A section with only commented keys (`[state]`) reads as an empty table: not a key.
    let sections: Vec<String> = keys
        .iter()
        .filter(|k| keys.iter().any(|o| o.starts_with(&format!("{k}."))))
        .cloned()
        .collect();
    for section in sections {
        keys.remove(&section);
    }
    keys
}

fn example_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml"))
        .unwrap()
}

#[test]
fn the_example_lists_exactly_the_keys_of_the_config_structs() {
    let text = example_text();
    let structs = struct_keys();
    let example = example_keys(&text);
    let missing: Vec<_> = structs.difference(&example).collect();
    let unknown: Vec<_> = example.difference(&structs).collect();
    assert!(missing.is_empty(), "config.example.toml lacks {missing:?}");
    assert!(unknown.is_empty(), "config.example.toml lists keys kterm does not have: {unknown:?}");
    // Each key has its comment: the line above a key is a comment or another key of a group.
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let is_key = !line.starts_with('#') && line.contains(" = ");
        if is_key && i > 0 {
            let above = lines[i - 1];
            assert!(
                above.starts_with('#') || above.contains(" = "),
                "config.example.toml line {}: `{line}` has no comment",
                i + 1
            );
        }
    }
}

#[test]
fn the_key_walk_sees_a_missing_and_an_unknown_key() {
    // The comparison above is only as good as this walk: a key dropped from the example and
    // one it invents both show.
    let text = example_text().replace("\nping_interval = ", "\n#ping_interval = ");
    let keys = example_keys(&format!("{text}\n[server2]\nfoo = 1\n"));
    assert!(!keys.contains("server.ping_interval"));
    assert!(keys.contains("server2.foo"));
    assert!(struct_keys().contains("server.ping_interval"));
    assert!(struct_keys().contains("state.path"));
    assert!(struct_keys().contains("profiles.image"));
}

#[test]
fn check_config_accepts_the_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_kterm"))
        .args(["check-config", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("configuration is valid"), "{err}");
}
