//! What the agent API reads from and writes to a live session, whether or not a browser is
//! attached: typed input ([`Session::type_input`]), the current screen rebuilt from the
//! terminal state ([`Session::screen`]), and waiting for a pattern on the screen or in new
//! output ([`Session::wait_for`]).
//!
//! Invariants:
//! - Nothing here changes what an attached client sees: the screen is rebuilt in a fresh
//!   emulator from a snapshot (the same one an attach sends), outside the session's lock.
//! - A wait holds a bounded amount of new output ([`MAX_WAIT_OUTPUT`]) and rebuilds the screen
//!   at most every [`SCREEN_RECHECK`], however fast the output comes.

use std::time::Duration;

use bytes::Bytes;
use regex::Regex;
use serde::Serialize;
use tokio::time::Instant;

use super::terminal::Session;
use crate::error::{Error, Result};

/// The most scrollback lines a screen read may ask for.
pub const MAX_SCROLLBACK: usize = 10_000;
/// New output a wait keeps to match against (the newest part of it).
const MAX_WAIT_OUTPUT: usize = 1 << 20;
/// How often a wait rebuilds the screen while output keeps coming.
const SCREEN_RECHECK: Duration = Duration::from_millis(50);

/// How a screen's lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScreenFormat {
    Text,
    /// With SGR sequences for colours and attributes.
    Ansi,
}

/// The screen as a client would see it now.
#[derive(Debug, Serialize)]
pub struct ScreenView {
    pub cols: u16,
    pub rows: u16,
    pub cursor: CursorView,
    pub alternate_screen: bool,
    /// The visible rows, top to bottom (trailing blanks trimmed).
    pub lines: Vec<String>,
    /// With `?scrollback=N`: up to N lines above the screen, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrollback: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct CursorView {
    pub row: usize,
    pub col: usize,
    pub visible: bool,
}

/// Where a wait looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitSource {
    /// The visible screen (its lines joined with `\n`).
    Screen,
    /// Output since the wait began, escape sequences removed.
    Output,
    /// Either.
    Any,
}

/// What a wait found.
#[derive(Debug, Serialize)]
pub struct WaitMatch {
    /// `screen` or `output`.
    pub source: &'static str,
    /// The text that matched.
    #[serde(rename = "match")]
    pub matched: String,
    /// The capture groups (`null` for a group that did not take part).
    pub groups: Vec<Option<String>>,
    /// On the screen: the row the match starts on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    pub elapsed_ms: u64,
}

impl Session {
    /// Types `data` into the session's process as a user would (waits while its input queue
    /// is full); 409 once it has ended.
    pub async fn type_input(&self, data: Bytes) -> Result<()> {
        let ended = || Error::Conflict(format!("session {} has ended", self.info.id));
        if self.has_exited() {
            return Err(ended());
        }
        self.note_input();
        let mut data = data;
        self.write_input_now(&mut data).map_err(|_| ended())?;
        self.input().send_all(data).await.map_err(|_| ended())
    }

    /// The current screen, with up to `scrollback` lines above it.
    pub fn screen(&self, format: ScreenFormat, scrollback: Option<usize>) -> ScreenView {
        let (snapshot, (cols, rows)) = {
            let mut state = self.state();
            let ring = state.ring.read(state.ring.start(), state.ring.capacity());
            let size = state.screen.current_size();
            (state.screen.snapshot(&ring), size)
        };
        let keep = scrollback.unwrap_or(0).min(MAX_SCROLLBACK);
        render(&snapshot, cols, rows, keep, format, scrollback.is_some())
    }

    /// Offset one past the newest output byte.
    fn output_end(&self) -> u64 {
        self.state().ring.end()
    }

