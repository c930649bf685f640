//! figment's errors, rewritten to read like the README: the key, where its value came from (the
//! file, the environment variable by its name, or a flag), and what to write instead, without
//! serde's type names or parser offsets.

use figment::error::{Actual, Kind};
use figment::Source;

/// One line per problem.
pub fn describe(error: figment::Error) -> String {
    error.into_iter().map(|e| describe_one(&e)).collect::<Vec<_>>().join("\n")
}

fn describe_one(e: &figment::Error) -> String {
    let key = e.path.join(".");
    let what = match &e.kind {
        Kind::UnknownField(_, valid) => {
            let section = &e.path[..e.path.len().saturating_sub(1)];
            let place = if section.is_empty() {
                "sections are".to_string()
            } else {
                format!("keys of [{}] are", section.join("."))
            };
            format!("unknown key; the {place}: {}", valid.join(", "))
        }
        Kind::UnknownVariant(found, choices) => {
            let choices: Vec<String> = choices.iter().map(|c| format!("{c:?}")).collect();
            format!("{found:?} is not one of {}", or_list(&choices))
        }
        Kind::InvalidType(actual, expected) => {
            format!("{} is not {}", found(actual), expected_text(expected))
        }
        Kind::InvalidValue(actual, expected) => {
            format!("{} is out of range: write {}", found(actual), expected_text(expected))
        }
        Kind::InvalidLength(n, expected) => format!("{n} entries, but {expected}"),
        Kind::MissingField(field) => format!("`{field}` is missing"),
        Kind::Message(message) => one_line(message),
        other => other.to_string(),
    };
    let source = source_of(e, &key);
    match (key.is_empty(), source) {
        (true, Some(source)) => format!("{source}: {what}"),
        (true, None) => what,
        (false, Some(source)) => format!("config key `{key}` ({source}): {what}"),
        (false, None) => format!("config key `{key}`: {what}"),
    }
}

/// Where the bad value came from: the file, the environment variable, or the command line.
fn source_of(e: &figment::Error, key: &str) -> Option<String> {
    let metadata = e.metadata.as_ref()?;
    if metadata.name.contains("environment variable") {
        let name = format!("KTERM_{}", e.path.join("__").to_ascii_uppercase());
        return Some(if key.is_empty() {
            "from the environment".into()
        } else {
            format!("from the environment variable {name}")
        });
    }
    match &metadata.source {
        Some(Source::File(path)) => Some(format!("in {}", path.display())),
        Some(Source::Code(_)) => Some("from a command-line flag".into()),
        Some(other) => Some(format!("from {other}")),
        None => None,
    }
}

fn found(actual: &Actual) -> String {
    match actual {
        Actual::Str(s) => format!("{s:?}"),
        Actual::Signed(n) => n.to_string(),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Float(n) => n.to_string(),
        Actual::Bool(b) => b.to_string(),
        Actual::Char(c) => format!("{:?}", c.to_string()),
        Actual::Seq => "a list".into(),
        Actual::Map => "a table".into(),
        Actual::Unit | Actual::Option => "an empty value".into(),
        other => other.to_string(),
    }
}

/// serde's name of what it wanted, as a person would say it.
fn expected_text(expected: &str) -> String {
    let text = match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a string" => "a string in quotes",
        "a sequence" => "a list such as [\"a\", \"b\"]",
        "a map" => "a table",
        other if other.starts_with("struct ") => "a table",
        other => return other.replace('`', ""),
    };
    text.to_string()
}

/// `"a", "b" or "c"`.
fn or_list(items: &[String]) -> String {
    match items {
        [] => "nothing".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// A multi-line message (a TOML parse error with its excerpt) on one line: where, and why.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    match lines.as_slice() {
        [first, .., last] if first.starts_with("TOML parse error at ") => {
            let place = first.trim_start_matches("TOML parse error at ");
            format!("not valid TOML at {place}: {last}")
        }
        _ => lines.join(" "),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error.
mod tests {
    use crate::config::{Config, Overrides};
    use figment::Jail;
    use std::path::Path;

    fn error_of(toml: &str) -> String {
        let mut out = String::new();
        Jail::expect_with(|jail| {
            jail.create_file("k.toml", toml)?;
            out = Config::load(Some(Path::new("k.toml")), &Overrides::default()).unwrap_err().0;
            Ok(())
        });
        out
    }

    #[test]
    fn messages_name_the_key_and_say_what_to_write() {
        let cases = [
            ("[server]\nlisen = 1\n", "keys of [server] are: listen, public_url"),
            ("[nope]\n", "the sections are: server, log, state"),
            ("[sessions]\nmax_per_user = \"many\"\n", "\"many\" is not a whole number (0 or more)"),
            ("[sessions]\nmax_per_user = -1\n", "-1 is out of range: write a whole number"),
            (
                "[backend]\nkind = \"vm\"\n",
                "\"vm\" is not one of \"auto\", \"local\", \"docker\" or \"kubernetes\"",
            ),
            ("[sessions]\nidle_timeout = \"soon\"\n", "such as \"90s\", \"30m\" or \"8h\""),
            ("[sessions]\nidle_timeout = 30\n", "30 is not a duration"),
            ("[sessions]\nscrollback = \"huge\"\n", "such as \"256k\", \"512m\" or \"1g\""),
            ("[sessions]\ncommand = \"bash\"\n", "is not a list such as"),
            ("x = [", "not valid TOML at line 1"),
        ];
        for (toml, expected) in cases {
            let message = error_of(toml);
            assert!(message.contains(expected), "{toml:?}: {message}");
            assert!(message.contains("k.toml") || !message.starts_with("config key"), "{message}");
            assert!(!message.contains("``") && !message.contains(" at 0"), "{message}");
        }
    }

    #[test]
    fn an_environment_variable_is_named() {
        Jail::expect_with(|jail| {
            jail.set_env("KTERM_SESSIONS__IDLE_TIMEOUT", "soon");
            let message = Config::load(None, &Overrides::default()).unwrap_err().0;
            assert!(
                message.contains("from the environment variable KTERM_SESSIONS__IDLE_TIMEOUT"),
                "{message}"
            );
            Ok(())
        });
    }
}
