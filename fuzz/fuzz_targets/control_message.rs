//! Arbitrary text as a control message (a text frame): parsed or refused with a reason,
//! never a panic; a resize that parses is within u16.

#![no_main]

use kterm::http::protocol::{parse_control, ClientMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_control(text) {
        Ok(ClientMessage::Resize { .. } | ClientMessage::KeepAlive) => {}
        Err(reason) => assert!(!reason.is_empty()),
    }
});
