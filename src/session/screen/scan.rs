//! A byte-level scanner of terminal output: it splits a stream into text and complete control
//! sequences (ESC, CSI, OSC, DCS and the other strings, and their 8-bit C1 forms as UTF-8
//! encodes them), with the few facts about each sequence that kterm needs: which are queries
//! (see [`super::queries`]) and which set the input modes and title (see [`super::modes`]).
//!
//! Invariants:
//! - The scanner is a state machine over bytes: a stream cut anywhere and scanned in pieces gives
//!   the same spans as scanned whole. A span may begin in an earlier piece; its `start` is then
//!   `None`.
//! - Between spans the scanner is in the ground state: [`Scanner::at_boundary`] says whether a
//!   stream may be cut here so that the two halves parse as the whole does (no sequence and no
//!   UTF-8 character is open).
//! - Memory is fixed: a sequence's parameters beyond the first [`MAX_PARAMS`] are counted but
//!   not kept, and string payloads are not kept at all (callers slice them out of their bytes).

use memchr::memchr2;

/// Parameters kept per sequence; more are parsed but dropped.
pub const MAX_PARAMS: usize = 16;

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;
const CAN: u8 = 0x18;
const SUB: u8 = 0x1a;
/// The first byte of the UTF-8 encoding of U+0080..U+00BF, which holds the C1 controls.
const C1_LEAD: u8 = 0xc2;

/// What kind of sequence a span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `ESC` + intermediates + final (e.g. `ESC =`, `ESC c`, `ESC ( B`).
    Esc,
    /// `CSI` + prefix + parameters + intermediates + final.
    Csi,
    /// `OSC … BEL|ST`; `params[0]` is its number, when it has one.
    Osc,
    /// `DCS … ST`; prefix, parameters, intermediates and final as for CSI.
    Dcs,
    /// `SOS`, `PM` or `APC` strings.
    OtherString,
    /// A single 8-bit C1 control other than the introducers above.
    C1,
    /// A sequence cut short by CAN, SUB or ESC: terminals drop it.
    Aborted,
}

/// A complete control sequence, as far as kterm needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence {
    pub kind: Kind,
    /// `<`, `=`, `>` or `?` right after a CSI or DCS introducer; 0 if none.
    pub prefix: u8,
    pub params: [u16; MAX_PARAMS],
    /// Parameters seen (may exceed [`MAX_PARAMS`]); an empty parameter list counts as 0.
    pub param_count: usize,
    /// The last intermediate byte (0x20..=0x2f); 0 if none.
    pub intermediate: u8,
    /// The final byte; for a DCS, that of its parameters (its data follows); 0 for strings.
    pub final_byte: u8,
    /// For an OSC: where its payload (after `Ps;`) begins, counted from the span's start, and
    /// whether any `;`-separated field of the payload is exactly `?` (a colour query).
    pub payload_from: usize,
    pub has_query_field: bool,
}

impl Sequence {
    fn new(kind: Kind) -> Self {
        Sequence {
            kind,
            prefix: 0,
            params: [0; MAX_PARAMS],
            param_count: 0,
            intermediate: 0,
            final_byte: 0,
            payload_from: 0,
            has_query_field: false,
        }
    }

    /// The first parameter (0 when absent).
    pub fn first(&self) -> u16 {
        self.params[0]
    }

    /// The kept parameters.
    pub fn params(&self) -> &[u16] {
        &self.params[..self.param_count.min(MAX_PARAMS)]
    }
}

/// One piece of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// Bytes that are not part of a sequence: text and C0 controls.
    Text { start: usize, end: usize },
    /// A complete sequence ending at `end` (exclusive); `start` is `None` when it began in an
    /// earlier piece of the stream.
    Sequence { start: Option<usize>, end: usize, sequence: Sequence },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    /// After 0xC2 in the ground state: a C1 control follows, or a plain character.
    C1Lead,
    Escape,
    CsiParams,
    /// A CSI or DCS with a malformed parameter: consumed up to its final byte, then dropped.
    Ignore,
    /// Parameters of a DCS; then its data string.
    DcsParams,
    String,
    /// ESC inside a string: `\` ends it; anything else aborts it.
    StringEscape,
    /// 0xC2 inside a string: 0x9C (ST) ends it.
    StringC1Lead,
}

