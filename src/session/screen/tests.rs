//! The snapshot's promise, checked with avt itself: a terminal fed the snapshot of a session
//! whose ring wrapped ends up in the state of a terminal fed the session's whole output.

use super::*;

const COLS: u16 = 40;
const ROWS: u16 = 10;

/// A session's terminal state after `output`, with a ring of `capacity` bytes: what the ring
/// dropped is consumed, the rest is returned as the ring's bytes.
fn session(output: &[u8], capacity: usize) -> (TerminalState, Vec<u8>) {
    let mut state = TerminalState::new(COLS, ROWS);
    let dropped = output.len().saturating_sub(capacity);
    // In pieces, as the pump appends them.
    let mut at = 0;
    for piece in output[..dropped].chunks(777) {
        state.consume(at as u64, piece);
        at += piece.len();
    }
    (state, output[dropped..].to_vec())
}

/// A terminal that was fed `bytes` from its start.
fn terminal(bytes: &[u8]) -> TerminalState {
    let mut state = TerminalState::new(COLS, ROWS);
    state.consume(0, bytes);
    state.flush();
    state
}

/// The same, parsed in pieces too small for any shortcut.
fn terminal_slowly(bytes: &[u8]) -> TerminalState {
    let mut state = TerminalState::new(COLS, ROWS);
    for (i, piece) in bytes.chunks(SMALL_DROP / 2).enumerate() {
        state.consume((i * SMALL_DROP / 2) as u64, piece);
    }
    state.flush();
    state
}

fn emulator(state: &TerminalState) -> &Emulator {
    state.emulator.as_deref().expect("an emulator")
}

/// The last `n` lines of the normal screen's text (scrollback included).
fn last_lines(state: &TerminalState, n: usize) -> Vec<String> {
    let text = emulator(state).vt.primary_screen().text();
    text[text.len().saturating_sub(n)..].to_vec()
}

/// A vim-like program: asks the terminal things, sets modes, draws a full screen on the
/// alternate screen, then updates one line many times (a clock), so the ring wraps over updates.
fn full_screen_program(updates: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..30 {
        out.extend_from_slice(format!("$ echo line-{i}\r\nline-{i}\r\n").as_bytes());
    }
    out.extend_from_slice(b"$ top\r\n");
    out.extend_from_slice(b"\x1b[c\x1b[>c\x1b]11;?\x07\x1b[6n\x1b[?2004$p");
    out.extend_from_slice(
        b"\x1b[?1049h\x1b[?1h\x1b=\x1b[?1000;1006h\x1b[?2004h\x1b]2;top - demo\x07",
    );
    out.extend_from_slice(b"\x1b[H\x1b[2J\x1b[1;44m TOP \x1b[0m\x1b[3;9r");
    for row in 2..=ROWS {
        out.extend_from_slice(format!("\x1b[{row};1H\x1b[32mrow {row}\x1b[m").as_bytes());
    }
    for i in 0..updates {
        out.extend_from_slice(format!("\x1b7\x1b[1;20H\x1b[1mclock {i:06}\x1b[m\x1b8").as_bytes());
    }
    out.extend_from_slice(b"\x1b[5;3H\x1b[?25l");
    out
}

#[test]
fn without_an_emulator_the_replay_is_the_ring_without_queries() {
    let (mut state, ring) = session(b"$ vim\r\n\x1b[6n\x1b[?1049hhi", 1 << 20);
    assert!(!state.has_emulator());
    assert_eq!(state.snapshot(&ring), b"$ vim\r\n\x1b[?1049hhi");
}

#[test]
fn a_wrapped_ring_gives_the_screen_modes_and_title_of_the_whole_output() {
    let output = full_screen_program(2000);
    let (mut state, ring) = session(&output, 4096);
    assert!(state.has_emulator(), "the ring wrapped");
    let snapshot = state.snapshot(&ring);
    assert!(!snapshot.windows(4).any(|w| w == b"\x1b[6n"), "no query in the snapshot");

    let whole = terminal(&output);
    let client = terminal(&snapshot);
    assert_eq!(emulator(&client).vt.dump(), emulator(&whole).vt.dump(), "screens, cursor, modes");
    assert_eq!(emulator(&client).modes, emulator(&whole).modes, "mouse, paste, keypad, title");
    assert_eq!(emulator(&client).modes.title(), Some("top - demo"));

    // Quitting the program brings back the normal screen and the lines before it.
    let quit = b"\x1b[?1049l\x1b[?25h$ ";
    let mut whole = whole;
    let mut client = client;
    whole.consume(output.len() as u64, quit);
    client.consume(snapshot.len() as u64, quit);
    assert_eq!(emulator(&client).vt.dump(), emulator(&whole).vt.dump());
    assert_eq!(last_lines(&client, 25), last_lines(&whole, 25));
    assert!(last_lines(&client, 25).contains(&"line-29".to_string()));
}

