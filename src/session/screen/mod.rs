//! A session's terminal state, for clients that attach: what they are sent first so that their
//! terminal shows the screen as the user left it (SPEC: "On attach the client gets the screen as
//! the user left it … replayed bytes never produce input").
//!
//! How: the scrollback ring (see [`super::ring`]) holds the newest output. Until it first drops
//! bytes, it holds all output since the session started, and a replay of it from offset 0 is
//! exact. From then on, the bytes the ring drops are fed to an emulator (avt, asciinema's virtual
//! terminal, plus [`modes`] for what avt does not keep), created at that moment: it always holds
//! the terminal's state at the ring's first byte. A snapshot is that state written out as escape
//! sequences (recent scrollback, the normal screen, the alternate screen over it when active,
//! cursor, SGR pen, scroll region, charsets, modes, title), followed by the ring's bytes.
//!
//! Invariants:
//! - The emulator has consumed exactly the bytes before the ring's start, in order, with each
//!   resize applied at the offset where it happened (as far as [`MAX_PENDING_RESIZES`] allows).
//! - The emulator is fed only bytes the ring drops, never on the way to an attached client: an
//!   idle session, and any session whose output still fits in its ring, has no emulator at all.
//! - A snapshot contains no terminal query (see [`queries`]); the generated part writes none, and
//!   they are removed from the ring's bytes.

mod modes;
mod queries;
mod scan;

use std::collections::VecDeque;

use memchr::memchr;

use modes::InputModes;
use scan::{Scanner, Span};

/// Lines of the normal screen's scrollback kept by the emulator, beyond those the ring holds.
const SCROLLBACK_LINES: usize = 100;
/// Resizes remembered until the emulator reaches their offset; beyond, the oldest but one are
/// merged away (the first keeps its place, the newest the current size).
const MAX_PENDING_RESIZES: usize = 32;

/// The terminal state of one session. Lives behind the session's lock.
pub struct TerminalState {
    /// The size at offset 0 (before any resize the emulator has not applied yet).
    size: (u16, u16),
    /// Resizes the emulator has not reached: the ring offset where each happened, and the size.
    resizes: VecDeque<(u64, u16, u16)>,
    emulator: Option<Box<Emulator>>,
}

struct Emulator {
    vt: avt::Terminal,
    modes: InputModes,
    /// The scanner at the emulator's offset (for the modes, and to strip queries after it).
    scanner: Scanner,
    /// The bytes consumed (the ring offset of the next byte).
    offset: u64,
    /// The first bytes of a UTF-8 character cut by the end of the last feed.
    utf8_carry: Vec<u8>,
    /// The bytes of the sequence left open by the last feed, up to [`MAX_OPEN_SEQUENCE`]
    /// (`None` beyond: its text is not needed).
    open_sequence: Option<Vec<u8>>,
}

/// The longest open sequence kept for its text (a title).
const MAX_OPEN_SEQUENCE: usize = 1024;

impl TerminalState {
    pub fn new(cols: u16, rows: u16) -> Self {
        TerminalState { size: (cols.max(1), rows.max(1)), resizes: VecDeque::new(), emulator: None }
    }

    /// Whether the emulator exists (the ring has dropped bytes).
    #[cfg(test)]
    pub fn has_emulator(&self) -> bool {
        self.emulator.is_some()
    }

    /// Records a resize of the terminal that happened when the ring's end was `at`.
    pub fn resize(&mut self, at: u64, cols: u16, rows: u16) {
        let size = (cols.max(1), rows.max(1));
        if let Some(last) = self.resizes.back_mut() {
            if last.0 == at {
                (last.1, last.2) = size;
                return;
            }
        }
        self.resizes.push_back((at, size.0, size.1));
        if self.resizes.len() > MAX_PENDING_RESIZES {
            self.resizes.remove(1);
        }
    }

    /// Feeds `data`, the bytes the ring drops, which begin at offset `start`.
    pub fn consume(&mut self, start: u64, data: &[u8]) {
        let emulator = match &mut self.emulator {
            Some(emulator) => emulator,
            None => {
                let (cols, rows) = self.size;
                let vt = avt::Terminal::with_scrollback(
                    usize::from(cols),
                    usize::from(rows),
                    Some(SCROLLBACK_LINES),
                );
                // The size is at least 1x1, which avt accepts.
                let Ok(vt) = vt else { return };
                self.emulator.insert(Box::new(Emulator {
                    vt,
                    modes: InputModes::default(),
                    scanner: Scanner::default(),
                    offset: start,
                    utf8_carry: Vec::new(),
                    open_sequence: Some(Vec::new()),
                }))
            }
        };
        let mut pos = 0;
        while let Some(&(at, cols, rows)) = self.resizes.front() {
            if at > start + data.len() as u64 {
                break;
            }
            let cut = (at.saturating_sub(start) as usize).clamp(pos, data.len());
            emulator.feed(&data[pos..cut]);
            pos = cut;
            emulator.vt.resize(usize::from(cols), usize::from(rows));
            self.size = (cols, rows);
            self.resizes.pop_front();
        }
        emulator.feed(&data[pos..]);
    }

    /// What a client attaching now is sent before live output: the state at the ring's start
    /// written out, then `ring` (the ring's bytes), all without queries.
    pub fn snapshot(&self, ring: &[u8]) -> Vec<u8> {
        let Some(emulator) = &self.emulator else {
            return queries::strip_queries(ring);
        };
        let mut out = Vec::with_capacity(ring.len() + 16 * 1024);
        emulator.modes.restore(&mut out);
        emulator.write_scrollback(&mut out);
        out.extend_from_slice(emulator.vt.dump().as_bytes());
        out.extend_from_slice(&emulator.utf8_carry);
        out.extend_from_slice(&queries::strip_queries_after(emulator.scanner.clone(), ring));
        out
    }
}