/// The scanner; feed it with [`Scanner::scan`].
#[derive(Debug, Clone)]
pub struct Scanner {
    state: State,
    sequence: Sequence,
    /// Continuation bytes still expected of the UTF-8 character being read in the ground state.
    utf8_left: u8,
    /// Digits of the current parameter seen (an empty parameter is 0).
    param_open: bool,
    /// Bytes of the current OSC payload scanned, and of its current field.
    osc_len: usize,
    field_len: usize,
    field_is_question: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::Ground,
            sequence: Sequence::new(Kind::Esc),
            utf8_left: 0,
            param_open: false,
            osc_len: 0,
            field_len: 0,
            field_is_question: false,
        }
    }
}

impl Scanner {
    /// Whether the stream may be cut after the bytes scanned so far (no sequence or UTF-8
    /// character is open).
    pub fn at_boundary(&self) -> bool {
        self.state == State::Ground && self.utf8_left == 0
    }

    /// Scans `data`, the next piece of the stream, reporting its spans in order. Text spans
    /// are reported in runs (not byte by byte); a text run may end inside a UTF-8 character
    /// when the piece does.
    pub fn scan(&mut self, data: &[u8], mut on: impl FnMut(Span)) {
        let mut i = 0;
        // Where the open sequence began in this piece, if it did.
        let mut seq_start: Option<usize> = None;
        while i < data.len() {
            if self.state == State::Ground {
                // Fast path: text up to the next ESC or C1 lead byte.
                let run = memchr2(ESC, C1_LEAD, &data[i..]).unwrap_or(data.len() - i);
                if run > 0 {
                    self.track_utf8(&data[i..i + run]);
                    on(Span::Text { start: i, end: i + run });
                    i += run;
                    continue;
                }
                seq_start = Some(i);
                let byte = data[i];
                i += 1;
                if byte == ESC {
                    self.utf8_left = 0;
                    self.begin(Kind::Esc, State::Escape);
                } else {
                    self.state = State::C1Lead;
                }
                continue;
            }
            let byte = data[i];
            i += 1;
            match self.step(byte) {
                Step::Continue => {}
                Step::Done => {
                    on(Span::Sequence { start: seq_start, end: i, sequence: self.sequence });
                    self.state = State::Ground;
                    seq_start = None;
                }
                Step::AbortBefore => {
                    // The ESC that aborted the sequence begins the next one.
                    let end = i - 1;
                    let mut aborted = self.sequence;
                    aborted.kind = Kind::Aborted;
                    on(Span::Sequence { start: seq_start, end, sequence: aborted });
                    seq_start = Some(end);
                    self.begin(Kind::Esc, State::Escape);
                }
                Step::PlainCharacter => {
                    // 0xC2 followed by a non-C1 byte: an ordinary character, text after all.
                    // (When 0xC2 ended the previous piece, the span starts at 0 without it.)
                    let start = seq_start.take().unwrap_or(0);
                    self.state = State::Ground;
                    self.utf8_left = 0;
                    on(Span::Text { start, end: i });
                }
            }
        }
    }

    fn begin(&mut self, kind: Kind, state: State) {
        self.sequence = Sequence::new(kind);
        self.state = state;
        self.param_open = false;
        self.osc_len = 0;
        self.field_len = 0;
        self.field_is_question = false;
    }

    /// Keeps `utf8_left` right across a run of ground-state text.
    fn track_utf8(&mut self, run: &[u8]) {
        // Only the tail decides whether a character is left open; look at its last 4 bytes.
        let tail = &run[run.len().saturating_sub(4)..];
        let mut left = if run.len() > 4 { 0 } else { self.utf8_left };
        for &b in tail {
            left = match b {
                0x80..=0xbf => left.saturating_sub(1),
                0xc0..=0xdf => 1,
                0xe0..=0xef => 2,
                0xf0..=0xf7 => 3,
                _ => 0,
            };
        }
        self.utf8_left = left;
    }

    fn step(&mut self, byte: u8) -> Step {
        match self.state {
            State::Ground => Step::Continue,
            State::C1Lead => self.c1(byte),
            State::Escape => self.escape(byte),
            State::CsiParams | State::DcsParams => self.params(byte),
            State::Ignore => match byte {
                0x40..=0x7e => {
                    self.sequence.kind = Kind::Aborted;
                    self.sequence.final_byte = byte;
                    Step::Done
                }
                CAN | SUB => self.abort(),
                ESC => Step::AbortBefore,
                _ => Step::Continue,
            },
            State::String => self.string(byte),
            State::StringEscape => {
                if byte == b'\\' {
                    self.finish_field();
                    Step::Done
                } else {
                    // ESC ended the string; this byte belongs to a new escape sequence, which
                    // the caller cannot rewind into: treat both as one aborted sequence.
                    self.abort()
                }
            }
            State::StringC1Lead => {
                if byte == 0x9c {
                    self.finish_field();
                    Step::Done
                } else {
                    self.state = State::String;
                    self.payload_byte(C1_LEAD);
                    self.string(byte)
                }
            }
        }
    }