    /// Waits until `pattern` matches in `source`, or `timeout` passes (408), or the session
    /// ends (409).
    pub async fn wait_for(
        &self,
        pattern: &Regex,
        source: WaitSource,
        timeout: Duration,
    ) -> Result<WaitMatch> {
        let began = Instant::now();
        let deadline = began + timeout;
        let mut changes = self.changed.subscribe();
        let mut offset = self.output_end();
        let mut output = String::new();
        let mut screen_checked: Option<Instant> = None;
        let mut screen_stale = true;
        loop {
            // New output first (it is cheap), then the screen.
            if source != WaitSource::Screen {
                let (data, end) = {
                    let state = self.state();
                    (state.ring.read(offset, MAX_WAIT_OUTPUT), state.ring.end())
                };
                offset = end;
                if !data.is_empty() {
                    output.push_str(&strip_escapes(&String::from_utf8_lossy(&data)));
                    if output.len() > MAX_WAIT_OUTPUT {
                        let mut cut = output.len() - MAX_WAIT_OUTPUT / 2;
                        while !output.is_char_boundary(cut) {
                            cut += 1;
                        }
                        output.drain(..cut);
                    }
                    if let Some(found) = find(pattern, &output, "output", None, began) {
                        return Ok(found);
                    }
                }
            }
            let due = screen_checked.is_none_or(|at| at.elapsed() >= SCREEN_RECHECK);
            if source != WaitSource::Output && screen_stale && due {
                screen_checked = Some(Instant::now());
                screen_stale = false;
                let lines = self.screen(ScreenFormat::Text, None).lines;
                if let Some(found) = find_on_screen(pattern, &lines, began) {
                    return Ok(found);
                }
            }
            if self.has_exited() {
                return Err(Error::Conflict(format!(
                    "session {} ended before {:?} appeared",
                    self.info.id,
                    pattern.as_str()
                )));
            }
            // Wake on new output, at the deadline, or when a deferred screen check is due.
            let recheck = match (screen_stale, screen_checked) {
                (true, Some(at)) => (at + SCREEN_RECHECK).min(deadline),
                _ => deadline,
            };
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Err(Error::Conflict(format!("session {} has ended", self.info.id)));
                    }
                    screen_stale = true;
                }
                () = tokio::time::sleep_until(recheck) => {
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout(format!(
                            "{:?} did not appear within {} in session {}",
                            pattern.as_str(),
                            humantime::format_duration(timeout),
                            self.info.id
                        )));
                    }
                }
            }
        }
    }
}

fn find(
    pattern: &Regex,
    text: &str,
    source: &'static str,
    row: Option<usize>,
    began: Instant,
) -> Option<WaitMatch> {
    let captures = pattern.captures(text)?;
    let whole = captures.get(0)?;
    Some(WaitMatch {
        source,
        matched: whole.as_str().to_string(),
        groups: captures.iter().skip(1).map(|g| g.map(|g| g.as_str().to_string())).collect(),
        row,
        elapsed_ms: began.elapsed().as_millis() as u64,
    })
}

fn find_on_screen(pattern: &Regex, lines: &[String], began: Instant) -> Option<WaitMatch> {
    let text = lines.join("\n");
    let mut found = find(pattern, &text, "screen", None, began)?;
    let start = pattern.find(&text).map(|m| m.start()).unwrap_or(0);
    found.row = Some(text[..start].matches('\n').count());
    Some(found)
}

/// `text` without escape sequences (CSI, OSC, DCS and two-byte ones) and without controls
/// other than newline and tab; carriage returns become nothing.
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']' | 'P' | '_' | '^') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                Some('(' | ')' | '*' | '+' | '#') => {
                    chars.next();
                }
                _ => {}
            },
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Replays `snapshot` into a fresh emulator of `cols`x`rows` and reads it back.
fn render(
    snapshot: &[u8],
    cols: u16,
    rows: u16,
    keep: usize,
    format: ScreenFormat,
    with_scrollback: bool,
) -> ScreenView {
    let vt = avt::Terminal::with_scrollback(
        usize::from(cols.max(1)),
        usize::from(rows.max(1)),
        Some(keep),
    );
    let Ok(mut vt) = vt else {
        // Unreachable: the size is at least 1x1.
        return ScreenView {
            cols,
            rows,
            cursor: CursorView { row: 0, col: 0, visible: true },
            alternate_screen: false,
            lines: Vec::new(),
            scrollback: with_scrollback.then(Vec::new),
        };
    };
    vt.feed(String::from_utf8_lossy(snapshot).as_ref());
    let write = |line: &avt::Line| match format {
        ScreenFormat::Text => line.text().trim_end().to_string(),
        ScreenFormat::Ansi => ansi_line(line),
    };
    let screen = vt.screen();
    let lines: Vec<String> = screen.visible_lines().map(write).collect();
    let scrollback = with_scrollback.then(|| {
        let all: Vec<&avt::Line> = vt.primary_screen().all_lines().collect();
        let above = all.len().saturating_sub(usize::from(rows));
        all[..above].iter().rev().take(keep).rev().map(|l| write(l)).collect()
    });
    let cursor = vt.cursor();
    ScreenView {
        cols,
        rows,
        cursor: CursorView { row: cursor.row, col: cursor.col, visible: cursor.visible },
        alternate_screen: vt.active_screen_kind() == avt::ScreenKind::Alternate,
        lines,
        scrollback,
    }
}

