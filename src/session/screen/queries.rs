//! Terminal queries: the sequences a terminal answers by typing a report into its input (device
//! attributes, cursor position and status reports, mode and setting requests, colour and
//! clipboard queries, window reports, its version). Replayed output must never contain them, or
//! the browser's terminal would answer them again and the answers would reach the shell.
//!
//! Invariant: [`strip_queries`] removes exactly the complete query sequences and keeps every
//! other byte, in order; a sequence still open at the end of its input is kept (the program is
//! writing it now, and live output finishes it).

use super::scan::{Kind, Scanner, Sequence, Span};

/// Whether a terminal answers `seq` with input.
pub fn is_query(seq: &Sequence) -> bool {
    match seq.kind {
        Kind::Csi => csi_is_query(seq),
        // DECRQSS (`DCS $ q … ST`) and XTGETTCAP (`DCS + q … ST`).
        Kind::Dcs => seq.final_byte == b'q' && matches!(seq.intermediate, b'$' | b'+'),
        // Colour queries (OSC 4, 5, 10-19 with `?`) and clipboard reads (OSC 52 with `?`).
        Kind::Osc => {
            seq.has_query_field && matches!(seq.first(), 4 | 5 | 10..=19 | 52 | 104 | 110..=119)
        }
        // ENQ is a C0 control, not a sequence; xterm.js sends no answerback anyway.
        Kind::Esc | Kind::OtherString | Kind::C1 | Kind::Aborted => false,
    }
}

fn csi_is_query(seq: &Sequence) -> bool {
    match (seq.prefix, seq.intermediate, seq.final_byte) {
        // DA1 (`CSI c`), DA2 (`CSI > c`), DA3 (`CSI = c`).
        (0 | b'>' | b'=', 0, b'c') => true,
        // DSR and DECDSR: status and cursor position reports.
        (0 | b'?', 0, b'n') => true,
        // DECRQM: mode requests, ANSI and DEC.
        (0 | b'?', b'$', b'p') => true,
        // XTVERSION (`CSI > q`); `CSI Ps SP q` (cursor style) has an intermediate and stays.
        (b'>', 0, b'q') => true,
        // DECREQTPARM.
        (0, 0, b'x') => true,
        // Window reports: size, position, state and titles (XTWINOPS 11, 13-21).
        (0, 0, b't') => matches!(seq.first(), 11 | 13..=21),
        // XTSMGRAPHICS and XTQMODKEYS queries, and the kitty keyboard flags query.
        (b'?', 0, b'S' | b'm' | b'u') => true,
        // DECRQPSR, DECRQTSR, DECRQUPSS: presentation and terminal state reports.
        (0, b'$', b'w' | b'u') | (0, b'&', b'u') => true,
        _ => false,
    }
}

/// `data` without its complete query sequences. `data` must begin where no sequence is open.
pub fn strip_queries(data: &[u8]) -> Vec<u8> {
    strip_queries_after(Scanner::default(), data)
}

/// `data`, which continues the stream that `scanner` has scanned, without its complete query
/// sequences. A query that began before `data` is kept whole: its start was already written.
pub fn strip_queries_after(mut scanner: Scanner, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut kept_to = 0;
    scanner.scan(data, |span| {
        if let Span::Sequence { start: Some(start), end, sequence } = span {
            if is_query(&sequence) {
                out.extend_from_slice(&data[kept_to..start]);
                kept_to = end;
            }
        }
    });
    out.extend_from_slice(&data[kept_to..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_what_vim_and_friends_ask_and_keeps_the_rest() {
        // What vim 9 sends at start (and what the issue saw answered on reload), among output.
        let queries = [
            "\x1b[c",
            "\x1b[0c",
            "\x1b[>c",
            "\x1b[>0c",
            "\x1b[=c",
            "\x1b[6n",
            "\x1b[?6n",
            "\x1b[5n",
            "\x1b]10;?\x07",
            "\x1b]11;?\x1b\\",
            "\x1b]4;1;?\x07",
            "\x1b[?12$p",
            "\x1b[2$p",
            "\x1b[>0q",
            "\x1bP$qm\x1b\\",
            "\x1bP+q6b64\x1b\\",
            "\x1b[18t",
            "\x1b[14t",
            "\x1b[?u",
            "\x1b]52;c;?\x07",
            "\u{9b}6n",
            "\x1b[x",
        ];
        let keep = [
            "\x1b[?1049h",
            "\x1b[1;31m",
            "\x1b[2 q",
            "\x1b]0;title?\x07",
            "\x1b]2;a;?;b\x07",
            "\x1b[22;0t",
            "\x1b[?2004h",
            "\x1b[>4;2m",
            "\x1b=",
            "\x1b]11;#000000\x07",
            "\x1bPqsixel\x1b\\",
            "plain text ?\r\n",
            "\u{e9}\u{2500}",
        ];
        for q in queries {
            let data = format!("a{q}b");
            assert_eq!(strip_queries(data.as_bytes()), b"ab", "{q:?} is a query");
        }
        for k in keep {
            let data = format!("a{k}b");
            assert_eq!(strip_queries(data.as_bytes()), data.as_bytes(), "{k:?} is not a query");
        }
    }

    #[test]
    fn keeps_a_sequence_left_open_at_the_end() {
        assert_eq!(strip_queries(b"x\x1b[6n\x1b[6"), b"x\x1b[6");
        assert_eq!(strip_queries(b"\x1b]11;?"), b"\x1b]11;?");
    }
}