impl Emulator {
    fn feed(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.offset += data.len() as u64;
        self.track_modes(data);
        // NUL is ignored by terminals everywhere; skipping its runs here keeps a stream of zeros
        // (or padding) cheap.
        let mut rest = data;
        while !rest.is_empty() {
            let (segment, next) = match memchr(0, rest) {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, &rest[rest.len()..]),
            };
            if !segment.is_empty() {
                self.feed_text(segment, next.is_empty());
            }
            let zeros = next.iter().position(|&b| b != 0).unwrap_or(next.len());
            rest = &next[zeros..];
        }
    }

    /// Gives avt `segment` (no NUL in it) as text; when `last`, an unfinished UTF-8 character at
    /// its end waits for the next feed.
    fn feed_text(&mut self, segment: &[u8], last: bool) {
        let joined;
        let bytes = if self.utf8_carry.is_empty() {
            segment
        } else {
            let mut carried = std::mem::take(&mut self.utf8_carry);
            carried.extend_from_slice(segment);
            joined = carried;
            &joined[..]
        };
        let keep = if last { unfinished_utf8(bytes) } else { 0 };
        let (whole, tail) = bytes.split_at(bytes.len() - keep);
        self.vt.feed(String::from_utf8_lossy(whole).as_ref());
        self.utf8_carry = tail.to_vec();
    }

    fn track_modes(&mut self, data: &[u8]) {
        let Emulator { scanner, modes, open_sequence, .. } = self;
        let mut last_end = 0;
        scanner.scan(data, |span| match span {
            Span::Text { end, .. } => last_end = end,
            Span::Sequence { start, end, sequence } => {
                let joined;
                let bytes = match (start, open_sequence.as_mut()) {
                    (Some(start), _) => &data[start..end],
                    (None, Some(head)) => {
                        head.extend_from_slice(&data[..end]);
                        joined = std::mem::take(head);
                        &joined[..]
                    }
                    // Too long to have been kept: its text is not needed.
                    (None, None) => &[][..],
                };
                modes.apply(&sequence, bytes);
                *open_sequence = Some(Vec::new());
                last_end = end;
            }
        });
        // Keep the start of a sequence left open, for its text.
        if !scanner.at_boundary() {
            if let Some(head) = open_sequence {
                head.extend_from_slice(&data[last_end..]);
                if head.len() > MAX_OPEN_SEQUENCE {
                    *open_sequence = None;
                }
            }
        } else {
            *open_sequence = Some(Vec::new());
        }
    }

    /// The normal screen's scrollback lines, oldest first, each with its colours, then enough
    /// line feeds to move them all above the screen, and the cursor home.
    fn write_scrollback(&self, out: &mut Vec<u8>) {
        let screen = self.vt.primary_screen();
        let (_, rows) = self.vt.size();
        let total = screen.all_lines().count();
        let history = total.saturating_sub(rows);
        if history == 0 {
            return;
        }
        for line in screen.all_lines().take(history) {
            write_line(line, out);
            out.extend_from_slice(b"\x1b[m\r\n");
        }
        out.extend(std::iter::repeat_n(b'\n', rows.saturating_sub(1)));
        out.extend_from_slice(b"\x1b[H");
    }
}

/// How many bytes at the end of `bytes` are an unfinished UTF-8 character.
fn unfinished_utf8(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let b = bytes[bytes.len() - back];
        let need = match b {
            0x80..=0xbf => continue,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return 0,
        };
        return if back < need { back } else { 0 };
    }
    0
}

/// One line's cells as text with SGR changes, trailing blanks dropped.
fn write_line(line: &avt::Line, out: &mut Vec<u8>) {
    let cells = line.cells();
    let used =
        cells.iter().rposition(|c| !(c.char() == ' ' && c.pen().is_default())).map_or(0, |i| i + 1);
    let mut pen = avt::Pen::default();
    let mut utf8 = [0u8; 4];
    for cell in &cells[..used] {
        if cell.width() == 0 {
            continue;
        }
        if *cell.pen() != pen {
            pen = *cell.pen();
            write_sgr(&pen, out);
        }
        out.extend_from_slice(cell.char().encode_utf8(&mut utf8).as_bytes());
    }
}

fn write_sgr(pen: &avt::Pen, out: &mut Vec<u8>) {
    let mut sgr = String::from("\x1b[0");
    if pen.is_bold() {
        sgr.push_str(";1");
    }
    if pen.is_faint() {
        sgr.push_str(";2");
    }
    for (on, code) in [
        (pen.is_italic(), ";3"),
        (pen.is_underline(), ";4"),
        (pen.is_blink(), ";5"),
        (pen.is_inverse(), ";7"),
        (pen.is_strikethrough(), ";9"),
    ] {
        if on {
            sgr.push_str(code);
        }
    }
    for (color, base) in [(pen.foreground(), 30u8), (pen.background(), 40u8)] {
        match color {
            Some(avt::Color::Indexed(n)) if n < 8 => sgr.push_str(&format!(";{}", base + n)),
            Some(avt::Color::Indexed(n)) if n < 16 => {
                sgr.push_str(&format!(";{}", base + 60 + n - 8))
            }
            Some(avt::Color::Indexed(n)) => sgr.push_str(&format!(";{};5;{n}", base + 8)),
            Some(avt::Color::RGB(c)) => {
                sgr.push_str(&format!(";{};2;{};{};{}", base + 8, c.r, c.g, c.b))
            }
            None => {}
        }
    }
    sgr.push('m');
    out.extend_from_slice(sgr.as_bytes());
}

#[cfg(test)]
mod tests;
