//! tmux-style key names (as `tmux send-keys` takes them) and the bytes a terminal sends for
//! them: `Enter`, `Tab`, `Escape`, `BSpace`, `Space`, `Up`/`Down`/`Left`/`Right`,
//! `Home`/`End`, `PageUp`/`PageDown` (`PPage`/`NPage`), `Insert`/`Delete` (`IC`/`DC`),
//! `F1`-`F12`, `C-a`…`C-z` (and `C-@`, `C-[`, `C-\`, `C-]`, `C-^`, `C-_`, `C-Space`), `M-x`
//! (Escape, then the key: `M-b`, `M-Enter`), and any single character as itself. Names are
//! matched without regard to case, except a single character and the letter after `M-`.
//! The cursor keys are sent as a normal-mode xterm does (`ESC [ A`).

/// The bytes for one key name; `None` when the name is unknown.
pub fn key_bytes(name: &str) -> Option<Vec<u8>> {
    let mut chars = name.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return Some(c.to_string().into_bytes());
    }
    if let Some(rest) = name.strip_prefix("M-").or_else(|| name.strip_prefix("m-")) {
        let mut out = vec![0x1b];
        out.extend(key_bytes(rest)?);
        return Some(out);
    }
    if let Some(rest) = name.strip_prefix("C-").or_else(|| name.strip_prefix("c-")) {
        return control(rest).map(|b| vec![b]);
    }
    let bytes: &[u8] = match name.to_ascii_lowercase().as_str() {
        "enter" => b"\r",
        "tab" => b"\t",
        "btab" => b"\x1b[Z",
        "escape" => b"\x1b",
        "bspace" => b"\x7f",
        "space" => b" ",
        "up" => b"\x1b[A",
        "down" => b"\x1b[B",
        "right" => b"\x1b[C",
        "left" => b"\x1b[D",
        "home" => b"\x1b[H",
        "end" => b"\x1b[F",
        "pageup" | "ppage" => b"\x1b[5~",
        "pagedown" | "npage" => b"\x1b[6~",
        "insert" | "ic" => b"\x1b[2~",
        "delete" | "dc" => b"\x1b[3~",
        "f1" => b"\x1bOP",
        "f2" => b"\x1bOQ",
        "f3" => b"\x1bOR",
        "f4" => b"\x1bOS",
        "f5" => b"\x1b[15~",
        "f6" => b"\x1b[17~",
        "f7" => b"\x1b[18~",
        "f8" => b"\x1b[19~",
        "f9" => b"\x1b[20~",
        "f10" => b"\x1b[21~",
        "f11" => b"\x1b[23~",
        "f12" => b"\x1b[24~",
        _ => return None,
    };
    Some(bytes.to_vec())
}

/// The control character of `C-<rest>`.
fn control(rest: &str) -> Option<u8> {
    if rest.eq_ignore_ascii_case("space") {
        return Some(0);
    }
    let mut chars = rest.chars();
    let (Some(c), None) = (chars.next(), chars.next()) else { return None };
    match c.to_ascii_lowercase() {
        c @ 'a'..='z' => Some(c as u8 - b'a' + 1),
        '@' => Some(0),
        '[' => Some(0x1b),
        '\\' => Some(0x1c),
        ']' => Some(0x1d),
        '^' => Some(0x1e),
        '_' => Some(0x1f),
        '?' => Some(0x7f),
        _ => None,
    }
}

/// The bytes of a list of key names; `Err(name)` names the first unknown one.
pub fn keys_bytes(names: &[String]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for name in names {
        out.extend(key_bytes(name).ok_or_else(|| name.clone())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_what_a_terminal_sends() {
        let cases: &[(&str, &[u8])] = &[
            ("Enter", b"\r"),
            ("C-c", b"\x03"),
            ("C-a", b"\x01"),
            ("C-z", b"\x1a"),
            ("Up", b"\x1b[A"),
            ("M-x", b"\x1bx"),
            ("M-Enter", b"\x1b\r"),
            ("BSpace", b"\x7f"),
            ("F1", b"\x1bOP"),
            ("F12", b"\x1b[24~"),
            ("PageDown", b"\x1b[6~"),
            ("q", b"q"),
            ("é", "é".as_bytes()),
        ];
        for (name, bytes) in cases {
            assert_eq!(key_bytes(name).as_deref(), Some(*bytes), "{name}");
        }
        for bad in ["Foo", "C-", "C-1", "M-Nope", "F13", ""] {
            assert_eq!(key_bytes(bad), None, "{bad}");
        }
        assert_eq!(keys_bytes(&["Up".into(), "Nope".into()]), Err("Nope".into()));
    }
}