    fn abort(&mut self) -> Step {
        self.sequence.kind = Kind::Aborted;
        Step::Done
    }

    /// The byte after 0xC2 in the ground state.
    fn c1(&mut self, byte: u8) -> Step {
        match byte {
            0x9b => {
                self.begin(Kind::Csi, State::CsiParams);
                Step::Continue
            }
            0x9d => {
                self.begin(Kind::Osc, State::String);
                Step::Continue
            }
            0x90 => {
                self.begin(Kind::Dcs, State::DcsParams);
                Step::Continue
            }
            0x98 | 0x9e | 0x9f => {
                self.begin(Kind::OtherString, State::String);
                Step::Continue
            }
            0x80..=0x9f => {
                self.sequence = Sequence::new(Kind::C1);
                self.sequence.final_byte = byte;
                Step::Done
            }
            _ => Step::PlainCharacter,
        }
    }

    fn escape(&mut self, byte: u8) -> Step {
        match byte {
            b'[' if self.sequence.intermediate == 0 => {
                self.begin(Kind::Csi, State::CsiParams);
                Step::Continue
            }
            b']' if self.sequence.intermediate == 0 => {
                self.begin(Kind::Osc, State::String);
                Step::Continue
            }
            b'P' if self.sequence.intermediate == 0 => {
                self.begin(Kind::Dcs, State::DcsParams);
                Step::Continue
            }
            b'X' | b'^' | b'_' if self.sequence.intermediate == 0 => {
                self.begin(Kind::OtherString, State::String);
                Step::Continue
            }
            0x20..=0x2f => {
                self.sequence.intermediate = byte;
                Step::Continue
            }
            0x30..=0x7e => {
                self.sequence.final_byte = byte;
                Step::Done
            }
            CAN | SUB => self.abort(),
            ESC => Step::AbortBefore,
            // C0 controls inside a sequence are executed by terminals; they do not end it.
            _ => Step::Continue,
        }
    }

    fn params(&mut self, byte: u8) -> Step {
        let seq = &mut self.sequence;
        match byte {
            b'0'..=b'9' if seq.intermediate == 0 => {
                if !self.param_open {
                    self.param_open = true;
                    seq.param_count += 1;
                }
                if let Some(p) = seq.params.get_mut(seq.param_count - 1) {
                    *p = p.saturating_mul(10).saturating_add(u16::from(byte - b'0'));
                }
                Step::Continue
            }
            b';' | b':' if seq.intermediate == 0 => {
                if !self.param_open {
                    seq.param_count += 1;
                }
                self.param_open = false;
                Step::Continue
            }
            b'<'..=b'?' if seq.prefix == 0 && seq.param_count == 0 && seq.intermediate == 0 => {
                seq.prefix = byte;
                Step::Continue
            }
            b'<'..=b'?' => {
                self.state = State::Ignore;
                Step::Continue
            }
            0x20..=0x2f => {
                seq.intermediate = byte;
                Step::Continue
            }
            0x40..=0x7e => {
                seq.final_byte = byte;
                if seq.kind == Kind::Dcs {
                    self.state = State::String;
                    Step::Continue
                } else {
                    Step::Done
                }
            }
            CAN | SUB => self.abort(),
            ESC => Step::AbortBefore,
            0x00..=0x1f => Step::Continue,
            _ => {
                self.state = State::Ignore;
                Step::Continue
            }
        }
    }

    fn string(&mut self, byte: u8) -> Step {
        match byte {
            BEL if self.sequence.kind == Kind::Osc => {
                self.finish_field();
                Step::Done
            }
            ESC => {
                self.state = State::StringEscape;
                Step::Continue
            }
            C1_LEAD => {
                self.state = State::StringC1Lead;
                Step::Continue
            }
            CAN | SUB => self.abort(),
            _ => {
                self.payload_byte(byte);
                Step::Continue
            }
        }
    }

    /// One byte of a string's payload; for an OSC, tracks its number and its fields.
    fn payload_byte(&mut self, byte: u8) {
        if self.sequence.kind != Kind::Osc {
            return;
        }
        self.osc_len += 1;
        let seq = &mut self.sequence;
        if seq.payload_from == 0 {
            // Still in the number: `Ps;`.
            match byte {
                b'0'..=b'9' => {
                    seq.param_count = 1;
                    seq.params[0] =
                        seq.params[0].saturating_mul(10).saturating_add(u16::from(byte - b'0'));
                }
                // The introducer is 2 bytes (ESC ] or C2 9D); the payload starts after `;`.
                _ => seq.payload_from = 2 + self.osc_len,
            }
            return;
        }
        if byte == b';' {
            self.finish_field();
            self.field_len = 0;
            self.field_is_question = false;
        } else {
            self.field_len += 1;
            self.field_is_question = self.field_len == 1 && byte == b'?';
        }
    }

