//! The terminal state that the screen emulator (avt) does not keep but a re-attached client
//! needs: mouse reporting and its encoding, focus reports, bracketed paste, the keypad mode, the
//! cursor style, and the window title.
//!
//! Invariant: [`InputModes::restore`] writes only settings (DECSET, DECKPAM, DECSCUSR, OSC 2),
//! never a query, and nothing for a mode at its default.

use super::scan::{Kind, Sequence};

/// The longest title kept, in bytes; longer ones are cut at a character boundary.
const MAX_TITLE: usize = 256;

/// DEC private modes kept (DECSET/DECRST numbers). Mouse tracking: 9 (X10), 1000 (normal),
/// 1002 (button motion), 1003 (any motion); encodings: 1005 (UTF-8), 1006 (SGR), 1015 (urxvt),
/// 1016 (SGR pixels); 1004 focus reports; 2004 bracketed paste; 66 application keypad (DECNKM);
/// 12 cursor blinking.
const TRACKED: [u16; 12] = [9, 12, 66, 1000, 1002, 1003, 1004, 1005, 1006, 1015, 1016, 2004];

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InputModes {
    /// Bit `i` set: mode `TRACKED[i]` is on.
    on: u16,
    /// `ESC =` (application keypad) since the last `ESC >`.
    keypad: bool,
    /// DECSCUSR's parameter, 0 for the default style.
    cursor_style: u16,
    title: Option<String>,
}

impl InputModes {
    /// Takes a complete sequence; `bytes` are its bytes (for the title's text).
    pub fn apply(&mut self, seq: &Sequence, bytes: &[u8]) {
        match (seq.kind, seq.prefix, seq.intermediate, seq.final_byte) {
            (Kind::Csi, b'?', 0, b'h' | b'l') => {
                let set = seq.final_byte == b'h';
                for mode in seq.params() {
                    if let Some(bit) = TRACKED.iter().position(|m| m == mode) {
                        if set {
                            self.on |= 1 << bit;
                        } else {
                            self.on &= !(1 << bit);
                        }
                    }
                }
            }
            (Kind::Csi, 0, b' ', b'q') => self.cursor_style = seq.first(),
            (Kind::Esc, 0, 0, b'=') => self.keypad = true,
            (Kind::Esc, 0, 0, b'>') => self.keypad = false,
            // RIS: a full reset.
            (Kind::Esc, 0, 0, b'c') => *self = InputModes::default(),
            (Kind::Osc, ..) if matches!(seq.first(), 0 | 2) && seq.payload_from > 0 => {
                self.set_title(bytes.get(seq.payload_from..).unwrap_or_default());
            }
            _ => {}
        }
    }

    fn set_title(&mut self, raw: &[u8]) {
        // Without the terminator (BEL, ESC \ or C2 9C).
        let raw = raw
            .strip_suffix(b"\x07")
            .or_else(|| raw.strip_suffix(b"\x1b\\"))
            .or_else(|| raw.strip_suffix(b"\xc2\x9c"))
            .unwrap_or(raw);
        let mut title = String::from_utf8_lossy(raw).into_owned();
        title.retain(|c| !c.is_control());
        if title.len() > MAX_TITLE {
            let mut cut = MAX_TITLE;
            while !title.is_char_boundary(cut) {
                cut -= 1;
            }
            title.truncate(cut);
        }
        self.title = Some(title).filter(|t| !t.is_empty());
    }

    /// The window title the program set, if any.
    #[cfg(test)]
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// Appends the sequences that set these modes on a terminal in its default state.
    pub fn restore(&self, out: &mut Vec<u8>) {
        let on: Vec<String> = TRACKED
            .iter()
            .enumerate()
            .filter(|(bit, _)| self.on & (1 << bit) != 0)
            .map(|(_, mode)| mode.to_string())
            .collect();
        if !on.is_empty() {
            out.extend_from_slice(format!("\x1b[?{}h", on.join(";")).as_bytes());
        }
        if self.keypad {
            out.extend_from_slice(b"\x1b=");
        }
        if self.cursor_style != 0 {
            out.extend_from_slice(format!("\x1b[{} q", self.cursor_style).as_bytes());
        }
        if let Some(title) = &self.title {
            out.extend_from_slice(b"\x1b]2;");
            out.extend_from_slice(title.as_bytes());
            out.push(0x07);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::screen::scan::{Scanner, Span};

    fn modes_after(data: &[u8]) -> InputModes {
        let mut modes = InputModes::default();
        Scanner::default().scan(data, |span| {
            if let Span::Sequence { start: Some(start), end, sequence } = span {
                modes.apply(&sequence, &data[start..end]);
            }
        });
        modes
    }

    fn restored(modes: &InputModes) -> String {
        let mut out = Vec::new();
        modes.restore(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn keeps_what_vim_sets_and_restores_it() {
        let modes = modes_after(
            b"\x1b[?1000h\x1b[?1006h\x1b[?2004h\x1b=\x1b[2 q\x1b]0;vim: notes.txt\x07\x1b[?1004h\x1b[?1004l",
        );
        assert_eq!(modes.title(), Some("vim: notes.txt"));
        assert_eq!(restored(&modes), "\x1b[?1000;1006;2004h\x1b=\x1b[2 q\x1b]2;vim: notes.txt\x07");
        // Feeding the restored form gives the same modes.
        assert_eq!(modes_after(restored(&modes).as_bytes()), modes);
    }

    #[test]
    fn resets_and_defaults_write_nothing() {
        let modes = modes_after(b"\x1b[?2004h\x1b]2;t\x1b\\\x1bc");
        assert_eq!(modes, InputModes::default());
        assert_eq!(restored(&modes), "");
        let modes = modes_after(b"\x1b[?1002;2004h\x1b[?1002l\x1b>");
        assert_eq!(restored(&modes), "\x1b[?2004h");
    }
}