/// A line with SGR sequences before each run of one pen, and a reset at its end.
fn ansi_line(line: &avt::Line) -> String {
    let mut out = String::new();
    let mut styled = false;
    for run in line.chunks(|a, b| a.pen() != b.pen()) {
        let Some(first) = run.first() else { continue };
        let sgr = sgr(first.pen());
        if !sgr.is_empty() || styled {
            out.push_str(&format!("\x1b[0{sgr}m"));
            styled = !sgr.is_empty();
        }
        out.extend(run.iter().map(avt::Cell::char));
    }
    let trimmed = out.trim_end_matches(' ').len();
    out.truncate(trimmed);
    if styled {
        out.push_str("\x1b[0m");
    }
    out
}

/// The SGR parameters (each preceded by `;`) that set `pen`.
fn sgr(pen: &avt::Pen) -> String {
    let mut out = String::new();
    let flags = [
        (pen.is_bold(), "1"),
        (pen.is_faint(), "2"),
        (pen.is_italic(), "3"),
        (pen.is_underline(), "4"),
        (pen.is_blink(), "5"),
        (pen.is_inverse(), "7"),
        (pen.is_strikethrough(), "9"),
    ];
    for (on, code) in flags {
        if on {
            out.push(';');
            out.push_str(code);
        }
    }
    for (color, base) in [(pen.foreground(), 30u16), (pen.background(), 40)] {
        match color {
            Some(avt::Color::Indexed(i)) if i < 8 => {
                out.push_str(&format!(";{}", base + u16::from(i)))
            }
            Some(avt::Color::Indexed(i)) if i < 16 => {
                out.push_str(&format!(";{}", base + 60 + u16::from(i - 8)))
            }
            Some(avt::Color::Indexed(i)) => out.push_str(&format!(";{};5;{i}", base + 8)),
            Some(avt::Color::RGB(c)) => {
                out.push_str(&format!(";{};2;{};{};{}", base + 8, c.r, c.g, c.b))
            }
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_renders_as_lines_with_cursor_and_modes() {
        let view = render(b"hello\r\n\x1b[31mred\x1b[0m $ ", 20, 4, 0, ScreenFormat::Text, false);
        assert_eq!(view.lines[0], "hello");
        assert_eq!(view.lines[1], "red $");
        assert_eq!((view.cursor.row, view.cursor.col), (1, 6));
        assert!(!view.alternate_screen);
        let ansi = render(b"\x1b[31mred\x1b[0m ok", 20, 2, 0, ScreenFormat::Ansi, false);
        assert_eq!(ansi.lines[0], "\x1b[0;31mred\x1b[0m ok");
        let alt = render(b"\x1b[?1049hfull", 20, 2, 0, ScreenFormat::Text, false);
        assert!(alt.alternate_screen);
        assert_eq!(alt.lines[0], "full");
    }

    #[test]
    fn scrollback_lines_come_oldest_first() {
        let view = render(b"1\r\n2\r\n3\r\n4\r\n5", 10, 2, 2, ScreenFormat::Text, true);
        assert_eq!(view.lines, ["4", "5"]);
        assert_eq!(view.scrollback.unwrap(), ["2", "3"]);
    }

    #[test]
    fn escapes_are_stripped_from_output() {
        assert_eq!(strip_escapes("\x1b[1;32mok\x1b[0m\r\n\x1b]0;title\x07$ "), "ok\n$ ");
    }
}
