//! Every decoder the gateway runs on untrusted bytes, fed arbitrary input: none may panic,
//! loop, or read past what it was given.
#![no_main]

use jitgate_gateway::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = codec::startup_len([data[0], data[1], data[2], data[3]]);
    }
    let _ = codec::parse_startup(data);
    // Walk frames as the relay does, and look inside the ones it inspects.
    let mut at = 0;
    while let Ok(Some((kind, total))) = codec::frame(&data[at..], 1 << 20) {
        let body = &data[at + 5..at + total];
        match kind {
            b'Q' => drop(codec::query(body)),
            b'P' => drop(codec::parse(body)),
            b'B' => drop(codec::bind(body)),
            b'T' => drop(codec::row_description(body)),
            b'D' => drop(codec::data_row(body)),
            b'E' => {
                let _ = codec::execute(body);
                let _ = codec::error_code(body);
            }
            _ => {}
        }
        at += total;
    }
});
