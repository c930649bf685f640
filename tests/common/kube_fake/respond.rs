//! Responses as a kube-apiserver writes them: JSON with its headers, and the `Status` bodies of
//! failures with exactly the messages, reasons and details of the recorded v1.24 samples
//! (`06-error-statuses.json`).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::store::Kind;

pub type Body = BoxBody<Bytes, Infallible>;
pub type Reply = Response<Body>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A response with the headers every API response carries.
pub fn with_headers(code: u16, content_type: &str, body: Body) -> Reply {
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = value.parse() {
            headers.insert(name, value);
        }
    };
    set("audit-id", uuid::Uuid::new_v4().to_string());
    set("cache-control", "no-cache, private".into());
    set("content-type", content_type.into());
    set("x-kubernetes-pf-flowschema-uid", "d3050878-7471-4de4-83fd-1744bd6a8809".into());
    set("x-kubernetes-pf-prioritylevel-uid", "afa8af24-80bf-47ab-a11d-a4ea69dc9955".into());
    response
}

pub fn json(code: u16, value: &Value) -> Reply {
    with_headers(code, "application/json", full(to_json(value)))
}

/// Keys a Go struct writes first, in its order; other keys follow sorted.
const KEY_ORDER: [&str; 18] = [
    "kind",
    "apiVersion",
    "type",
    "object",
    "metadata",
    "name",
    "generateName",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "spec",
    "status",
];

/// Compact JSON with keys roughly in the order kube-apiserver writes them (kind, apiVersion,
/// metadata, spec, status...), so output reads like the recorded samples.
pub fn to_json(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, &mut out);
    out
}

fn write_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| {
                (KEY_ORDER.iter().position(|o| o == k).unwrap_or(KEY_ORDER.len()), k.as_str())
            });
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_json(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

pub fn text(code: u16, body: &str) -> Reply {
    with_headers(code, "text/plain; charset=utf-8", full(body.to_string()))
}

/// A failure `Status` object.
pub fn status_value(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(details) = details {
        status["details"] = details;
    }
    status
}

pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Reply {
    json(code, &status_value(code, reason, message, details))
}

/// `details` naming an object: `{"name", "group" (non-core only), "kind": <plural>}`.
pub fn details(kind: Kind, name: &str) -> Value {
    let mut details = json!({ "kind": kind.plural() });
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    if !kind.group().is_empty() {
        details["group"] = json!(kind.group());
    }
    details
}

pub fn not_found(kind: Kind, name: &str) -> Reply {
    let message = format!("{} \"{name}\" not found", kind.qualified());
    status(404, "NotFound", &message, Some(details(kind, name)))
}

pub fn already_exists(kind: Kind, name: &str) -> Reply {
    let message = format!("{} \"{name}\" already exists", kind.qualified());
    status(409, "AlreadyExists", &message, Some(details(kind, name)))
}

/// 409 for a write whose resourceVersion (or UID precondition) is stale.
pub fn conflict(kind: Kind, name: &str, why: &str) -> Reply {
    let message =
        format!("Operation cannot be fulfilled on {} \"{name}\": {why}", kind.qualified());
    status(409, "Conflict", &message, Some(details(kind, name)))
}

pub const MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// 403 for an admission plugin's rejection: `pods "x" is forbidden: <why>`.
pub fn admission_forbidden(kind: Kind, name: &str, why: &str) -> Reply {
    let message = format!("{} \"{name}\" is forbidden: {why}", kind.qualified());
    status(403, "Forbidden", &message, Some(details(kind, name)))
}

pub fn bad_request(message: &str) -> Reply {
    status(400, "BadRequest", message, None)
}

/// The 404 for a path the server does not serve.
pub fn no_route() -> Reply {
    status(404, "NotFound", "the server could not find the requested resource", Some(json!({})))
}

pub fn method_not_allowed() -> Reply {
    let message = "the server does not allow this method on the requested resource";
    status(405, "MethodNotAllowed", message, Some(json!({})))
}

pub fn unauthorized() -> Reply {
    status(401, "Unauthorized", "Unauthorized", None)
}

/// One field error of a 422.
pub struct Cause {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn invalid(field: &str, value: &str, detail: &str) -> Self {
        let value = go_quote(value);
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {value}: {detail}"),
        }
    }

    /// An invalid non-string value, printed as is (`Invalid value: 0: ...`).
    pub fn invalid_raw(field: &str, value: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {value}: {detail}"),
        }
    }

    pub fn required(field: &str, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Cause { reason: "FieldValueRequired", field: field.into(), message }
    }

    pub fn duplicate(field: &str, value: &str) -> Self {
        Cause {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {}", go_quote(value)),
        }
    }

    pub fn not_found(field: &str, value: &str) -> Self {
        Cause {
            reason: "FieldValueNotFound",
            field: field.into(),
            message: format!("Not found: {}", go_quote(value)),
        }
    }

    pub fn forbidden(field: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        }
    }
}

/// 422 Invalid: `Pod "x" is invalid: <error>` or `[<error>, <error>]` for several.
pub fn invalid(kind: Kind, name: &str, causes: &[Cause]) -> Reply {
    let qualified = match kind.group() {
        "" => kind.kind().to_string(),
        group => format!("{}.{group}", kind.kind()),
    };
    invalid_raw(&qualified, kind.kind(), kind.group(), name, causes)
}

/// 422 Invalid for any kind: `qualified` is `Kind.group` (or just `Kind` in the core group).
pub fn invalid_raw(
    qualified: &str,
    kind: &str,
    group: &str,
    name: &str,
    causes: &[Cause],
) -> Reply {
    let errors: Vec<String> =
        causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
    let aggregate =
        if errors.len() == 1 { errors[0].clone() } else { format!("[{}]", errors.join(", ")) };
    let message = format!("{qualified} \"{name}\" is invalid: {aggregate}");
    let mut details = json!({
        "kind": kind,
        "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
    });
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    status(422, "Invalid", &message, Some(details))
}

/// A string quoted as Go's `%q` does for printable text.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A string as Go 1.19's encoding/json writes it (HTML-safe: `<`, `>`, `&` as `\u003c`…), so
/// exec status frames match a real server's bytes.
pub fn go_json_string(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => {
                let b = c as u32 as usize;
                out.push_str("\\u00");
                out.push(HEX[b >> 4] as char);
                out.push(HEX[b & 0xf] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
