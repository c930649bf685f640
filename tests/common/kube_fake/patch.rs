//! PATCH bodies by content type: JSON merge patch (RFC 7386), strategic merge patch (merge patch
//! plus lists of named objects merged by `name`, as for containers, env and volumes), JSON patch
//! (RFC 6902), and server-side apply (approximated as a strategic merge of the applied object).

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let base = content_type.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// Applies `patch` to `target`; `Err` is the message of a 422 (JSON patch ops that fail).
pub fn apply(kind: PatchType, target: &Value, patch: &Value) -> Result<Value, String> {
    let mut out = target.clone();
    match kind {
        PatchType::Merge => merge(&mut out, patch, false),
        PatchType::Strategic | PatchType::Apply => merge(&mut out, patch, true),
        PatchType::Json => json_patch(&mut out, patch)?,
    }
    Ok(out)
}

fn merge(target: &mut Value, patch: &Value, by_name: bool) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(target_map) = target else { return };
    for (key, value) in patch_map {
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            target_map.remove(key);
            continue;
        }
        match (target_map.get_mut(key), value) {
            (Some(existing), Value::Array(items))
                if by_name && named(items) && existing.as_array().is_some_and(|a| named(a)) =>
            {
                merge_named(existing, items);
            }
            (Some(existing), Value::Object(_)) if existing.is_object() => {
                merge(existing, value, by_name)
            }
            _ => {
                // A new object is merged into nothing, which drops its nulls (RFC 7386).
                let fresh = if value.is_object() {
                    let mut fresh = Value::Null;
                    merge(&mut fresh, value, by_name);
                    fresh
                } else {
                    value.clone()
                };
                target_map.insert(key.clone(), fresh);
            }
        }
    }
}

fn named(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|i| i["name"].is_string())
}

fn merge_named(existing: &mut Value, items: &[Value]) {
    let Value::Array(list) = existing else { return };
    for item in items {
        match list.iter_mut().find(|e| e["name"] == item["name"]) {
            Some(found) => merge(found, item, true),
            None => list.push(item.clone()),
        }
    }
}

fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("the JSON patch is not a list of operations")?;
    for op in ops {
        let path = op["path"].as_str().ok_or("a JSON patch operation has no path")?;
        match op["op"].as_str() {
            Some("add") => add(target, path, op["value"].clone())?,
            Some("remove") => {
                remove(target, path)?;
            }
            Some("replace") => {
                remove(target, path)?;
                add(target, path, op["value"].clone())?;
            }
            Some("test") => {
                if pointer(target, path) != Some(&op["value"]) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            Some("move") | Some("copy") => {
                let from = op["from"].as_str().ok_or("a JSON patch move/copy has no from")?;
                let value = pointer(target, from)
                    .cloned()
                    .ok_or_else(|| format!("missing value at {from}"))?;
                if op["op"] == "move" {
                    remove(target, from)?;
                }
                add(target, path, value)?;
            }
            other => return Err(format!("unexpected JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split(path: &str) -> Result<(String, String), String> {
    let (parent, last) =
        path.rsplit_once('/').ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok((parent.to_string(), unescape(last)))
}

fn pointer<'a>(target: &'a Value, path: &str) -> Option<&'a Value> {
    target.pointer(path)
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        Some(Value::Array(list)) => {
            let index = if last == "-" {
                list.len()
            } else {
                last.parse().map_err(|_| format!("invalid index in {path}"))?
            };
            if index > list.len() {
                return Err(format!("index out of range in {path}"));
            }
            list.insert(index, value);
            Ok(())
        }
        _ => Err(format!("doc is missing path: {path:?}")),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    let missing = || format!("doc is missing path: {path:?}");
    match target.pointer_mut(&parent) {
        Some(Value::Object(map)) => map.remove(&last).ok_or_else(missing),
        Some(Value::Array(list)) => {
            let index: usize = last.parse().map_err(|_| missing())?;
            if index < list.len() {
                Ok(list.remove(index))
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
}