    fn finish_field(&mut self) {
        if self.field_len == 1 && self.field_is_question {
            self.sequence.has_query_field = true;
        }
    }
}

enum Step {
    Continue,
    Done,
    /// An ESC aborted the open sequence; it starts a new one.
    AbortBefore,
    /// 0xC2 and this byte are an ordinary character.
    PlainCharacter,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spans of `data` scanned in pieces of `piece` bytes, as (text or kind, bytes).
    fn spans(data: &[u8], piece: usize) -> Vec<(String, Vec<u8>)> {
        let mut scanner = Scanner::default();
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        let mut open: Vec<u8> = Vec::new();
        for chunk in data.chunks(piece) {
            let mut last = 0;
            scanner.scan(chunk, |span| match span {
                Span::Text { start, end } => {
                    let mut bytes = std::mem::take(&mut open);
                    bytes.extend_from_slice(&chunk[start..end]);
                    match out.last_mut() {
                        Some((k, text)) if k == "text" => text.extend_from_slice(&bytes),
                        _ => out.push(("text".into(), bytes)),
                    }
                    last = end;
                }
                Span::Sequence { start, end, sequence } => {
                    let mut bytes = std::mem::take(&mut open);
                    bytes.extend_from_slice(&chunk[start.unwrap_or(0)..end]);
                    out.push((format!("{:?}", sequence.kind), bytes));
                    last = end;
                }
            });
            open.extend_from_slice(&chunk[last..]);
        }
        out
    }

    #[test]
    fn splits_text_and_sequences_the_same_in_any_pieces() {
        let data = "a\x1b[1;31mb\x1b]0;title\x07c\x1bPq#0\x1b\\d\u{9b}6ne\u{e9}\x1b=".as_bytes();
        let whole = spans(data, data.len());
        let kinds: Vec<&str> = whole.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            ["text", "Csi", "text", "Osc", "text", "Dcs", "text", "Csi", "text", "Esc"]
        );
        assert_eq!(whole[5].1, b"\x1bPq#0\x1b\\");
        assert_eq!(whole[8].1, "e\u{e9}".as_bytes());
        for piece in 1..8 {
            assert_eq!(spans(data, piece), whole, "pieces of {piece}");
        }
    }

    #[test]
    fn knows_parameters_prefixes_and_osc_queries() {
        let mut scanner = Scanner::default();
        let mut seen = Vec::new();
        let data = b"\x1b[?1000;1006h\x1b[>0q\x1b]11;?\x07\x1b]4;1;?\x1b\\\x1b]2;a?b\x07";
        scanner.scan(data, |span| {
            if let Span::Sequence { sequence, .. } = span {
                seen.push(sequence);
            }
        });
        assert_eq!(seen[0].prefix, b'?');
        assert_eq!(seen[0].params(), [1000, 1006]);
        assert_eq!(seen[0].final_byte, b'h');
        assert_eq!((seen[1].prefix, seen[1].final_byte), (b'>', b'q'));
        assert_eq!((seen[2].kind, seen[2].first(), seen[2].has_query_field), (Kind::Osc, 11, true));
        assert_eq!((seen[3].first(), seen[3].has_query_field), (4, true));
        assert_eq!((seen[4].first(), seen[4].has_query_field, seen[4].payload_from), (2, false, 4));
    }

    #[test]
    fn boundaries_exclude_open_sequences_and_characters() {
        let mut scanner = Scanner::default();
        scanner.scan(b"abc", |_| {});
        assert!(scanner.at_boundary());
        scanner.scan(b"\x1b[3", |_| {});
        assert!(!scanner.at_boundary());
        scanner.scan(b"1m", |_| {});
        assert!(scanner.at_boundary());
        scanner.scan(&"\u{e9}".as_bytes()[..1], |_| {});
        assert!(!scanner.at_boundary());
        scanner.scan(&"\u{e9}".as_bytes()[1..], |_| {});
        assert!(scanner.at_boundary());
        scanner.scan(b"\xc2", |_| {});
        assert!(!scanner.at_boundary());
        scanner.scan(b"\xa9", |_| {});
        assert!(scanner.at_boundary());
    }
}
