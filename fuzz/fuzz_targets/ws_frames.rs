//! Arbitrary bytes from a client, cut into arbitrary reads, through kterm's WebSocket input
//! path: the frame decoder (`ClientFrames`, over actix-http's codec) and the dispatch of each
//! message. Checks the decoder's invariants: it always makes progress or ends, a violation
//! ends it for good, and what it holds stays bounded.

#![no_main]

use kterm::http::ws_input::{dispatch, ClientFrames};
use libfuzzer_sys::fuzz_target;

/// A small limit, so that the fuzzer reaches it.
const MAX: usize = 4096;
/// A frame header is at most 14 bytes.
const HEADER: usize = 14;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    // Reads of 1 to 256 bytes, as the first byte says.
    let read = usize::from(cut) + 1;
    let mut frames = ClientFrames::new(MAX);
    let mut ended = false;
    for chunk in rest.chunks(read) {
        frames.extend(chunk);
        // Every message takes at least a 6-byte frame (2 of header, 4 of mask): a decoder
        // that keeps answering without consuming would pass this bound.
        let mut messages = 0usize;
        loop {
            match frames.next_message() {
                Ok(Some(message)) => {
                    assert!(!ended, "a message after a violation");
                    messages += 1;
                    assert!(messages <= rest.len() / 6 + 1, "no progress");
                    let _ = dispatch(message);
                }
                Ok(None) => break,
                Err(_) => {
                    assert!(!ended, "a second violation");
                    ended = true;
                    assert_eq!(frames.buffered(), 0, "a violation drops what was held");
                    assert!(frames.next_message().unwrap().is_none(), "nothing after a violation");
                }
            }
        }
        // Held: at most one incomplete frame and one read, and one message being reassembled.
        assert!(frames.buffered() <= 2 * (MAX + HEADER) + read, "{} held", frames.buffered());
    }
});