#[test]
fn scrollback_beyond_the_ring_comes_from_the_emulator() {
    let mut output = Vec::new();
    for i in 0..200 {
        output.extend_from_slice(format!("\x1b[3{}mnumber {i}\x1b[m\r\n", i % 8).as_bytes());
    }
    let (mut state, ring) = session(&output, 1024);
    let client = terminal(&state.snapshot(&ring));
    let whole = terminal(&output);
    assert_eq!(emulator(&client).vt.dump(), emulator(&whole).vt.dump());
    // The ring holds about 60 lines; the emulator's scrollback adds up to 40 more.
    assert_eq!(last_lines(&client, 150), last_lines(&whole, 150));
}

#[test]
fn resizes_apply_where_they_happened() {
    let mut state = TerminalState::new(COLS, ROWS);
    let mut reference = TerminalState::new(COLS, ROWS);
    let first = b"0123456789012345678901234567890123456789xyz\r\n".repeat(3);
    state.resize(first.len() as u64, 20, 5);
    state.consume(0, &first);
    reference.consume(0, &first);
    if let Some(e) = reference.emulator.as_mut() {
        e.vt.resize(20, 5);
    }
    let second = b"after the resize\r\n";
    state.consume(first.len() as u64, second);
    reference.consume(first.len() as u64, second);
    state.flush();
    reference.flush();
    assert_eq!(emulator(&state).vt.size(), (20, 5));
    assert_eq!(emulator(&state).vt.dump(), emulator(&reference).vt.dump());
}

#[test]
fn pieces_cut_inside_characters_and_sequences_change_nothing() {
    let output = "é─漢字 \x1b]2;títle\x07\x1b[1;31mred\x1b[m\r\n".repeat(40);
    let whole = terminal(output.as_bytes());
    for piece in [1, 2, 3, 5, 7] {
        let mut state = TerminalState::new(COLS, ROWS);
        for (i, chunk) in output.as_bytes().chunks(piece).enumerate() {
            state.consume((i * piece) as u64, chunk);
        }
        state.flush();
        assert_eq!(emulator(&state).vt.dump(), emulator(&whole).vt.dump(), "pieces of {piece}");
        assert_eq!(emulator(&state).modes.title(), Some("títle"));
    }
}

#[test]
fn zeros_are_cheap_and_harmless() {
    let mut output = b"before".to_vec();
    output.extend(std::iter::repeat_n(0u8, 1 << 20));
    output.extend_from_slice(b" after");
    let (mut state, ring) = session(&output, 1024);
    let client = terminal(&state.snapshot(&ring));
    assert_eq!(last_lines(&client, ROWS as usize)[0], "before after");
}

#[test]
fn long_runs_of_plain_lines_are_skipped_without_changing_the_state() {
    let mut lines = Vec::new();
    for i in 0..5000 {
        lines.extend_from_slice(
            format!("\x1b[3{}mline {i}\x1b[m of a long build log\t(ok)\x1b[K\r\n", i % 8)
                .as_bytes(),
        );
    }
    let mut cases = vec![lines.clone()];
    // A run, then a cursor move and a title (which end the run), then another run, cut open.
    let mut mixed = lines.clone();
    mixed.extend_from_slice(b"\x1b[3;5Hmoved\x1b]2;log\x07\x1b[1;44m");
    mixed.extend_from_slice(&lines);
    mixed.extend_from_slice(b"partial \xe2\x94");
    cases.push(mixed);
    for (n, output) in cases.iter().enumerate() {
        let fast = terminal(output);
        let slow = terminal_slowly(output);
        assert_eq!(emulator(&fast).vt.dump(), emulator(&slow).vt.dump(), "case {n}");
        let kept = ROWS as usize + SCROLLBACK_LINES;
        assert_eq!(last_lines(&fast, kept), last_lines(&slow, kept), "case {n}");
        assert_eq!(emulator(&fast).modes, emulator(&slow).modes, "case {n}");
        assert_eq!(emulator(&fast).utf8_carry, emulator(&slow).utf8_carry, "case {n}");
        assert!(emulator(&fast).skipped > output.len() / 2, "case {n}: the shortcut was taken");
        assert_eq!(emulator(&slow).skipped, 0, "case {n}");
    }
}
