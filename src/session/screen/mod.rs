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
use scan::{Kind, Scanner, Span};

/// Lines of the normal screen's scrollback kept by the emulator, beyond those the ring holds.
const SCROLLBACK_LINES: usize = 40;
/// Resizes remembered until the emulator reaches their offset; beyond, the oldest but one are
/// merged away (the first keeps its place, the newest the current size).
const MAX_PENDING_RESIZES: usize = 32;
/// Dropped bytes gathered before the emulator parses them (see [`Emulator::feed`]): bulk output
/// is parsed in pieces this large, so that most of a long run of plain lines can be skipped.
const BACKLOG: usize = 64 * 1024;
/// A drop smaller than this (typing, a prompt) is parsed at once.
const SMALL_DROP: usize = 4096;

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
    /// The bytes parsed (the ring offset of the backlog's first byte).
    offset: u64,
    /// Bytes the ring dropped that are not parsed yet (parsed before any snapshot).
    backlog: Vec<u8>,
    /// A scroll region (DECSTBM) may be set: plain lines are then always parsed.
    margins: bool,
    /// Bytes skipped as unseen plain lines (for tests).
    #[cfg(test)]
    skipped: usize,
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

    /// The terminal's size now (after every resize recorded).
    pub fn current_size(&self) -> (u16, u16) {
        self.resizes.back().map(|&(_, cols, rows)| (cols, rows)).unwrap_or(self.size)
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
                    backlog: Vec::new(),
                    margins: false,
                    #[cfg(test)]
                    skipped: 0,
                    utf8_carry: Vec::new(),
                    open_sequence: Some(Vec::new()),
                }))
            }
        };
        emulator.backlog.extend_from_slice(data);
        if emulator.backlog.len() >= BACKLOG || data.len() < SMALL_DROP {
            self.flush();
        }
    }

    /// Parses the backlog, applying each resize where it happened.
    fn flush(&mut self) {
        let Some(emulator) = &mut self.emulator else { return };
        let mut data = std::mem::take(&mut emulator.backlog);
        let start = emulator.offset;
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
        // A small buffer is kept for the next drops; a bulk one goes back.
        if data.capacity() <= 2 * SMALL_DROP {
            data.clear();
            emulator.backlog = data;
        }
    }

    /// What a client attaching now is sent before live output: the state at the ring's start
    /// written out, then `ring` (the ring's bytes), all without queries.
    pub fn snapshot(&mut self, ring: &[u8]) -> Vec<u8> {
        self.flush();
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
    /// Parses `data`. A long run of plain lines (text, CR, LF, TAB, BS, SGR colours and edits
    /// within a line, with no scroll region) is not parsed whole: only as much of its end as
    /// fills the screen and the kept scrollback can be seen afterwards, so the rest is replaced
    /// by its colour changes and enough line feeds to scroll it away (the same screen and
    /// scrollback, much less work).
    fn feed(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.offset += data.len() as u64;
        let runs = self.track_modes(data);
        let rows = self.vt.size().1;
        let mut pos = 0;
        for run in runs.iter().filter(|run| !run.margins) {
            let Some(cut) = run.skippable(data, rows) else { continue };
            #[cfg(test)]
            {
                self.skipped += cut - run.start;
            }
            self.feed_vt(&data[pos..run.start]);
            // The pen: the colours after the last full reset are all that count.
            let count = run.colours.partition_point(|(_, end)| *end <= cut);
            let skipped = &run.colours[..count];
            let from = skipped
                .iter()
                .rposition(|&(start, end)| matches!(&data[start..end], b"\x1b[m" | b"\x1b[0m"))
                .unwrap_or(0);
            for &(start, end) in &skipped[from..] {
                self.feed_vt(&data[start..end]);
            }
            self.feed_vt(&b"\r\n".repeat(rows));
            pos = cut;
        }
        self.feed_vt(&data[pos..]);
    }

    /// Gives avt `data`, skipping runs of NUL (terminals ignore NUL everywhere, so a stream of
    /// zeros or padding stays cheap).
    fn feed_vt(&mut self, data: &[u8]) {
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

    /// Keeps the modes and title up to date over `data`; returns its runs of plain lines.
    fn track_modes(&mut self, data: &[u8]) -> Vec<PlainRun> {
        let Emulator { scanner, modes, open_sequence, margins, .. } = self;
        let mut runs = Vec::new();
        let mut run = PlainRun { margins: *margins, ..PlainRun::default() };
        let mut last_end = 0;
        scanner.scan(data, |span| match span {
            Span::Text { start, end } => {
                let plain = data[start..end]
                    .iter()
                    .all(|&b| b >= 0x20 || matches!(b, b'\r' | b'\n' | b'\t' | 0x08 | 0x07 | 0));
                if !plain {
                    run.close(start, end, *margins, &mut runs);
                }
                last_end = end;
            }
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
                let csi = sequence.kind == Kind::Csi && sequence.prefix == 0;
                match (csi, sequence.intermediate, sequence.final_byte, start) {
                    // Colours: kept by the pen, so replayed even when their lines are skipped.
                    (true, 0, b'm', Some(start)) => run.colours.push((start, end)),
                    // Edits within the line (erase, move along it): gone with the line.
                    (true, 0, b'K' | b'G' | b'C' | b'D', Some(_)) => {}
                    (true, 0, b'r', _) => {
                        *margins = sequence.param_count > 0;
                        run.close(start.unwrap_or(0), end, *margins, &mut runs);
                    }
                    _ => {
                        if sequence.kind == Kind::Esc && sequence.final_byte == b'c' {
                            *margins = false;
                        }
                        run.close(start.unwrap_or(0), end, *margins, &mut runs);
                    }
                }
                *open_sequence = Some(Vec::new());
                last_end = end;
            }
        });
        // Keep the start of a sequence left open, for its text; the run ends before it.
        if !scanner.at_boundary() {
            if let Some(head) = open_sequence {
                head.extend_from_slice(&data[last_end..]);
                if head.len() > MAX_OPEN_SEQUENCE {
                    *open_sequence = None;
                }
            }
            run.close(last_end, data.len(), *margins, &mut runs);
        } else {
            run.close(data.len(), data.len(), *margins, &mut runs);
        }
        runs
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

/// A run of plain lines in a piece of output: from `start` to `end`, with no control in it other
/// than line feed, return, tab, backspace, bell, SGR and edits within a line; `colours` are its
/// SGR sequences.
#[derive(Default)]
struct PlainRun {
    start: usize,
    end: usize,
    colours: Vec<(usize, usize)>,
    /// A scroll region was set during it: its lines scroll within the region, so it is parsed.
    margins: bool,
}

impl PlainRun {
    /// Something else than plain lines at `from..to`: the run so far ends at `from` (kept when
    /// it is long enough to matter), and the next one starts at `to`.
    fn close(&mut self, from: usize, to: usize, margins: bool, runs: &mut Vec<PlainRun>) {
        self.end = from;
        let next = PlainRun { start: to, end: to, colours: Vec::new(), margins };
        let run = std::mem::replace(self, next);
        if run.end.saturating_sub(run.start) >= 2 * SMALL_DROP {
            runs.push(run);
        }
    }

    /// Where the run may be cut: after a CR LF with at least `rows` line feeds before it (the
    /// cursor is then on the bottom line) and `rows` + [`SCROLLBACK_LINES`] after it (which
    /// scroll everything before out of the screen and the scrollback). `None` if it is not
    /// worth it or not possible.
    fn skippable(&self, data: &[u8], rows: usize) -> Option<usize> {
        let run = &data[self.start..self.end.max(self.start)];
        let after = rows + SCROLLBACK_LINES;
        let total = memchr::memchr_iter(b'\n', run).count();
        let mut seen = 0;
        for i in memchr::memrchr_iter(b'\n', run) {
            seen += 1;
            let before = total - seen + 1;
            if before < rows {
                return None;
            }
            if seen > after && i >= 1 && run[i - 1] == b'\r' {
                let cut = self.start + i + 1;
                let inside_colour = self.colours.iter().any(|&(s, e)| s < cut && cut < e);
                return (cut - self.start >= SMALL_DROP && !inside_colour).then_some(cut);
            }
        }
        None
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
